//! The local file an upload reads: a finished file, or the archive the packer is still
//! writing. Reading a growing file lets the upload run alongside the packing instead of after
//! it, while the file on disk stays the one copy of the bytes, so a retry starts again from its
//! beginning and memory stays flat.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::{ObjectReader, Result, StorageError};

/// Bytes read from a growing file at a time.
const CHUNK: usize = 256 * 1024;

/// Where an upload's bytes come from.
#[derive(Debug, Clone)]
pub struct Source {
    path: PathBuf,
    /// `None` for a finished file.
    growth: Option<watch::Receiver<Growth>>,
}

/// How far the writer of a growing file has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Growth {
    /// This many bytes are written and may be read; more are coming.
    Writing(u64),
    /// The file is whole at this size.
    Complete(u64),
}

impl Growth {
    fn readable(self) -> u64 {
        match self {
            Growth::Writing(len) | Growth::Complete(len) => len,
        }
    }
}

/// The writer's side of a growing [`Source`]. Dropping it before [`SourceFeed::complete`]
/// abandons the file: uploads reading it fail and never commit a partial object.
#[derive(Debug)]
pub struct SourceFeed(watch::Sender<Growth>);

impl SourceFeed {
    /// The first `len` bytes are in the file (not merely buffered): readers may have them.
    pub fn written(&self, len: u64) {
        self.0.send_replace(Growth::Writing(len));
    }

    /// The file is whole at `len` bytes; uploads reading it may finish. The caller decides when:
    /// the run first makes its journal durable, so no archive reaches its final name on the
    /// storage before the next run could account for it.
    pub fn complete(&self, len: u64) {
        self.0.send_replace(Growth::Complete(len));
    }
}

impl Source {
    /// A finished file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Source {
            path: path.into(),
            growth: None,
        }
    }

    /// A file still being written: the feed reports its progress to every reader.
    pub fn growing(path: impl Into<PathBuf>) -> (Self, SourceFeed) {
        let (sender, receiver) = watch::channel(Growth::Writing(0));
        let source = Source {
            path: path.into(),
            growth: Some(receiver),
        };
        (source, SourceFeed(sender))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's final size, once it is whole.
    pub async fn len(&self) -> Result<u64> {
        match &self.growth {
            None => tokio::fs::metadata(&self.path)
                .await
                .map(|meta| meta.len())
                .map_err(|e| self.error(e)),
            Some(growth) => {
                let mut growth = growth.clone();
                let complete = growth
                    .wait_for(|g| matches!(g, Growth::Complete(_)))
                    .await
                    .map(|g| g.readable());
                complete.map_err(|_| self.error(abandoned()))
            }
        }
    }

    /// Streams the whole file from its start. On a growing file the stream follows the writer
    /// (the file need not exist before its first report) and ends only when the file is
    /// complete; it fails if the writer gives up.
    pub async fn reader(&self) -> Result<ObjectReader> {
        let Some(mut growth) = self.growth.clone() else {
            let file = tokio::fs::File::open(&self.path)
                .await
                .map_err(|e| self.error(e))?;
            return Ok(Box::new(file));
        };
        // The writer may create the file after the upload starts: it exists once the writer
        // has reported something.
        growth
            .wait_for(|g| g.readable() > 0 || matches!(g, Growth::Complete(_)))
            .await
            .map_err(|_| self.error(abandoned()))?;
        let file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| self.error(e))?;
        let follower = Follower {
            file,
            growth,
            read: 0,
        };
        let chunks = futures_util::stream::try_unfold(follower, Follower::next_chunk);
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(
            chunks,
        ))))
    }

    /// An error met reading the source, naming the local file.
    pub fn error(&self, err: io::Error) -> StorageError {
        StorageError::from_io(&self.path.display().to_string(), err)
    }
}

fn abandoned() -> io::Error {
    io::Error::other("the file was abandoned before it was complete")
}

/// Reads a growing file up to what its writer reported, waiting for more.
struct Follower {
    file: tokio::fs::File,
    growth: watch::Receiver<Growth>,
    read: u64,
}

impl Follower {
    async fn next_chunk(mut self) -> io::Result<Option<(Bytes, Self)>> {
        let read = self.read;
        let growth = *self
            .growth
            .wait_for(|g| g.readable() > read || matches!(g, Growth::Complete(_)))
            .await
            .map_err(|_| abandoned())?;
        let available = growth.readable() - read;
        if available == 0 {
            return Ok(None);
        }
        let mut chunk = vec![0u8; available.min(CHUNK as u64) as usize];
        self.file.read_exact(&mut chunk).await?;
        self.read += chunk.len() as u64;
        Ok(Some((Bytes::from(chunk), self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(source: &Source) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        source
            .reader()
            .await?
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| source.error(e))?;
        Ok(bytes)
    }

    #[tokio::test]
    async fn a_reader_follows_the_writer_until_the_file_is_complete() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        let (source, feed) = Source::growing(&path);
        let reading = tokio::spawn({
            let source = source.clone();
            async move { read_all(&source).await }
        });
        tokio::task::yield_now().await;
        // Created after the reader started, as the packer does.
        let mut file = std::fs::File::create(&path).unwrap();
        let mut expected = Vec::new();
        for step in 0..20u8 {
            let piece = vec![step; 100_000];
            file.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
            feed.written(expected.len() as u64);
            tokio::task::yield_now().await;
        }
        // Bytes beyond what was reported are not read, even when they are in the file.
        file.write_all(b"not yet").unwrap();
        feed.complete(expected.len() as u64);
        assert_eq!(reading.await.unwrap().unwrap(), expected);
        assert_eq!(source.len().await.unwrap(), expected.len() as u64);
    }

    #[tokio::test]
    async fn an_abandoned_file_fails_its_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        std::fs::write(&path, b"half").unwrap();
        let (source, feed) = Source::growing(&path);
        feed.written(4);
        drop(feed);
        let err = read_all(&source).await.unwrap_err();
        assert!(err.to_string().contains("abandoned"), "{err}");
        assert!(!err.is_transient(), "abandoning is final: {err}");
        assert!(source.len().await.is_err());
    }
}
