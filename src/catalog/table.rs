//! A manifest kept in `work_dir` as a table a lookup reads by seeking: `catalog/<archive>.replays`.
//!
//! A storage of years holds thousands of manifests and millions of replays; parsing them all
//! for each command cost a gigabyte. The table holds the manifest's head (as JSON: its format,
//! archive, size and digest) and one fixed-size record per replay, sorted by id, so that one
//! replay is found with a binary search of a few reads and a command holds in memory only the
//! heads of the archives it looks at.
//!
//! Layout: `OISCAT01`, the manifest object's size on the storage (u64; a different size means
//! the table is not of that manifest), the head's length (u32) and JSON, the record count
//! (u64), then the records. All integers little-endian. A table is a cache: one that does not
//! read back whole is made again from the storage.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::formats::digest::ReplayHash;
use crate::formats::manifest::Manifest;
use crate::formats::range::{ReplayRange, ReplaySeek};

const MAGIC: &[u8; 8] = b"OISCAT01";
const RECORD: u64 = 80;
/// A range's offset for a replay without one (manifests before format 3).
const NO_RANGE: u64 = u64::MAX;
/// A head longer than this is not one oiseau wrote.
const HEAD_LIMIT: u32 = 8 << 20;

/// One replay of an archive, as its manifest records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub id: u64,
    pub size: u64,
    pub hash: ReplayHash,
    /// How it can be read alone (formats 3 and 4).
    pub seek: Option<ReplaySeek>,
    /// Its place in the archive.
    pub position: u64,
}

impl Replay {
    /// The replay at place `at` of `manifest`'s list.
    pub fn at(manifest: &Manifest, at: usize) -> Replay {
        let (id, size, hash) = manifest.replays[at];
        Replay {
            id,
            size,
            hash,
            seek: manifest.seek(at),
            position: at as u64,
        }
    }

    fn encode(&self) -> [u8; RECORD as usize] {
        let mut out = [0u8; RECORD as usize];
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..16].copy_from_slice(&self.size.to_le_bytes());
        out[16..48].copy_from_slice(&self.hash.0);
        out[48..56].copy_from_slice(&self.position.to_le_bytes());
        let range = self
            .seek
            .map(|seek| seek.range())
            .map_or((NO_RANGE, 0, 0), |r| (r.offset, r.length, r.skip));
        out[56..64].copy_from_slice(&range.0.to_le_bytes());
        out[64..72].copy_from_slice(&range.1.to_le_bytes());
        out[72..80].copy_from_slice(&range.2.to_le_bytes());
        out
    }

    /// A record of the table whose head is `head` (which says how its ranges are read).
    fn decode(bytes: &[u8; RECORD as usize], head: &Manifest) -> Replay {
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[16..48]);
        let offset = word(56);
        Replay {
            id: word(0),
            size: word(8),
            hash: ReplayHash(hash),
            position: word(48),
            seek: (offset != NO_RANGE)
                .then(|| ReplayRange {
                    offset,
                    length: word(64),
                    skip: word(72),
                })
                .and_then(|range| head.seek_of(range)),
        }
    }
}

/// A table on disk, its head read.
#[derive(Debug)]
pub struct ReplayTable {
    path: PathBuf,
    /// The manifest without its replays and ranges.
    pub head: Manifest,
    /// The manifest object's size on the storage when the table was made.
    pub manifest_size: u64,
    pub count: u64,
    /// Where the records start.
    records_at: u64,
    /// The smallest and largest replay id (0, 0 when it records none).
    pub min_id: u64,
    pub max_id: u64,
}

