//! The local file an upload reads: a finished file, or the archive the packer is still
//! writing. Reading a growing file lets the upload run alongside the packing instead of after
//! it, while the file on disk stays the one complete copy of the bytes, so a retry starts again
//! from its beginning and memory stays flat.
//!
//! The writer also hands each piece it appends to the readers in memory, so an upload that
//! keeps up sends the packer's own buffers without reading the file back. Only the last few
//! pieces are kept; a reader that falls behind (or starts again) reads the file instead.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::watch;

use crate::{Result, StorageError};

/// Bytes read from a file at a time.
const CHUNK: usize = 256 * 1024;

/// Bytes of recent pieces kept in memory for readers that keep up with the writer.
const RECENT_BYTES: usize = 4 << 20;

/// A stream of an upload's bytes, in order.
pub type Chunks = BoxStream<'static, Result<Bytes>>;

/// Where an upload's bytes come from.
#[derive(Debug, Clone)]
pub struct Source {
    path: PathBuf,
    /// `None` for a finished file.
    growth: Option<Growing>,
    /// At most this many bytes a second are read; `None` for as fast as the reader goes.
    rate: Option<u64>,
}

#[derive(Debug, Clone)]
struct Growing {
    state: watch::Receiver<Growth>,
    recent: Arc<Mutex<Recent>>,
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

/// The latest pieces appended to a growing file, each with its offset in the file, kept only
/// while someone reads the file (the local backend never does: it links the finished file).
#[derive(Debug, Default)]
struct Recent {
    pieces: VecDeque<(u64, Bytes)>,
    bytes: usize,
    readers: usize,
}

impl Recent {
    fn push(&mut self, offset: u64, piece: Bytes) {
        if self.readers == 0 {
            return;
        }
        self.bytes += piece.len();
        self.pieces.push_back((offset, piece));
        while self.bytes > RECENT_BYTES {
            let Some((_, dropped)) = self.pieces.pop_front() else {
                break;
            };
            self.bytes -= dropped.len();
        }
    }

    /// The bytes from `offset` on, if they are still held: the rest of the piece holding it.
    /// Pieces before it are dropped: the reader is past them.
    fn take_from(&mut self, offset: u64) -> Option<Bytes> {
        while let Some((start, piece)) = self.pieces.front() {
            let end = start + piece.len() as u64;
            if end <= offset {
                self.bytes -= piece.len();
                self.pieces.pop_front();
                continue;
            }
            if *start > offset {
                return None;
            }
            let (start, piece) = self.pieces.pop_front()?;
            self.bytes -= piece.len();
            return Some(piece.slice(usize::try_from(offset - start).ok()?..));
        }
        None
    }
}

/// The writer's side of a growing [`Source`]. Dropping it before [`SourceFeed::complete`]
/// abandons the file: uploads reading it fail and never commit a partial object.
#[derive(Debug)]
pub struct SourceFeed {
    state: watch::Sender<Growth>,
    recent: Arc<Mutex<Recent>>,
}

impl SourceFeed {
    /// `pieces` were just written to the file (not merely buffered), which is now `len` bytes
    /// long: readers may have them, from memory while they keep up.
    pub fn appended(&self, pieces: Vec<Bytes>, len: u64) {
        if let Ok(mut recent) = self.recent.lock() {
            let mut offset = len - pieces.iter().map(|p| p.len() as u64).sum::<u64>();
            for piece in pieces {
                let size = piece.len() as u64;
                recent.push(offset, piece);
                offset += size;
            }
        }
        self.state.send_replace(Growth::Writing(len));
    }

