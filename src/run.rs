//! The backup run: lock -> finish an interrupted run -> scan -> threshold -> preflight ->
//! index -> tidy the storage -> pack -> journal -> upload -> manifest -> index -> clean ->
//! notify.
//!
//! The order is the safety argument: a replay leaves the temp folder only after the archive
//! holding it is on the storage with the right size and the index lists it; and the journal,
//! written before anything leaves the machine, lets the next run finish whatever a killed one
//! started.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use backends::{
    ObjectMeta, PARTIAL_SUFFIX, PreflightMode, Source, SourceFeed, Storage, StorageError, WriteMode,
};
use indicatif::ProgressBar;

use crate::commands::ready_storage;
use crate::digest::ArchiveDigest;
use crate::gzip::{Level, OnWritten};
use crate::index::{INDEX_NAME, Index};
use crate::journal::{Journal, JournalReplay, unix_now};
use crate::manifest::{Manifest, manifest_name};
use crate::notify::{Notifier, escape};
use crate::pack::{Packed, pack};
use crate::progress::{bytes_bar, stacked_bars};
use crate::scan::{Replay, scan};
use crate::settings::{ByteSize, Settings};
use crate::{TryLater, fault, lock};

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
    /// Shared with the packer's thread rather than copied: a batch can be 100,000 replays.
    pub replays: Arc<Vec<Replay>>,
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
    // A dry run only looks: it must not wake a cold storage up.
    let mode = if options.dry_run {
        PreflightMode::Inspect
    } else {
        PreflightMode::Prepare
    };

    let mut storage = None;
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
            let ready = ready_storage(settings, mode).await?;
            resumed = finish(
                ready.as_ref(),
                settings,
                &Arc::new(journal),
                Upload::Unknown,
                started,
            )
            .await?;
            // The interrupted run may have left a partial upload behind.
            tidy_storage(ready.as_ref(), &read_index(ready.as_ref()).await?).await?;
            tidied = true;
            storage = Some(ready);
        }
    }

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
        return Ok(resumed.map_or(RunReport::NothingToDo, RunReport::Archived));
    }

    let storage = match storage {
        Some(storage) => storage,
        None => ready_storage(settings, mode).await?,
    };
    let index = read_index(storage.as_ref()).await?;
    if !options.dry_run && !tidied {
        tidy_storage(storage.as_ref(), &index).await?;
    }
    let timestamp = unix_now()?;
    let archive_id = index.next_archive_id();
    let plan = Plan {
        archive_id,
        archive_name: archive_name(timestamp, archive_id),
        bytes,
        replays: Arc::new(scan.replays),
        timestamp,
    };
    if options.dry_run {
        return Ok(RunReport::Planned(plan));
    }

    let journal = pack_and_upload(storage.as_ref(), settings, plan).await?;
    finish(
        storage.as_ref(),
        settings,
        &Arc::new(journal),
        Upload::Done,
        started,
    )
    .await?
    .map(RunReport::Archived)
    .ok_or_else(|| anyhow!("the archive just uploaded could not be committed"))
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

/// Compares the storage with the index before adding to it: partial uploads left by killed
/// runs are removed (they never carry a final name), and archives beyond the index's last id
/// that no journal vouches for are reported for the operators to look at; they are left alone.
async fn tidy_storage(storage: &dyn Storage, index: &Index) -> Result<()> {
    let objects = storage
        .list()
        .await
        .with_context(|| format!("cannot list {}", storage.describe()))?;
    let last_id = index.last().map_or(0, |entry| entry.archive_id);
    let stored_ids: std::collections::HashSet<u64> = objects
        .iter()
        .filter_map(|o| archive_id_of(&o.name))
        .collect();
    let missing: Vec<u64> = index
        .entries()
        .iter()
        .map(|entry| entry.archive_id)
        .filter(|id| !stored_ids.contains(id))
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            "the index lists {} archives that are not on {} (ids {}); the backup continues              after them, but those replays may be gone: check with the original tool's records",
            missing.len(),
            storage.describe(),
            missing
                .iter()
                .take(20)
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for object in &objects {
        if object.name.ends_with(PARTIAL_SUFFIX) {
            tracing::info!(
                "removing {}, a partial upload of an interrupted run",
                object.name
            );
            if let Err(e) = storage.delete(&object.name).await {
                tracing::warn!("cannot remove the partial upload {}: {e}", object.name);
            }
        } else if let Some(id) = archive_id_of(&object.name)
            && id > last_id
        {
            tracing::warn!(
                "{} is on {} but the index ends at archive {last_id}; it is not part of the \
                 backup and is left alone: check it, then delete it or restore its replays",
                object.name,
                storage.describe()
            );
        }
    }
    Ok(())
}

