//! The access index of an archive that is one gzip stream (the original tool's): where a read
//! can start in the middle of the stream, after zlib's `zran`. Every [`SPAN`] of decompressed
//! data, at the first deflate block boundary, a point records the compressed bit offset and
//! the decompressed offset; its window, the 32 KiB of decompressed data before it, is what
//! the inflater needs to resolve back-references from there.
//!
//! The points are listed in the archive's manifest; the windows, 32 KiB each and in point
//! order, are the object `<archive>.access` (`names::access_name`: [`WINDOWS_MAGIC`], then the
//! windows), so that a read fetches the one window it starts from.

use serde::{Deserialize, Serialize};

/// Decompressed bytes between access points. A replay is read from the last point before it
/// up to its own end: at most this much plus a deflate block before it, and its own bytes.
/// The windows cost 32 KiB per point: 8 MiB per GiB of decompressed data.
pub const SPAN: u64 = 4 << 20;

/// Bytes of decompressed history a deflate stream may refer back to.
pub const WINDOW: u64 = 32 << 10;

/// The first bytes of a windows object.
pub const WINDOWS_MAGIC: &[u8; 8] = b"OISACC01";

/// Where a read can start: `bit` bits into the compressed archive (its gzip header included),
/// at decompressed offset `out`. Written as `[bit, out]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "(u64, u64)", into = "(u64, u64)")]
pub struct AccessPoint {
    pub bit: u64,
    pub out: u64,
}

impl From<(u64, u64)> for AccessPoint {
    fn from((bit, out): (u64, u64)) -> Self {
        AccessPoint { bit, out }
    }
}

impl From<AccessPoint> for (u64, u64) {
    fn from(point: AccessPoint) -> Self {
        (point.bit, point.out)
    }
}

impl AccessPoint {
    /// The byte a read from this point starts at: the one holding its first bit.
    pub fn byte(&self) -> u64 {
        self.bit / 8
    }

    /// How many bits of [`AccessPoint::byte`] belong to the point's data (its high bits); 0
    /// when the point starts on a byte, which is then read whole.
    pub fn unused_bits(&self) -> u8 {
        match self.bit % 8 {
            0 => 0,
            used => (8 - used) as u8,
        }
    }
}

/// An archive's access points, in a manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessIndex {
    /// Decompressed bytes between points, as it was recorded.
    pub span: u64,
    pub points: Vec<AccessPoint>,
}

impl AccessIndex {
    /// The point a read whose first byte is `byte` starts from, with its place in the list.
    pub fn point_at_byte(&self, byte: u64) -> Option<(usize, AccessPoint)> {
        let at = self.points.partition_point(|p| p.byte() < byte);
        self.points
            .get(at)
            .filter(|p| p.byte() == byte)
            .map(|p| (at, *p))
    }

    /// The size of the windows object of these points.
    pub fn windows_size(&self) -> u64 {
        window_span(self.points.len()).0
    }

    /// The last point at or before decompressed offset `out`.
    pub fn point_before(&self, out: u64) -> Option<(usize, AccessPoint)> {
        let after = self.points.partition_point(|p| p.out <= out);
        after.checked_sub(1).map(|at| (at, self.points[at]))
    }
}

/// Where the window of point number `at` lies in the windows object: offset and length.
pub fn window_span(at: usize) -> (u64, u64) {
    (WINDOWS_MAGIC.len() as u64 + at as u64 * WINDOW, WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_says_which_bits_of_its_first_byte_are_its_own() {
        let on_a_byte = AccessPoint { bit: 80, out: 0 };
        assert_eq!((on_a_byte.byte(), on_a_byte.unused_bits()), (10, 0));
        let inside = AccessPoint { bit: 83, out: 0 };
        assert_eq!((inside.byte(), inside.unused_bits()), (10, 5));
    }

    #[test]
    fn points_are_found_by_their_byte_and_before_an_offset() {
        let index = AccessIndex {
            span: SPAN,
            points: vec![
                AccessPoint { bit: 80, out: 0 },
                AccessPoint {
                    bit: 9003,
                    out: SPAN + 10,
                },
                AccessPoint {
                    bit: 19_000,
                    out: 2 * SPAN + 3,
                },
            ],
        };
        assert_eq!(index.point_at_byte(1125).map(|(at, _)| at), Some(1));
        assert_eq!(index.point_at_byte(1126), None);
        assert_eq!(index.point_before(0).map(|(at, _)| at), Some(0));
        assert_eq!(index.point_before(SPAN + 9).map(|(at, _)| at), Some(0));
        assert_eq!(index.point_before(SPAN + 10).map(|(at, _)| at), Some(1));
        assert_eq!(index.point_before(u64::MAX).map(|(at, _)| at), Some(2));
        assert_eq!(window_span(2), (8 + 2 * WINDOW, WINDOW));
    }
}
