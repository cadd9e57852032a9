//! A read that survives the network: when the connection under an object's bytes breaks
//! (a reset, a stall cut by the timeout), the object is opened again from the first byte not
//! yet read, so a reader sees one unbroken stream. A read that keeps failing ends with
//! [`ReadInterrupted`], which tells a network failure from damage: only a checked mismatch (a
//! hash, a tar header) is damage.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, ReadBuf};

use crate::{ByteRange, Driver, ObjectReader, Result};

/// How many times a broken read is resumed before it is given up.
const RESUMES: u32 = 4;

/// The pause before the first resume; doubled each time.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// A read given up after the network broke it again and again: not damage, worth another try
/// later. Carried inside the `io::Error` the reader returns.
#[derive(Debug, thiserror::Error)]
#[error("the read of {name} broke {attempts} times (last: {last}); the network, not the object")]
pub struct ReadInterrupted {
    pub name: String,
    pub attempts: u32,
    pub last: String,
}

/// Whether `error` (from a reader of [`resuming`]) is a read the network broke.
pub fn is_interrupted(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<ReadInterrupted>())
}

enum State {
    Reading(ObjectReader),
    Reopening(BoxFuture<'static, Result<ObjectReader>>),
}

struct Resuming {
    driver: Arc<dyn Driver>,
    name: String,
    range: ByteRange,
    /// Bytes handed to the reader so far.
    read: u64,
    resumes: u32,
    state: State,
}

/// `reader`, the start of `range` of `name`, resumed from where it broke.
pub fn resuming(
    driver: Arc<dyn Driver>,
    name: &str,
    range: ByteRange,
    reader: ObjectReader,
) -> ObjectReader {
    Box::new(Resuming {
        driver,
        name: name.to_owned(),
        range,
        read: 0,
        resumes: 0,
        state: State::Reading(reader),
    })
}

impl Resuming {
    /// Opens the object again after `error`, or gives up.
    fn resume(&mut self, error: String) -> Option<std::io::Error> {
        if self.resumes == RESUMES {
            return Some(std::io::Error::other(ReadInterrupted {
                name: self.name.clone(),
                attempts: self.resumes + 1,
                last: error,
            }));
        }
        let pause = FIRST_PAUSE * 2u32.pow(self.resumes);
        self.resumes += 1;
        tracing::warn!(
            "the read of {} broke after {} bytes ({error}); resuming from there in {}ms",
            self.name,
            self.read,
            pause.as_millis()
        );
        let from = ByteRange {
            start: self.range.start + self.read,
            end: self.range.end,
        };
        let (driver, name) = (Arc::clone(&self.driver), self.name.clone());
        self.state = State::Reopening(Box::pin(async move {
            tokio::time::sleep(pause).await;
            driver.read(&name, from).await
        }));
        None
    }
}

impl AsyncRead for Resuming {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Reading(reader) => {
                    let before = buf.filled().len();
                    match ready!(Pin::new(reader).poll_read(cx, buf)) {
                        Ok(()) => {
                            this.read += (buf.filled().len() - before) as u64;
                            return Poll::Ready(Ok(()));
                        }
                        Err(e) => {
                            if let Some(given_up) = this.resume(e.to_string()) {
                                return Poll::Ready(Err(given_up));
                            }
                        }
                    }
                }
                State::Reopening(reopening) => match ready!(reopening.as_mut().poll(cx)) {
                    Ok(reader) => this.state = State::Reading(reader),
                    // Only a failure the network may mend is tried again.
                    Err(e) if e.is_temporary() => {
                        if let Some(given_up) = this.resume(e.to_string()) {
                            return Poll::Ready(Err(given_up));
                        }
                    }
                    Err(e) => return Poll::Ready(Err(std::io::Error::other(e))),
                },
            }
        }
    }
}
