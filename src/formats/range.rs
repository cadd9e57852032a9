//! Where a replay sits in its archive, as a manifest of format 3 or 4 records it.

use serde::{Deserialize, Serialize};

use crate::formats::access::AccessPoint;

/// Where one replay can be read from its archive alone: `length` bytes from `offset` are whole
/// gzip members; decompressed, they hold the replay's tar header `skip` bytes in, then its
/// data. Written as `[offset, length, skip]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "(u64, u64, u64)", into = "(u64, u64, u64)")]
pub struct ReplayRange {
    pub offset: u64,
    pub length: u64,
    pub skip: u64,
}

impl From<(u64, u64, u64)> for ReplayRange {
    fn from((offset, length, skip): (u64, u64, u64)) -> Self {
        ReplayRange {
            offset,
            length,
            skip,
        }
    }
}

impl From<ReplayRange> for (u64, u64, u64) {
    fn from(range: ReplayRange) -> Self {
        (range.offset, range.length, range.skip)
    }
}

/// How one replay is read alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaySeek {
    /// From whole gzip members (oiseau's own archives, format 3).
    Members(ReplayRange),
    /// From access point number `at` of a single gzip stream (format 4), whose window is read
    /// first.
    Point {
        range: ReplayRange,
        point: AccessPoint,
        at: usize,
    },
}

impl ReplaySeek {
    /// The range as the manifest records it.
    pub fn range(&self) -> ReplayRange {
        match self {
            ReplaySeek::Members(range) | ReplaySeek::Point { range, .. } => *range,
        }
    }
}
