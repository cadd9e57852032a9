//! What a backup run says happened, as typed events, and the reporters that hear them.
//!
//! The run never builds a message: it reports an [`Event`], and each channel (a chat, a
//! webhook, a dead man's switch, the metrics file) decides whether and how to say it. A
//! reporter never fails the run: the backup itself matters more than the message about it.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::record::RunRecord;

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
    /// How the run ended: every run reports exactly one.
    Finished(Finished),
}

impl Event {
    /// The event's name, as the webhook's JSON body gives it.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Resumed { .. } => "resumed",
            Event::ArchivesWarmingUp { .. } => "warming_up",
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
    /// Another run holds the lock.
    AnotherRun,
}

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
