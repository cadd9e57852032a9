//! A gzip writer that uses every core: the stream is cut into blocks, each compressed on a
//! worker thread as an independent gzip member, and the members are written in order. A
//! multi-member file is plain gzip (RFC 1952): GNU tar, `gzip -t` and Python's `tarfile` read
//! it as one stream.
//!
//! The output is also counted and hashed on its way to the file, so the archive's size and
//! digest come without reading it again, and each member's arrival in the file is reported so
//! an upload can follow the file as it grows.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::digest::{ArchiveDigest, DigestHasher};

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
/// In [`Level::Auto`], a block is judged in parts of this size, and only the parts worth it
/// are deflated: a batch where some replays end in long runs of zeros mixes parts that shrink
/// to nothing with LZMA data that deflate only slows down on. A block with no such part is
/// stored as it is. (Judging whole blocks from samples missed zero runs between the samples.)
const PART: usize = 16 * 1024;
/// Each part is judged by `SAMPLES` slices of `SAMPLE` bytes spread over it: an eighth of
/// the data is counted.
const SAMPLE: usize = 512;
const SAMPLES: usize = 4;
/// A part is compressed only when its sample's byte entropy promises to shrink it to this
/// share of its size or less. Deflating costs about fifty times a stored copy: on the
/// generated replay corpus, compressing the blocks that shrank by 3 % or more took a quarter
/// of the run and saved 0.15 % of the archive. Compressible files (text, logs, uncompressed
/// binaries) promise far more than 10 % and are still compressed.
const WORTH_IT: f64 = 0.80;
/// gzip member header: ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown (as flate2 writes it).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

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
        let member = match level {
            Level::Fixed(level) => Member::new(block, level),
            Level::Auto => {
                let worth: Vec<bool> = block.chunks(PART).map(worth_compressing).collect();
                if worth.contains(&true) {
                    Member::by_parts(&block, &worth)
                } else {
                    Member::new(block, 0)
                }
            }
        };
        if done.send((sequence, member)).is_err() {
            return;
        }
    }
}

/// One complete gzip member, ready to be written.
enum Member {
    Deflated(Vec<u8>),
    /// Stored deflate blocks (RFC 1951 section 3.2.4): the block goes to the file as it is,
    /// between framing made when it is written, so it is never copied again. zlib's level 0
    /// produces the same format several times slower.
    Stored {
        block: Vec<u8>,
        crc: u32,
    },
}

/// Largest stored deflate block.
const MAX_STORED: usize = 65_535;

impl Member {
    fn new(block: Vec<u8>, level: u32) -> Self {
        if level == 0 {
            let crc = crc32fast::hash(&block);
            return Member::Stored { block, crc };
        }
        let mut encoder = GzEncoder::new(
            Vec::with_capacity(block.len() + 64),
            Compression::new(level),
        );
        let member = encoder
            .write_all(&block)
            .and_then(|()| encoder.finish())
            .expect("writing to memory cannot fail");
        Member::Deflated(member)
    }

    /// A member whose parts are each deflated or stored, whichever their entropy says, in one
    /// deflate stream: deflated parts end with a sync flush (byte-aligned, not final), stored
    /// parts are stored blocks, and an empty final stored block closes the stream. Deflate's
    /// history is dropped after a stored part, as its distances count only what it compressed.
    fn by_parts(block: &[u8], worth: &[bool]) -> Self {
        let mut member = Vec::with_capacity(block.len() + 64);
        member.extend_from_slice(&GZIP_HEADER);
        let mut deflate = flate2::Compress::new(Compression::fast(), false);
        let mut after_stored = false;
        for (part, &worth) in block.chunks(PART).zip(worth) {
            if worth {
                if after_stored {
                    deflate.reset();
                    after_stored = false;
                }
                let mut consumed = 0;
                loop {
                    member.reserve(part.len() - consumed + part.len() / 64 + 1024);
                    let before = deflate.total_in();
                    deflate
                        .compress_vec(&part[consumed..], &mut member, flate2::FlushCompress::Sync)
                        .expect("deflating to memory cannot fail");
                    consumed += usize::try_from(deflate.total_in() - before)
                        .expect("at most the part's length");
                    // Done once the part is in and the flush had room to finish (another
                    // flush would only add an empty stored block, which is harmless).
                    if consumed == part.len() && member.len() < member.capacity() {
                        break;
                    }
                }
            } else {
                for stored in part.chunks(MAX_STORED) {
                    let len = u16::try_from(stored.len()).expect("at most 65,535 bytes");
                    member.push(0);
                    member.extend_from_slice(&len.to_le_bytes());
                    member.extend_from_slice(&(!len).to_le_bytes());
                    member.extend_from_slice(stored);
                }
                after_stored = true;
            }
        }
        member.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        member.extend_from_slice(&crc32fast::hash(block).to_le_bytes());
        let size = u32::try_from(block.len()).expect("a block is far below 4 GiB");
        member.extend_from_slice(&size.to_le_bytes());
        Member::Deflated(member)
    }

