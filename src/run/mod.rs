//! The backup run: lock -> finish an interrupted run -> scan -> threshold -> ready the
//! storage -> index -> tidy -> pack and upload -> journal -> commit (manifest, index line,
//! clean) -> report.
//!
//! The order is the safety argument: a replay leaves the temp folder only after the archive
//! holding it is on the storage with the right size and the index lists it; and the journal,
//! written before anything leaves the machine, lets the next run finish whatever a killed one
//! started.

mod clean;
mod commit;
pub mod journal;
mod plan;
pub mod record;
pub mod scan;
mod spool;
mod tidy;
mod upload;
pub mod work_dir_lock;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Result, anyhow};
use backends::{PreflightMode, Storage};

use crate::catalog::Inventory;
use crate::error::{exit_code, is_another_writer};
use crate::report::events::{Archived, Event, Finished, Outcome, Reporters, WaitCause};
use crate::run::journal::Journal;
use crate::settings::Settings;
use crate::storage::lease::{StorageBusy, StorageLock};
use crate::storage::ready;
use commit::{Upload, commit};
pub use plan::Plan;
use plan::{scan_temp_folder, worth_packing};
use tidy::tidy_storage;
use upload::pack_and_upload;

/// How `oiseau run` was asked to behave.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Pack whatever is there, even below the threshold.
    pub force: bool,
    /// Print the plan and change nothing anywhere.
    pub dry_run: bool,
    /// Print the finished run's report as JSON on stdout.
    pub json: bool,
}

/// What a run did.
#[derive(Debug)]
pub enum RunReport {
    /// Below the threshold: the replays in the temp folder add up to `bytes`.
    NothingToDo {
        bytes: u64,
    },
    Planned(Plan),
    Archived(Archived),
}

/// Runs one backup on the configured storage and tells the operators how it went.
pub async fn run(settings: &Settings, options: RunOptions) -> Result<RunReport> {
    let storage = crate::storage::open(settings).inspect_err(|e| {
        if options.json {
            crate::report::notify::print_refused(e);
        }
    })?;
    let mut reporters = crate::report::notify::reporters(settings);
    if options.json {
        reporters.push(Box::new(crate::report::notify::PrintJson));
    }
    run_on(&storage, settings, options, &reporters).await
}

/// Runs one backup on `storage` (opened, not yet made ready) and reports its events.
pub async fn run_on(
    storage: &Storage,
    settings: &Settings,
    options: RunOptions,
    reporters: &Reporters,
) -> Result<RunReport> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let result = backup(storage, settings, options, started, reporters).await;
    // A dry run changes nothing anywhere, the reports and the run record included.
    if !options.dry_run {
        let outcome = outcome_of(&result, settings);
        let previous = record::load(&settings.work_dir);
        let record = previous.after(&outcome, started_at, SystemTime::now());
        // A run that found another one working leaves the record to that run.
        if record != previous {
            record::save(&settings.work_dir, &record);
        }
        let finished = Finished {
            outcome,
            exit_code: result.as_ref().err().map_or(0, exit_code),
            started_at,
            duration: started.elapsed(),
            record,
        };
        reporters.report(&Event::Finished(Box::new(finished))).await;
    }
    result
}

fn outcome_of(result: &Result<RunReport>, settings: &Settings) -> Outcome {
    match result {
        Ok(RunReport::Archived(done)) => Outcome::Done(done.clone()),
        Ok(RunReport::NothingToDo { bytes }) => Outcome::NothingToDo {
            bytes: *bytes,
            threshold: settings.threshold.0,
        },
        Ok(RunReport::Planned(plan)) => Outcome::NothingToDo {
            bytes: plan.bytes,
            threshold: settings.threshold.0,
        },
        Err(e) if e.chain().any(|cause| cause.is::<StorageBusy>()) => Outcome::Waiting {
            cause: WaitCause::StorageLock,
            reason: format!("{e:#}"),
        },
        Err(e) if e.chain().any(is_another_writer) => Outcome::Waiting {
            cause: WaitCause::AnotherRun,
            reason: format!("{e:#}"),
        },
        Err(e) if crate::error::is_try_later(e) => Outcome::Waiting {
            cause: WaitCause::Storage,
            reason: format!("{e:#}"),
        },
        Err(e) => Outcome::Failed {
            error: format!("{e:#}"),
        },
    }
}

