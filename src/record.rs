//! The run record: what the runs of a work_dir did over time (`<work_dir>/last-run.json`),
//! kept between runs so that a run can say how long the storage has been waking up and when
//! the last archive was made. Losing it loses no data: it only feeds the reports.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::events::{Outcome, WaitCause};

const RECORD_NAME: &str = "last-run.json";

/// What the runs of a work_dir did over time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unix time of the end of the last run that ended well (done or nothing to do).
    pub last_success: Option<u64>,
    /// Unix time of the start of the first run of the current wait for the storage.
    pub waiting_since: Option<u64>,
    /// The last archive a run of this work_dir made.
    pub last_archive: Option<ArchiveRecord>,
}

/// An archive as the run record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    pub id: u64,
    pub name: String,
    pub replays: usize,
    pub replay_bytes: u64,
    pub archive_bytes: u64,
    /// Unix time it was committed.
    pub at: u64,
}

impl RunRecord {
    /// The record once a run that started at `started` ends with `outcome` at `now`.
    pub fn after(&self, outcome: &Outcome, started: SystemTime, now: SystemTime) -> RunRecord {
        let mut next = self.clone();
        match outcome {
            Outcome::Done(_) | Outcome::NothingToDo { .. } => {
                next.last_success = Some(unix(now));
                next.waiting_since = None;
            }
            Outcome::Waiting {
                cause: WaitCause::Storage,
                ..
            } => {
                next.waiting_since = Some(self.waiting_since.unwrap_or(unix(started)));
            }
            Outcome::Waiting {
                cause: WaitCause::AnotherRun,
                ..
            } => {}
            Outcome::Failed { .. } => next.waiting_since = None,
        }
        if let Outcome::Done(done) = outcome {
            next.last_archive = Some(ArchiveRecord {
                id: done.archive_id,
                name: done.archive_name.clone(),
                replays: done.replays,
                replay_bytes: done.replay_bytes,
                archive_bytes: done.archive_bytes,
                at: unix(now),
            });
        }
        next
    }
}

/// Seconds since 1970 (0 for a clock before it).
pub fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The work_dir's record; a missing or unreadable one is an empty record (said in the log).
pub fn load(work_dir: &Path) -> RunRecord {
    let path = work_dir.join(RECORD_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(
                "ignoring {}: {e}; it is rewritten at the end of this run",
                path.display()
            );
            RunRecord::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RunRecord::default(),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", path.display());
            RunRecord::default()
        }
    }
}

/// Replaces the work_dir's record at once (a reader never sees half of it); a failure is
/// logged, never fatal.
pub fn save(work_dir: &Path, record: &RunRecord) {
    let path = work_dir.join(RECORD_NAME);
    let written = serde_json::to_vec_pretty(record)
        .map_err(std::io::Error::other)
        .and_then(|json| crate::atomic_file::replace(&path, &json));
    if let Err(e) = written {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Archived;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn waiting(cause: WaitCause) -> Outcome {
        Outcome::Waiting {
            cause,
            reason: "unarchive".into(),
        }
    }

    #[test]
    fn a_wait_counts_from_its_first_run_until_a_run_ends_well() {
        let first = RunRecord::default().after(&waiting(WaitCause::Storage), at(100), at(110));
        assert_eq!(first.waiting_since, Some(100));
        let second = first.after(&waiting(WaitCause::Storage), at(700), at(710));
        assert_eq!(second.waiting_since, Some(100), "the wait goes on");
        let other_run = second.after(&waiting(WaitCause::AnotherRun), at(800), at(801));
        assert_eq!(other_run, second);
        let done = Outcome::Done(Archived {
            archive_id: 4,
            archive_name: "4.tar.gz".into(),
            replays: 2,
            replay_bytes: 10,
            archive_bytes: 9,
            kept: 0,
            duration: Duration::from_secs(3),
        });
        let after = second.after(&done, at(900), at(903));
        assert_eq!(after.waiting_since, None);
        assert_eq!(after.last_success, Some(903));
        assert_eq!(
            after.last_archive.as_ref().map(|a| (a.id, a.at)),
            Some((4, 903))
        );
        let quiet = after.after(
            &Outcome::NothingToDo {
                bytes: 1,
                threshold: 2,
            },
            at(1000),
            at(1001),
        );
        assert_eq!(quiet.last_success, Some(1001));
        assert_eq!(
            quiet.last_archive, after.last_archive,
            "the last archive is kept"
        );
    }

    #[test]
    fn the_record_survives_between_runs_and_a_damaged_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), RunRecord::default());
        let record = RunRecord {
            last_success: Some(5),
            ..RunRecord::default()
        };
        save(dir.path(), &record);
        assert_eq!(load(dir.path()), record);
        std::fs::write(dir.path().join(RECORD_NAME), "{not json").unwrap();
        assert_eq!(load(dir.path()), RunRecord::default());
    }
}
