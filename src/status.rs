//! Where the backup stands, for `oiseau status` (an operator, monitoring) and `serve`'s page.
//!
//! Every condition that would make the next run fail is reported, and makes the command exit
//! non-zero: 1 when a run would fail, 75 while the storage is waking up.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use backends::{PreflightMode, Storage};
use serde::Serialize;

use crate::catalog::Inventory;
use crate::clock::unix_now;
use crate::error::{TryLater, is_try_later};
use crate::formats::names::{INDEX_NAME, archive_id_of, archive_timestamp};
use crate::report::events::LOCK_WAIT_GRACE;
use crate::run::journal::Journal;
use crate::run::work_dir_lock;
use crate::temp_folder::{Scan, Stuck};

use crate::settings::Settings;
use crate::storage::{read_index, ready};
use crate::units::ByteSize;

/// Where the backup stands, as `oiseau status` prints it.
#[derive(Debug, Serialize)]
pub struct Status {
    pub temp_dir: String,
    pub replays: usize,
    pub replay_bytes: u64,
    /// How long the oldest replay waiting has been there.
    pub oldest_age_seconds: Option<u64>,
    pub threshold: u64,
    pub too_young: usize,
    pub other_entries: usize,
    /// Replay files no run archives as they are, with why.
    pub stuck: Vec<Stuck>,
    /// Pid of the run holding the lock.
    pub run_in_progress: Option<u32>,
    /// Archive of an interrupted run that the next run finishes.
    pub unfinished_archive: Option<String>,
    pub storage: String,
    /// `ready`, `pending` (a cold storage is waking up) or `unreachable`.
    pub storage_state: &'static str,
    pub storage_message: Option<String>,
    /// The storage's own word on its state (a C14 bucket: open until when).
    pub storage_condition: Option<String>,
    pub archives_in_index: Option<usize>,
    pub archives_on_storage: Option<usize>,
    /// Archives of the index with no manifest (the original tool's): located by id range,
    /// read from their start, with no hash to check until `oiseau index legacy` records one.
    pub archives_without_manifest: Option<usize>,
    pub last_archive: Option<LastArchive>,
    /// What would make the next run fail, each in one line with what to do.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct LastArchive {
    pub id: u64,
    pub max_replay_id: u64,
    pub name: Option<String>,
    pub age_seconds: Option<u64>,
}

/// Where the backup stands, and whether the storage could be reached.
pub struct StatusReport {
    pub status: Status,
    /// Why the storage could not be reached (or is waking up).
    unreached: Option<anyhow::Error>,
}

/// Looks at where the backup stands: the temp folder, `work_dir`, the run record and the
/// storage (made ready only as far as looking goes: a cold storage is not woken up).
pub async fn inspect(settings: &Settings) -> StatusReport {
    let mut problems = Vec::new();
    let scan = match crate::temp_folder::scan_now(&settings.temp_dir, settings.min_age).await {
        Ok(scan) => scan,
        Err(e) => {
            problems.push(format!("{e:#}"));
            Scan::default()
        }
    };
    if let Err(e) = check_writable(&settings.work_dir) {
        problems.push(format!("{e:#}"));
    }
    let record = crate::run::record::load(&settings.work_dir);
    if let (Some(since), Ok(now)) = (record.lock_waiting_since, unix_now()) {
        let waited = std::time::Duration::from_secs(now.saturating_sub(since));
        if waited > LOCK_WAIT_GRACE {
            problems.push(format!(
                "no run has archived for {}: the storage lock stays held ({}). Find the writer \
                 named there; if none runs, the lock is taken over by itself once it is judged \
                 stale or abandoned",
                humantime::format_duration(waited),
                record.lock_waiting_reason.as_deref().unwrap_or("no detail")
            ));
        }
    }
    // A damaged journal is a problem to report like the others, not a status that fails.
    let unfinished_archive = match Journal::load(&settings.work_dir) {
        Ok(journal) => journal.map(|j| j.archive_name),
        Err(e) => {
            problems.push(format!("{e:#}"));
            None
        }
    };
    let mut status = Status {
        temp_dir: settings.temp_dir.display().to_string(),
        replays: scan.replays.len(),
        oldest_age_seconds: scan
            .oldest_age(std::time::SystemTime::now())
            .map(|age| age.as_secs()),
        replay_bytes: scan.total_bytes(),
        threshold: settings.threshold.0,
        too_young: scan.too_young,
        other_entries: scan.ignored,
        stuck: scan.stuck,
        run_in_progress: work_dir_lock::holder(&settings.work_dir),
        unfinished_archive,
        storage: settings.storage.backend.clone(),
        storage_state: "unreachable",
        storage_message: None,
        storage_condition: None,
        archives_in_index: None,
        archives_on_storage: None,
        archives_without_manifest: None,
        last_archive: None,
        problems,
    };
    let unreached = reach_storage(settings, &mut status).await.err();
    if let Some(e) = &unreached {
        status.storage_message = Some(format!("{e:#}"));
        if is_try_later(e) {
            status.storage_state = "pending";
        }
    }
    StatusReport { status, unreached }
}

impl StatusReport {
    /// The command's outcome, so that monitoring can run it as is: an error (exit 1) when a
    /// run would fail, "try later" (exit 75) while the storage is waking up.
    pub fn outcome(self) -> Result<()> {
        let status = self.status;
        match (self.unreached, status.problems.first()) {
            (Some(e), _) if is_try_later(&e) => Err(TryLater(format!("{e:#}")).into()),
            (Some(e), _) => Err(e),
            (None, Some(first)) => Err(anyhow!(
                "{}: {first}",
                counted(status.problems.len(), "problem", "problems")
            )),
            (None, None) => Ok(()),
        }
    }

