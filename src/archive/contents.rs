//! An archive read through: each member's replay id, size and BLAKE3, where it lies in the
//! decompressed tar stream, and the digest of the archive's own bytes. What `verify --deep`
//! compares with a manifest, and what `index legacy` records one from.

use std::io::{self, Read};

use anyhow::{Context, Result};

use crate::formats::digest::{ArchiveDigest, DigestHasher, ReplayHash, copy_with_blake3};
use crate::temp_folder::replay_id;

/// One replay of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub size: u64,
    pub hash: ReplayHash,
    /// Where its tar header starts in the decompressed stream (after any extended header
    /// that precedes it: the header alone is enough to read it).
    pub header_at: u64,
    /// Where its data ends in the decompressed stream.
    pub data_end: u64,
}

/// Every member of the tar stream `tar`, in order. A member that is not a replay, or that
/// cannot be read, stops the reading with an error naming it.
pub fn members(tar: impl Read) -> Result<Vec<Member>> {
    let mut archive = tar::Archive::new(tar);
    let mut members = Vec::new();
    for entry in archive.entries().context("not a readable .tar.gz")? {
        let mut entry = entry.context("damaged tar stream")?;
        // Quoted and escaped: a damaged header may name a member with any bytes, which must
        // not reach the terminal as they are.
        let name = entry.path()?.to_string_lossy().into_owned();
        let id = replay_id(&name).with_context(|| format!("holds {name:?}, not a replay"))?;
        let header_at = entry.raw_header_position();
        let data_at = entry.raw_file_position();
        let (size, hash) = copy_with_blake3(&mut entry, &mut io::sink())
            .with_context(|| format!("damaged inside {name:?}"))?;
        members.push(Member {
            id,
            size,
            hash,
            header_at,
            data_end: data_at + size,
        });
    }
    Ok(members)
}

/// The replays of `members` as a manifest lists them: `[id, size, blake3]`.
pub fn replays(members: &[Member]) -> Vec<(u64, u64, ReplayHash)> {
    members.iter().map(|m| (m.id, m.size, m.hash)).collect()
}

/// A reader that digests what is read through it.
pub struct Digesting<R> {
    inner: R,
    hasher: Option<DigestHasher>,
}

impl<R: Read> Digesting<R> {
    /// Digests with `hasher`; with none, passes the bytes through.
    pub fn new(inner: R, hasher: Option<DigestHasher>) -> Self {
        Digesting { inner, hasher }
    }

    /// Reads what is left (the gzip and tar readers may stop before the last padding bytes),
    /// then gives the digest of everything.
    pub fn finish(mut self) -> io::Result<Option<ArchiveDigest>> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hasher.map(DigestHasher::finish))
    }
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}
