//! The HTTP transport under OpenDAL's S3 service, bounding stalls by progress instead of by
//! the length of a request: on a slow but steady link, a part of 8 MiB rightly takes longer
//! than `timeout` to send, and must not be cut for it.
//!
//! A request is given up when the connection has taken no slice of its body for `stall`;
//! once it has taken the whole body, when the kernel sees no byte acknowledged for `stall`
//! (`TCP_USER_TIMEOUT`, set on the client's sockets); an answer, when no byte of it has come
//! for `stall`. That is what `timeout` means for S3 transfers.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{Request, Response};
use opendal::raw::{parse_content_encoding, parse_content_length};
use opendal::{Buffer, Error, ErrorKind, HttpBody, HttpTransport};
use tokio::time::{Instant, Sleep};

use crate::layers::timeout::DRAINING;

/// The slices a body is handed to the connection in: each one taken is progress.
const SLICE: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct Watched {
    client: reqwest::Client,
    stall: Duration,
}

impl Watched {
    pub fn new(client: reqwest::Client, stall: Duration) -> Self {
        Watched { client, stall }
    }
}

/// How far a request's body has gone.
#[derive(Debug)]
struct Sending {
    /// When the connection last took a slice of the body.
    last: Instant,
    done: bool,
}

impl Sending {
    /// When the request counts as stalled, as things stand.
    fn deadline(&self, stall: Duration) -> Instant {
        if self.done {
            // The connection holds the rest, out of sight: its progress is the kernel's to
            // judge (`TCP_USER_TIMEOUT`: no byte acknowledged for `stall`), and this only a
            // backstop for a server that takes everything and never answers.
            self.last + stall + DRAINING
        } else {
            self.last + stall
        }
    }
}

impl HttpTransport for Watched {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let uri = req.uri().clone();
        let is_head = req.method() == http::Method::HEAD;
        let (parts, body) = req.into_parts();
        let now = Instant::now();
        let sending = Arc::new(Mutex::new(Sending {
            last: now,
            done: body.is_empty(),
        }));
        let mut request = self
            .client
            .request(parts.method, uri.to_string())
            .headers(parts.headers);
        if !body.is_empty() {
            let slices = Slices {
                body,
                pending: Bytes::new(),
                sending: Arc::clone(&sending),
            };
            request = request.body(reqwest::Body::wrap_stream(slices));
        }
        let send = request.send();
        tokio::pin!(send);
        let mut response = loop {
            let deadline = sending.lock().map_or(now, |s| s.deadline(self.stall));
            tokio::select! {
                answer = &mut send => {
                    break answer
                        .map_err(|e| transport_error("send http request", &uri, e, self.stall))?;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if sending.lock().is_ok_and(|s| s.deadline(self.stall) <= Instant::now()) {
                        return Err(Error::new(
                            ErrorKind::Unexpected,
                            format!(
                                "no progress for {}",
                                humantime::format_duration(self.stall)
                            ),
                        )
                        .with_operation("reqwest::send")
                        .with_context("url", uri.to_string())
                        .with_temporary(true));
                    }
                }
            }
        };
        let content_length = if is_head || parse_content_encoding(response.headers())?.is_some() {
            None
        } else {
            parse_content_length(response.headers())?
        };
        let mut answer = Response::builder()
            .status(response.status())
            .version(response.version())
            .extension(uri.clone());
        if let Some(headers) = answer.headers_mut() {
            std::mem::swap(headers, response.headers_mut());
        }
        let bytes = Stalling::new(Box::pin(response.bytes_stream()), self.stall)
            .try_filter(|bytes| std::future::ready(!bytes.is_empty()))
            .map_ok(Buffer::from)
            .map_err({
                let uri = uri.to_string();
                let stall = self.stall;
                move |e| match e {
                    Read::Stalled(stall) => Error::new(
                        ErrorKind::Unexpected,
                        format!("no data for {}", humantime::format_duration(stall)),
                    )
                    .with_context("url", uri.clone())
                    .with_temporary(true),
                    Read::Failed(e) => {
                        transport_error("read data from http response", &uri, e, stall)
                    }
                }
            });
        answer
            .body(HttpBody::new(bytes, content_length))
            .map_err(|e| {
                Error::new(ErrorKind::Unexpected, "cannot build the response").set_source(e)
            })
    }
}

/// An error of the HTTP client, as OpenDAL's, its message ending with the system's words for
/// the cause (the kernel's `TCP_USER_TIMEOUT` is a stall, and said as one).
fn transport_error(
    what: &str,
    uri: &impl ToString,
    error: reqwest::Error,
    stall: Duration,
) -> Error {
    let temporary = error.is_request() || error.is_body() || error.is_decode();
    let mut cause: &(dyn std::error::Error + 'static) = &error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let why = match cause.downcast_ref::<std::io::Error>() {
        Some(io) if io.kind() == std::io::ErrorKind::TimedOut => format!(
            "nothing acknowledged for {}",
            humantime::format_duration(stall)
        ),
        Some(io) => crate::io_words(io),
        None => cause.to_string(),
    };
    Error::new(ErrorKind::Unexpected, format!("{what}: {why}"))
        .with_operation("reqwest::send")
        .with_context("url", uri.to_string())
        .with_temporary(temporary)
        .set_source(error.without_url())
}

/// A request's body handed to the connection a slice at a time; each slice it takes is
/// recorded as progress.
struct Slices {
    body: Buffer,
    /// The rest of the chunk being sliced.
    pending: Bytes,
    sending: Arc<Mutex<Sending>>,
}

impl Stream for Slices {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pending.is_empty() {
            match Iterator::next(&mut self.body) {
                Some(chunk) => self.pending = chunk,
                None => {
                    if let Ok(mut sending) = self.sending.lock() {
                        sending.done = true;
                    }
                    return Poll::Ready(None);
                }
            }
        }
        let len = self.pending.len().min(SLICE);
        let slice = self.pending.split_to(len);
        // The connection stops asking once it has the length it was told: the last slice
        // ends the body.
        let done = self.pending.is_empty() && self.body.is_empty();
        if let Ok(mut sending) = self.sending.lock() {
            sending.last = Instant::now();
            sending.done = done;
        }
        Poll::Ready(Some(Ok(slice)))
    }
}

/// Why an answer's body stopped.
enum Read {
    Stalled(Duration),
    Failed(reqwest::Error),
}

/// An answer's body that fails when no byte of it comes for `stall`.
struct Stalling<S> {
    inner: S,
    stall: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<S> Stalling<S> {
    fn new(inner: S, stall: Duration) -> Self {
        Stalling {
            inner,
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
        }
    }
}

impl<S> Stream for Stalling<S>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    type Item = Result<Bytes, Read>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = self.inner.poll_next_unpin(cx) {
            let stall = self.stall;
            self.timer.as_mut().reset(Instant::now() + stall);
            return Poll::Ready(item.map(|result| result.map_err(Read::Failed)));
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Read::Stalled(self.stall)))),
            Poll::Pending => Poll::Pending,
        }
    }
}
