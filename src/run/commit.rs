//! The commit of a packed archive, as a sequence of phases in the only safe order: the archive
//! is on the storage, whole; its manifest; the index line that commits it; then, and only
//! then, the history copy of the index and the cleaning of the temp folder; last, the journal
//! goes. A run killed between any two phases leaves a journal from which the next run picks
//! the sequence up again.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use backends::{ErrorKind, Source, Storage, Version, WriteMode, WriteOptions};

use crate::error::TryLater;
use crate::fault;
use crate::formats::index::Index;
use crate::formats::names::{INDEX_NAME, archive_id_of, index_copy_name, manifest_name};
use crate::report::events::Archived;
use crate::run::clean::clean_temp_folder;
use crate::run::journal::Journal;
use crate::run::spool::{remove_in_background, spool_file, spool_is_intact};
use crate::run::upload::upload_from_spool;
use crate::settings::Settings;
use crate::storage::{read_index, stored_digest};

/// What is known of the journal's archive on the storage when [`commit`] takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// This very run uploaded it and checked its size.
    Done,
    /// Left by an interrupted run: looked for on the storage, and uploaded again from the
    /// spool copy (checked against the journal) when it is missing or damaged.
    Unknown,
}

/// Takes the journal's archive from "packed in the spool" to "committed and cleaned", from
/// wherever an earlier attempt stopped. `None` when an interrupted archive had to be given
/// up (it never reached the storage and its spool copy is gone): its replays are all still in
/// the temp folder and go into the next archive.
pub async fn commit(
    storage: &Storage,
    settings: &Settings,
    journal: &Arc<Journal>,
    upload: Upload,
    started: Instant,
) -> Result<Option<Archived>> {
    check_backend(journal, settings)?;
    let where_to = storage.describe();
    let (index, version) = read_index(storage).await?;
    let spool = spool_file(&settings.work_dir, &journal.archive_name);
    let mut index_copy = None;
    let mut removing_spool = None;
    let standing = match standing(&index, journal, settings, &where_to)? {
        Standing::Taken => resolve_taken_id(storage, journal, &index).await?,
        other => other,
    };
    if standing == Standing::Lost {
        let _ = std::fs::remove_file(&spool);
        Journal::remove(&settings.work_dir)?;
        return Ok(None);
    }
    if standing == Standing::Next {
        if upload == Upload::Unknown
            && !ensure_uploaded(storage, journal, &settings.work_dir).await?
        {
            tracing::warn!(
                "archive {} of an interrupted run never reached {where_to} and its spool copy is \
                 gone; its replays are still in the temp folder and will be packed again",
                journal.archive_name
            );
            let _ = std::fs::remove_file(&spool);
            Journal::remove(&settings.work_dir)?;
            return Ok(None);
        }
        fault::point("after-upload");
        removing_spool = Some(remove_in_background(spool.clone()));
        write_manifest(storage, settings, journal).await?;
        let new_index = write_index_line(storage, journal, &index, version).await?;
        fault::point("after-index");
        index_copy = Some((index_copy_name(journal.timestamp), new_index));
    }

    // The archive is committed: the history copy and the cleaning of the temp folder are
    // independent, and go on side by side.
    let write_copy = async {
        // The copy is history, not part of the commit: the archive is already safe, so a
        // failed copy is reported and the run goes on. Two runs within one second share the
        // name, and then the later copy (a superset) replaces the earlier one.
        if let Some((copy, new_index)) = &index_copy
            && let Err(e) = storage
                .write(copy, new_index, &WriteOptions::hot(WriteMode::Replace))
                .await
        {
            tracing::warn!("cannot write the index copy {copy} to {where_to}: {e}");
        }
    };
    let cleaning = tokio::task::spawn_blocking({
        let journal = Arc::clone(journal);
        let temp_dir = settings.temp_dir.clone();
        move || clean_temp_folder(&temp_dir, &journal.replays)
    });
    let removing_spool = removing_spool.unwrap_or_else(|| remove_in_background(spool));
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

/// Where the journal's archive stands in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// The index already holds its line: it is committed.
    Committed,
    /// Its line comes next.
    Next,
    /// The index holds a line with its id that may be its own or another writer's.
    Taken,
    /// Another writer's archive took its id: its replays were never deleted.
    Lost,
}

/// Where the journal's archive stands in the index; an error when the index ends before the
/// line that should precede it (it was truncated or replaced).
fn standing(
    index: &Index,
    journal: &Journal,
    settings: &Settings,
    where_to: &str,
) -> Result<Standing> {
    let entry = journal.index_entry();
    let last = index.last();
    if last == Some(entry) {
        return Ok(Standing::Committed);
    }
    let last_id = last.map_or(0, |l| l.archive_id);
    if last_id + 1 == entry.archive_id {
        return Ok(Standing::Next);
    }
    if last_id >= entry.archive_id {
        return Ok(Standing::Taken);
    }
    bail!(
        "{INDEX_NAME} on {where_to} ends with {} but {} records archive `{entry}` as the next \
         one; check the storage, then remove the journal to start over",
        last.map_or_else(|| "no line".to_owned(), |l| format!("`{l}`")),
        Journal::path(&settings.work_dir).display()
    )
}

