//! The backup run: lock this work_dir -> finish an unfinished archive -> scan -> threshold ->
//! ready the storage and take its lock -> inventory -> tidy -> pack and upload -> commit
//! (manifest, index line) -> clean -> report. An archive goes through recorded phases
//! ([`phase`]), so a new archive and an unfinished one take the same way to done.
//!
//! The order is the safety argument: a replay leaves the temp folder only after the archive
//! holding it is on the storage with the right size and the index lists it; and the journal,
//! written before anything leaves the machine, lets the next run finish whatever a killed one
//! started.

mod clean;
mod commit;
pub mod journal;
mod phase;
mod plan;
pub mod record;
mod spool;
mod tidy;
mod upload;
pub mod work_dir_lock;

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use anyhow::{Result, anyhow, bail};
use backends::{PreflightMode, Storage, Unprepared};

use crate::catalog::Inventory;
use crate::error::StorageBusy;
use crate::error::{exit_code, is_another_writer};
use crate::report::events::{Archived, Event, Finished, Outcome, Reporters, WaitCause};
use crate::run::journal::Journal;
use crate::settings::Settings;
use crate::storage::lease::StorageLock;
use crate::storage::ready;
use phase::Folders;
pub use plan::Plan;
use plan::{scan_temp_folder, worth_packing};
use spool::Spool;
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
    storage: &Unprepared,
    settings: &Settings,
    options: RunOptions,
    reporters: &Reporters,
) -> Result<RunReport> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let previous = record::load(&settings.work_dir);
    let run = Run {
        storage,
        settings,
        reporters,
        started,
        notices_told: Mutex::new(previous.notices_told.clone()),
    };
    // Held until the run record is saved: one run at a time reads and writes it.
    let (result, held) = match work_dir_lock::acquire(&settings.work_dir) {
        Ok(lock) => (backup(&run, options).await, Some(lock)),
        Err(e) => (Err(e), None),
    };
    // A dry run changes nothing anywhere, the reports and the run record included.
    if !options.dry_run {
        let outcome = outcome_of(&result, settings);
        let mut record = previous.after(&outcome, started_at, SystemTime::now());
        record.notices_told = run
            .notices_told
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        // A run that found another one working leaves the record to that run.
        if held.is_some() && record != previous {
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

/// What the steps of one run share.
struct Run<'a> {
    storage: &'a Unprepared,
    settings: &'a Settings,
    reporters: &'a Reporters,
    started: Instant,
    /// The storage's notices told so far (from the run record): a notice is told once, and
    /// again if it goes away and comes back.
    notices_told: Mutex<Vec<String>>,
}

impl Run<'_> {
    fn folders(&self) -> Folders<'_> {
        Folders {
            temp_dir: &self.settings.temp_dir,
            work_dir: &self.settings.work_dir,
        }
    }

    /// Runs `body` on the storage, made ready, with its lock held, and frees the lock after,
    /// however `body` ends.
    async fn with_storage_lock<T>(
        &self,
        body: impl AsyncFnOnce(&Storage) -> Result<T>,
    ) -> Result<T> {
        let prepared = ready(self.storage, PreflightMode::Prepare).await?;
        self.tell_notices(prepared.notices).await;
        let storage = &prepared.storage;
        let location = self.settings.storage.location()?;
        let lock = StorageLock::acquire(storage, &self.settings.work_dir, &location).await?;
        let result = body(storage).await;
        lock.release().await;
        result
    }

    /// Tells the storage's notices that were not told before.
    async fn tell_notices(&self, notices: Vec<String>) {
        let fresh: Vec<String> = {
            let told = self.notices_told.lock().unwrap_or_else(|e| e.into_inner());
            notices
                .iter()
                .filter(|n| !told.contains(n))
                .cloned()
                .collect()
        };
        for detail in fresh {
            self.reporters
                .report(&Event::StorageNotice { detail })
                .await;
        }
        *self.notices_told.lock().unwrap_or_else(|e| e.into_inner()) = notices;
    }
}

