//! A gzip writer that uses every core: the stream is cut into blocks, each compressed on a
//! worker thread as an independent gzip member, and the members are written in order. A
//! multi-member file is plain gzip (RFC 1952): GNU tar, `gzip -t` and Python's `tarfile` read
//! it as one stream.
//!
//! The output is also counted and hashed on its way to the file, so the archive's size and
//! digest come without reading it again, and each member's arrival in the file is reported so
//! an upload can follow the file as it grows.

mod member;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::formats::digest::{ArchiveDigest, DigestHasher};
use member::Member;

/// How hard to compress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Per block: store what does not shrink (replays are LZMA inside), compress the rest fast.
    Auto,
    /// One zlib level, 0 (store) to 9, for every block.
    Fixed(u32),
}

/// Bytes of the stream compressed as one gzip member.
const BLOCK: usize = 1 << 20;
/// What [`ParallelGzip::finish`] reports.
#[derive(Debug)]
pub struct Written {
    pub bytes: u64,
    pub digest: ArchiveDigest,
    /// Where each member starts in the file, in order. Member `k` holds the uncompressed
    /// bytes from `k * BLOCK_SIZE`: a reader can start at any member.
    pub members: Vec<u64>,
}

/// Bytes of the uncompressed stream in each gzip member (the last one holds the rest).
pub const BLOCK_SIZE: u64 = BLOCK as u64;

/// Given each member's bytes once they are in the file, with the file's new size.
pub type OnWritten = Box<dyn Fn(Vec<Bytes>, u64) + Send>;

type Job = (u64, Vec<u8>);
type Done = (u64, Member);

pub struct ParallelGzip {
    block: Vec<u8>,
    next: u64,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<Written>>>,
}

impl ParallelGzip {
    pub fn new(out: File, level: Level, on_written: OnWritten) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let (jobs, queue) = sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let (done, members) = sync_channel::<Done>(threads * 2);
        let workers = (0..threads)
            .map(|_| {
                let queue = Arc::clone(&queue);
                let done = done.clone();
                std::thread::spawn(move || compress_blocks(&queue, &done, level))
            })
            .collect();
        drop(done);
        let writer = std::thread::spawn(move || write_in_order(out, &members, &on_written));
        ParallelGzip {
            block: Vec::with_capacity(BLOCK),
            next: 0,
            jobs: Some(jobs),
            workers,
            writer: Some(writer),
        }
    }

    /// Bytes of the uncompressed stream written so far.
    pub fn position(&self) -> u64 {
        self.next * BLOCK_SIZE + self.block.len() as u64
    }

    fn send_block(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let jobs = self.jobs.as_ref().expect("not finished yet");
        if jobs.send((self.next, block)).is_err() {
            // The writer stopped (a full disk, say): its error is the one to report.
            return Err(self
                .stop()
                .err()
                .unwrap_or_else(|| io::Error::other("gzip writer stopped")));
        }
        self.next += 1;
        Ok(())
    }

    /// Compresses what is left, waits for every member to be written and flushed, and returns
    /// the size and digest of the whole file.
    pub fn finish(mut self) -> io::Result<Written> {
        if !self.block.is_empty() || self.next == 0 {
            self.send_block()?;
        }
        self.stop()
    }

    fn stop(&mut self) -> io::Result<Written> {
        drop(self.jobs.take());
        for worker in self.workers.drain(..) {
            worker
                .join()
                .map_err(|_| io::Error::other("a gzip worker panicked"))?;
        }
        match self.writer.take() {
            Some(writer) => writer
                .join()
                .map_err(|_| io::Error::other("the gzip writer panicked"))?,
            None => Err(io::Error::other("gzip writer already stopped")),
        }
    }
}

impl Write for ParallelGzip {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.block.len();
        let n = buf.len().min(room);
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ParallelGzip {
    /// An abandoned writer (an error elsewhere) still stops its threads.
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.stop();
        }
    }
}

fn compress_blocks(queue: &Mutex<Receiver<Job>>, done: &SyncSender<Done>, level: Level) {
    loop {
        let job = queue
            .lock()
            .map_err(|_| ())
            .and_then(|q| q.recv().map_err(|_| ()));
        let Ok((sequence, block)) = job else {
            return;
        };
        if done.send((sequence, Member::encode(block, level))).is_err() {
            return;
        }
    }
}

