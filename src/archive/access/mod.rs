//! Reading into the middle of an archive that is one gzip stream, as the original tool wrote
//! them: its access points recorded on one read-through ([`record`]), then a read from the
//! point before a replay, primed with the point's window ([`FromPoint`]). See
//! `formats::access` for what is recorded.

mod inflater;
pub mod record;

use std::io::{self, Read, Write};

use anyhow::{Context, Result};
use inflater::Inflater;
use record::{Recorded, Recording};

use crate::archive::contents::{self, Digesting, Member};
use crate::formats::access::{AccessIndex, SPAN};
use crate::formats::digest::{ArchiveDigest, DigestHasher};
use crate::formats::range::ReplayRange;

/// Compressed bytes read from the storage at a time.
const INPUT_BUFFER: usize = 64 << 10;

/// Bytes of a gzip member's trailer (CRC-32 and size), after its deflate data.
const GZIP_TRAILER: usize = 8;

/// An archive read through once, with what a manifest of format 4 records of it.
pub struct Indexed<W> {
    pub members: Vec<Member>,
    pub recorded: Recorded<W>,
    /// The BLAKE3 of the archive's bytes, and how many there were.
    pub digest: ArchiveDigest,
    pub size: u64,
}

impl<W> Indexed<W> {
    /// The access points.
    pub fn access(&self) -> AccessIndex {
        AccessIndex {
            span: SPAN,
            points: self.recorded.points.clone(),
        }
    }

    /// Per member, what to read to get it alone: from the last access point before its tar
    /// header to where the compressed bytes suffice for its data's end.
    pub fn access_ranges(&self) -> Result<Vec<ReplayRange>> {
        let access = self.access();
        self.members
            .iter()
            .map(|member| {
                let (_, point) = access
                    .point_before(member.header_at)
                    .context("no access point precedes a member")?;
                let end = self.recorded.compressed_needed(member.data_end);
                Ok(ReplayRange {
                    offset: point.byte(),
                    length: end.saturating_sub(point.byte()),
                    skip: member.header_at - point.out,
                })
            })
            .collect()
    }
}

/// Reads the archive `compressed` through: its replays, its digest, and its access points,
/// their windows written to `windows`.
pub fn index_archive<W: Write>(compressed: impl Read, windows: W) -> Result<Indexed<W>> {
    let mut digesting = Digesting::new(compressed, Some(DigestHasher::blake3()));
    let mut recording = Recording::new(&mut digesting, windows)?;
    let members = contents::members(&mut recording)?;
    // The padding after the tar stream, and the gzip trailer, whose checksum is checked.
    io::copy(&mut recording, &mut io::sink()).context("cannot read it to the end")?;
    let recorded = recording.finish()?;
    let (digest, size) = digesting.finish().context("cannot read it to the end")?;
    Ok(Indexed {
        members,
        recorded,
        digest: digest.context("the digest was not computed")?,
        size,
    })
}

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

/// The decompressed bytes of a gzip stream from an access point on: `compressed` starts at the
/// byte holding the point's first bit, and ends where the reader's caller needs no more. The
/// end of `compressed` ends this stream, without error: the reader above knows whether it got
/// what it wanted.
pub struct FromPoint<R> {
    input: Input<R>,
    start: Option<Start>,
    inflater: Option<Inflater>,
    /// Trailer bytes still to pass over after a member's deflate data ended.
    trailer: usize,
    ended: bool,
}

/// What a point's inflater is primed with.
struct Start {
    unused_bits: u8,
    window: Vec<u8>,
}

impl<R: Read> FromPoint<R> {
    /// `unused_bits` of the first byte of `compressed` belong to the point (its high bits);
    /// `window` is the decompressed data before it.
    pub fn new(compressed: R, unused_bits: u8, window: Vec<u8>) -> Self {
        FromPoint {
            input: Input::new(compressed),
            start: Some(Start {
                unused_bits,
                window,
            }),
            inflater: None,
            trailer: 0,
            ended: false,
        }
    }

    /// The inflater, primed on first use: with the point's bits of the first byte, then its
    /// window. Made on the first read, so on the blocking task that reads.
    fn inflater(&mut self) -> io::Result<&mut Inflater> {
        if let Some(start) = self.start.take() {
            let mut first_bits = 0;
            if start.unused_bits > 0 {
                if !self.input.fill()? {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the range read is empty",
                    ));
                }
                first_bits = self.input.pending()[0] >> (8 - start.unused_bits);
                self.input.consume(1);
            }
            self.inflater = Some(Inflater::primed(
                start.unused_bits,
                first_bits,
                &start.window,
            )?);
        }
        self.inflater
            .as_mut()
            .ok_or_else(|| io::Error::other("the inflater was lost"))
    }
}

impl<R: Read> Read for FromPoint<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inflater()?;
        while !self.ended && !buf.is_empty() {
            if !self.input.fill()? {
                self.ended = true;
                break;
            }
            if self.trailer > 0 {
                let passed = self.trailer.min(self.input.pending().len());
                self.input.consume(passed);
                self.trailer -= passed;
                if self.trailer == 0 {
                    self.inflater()?.next_member()?;
                }
                continue;
            }
            let pending = &self.input.buffer[self.input.start..self.input.end];
            let Some(inflater) = self.inflater.as_mut() else {
                return Err(io::Error::other("the inflater was lost"));
            };
            let step = inflater.inflate(pending, buf, false)?;
            self.input.consume(step.consumed);
            if step.stream_end {
                // Raw deflate data stops before its member's trailer; a next member is read in
                // gzip mode, whose own trailer inflate checks.
                self.trailer = GZIP_TRAILER;
            }
            if step.produced > 0 {
                return Ok(step.produced);
            }
            if step.consumed == 0 && !step.stream_end {
                return Err(io::Error::other("the inflater made no progress"));
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::record::Recording;
    use super::*;
    use crate::formats::access::{SPAN, WINDOW, WINDOWS_MAGIC, window_span};
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
    /// gives back exactly the original bytes from there.
    fn every_point_reads_back(original: &[u8], compressed: &[u8]) {
        let (out, recorded) = record(compressed);
        assert_eq!(out, original);
        assert_eq!(recorded.compressed, compressed.len() as u64);
        assert!(recorded.points.len() as u64 >= original.len() as u64 / SPAN);
        assert!(
            recorded.points.iter().any(|p| p.unused_bits() > 0),
            "some points start inside a byte"
        );
        for (at, point) in recorded.points.iter().enumerate() {
            let (offset, length) = window_span(at);
            let window = recorded.windows[offset as usize..(offset + length) as usize].to_vec();
            // Up to 100 KiB past the point, then to the end: both what a replay would need.
            for wanted in [100 << 10, original.len() as u64 - point.out] {
                let end = (point.out + wanted).min(original.len() as u64);
                let needed = recorded.compressed_needed(end) as usize;
                let range = &compressed[point.byte() as usize..needed];
                let mut reader = FromPoint::new(range, point.unused_bits(), window.clone());
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
    }

    #[test]
    fn a_single_stream_is_read_back_from_every_point() {
        let original = data(13 << 20);
        every_point_reads_back(&original, &gzip(&[&original]));
    }

    #[test]
    fn a_read_may_cross_into_the_next_member() {
        let original = data(11 << 20);
        let (first, second) = original.split_at(6 << 20);
        every_point_reads_back(&original, &gzip(&[first, second]));
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
