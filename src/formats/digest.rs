//! The fingerprint of a whole archive, recorded in the journal (to trust a spool copy when a
//! run resumes) and in the manifest (for `verify --deep`).
//!
//! oiseau records BLAKE3. SHA-256 runs at about 250 MB/s on one core of a CPU without SHA
//! instructions, which made it the slowest step of a run (two seconds for 500 MB, more than
//! writing the archive); BLAKE3 keeps up with memory. Records written by earlier versions carry
//! a SHA-256 and are still checked with it, so an interrupted run survives an upgrade and old
//! manifests still verify. Operators can check an archive by hand with `b3sum` or `sha256sum`.

use std::fmt;
use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Size of the buffer used to hash a file.
const READ_BUFFER: usize = 1 << 20;

/// A digest with its algorithm, stored as `"blake3": "<hex>"` (or `"sha256"`) in JSON records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveDigest {
    Blake3(String),
    Sha256(String),
}

impl ArchiveDigest {
    /// A hasher of this digest's algorithm, to check bytes against it.
    pub fn hasher(&self) -> DigestHasher {
        match self {
            ArchiveDigest::Blake3(_) => DigestHasher::blake3(),
            ArchiveDigest::Sha256(_) => DigestHasher::Sha256(Sha256::new()),
        }
    }
}

impl fmt::Display for ArchiveDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveDigest::Blake3(hex) => write!(f, "BLAKE3 {hex}"),
            ArchiveDigest::Sha256(hex) => write!(f, "SHA-256 {hex}"),
        }
    }
}

/// Computes an [`ArchiveDigest`] from bytes fed in order.
pub enum DigestHasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl DigestHasher {
    /// The hasher for new archives.
    pub fn blake3() -> Self {
        DigestHasher::Blake3(Box::new(blake3::Hasher::new()))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            DigestHasher::Blake3(hasher) => {
                hasher.update(bytes);
            }
            DigestHasher::Sha256(context) => context.update(bytes),
        }
    }

    pub fn finish(self) -> ArchiveDigest {
        match self {
            DigestHasher::Blake3(hasher) => {
                ArchiveDigest::Blake3(hasher.finalize().to_hex().to_string())
            }
            DigestHasher::Sha256(context) => ArchiveDigest::Sha256(hex(&context.finalize())),
        }
    }

    /// Hashes what is left to read in `reader`.
    pub fn read_from(mut self, reader: &mut impl Read) -> io::Result<ArchiveDigest> {
        let mut buffer = vec![0u8; READ_BUFFER];
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                return Ok(self.finish());
            }
            self.update(&buffer[..n]);
        }
    }
}

/// BLAKE3 of a replay's bytes: what a restore checks a replay against. 32 bytes in memory (a
/// batch can hold 100,000 replays), lowercase hex in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayHash(pub [u8; 32]);

impl std::fmt::Display for ReplayHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl serde::Serialize for ReplayHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ReplayHash {
    /// Read from the text in place: a storage of years has millions of them to read.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = ReplayHash;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a BLAKE3 hash in 64 hex digits")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ReplayHash, E> {
                let digit = |c: u8| (c as char).to_digit(16);
                let mut bytes = [0u8; 32];
                let valid =
                    text.len() == 64
                        && text.as_bytes().chunks_exact(2).zip(bytes.iter_mut()).all(
                            |(pair, byte)| match (digit(pair[0]), digit(pair[1])) {
                                (Some(high), Some(low)) => {
                                    *byte = (high * 16 + low) as u8;
                                    true
                                }
                                _ => false,
                            },
                        );
                if valid {
                    Ok(ReplayHash(bytes))
                } else {
                    Err(E::custom(format!("{text:?} is not a BLAKE3 hash")))
                }
            }
        }
        deserializer.deserialize_str(Hex)
    }
}

/// Copies `reader` to `out` and returns the byte count and the BLAKE3 of what passed: how a
/// replay read back from an archive is checked against its manifest.
pub fn copy_with_blake3(
    reader: &mut impl Read,
    out: &mut impl io::Write,
) -> io::Result<(u64, ReplayHash)> {
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            return Ok((size, ReplayHash(*hasher.finalize().as_bytes())));
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
        size += n as u64;
    }
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_algorithm_matches_its_reference() {
        let bytes = b"abc";
        let blake3 = DigestHasher::blake3().read_from(&mut &bytes[..]).unwrap();
        assert_eq!(
            blake3,
            ArchiveDigest::Blake3(blake3::hash(bytes).to_hex().to_string())
        );
        let sha256 = ArchiveDigest::Sha256(String::new())
            .hasher()
            .read_from(&mut &bytes[..])
            .unwrap();
        // FIPS 180-2's first test vector.
        assert_eq!(
            sha256,
            ArchiveDigest::Sha256(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            )
        );
    }

    #[test]
    fn records_name_their_algorithm() {
        #[derive(Serialize, Deserialize)]
        struct Record {
            size: u64,
            #[serde(flatten)]
            digest: ArchiveDigest,
        }
        let written = serde_json::to_string(&Record {
            size: 3,
            digest: ArchiveDigest::Blake3("ab".into()),
        })
        .unwrap();
        assert_eq!(written, r#"{"size":3,"blake3":"ab"}"#);
        // What earlier versions wrote still reads.
        let old: Record = serde_json::from_str(r#"{"size":3,"sha256":"cd"}"#).unwrap();
        assert_eq!(old.digest, ArchiveDigest::Sha256("cd".into()));
    }
}
