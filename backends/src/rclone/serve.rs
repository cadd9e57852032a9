//! Reads: objects streamed from the daemon's object server (`rclone rcd --rc-serve`), ranged
//! with HTTP `Range`, and told apart when they are cold.

use bytes::Bytes;
use futures_util::StreamExt;

use super::RcloneDriver;
use crate::{ByteRange, Driver, ErrorKind, ObjectReader, Result, StorageError};

impl RcloneDriver {
    /// A GET of the object the daemon serves, with an HTTP `Range`; the stream fails if it
    /// ends before the range does.
    pub(super) async fn serve(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        let size = self.stat(name).await?.size;
        let wanted = range.len_within(size);
        let daemon = self.daemon().await?;
        let mut request = daemon.serve(&served_path(&self.config.remote, name));
        if range != ByteRange::ALL {
            if wanted == 0 {
                return Ok(Box::new(tokio::io::empty()));
            }
            let last = range.start + wanted - 1;
            request = request.header(
                reqwest::header::RANGE,
                format!("bytes={}-{last}", range.start),
            );
        }
        let response = request
            .send()
            .await
            .map_err(|e| daemon.unreachable("read", e).with_object(name))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            if is_cold(&text) {
                return Err(StorageError::new(
                    ErrorKind::NotReady,
                    format!("{name} is in a cold storage tier and must be restored first"),
                )
                .with_object(name));
            }
            if status == reqwest::StatusCode::NOT_FOUND {
                // rclone serves a cold object as "Not Found" (its reason goes to its log),
                // while `operations/stat` above just found it: on object storage, that is an
                // object to restore.
                if self.info.get().is_some_and(|info| info.bucket_based) {
                    return Err(StorageError::new(
                        ErrorKind::NotReady,
                        format!("{name} exists but cannot be read yet: it is in a cold tier"),
                    )
                    .with_object(name));
                }
                return Err(StorageError::not_found(name));
            }
            return Err(StorageError::other(format!(
                "rclone read of {name} failed: HTTP {status}: {}",
                text.trim()
            ))
            .with_object(name));
        }
        if range != ByteRange::ALL && status != reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(StorageError::other(format!(
                "rclone served all of {name} where {range} was asked"
            ))
            .with_object(name));
        }
        let served = Served {
            body: Box::pin(response.bytes_stream()),
            received: 0,
            wanted,
            name: name.to_owned(),
        };
        let body = futures_util::stream::try_unfold(served, Served::next_chunk);
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(body))))
    }
}

/// Whether rclone's answer says the object is cold: its own words for S3, S3's code.
pub(super) fn is_cold(answer: &str) -> bool {
    answer.contains("restore first") || answer.contains("InvalidObjectState")
}

/// An object the daemon is serving, counted as it arrives.
struct Served {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    received: u64,
    wanted: u64,
    name: String,
}

impl Served {
    async fn next_chunk(mut self) -> std::io::Result<Option<(Bytes, Self)>> {
        match self.body.next().await {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                Ok(Some((chunk, self)))
            }
            Some(Err(e)) => Err(std::io::Error::other(e.without_url())),
            None if self.received == self.wanted => Ok(None),
            None => Err(std::io::Error::other(StorageError::temporary(format!(
                "download of {} ended after {} of {} bytes",
                self.name, self.received, self.wanted
            )))),
        }
    }
}

/// `[fs]/remote` for the daemon's object server, percent-encoded but for the slashes.
fn served_path(fs: &str, name: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    const PATH: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    format!(
        "{}/{}",
        utf8_percent_encode(&format!("[{fs}]"), PATH),
        utf8_percent_encode(name, PATH)
    )
}