/// The run, under this work_dir's lock: an unfinished archive is finished first, then a new
/// one is made if the temp folder holds enough. Both go through the same phases
/// ([`phase::finish`]), the new one entering once it is uploaded.
async fn backup(run: &Run<'_>, options: RunOptions) -> Result<RunReport> {
    let settings = run.settings;
    if !options.dry_run {
        run.reporters.report(&Event::Started).await;
    }
    let unfinished = Journal::load(&settings.work_dir)?;
    if options.dry_run {
        return plan_only(run, unfinished.as_ref(), options).await;
    }
    // Without an unfinished archive, a temp folder below the threshold needs no storage.
    let scan = match &unfinished {
        Some(journal) => {
            check_backend(journal, settings)?;
            None
        }
        None => {
            let scan = scan_temp_folder(settings).await?;
            if !worth_packing(&scan, settings.threshold.0, options.force) {
                let bytes = scan.total_bytes();
                return Ok(RunReport::NothingToDo { bytes });
            }
            Some(scan)
        }
    };
    run.with_storage_lock(async |storage: &Storage| {
        let (mut resumed, mut inventory) = (None, None);
        if let Some(journal) = unfinished {
            tracing::info!(
                "finishing archive {} ({}), left unfinished by a previous run",
                journal.archive_id,
                journal.archive_name
            );
            run.reporters
                .report(&Event::Resumed {
                    archive_name: journal.archive_name.clone(),
                })
                .await;
            let spool = Spool::of(&settings.work_dir, &journal);
            resumed = phase::finish(storage, journal, spool, run.folders(), run.started).await?;
            // The interrupted run may have left a partial upload behind.
            let read = Inventory::read(storage).await?;
            tidy_storage(storage, &read).await?;
            inventory = Some(read);
        }
        let scan = match scan {
            Some(scan) => scan,
            None => {
                let scan = scan_temp_folder(settings).await?;
                if !worth_packing(&scan, settings.threshold.0, options.force) {
                    let bytes = scan.total_bytes();
                    return Ok(
                        resumed.map_or(RunReport::NothingToDo { bytes }, RunReport::Archived)
                    );
                }
                scan
            }
        };
        let inventory = match inventory {
            Some(inventory) => inventory,
            None => {
                let read = Inventory::read(storage).await?;
                tidy_storage(storage, &read).await?;
                read
            }
        };
        let plan = Plan::new(&inventory.index, scan)?;
        let (journal, spool) = pack_and_upload(storage, settings, plan).await?;
        phase::finish(storage, journal, spool, run.folders(), run.started)
            .await?
            .map(RunReport::Archived)
            .ok_or_else(|| anyhow!("the archive just uploaded could not be committed"))
    })
    .await
}

/// `run --dry-run`: the plan, made without a lock, a write or a cold storage woken up.
async fn plan_only(
    run: &Run<'_>,
    unfinished: Option<&Journal>,
    options: RunOptions,
) -> Result<RunReport> {
    if let Some(journal) = unfinished {
        tracing::warn!(
            "a previous run did not finish archive {} ({}); a real run finishes it first",
            journal.archive_id,
            journal.archive_name
        );
    }
    let scan = scan_temp_folder(run.settings).await?;
    if !worth_packing(&scan, run.settings.threshold.0, options.force) {
        let bytes = scan.total_bytes();
        return Ok(RunReport::NothingToDo { bytes });
    }
    let storage = ready(run.storage, PreflightMode::Inspect).await?.storage;
    let inventory = Inventory::read(&storage).await?;
    Ok(RunReport::Planned(Plan::new(&inventory.index, scan)?))
}

/// Resuming onto another storage would split the backup.
fn check_backend(journal: &Journal, settings: &Settings) -> Result<()> {
    let backend = &settings.storage.backend;
    if &journal.backend != backend {
        bail!(
            "{} records an unfinished archive {} for the {} backend, but storage.backend is now \
             {backend}; switch back to finish it, or check that storage and remove the journal",
            Journal::path(&settings.work_dir).display(),
            journal.archive_name,
            journal.backend
        );
    }
    let location = settings.storage.location()?;
    if let Some(recorded) = &journal.storage
        && recorded != &location
    {
        bail!(
            "{} records an unfinished archive {} for the storage {recorded}, but the settings now \
             point at {location}; point them back to finish it, or check that storage and \
             remove the journal",
            Journal::path(&settings.work_dir).display(),
            journal.archive_name,
        );
    }
    Ok(())
}