/// The id in `<unix_time>_replays_<id>.tar.gz`.
pub fn archive_id_of(name: &str) -> Option<u64> {
    let (stamp, rest) = name.split_once("_replays_")?;
    let id = rest.strip_suffix(".tar.gz")?;
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Packs the plan into the spool and uploads the archive while it is being written: the
/// upload follows the growing spool file, and it can give the archive its final name only once
/// the packing is over and the journal that vouches for the archive is on disk. The journal is
/// returned once both are done.
async fn pack_and_upload(
    storage: &dyn Storage,
    settings: &Settings,
    plan: Plan,
) -> Result<Journal> {
    let out = prepare_spool(&spool_dir(&settings.work_dir), &plan)?;
    let name = plan.archive_name.clone();
    let estimate = plan.bytes;
    let (source, feed) = Source::growing(&out);
    let feed = Arc::new(feed);
    let bars = stacked_bars();
    let pack_bar = bars.add(bytes_bar(plan.bytes, "packing"));
    let upload_bar = bars.add(bytes_bar(plan.bytes, "uploading"));
    // Owns the feed: when packing fails, the feed is dropped here and the upload gives up.
    let packing = async move {
        let packed = pack_to_spool(&plan, &out, settings.compression.0, &feed, pack_bar).await?;
        let journal = Journal {
            backend: settings.storage.backend.to_string(),
            archive_id: plan.archive_id,
            archive_name: plan.archive_name.clone(),
            timestamp: plan.timestamp,
            archive_size: packed.size,
            digest: packed.digest,
            replays: Journal::replays_from(&plan.replays, &packed.hashes),
        };
        // From here on the journal is the plan; the scan's copy can go.
        drop(plan);
        journal.save(&settings.work_dir)?;
        feed.complete(journal.archive_size);
        fault::point("after-pack");
        Ok::<_, anyhow::Error>(journal)
    };
    let uploading = upload_archive(storage, &source, &name, estimate, upload_bar);
    let (packed, uploaded) = tokio::join!(packing, uploading);
    // A failed packing fails the upload too; the packing's error is the one that explains.
    let journal = packed?;
    check_uploaded(storage, &journal, uploaded?)?;
    Ok(journal)
}

/// Where archives are packed before and while they are uploaded: `work_dir/spool`.
fn spool_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("spool")
}

/// The spool file for the plan's archive, in a spool folder cleared of stale files and with
/// room for the archive.
fn prepare_spool(spool_dir: &Path, plan: &Plan) -> Result<PathBuf> {
    std::fs::create_dir_all(spool_dir)
        .with_context(|| format!("cannot create the spool folder {}", spool_dir.display()))?;
    remove_stale_spool_files(spool_dir);
    ensure_free_space(spool_dir, plan)?;
    Ok(spool_dir.join(&plan.archive_name))
}

async fn pack_to_spool(
    plan: &Plan,
    out: &Path,
    level: Level,
    feed: &Arc<SourceFeed>,
    bar: ProgressBar,
) -> Result<Packed> {
    let replays = Arc::clone(&plan.replays);
    let progress_bar = bar.clone();
    let on_written: OnWritten = {
        let feed = Arc::clone(feed);
        Box::new(move |pieces, len| feed.appended(pieces, len))
    };
    let out = out.to_owned();
    tracing::info!(
        "packing {} replays ({}) into {}",
        plan.replays.len(),
        ByteSize(plan.bytes),
        plan.archive_name
    );
    let packed = tokio::task::spawn_blocking(move || {
        pack(
            &replays,
            &out,
            level,
            &|done| progress_bar.set_position(done),
            on_written,
        )
    })
    .await
    .context("the packer stopped unexpectedly")??;
    bar.finish_and_clear();
    let left_out = packed.hashes.iter().filter(|hash| hash.is_none()).count();
    if left_out > 0 {
        tracing::warn!(
            "{left_out} replays vanished or changed while packing; they stay for the next run"
        );
    }
    tracing::info!(bytes = packed.size, digest = %packed.digest, "packed {}", plan.archive_name);
    Ok(packed)
}

