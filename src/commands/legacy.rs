//! `oiseau index legacy`: a manifest and an access index for each archive the original tool
//! wrote (one gzip stream, no manifest), recorded by reading the archive through once, so that
//! `locate`, `restore`, `verify` and `serve` find, read and check its replays like those of
//! oiseau's own archives. The archives themselves are never written.
//!
//! Everything written is created, never replaced: the windows object first, then the manifest,
//! whose presence says the archive is done. Both follow from the archive's bytes alone, so a
//! run interrupted between the two, or another host indexing the same archive, leaves objects
//! that the next run finds equal to its own and keeps.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use backends::{ErrorKind, ObjectMeta, PreflightMode, Source, Storage, WriteMode, WriteOptions};

use crate::archive::access::{Indexed, index_archive};
use crate::archive::contents::replays;
use crate::archive::ranged::failure_reason;
use crate::catalog::{Catalog, CatalogEntry, Slot};
use crate::error::is_try_later;
use crate::formats::access::WINDOWS_MAGIC;
use crate::formats::digest::DigestHasher;
use crate::formats::manifest::{Manifest, Source as ManifestSource};
use crate::formats::names::{INDEX_NAME, access_name, manifest_name};
use crate::process::ProcessIdentity;
use crate::report::notify::reporters;
use crate::report::progress::bytes_bar;
use crate::settings::Settings;
use crate::storage::lease::StorageLock;
use crate::storage::{
    ask_to_warm_up, conditions, open_ready, read_for_blocking, stored_digest, try_later_for_cold,
};
use crate::units::ByteSize;

/// The manifest format of an archive recorded from its own bytes, with an access index.
const FORMAT: u32 = 4;

/// The name of a windows spool in `work_dir` starts so.
const SPOOL_PREFIX: &str = ".windows.";

/// Indexes the archives of the index that have no manifest: all of them, those from `since`
/// on, or `only` that one. Says per archive what it did as each is done (hundreds of archives
/// take hours: the operator sees it go); fails naming those it could not index, and is "try
/// again later" while cold archives are being restored.
pub async fn index_legacy(
    settings: &Settings,
    since: Option<u64>,
    only: Option<u64>,
) -> Result<()> {
    // The windows are gathered in work_dir before they are uploaded.
    std::fs::create_dir_all(&settings.work_dir)
        .with_context(|| format!("cannot create work_dir {}", settings.work_dir.display()))?;
    remove_abandoned_spools(&settings.work_dir);
    // Reading an archive needs the storage awake: on C14 this may start an unarchive.
    let storage = open_ready(settings, PreflightMode::Prepare).await?;
    let where_from = storage.describe();
    let catalog = Catalog::load(&storage, &settings.work_dir).await?;
    let Some(Chosen {
        mut archives,
        already,
    }) = choose(&catalog, since, only, &where_from)?
    else {
        return Ok(());
    };

    // Cold archives are asked for first; those readable now are indexed meanwhile.
    let pending = ask_to_warm_up(&storage, archives.iter().map(|(_, o)| o.name.as_str())).await?;
    archives.retain(|(_, object)| !pending.iter().any(|(name, _)| *name == object.name));
    // Creating objects needs no lock where the storage creates atomically; elsewhere a
    // check-then-write is kept apart from other writers by the storage lock.
    let location = settings.storage.location()?;
    conditions::verify(&storage, &settings.work_dir, &location).await?;
    let lock_to_write = !storage.capabilities().atomic_create;

    let (mut indexed, mut failed) = (0, Vec::new());
    for (slot, object) in archives {
        let id = slot.entry.archive_id;
        let outcome = index_one(&storage, settings, slot, object, lock_to_write).await;
        match outcome {
            Ok(done) => {
                indexed += 1;
                say!("{}", done.line(id, &object.name));
            }
            // The storage lock is busy (a backup is committing): the next try goes on.
            Err(e) if is_try_later(&e) => return Err(e),
            Err(e) => {
                say!(
                    "not indexed: {} (archive {id}): {}",
                    object.name,
                    failure_reason(&e)
                );
                failed.push(format!("{} ({})", object.name, failure_reason(&e)));
            }
        }
    }
    say!(
        "index legacy on {where_from}: {indexed} archive{} indexed, {} failed, {} waiting for a \
         restore from cold storage, {already} already had a manifest",
        if indexed == 1 { "" } else { "s" },
        failed.len(),
        pending.len()
    );
    if !failed.is_empty() {
        bail!(
            "{} archive{} could not be indexed: {}",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            crate::report::output::capped(&failed, "; ")
        );
    }
    try_later_for_cold(&pending, &reporters(settings)).await
}

