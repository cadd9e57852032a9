//! A read from an access point: the inflater primed with the point's bits and window, then
//! raw deflate data up to where the caller needs no more.

use std::io::{self, Read};

use super::Input;
use super::inflater::Inflater;

/// Bytes of a gzip member's trailer (CRC-32 and size), after its deflate data.
const GZIP_TRAILER: usize = 8;

/// The decompressed bytes of a gzip stream from an access point on: `compressed` starts at the
/// byte holding the point's first bit, and ends where the reader's caller needs no more. The
/// end of `compressed` ends this stream, without error: the reader above knows whether it got
/// what it wanted.
pub struct FromPoint<R> {
    input: Input<R>,
    inflater: Inflater,
    /// How many high bits of the first byte belong to the point, until they are given to the
    /// inflater on the first read (none when the point starts on a byte).
    unused_bits: Option<u8>,
    /// Trailer bytes still to pass over after the first member's deflate data ended.
    trailer: usize,
    /// Whether the inflater still reads the point's member as raw deflate data (the members
    /// after it are read in gzip mode).
    raw: bool,
    ended: bool,
}

impl<R: Read> FromPoint<R> {
    /// `unused_bits` of the first byte of `compressed` belong to the point (its high bits);
    /// `window` is the decompressed data before it. Made on the first read of the archive's
    /// stream, so on the blocking task that reads.
    pub fn new(compressed: R, unused_bits: u8, window: &[u8]) -> io::Result<Self> {
        Ok(FromPoint {
            input: Input::new(compressed),
            inflater: Inflater::raw(window)?,
            unused_bits: (unused_bits > 0).then_some(unused_bits),
            trailer: 0,
            raw: true,
            ended: false,
        })
    }

    /// Gives the inflater the point's bits of the first byte, once.
    fn prime(&mut self) -> io::Result<()> {
        let Some(bits) = self.unused_bits.take() else {
            return Ok(());
        };
        if !self.input.fill()? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the range read is empty",
            ));
        }
        let value = self.input.pending()[0] >> (8 - bits);
        self.input.consume(1);
        self.inflater.prime(bits, value)
    }
}

impl<R: Read> Read for FromPoint<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.prime()?;
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
                    self.inflater.next_member()?;
                    self.raw = false;
                }
                continue;
            }
            let step = self.inflater.inflate(self.input.pending(), buf, false)?;
            self.input.consume(step.consumed);
            if step.stream_end {
                // Raw deflate data stops before its member's trailer; the next members are read
                // in gzip mode, whose own trailers inflate checks and passes.
                if self.raw {
                    self.trailer = GZIP_TRAILER;
                } else {
                    self.inflater.next_member()?;
                }
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