/// Spool files that no journal refers to: the replays they held are still in the temp folder
/// (cleaning comes last), so the staging copies can go. Runs only when no journal is left.
fn remove_stale_spool_files(spool_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(spool_dir) else {
        return;
    };
    for entry in entries.flatten() {
        tracing::info!("removing the stale spool file {}", entry.path().display());
        let _ = std::fs::remove_file(entry.path());
    }
}

/// Fails before packing when the spool's disk cannot hold the archive: a full disk halfway
/// through would waste the packing and could starve whatever else writes there.
fn ensure_free_space(spool_dir: &Path, plan: &Plan) -> Result<()> {
    let stats = rustix::fs::statvfs(spool_dir)
        .with_context(|| format!("cannot read the free space of {}", spool_dir.display()))?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    // Replays barely compress; tar adds a header and padding per file.
    let needed = plan.bytes + 1024 * plan.replays.len() as u64 + (1 << 20);
    if free < needed {
        bail!(
            "{} has {} free but the archive needs about {}; free some space or set work_dir to a \
             larger disk",
            spool_dir.display(),
            ByteSize(free),
            ByteSize(needed)
        );
    }
    Ok(())
}

/// Takes the journal's archive from "packed in the spool" to "committed and cleaned", from
/// wherever an earlier attempt stopped. `None` when an interrupted archive had to be given
/// up (it never reached the storage and its spool copy is gone): its replays are all still in
/// the temp folder and go into the next archive.
async fn finish(
    storage: &dyn Storage,
    settings: &Settings,
    journal: &Arc<Journal>,
    upload: Upload,
    started: Instant,
) -> Result<Option<Archived>> {
    let journal_path = Journal::path(&settings.work_dir);
    let backend = settings.storage.backend.to_string();
    if journal.backend != backend {
        bail!(
            "{} records an unfinished archive {} for the {} backend, but storage.backend is now \
             {backend}; switch back to finish it, or check that storage and remove the journal",
            journal_path.display(),
            journal.archive_name,
            journal.backend
        );
    }
    let where_to = storage.describe();
    let index = read_index(storage).await?;
    let entry = journal.index_entry();
    let committed = match index.last() {
        Some(last) if last == entry => true,
        last if last.map_or(0, |l| l.archive_id) + 1 == entry.archive_id => false,
        last => bail!(
            "{INDEX_NAME} on {where_to} ends with {} but {} records archive `{entry}` as the next \
             one; check the storage, then remove the journal to start over",
            last.map_or_else(|| "no line".to_owned(), |l| format!("`{l}`")),
            journal_path.display()
        ),
    };
    let spool_file = spool_dir(&settings.work_dir).join(&journal.archive_name);
    let mut index_copy = None;
    let mut removing_spool = None;
    if !committed {
        if upload == Upload::Unknown && !ensure_uploaded(storage, journal, &spool_file).await? {
            tracing::warn!(
                "archive {} of an interrupted run never reached {where_to} and its spool copy is \
                 gone; its replays are still in the temp folder and will be packed again",
                journal.archive_name
            );
            let _ = std::fs::remove_file(&spool_file);
            Journal::remove(&settings.work_dir)?;
            return Ok(None);
        }
        fault::point("after-upload");
        removing_spool = Some(remove_in_background(spool_file.clone()));
        let manifest = manifest_name(&journal.archive_name);
        let staged = tempfile::NamedTempFile::new_in(&settings.work_dir)
            .context("cannot stage the manifest in work_dir")?;
        Manifest::from_journal(journal)
            .write_to(staged.reopen()?)
            .context("cannot stage the manifest in work_dir")?;
        storage
            .upload(
                &Source::file(staged.path()),
                &manifest,
                WriteMode::Replace,
                &|_| {},
            )
            .await
            .with_context(|| format!("cannot write {manifest} to {where_to}"))?;
        let new_index = index.appended(entry);
        storage
            .write(INDEX_NAME, &new_index, WriteMode::Replace)
            .await
            .with_context(|| format!("cannot write {INDEX_NAME} to {where_to}"))?;
        tracing::info!("{INDEX_NAME} on {where_to} now ends with `{entry}`");
        fault::point("after-index");
        // The copy is history, not part of the commit: the archive is already safe, so a
        // failed copy is reported and the run goes on. Two runs within one second share the
        // name, and then the later copy (a superset) replaces the earlier one.
        index_copy = Some((format!("{}_{INDEX_NAME}", journal.timestamp), new_index));
    }

    // The archive is committed: the history copy and the cleaning of the temp folder are
    // independent, and go on side by side.
    let write_copy = async {
        if let Some((copy, new_index)) = &index_copy
            && let Err(e) = storage.write(copy, new_index, WriteMode::Replace).await
        {
            tracing::warn!("cannot write the index copy {copy} to {where_to}: {e}");
        }
    };
    let cleaning = tokio::task::spawn_blocking({
        let journal = Arc::clone(journal);
        let temp_dir = settings.temp_dir.clone();
        move || clean_temp_folder(&temp_dir, &journal.replays)
    });
    let removing_spool = removing_spool.unwrap_or_else(|| remove_in_background(spool_file));
    let ((), kept, _) = tokio::join!(write_copy, cleaning, removing_spool);
    let kept = kept.context("the cleaning of the temp folder stopped unexpectedly")?;
    Journal::remove(&settings.work_dir)?;
    Ok(Some(Archived {
        archive_id: journal.archive_id,
        archive_name: journal.archive_name.clone(),
        replays: journal.replays.len(),
        replay_bytes: journal.replays.iter().map(|r| r.size).sum(),
        archive_bytes: journal.archive_size,
        kept,
        duration: started.elapsed(),
    }))
}

