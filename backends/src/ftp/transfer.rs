//! Data connections: each read or write bounded by the timeout, and a download streamed to
//! its reader, stopping where the asked range ends.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use suppaftp::tokio::{AsyncRustlsStream, TransferStream};
use tokio::io::AsyncReadExt;

use std::sync::Arc;

use super::session::{Idle, Session};
use crate::{Result, StorageError};

/// Size of the chunks read from the data connection.
const CHUNK: usize = 256 * 1024;

type Transfer = TransferStream<AsyncRustlsStream>;

/// What a streaming download needs once the driver has handed it out.
pub(super) struct Steps {
    pub name: String,
    pub timeout: Duration,
}

/// One read or write on a data connection, bounded by the timeout: a stall fails the
/// transfer, a slow but moving one does not.
pub(super) async fn data_step<T>(
    timeout: Duration,
    what: &str,
    name: &str,
    step: impl Future<Output = std::io::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(
            StorageError::temporary(format!("{what} of {name} broke off: {e}"))
                .with_object(name)
                .with_source(e),
        ),
        Err(_) => Err(StorageError::temporary(format!(
            "{what} of {name} stalled for {}",
            humantime::format_duration(timeout)
        ))
        .with_object(name)),
    }
}

/// A download in progress: the session, its data connection and how much is still wanted.
pub(super) struct Download {
    pub ftp: Session,
    /// Where the session goes once the transfer is complete.
    pub idle: Arc<Idle>,
    pub data: Transfer,
    pub steps: Steps,
    /// Bytes of the range not yet handed out.
    pub wanted: u64,
    /// Whether the range runs to the end of the object: the transfer is then completed and
    /// its reply checked; otherwise it is abandoned once the range is read (an early abort).
    pub to_end: bool,
}

impl Download {
    pub async fn next_chunk(mut self) -> std::io::Result<Option<(Bytes, Self)>> {
        let into_io = std::io::Error::other;
        if self.wanted == 0 {
            if self.to_end {
                let completed = tokio::time::timeout(self.steps.timeout, self.data.finish()).await;
                if !matches!(completed, Ok(Ok(()))) {
                    return Err(into_io(StorageError::temporary(format!(
                        "the download of {} did not complete",
                        self.steps.name
                    ))));
                }
                // Whole and confirmed: the session serves the next operation.
                self.idle.keep(self.ftp);
            }
            return Ok(None);
        }
        let len = usize::try_from(self.wanted.min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut buffer = vec![0u8; len];
        let n = data_step(
            self.steps.timeout,
            "download",
            &self.steps.name,
            self.data.read(&mut buffer),
        )
        .await
        .map_err(into_io)?;
        if n == 0 {
            return Err(into_io(StorageError::temporary(format!(
                "download of {} ended {} bytes early",
                self.steps.name, self.wanted
            ))));
        }
        buffer.truncate(n);
        self.wanted -= n as u64;
        Ok(Some((Bytes::from(buffer), self)))
    }
}
