//! One replay read back from its archive and checked against what its manifest recorded: the
//! one way `restore`, `verify --sample` and `serve` read a replay, so that "damaged", "not
//! there" and "the local disk failed" mean the same thing to all three.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use backends::Storage;

use crate::archive::ranged::{ReadCounter, open_tar};
use crate::formats::digest::{ReplayHash, copy_with_blake3};
use crate::formats::range::ReplaySeek;

/// What is known of a replay before it is read: from its archive's manifest, its hash, size
/// and range; without one, only its id.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedReplay {
    pub id: u64,
    pub size: Option<u64>,
    pub hash: Option<ReplayHash>,
    pub seek: Option<ReplaySeek>,
}

impl ExpectedReplay {
    /// Its name in the archive.
    pub fn name(&self) -> String {
        format!("replay_{}.osr", self.id)
    }
}

/// A replay read back and checked, and what it was written into.
pub struct ReadBack<W> {
    pub out: W,
    /// Whether a recorded hash was checked (archives without a manifest have none).
    pub checked: bool,
    /// Its time, as its tar header records it.
    pub mtime: Option<u64>,
}

/// The destination refused the bytes (a full disk, a quota): never the archive's fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LocalWriteFailed(pub String);

/// Reads replay `expected` of `archive` into `out`: from its range when its manifest has one,
/// else from the archive's start until its entry, then checks it against its recorded size
/// and hash. The failure says which: the storage's read (see [`super::ranged::broken_read`]),
/// an archive damaged there or that does not hold it, or `out`'s own ([`LocalWriteFailed`]).
pub async fn read_replay<W: Write + Send + 'static>(
    storage: &Storage,
    archive: &str,
    expected: ExpectedReplay,
    counter: &ReadCounter,
    out: W,
) -> Result<ReadBack<W>> {
    let tar = open_tar(storage, archive, expected.seek, counter).await?;
    let at_entry = tar.at_entry();
    let archive = archive.to_owned();
    tokio::task::spawn_blocking(move || find_and_copy(tar, &archive, expected, at_entry, out))
        .await
        .context("the read stopped unexpectedly")?
}

fn find_and_copy<W: Write>(
    tar: impl Read,
    archive: &str,
    expected: ExpectedReplay,
    at_entry: bool,
    mut out: W,
) -> Result<ReadBack<W>> {
    let name = expected.name();
    let mut tar = tar::Archive::new(tar);
    let entries = tar
        .entries()
        .with_context(|| format!("{archive} is not a readable .tar.gz"))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{archive} is damaged before {name}"))?;
        let found = entry
            .path()
            .map(|path| path.to_string_lossy() == name.as_str());
        if !found.unwrap_or(false) {
            // A range holds its replay's entry first: anything else there is damage.
            anyhow::ensure!(
                !at_entry,
                "{archive} does not hold {name} where its manifest says: the archive is damaged there"
            );
            continue;
        }
        let mtime = entry.header().mtime().ok();
        copy_checked(&mut entry, &expected, &mut out)
            .with_context(|| format!("{name} in {archive}"))?;
        return Ok(ReadBack {
            out,
            checked: expected.hash.is_some(),
            mtime,
        });
    }
    anyhow::bail!("{archive} does not hold {name}")
}

/// Copies one tar entry into `out`, hashing it on the way, and checks it against its recorded
/// size and hash. A failure of `out` is a [`LocalWriteFailed`].
pub fn copy_checked(
    entry: &mut impl Read,
    expected: &ExpectedReplay,
    out: &mut impl Write,
) -> Result<()> {
    let mut watched = WriteFailure::watching(out);
    let copied = copy_with_blake3(entry, &mut watched);
    if let Some(local) = watched.failed {
        return Err(LocalWriteFailed(local).into());
    }
    let (size, hash) = copied.context("the archive is damaged there")?;
    if let Some(recorded) = expected.size
        && recorded != size
    {
        anyhow::bail!(
            "it has {size} bytes where its manifest records {recorded}: the archive is damaged there"
        );
    }
    if expected.hash.is_some_and(|recorded| recorded != hash) {
        anyhow::bail!("it does not match its recorded hash: the archive is damaged there");
    }
    Ok(())
}

/// A writer that remembers its own failure, to tell a full disk from a damaged archive when a
/// copy between the two fails.
struct WriteFailure<W> {
    inner: W,
    /// The first failure, in words.
    failed: Option<String>,
}

impl<W: Write> WriteFailure<W> {
    fn watching(inner: W) -> Self {
        WriteFailure {
            inner,
            failed: None,
        }
    }

    fn note<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        result.inspect_err(|e| {
            self.failed.get_or_insert_with(|| backends::io_words(e));
        })
    }
}

impl<W: Write> Write for WriteFailure<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes);
        self.note(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.inner.flush();
        self.note(flushed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: &[u8] = b"a replay's bytes";

    fn expected(size: Option<u64>, hash: Option<ReplayHash>) -> ExpectedReplay {
        ExpectedReplay {
            id: 7,
            size,
            hash,
            seek: None,
        }
    }

    fn hash_of(bytes: &[u8]) -> ReplayHash {
        copy_with_blake3(&mut &bytes[..], &mut std::io::sink())
            .unwrap()
            .1
    }

    #[test]
    fn a_replay_as_recorded_is_copied_whole() {
        let mut out = Vec::new();
        let recorded = expected(Some(BYTES.len() as u64), Some(hash_of(BYTES)));
        copy_checked(&mut &BYTES[..], &recorded, &mut out).unwrap();
        assert_eq!(out, BYTES);
    }

    #[test]
    fn a_replay_unlike_its_record_is_damage() {
        let other_hash = expected(None, Some(hash_of(b"something else")));
        let error = copy_checked(&mut &BYTES[..], &other_hash, &mut Vec::new()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("does not match its recorded hash"),
            "{error}"
        );
        let other_size = expected(Some(3), None);
        let error = copy_checked(&mut &BYTES[..], &other_size, &mut Vec::new()).unwrap_err();
        assert!(
            error.to_string().contains("where its manifest records 3"),
            "{error}"
        );
        assert!(error.downcast_ref::<LocalWriteFailed>().is_none());
    }

    /// A destination that is full after `room` bytes.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.room < bytes.len() {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            self.room -= bytes.len();
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_is_never_taken_for_a_damaged_archive() {
        let recorded = expected(None, Some(hash_of(BYTES)));
        let error = copy_checked(&mut &BYTES[..], &recorded, &mut Full { room: 4 }).unwrap_err();
        let local = error
            .downcast_ref::<LocalWriteFailed>()
            .expect("the disk's failure");
        assert!(!local.0.contains("damaged"), "{local}");
    }
}
