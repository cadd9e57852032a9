//! What a backup run says happened, as typed events, and the reporters that hear them.
//!
//! The run never builds a message: it reports an [`Event`], and each channel (a chat, a
//! webhook, a dead man's switch, the metrics file) decides whether and how to say it. A
//! reporter never fails the run: the backup itself matters more than the message about it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use serde::{Deserialize, Serialize};

/// Something worth hearing of during a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A run began (the lock is taken).
    Started,
    /// An archive left unfinished by an interrupted run is being finished first.
    Resumed { archive_name: String },
    /// Archives about to be read are in a cold class and not readable yet: restores were
    /// requested, or are under way. `detail` names them.
    ArchivesWarmingUp { detail: String },
    /// The storage says something the operators should know, though this run is fine (C14's
    /// outdated archives); each is reported once, not every run.
    StorageNotice { detail: String },
    /// How the run ended: every run reports exactly one.
    Finished(Box<Finished>),
}

impl Event {
    /// The event's name, as the webhook's JSON body gives it.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Resumed { .. } => "resumed",
            Event::ArchivesWarmingUp { .. } => "warming_up",
            Event::StorageNotice { .. } => "storage_notice",
            Event::Finished(finished) => finished.outcome.name(),
        }
    }
}

/// The end of a run, with what the channels that keep a history need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub outcome: Outcome,
    /// What the process exits with (0 done, 1 failed, 2 bad settings, 75 try again later).
    pub exit_code: u8,
    pub started_at: SystemTime,
    pub duration: Duration,
    /// What the runs before this one did, this one included.
    pub record: RunRecord,
}

/// What the runs of a work_dir did over time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unix time of the end of the last run that ended well (done or nothing to do).
    pub last_success: Option<u64>,
    /// Unix time of the start of the first run of the current wait for the storage.
    pub waiting_since: Option<u64>,
    /// Unix time of the start of the first run since then that found the storage lock held
    /// by another writer (or held without a lease) and could not archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_waiting_since: Option<u64>,
    /// What the last of those runs found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_waiting_reason: Option<String>,
    /// The last archive a run of this work_dir made.
    pub last_archive: Option<ArchiveRecord>,
    /// How the last run ended, when it started and how long it took (a run that found another
    /// one working in this work_dir is not counted: that one's record is what matters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// The storage's notices already reported, so that one is told once, not every run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices_told: Vec<String>,
}

/// The last run, as the run record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// `done`, `nothing to do`, `waiting for the storage`, `waiting for the storage lock` or
    /// `failed`.
    pub outcome: String,
    /// Unix time it started.
    pub started: u64,
    pub seconds: u64,
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
            Outcome::Done(_) => {
                next.last_success = Some(unix(now));
                next.waiting_since = None;
                next.lock_waiting_since = None;
                next.lock_waiting_reason = None;
            }
            // The storage was not contacted: the lock is as it was.
            Outcome::NothingToDo { .. } => {
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
                cause: WaitCause::StorageLock,
                reason,
            } => {
                next.lock_waiting_since = Some(self.lock_waiting_since.unwrap_or(unix(started)));
                next.lock_waiting_reason = Some(reason.clone());
            }
            Outcome::Waiting {
                cause: WaitCause::AnotherRun,
                ..
            } => {}
            Outcome::Failed { .. } => next.waiting_since = None,
        }
        let counted = match outcome {
            Outcome::Done(_) => Some("done"),
            Outcome::NothingToDo { .. } => Some("nothing to do"),
            Outcome::Waiting {
                cause: WaitCause::Storage,
                ..
            } => Some("waiting for the storage"),
            Outcome::Waiting {
                cause: WaitCause::StorageLock,
                ..
            } => Some("waiting for the storage lock"),
            Outcome::Waiting {
                cause: WaitCause::AnotherRun,
                ..
            } => None,
            Outcome::Failed { .. } => Some("failed"),
        };
        if let Some(outcome) = counted {
            next.last_run = Some(LastRun {
                outcome: outcome.to_owned(),
                started: unix(started),
                seconds: now.duration_since(started).map_or(0, |d| d.as_secs()),
            });
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

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An archive is on the storage, in the index, and its replays left the temp folder.
    Done(Archived),
    /// Below the threshold: the storage was not contacted.
    NothingToDo { bytes: u64, threshold: u64 },
    /// Nothing happened yet; the next run carries on.
    Waiting { cause: WaitCause, reason: String },
    /// The run stopped; nothing was deleted. `error` is the whole one-line explanation.
    Failed { error: String },
}

impl Outcome {
    /// The outcome's name in the JSON bodies and the metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "done",
            Outcome::NothingToDo { .. } => "nothing_to_do",
            Outcome::Waiting { .. } => "waiting",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// Why a run is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCause {
    /// The storage is waking up (an unarchive, a restore).
    Storage,
    /// Another run of this work_dir holds its lock.
    AnotherRun,
    /// Another writer holds the storage's lock, won the race for it, or left it without a
    /// lease not yet judged abandoned. A wait past [`LOCK_WAIT_GRACE`] is a failure to the
    /// health check.
    StorageLock,
}

/// How long runs may find the storage lock held before the health check calls it a failure:
/// a live writer holds it for one run (minutes, an hour for a large first backlog); a lease
/// is judged stale after 6 hours unwritten.
pub const LOCK_WAIT_GRACE: Duration = Duration::from_secs(6 * 3600);

/// An archive that is on the storage and in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub archive_id: u64,
    pub archive_name: String,
    pub replays: usize,
    pub replay_bytes: u64,
    pub archive_bytes: u64,
    /// Replays packed but kept in the temp folder because they changed after packing.
    pub kept: usize,
    pub duration: Duration,
}

/// A channel that hears the run's events.
#[async_trait]
pub trait Reporter: Send + Sync {
    /// Says `event` where this channel says things; bounded in time, never failing.
    async fn report(&self, event: &Event);
}

/// Every configured channel; an event goes to all of them at once.
#[derive(Default)]
pub struct Reporters(Vec<Box<dyn Reporter>>);

impl Reporters {
    pub fn new(reporters: Vec<Box<dyn Reporter>>) -> Self {
        Reporters(reporters)
    }

    pub fn push(&mut self, reporter: Box<dyn Reporter>) {
        self.0.push(reporter);
    }

    pub async fn report(&self, event: &Event) {
        futures_util::future::join_all(self.0.iter().map(|reporter| reporter.report(event))).await;
    }
}

/// Seconds since 1970 (0 for a clock before it).
pub fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_last_run_is_kept_unless_another_run_was_working() {
        let failed =
            RunRecord::default().after(&Outcome::Failed { error: "no".into() }, at(100), at(103));
        let last = failed.last_run.clone().unwrap();
        assert_eq!(
            (last.outcome.as_str(), last.started, last.seconds),
            ("failed", 100, 3)
        );
        let other_run = failed.after(&waiting(WaitCause::AnotherRun), at(200), at(201));
        assert_eq!(other_run, failed, "another run's record is left to it");
        let waiting = failed.after(&waiting(WaitCause::StorageLock), at(300), at(302));
        assert_eq!(
            waiting.last_run.unwrap().outcome,
            "waiting for the storage lock"
        );
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
}
