//! The run journal: the plan of the archive being made, written to `work_dir` (atomically, and
//! fsynced) before anything leaves the machine.
//!
//! A run killed at any point leaves either no journal (nothing was sent yet; the replays are
//! all still in the temp folder) or this record, from which the next run finishes the job:
//! upload what is missing, commit the index line, delete exactly the files it lists. The
//! journal records how far the run got ([`Phase`]); the next run starts there, and checks the
//! storage before it believes it (a kill can fall between a step and its record).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::archive::pack::PackedReplay;
use crate::atomic_file::{self, sync_dir};
use crate::formats::digest::ArchiveDigest;
use crate::formats::digest::ReplayHash;
use crate::formats::index::IndexEntry;
use crate::formats::manifest::{Manifest, Source};
use crate::formats::range::ReplayRange;
use crate::temp_folder::{Replay, unix_parts};

const FILE_NAME: &str = "journal.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Journal {
    /// The `storage.backend` the archive is for: resuming onto another storage would split
    /// the backup.
    pub backend: String,
    /// Where that backend keeps the data (its path, URL or remote); absent in journals of
    /// earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    pub archive_id: u64,
    pub archive_name: String,
    /// Seconds since the epoch, shared by the archive and its index copy.
    pub timestamp: u64,
    pub archive_size: u64,
    #[serde(flatten)]
    pub digest: ArchiveDigest,
    pub replays: Vec<JournalReplay>,
    /// How far the run got; journals of earlier versions have none, and start from the top.
    #[serde(default)]
    pub phase: Phase,
}

/// Where a run stands with its archive, each phase recorded before the next step starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Packed into the spool; maybe on the storage, maybe not.
    #[default]
    Packed,
    /// On the storage, whole and checked; not yet in the index.
    Uploaded,
    /// In the index: the replays it holds may leave the temp folder.
    Committed,
}

/// One replay as it was packed: enough to find it again, to tell whether it is still the same
/// file, and to check a restored copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalReplay {
    pub id: u64,
    pub name: String,
    pub size: u64,
    /// Negative before 1970, as the system keeps it.
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    /// Absent in journals of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    pub blake3: ReplayHash,
    /// Where it can be read back on its own; absent in journals of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<ReplayRange>,
}

impl JournalReplay {
    /// Whether the file of that name in `folder` is still a regular file with the size, mtime
    /// and inode it was packed with.
    pub fn is_unchanged_in(&self, folder: &impl rustix::fd::AsFd) -> rustix::io::Result<bool> {
        let stat = rustix::fs::statat(
            folder,
            self.name.as_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(
            rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile
                && u64::try_from(stat.st_size).ok() == Some(self.size)
                && stat.st_mtime == self.mtime_secs
                && u32::try_from(stat.st_mtime_nsec).ok() == Some(self.mtime_nanos)
                && self.inode.is_none_or(|inode| inode == stat.st_ino),
        )
    }
}

impl Journal {
    /// The manifest of the archive this journal planned.
    pub fn manifest(&self) -> Manifest {
        // Journals of earlier versions (an interrupted run finished by this one) have no
        // ranges: their manifest is format 2.
        let ranges: Option<Vec<ReplayRange>> = self.replays.iter().map(|r| r.range).collect();
        let ranges = ranges.unwrap_or_default();
        Manifest {
            format: if ranges.is_empty() { 2 } else { 3 },
            archive_id: self.archive_id,
            archive_name: self.archive_name.clone(),
            size: self.archive_size,
            digest: self.digest.clone(),
            replays: self
                .replays
                .iter()
                .map(|r| (r.id, r.size, r.blake3))
                .collect(),
            ranges,
            source: Source::Packing,
            access: None,
            access_ranges: Vec::new(),
        }
    }

    pub fn path(work_dir: &Path) -> PathBuf {
        work_dir.join(FILE_NAME)
    }

    pub fn index_entry(&self) -> IndexEntry {
        IndexEntry {
            archive_id: self.archive_id,
            max_replay_id: self.replays.iter().map(|r| r.id).max().unwrap_or(0),
        }
    }