impl ReplayTable {
    /// Writes the table of `manifest` (whose object on the storage has `manifest_size` bytes)
    /// at `path`, whole or not at all, and opens it.
    pub fn write(path: &Path, manifest: &Manifest, manifest_size: u64) -> io::Result<ReplayTable> {
        let mut replays: Vec<Replay> = (0..manifest.replays.len())
            .map(|at| Replay::at(manifest, at))
            .collect();
        replays.sort_by_key(|r| (r.id, r.position));
        let head = serde_json::to_vec(&Manifest {
            replays: Vec::new(),
            ranges: Vec::new(),
            access_ranges: Vec::new(),
            ..manifest.clone()
        })?;
        let staging = path.with_extension("replays.tmp");
        let mut out = BufWriter::with_capacity(1 << 18, File::create(&staging)?);
        out.write_all(MAGIC)?;
        out.write_all(&manifest_size.to_le_bytes())?;
        out.write_all(
            &u32::try_from(head.len())
                .map_err(io::Error::other)?
                .to_le_bytes(),
        )?;
        out.write_all(&head)?;
        out.write_all(&(replays.len() as u64).to_le_bytes())?;
        for replay in &replays {
            out.write_all(&replay.encode())?;
        }
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        std::fs::rename(&staging, path)?;
        ReplayTable::open(path)
    }

