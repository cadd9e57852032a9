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
    start: Option<Start>,
    inflater: Option<Inflater>,
    /// Trailer bytes still to pass over after the first member's deflate data ended.
    trailer: usize,
    /// Whether the inflater still reads the point's member as raw deflate data (the members
    /// after it are read in gzip mode).
    raw: bool,
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
            raw: true,
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
                    self.raw = false;
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
                // Raw deflate data stops before its member's trailer; the next members are read
                // in gzip mode, whose own trailers inflate checks and passes.
                if self.raw {
                    self.trailer = GZIP_TRAILER;
                } else {
                    self.inflater()?.next_member()?;
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