    /// The packed replays: those of `replays` that are in the archive.
    pub fn replays_from(
        replays: &[Replay],
        entries: &[Option<PackedReplay>],
    ) -> Vec<JournalReplay> {
        // Sized exactly: grown by doubling, a list of 100,000 replays could take twice its room.
        let mut packed = Vec::with_capacity(entries.iter().flatten().count());
        packed.extend(replays.iter().zip(entries).filter_map(|(replay, entry)| {
            let entry = (*entry)?;
            let (mtime_secs, mtime_nanos) = unix_parts(replay.mtime);
            Some(JournalReplay {
                id: replay.id,
                name: replay.name().to_owned(),
                size: replay.size,
                mtime_secs,
                mtime_nanos,
                inode: Some(replay.inode),
                blake3: entry.hash,
                range: entry.range,
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
    /// file.
    pub fn save(&self, work_dir: &Path) -> Result<()> {
        let path = Self::path(work_dir);
        serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|json| atomic_file::replace(&path, &json))
            .with_context(|| format!("cannot write the run journal {}", path.display()))
    }

    /// Records that the run reached `phase`.
    pub fn advance(&mut self, phase: Phase, work_dir: &Path) -> Result<()> {
        self.phase = phase;
        self.save(work_dir)
    }

    /// Marks the run as finished.
    pub fn remove(work_dir: &Path) -> Result<()> {
        let path = Self::path(work_dir);
        std::fs::remove_file(&path)
            .and_then(|()| sync_dir(work_dir))
            .with_context(|| format!("cannot remove the run journal {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn sample() -> Journal {
        Journal {
            backend: "local".into(),
            storage: Some("local /srv/backup".into()),
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
                inode: None,
                blake3: ReplayHash([0xcd; 32]),
                range: None,
            }],
            phase: Phase::Packed,
        }
    }

    #[test]
    fn a_replay_is_unchanged_only_with_its_packed_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let folder = std::fs::File::open(dir.path()).unwrap();
        let packed = &sample().replays[0];
        let path = dir.path().join(&packed.name);
        let file = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut &file, b"0123456789").unwrap();
        file.set_modified(UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789))
            .unwrap();
        assert!(packed.is_unchanged_in(&folder).unwrap());
        file.set_modified(UNIX_EPOCH + Duration::new(1_600_000_000, 0))
            .unwrap();
        assert!(!packed.is_unchanged_in(&folder).unwrap(), "another mtime");
        std::fs::write(&path, b"01234567890").unwrap();
        assert!(!packed.is_unchanged_in(&folder).unwrap(), "another size");
        std::fs::write(&path, b"0123456789").unwrap();
        file.set_modified(UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789))
            .unwrap();
        let inode = std::os::unix::fs::MetadataExt::ino(&file.metadata().unwrap());
        let same_file = JournalReplay {
            inode: Some(inode),
            ..packed.clone()
        };
        assert!(same_file.is_unchanged_in(&folder).unwrap());
        let replaced = JournalReplay {
            inode: Some(inode + 1),
            ..packed.clone()
        };
        assert!(
            !replaced.is_unchanged_in(&folder).unwrap(),
            "another file of the same size and time"
        );
        let before_1970 = JournalReplay {
            mtime_secs: -2,
            mtime_nanos: 500_000_000,
            ..packed.clone()
        };
        file.set_modified(UNIX_EPOCH - Duration::new(1, 500_000_000))
            .unwrap();
        assert!(before_1970.is_unchanged_in(&folder).unwrap(), "before 1970");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            packed.is_unchanged_in(&folder),
            Err(rustix::io::Errno::NOENT)
        );
    }

    #[test]
    fn a_saved_journal_loads_back_and_removal_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Journal::load(dir.path()).unwrap(), None);
        sample().save(dir.path()).unwrap();
        assert_eq!(Journal::load(dir.path()).unwrap(), Some(sample()));
        Journal::remove(dir.path()).unwrap();
        assert_eq!(Journal::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn the_phase_is_kept_and_a_journal_without_one_starts_from_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = sample();
        journal.advance(Phase::Uploaded, dir.path()).unwrap();
        assert_eq!(
            Journal::load(dir.path()).unwrap().map(|j| j.phase),
            Some(Phase::Uploaded)
        );
        // As an earlier version wrote it.
        let mut earlier = serde_json::to_value(sample()).unwrap();
        earlier.as_object_mut().unwrap().remove("phase");
        std::fs::write(Journal::path(dir.path()), earlier.to_string()).unwrap();
        assert_eq!(
            Journal::load(dir.path()).unwrap().map(|j| j.phase),
            Some(Phase::Packed)
        );
    }

    #[test]
    fn a_damaged_journal_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Journal::path(dir.path()), b"{\"archive_id\": 7, ").unwrap();
        let err = Journal::load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("journal.json is damaged"));
    }
}
