//! `metrics_file`: the run's figures in Prometheus's text format for node_exporter's textfile
//! collector, replaced whole at the end of every run, so that a dashboard or an alert sees how
//! the backup is doing without reading a log.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::report::events::{Event, Finished, Outcome, Reporter, WaitCause, unix};
use crate::settings::Settings;
use crate::temp_folder::{Scan, scan_now};

/// Every outcome, each exported 1 for the last run's and 0 for the others, so that an alert
/// can test `oiseau_last_run_outcome{outcome="failed"} == 1`.
const OUTCOMES: [&str; 4] = ["done", "nothing_to_do", "waiting", "failed"];

/// Writes the metrics file when a run finishes.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    temp_dir: PathBuf,
}

impl MetricsFile {
    /// On when `metrics_file` is set.
    pub fn new(settings: &Settings) -> Option<Self> {
        (!settings.metrics_file.as_os_str().is_empty()).then(|| MetricsFile {
            path: settings.metrics_file.clone(),
            temp_dir: settings.temp_dir.clone(),
        })
    }
}

#[async_trait]
impl Reporter for MetricsFile {
    async fn report(&self, event: &Event) {
        let Event::Finished(finished) = event else {
            return;
        };
        // Every replay counts in the backlog, however young.
        let backlog = scan_now(&self.temp_dir, Duration::ZERO)
            .await
            .inspect_err(|e| tracing::warn!("the metrics leave the backlog out: {e:#}"))
            .ok();
        let text = render(finished, backlog.as_ref(), SystemTime::now());
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || {
            crate::atomic_file::replace(&path, text.as_bytes())
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|written| written);
        if let Err(e) = written {
            tracing::warn!(
                "cannot write the metrics file {}: {e}; check metrics_file",
                self.path.display()
            );
        }
    }
}

/// A count or a unix time as a gauge's value.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Registers the gauges and sets them; the registry is built for one file and dropped.
struct Gauges(Registry);

impl Gauges {
    fn set(&mut self, name: &str, help: &str, value: i64) {
        let gauge = Gauge::<i64>::default();
        gauge.set(value);
        self.0.register(name, help, gauge);
    }

    fn set_f64(&mut self, name: &str, help: &str, value: f64) {
        let gauge = Gauge::<f64, AtomicU64>::default();
        gauge.set(value);
        self.0.register(name, help, gauge);
    }
}

/// The file's text: the OpenMetrics text format, which node_exporter's collector reads.
fn render(finished: &Finished, backlog: Option<&Scan>, now: SystemTime) -> String {
    let mut gauges = Gauges(Registry::with_prefix("oiseau"));
    gauges.set(
        "last_run_start_timestamp_seconds",
        "When the last run started (unix time)",
        count(unix(finished.started_at)),
    );
    gauges.set(
        "last_run_end_timestamp_seconds",
        "When the last run ended (unix time)",
        count(unix(now)),
    );
    gauges.set_f64(
        "last_run_duration_seconds",
        "How long the last run took",
        finished.duration.as_secs_f64(),
    );
    gauges.set(
        "last_run_exit_code",
        "The last run's exit code: 0 done, 1 failed, 2 bad settings, 75 try again later",
        i64::from(finished.exit_code),
    );
    let outcomes = Family::<Vec<(String, String)>, Gauge>::default();
    for outcome in OUTCOMES {
        outcomes
            .get_or_create(&vec![("outcome".to_owned(), outcome.to_owned())])
            .set(i64::from(finished.outcome.name() == outcome));
    }
    gauges.0.register(
        "last_run_outcome",
        "1 for how the last run ended (done, nothing_to_do, waiting, failed), 0 for the others",
        outcomes,
    );
    let archived = matches!(finished.outcome, Outcome::Done(_));
    gauges.set(
        "last_run_archives",
        "Archives the last run made (0 or 1)",
        i64::from(archived),
    );
    set_history(&mut gauges, finished);
    if let Some(scan) = backlog {
        set_backlog(&mut gauges, scan, now);
    }
    let mut text = String::new();
    encode(&mut text, &gauges.0).expect("writing to a String cannot fail");
    text
}

/// What the run record remembers: the last success, the last archive, the current wait.
fn set_history(gauges: &mut Gauges, finished: &Finished) {
    let record = &finished.record;
    if let Some(success) = record.last_success {
        gauges.set(
            "last_success_timestamp_seconds",
            "When a run last ended well, done or with nothing to do (unix time)",
            count(success),
        );
    }
    if let Some(archive) = &record.last_archive {
        gauges.set(
            "last_archive_id",
            "The id of the last archive made here",
            count(archive.id),
        );
        gauges.set(
            "last_archive_timestamp_seconds",
            "When the last archive made here was committed (unix time)",
            count(archive.at),
        );
        gauges.set(
            "last_archive_replays",
            "Replays in the last archive made here",
            count(archive.replays as u64),
        );
        gauges.set(
            "last_archive_replay_bytes",
            "The replays' bytes in the last archive made here, before packing",
            count(archive.replay_bytes),
        );
        gauges.set(
            "last_archive_bytes",
            "The size of the last archive made here, on the storage",
            count(archive.archive_bytes),
        );
    }
    let waiting = matches!(
        finished.outcome,
        Outcome::Waiting {
            cause: WaitCause::Storage,
            ..
        }
    );
    gauges.set(
        "storage_pending",
        "1 while the storage is waking up (an unarchive or a restore under way)",
        i64::from(waiting),
    );
    if let Some(since) = record.waiting_since {
        gauges.set(
            "storage_pending_since_timestamp_seconds",
            "Since when runs have been waiting for the storage (unix time)",
            count(since),
        );
    }
    let lock_held = matches!(
        finished.outcome,
        Outcome::Waiting {
            cause: WaitCause::StorageLock,
            ..
        }
    );
    gauges.set(
        "storage_lock_waiting",
        "1 while runs find the storage lock held by another writer, or held without a lease",
        i64::from(lock_held),
    );
    if let Some(since) = record.lock_waiting_since {
        gauges.set(
            "storage_lock_waiting_since_timestamp_seconds",
            "Since when runs have found the storage lock held and could not archive (unix time)",
            count(since),
        );
    }
}

/// The replays waiting in the temp folder.
fn set_backlog(gauges: &mut Gauges, scan: &Scan, now: SystemTime) {
    gauges.set(
        "backlog_replays",
        "Replays in the temp folder, not archived yet",
        count(scan.replays.len() as u64),
    );
    gauges.set(
        "backlog_bytes",
        "The bytes of the replays in the temp folder",
        count(scan.total_bytes()),
    );
    let age = scan.oldest_age(now).map_or(0, |age| age.as_secs());
    gauges.set(
        "backlog_oldest_age_seconds",
        "How long the oldest replay of the temp folder has waited (0 when there is none)",
        count(age),
    );
    gauges.set(
        "backlog_stuck_replays",
        "Replay files no run archives as they are (see `oiseau status`)",
        count(scan.stuck.len() as u64),
    );
}
