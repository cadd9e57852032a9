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

/// Whether a read failed because its connection broke (worth resuming), not because the
/// storage answered that the object is missing or refused.
fn broken_off(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{InvalidData, InvalidInput, NotFound, PermissionDenied, Unsupported};
    !matches!(
        error.kind(),
        NotFound | PermissionDenied | InvalidInput | InvalidData | Unsupported
    )
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
                        // An answer, not a broken connection: the object is gone, or
                        // refused.
                        Err(e) if !broken_off(&e) => return Poll::Ready(Err(e)),
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
                    Err(e) => {
                        let kind = if e.kind() == crate::ErrorKind::NotFound {
                            std::io::ErrorKind::NotFound
                        } else {
                            std::io::ErrorKind::Other
                        };
                        return Poll::Ready(Err(std::io::Error::new(kind, e)));
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryDriver;
    use crate::{Put, Source};
    use tokio::io::AsyncReadExt;

    /// A connection that fails at once with `kind`.
    struct Failing(std::io::ErrorKind);

    impl AsyncRead for Failing {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Err(std::io::Error::from(self.0)))
        }
    }

    #[tokio::test]
    async fn a_broken_connection_is_resumed_and_an_answer_passed_on() {
        let driver: Arc<dyn Driver> = Arc::new(MemoryDriver::default());
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"0123456789").unwrap();
        driver
            .put("object", &Put::new(&Source::file(file.path())))
            .await
            .unwrap();

        // Three bytes, then the connection resets: the rest comes from a new read at 3.
        let broken: ObjectReader =
            Box::new((&b"012"[..]).chain(Failing(std::io::ErrorKind::ConnectionReset)));
        let mut read = Vec::new();
        resuming(Arc::clone(&driver), "object", ByteRange::ALL, broken)
            .read_to_end(&mut read)
            .await
            .unwrap();
        assert_eq!(read, b"0123456789");

        // The storage's answer that the object is missing is not a broken connection.
        let missing: ObjectReader = Box::new(Failing(std::io::ErrorKind::NotFound));
        let error = resuming(driver, "absent", ByteRange::ALL, missing)
            .read_to_end(&mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        assert!(!is_interrupted(&error));
    }
}
