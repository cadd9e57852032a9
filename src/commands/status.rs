//! `oiseau status`: where the backup stands, for an operator or for monitoring.

use anyhow::{Context, Result};
use backends::PreflightMode;
use serde::Serialize;

use crate::error::is_try_later;
use crate::journal::{Journal, unix_now};
use crate::layout::{INDEX_NAME, archive_id_of, archive_timestamp};
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
}

#[derive(Debug, Serialize)]
struct LastArchive {
    id: u64,
    max_replay_id: u64,
    name: Option<String>,
    age_seconds: Option<u64>,
}

/// Prints where the backup stands, as text or one JSON object. Exits 1 when the storage
/// cannot be read and 75 while it is waking up, so monitoring can run it as is.
pub async fn status(settings: &Settings, json: bool) -> Result<()> {
    let scan = scan::scan_now(&settings.temp_dir, settings.min_age).await?;
    let mut status = Status {
        temp_dir: settings.temp_dir.display().to_string(),
        replays: scan.replays.len(),
        replay_bytes: scan.total_bytes(),
        threshold: settings.threshold.0,
        too_young: scan.too_young,
        other_entries: scan.ignored,
        run_in_progress: lock::holder(&settings.work_dir),
        unfinished_archive: Journal::load(&settings.work_dir)?.map(|j| j.archive_name),
        storage: String::new(),
        storage_state: "unreachable",
        storage_message: None,
        storage_condition: None,
        archives_in_index: None,
        archives_on_storage: None,
        last_archive: None,
    };
    let outcome = storage_status(settings, &mut status).await;
    if let Err(e) = &outcome {
        status.storage_message = Some(format!("{e:#}"));
        if is_try_later(e) {
            status.storage_state = "pending";
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status, settings);
    }
    outcome
}

async fn storage_status(settings: &Settings, status: &mut Status) -> Result<()> {
    status.storage.clone_from(&settings.storage.backend);
    let storage = crate::storage::open(settings)?;
    let prepared = ready(&storage, PreflightMode::Inspect).await;
    status.storage = storage.describe();
    prepared?;
    status.storage_condition = storage.condition();
    let (index, _) = read_index(&storage).await?;
    let objects = storage
        .list()
        .await
        .with_context(|| format!("cannot list {}", storage.describe()))?;
    status.storage_state = "ready";
    status.archives_in_index = Some(index.entries().len());
    status.archives_on_storage = Some(
        objects
            .iter()
            .filter(|o| archive_id_of(&o.name).is_some())
            .count(),
    );
    status.last_archive = index.last().map(|last| {
        let name = objects
            .iter()
            .map(|o| &o.name)
            .find(|name| archive_id_of(name) == Some(last.archive_id))
            .cloned();
        let age_seconds = name
            .as_deref()
            .and_then(archive_timestamp)
            .and_then(|stamp| unix_now().ok()?.checked_sub(stamp));
        LastArchive {
            id: last.archive_id,
            max_replay_id: last.max_replay_id,
            name,
            age_seconds,
        }
    });
    Ok(())
}

fn print_status(status: &Status, settings: &Settings) {
    println!(
        "temp folder {}: {} replays, {} of {} threshold ({}%); {} too young, {} other entries",
        status.temp_dir,
        status.replays,
        ByteSize(status.replay_bytes),
        settings.threshold,
        status.replay_bytes * 100 / status.threshold,
        status.too_young,
        status.other_entries
    );
    match status.run_in_progress {
        Some(pid) => println!("a run is in progress (pid {pid})"),
        None => println!("no run in progress"),
    }
    if let Some(archive) = &status.unfinished_archive {
        println!("archive {archive} was interrupted; the next run finishes it");
    }
    match status.storage_state {
        "ready" => println!(
            "{}: reachable{}",
            status.storage,
            status
                .storage_condition
                .as_deref()
                .map(|condition| format!("; {condition}"))
                .unwrap_or_default()
        ),
        state => println!(
            "{}: {state}: {}",
            status.storage,
            status.storage_message.as_deref().unwrap_or_default()
        ),
    }
    if let (Some(in_index), Some(on_storage)) =
        (status.archives_in_index, status.archives_on_storage)
    {
        println!("{INDEX_NAME} lists {in_index} archives; the storage holds {on_storage}");
    }
    match &status.last_archive {
        Some(last) => println!(
            "last archive: `{}\t{}` {}{}",
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
        None if status.storage_state == "ready" => println!("no archive yet"),
        None => {}
    }
}
