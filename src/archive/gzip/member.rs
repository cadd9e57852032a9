//! One gzip member: a block of the tar stream, stored as it is, deflated, or (in
//! [`Level::Auto`]) stored and deflated by parts, whichever its bytes call for.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::Level;

/// In [`Level::Auto`], a block is judged in parts of this size, and only the parts worth it
/// are deflated: a batch where some replays end in long runs of zeros mixes parts that shrink
/// to nothing with LZMA data that deflate only slows down on. A block with no such part is
/// stored as it is. (Judging whole blocks from samples missed zero runs between the samples.)
const PART: usize = 16 * 1024;
/// Each part is judged by `SAMPLES` slices of `SAMPLE` bytes spread over it: an eighth of
/// the data is counted.
const SAMPLE: usize = 512;
const SAMPLES: usize = 4;
/// A part is compressed only when its sample's byte entropy promises to shrink it to this
/// share of its size or less. Deflating costs about fifty times a stored copy: on the
/// generated replay corpus, compressing the blocks that shrank by 3 % or more took a quarter
/// of the run and saved 0.15 % of the archive. Compressible files (text, logs, uncompressed
/// binaries) promise far more than 20 % and are still compressed.
const WORTH_IT: f64 = 0.80;
/// gzip member header: ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown (as flate2 writes it).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// One complete gzip member, ready to be written.
pub(super) enum Member {
    Deflated(Vec<u8>),
    /// Stored deflate blocks (RFC 1951 section 3.2.4): the block goes to the file as it is,
    /// between framing made when it is written, so it is never copied again. zlib's level 0
    /// produces the same format several times slower.
    Stored {
        block: Vec<u8>,
        crc: u32,
    },
}

/// Largest stored deflate block.
const MAX_STORED: usize = 65_535;

impl Member {
    /// The member for `block` at `level`.
    pub(super) fn encode(block: Vec<u8>, level: Level) -> Self {
        match level {
            Level::Fixed(level) => Member::new(block, level),
            Level::Auto => {
                let worth: Vec<bool> = block.chunks(PART).map(worth_compressing).collect();
                if worth.contains(&true) {
                    Member::by_parts(&block, &worth)
                } else {
                    Member::new(block, 0)
                }
            }
        }
    }

    fn new(block: Vec<u8>, level: u32) -> Self {
        if level == 0 {
            let crc = crc32fast::hash(&block);
            return Member::Stored { block, crc };
        }
        let mut encoder = GzEncoder::new(
            Vec::with_capacity(block.len() + 64),
            Compression::new(level),
        );
        let member = encoder
            .write_all(&block)
            .and_then(|()| encoder.finish())
            .expect("writing to memory cannot fail");
        Member::Deflated(member)
    }

    /// A member whose parts are each deflated or stored, whichever their entropy says, in one
    /// deflate stream: deflated parts end with a sync flush (byte-aligned, not final), stored
    /// parts are stored blocks, and an empty final stored block closes the stream. Deflate's
    /// history is dropped after a stored part, as its distances count only what it compressed.
    fn by_parts(block: &[u8], worth: &[bool]) -> Self {
        let mut member = Vec::with_capacity(block.len() + 64);
        member.extend_from_slice(&GZIP_HEADER);
        let mut deflate = flate2::Compress::new(Compression::fast(), false);
        let mut after_stored = false;
        for (part, &worth) in block.chunks(PART).zip(worth) {
            if worth {
                if after_stored {
                    deflate.reset();
                    after_stored = false;
                }
                let mut consumed = 0;
                loop {
                    member.reserve(part.len() - consumed + part.len() / 64 + 1024);
                    let before = deflate.total_in();
                    deflate
                        .compress_vec(&part[consumed..], &mut member, flate2::FlushCompress::Sync)
                        .expect("deflating to memory cannot fail");
                    consumed += usize::try_from(deflate.total_in() - before)
                        .expect("at most the part's length");
                    // Done once the part is in and the flush had room to finish (another
                    // flush would only add an empty stored block, which is harmless).
                    if consumed == part.len() && member.len() < member.capacity() {
                        break;
                    }
                }
            } else {
                for stored in part.chunks(MAX_STORED) {
                    member.extend_from_slice(&stored_block_header(stored.len(), false));
                    member.extend_from_slice(stored);
                }
                after_stored = true;
            }
        }
        member.extend_from_slice(&stored_block_header(0, true));
        member.extend_from_slice(&trailer(crc32fast::hash(block), block.len()));
        Member::Deflated(member)
    }

