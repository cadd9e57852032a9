//! The backup run: lock -> scan -> threshold -> preflight -> index -> pack -> upload ->
//! commit the index -> clean the temp folder -> notify.
//!
//! The order is the safety argument: a replay leaves the temp folder only after the archive
//! holding it is on the storage with the right size and the index lists it.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use backends::{PreflightMode, Storage, StorageError, WriteMode};

use crate::commands::ready_storage;
use crate::index::{INDEX_NAME, Index, IndexEntry};
use crate::notify::{Notifier, escape};
use crate::pack::{Packed, pack};
use crate::progress::bytes_bar;
use crate::scan::{Replay, scan};
use crate::settings::{ByteSize, Settings};
use crate::{TryLater, lock};

/// How `oiseau run` was asked to behave.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Pack whatever is there, even below the threshold.
    pub force: bool,
    /// Print the plan and change nothing anywhere.
    pub dry_run: bool,
}

/// What a run did.
#[derive(Debug)]
pub enum RunReport {
    NothingToDo,
    Planned(Plan),
    Archived(Archived),
}

/// The archive a run is about to make.
#[derive(Debug)]
pub struct Plan {
    pub archive_id: u64,
    pub archive_name: String,
    pub replays: Vec<Replay>,
    pub bytes: u64,
    /// Seconds since the epoch; shared by the archive and the index copy of one run.
    pub timestamp: u64,
}

/// An archive that is on the storage and in the index.
#[derive(Debug)]
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

/// Runs one backup and tells the operators how it went.
pub async fn run(settings: &Settings, options: RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let notifier = Notifier::new(&settings.telegram);
    let result = backup(settings, options, started).await;
    match &result {
        Ok(RunReport::Archived(done)) => {
            notifier
                .send(&format!(
                    "✅ <b>oiseau</b>: archived <code>{}</code>: {} replays, {}, in {}",
                    escape(&done.archive_name),
                    done.replays,
                    ByteSize(done.archive_bytes),
                    humantime::format_duration(Duration::from_secs(done.duration.as_secs())),
                ))
                .await;
        }
        Ok(_) => {}
        Err(e) if e.downcast_ref::<lock::LockHeld>().is_some() => {}
        Err(e) if e.downcast_ref::<TryLater>().is_some() => {
            notifier
                .send(&format!("⏳ <b>oiseau</b>: {}", escape(&format!("{e:#}"))))
                .await;
        }
        Err(e) => {
            notifier
                .send(&format!(
                    "❌ <b>oiseau</b>: backup failed, nothing was deleted: {}",
                    escape(&format!("{e:#}"))
                ))
                .await;
        }
    }
    result
}

async fn backup(settings: &Settings, options: RunOptions, started: Instant) -> Result<RunReport> {
    let _lock = lock::acquire(&settings.work_dir)?;
    let scan = scan(&settings.temp_dir, settings.min_age, SystemTime::now())?;
    let bytes = scan.total_bytes();
    tracing::info!(
        replays = scan.replays.len(),
        bytes,
        too_young = scan.too_young,
        ignored = scan.ignored,
        "scanned {}",
        settings.temp_dir.display()
    );
    if scan.ignored > 0 {
        tracing::info!(
            "left alone {} entries of the temp folder that are not replay files",
            scan.ignored
        );
    }
    let threshold = settings.threshold.0;
    if scan.replays.is_empty() || (bytes < threshold && !options.force) {
        tracing::info!(
            "nothing to do: {} of {}",
            ByteSize(bytes),
            ByteSize(threshold)
        );
        return Ok(RunReport::NothingToDo);
    }

    // A dry run only looks: it must not wake a cold storage up.
    let mode = if options.dry_run {
        PreflightMode::Inspect
    } else {
        PreflightMode::Prepare
    };
    let storage = ready_storage(settings, mode).await?;
    let index = read_index(storage.as_ref()).await?;
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let archive_id = index.next_archive_id();
    let plan = Plan {
        archive_id,
        archive_name: archive_name(timestamp, archive_id),
        bytes,
        replays: scan.replays,
        timestamp,
    };
    if options.dry_run {
        return Ok(RunReport::Planned(plan));
    }

    let spool_dir = settings.work_dir.join("spool");
    let packed = pack_to_spool(&plan, &spool_dir).await?;
    let spool_file = spool_dir.join(&plan.archive_name);
    let result = commit(storage.as_ref(), &index, &plan, &packed, &spool_file).await;
    // The spool is only a staging copy; on failure the replays are still in the temp folder.
    let _ = std::fs::remove_file(&spool_file);
    result?;

    let kept = clean_temp_folder(&packed.replays);
    Ok(RunReport::Archived(Archived {
        archive_id: plan.archive_id,
        archive_name: plan.archive_name,
        replays: packed.replays.len(),
        replay_bytes: packed.replays.iter().map(|r| r.size).sum(),
        archive_bytes: packed.size,
        kept,
        duration: started.elapsed(),
    }))
}

/// `<unix_time>_replays_<id>.tar.gz`, the original tool's archive name.
pub fn archive_name(timestamp: u64, archive_id: u64) -> String {
    format!("{timestamp}_replays_{archive_id}.tar.gz")
}