/// The archives to index, and how many already have a manifest.
struct Chosen<'a> {
    archives: Vec<(&'a Slot, &'a ObjectMeta)>,
    already: usize,
}

/// The archives of the catalog to index (all, from `since` on, or `only`): those without a
/// manifest, and those whose format 4 manifest lost its windows. Says why each other is left;
/// `None` (said too) when nothing is to be done; an error when `only` cannot be indexed.
fn choose<'a>(
    catalog: &'a Catalog,
    since: Option<u64>,
    only: Option<u64>,
    where_from: &str,
) -> Result<Option<Chosen<'a>>> {
    let wanted = |id: u64| only.is_none_or(|only| id == only) && since.is_none_or(|s| id >= s);
    let entries: Vec<&CatalogEntry> = catalog
        .archives
        .iter()
        .filter(|entry| wanted(entry.archive_id()))
        .collect();
    if let Some(id) = only {
        match entries.first() {
            None => bail!(
                "archive {id} is not in {INDEX_NAME} on {where_from}; `oiseau verify` lists \
                 the archives it holds"
            ),
            Some(entry) if entry.object().is_none() => {
                bail!(
                    "archive {id} is in {INDEX_NAME} but missing from {where_from}: nothing to read"
                )
            }
            Some(_) => {}
        }
    }
    let mut already = 0;
    let mut archives: Vec<(&Slot, &ObjectMeta)> = Vec::new();
    for entry in entries {
        let slot = &entry.slot;
        let id = entry.archive_id();
        let Some(object) = &slot.object else {
            say!("not indexed: archive {id} is in {INDEX_NAME} but missing from {where_from}");
            continue;
        };
        match (&entry.recorded, &entry.damaged_manifest) {
            (None, None) => archives.push((slot, object)),
            // Its windows are lost: reading the archive again gives them back, and a manifest
            // equal to the one there.
            (Some(recorded), _) if recorded.head().access.is_some() && slot.windows.is_none() => {
                archives.push((slot, object));
            }
            (Some(_), _) => already += 1,
            (None, Some(why)) => say!(
                "not indexed: {} (archive {id}): {why}; it is not replaced: remove it by hand \
                 to index the archive again",
                object.name
            ),
        }
    }
    if archives.is_empty() {
        say!(
            "nothing to index: {already} archive{} of the index already {} a manifest",
            if already == 1 { "" } else { "s" },
            if already == 1 { "has" } else { "have" }
        );
        return Ok(None);
    }
    Ok(Some(Chosen { archives, already }))
}

/// What was done for one archive.
struct Done {
    replays: usize,
    points: usize,
    read: u64,
    windows_bytes: u64,
    seconds: f64,
    /// Whether another run or host had written the same objects first.
    found_written: bool,
    /// The index line disagrees with the archive's content.
    index_disagrees: Option<String>,
}

impl Done {
    fn line(&self, id: u64, name: &str) -> String {
        let mut line = format!(
            "indexed {name} (archive {id}): {} replays, {} access point{} ({}); read {} in \
             {:.1} s",
            self.replays,
            self.points,
            if self.points == 1 { "" } else { "s" },
            ByteSize(self.windows_bytes),
            ByteSize(self.read),
            self.seconds
        );
        if self.found_written {
            line.push_str("; its manifest was already written, equal to this one");
        }
        if let Some(why) = &self.index_disagrees {
            line.push_str("; warning: ");
            line.push_str(why);
        }
        line
    }
}