    /// The report as one JSON object, for monitoring.
    pub fn json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(&self.status)?)
    }

    /// The report in lines, for an operator.
    pub fn lines(&self) -> Vec<String> {
        let status = &self.status;
        let mut lines = vec![format!(
            "temp folder {}: {}, {} of {} threshold ({}%); {} too young, {}",
            status.temp_dir,
            counted(status.replays, "replay", "replays"),
            ByteSize(status.replay_bytes),
            ByteSize(status.threshold),
            u128::from(status.replay_bytes) * 100 / u128::from(status.threshold.max(1)),
            status.too_young,
            counted(status.other_entries, "other entry", "other entries"),
        )];
        for stuck in &status.stuck {
            lines.push(format!(
                "never archived as it is: {}: {}",
                stuck.name, stuck.why
            ));
        }
        lines.push(match status.run_in_progress {
            Some(pid) => format!("a run is in progress (pid {pid})"),
            None => "no run in progress".to_owned(),
        });
        if let Some(archive) = &status.unfinished_archive {
            lines.push(format!(
                "archive {archive} was interrupted; the next run finishes it"
            ));
        }
        lines.push(match status.storage_state {
            "ready" => format!(
                "{}: reachable{}",
                status.storage,
                status
                    .storage_condition
                    .as_deref()
                    .map(|condition| format!("; {condition}"))
                    .unwrap_or_default()
            ),
            state => format!(
                "{}: {state}: {}",
                status.storage,
                status.storage_message.as_deref().unwrap_or_default()
            ),
        });
        if let (Some(in_index), Some(on_storage)) =
            (status.archives_in_index, status.archives_on_storage)
        {
            lines.push(format!(
                "{INDEX_NAME} lists {}; the storage holds {on_storage}",
                counted(in_index, "archive", "archives")
            ));
        }
        if let Some(without @ 1..) = status.archives_without_manifest {
            lines.push(format!(
                "{} without a manifest (the original tool's): located by id range and read from \
                 their start, with no hash to check; `oiseau index legacy` records one for each",
                counted(without, "archive", "archives")
            ));
        }
        match &status.last_archive {
            Some(last) => lines.push(format!(
                "last archive: {} (replays up to {}) {}{}",
                last.id,
                last.max_replay_id,
                last.name.as_deref().unwrap_or("(missing from the storage)"),
                last.age_seconds
                    .map(|age| format!(
                        ", {} ago",
                        humantime::format_duration(std::time::Duration::from_secs(age))
                    ))
                    .unwrap_or_default()
            )),
            None if status.archives_in_index.is_some() => lines.push("no archive yet".to_owned()),
            None => {}
        }
        for problem in &status.problems {
            lines.push(format!("problem: {problem}"));
        }
        lines
    }
}

/// What `oiseau status --json` prints when there is no status to give (the settings were
/// refused): one JSON object with the error, so that monitoring reading stdout sees why.
pub fn print_refused(error: &anyhow::Error) {
    say!(
        "{}",
        serde_json::json!({
            "error": format!("{error:#}"),
            "exit_code": crate::error::exit_code(error),
        })
    );
}

/// A run writes its journal and spool in `work_dir`: one that cannot is a run that fails.
fn check_writable(work_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(work_dir)
        .and_then(|()| tempfile::tempfile_in(work_dir).map(drop))
        .with_context(|| {
            format!(
                "work_dir {} is not writable, so every run would fail; fix its permissions or \
                 set work_dir",
                work_dir.display()
            )
        })
}

/// Makes the storage ready and reads its state; an index that is missing, malformed or behind
/// the storage is a problem of a reachable storage.
async fn reach_storage(settings: &Settings, status: &mut Status) -> Result<()> {
    let unprepared = crate::storage::open(settings)?;
    let prepared = ready(&unprepared, PreflightMode::Inspect).await;
    status.storage = unprepared.describe();
    let prepared = prepared?;
    status.storage_condition = prepared.condition;
    let storage = prepared.storage;
    let objects = storage
        .list()
        .await
        .with_context(|| format!("cannot list {}", storage.describe()))?;
    status.storage_state = "ready";
    status.archives_on_storage = Some(
        objects
            .iter()
            .filter(|o| archive_id_of(&o.name).is_some())
            .count(),
    );
    match read_index(&storage).await {
        Ok((index, version)) => {
            describe_index(&storage, &Inventory::of(index, version, objects), status);
        }
        Err(e) => status.problems.push(format!("{e:#}")),
    }
    Ok(())
}

fn describe_index(storage: &Storage, inventory: &Inventory, status: &mut Status) {
    status.archives_in_index = Some(inventory.slots.len());
    status.archives_without_manifest = Some(
        inventory
            .slots
            .iter()
            .filter(|slot| slot.object.is_some() && slot.manifest.is_none())
            .count(),
    );
    if !inventory.beyond_index.is_empty() {
        status.problems.push(format!(
            "{INDEX_NAME} on {} ends before {}: it was truncated or replaced; `oiseau index \
             rebuild` rebuilds it",
            storage.describe(),
            crate::report::output::capped(&inventory.beyond_index, ", ")
        ));
    }
    status.last_archive = inventory.slots.last().map(|last| {
        let name = last.object.as_ref().map(|o| o.name.clone());
        let age_seconds = name
            .as_deref()
            .and_then(archive_timestamp)
            .and_then(|stamp| unix_now().ok()?.checked_sub(stamp));
        LastArchive {
            id: last.entry.archive_id,
            max_replay_id: last.entry.max_replay_id,
            name,
            age_seconds,
        }
    });
}

/// `1 archive`, `2 archives`.
fn counted(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}
