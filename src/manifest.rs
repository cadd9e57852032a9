//! The manifest beside each archive, `<archive name>.json`: which replays it holds, exactly,
//! with their sizes and hashes, and the archive's own size and digest.
//!
//! The index only keeps the largest replay id per archive, which locates a replay only when
//! ids arrive in order; the manifest is exact. It is uploaded before the index line that
//! commits its archive, so every committed archive made by oiseau has one.

use serde::{Deserialize, Serialize};

use crate::digest::ArchiveDigest;
use crate::digest::ReplayHash;
use crate::journal::Journal;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Layout version of this file: 1 recorded a SHA-256, 2 a BLAKE3.
    pub format: u32,
    pub archive_id: u64,
    pub archive_name: String,
    pub size: u64,
    #[serde(flatten)]
    pub digest: ArchiveDigest,
    /// `[id, size, blake3]` per replay, in archive order: compact, and still plain JSON.
    pub replays: Vec<(u64, u64, ReplayHash)>,
}

impl Manifest {
    pub fn from_journal(journal: &Journal) -> Self {
        Manifest {
            format: 2,
            archive_id: journal.archive_id,
            archive_name: journal.archive_name.clone(),
            size: journal.archive_size,
            digest: journal.digest.clone(),
            replays: journal
                .replays
                .iter()
                .map(|r| (r.id, r.size, r.blake3))
                .collect(),
        }
    }

    /// Writes the manifest as JSON into a new local file, streamed (a manifest of 100,000
    /// replays is megabytes), ready for [`backends::Storage::upload`].
    pub fn write_to(&self, file: std::fs::File) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut out, self)?;
        std::io::Write::flush(&mut out)
    }
}
