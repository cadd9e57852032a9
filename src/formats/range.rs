//! Where a replay sits in its archive, as a manifest of format 3 records it.

use serde::{Deserialize, Serialize};

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
