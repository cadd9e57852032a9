//! An archive read through once while its access points are recorded: the decompressed tar
//! stream, as any gzip reader gives it, and on the way the points, their windows and how far
//! into the compressed bytes each stretch of output needed to read.

use std::io::{self, Read, Write};

use anyhow::{Context, Result};

use super::Input;
use super::inflater::Inflater;
use crate::archive::contents::{self, Digesting, Member};
use crate::formats::access::{AccessIndex, AccessPoint, SPAN, WINDOW};
use crate::formats::digest::{ArchiveDigest, DigestHasher};
use crate::formats::range::ReplayRange;

/// Output produced per inflate call at most: a replay's recorded end is this close to what
/// reading it really needs.
const OUTPUT_STEP: usize = 16 << 10;

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
    let digest = digesting.finish().context("cannot read it to the end")?;
    Ok(Indexed {
        members,
        digest: digest.context("the digest was not computed")?,
        size: recorded.compressed,
        recorded,
    })
}

/// What a read-through recorded.
pub struct Recorded<W> {
    pub points: Vec<AccessPoint>,
    /// Where the windows were written, one per point, in order.
    pub windows: W,
    /// `(decompressed bytes, compressed bytes)` after each call that produced output: the
    /// compressed bytes that suffice to reach any decompressed offset.
    reach: Vec<(u64, u64)>,
    /// Compressed bytes read in all.
    pub compressed: u64,
}

impl<W> Recorded<W> {
    /// Compressed bytes from the archive's start that suffice to decompress up to `out`.
    pub fn compressed_needed(&self, out: u64) -> u64 {
        let at = self.reach.partition_point(|&(produced, _)| produced < out);
        self.reach
            .get(at)
            .map_or(self.compressed, |&(_, consumed)| consumed)
    }
}

/// The decompressed bytes of a gzip stream (of one member or more), recording an access point
/// at the first block boundary after every [`SPAN`] of output, its window written to
/// `windows`.
pub struct Recording<R, W> {
    input: Input<R>,
    inflater: Inflater,
    produced: u64,
    /// The last [`WINDOW`] bytes of output, as a ring starting at `history_at` (zeros before
    /// the stream's start, which deflate never refers to).
    history: Vec<u8>,
    history_at: usize,
    recorded: Recorded<W>,
    finished: bool,
}

impl<R: Read, W: Write> Recording<R, W> {
    pub fn new(compressed: R, windows: W) -> io::Result<Self> {
        Ok(Recording {
            input: Input::new(compressed),
            inflater: Inflater::gzip()?,
            produced: 0,
            history: vec![0; WINDOW as usize],
            history_at: 0,
            recorded: Recorded {
                points: Vec::new(),
                windows,
                reach: Vec::new(),
                compressed: 0,
            },
            finished: false,
        })
    }

    /// What was recorded; the stream must have been read to its end.
    pub fn finish(self) -> io::Result<Recorded<W>> {
        if !self.finished {
            return Err(io::Error::other("the archive was not read to its end"));
        }
        Ok(self.recorded)
    }

    fn remember(&mut self, output: &[u8]) {
        let window = self.history.len();
        let output = &output[output.len().saturating_sub(window)..];
        let first = output.len().min(window - self.history_at);
        self.history[self.history_at..self.history_at + first].copy_from_slice(&output[..first]);
        self.history[..output.len() - first].copy_from_slice(&output[first..]);
        self.history_at = (self.history_at + output.len()) % window;
    }

    fn record_point(&mut self, unused_bits: u64) -> io::Result<()> {
        let due = self
            .recorded
            .points
            .last()
            .is_none_or(|last| self.produced - last.out >= SPAN);
        if !due {
            return Ok(());
        }
        self.recorded.points.push(AccessPoint {
            bit: self.input.consumed * 8 - unused_bits,
            out: self.produced,
        });
        let (newer, older) = self.history.split_at(self.history_at);
        self.recorded.windows.write_all(older)?;
        self.recorded.windows.write_all(newer)
    }
}

impl<R: Read, W: Write> Read for Recording<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wanted = buf.len().min(OUTPUT_STEP);
        while !self.finished && wanted > 0 {
            if self.input.is_empty() && !self.input.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the archive ends inside its gzip stream: it is cut short",
                ));
            }
            let step = self
                .inflater
                .inflate(self.input.pending(), &mut buf[..wanted], true)
                .map_err(|e| {
                    if self.produced == 0 {
                        io::Error::new(e.kind(), format!("it is not a gzip stream ({e})"))
                    } else {
                        e
                    }
                })?;
            self.input.consume(step.consumed);
            if step.produced > 0 {
                self.remember(&buf[..step.produced]);
                self.produced += step.produced as u64;
                self.recorded
                    .reach
                    .push((self.produced, self.input.consumed));
            }
            if step.stream_end {
                // Another member may follow, as when gzip files are concatenated.
                if self.input.is_empty() && !self.input.fill()? {
                    self.finished = true;
                    self.recorded.compressed = self.input.consumed;
                } else {
                    self.inflater.next_member()?;
                }
            } else if step.at_block_end() && !step.in_last_block() {
                self.record_point(step.unused_bits())?;
            }
            if step.produced > 0 {
                return Ok(step.produced);
            }
        }
        Ok(0)
    }
}