    /// The file is whole at `len` bytes; uploads reading it may finish. The caller decides when:
    /// the run first makes its journal durable, so no archive reaches its final name on the
    /// storage before the next run could account for it.
    pub fn complete(&self, len: u64) {
        self.state.send_replace(Growth::Complete(len));
    }
}

impl Source {
    /// A finished file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Source {
            path: path.into(),
            growth: None,
            rate: None,
        }
    }

    /// A file still being written: the feed reports its progress to every reader.
    pub fn growing(path: impl Into<PathBuf>) -> (Self, SourceFeed) {
        let (state, receiver) = watch::channel(Growth::Writing(0));
        let recent = Arc::new(Mutex::new(Recent::default()));
        let source = Source {
            path: path.into(),
            growth: Some(Growing {
                state: receiver,
                recent: Arc::clone(&recent),
            }),
            rate: None,
        };
        (source, SourceFeed { state, recent })
    }

    /// The same bytes, streamed at most `bytes_per_second` (from the start of each read, with
    /// no burst), so that an upload leaves room on the link for everything else.
    pub fn paced(&self, bytes_per_second: Option<u64>) -> Source {
        Source {
            rate: bytes_per_second.filter(|rate| *rate > 0),
            ..self.clone()
        }
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
            Some(growing) => {
                let mut state = growing.state.clone();
                let complete = state
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
    pub fn chunks(&self) -> Chunks {
        let reading = self
            .growth
            .as_ref()
            .map(|growing| Reading::new(&growing.recent));
        let reader = Follower {
            source: self.clone(),
            file: None,
            read: 0,
            _reading: reading,
        };
        let chunks = Box::pin(futures_util::stream::try_unfold(
            reader,
            Follower::next_chunk,
        ));
        match self.rate {
            None => chunks,
            Some(rate) => paced(chunks, rate),
        }
    }

    /// An error met reading the source, naming the local file.
    pub fn error(&self, err: io::Error) -> StorageError {
        StorageError::from_io(&self.path.display().to_string(), err)
    }
}

/// Holds each chunk back until the bytes up to its end are due at `bytes_per_second`.
fn paced(chunks: Chunks, bytes_per_second: u64) -> Chunks {
    let mut started = None;
    let mut sent = 0u64;
    Box::pin(chunks.and_then(move |chunk| {
        let started = *started.get_or_insert_with(Instant::now);
        sent += chunk.len() as u64;
        let nanos = u128::from(sent) * 1_000_000_000 / u128::from(bytes_per_second);
        let due = started + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        async move {
            tokio::time::sleep_until(due.into()).await;
            Ok(chunk)
        }
    }))
}

fn abandoned() -> io::Error {
    io::Error::other("the file was abandoned before it was complete")
}

/// Reads a source in order: a finished file to its end, a growing one up to what its writer
/// reported, waiting for more.
struct Follower {
    source: Source,
    /// Opened on the first read: a growing file may not exist before then.
    file: Option<Arc<std::fs::File>>,
    read: u64,
    _reading: Option<Reading>,
}

/// Counts a reader of a growing file for as long as it lives, so that recent pieces are kept
/// for it.
struct Reading(Arc<Mutex<Recent>>);

impl Reading {
    fn new(recent: &Arc<Mutex<Recent>>) -> Self {
        if let Ok(mut recent) = recent.lock() {
            recent.readers += 1;
        }
        Reading(Arc::clone(recent))
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        if let Ok(mut recent) = self.0.lock() {
            recent.readers -= 1;
            if recent.readers == 0 {
                recent.pieces.clear();
                recent.bytes = 0;
            }
        }
    }
}

impl Follower {
    async fn next_chunk(mut self) -> Result<Option<(Bytes, Self)>> {
        let available = match &self.source.growth {
            None => u64::MAX,
            Some(growing) => {
                let read = self.read;
                let mut state = growing.state.clone();
                let growth = *state
                    .wait_for(|g| g.readable() > read || matches!(g, Growth::Complete(_)))
                    .await
                    .map_err(|_| self.source.error(abandoned()))?;
                let available = growth.readable() - read;
                if available == 0 {
                    return Ok(None);
                }
                let recent = growing
                    .recent
                    .lock()
                    .ok()
                    .and_then(|mut r| r.take_from(read));
                if let Some(piece) = recent {
                    self.read += piece.len() as u64;
                    return Ok(Some((piece, self)));
                }
                available
            }
        };
        let chunk = self
            .read_file(usize::try_from(available).map_or(CHUNK, |left| left.min(CHUNK)))
            .await?;
        if chunk.is_empty() {
            return Ok(None);
        }
        self.read += chunk.len() as u64;
        Ok(Some((chunk, self)))
    }

    /// Up to `len` bytes of the file from where the reader is (fewer only at its end).
    async fn read_file(&mut self, len: usize) -> Result<Bytes> {
        let file = match &self.file {
            Some(file) => Arc::clone(file),
            None => {
                let opened =
                    std::fs::File::open(self.source.path()).map_err(|e| self.source.error(e))?;
                Arc::clone(self.file.insert(Arc::new(opened)))
            }
        };
        let offset = self.read;
        let read = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let mut chunk = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut chunk[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            chunk.truncate(filled);
            Ok(chunk)
        })
        .await
        .map_err(|e| self.source.error(io::Error::other(e)))?
        .map_err(|e| self.source.error(e))?;
        Ok(Bytes::from(read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(source: &Source) -> Result<Vec<u8>> {
        let chunks: Vec<Bytes> = source.chunks().try_collect().await?;
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn a_paced_source_is_read_no_faster_than_its_rate_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let started = Instant::now();
        let read = read_all(&Source::file(&path).paced(Some(2_000_000)))
            .await
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(read, bytes);
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
        for step in 0..60u8 {
            let piece = vec![step; 100_000];
            file.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
            // Some pieces only in the file, the others also in memory, as a slow reader sees
            // when the recent pieces have moved on.
            if step % 3 == 0 {
                feed.appended(vec![Bytes::from(piece)], expected.len() as u64);
            } else {
                feed.appended(vec![], expected.len() as u64);
            }
            if step % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // Bytes beyond what was reported are not read, even when they are in the file.
        file.write_all(b"not yet").unwrap();
        feed.complete(expected.len() as u64);
        assert!(reading.await.unwrap().unwrap() == expected);
        assert_eq!(source.len().await.unwrap(), expected.len() as u64);
        // A second reader (a retry) reads it all again.
        assert!(read_all(&source).await.unwrap() == expected);
    }

    #[tokio::test]
    async fn an_abandoned_file_fails_its_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        std::fs::write(&path, b"half").unwrap();
        let (source, feed) = Source::growing(&path);
        feed.appended(vec![Bytes::from_static(b"half")], 4);
        drop(feed);
        let err = read_all(&source).await.unwrap_err();
        assert!(err.to_string().contains("abandoned"), "{err}");
        assert!(!err.is_temporary(), "abandoning is final: {err}");
        assert!(source.len().await.is_err());
    }

    #[test]
    fn recent_pieces_serve_a_reader_from_any_offset_they_hold() {
        let mut recent = Recent {
            readers: 1,
            ..Recent::default()
        };
        recent.push(0, Bytes::from_static(b"abcd"));
        recent.push(4, Bytes::from_static(b"efgh"));
        assert_eq!(recent.take_from(2).as_deref(), Some(&b"cd"[..]));
        assert_eq!(recent.take_from(4).as_deref(), Some(&b"efgh"[..]));
        assert_eq!(recent.take_from(8), None);
        recent.push(100, Bytes::from_static(b"later"));
        assert_eq!(recent.take_from(8), None, "a gap is read from the file");
        let big = Bytes::from(vec![0u8; RECENT_BYTES]);
        recent.push(105, big);
        assert_eq!(recent.take_from(100), None, "the oldest pieces make room");
    }

    #[test]
    fn no_pieces_are_kept_without_a_reader() {
        let (source, feed) = Source::growing("/nonexistent");
        let recent = &source.growth.as_ref().unwrap().recent;
        feed.appended(vec![Bytes::from_static(b"kept for nobody")], 15);
        assert_eq!(recent.lock().unwrap().bytes, 0);
        let chunks = source.chunks();
        feed.appended(vec![Bytes::from_static(b"kept")], 19);
        assert_eq!(recent.lock().unwrap().bytes, 4);
        drop(chunks);
        assert_eq!(
            recent.lock().unwrap().bytes,
            0,
            "released with the last reader"
        );
    }
}
