//! The run journal: the plan of the archive being made, written to `work_dir` (atomically, and
//! fsynced) before anything leaves the machine.
//!
//! A run killed at any point leaves either no journal (nothing was sent yet; the replays are
//! all still in the temp folder) or this record, from which the next run finishes the job:
//! upload what is missing, commit the index line, delete exactly the files it lists.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::ArchiveDigest;
use crate::index::IndexEntry;
use crate::pack::ReplayHash;
use crate::scan::Replay;

const FILE_NAME: &str = "journal.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Journal {
    /// The `storage.backend` the archive is for: resuming onto another storage would split
    /// the backup.
    pub backend: String,
    pub archive_id: u64,
    pub archive_name: String,
    /// Seconds since the epoch, shared by the archive and its index copy.
    pub timestamp: u64,
    pub archive_size: u64,
    #[serde(flatten)]
    pub digest: ArchiveDigest,
    pub replays: Vec<JournalReplay>,
}

/// One replay as it was packed: enough to find it again, to tell whether it is still the same
/// file, and to check a restored copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalReplay {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub mtime_secs: u64,
    pub mtime_nanos: u32,
    pub blake3: ReplayHash,
}

impl JournalReplay {
    /// The replay as a file of `temp_dir`, with the size and mtime it was packed with. Made one
    /// at a time where needed: a batch can hold 100,000 replays.
    pub fn in_folder(&self, temp_dir: &Path) -> Replay {
        Replay {
            id: self.id,
            path: temp_dir.join(&self.name),
            size: self.size,
            mtime: UNIX_EPOCH + Duration::new(self.mtime_secs, self.mtime_nanos),
        }
    }
}

impl Journal {
    pub fn path(work_dir: &Path) -> PathBuf {
        work_dir.join(FILE_NAME)
    }

    pub fn index_entry(&self) -> IndexEntry {
        IndexEntry {
            archive_id: self.archive_id,
            max_replay_id: self.replays.iter().map(|r| r.id).max().unwrap_or(0),
        }
    }

    /// The packed replays: those of `replays` that have a hash.
    pub fn replays_from(replays: &[Replay], hashes: &[Option<ReplayHash>]) -> Vec<JournalReplay> {
        // Sized exactly: grown by doubling, a list of 100,000 replays could take twice its room.
        let mut packed = Vec::with_capacity(hashes.iter().flatten().count());
        packed.extend(replays.iter().zip(hashes).filter_map(|(replay, hash)| {
            let since_epoch = replay.mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
            Some(JournalReplay {
                id: replay.id,
                name: replay.name().to_owned(),
                size: replay.size,
                mtime_secs: since_epoch.as_secs(),
                mtime_nanos: since_epoch.subsec_nanos(),
                blake3: (*hash)?,
            })
        }));
        packed
    }

    /// The journal left by an unfinished run, if any.
    pub fn load(work_dir: &Path) -> Result<Option<Journal>> {
        let path = Self::path(work_dir);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_slice(&text).map(Some).with_context(|| {
            format!(
                "the run journal {} is damaged; check the storage against it, then remove it",
                path.display()
            )
        })
    }

    /// Writes the journal so that a crash leaves the old state or the new one, never a torn
    /// file: a temporary file, fsynced, renamed over, and the directory fsynced.
    pub fn save(&self, work_dir: &Path) -> Result<()> {
        let path = Self::path(work_dir);
        let staging = work_dir.join(format!("{FILE_NAME}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&staging)?);
            serde_json::to_writer(&mut file, self)?;
            let file = file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&staging, &path)?;
            sync_dir(work_dir)
        };
        write().with_context(|| format!("cannot write the run journal {}", path.display()))
    }

    /// Marks the run as finished.
    pub fn remove(work_dir: &Path) -> Result<()> {
        let path = Self::path(work_dir);
        std::fs::remove_file(&path)
            .and_then(|()| sync_dir(work_dir))
            .with_context(|| format!("cannot remove the run journal {}", path.display()))
    }
}

/// Makes renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The wall clock as seconds since the epoch.
pub fn unix_now() -> Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Journal {
        Journal {
            backend: "local".into(),
            archive_id: 7,
            archive_name: "1700000000_replays_7.tar.gz".into(),
            timestamp: 1_700_000_000,
            archive_size: 1234,
            digest: ArchiveDigest::Blake3("ab".repeat(32)),
            replays: vec![JournalReplay {
                id: 42,
                name: "replay_42.osr".into(),
                size: 10,
                mtime_secs: 1_600_000_000,
                mtime_nanos: 123_456_789,
                blake3: ReplayHash([0xcd; 32]),
            }],
        }
    }

    #[test]
    fn a_saved_journal_loads_back_and_removal_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Journal::load(dir.path()).unwrap(), None);
        sample().save(dir.path()).unwrap();
        assert_eq!(Journal::load(dir.path()).unwrap(), Some(sample()));
        let replay = &sample().replays[0].in_folder(Path::new("/t"));
        assert_eq!(replay.path, Path::new("/t/replay_42.osr"));
        assert_eq!(
            replay.mtime,
            UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789)
        );
        Journal::remove(dir.path()).unwrap();
        assert_eq!(Journal::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_damaged_journal_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Journal::path(dir.path()), b"{\"archive_id\": 7, ").unwrap();
        let err = Journal::load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("journal.json is damaged"));
    }
}
