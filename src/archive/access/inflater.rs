//! zlib's inflate, from `libz-rs-sys` (zlib's API over a Rust implementation), for the two
//! things flate2 does not offer: stopping at each deflate block's end (`Z_BLOCK`), where an
//! access point can be recorded, and starting in the middle of a stream from a bit offset and
//! a preset window (`inflatePrime`, `inflateSetDictionary`), as zlib's `zran` does.
//!
//! This is the one module that calls a C-style API: every call is made here, on a stream this
//! type owns and never moves, with buffers borrowed for the call only, so that the code above
//! it is safe.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::io;

use libz_rs_sys as zlib;

/// zlib's `windowBits` for a gzip stream (header and trailer checked).
const GZIP: c_int = 15 + 16;
/// zlib's `windowBits` for raw deflate data, as read from an access point.
const RAW: c_int = -15;

/// `data_type` after a call: set when inflate stopped at a block's end (or just after a gzip
/// header, before the first block).
pub const AT_BLOCK_END: c_int = 128;
/// `data_type` after a call: set while in the stream's last block.
pub const IN_LAST_BLOCK: c_int = 64;
/// `data_type` after a call: how many bits inflate took from the input and has not used yet.
const UNUSED_BITS: c_int = 63;

/// What one call did.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub consumed: usize,
    pub produced: usize,
    /// The gzip member (or raw deflate data) ended: its trailer is checked in gzip mode.
    pub stream_end: bool,
    /// zlib's `data_type`: see [`AT_BLOCK_END`], [`IN_LAST_BLOCK`], [`Step::unused_bits`].
    pub data_type: c_int,
}

impl Step {
    /// Bits taken from the input but not used yet: the stream's bit position is the bytes
    /// consumed so far times 8, less these.
    pub fn unused_bits(&self) -> u64 {
        (self.data_type & UNUSED_BITS) as u64
    }

    pub fn at_block_end(&self) -> bool {
        self.data_type & AT_BLOCK_END != 0
    }

    pub fn in_last_block(&self) -> bool {
        self.data_type & IN_LAST_BLOCK != 0
    }
}

pub struct Inflater {
    /// Boxed: zlib's state points back at its stream, which must not move once initialised.
    stream: Box<zlib::z_stream>,
}

// SAFETY: the stream and its state belong to this value alone; zlib keeps no reference to
// the thread that made them, and `&mut self` serialises every call.
unsafe impl Send for Inflater {}

impl Inflater {
    /// An inflater of a gzip stream from its first byte.
    pub fn gzip() -> io::Result<Inflater> {
        Inflater::new(GZIP)
    }

    /// An inflater of raw deflate data that starts at an access point, with the 32 KiB of
    /// decompressed data before that point as its window.
    pub fn raw(window: &[u8]) -> io::Result<Inflater> {
        let mut inflater = Inflater::new(RAW)?;
        let length = zlib::uInt::try_from(window.len()).map_err(io::Error::other)?;
        // SAFETY: the stream was initialised; `window` is valid for `length` bytes during
        // the call, and zlib copies what it needs.
        let code =
            unsafe { zlib::inflateSetDictionary(&mut *inflater.stream, window.as_ptr(), length) };
        inflater.check(code, "inflateSetDictionary")?;
        Ok(inflater)
    }

    /// Gives the inflater, before it reads any input, the `bits` high bits of the byte its
    /// point starts inside, as `value`.
    pub fn prime(&mut self, bits: u8, value: u8) -> io::Result<()> {
        // SAFETY: the stream was initialised by `new`; plain integers are passed.
        let code =
            unsafe { zlib::inflatePrime(&mut *self.stream, c_int::from(bits), c_int::from(value)) };
        self.check(code, "inflatePrime")
    }

    fn new(window_bits: c_int) -> io::Result<Inflater> {
        let mut stream = Box::new(zlib::z_stream::default());
        let size =
            c_int::try_from(std::mem::size_of::<zlib::z_stream>()).map_err(io::Error::other)?;
        // SAFETY: `stream` is a default z_stream (allocator fields set, no buffers); the
        // version string is zlib's own, NUL-terminated.
        let code =
            unsafe { zlib::inflateInit2_(&mut *stream, window_bits, zlib::zlibVersion(), size) };
        let mut inflater = Inflater { stream };
        inflater.check(code, "inflateInit2")?;
        Ok(inflater)
    }

    /// Starts reading the next gzip member, the previous one having ended (a stream of
    /// several members, as `gzip` writes when files are concatenated).
    pub fn next_member(&mut self) -> io::Result<()> {
        // SAFETY: the stream was initialised by `new`.
        let code = unsafe { zlib::inflateReset2(&mut *self.stream, GZIP) };
        self.check(code, "inflateReset2")
    }

    /// Inflates from `input` into `output`; with `to_block_end`, stops at the end of each
    /// deflate block. No progress for lack of input is not an error: `consumed` and
    /// `produced` are then 0.
    pub fn inflate(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        to_block_end: bool,
    ) -> io::Result<Step> {
        let avail_in = zlib::uInt::try_from(input.len()).unwrap_or(zlib::uInt::MAX);
        let avail_out = zlib::uInt::try_from(output.len()).unwrap_or(zlib::uInt::MAX);
        self.stream.next_in = input.as_ptr();
        self.stream.avail_in = avail_in;
        self.stream.next_out = output.as_mut_ptr();
        self.stream.avail_out = avail_out;
        let flush = if to_block_end {
            zlib::Z_BLOCK
        } else {
            zlib::Z_NO_FLUSH
        };
        // SAFETY: the stream was initialised; `next_in`/`next_out` point into `input` and
        // `output`, valid for `avail_in`/`avail_out` bytes for the duration of the call, and
        // are cleared right after it.
        let code = unsafe { zlib::inflate(&mut *self.stream, flush) };
        let step = Step {
            consumed: (avail_in - self.stream.avail_in) as usize,
            produced: (avail_out - self.stream.avail_out) as usize,
            stream_end: code == zlib::Z_STREAM_END,
            data_type: self.stream.data_type,
        };
        self.stream.next_in = std::ptr::null();
        self.stream.avail_in = 0;
        self.stream.next_out = std::ptr::null_mut();
        self.stream.avail_out = 0;
        match code {
            zlib::Z_OK | zlib::Z_STREAM_END | zlib::Z_BUF_ERROR => Ok(step),
            zlib::Z_NEED_DICT => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the gzip stream asks for a preset dictionary, which gzip never uses",
            )),
            other => Err(self.failure(other, "inflate")),
        }
    }

    fn check(&mut self, code: c_int, call: &str) -> io::Result<()> {
        if code == zlib::Z_OK {
            Ok(())
        } else {
            Err(self.failure(code, call))
        }
    }

    /// zlib's message for a failed call, as an error.
    fn failure(&self, code: c_int, call: &str) -> io::Error {
        let message = if self.stream.msg.is_null() {
            format!("{call} failed (zlib code {code})")
        } else {
            // SAFETY: zlib's messages are static NUL-terminated strings.
            let text = unsafe { std::ffi::CStr::from_ptr(self.stream.msg) };
            format!("{}", text.to_string_lossy())
        };
        let kind = if code == zlib::Z_DATA_ERROR {
            io::ErrorKind::InvalidData
        } else {
            io::ErrorKind::Other
        };
        io::Error::new(kind, message)
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by `new` and is ended once, here.
        unsafe {
            zlib::inflateEnd(&mut *self.stream);
        }
    }
}