/// The index went on past the journal's id: either this archive was committed and other
/// writers added theirs since, or another writer's archive took the id (this run lost the
/// index race). Only this very archive, by name, size and digest, and the index's line for it
/// make it committed. Otherwise it lost: its replays are all still in the temp folder and go
/// into the next archive, and its copy on the storage (if it is this run's) is removed.
async fn resolve_taken_id(storage: &Storage, journal: &Journal, index: &Index) -> Result<Standing> {
    let name = &journal.archive_name;
    let where_to = storage.describe();
    let line = index
        .entries()
        .iter()
        .find(|line| line.archive_id == journal.archive_id)
        .copied();
    let ours_on_storage = match storage.stat(name).await {
        Ok(meta) => {
            meta.size == journal.archive_size
                && stored_digest(storage, name, journal.digest.hasher()).await? == journal.digest
        }
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("cannot reach {where_to}")),
    };
    let others_with_its_id = storage
        .list()
        .await
        .with_context(|| format!("cannot list {where_to}"))?
        .iter()
        .any(|object| {
            archive_id_of(&object.name) == Some(journal.archive_id) && &object.name != name
        });
    if ours_on_storage && !others_with_its_id && line == Some(journal.index_entry()) {
        return Ok(Standing::Committed);
    }
    tracing::warn!(
        "archive {} of an interrupted run lost its id to another writer's archive on \
         {where_to}; its replays were never deleted and go into the next archive",
        journal.archive_id
    );
    if ours_on_storage {
        for stray in [manifest_name(name), name.clone()] {
            match storage.delete(&stray).await {
                Ok(()) => tracing::info!("removed {stray}, this run's copy that lost its id"),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot remove {stray} from {where_to}: {e}"),
            }
        }
    }
    Ok(Standing::Lost)
}

/// Phase 1 for a resumed run: makes sure the journal's archive is on the storage, whole.
/// Uploads it from the spool (checked against the journal) when it is missing. `false` when
/// it is not there and the spool copy is missing or damaged.
///
/// An object under the archive's name is this run's only if its digest is the journal's: a
/// name appears on the storage only once its bytes are whole, so any other object there is
/// another writer's, and is never deleted.
async fn ensure_uploaded(storage: &Storage, journal: &Journal, work_dir: &Path) -> Result<bool> {
    let name = &journal.archive_name;
    let where_to = storage.describe();
    match storage.stat(name).await {
        Ok(meta) => {
            let same = meta.size == journal.archive_size
                && stored_digest(storage, name, journal.digest.hasher()).await? == journal.digest;
            if !same {
                bail!(
                    "{name} on {where_to} is not the archive {} records (another writer's?); \
                     nothing was deleted: check that archive, then remove the journal",
                    Journal::path(work_dir).display()
                );
            }
            tracing::info!("{name} is already on {where_to}");
            return Ok(true);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot reach {where_to}")),
    }
    let spool = spool_file(work_dir, name);
    if !spool_is_intact(&spool, journal).await? {
        return Ok(false);
    }
    upload_from_spool(storage, journal, &Source::file(spool)).await?;
    Ok(true)
}

/// Phase 2: the manifest, staged in `work_dir` (it can be megabytes) and uploaded, never over
/// another: one already there is accepted only if it is byte for byte this one (an
/// interrupted run wrote it).
async fn write_manifest(storage: &Storage, settings: &Settings, journal: &Journal) -> Result<()> {
    let manifest = manifest_name(&journal.archive_name);
    let where_to = storage.describe();
    let staged = tempfile::NamedTempFile::new_in(&settings.work_dir)
        .context("cannot stage the manifest in work_dir")?;
    journal
        .manifest()
        .write_to(staged.reopen()?)
        .context("cannot stage the manifest in work_dir")?;
    let written = storage
        .upload(
            &Source::file(staged.path()),
            &manifest,
            &WriteOptions::hot(WriteMode::CreateNew),
            &|_| {},
        )
        .await;
    match written {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let (_, there) = storage
                .read_small(&manifest)
                .await
                .with_context(|| format!("cannot read {manifest} back from {where_to}"))?;
            let ours = std::fs::read(staged.path()).context("cannot read the staged manifest")?;
            if there == ours {
                Ok(())
            } else {
                bail!(
                    "{manifest} on {where_to} describes another archive of the same name \
                     (another writer's?); nothing was deleted: check the storage"
                )
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot write {manifest} to {where_to}")),
    }
}

/// Phase 3: the index line that commits the archive, written only over the index this run
/// read. Returns the new index.
async fn write_index_line(
    storage: &Storage,
    journal: &Journal,
    index: &Index,
    version: Version,
) -> Result<Vec<u8>> {
    let where_to = storage.describe();
    let entry = journal.index_entry();
    let new_index = index.appended(entry);
    let written = storage
        .write(
            INDEX_NAME,
            &new_index,
            &WriteOptions::hot(WriteMode::ReplaceIfUnchanged(version)),
        )
        .await;
    if let Err(e) = written {
        // Another writer committed first: a race lost, not a failure. Nothing was deleted,
        // and the next run resolves the journal.
        let lost = e.kind() == ErrorKind::ConditionFailed;
        let error =
            anyhow::Error::from(e).context(format!("cannot write {INDEX_NAME} to {where_to}"));
        return Err(if lost {
            error.context(TryLater(format!(
                "another writer changed {INDEX_NAME} on {where_to} first; nothing was deleted \
                 and the next run carries on"
            )))
        } else {
            error
        });
    }
    tracing::info!("{INDEX_NAME} on {where_to} now ends with `{entry}`");
    Ok(new_index)
}
