//! The run's events as one documented JSON shape: the `[webhook]` body, and what
//! `oiseau run --json` prints. Every key is always there (`null` where it does not apply), so
//! that a consumer never has to guess.

use async_trait::async_trait;
use serde::Serialize;

use crate::report::events::{Event, Outcome, Reporter, WaitCause, unix};

/// One event as JSON.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// `started`, `resumed`, `warming_up`, or the outcome of a finished run: `done`,
    /// `nothing_to_do`, `waiting`, `failed`.
    pub event: &'static str,
    /// The machine the run is on (several hosts may share one storage).
    pub host: String,
    /// For a finished run: `done`, `nothing_to_do`, `waiting` or `failed`.
    pub outcome: Option<&'static str>,
    /// While waiting: `storage` (waking up) or `another_run` (holds the lock).
    pub waiting_for: Option<&'static str>,
    pub exit_code: Option<u8>,
    /// Unix time the run started.
    pub started_at: Option<u64>,
    pub duration_seconds: Option<f64>,
    pub archive_id: Option<u64>,
    pub archive_name: Option<&'a str>,
    pub replays: Option<usize>,
    /// The replays' bytes, before packing.
    pub replay_bytes: Option<u64>,
    /// The archive's size on the storage.
    pub archive_bytes: Option<u64>,
    /// Replays packed but kept in the temp folder because they changed after packing.
    pub kept: Option<usize>,
    /// Nothing to do: the replays in the temp folder, and the threshold they must reach.
    pub backlog_bytes: Option<u64>,
    pub threshold: Option<u64>,
    /// Failed: the one-line error. Waiting or warming up: what the storage is doing.
    pub error: Option<&'a str>,
    pub detail: Option<&'a str>,
    /// Unix time since when runs have been waiting for the storage.
    pub waiting_since: Option<u64>,
}

impl<'a> Report<'a> {
    /// A run that failed before it started: its settings or its storage's settings refused.
    pub fn refused(error: &'a str, exit_code: u8) -> Self {
        Report {
            outcome: Some("failed"),
            exit_code: Some(exit_code),
            error: Some(error),
            ..Report::empty("failed")
        }
    }

    fn empty(event: &'static str) -> Self {
        Report {
            event,
            host: shared::host_name(),
            outcome: None,
            waiting_for: None,
            exit_code: None,
            started_at: None,
            duration_seconds: None,
            archive_id: None,
            archive_name: None,
            replays: None,
            replay_bytes: None,
            archive_bytes: None,
            kept: None,
            backlog_bytes: None,
            threshold: None,
            error: None,
            detail: None,
            waiting_since: None,
        }
    }

    pub fn of(event: &'a Event) -> Self {
        let mut report = Report::empty(event.name());
        let finished = match event {
            Event::Started => return report,
            Event::Resumed { archive_name } => {
                report.archive_name = Some(archive_name);
                return report;
            }
            Event::ArchivesWarmingUp { detail } | Event::StorageNotice { detail } => {
                report.detail = Some(detail);
                return report;
            }
            Event::Finished(finished) => finished,
        };
        report.outcome = Some(finished.outcome.name());
        report.exit_code = Some(finished.exit_code);
        report.started_at = Some(unix(finished.started_at));
        report.duration_seconds = Some(finished.duration.as_secs_f64());
        match &finished.outcome {
            Outcome::Done(done) => {
                report.archive_id = Some(done.archive_id);
                report.archive_name = Some(&done.archive_name);
                report.replays = Some(done.replays);
                report.replay_bytes = Some(done.replay_bytes);
                report.archive_bytes = Some(done.archive_bytes);
                report.kept = Some(done.kept);
            }
            Outcome::NothingToDo { bytes, threshold } => {
                report.backlog_bytes = Some(*bytes);
                report.threshold = Some(*threshold);
            }
            Outcome::Waiting { cause, reason } => {
                report.waiting_for = Some(match cause {
                    WaitCause::Storage => "storage",
                    WaitCause::AnotherRun => "another_run",
                    WaitCause::StorageLock => "storage_lock",
                });
                report.detail = Some(reason);
                report.waiting_since = finished.record.waiting_since;
            }
            Outcome::Failed { error } => report.error = Some(error),
        }
        report
    }
}

/// `oiseau run --json`: the finished run's report on stdout, the log staying on stderr.
#[derive(Debug, Default)]
pub struct PrintJson;

#[async_trait]
impl Reporter for PrintJson {
    async fn report(&self, event: &Event) {
        if matches!(event, Event::Finished(_)) {
            match serde_json::to_string(&Report::of(event)) {
                Ok(json) => say!("{json}"),
                Err(e) => tracing::warn!("cannot print the run's report: {e}"),
            }
        }
    }
}

/// What `oiseau run --json` prints when the run could not start: the same shape, failed.
pub fn print_refused(error: &anyhow::Error) {
    let text = format!("{error:#}");
    match serde_json::to_string(&Report::refused(&text, crate::error::exit_code(error))) {
        Ok(json) => say!("{json}"),
        Err(e) => tracing::warn!("cannot print the run's report: {e}"),
    }
}
