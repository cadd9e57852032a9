//! An archive's tar stream read back from the storage: from one replay's entry alone, through
//! the range its manifest records (format 3), or from the archive's start; and a count of the
//! bytes read on the way, so that a restore can say what it cost.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use backends::{ByteRange, ObjectReader, Storage};
use tokio_util::io::SyncIoBridge;

use crate::formats::range::ReplayRange;
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
/// read alone, the bytes before the entry skipped), or from the archive's start when there is
/// no range. A blocking reader, for a blocking task.
pub async fn open_tar(
    storage: &Storage,
    archive: &str,
    from: Option<ReplayRange>,
    counter: &ReadCounter,
) -> Result<Gunzip<Counting<SyncIoBridge<ObjectReader>>>> {
    let (part, skip) = from.map_or((ByteRange::ALL, 0), |range| {
        (ByteRange::new(range.offset, range.length), range.skip)
    });
    let reader = read_range_for_blocking(storage, archive, part).await?;
    Ok(Gunzip::new(counter.counting(reader), skip))
}

/// A multi-member gzip stream, decompressed, its first `skip` bytes dropped. Everything,
/// the decoder's making included (flate2 reads the header then), happens on the first read:
/// in the blocking task, never on the async runtime.
pub struct Gunzip<R: Read> {
    state: GunzipState<R>,
    skip: u64,
}

enum GunzipState<R: Read> {
    Waiting(Option<R>),
    Reading(flate2::read::MultiGzDecoder<R>),
}

impl<R: Read> Gunzip<R> {
    fn new(compressed: R, skip: u64) -> Self {
        Gunzip {
            state: GunzipState::Waiting(Some(compressed)),
            skip,
        }
    }
}

impl<R: Read> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let GunzipState::Waiting(compressed) = &mut self.state {
            let compressed = compressed.take().expect("made once");
            self.state = GunzipState::Reading(flate2::read::MultiGzDecoder::new(compressed));
        }
        let GunzipState::Reading(decoder) = &mut self.state else {
            unreachable!("made just above");
        };
        if self.skip > 0 {
            let skipped = std::io::copy(&mut decoder.take(self.skip), &mut std::io::sink())?;
            if skipped < self.skip {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the range ends before the replay's entry",
                ));
            }
            self.skip = 0;
        }
        decoder.read(buf)
    }
}
