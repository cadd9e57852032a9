//! The small commands: `init`, `status`, `config`.

use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use backends::{Preflight, PreflightMode, Storage, StorageError, WriteMode};

use serde::Serialize;

use crate::index::INDEX_NAME;
use crate::journal::{Journal, unix_now};
use crate::run::{archive_id_of, read_index};
use crate::settings::{ByteSize, Settings, SettingsError};
use crate::{TryLater, lock, scan};

/// Opens the configured storage and runs its preflight; a storage that is not ready yet means
/// "try again later".
pub async fn ready_storage(settings: &Settings, mode: PreflightMode) -> Result<Box<dyn Storage>> {
    let mut storage = backends::open(&settings.storage)
        .map_err(|e| SettingsError(format!("storage settings: {e}")))?;
    let where_to = storage.describe();
    match storage
        .preflight(mode)
        .await
        .with_context(|| format!("preflight of {where_to}"))?
    {
        Preflight::Ready => Ok(storage),
        Preflight::Pending(why) => Err(TryLater(why).into()),
    }
}

/// Creates an empty index on a storage that has none. Refuses when one exists: a second
/// `init` on a used storage would restart archive ids and overwrite history.
pub async fn init(settings: &Settings) -> Result<()> {
    let storage = ready_storage(settings, PreflightMode::Prepare).await?;
    let where_to = storage.describe();
    match storage.stat(INDEX_NAME).await {
        Ok(meta) => bail!(
            "{where_to} already has {INDEX_NAME} ({} bytes); it is left as it is",
            meta.size
        ),
        Err(StorageError::NotFound { .. }) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot reach {where_to}")),
    }
    storage
        .write(INDEX_NAME, b"", WriteMode::CreateNew)
        .await
        .with_context(|| format!("cannot create {INDEX_NAME} on {where_to}"))?;
    println!("created an empty {INDEX_NAME} on {where_to}; the first archive will be id 1");
    Ok(())
}

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
    let scan = scan::scan(&settings.temp_dir, settings.min_age, SystemTime::now())?;
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
        if e.downcast_ref::<TryLater>().is_some() {
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
    let storage = ready_storage(settings, PreflightMode::Inspect).await;
    status.storage = match &storage {
        Ok(storage) => storage.describe(),
        Err(_) => settings.storage.backend.to_string(),
    };
    let storage = storage?;
    status.storage_condition = storage.condition();
    let index = read_index(storage.as_ref()).await?;
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
        let age_seconds = name.as_deref().and_then(|name| {
            let stamp: u64 = name.split('_').next()?.parse().ok()?;
            unix_now().ok()?.checked_sub(stamp)
        });
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