/// Makes sure the journal's archive is on the storage, whole. Uploads it from the spool when
/// it is missing or has the wrong size (a copy of ours, as the journal vouches). `false` when
/// it is not there and the spool copy is missing or damaged.
async fn ensure_uploaded(
    storage: &dyn Storage,
    journal: &Journal,
    spool_file: &Path,
) -> Result<bool> {
    let name = &journal.archive_name;
    let where_to = storage.describe();
    match storage.stat(name).await {
        Ok(meta) if meta.size == journal.archive_size => {
            tracing::info!("{name} is already on {where_to}");
            return Ok(true);
        }
        Ok(meta) => {
            tracing::warn!(
                "{name} on {where_to} has {} bytes instead of {}; uploading it again",
                meta.size,
                journal.archive_size
            );
            storage
                .delete(name)
                .await
                .with_context(|| format!("cannot remove the damaged {name} from {where_to}"))?;
        }
        Err(StorageError::NotFound { .. }) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot reach {where_to}")),
    }
    if !spool_is_intact(spool_file, journal).await? {
        return Ok(false);
    }
    let bar = bytes_bar(journal.archive_size, "uploading");
    let source = Source::file(spool_file);
    let uploaded = upload_archive(storage, &source, name, journal.archive_size, bar).await?;
    check_uploaded(storage, journal, uploaded)?;
    Ok(true)
}

