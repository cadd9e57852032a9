//! An archive's tar stream read back from the storage: from one replay's entry alone, through
//! the range its manifest records (format 3 or 4), or from the archive's start; and a count of the
//! bytes read on the way, so that a restore can say what it cost.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use backends::{ByteRange, ErrorKind, ObjectReader, Storage};
use tokio::io::AsyncReadExt;
use tokio_util::io::SyncIoBridge;

use crate::archive::access::FromPoint;
use crate::formats::access::window_span;
use crate::formats::names::access_name;
use crate::formats::range::ReplaySeek;
use crate::storage::read_range_for_blocking;

/// The read the network broke, if one did somewhere among `error`'s causes: the readers above
/// it (gzip, tar) may have concluded the archive was damaged, which it is not.
pub fn broken_read(error: &anyhow::Error) -> Option<&backends::ReadInterrupted> {
    error.chain().find_map(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<backends::ReadInterrupted>())
    })
}

/// Why a read of an archive failed, in one line: the network's failure as such (and worth
/// another try), anything else as the readers said it.
pub fn failure_reason(error: &anyhow::Error) -> String {
    match broken_read(error) {
        Some(broken) => format!("{broken}; try again later"),
        None => format!("{error:#}"),
    }
}

/// Bytes read from the storage, shared by the readers of one command.
#[derive(Debug, Clone, Default)]
pub struct ReadCounter(Arc<AtomicU64>);

impl ReadCounter {
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// `reader`, counting what is read through it.
    pub fn counting<R: Read>(&self, reader: R) -> Counting<R> {
        Counting {
            inner: reader,
            counter: self.clone(),
        }
    }
}

pub struct Counting<R> {
    inner: R,
    counter: ReadCounter,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The tar stream of `archive`, decompressed: from the entry `from` locates (its gzip members
/// read alone, or its access point's window then the stream from that point, the bytes before
/// the entry skipped), or from the archive's start when there is no range. A blocking reader,
/// for a blocking task.
pub async fn open_tar(
    storage: &Storage,
    archive: &str,
    from: Option<ReplaySeek>,
    counter: &ReadCounter,
) -> Result<Gunzip<Counting<SyncIoBridge<ObjectReader>>>> {
    let (part, skip, start) = match from {
        None => (ByteRange::ALL, 0, Start::Members),
        Some(ReplaySeek::Members(range)) => (
            ByteRange::new(range.offset, range.length),
            range.skip,
            Start::Members,
        ),
        Some(ReplaySeek::Point { range, point, at }) => {
            match read_window(storage, archive, at, counter).await? {
                Some(window) => (
                    ByteRange::new(range.offset, range.length),
                    range.skip,
                    Start::Point {
                        unused_bits: point.unused_bits(),
                        window,
                    },
                ),
                None => {
                    tracing::warn!(
                        "{} is missing from {}: {archive} is read from its start (`oiseau \
                         index legacy` writes it again)",
                        access_name(archive),
                        storage.describe()
                    );
                    (ByteRange::ALL, 0, Start::Members)
                }
            }
        }
    };
    let reader = read_range_for_blocking(storage, archive, part).await?;
    Ok(Gunzip {
        at_entry: part != ByteRange::ALL,
        state: GunzipState::Waiting(Some((counter.counting(reader), start))),
        skip,
    })
}

/// The window of access point number `at` of `archive`, from its windows object; `None` when
/// that object is missing.
async fn read_window(
    storage: &Storage,
    archive: &str,
    at: usize,
    counter: &ReadCounter,
) -> Result<Option<Vec<u8>>> {
    let name = access_name(archive);
    let (offset, length) = window_span(at);
    let mut window = Vec::with_capacity(length as usize);
    let mut reader = match storage.read(&name, ByteRange::new(offset, length)).await {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        read => read.with_context(|| format!("cannot read {name}"))?,
    };
    reader
        .read_to_end(&mut window)
        .await
        .with_context(|| format!("cannot read {name}"))?;
    counter.0.fetch_add(window.len() as u64, Ordering::Relaxed);
    anyhow::ensure!(
        window.len() as u64 == length,
        "{name} ends before the window of access point {at}: it is damaged; remove it, then \
         `oiseau index legacy` writes it again"
    );
    Ok(Some(window))
}

/// How a compressed range starts.
enum Start {
    /// On a gzip member's header.
    Members,
    /// At an access point inside one gzip stream.
    Point { unused_bits: u8, window: Vec<u8> },
}

/// A gzip stream, or part of one, decompressed, its first `skip` bytes dropped. Everything,
/// the decoder's making included (flate2 reads the header then), happens on the first read:
/// in the blocking task, never on the async runtime.
pub struct Gunzip<R: Read> {
    state: GunzipState<R>,
    skip: u64,
    /// Whether it starts at the entry asked for, rather than at the archive's start.
    at_entry: bool,
}

enum GunzipState<R: Read> {
    Waiting(Option<(R, Start)>),
    Members(flate2::read::MultiGzDecoder<R>),
    Point(FromPoint<R>),
}

impl<R: Read> Gunzip<R> {
    /// Whether the stream starts at the entry asked for (else at the archive's start).
    pub fn at_entry(&self) -> bool {
        self.at_entry
    }

    fn decoder(&mut self) -> std::io::Result<&mut dyn Read> {
        if let GunzipState::Waiting(waiting) = &mut self.state {
            let (compressed, start) = waiting
                .take()
                .ok_or_else(|| std::io::Error::other("the decoder was lost"))?;
            self.state = match start {
                Start::Members => {
                    GunzipState::Members(flate2::read::MultiGzDecoder::new(compressed))
                }
                Start::Point {
                    unused_bits,
                    window,
                } => GunzipState::Point(FromPoint::new(compressed, unused_bits, &window)?),
            };
        }
        match &mut self.state {
            GunzipState::Members(decoder) => Ok(decoder),
            GunzipState::Point(decoder) => Ok(decoder),
            GunzipState::Waiting(_) => Err(std::io::Error::other("the decoder was lost")),
        }
    }
}

impl<R: Read> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let skip = std::mem::take(&mut self.skip);
        let decoder = self.decoder()?;
        if skip > 0 {
            let skipped = std::io::copy(&mut decoder.take(skip), &mut std::io::sink())?;
            if skipped < skip {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the range ends before the replay's entry",
                ));
            }
        }
        decoder.read(buf)
    }
}