async fn backup(
    storage: &Storage,
    settings: &Settings,
    options: RunOptions,
    started: Instant,
    reporters: &Reporters,
) -> Result<RunReport> {
    let _lock = work_dir_lock::acquire(&settings.work_dir)?;
    if !options.dry_run {
        reporters.report(&Event::Started).await;
    }
    let mut held = None;
    let result = backup_locked(storage, settings, options, started, reporters, &mut held).await;
    if let Some(storage_lock) = held {
        storage_lock.release().await;
    }
    result
}

/// Makes the storage ready and takes its lock, once per run.
async fn take_storage(
    storage: &Storage,
    settings: &Settings,
    mode: PreflightMode,
    held: &mut Option<StorageLock>,
    reporters: &Reporters,
) -> Result<()> {
    if held.is_none() {
        ready(storage, mode).await?;
        report_notices(storage, settings, reporters).await;
        let location = settings.storage.location()?;
        *held = Some(StorageLock::acquire(storage, &settings.work_dir, &location).await?);
    }
    Ok(())
}

/// Reports the storage's notices that were not reported before, and remembers them all (a
/// notice that goes away and comes back is told again).
async fn report_notices(storage: &Storage, settings: &Settings, reporters: &Reporters) {
    let notices = storage.notices();
    let mut record = record::load(&settings.work_dir);
    if notices == record.notices_told {
        return;
    }
    for detail in notices.iter().filter(|n| !record.notices_told.contains(n)) {
        reporters
            .report(&Event::StorageNotice {
                detail: detail.clone(),
            })
            .await;
    }
    record.notices_told = notices;
    record::save(&settings.work_dir, &record);
}

/// The run, once this work_dir is locked; `held` receives the storage lock when it is taken,
/// for the caller to free whatever happens.
async fn backup_locked(
    storage: &Storage,
    settings: &Settings,
    options: RunOptions,
    started: Instant,
    reporters: &Reporters,
    held: &mut Option<StorageLock>,
) -> Result<RunReport> {
    // A dry run only looks: it must not wake a cold storage up.
    let mode = if options.dry_run {
        PreflightMode::Inspect
    } else {
        PreflightMode::Prepare
    };

    let mut resumed = None;
    let mut tidied = false;
    if let Some(journal) = Journal::load(&settings.work_dir)? {
        if options.dry_run {
            tracing::warn!(
                "a previous run did not finish archive {} ({}); a real run finishes it first",
                journal.archive_id,
                journal.archive_name
            );
        } else {
            tracing::info!(
                "finishing archive {} ({}), left unfinished by a previous run",
                journal.archive_id,
                journal.archive_name
            );
            reporters
                .report(&Event::Resumed {
                    archive_name: journal.archive_name.clone(),
                })
                .await;
            take_storage(storage, settings, mode, held, reporters).await?;
            resumed = commit(
                storage,
                settings,
                &Arc::new(journal),
                Upload::Unknown,
                started,
            )
            .await?;
            // The interrupted run may have left a partial upload behind.
            tidy_storage(storage, &Inventory::read(storage).await?).await?;
            tidied = true;
        }
    }

    let scan = scan_temp_folder(settings).await?;
    if !worth_packing(&scan, settings.threshold.0, options.force) {
        let bytes = scan.total_bytes();
        return Ok(resumed.map_or(RunReport::NothingToDo { bytes }, RunReport::Archived));
    }

    if options.dry_run {
        // A dry run only looks: no lock, nothing written.
        ready(storage, mode).await?;
    } else {
        take_storage(storage, settings, mode, held, reporters).await?;
    }
    let inventory = Inventory::read(storage).await?;
    if !options.dry_run && !tidied {
        tidy_storage(storage, &inventory).await?;
    }
    let index = inventory.index;
    let plan = Plan::new(&index, scan)?;
    if options.dry_run {
        return Ok(RunReport::Planned(plan));
    }

    let journal = pack_and_upload(storage, settings, plan).await?;
    commit(storage, settings, &journal, Upload::Done, started)
        .await?
        .map(RunReport::Archived)
        .ok_or_else(|| anyhow!("the archive just uploaded could not be committed"))
}