/// Writes members in sequence order as they arrive, hashing and counting. Members are about a
/// block each, so they go to the file unbuffered: what is reported written is in the file.
fn write_in_order(
    mut file: File,
    members: &Receiver<Done>,
    on_written: &dyn Fn(Vec<Bytes>, u64),
) -> io::Result<Written> {
    let mut hasher = DigestHasher::blake3();
    let mut bytes = 0u64;
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    let mut starts = Vec::new();
    for (sequence, member) in members {
        waiting.insert(sequence, member);
        while let Some(member) = waiting.remove(&next) {
            starts.push(bytes);
            let pieces = member.into_pieces();
            let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
            for piece in &pieces {
                hasher.update(piece);
                bytes += piece.len() as u64;
            }
            write_all_pieces(&mut file, &mut slices)?;
            next += 1;
            on_written(pieces, bytes);
        }
    }
    if !waiting.is_empty() {
        return Err(io::Error::other("a gzip block was lost"));
    }
    Ok(Written {
        bytes,
        digest: hasher.finish(),
        members: starts,
    })
}

/// Writes every slice, with as few system calls as the file takes.
fn write_all_pieces(file: &mut File, mut pieces: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !pieces.is_empty() {
        match file.write_vectored(pieces) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut pieces, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::noise;
    use std::io::Read;

    fn round_trip(data: &[u8], level: Level) -> (Vec<u8>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.gz");
        let reports = Arc::new(Mutex::new(Vec::new()));
        let on_written: OnWritten = {
            let reports = Arc::clone(&reports);
            let path = path.clone();
            Box::new(move |pieces: Vec<Bytes>, len| {
                // What is handed over is already in the file, at the end of its `len` bytes.
                let file = std::fs::read(&path).unwrap();
                let handed = pieces.concat();
                assert!(file[..usize::try_from(len).unwrap()].ends_with(&handed));
                reports.lock().unwrap().push(len);
            })
        };
        let mut gz = ParallelGzip::new(File::create(&path).unwrap(), level, on_written);
        for chunk in data.chunks(7919) {
            gz.write_all(chunk).unwrap();
        }
        let written = gz.finish().unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(written.bytes, raw.len() as u64);
        assert_eq!(
            written.digest,
            ArchiveDigest::Blake3(blake3::hash(&raw).to_hex().to_string())
        );
        let reports = reports.lock().unwrap();
        assert!(reports.is_sorted(), "{reports:?}");
        assert_eq!(reports.last(), Some(&written.bytes));
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut back)
            .unwrap();
        (back, written.bytes)
    }

    #[test]
    fn many_blocks_come_back_in_order() {
        let data: Vec<u8> = (0..u32::try_from(5 * BLOCK + 123).unwrap())
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11).to_le_bytes()[0])
            .collect();
        for level in [Level::Auto, Level::Fixed(0), Level::Fixed(6)] {
            assert!(round_trip(&data, level).0 == data, "{level:?}");
        }
    }

    #[test]
    fn auto_stores_noise_and_compresses_text() {
        let noise = noise(1, 3 * BLOCK);
        let (_, stored) = round_trip(&noise, Level::Auto);
        assert!(stored >= noise.len() as u64, "noise is stored as it is");
        let text = b"osu! replay frames 16|256|192|1,".repeat(100_000);
        let (back, compressed) = round_trip(&text, Level::Auto);
        assert_eq!(back, text);
        assert!(
            compressed * 10 < text.len() as u64,
            "text shrinks: {compressed}"
        );
    }

    #[test]
    fn auto_deflates_only_the_parts_of_a_block_that_shrink() {
        // Replays of noise, every other one ending in zeros for three quarters of its size.
        let mut data = Vec::new();
        for replay in 0..40 {
            let len = 50_000 + 1_000 * replay;
            let noisy = if replay % 2 == 0 { len / 4 } else { len };
            data.extend(noise(replay as u64, noisy));
            data.resize(data.len() + len - noisy, 0);
        }
        let (back, size) = round_trip(&data, Level::Auto);
        assert_eq!(back, data);
        let zeros = data.iter().filter(|&&b| b == 0).count() as u64;
        assert!(
            size < data.len() as u64 - zeros * 9 / 10,
            "the zeros are deflated: {size} of {}",
            data.len()
        );
    }

    #[test]
    fn an_empty_stream_is_still_valid_gzip() {
        assert_eq!(round_trip(b"", Level::Auto).0, b"");
    }
}
