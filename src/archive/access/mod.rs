//! Reading into the middle of an archive that is one gzip stream, as the original tool wrote
//! them: its access points recorded on one read-through ([`record`]), then a read from the
//! point before a replay, primed with the point's window ([`read`]). See `formats::access`
//! for what is recorded.

mod inflater;
mod read;
pub mod record;

use std::io::{self, Read};

pub use read::FromPoint;
pub use record::{Indexed, index_archive};

/// Compressed bytes read from the storage at a time.
const INPUT_BUFFER: usize = 64 << 10;

/// Compressed input, buffered, with a count of the bytes handed to the inflater.
struct Input<R> {
    reader: R,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes consumed from the stream's first one read.
    consumed: u64,
}

impl<R: Read> Input<R> {
    fn new(reader: R) -> Self {
        Input {
            reader,
            buffer: vec![0; INPUT_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            consumed: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.consumed += n as u64;
    }

    /// Reads more once the buffer is used up; `false` at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        if !self.is_empty() {
            return Ok(true);
        }
        let n = loop {
            match self.reader.read(&mut self.buffer) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                read => break read?,
            }
        };
        self.start = 0;
        self.end = n;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::record::Recording;
    use super::*;
    use crate::formats::access::{AccessPoint, SPAN, WINDOW, WINDOWS_MAGIC, window_span};
    use std::io::Write;

    /// Bytes that compress somewhat, like tar headers between replays that do not.
    fn data(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if (i / 4096) % 3 == 0 {
                    (i % 251) as u8
                } else {
                    state as u8
                }
            })
            .collect()
    }

    fn gzip(members: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for member in members {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(member).unwrap();
            out.extend(encoder.finish().unwrap());
        }
        out
    }

    fn record(compressed: &[u8]) -> (Vec<u8>, record::Recorded<Vec<u8>>) {
        let mut recording = Recording::new(compressed, WINDOWS_MAGIC.to_vec()).unwrap();
        let mut out = Vec::new();
        recording.read_to_end(&mut out).unwrap();
        (out, recording.finish().unwrap())
    }

    /// Every point, read from with only its window and the bytes up to where `out` ends,
    /// gives back exactly the original bytes from there; returns the points.
    fn every_point_reads_back(original: &[u8], compressed: &[u8]) -> Vec<AccessPoint> {
        let (out, recorded) = record(compressed);
        assert_eq!(out, original);
        assert_eq!(recorded.compressed, compressed.len() as u64);
        assert!(recorded.points.len() as u64 >= original.len() as u64 / SPAN);
        for (at, point) in recorded.points.iter().enumerate() {
            let (offset, length) = window_span(at);
            let window = recorded.windows[offset as usize..(offset + length) as usize].to_vec();
            // Up to 100 KiB past the point, then to the end: both what a replay would need.
            for wanted in [100 << 10, original.len() as u64 - point.out] {
                let end = (point.out + wanted).min(original.len() as u64);
                let needed = recorded.compressed_needed(end) as usize;
                let range = &compressed[point.byte() as usize..needed];
                let mut reader = FromPoint::new(range, point.unused_bits(), &window).unwrap();
                let mut got = Vec::new();
                reader.read_to_end(&mut got).unwrap();
                assert!(
                    got.len() as u64 >= end - point.out,
                    "point {at}: {} bytes, {} wanted",
                    got.len(),
                    end - point.out
                );
                assert_eq!(
                    &got[..(end - point.out) as usize],
                    &original[point.out as usize..end as usize],
                    "point {at}"
                );
            }
        }
        assert_eq!(
            recorded.windows.len() as u64,
            WINDOWS_MAGIC.len() as u64 + WINDOW * recorded.points.len() as u64
        );
        recorded.points
    }

    #[test]
    fn a_single_stream_is_read_back_from_every_point() {
        let original = data(13 << 20);
        let points = every_point_reads_back(&original, &gzip(&[&original]));
        assert!(
            points.iter().any(|p| p.unused_bits() > 0),
            "some points start inside a byte"
        );
    }

    #[test]
    fn a_read_may_cross_into_the_next_member() {
        let original = data(11 << 20);
        let (first, second) = original.split_at(6 << 20);
        every_point_reads_back(&original, &gzip(&[first, second]));
    }

    /// Members of 1 MiB, as oiseau packs its own archives: a read from a point crosses several.
    #[test]
    fn a_read_may_cross_several_members() {
        let original = data(11 << 20);
        let members: Vec<&[u8]> = original.chunks(1 << 20).collect();
        every_point_reads_back(&original, &gzip(&members));
    }

    #[test]
    fn a_stream_cut_short_is_refused() {
        let original = data(1 << 20);
        let compressed = gzip(&[&original]);
        let mut recording =
            Recording::new(&compressed[..compressed.len() - 100], Vec::new()).unwrap();
        let error = recording.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("cut short"), "{error}");
    }
}