    /// The framing of a stored member: the gzip header, a 5-byte header per deflate block,
    /// and the trailer, in that order (see [`Member::into_pieces`]).
    fn framing(block: &[u8], crc: u32) -> Vec<u8> {
        let blocks = block.len().div_ceil(MAX_STORED).max(1);
        let mut framing = Vec::with_capacity(10 + 5 * blocks + 8);
        framing.extend_from_slice(&GZIP_HEADER);
        for index in 0..blocks {
            let len = (block.len() - index * MAX_STORED).min(MAX_STORED);
            framing.extend_from_slice(&stored_block_header(len, index + 1 == blocks));
        }
        framing.extend_from_slice(&trailer(crc, block.len()));
        framing
    }

    /// The member's bytes in file order, as pieces sharing the member's buffers: written with
    /// one writev, then handed to an upload without a copy.
    pub(super) fn into_pieces(self) -> Vec<Bytes> {
        match self {
            Member::Deflated(member) => vec![Bytes::from(member)],
            Member::Stored { block, crc } => {
                let framing = Bytes::from(Member::framing(&block, crc));
                let block = Bytes::from(block);
                let blocks = (framing.len() - 18) / 5;
                let mut pieces = Vec::with_capacity(2 * blocks + 2);
                pieces.push(framing.slice(..10));
                for index in 0..blocks {
                    pieces.push(framing.slice(10 + 5 * index..15 + 5 * index));
                    let start = index * MAX_STORED;
                    let end = block.len().min(start + MAX_STORED);
                    if start < end {
                        pieces.push(block.slice(start..end));
                    }
                }
                pieces.push(framing.slice(framing.len() - 8..));
                pieces
            }
        }
    }
}

/// The header of a stored deflate block of `len` bytes (RFC 1951 section 3.2.4): BFINAL and
/// type 00 in one byte (the block starts byte-aligned), then LEN and its complement.
fn stored_block_header(len: usize, last: bool) -> [u8; 5] {
    let len = u16::try_from(len).expect("a stored deflate block holds at most 65,535 bytes");
    let [lo, hi] = len.to_le_bytes();
    let [nlo, nhi] = (!len).to_le_bytes();
    [u8::from(last), lo, hi, nlo, nhi]
}

/// The gzip member trailer: the CRC-32 and the size of the uncompressed bytes.
fn trailer(crc: u32, len: usize) -> [u8; 8] {
    let size = u32::try_from(len).expect("a block is far below 4 GiB");
    let mut trailer = [0; 8];
    trailer[..4].copy_from_slice(&crc.to_le_bytes());
    trailer[4..].copy_from_slice(&size.to_le_bytes());
    trailer
}

/// Whether compressing `block` is worth it, from the byte entropy of samples of it: what
/// deflate's Huffman stage alone would make of them. LZMA-packed replays sit at 8 bits a byte
/// and are stored; text sits near 4-5 and is compressed. Counting bytes costs a fraction of a
/// trial deflate of the same samples (whose setup alone was a fifth of a run's CPU time).
fn worth_compressing(block: &[u8]) -> bool {
    let stride = (block.len() / SAMPLES).max(1);
    let mut counts = [0u32; 256];
    let mut total = 0usize;
    for start in (0..block.len()).step_by(stride).take(SAMPLES) {
        let slice = &block[start..block.len().min(start + SAMPLE)];
        for &byte in slice {
            counts[usize::from(byte)] += 1;
        }
        total += slice.len();
    }
    if total == 0 {
        return false;
    }
    // At most SAMPLES * SAMPLE bytes: exact in a u32, and so in an f64.
    let total = f64::from(u32::try_from(total).unwrap_or(u32::MAX));
    // First the collision entropy, -log2(sum p^2), which is never above Shannon's: when even
    // it is above the bar, so is Shannon's, and the part is stored without a logarithm per
    // byte value (those were most of the cost on LZMA data).
    let collisions: f64 = counts.iter().map(|&count| f64::from(count).powi(2)).sum();
    if -(collisions / (total * total)).log2() / 8.0 > WORTH_IT {
        return false;
    }
    let bits_per_byte: f64 = counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = f64::from(count) / total;
            -p * p.log2()
        })
        .sum();
    bits_per_byte / 8.0 <= WORTH_IT
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stored_members_match_what_zlib_decodes() {
        for len in [0, 1, 65_535, 65_536, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            let bytes = Member::new(data.clone(), 0).into_pieces().concat();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "length {len}");
        }
    }

    #[test]
    fn members_stored_and_deflated_by_parts_are_read_by_gnu_gzip() {
        // Noise, then zeros: parts of both kinds in one member.
        let mut block = crate::sample::noise(7, 300_000);
        block.resize(1 << 20, 0);
        let member = Member::encode(block.clone(), Level::Auto)
            .into_pieces()
            .concat();
        assert!(member.len() < 400_000, "the zeros are deflated");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.gz");
        std::fs::write(&path, member).unwrap();
        let gunzip = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert!(gunzip.status.success());
        assert_eq!(gunzip.stdout, block);
    }
}