/// Reads and parses the storage's index; a storage without one needs `oiseau init` first.
pub async fn read_index(storage: &dyn Storage) -> Result<Index> {
    let raw = match storage.read(INDEX_NAME).await {
        Ok(raw) => raw,
        Err(StorageError::NotFound { .. }) => {
            return Err(anyhow!(
                "{} has no {INDEX_NAME}; if this is a new storage, run `oiseau init` first, \
                 otherwise check the storage settings",
                storage.describe()
            ));
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read {INDEX_NAME} from {}", storage.describe()));
        }
    };
    Index::parse(raw).with_context(|| format!("on {}", storage.describe()))
}

async fn pack_to_spool(plan: &Plan, spool_dir: &std::path::Path) -> Result<Packed> {
    std::fs::create_dir_all(spool_dir)
        .with_context(|| format!("cannot create the spool folder {}", spool_dir.display()))?;
    remove_stale_spool_files(spool_dir);
    let out: PathBuf = spool_dir.join(&plan.archive_name);
    let replays = plan.replays.clone();
    let bar = bytes_bar(plan.bytes, "packing");
    let progress_bar = bar.clone();
    tracing::info!(
        "packing {} replays ({}) into {}",
        plan.replays.len(),
        ByteSize(plan.bytes),
        plan.archive_name
    );
    let packed = tokio::task::spawn_blocking(move || {
        pack(&replays, &out, &|done| progress_bar.set_position(done))
    })
    .await
    .context("the packer stopped unexpectedly")??;
    bar.finish_and_clear();
    if !packed.left_out.is_empty() {
        tracing::warn!(
            "{} replays vanished or changed while packing; they stay for the next run",
            packed.left_out.len()
        );
    }
    tracing::info!(bytes = packed.size, sha256 = %packed.sha256, "packed {}", plan.archive_name);
    Ok(packed)
}

/// Spool files of runs that were killed: the replays they held are still in the temp folder
/// (cleaning comes last), so the staging copies can go.
fn remove_stale_spool_files(spool_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(spool_dir) else {
        return;
    };
    for entry in entries.flatten() {
        tracing::info!("removing the stale spool file {}", entry.path().display());
        let _ = std::fs::remove_file(entry.path());
    }
}

/// Uploads the archive, then makes it part of the backup by appending its index line, then
/// leaves the timestamped copy of the index beside it.
async fn commit(
    storage: &dyn Storage,
    index: &Index,
    plan: &Plan,
    packed: &Packed,
    spool_file: &std::path::Path,
) -> Result<()> {
    let where_to = storage.describe();
    tracing::info!("uploading {} to {where_to}", plan.archive_name);
    let bar = bytes_bar(packed.size, "uploading");
    let stored = storage
        .upload(
            spool_file,
            &plan.archive_name,
            WriteMode::CreateNew,
            &|sent| bar.set_position(sent),
        )
        .await
        .with_context(|| format!("cannot upload {} to {where_to}", plan.archive_name))?;
    bar.finish_and_clear();
    if stored.size != packed.size {
        return Err(anyhow!(
            "{} is {} bytes on {where_to}, {} were packed; nothing was deleted",
            plan.archive_name,
            stored.size,
            packed.size
        ));
    }

    let entry = IndexEntry {
        archive_id: plan.archive_id,
        max_replay_id: packed
            .replays
            .iter()
            .map(|r| r.id)
            .max()
            .expect("a packed archive holds at least one replay"),
    };
    let new_index = index.appended(entry);
    storage
        .write(INDEX_NAME, &new_index, WriteMode::Replace)
        .await
        .with_context(|| format!("cannot write {INDEX_NAME} to {where_to}"))?;
    tracing::info!("{INDEX_NAME} on {where_to} now ends with `{entry}`");

    // The copy is history, not part of the commit: the archive is already safe, so a failed
    // copy is reported and the run goes on. Two runs within one second share the name, and
    // then the later copy (a superset) replaces the earlier one.
    let copy = format!("{}_{INDEX_NAME}", plan.timestamp);
    if let Err(e) = storage.write(&copy, &new_index, WriteMode::Replace).await {
        tracing::warn!("cannot write the index copy {copy} to {where_to}: {e}");
    }
    Ok(())
}

/// Deletes the archived replays that are still exactly what was packed, and returns how many
/// were kept because they changed (they go into a later archive: duplicated, never lost).
fn clean_temp_folder(archived: &[Replay]) -> usize {
    let mut kept = 0;
    for replay in archived {
        match replay.is_unchanged() {
            Ok(true) => {
                if let Err(e) = std::fs::remove_file(&replay.path) {
                    tracing::warn!("cannot remove {}: {e}", replay.path.display());
                    kept += 1;
                }
            }
            Ok(false) => {
                tracing::warn!(
                    "{} changed after it was packed; kept for the next run",
                    replay.path.display()
                );
                kept += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!("cannot check {}: {e}; kept", replay.path.display());
                kept += 1;
            }
        }
    }
    kept
}