    /// Opens a table and reads its head; an error for one that is not whole.
    pub fn open(path: &Path) -> io::Result<ReplayTable> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        let mut fixed = [0u8; 20];
        file.read_exact(&mut fixed)?;
        if &fixed[..8] != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a replay table",
            ));
        }
        let manifest_size = u64::from_le_bytes(fixed[8..16].try_into().map_err(io::Error::other)?);
        let head_len = u32::from_le_bytes(fixed[16..20].try_into().map_err(io::Error::other)?);
        if head_len > HEAD_LIMIT {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let mut head = vec![0u8; head_len as usize];
        file.read_exact(&mut head)?;
        let head: Manifest = serde_json::from_slice(&head)?;
        let mut count = [0u8; 8];
        file.read_exact(&mut count)?;
        let count = u64::from_le_bytes(count);
        let records_at = 20 + u64::from(head_len) + 8;
        if count
            .checked_mul(RECORD)
            .and_then(|n| n.checked_add(records_at))
            != Some(length)
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "cut short"));
        }
        let mut table = ReplayTable {
            path: path.to_owned(),
            head,
            manifest_size,
            count,
            records_at,
            min_id: 0,
            max_id: 0,
        };
        if count > 0 {
            table.min_id = table.record(&file, 0)?.id;
            table.max_id = table.record(&file, count - 1)?.id;
        }
        Ok(table)
    }

    fn record(&self, file: &File, at: u64) -> io::Result<Replay> {
        let mut bytes = [0u8; RECORD as usize];
        file.read_exact_at(&mut bytes, self.records_at + at * RECORD)?;
        Ok(Replay::decode(&bytes, &self.head))
    }

    /// Replay `id`, when the manifest records it: a binary search, reading a record a step.
    /// Recorded twice, the later one wins, as in [`Manifest::position_of`].
    pub fn find(&self, id: u64) -> io::Result<Option<Replay>> {
        if self.count == 0 || id < self.min_id || id > self.max_id {
            return Ok(None);
        }
        let file = File::open(&self.path)?;
        // The first record whose id is above `id`.
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.record(&file, middle)?.id <= id {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        if low == 0 {
            return Ok(None);
        }
        let last = self.record(&file, low - 1)?;
        Ok((last.id == id).then_some(last))
    }

    /// The whole manifest again, its replays in archive order: for a command that reads the
    /// archive through.
    pub fn manifest(&self) -> io::Result<Manifest> {
        let mut bytes = Vec::new();
        let mut file = File::open(&self.path)?;
        io::Seek::seek(&mut file, io::SeekFrom::Start(self.records_at))?;
        file.read_to_end(&mut bytes)?;
        let mut replays: Vec<Replay> = bytes
            .chunks_exact(RECORD as usize)
            .map(|chunk| Replay::decode(chunk.try_into().expect("exact chunks"), &self.head))
            .collect();
        replays.sort_by_key(|r| r.position);
        let ranges: Option<Vec<ReplayRange>> = replays
            .iter()
            .map(|r| r.seek.map(|seek| seek.range()))
            .collect();
        let ranges = ranges.unwrap_or_default();
        let (ranges, access_ranges) = if self.head.access.is_some() {
            (Vec::new(), ranges)
        } else {
            (ranges, Vec::new())
        };
        Ok(Manifest {
            replays: replays.iter().map(|r| (r.id, r.size, r.hash)).collect(),
            ranges,
            access_ranges,
            ..self.head.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::access::{AccessIndex, AccessPoint};
    use crate::formats::digest::ArchiveDigest;
    use crate::formats::manifest::Source;

    /// How the replays of a test manifest can be read alone.
    #[derive(Clone, Copy, PartialEq)]
    enum Ranges {
        None,
        Members,
        AccessPoints,
    }

    fn manifest(ids: &[u64], ranges: Ranges) -> Manifest {
        let recorded: Vec<ReplayRange> = ids
            .iter()
            .map(|&id| ReplayRange {
                offset: id * 100,
                length: 100,
                skip: id,
            })
            .collect();
        let mut manifest = Manifest {
            format: 2,
            archive_id: 7,
            archive_name: "1700000000_replays_7.tar.gz".into(),
            size: 1234,
            digest: ArchiveDigest::Blake3("ab".repeat(32)),
            replays: ids
                .iter()
                .map(|&id| (id, id * 10, ReplayHash([id as u8; 32])))
                .collect(),
            ranges: Vec::new(),
            source: Source::Packing,
            access: None,
            access_ranges: Vec::new(),
        };
        match ranges {
            Ranges::None => {}
            Ranges::Members => {
                manifest.format = 3;
                manifest.ranges = recorded;
            }
            Ranges::AccessPoints => {
                manifest.format = 4;
                manifest.source = Source::Archive;
                // A point at each range's first byte, two bits into it.
                let mut points: Vec<AccessPoint> = recorded
                    .iter()
                    .map(|r| AccessPoint {
                        bit: r.offset * 8 + 2,
                        out: r.offset * 3,
                    })
                    .collect();
                points.sort_by_key(|p| p.bit);
                manifest.access = Some(AccessIndex { span: 1, points });
                manifest.access_ranges = recorded;
            }
        }
        manifest
    }

    #[test]
    fn a_table_answers_exactly_what_its_manifest_says() {
        let dir = tempfile::tempdir().unwrap();
        // Late replays (3, 1) after later ids, as a temp folder fills out of order.
        for ranges in [Ranges::Members, Ranges::None, Ranges::AccessPoints] {
            let ids = [40, 41, 3, 44, 1, 45];
            let source = manifest(&ids, ranges);
            let path = dir.path().join("a.replays");
            ReplayTable::write(&path, &source, 999).unwrap();
            let table = ReplayTable::open(&path).unwrap();
            assert_eq!((table.count, table.min_id, table.max_id), (6, 1, 45));
            assert_eq!(table.manifest_size, 999);
            for id in 0..50 {
                let expected = source.position_of(id).map(|at| Replay::at(&source, at));
                assert_eq!(table.find(id).unwrap(), expected, "{id}");
            }
            let seek = table.find(3).unwrap().unwrap().seek;
            let range = ReplayRange {
                offset: 300,
                length: 100,
                skip: 3,
            };
            let point = AccessPoint {
                bit: 300 * 8 + 2,
                out: 900,
            };
            match ranges {
                Ranges::None => assert_eq!(seek, None),
                Ranges::Members => assert_eq!(seek, Some(ReplaySeek::Members(range))),
                // The points in bit order are those of replays 1, 3, 40...: its is the second.
                Ranges::AccessPoints => assert_eq!(
                    seek,
                    Some(ReplaySeek::Point {
                        range,
                        point,
                        at: 1
                    })
                ),
            }
            assert_eq!(table.manifest().unwrap(), source, "archive order kept");
        }
    }

    #[test]
    fn a_table_cut_short_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.replays");
        ReplayTable::write(&path, &manifest(&[1, 2, 3], Ranges::Members), 1).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        assert!(ReplayTable::open(&path).is_err());
        std::fs::write(&path, b"something else entirely").unwrap();
        assert!(ReplayTable::open(&path).is_err());
    }

    #[test]
    fn an_empty_manifest_has_an_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.replays");
        let table = ReplayTable::write(&path, &manifest(&[], Ranges::Members), 1).unwrap();
        assert_eq!(table.count, 0);
        assert_eq!(table.find(0).unwrap(), None);
    }
}
