//! The manifest beside each archive, `<archive name>.json`: which replays it holds, exactly,
//! with their sizes and hashes, and the archive's own size and digest.
//!
//! The index only keeps the largest replay id per archive, which locates a replay only when
//! ids arrive in order; the manifest is exact. It is uploaded before the index line that
//! commits its archive, so every committed archive made by oiseau has one.
//!
//! Format 3 also says where each replay can be read back on its own, in the spirit of
//! eStargz's table of contents but beside the archive, so the `.tar.gz` stays exactly what
//! GNU tar, gzip and Python read: the archive is a series of gzip members (one per MiB of the
//! tar stream), and a replay's [`ReplayRange`] is the compressed bytes of the members holding
//! its tar header and data, with how far into their decompressed bytes the header starts.
//!
//! Format 4 is the manifest of an archive oiseau did not make (the original tool's: one gzip
//! stream), recorded by reading the archive itself (`oiseau index legacy`): the same replays
//! and digest, plus an access index ([`AccessIndex`]) and, per replay, a range read from its
//! access point (`access_ranges`; a separate field, so that a version of oiseau that predates
//! it reads such archives from their start instead of taking these for member ranges).

use serde::{Deserialize, Serialize};

use crate::formats::access::AccessIndex;
use crate::formats::digest::ArchiveDigest;
use crate::formats::digest::ReplayHash;
use crate::formats::range::{ReplayRange, ReplaySeek};

/// Where a manifest's list of replays comes from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Written as the archive was packed.
    #[default]
    Packing,
    /// Read back from the archive, long after it was made: its hashes say what the archive
    /// held then, not what the replays were before they were packed.
    Archive,
}

impl Source {
    fn is_packing(&self) -> bool {
        *self == Source::Packing
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Layout version of this file: 1 recorded a SHA-256, 2 a BLAKE3, 3 adds `ranges`, 4 is
    /// recorded from the archive with an access index.
    pub format: u32,
    pub archive_id: u64,
    pub archive_name: String,
    pub size: u64,
    #[serde(flatten)]
    pub digest: ArchiveDigest,
    /// `[id, size, blake3]` per replay, in archive order: compact, and still plain JSON.
    pub replays: Vec<(u64, u64, ReplayHash)>,
    /// Format 3: one per replay, in the same order (empty in earlier formats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<ReplayRange>,
    #[serde(default, skip_serializing_if = "Source::is_packing")]
    pub source: Source,
    /// Format 4: the archive's access points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessIndex>,
    /// Format 4: one per replay, in the same order: `offset` is an access point's first byte,
    /// `length` the bytes to read from there, `skip` the decompressed bytes from the point to
    /// the replay's tar header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_ranges: Vec<ReplayRange>,
}

impl Manifest {
    /// Why this manifest does not describe the archive `object` of index id `archive_id`, if
    /// it does not: a manifest copied or renamed from another archive would otherwise be
    /// believed, and its replays sought in the wrong archive.
    pub fn contradicts(&self, object: &backends::ObjectMeta, archive_id: u64) -> Option<String> {
        if self.archive_id != archive_id || self.archive_name != object.name {
            Some(format!(
                "its manifest describes archive {} ({}), not {} ({})",
                self.archive_id, self.archive_name, archive_id, object.name
            ))
        } else if self.size != object.size {
            Some(format!(
                "its manifest records {} bytes but the archive on the storage has {}",
                self.size, object.size
            ))
        } else {
            None
        }
    }

    /// The largest replay id it records: what the archive's index line says.
    pub fn max_replay_id(&self) -> u64 {
        self.replays.iter().map(|(id, _, _)| *id).max().unwrap_or(0)
    }

    /// Where in its list replay `id` is, when this manifest records it. Recorded twice (never
    /// by oiseau), the later one wins, as tar's extraction would.
    pub fn position_of(&self, id: u64) -> Option<usize> {
        self.replays
            .iter()
            .rposition(|(replay, _, _)| *replay == id)
    }

    /// How replay number `at` of the list is read alone, when this manifest says.
    pub fn seek(&self, at: usize) -> Option<ReplaySeek> {
        self.recorded_ranges()
            .get(at)
            .and_then(|range| self.seek_of(*range))
    }

    /// A recorded range, as [`Manifest::seek`] gives it: for an access range, with the point
    /// it starts from (none when the manifest lists no point there: it is then read whole).
    pub fn seek_of(&self, range: ReplayRange) -> Option<ReplaySeek> {
        match &self.access {
            None => Some(ReplaySeek::Members(range)),
            Some(access) => {
                let (at, point) = access.point_at_byte(range.offset)?;
                Some(ReplaySeek::Point { range, point, at })
            }
        }
    }

    /// The recorded ranges, whichever kind this manifest has, one per replay (or none).
    pub fn recorded_ranges(&self) -> &[ReplayRange] {
        if self.access.is_some() {
            &self.access_ranges
        } else {
            &self.ranges
        }
    }

    /// Writes the manifest as JSON, streamed (a manifest of 100,000 replays is megabytes).
    pub fn write_to(&self, out: impl std::io::Write) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(out);
        serde_json::to_writer(&mut out, self)?;
        std::io::Write::flush(&mut out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITTEN: &str = r#"{"format":3,"archive_id":7,"archive_name":"1700000000_replays_7.tar.gz","size":42,"blake3":"ab","replays":[[5,10,"0000000000000000000000000000000000000000000000000000000000000001"]],"ranges":[[0,42,0]]}"#;

    #[test]
    fn a_manifest_reads_back_to_the_bytes_it_was_written_as() {
        let manifest: Manifest = serde_json::from_str(WRITTEN).unwrap();
        assert_eq!(manifest.digest, ArchiveDigest::Blake3("ab".to_owned()));
        assert_eq!(serde_json::to_string(&manifest).unwrap(), WRITTEN);
    }

    #[test]
    fn a_manifest_of_an_earlier_format_reads_with_its_sha256() {
        let earlier = WRITTEN
            .replace(r#""blake3":"ab""#, r#""sha256":"cd""#)
            .replace(r#","ranges":[[0,42,0]]"#, "");
        let manifest: Manifest = serde_json::from_str(&earlier).unwrap();
        assert_eq!(manifest.digest, ArchiveDigest::Sha256("cd".to_owned()));
        assert!(manifest.ranges.is_empty());
    }

    #[test]
    fn a_manifest_without_its_archive_digest_is_refused() {
        let without = WRITTEN.replace(r#""blake3":"ab","#, "");
        assert!(serde_json::from_str::<Manifest>(&without).is_err());
    }
}
