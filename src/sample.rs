//! Sample replay files for `oiseau demo`: shaped like osu! `.osr` files (a header, then a
//! payload as incompressible as the LZMA stream of a real replay), deterministic for a seed.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

/// A small xorshift generator: the demo needs varied bytes, not cryptographic ones.
struct XorShift(u64);

impl XorShift {
    fn seeded(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `len` bytes as incompressible as a real replay's LZMA payload, the same for the same seed:
/// what the tests pack, and gzip is judged on.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift::seeded(seed);
    (0..len).map(|_| rng.next().to_le_bytes()[0]).collect()
}

/// Writes `count` replays `replay_<first_id>.osr`... into `dir`, sizes 4 KiB to ~260 KiB, with
/// the modification time `mtime`. Returns the bytes written.
pub fn write_replays(
    dir: &Path,
    first_id: u64,
    count: u64,
    seed: u64,
    mtime: SystemTime,
) -> Result<u64> {
    let mut rng = XorShift::seeded(seed);
    let mut total = 0;
    for id in first_id..first_id + count {
        // Skewed towards small files, as real replays are.
        let size = 4096 + (rng.next() % 256) * (rng.next() % 1024);
        let size = usize::try_from(size).expect("a sample replay is at most a few hundred KiB");
        let mut bytes = Vec::with_capacity(size);
        bytes.push(0); // mode: osu!standard
        bytes.extend_from_slice(&20_240_101u32.to_le_bytes()); // game version
        while bytes.len() < size {
            bytes.extend_from_slice(&rng.next().to_le_bytes());
        }
        bytes.truncate(size);
        let path = dir.join(format!("replay_{id}.osr"));
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.write_all(&bytes)?;
        file.set_modified(mtime)?;
        total += bytes.len() as u64;
    }
    Ok(total)
}