async fn index_one(
    storage: &Storage,
    settings: &Settings,
    slot: &Slot,
    object: &ObjectMeta,
    lock_to_write: bool,
) -> Result<Done> {
    let id = slot.entry.archive_id;
    let started = Instant::now();
    let windows = windows_spool(&settings.work_dir)?;
    let mut out = BufWriter::new(windows.reopen()?);
    out.write_all(WINDOWS_MAGIC)?;
    let reader = read_for_blocking(storage, &object.name).await?;
    let bar = bytes_bar(object.size, "indexing");
    let reading = bar.clone();
    let archive: Indexed<BufWriter<std::fs::File>> =
        tokio::task::spawn_blocking(move || index_archive(reading.wrap_read(reader), out))
            .await
            .context("the reading stopped unexpectedly")??;
    bar.finish_and_clear();
    if archive.size != object.size {
        bail!(
            "it changed while being read: {} bytes listed, {} read",
            object.size,
            archive.size
        );
    }
    let manifest = Manifest {
        format: FORMAT,
        archive_id: id,
        archive_name: object.name.clone(),
        size: archive.size,
        digest: archive.digest.clone(),
        replays: replays(&archive.members),
        ranges: Vec::new(),
        source: ManifestSource::Archive,
        access: Some(archive.access()),
        access_ranges: archive.access_ranges()?,
    };
    let file = archive
        .recorded
        .windows
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    file.sync_all()?;
    let windows_bytes = file.metadata()?.len();
    let mut bytes = Vec::new();
    manifest.write_to(&mut bytes)?;
    crate::fault::point("legacy-after-read");

    let lock = if lock_to_write {
        let location = settings.storage.location()?;
        Some(StorageLock::acquire(storage, &settings.work_dir, &location).await?)
    } else {
        None
    };
    let written = write_both(storage, &object.name, windows.path(), &bytes).await;
    if let Some(lock) = lock {
        lock.release().await;
    }
    let found_written = written?;
    let max = manifest.max_replay_id();
    Ok(Done {
        replays: manifest.replays.len(),
        points: manifest.access.as_ref().map_or(0, |a| a.points.len()),
        read: archive.size,
        windows_bytes,
        seconds: started.elapsed().as_secs_f64(),
        found_written,
        index_disagrees: (max != slot.entry.max_replay_id).then(|| {
            format!(
                "its largest replay id is {max}, {INDEX_NAME} says {}",
                slot.entry.max_replay_id
            )
        }),
    })
}

/// Where the windows of one archive are gathered: `work_dir/.windows.<pid>.<start>.<random>`,
/// named after this process so that a later run can tell a killed run's file from a running
/// one's.
fn windows_spool(work_dir: &Path) -> Result<tempfile::NamedTempFile> {
    let this = ProcessIdentity::current();
    tempfile::Builder::new()
        .prefix(&format!(
            "{SPOOL_PREFIX}{}.{}.",
            this.pid,
            this.start_ticks.unwrap_or(0)
        ))
        .tempfile_in(work_dir)
        .with_context(|| format!("cannot write into work_dir {}", work_dir.display()))
}

/// Removes the windows spools of runs that were killed (they are removed when a run ends);
/// those of a run still going are left to it.
fn remove_abandoned_spools(work_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(|n| n.strip_prefix(SPOOL_PREFIX)) else {
            continue;
        };
        let mut parts = owner.split('.');
        let (Some(Ok(pid)), Some(Ok(start))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        let run = ProcessIdentity {
            start_ticks: (start > 0).then_some(start),
            ..ProcessIdentity::pid_only(pid)
        };
        if !run.is_alive() {
            tracing::info!("removing {}, left by a killed run", entry.path().display());
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Creates the windows object, then the manifest; returns whether both were already there
/// (written by an interrupted run or another host), equal to these.
async fn write_both(
    storage: &Storage,
    archive: &str,
    windows: &Path,
    manifest: &[u8],
) -> Result<bool> {
    let hot_and_new = WriteOptions::hot(WriteMode::CreateNew);
    let windows_name = access_name(archive);
    let windows_there = match storage
        .upload(&Source::file(windows), &windows_name, &hot_and_new, &|_| {})
        .await
    {
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let ours = DigestHasher::blake3()
                .read_from(&mut std::fs::File::open(windows)?)
                .context("cannot read the windows back")?;
            let theirs = stored_digest(storage, &windows_name, DigestHasher::blake3()).await?;
            if ours != theirs {
                bail!(differs(&windows_name, storage));
            }
            true
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot write {windows_name} to {}", storage.describe()));
        }
    };
    crate::fault::point("legacy-after-windows");
    let manifest_name = manifest_name(archive);
    let manifest_there = match storage.write(&manifest_name, manifest, &hot_and_new).await {
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let (_, theirs) = storage
                .read_small(&manifest_name)
                .await
                .with_context(|| format!("cannot read {manifest_name} back"))?;
            if theirs != manifest {
                bail!(differs(&manifest_name, storage));
            }
            true
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot write {manifest_name} to {}", storage.describe())
            });
        }
    };
    Ok(windows_there && manifest_there)
}

/// Why an object found in the way is not replaced.
fn differs(name: &str, storage: &Storage) -> String {
    format!(
        "{name} already exists on {} and differs from what the archive gives (another version \
         of oiseau may have written it); it is not replaced: remove it by hand and run again",
        storage.describe()
    )
}
