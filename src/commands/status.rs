//! `oiseau status`: where the backup stands, for an operator or for monitoring.
//!
//! Every condition that would make the next run fail is reported, and makes the command exit
//! non-zero: 1 when a run would fail, 75 while the storage is waking up.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use backends::{PreflightMode, Storage};
use serde::Serialize;

use crate::catalog::Inventory;
use crate::error::{TryLater, is_try_later};
use crate::events::LOCK_WAIT_GRACE;
use crate::journal::{Journal, unix_now};
use crate::layout::{INDEX_NAME, archive_id_of, archive_timestamp};
use crate::scan::{Scan, Stuck};
use crate::settings::{ByteSize, Settings};
use crate::storage::{read_index, ready};
use crate::{lock, scan};

/// Where the backup stands, as `oiseau status` prints it.
#[derive(Debug, Serialize)]
struct Status {
    temp_dir: String,
    replays: usize,
    replay_bytes: u64,
    threshold: u64,
    too_young: usize,
    other_entries: usize,
    /// Replay files no run archives as they are, with why.
    stuck: Vec<Stuck>,
    /// Pid of the run holding the lock.
    run_in_progress: Option<u32>,
    /// Archive of an interrupted run that the next run finishes.
    unfinished_archive: Option<String>,
    storage: String,
    /// `ready`, `pending` (a cold storage is waking up) or `unreachable`.
    storage_state: &'static str,
    storage_message: Option<String>,
    /// The storage's own word on its state (a C14 bucket: open until when).
    storage_condition: Option<String>,
    archives_in_index: Option<usize>,
    archives_on_storage: Option<usize>,
    last_archive: Option<LastArchive>,
    /// What would make the next run fail, each in one line with what to do.
    problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct LastArchive {
    id: u64,
    max_replay_id: u64,
    name: Option<String>,
    age_seconds: Option<u64>,
}

/// Prints where the backup stands, as text or one JSON object. Exits 1 when a run would fail
/// and 75 while the storage is waking up, so monitoring can run it as is.
pub async fn status(settings: &Settings, json: bool) -> Result<()> {
    let mut problems = Vec::new();
    let scan = match scan::scan_now(&settings.temp_dir, settings.min_age).await {
        Ok(scan) => scan,
        Err(e) => {
            problems.push(format!("{e:#}"));
            Scan::default()
        }
    };
    if let Err(e) = check_writable(&settings.work_dir) {
        problems.push(format!("{e:#}"));
    }
    let record = crate::record::load(&settings.work_dir);
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
        replay_bytes: scan.total_bytes(),
        threshold: settings.threshold.0,
        too_young: scan.too_young,
        other_entries: scan.ignored,
        stuck: scan.stuck,
        run_in_progress: lock::holder(&settings.work_dir),
        unfinished_archive,
        storage: settings.storage.backend.clone(),
        storage_state: "unreachable",
        storage_message: None,
        storage_condition: None,
        archives_in_index: None,
        archives_on_storage: None,
        last_archive: None,
        problems,
    };
    let reached = reach_storage(settings, &mut status).await;
    if let Err(e) = &reached {
        status.storage_message = Some(format!("{e:#}"));
        if is_try_later(e) {
            status.storage_state = "pending";
        }
    }
    if json {
        say!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status, settings);
    }
    match (reached, status.problems.first()) {
        (Err(e), _) if is_try_later(&e) => Err(TryLater(format!("{e:#}")).into()),
        (Err(e), _) => Err(e),
        (Ok(()), Some(first)) => Err(anyhow!(
            "{}: {first}",
            counted(status.problems.len(), "problem", "problems")
        )),
        (Ok(()), None) => Ok(()),
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
    let storage = crate::storage::open(settings)?;
    let prepared = ready(&storage, PreflightMode::Inspect).await;
    status.storage = storage.describe();
    prepared?;
    status.storage_condition = storage.condition();
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
    if !inventory.beyond_index.is_empty() {
        status.problems.push(format!(
            "{INDEX_NAME} on {} ends before {}: it was truncated or replaced; `oiseau index \
             rebuild` rebuilds it",
            storage.describe(),
            crate::output::capped(&inventory.beyond_index, ", ")
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

fn print_status(status: &Status, settings: &Settings) {
    say!(
        "temp folder {}: {}, {} of {} threshold ({}%); {} too young, {}",
        status.temp_dir,
        counted(status.replays, "replay", "replays"),
        ByteSize(status.replay_bytes),
        settings.threshold,
        u128::from(status.replay_bytes) * 100 / u128::from(status.threshold),
        status.too_young,
        counted(status.other_entries, "other entry", "other entries"),
    );
    for stuck in &status.stuck {
        say!("never archived as it is: {}: {}", stuck.name, stuck.why);
    }
    match status.run_in_progress {
        Some(pid) => say!("a run is in progress (pid {pid})"),
        None => say!("no run in progress"),
    }
    if let Some(archive) = &status.unfinished_archive {
        say!("archive {archive} was interrupted; the next run finishes it");
    }
    match status.storage_state {
        "ready" => say!(
            "{}: reachable{}",
            status.storage,
            status
                .storage_condition
                .as_deref()
                .map(|condition| format!("; {condition}"))
                .unwrap_or_default()
        ),
        state => say!(
            "{}: {state}: {}",
            status.storage,
            status.storage_message.as_deref().unwrap_or_default()
        ),
    }
    if let (Some(in_index), Some(on_storage)) =
        (status.archives_in_index, status.archives_on_storage)
    {
        say!(
            "{INDEX_NAME} lists {}; the storage holds {on_storage}",
            counted(in_index, "archive", "archives")
        );
    }
    match &status.last_archive {
        Some(last) => say!(
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
        ),
        None if status.archives_in_index.is_some() => say!("no archive yet"),
        None => {}
    }
    for problem in &status.problems {
        say!("problem: {problem}");
    }
}