/// Uploads an archive, logging its progress against `estimate` (the final size may not be
/// known yet), and returns what the storage holds under its name.
async fn upload_archive(
    storage: &dyn Storage,
    source: &Source,
    name: &str,
    estimate: u64,
    bar: ProgressBar,
) -> Result<ObjectMeta> {
    let where_to = storage.describe();
    tracing::info!("uploading {name} to {where_to}");
    // Logs reach cron's mail and journald where no bar is drawn: a line per quarter.
    let quarters_logged = std::sync::atomic::AtomicU64::new(0);
    let uploaded = storage
        .upload(source, name, WriteMode::CreateNew, &|sent| {
            bar.set_position(sent);
            let quarter = sent * 4 / estimate.max(1);
            if quarter > quarters_logged.fetch_max(quarter, std::sync::atomic::Ordering::Relaxed)
                && quarter < 4
            {
                tracing::info!("uploaded {} of {name}", ByteSize(sent));
            }
            if sent * 2 >= estimate {
                fault::point("mid-upload");
            }
        })
        .await;
    bar.finish_and_clear();
    match uploaded {
        Ok(stored) => Ok(stored),
        Err(e @ StorageError::AlreadyExists { .. }) => {
            // An earlier attempt of the retried upload may have landed after all.
            let landed = match (storage.stat(name).await, source.len().await) {
                (Ok(stored), Ok(size)) if stored.size == size => Some(stored),
                _ => None,
            };
            landed
                .ok_or(e)
                .with_context(|| format!("cannot upload {name} to {where_to}"))
        }
        Err(e) => Err(e).with_context(|| format!("cannot upload {name} to {where_to}")),
    }
}

/// Fails unless the storage holds the journal's archive at its packed size.
fn check_uploaded(storage: &dyn Storage, journal: &Journal, stored: ObjectMeta) -> Result<()> {
    if stored.size != journal.archive_size {
        bail!(
            "{} is {} bytes on {}, {} were packed; nothing was deleted",
            journal.archive_name,
            stored.size,
            storage.describe(),
            journal.archive_size
        );
    }
    Ok(())
}

/// What is known of the journal's archive on the storage when [`finish`] takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upload {
    /// This very run uploaded it and checked its size.
    Done,
    /// Left by an interrupted run: looked for on the storage, and uploaded again from the
    /// spool copy (checked against the journal) when it is missing or damaged.
    Unknown,
}

/// Whether the spool file is exactly the archive the journal describes.
async fn spool_is_intact(spool_file: &Path, journal: &Journal) -> Result<bool> {
    let path = spool_file.to_owned();
    let expected_size = journal.archive_size;
    let hasher = journal.digest.hasher();
    let digest = tokio::task::spawn_blocking(move || -> std::io::Result<Option<ArchiveDigest>> {
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() != expected_size {
            return Ok(None);
        }
        hasher.read_from(&mut file).map(Some)
    })
    .await
    .context("the spool check stopped unexpectedly")?
    .with_context(|| format!("cannot read the spool file {}", spool_file.display()))?;
    Ok(digest.is_some_and(|digest| digest == journal.digest))
}

/// Removes the spool copy of an archive that is safe on the storage, beside the rest of the
/// run: removing a large file whose pages are being written back waits for the disk (4.5 s
/// for 5 GB here), and nothing else depends on it.
fn remove_in_background(spool_file: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = std::fs::remove_file(&spool_file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove the spool file {}: {e}", spool_file.display());
        }
    })
}

/// Deletes the archived replays that are still exactly what was packed, and returns how many
/// were kept because they changed (they go into a later archive: duplicated, never lost).
fn clean_temp_folder(temp_dir: &Path, archived: &[JournalReplay]) -> usize {
    // Names are looked up relative to the open folder: a batch can be 100,000 files, and each
    // full path would be walked twice (check, then delete).
    let folder = match rustix::fs::open(
        temp_dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(folder) => folder,
        Err(e) => {
            tracing::warn!(
                "cannot open {} to remove the archived replays: {e}; they are kept",
                temp_dir.display()
            );
            return archived.len();
        }
    };
    let mut kept = 0;
    for (done, packed) in archived.iter().enumerate() {
        if done * 2 == archived.len() {
            fault::point("mid-cleanup");
        }
        let path = || temp_dir.join(&packed.name);
        match packed.is_unchanged_in(&folder) {
            Ok(true) => {
                if let Err(e) = rustix::fs::unlinkat(
                    &folder,
                    packed.name.as_str(),
                    rustix::fs::AtFlags::empty(),
                ) {
                    tracing::warn!("cannot remove {}: {e}", path().display());
                    kept += 1;
                }
            }
            Ok(false) => {
                tracing::warn!(
                    "{} changed after it was packed; kept for the next run",
                    path().display()
                );
                kept += 1;
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => {
                tracing::warn!("cannot check {}: {e}; kept", path().display());
                kept += 1;
            }
        }
    }
    kept
}