    /// The framing of a stored member: the gzip header, a 5-byte header per deflate block,
    /// and the trailer, in that order (see [`Member::into_pieces`]).
    fn framing(block: &[u8], crc: u32) -> Vec<u8> {
        let blocks = block.len().div_ceil(MAX_STORED).max(1);
        let mut framing = Vec::with_capacity(10 + 5 * blocks + 8);
        framing.extend_from_slice(&GZIP_HEADER);
        for index in 0..blocks {
            let len = u16::try_from((block.len() - index * MAX_STORED).min(MAX_STORED))
                .expect("a stored deflate block holds at most 65,535 bytes");
            framing.push(u8::from(index + 1 == blocks));
            framing.extend_from_slice(&len.to_le_bytes());
            framing.extend_from_slice(&(!len).to_le_bytes());
        }
        framing.extend_from_slice(&crc.to_le_bytes());
        let size = u32::try_from(block.len()).expect("a block is far below 4 GiB");
        framing.extend_from_slice(&size.to_le_bytes());
        framing
    }

    /// The member's bytes in file order, as pieces sharing the member's buffers: written with
    /// one writev, then handed to an upload without a copy.
    fn into_pieces(self) -> Vec<Bytes> {
        match self {
            Member::Deflated(member) => vec![Bytes::from(member)],
            Member::Stored { block, crc } => {
                let framing = Bytes::from(Member::framing(&block, crc));
                let block = Bytes::from(block);
                let blocks = (framing.len() - 18) / 5;
                let mut pieces = Vec::with_capacity(2 * blocks + 2);
                pieces.push(framing.slice(..10));
                for index in 0..blocks {
                    pieces.push(framing.slice(10 + 5 * index..15 + 5 * index));
                    let start = index * MAX_STORED;
                    let end = block.len().min(start + MAX_STORED);
                    if start < end {
                        pieces.push(block.slice(start..end));
                    }
                }
                pieces.push(framing.slice(framing.len() - 8..));
                pieces
            }
        }
    }
}

/// Whether compressing `block` is worth it, from the byte entropy of samples of it: what
/// deflate's Huffman stage alone would make of them. LZMA-packed replays sit at 8 bits a byte
/// and are stored; text sits near 4-5 and is compressed. Counting bytes costs a fraction of a
/// trial deflate of the same samples (whose setup alone was a fifth of a run's CPU time).
fn worth_compressing(block: &[u8]) -> bool {
    let stride = (block.len() / SAMPLES).max(1);
    let mut counts = [0u32; 256];
    let mut total = 0usize;
    for start in (0..block.len()).step_by(stride).take(SAMPLES) {
        let slice = &block[start..block.len().min(start + SAMPLE)];
        for &byte in slice {
            counts[usize::from(byte)] += 1;
        }
        total += slice.len();
    }
    if total == 0 {
        return false;
    }
    // At most SAMPLES * SAMPLE bytes: exact in a u32, and so in an f64.
    let total = f64::from(u32::try_from(total).unwrap_or(u32::MAX));
    // First the collision entropy, -log2(sum p^2), which is never above Shannon's: when even
    // it is above the bar, so is Shannon's, and the part is stored without a logarithm per
    // byte value (those were most of the cost on LZMA data).
    let collisions: f64 = counts.iter().map(|&count| f64::from(count).powi(2)).sum();
    if -(collisions / (total * total)).log2() / 8.0 > WORTH_IT {
        return false;
    }
    let bits_per_byte: f64 = counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = f64::from(count) / total;
            -p * p.log2()
        })
        .sum();
    bits_per_byte / 8.0 <= WORTH_IT
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
        let mut x = 1u64;
        let noise: Vec<u8> = (0..3 * BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
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
        let mut x = 7u64;
        let mut data = Vec::new();
        for replay in 0..40 {
            let len = 50_000 + 1_000 * replay;
            let noisy = if replay % 2 == 0 { len / 4 } else { len };
            data.extend((0..noisy).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            }));
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
        // GNU gzip reads the mixed members too.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.gz");
        let block = &data[..BLOCK];
        let worth: Vec<bool> = block.chunks(PART).map(worth_compressing).collect();
        let member = Member::by_parts(block, &worth).into_pieces().concat();
        std::fs::write(&path, member).unwrap();
        let gunzip = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert!(gunzip.status.success());
        assert_eq!(gunzip.stdout, block);
    }

    #[test]
    fn stored_members_match_what_zlib_decodes() {
        for len in [0, 1, 65_535, 65_536, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            let bytes = Member::new(data.clone(), 0).into_pieces().concat();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "length {len}");
        }
    }

    #[test]
    fn an_empty_stream_is_still_valid_gzip() {
        assert_eq!(round_trip(b"", Level::Auto).0, b"");
    }
}
