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

use crate::events::Archived;
use crate::fault;
use crate::index::Index;
use crate::journal::Journal;
use crate::layout::{INDEX_NAME, index_copy_name, manifest_name};
use crate::manifest::Manifest;
use crate::run::clean::clean_temp_folder;
use crate::run::spool::{remove_in_background, spool_file, spool_is_intact};
use crate::run::upload::upload_from_spool;
use crate::settings::Settings;
use crate::storage::read_index;

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
    if !is_committed(&index, journal, settings, &where_to)? {
        if upload == Upload::Unknown && !ensure_uploaded(storage, journal, &spool).await? {
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
    Ok(())
}

/// Whether the index already ends with the journal's line; an error when it ends anywhere
/// but just before or at it.
fn is_committed(
    index: &Index,
    journal: &Journal,
    settings: &Settings,
    where_to: &str,
) -> Result<bool> {
    let entry = journal.index_entry();
    match index.last() {
        Some(last) if last == entry => Ok(true),
        last if last.map_or(0, |l| l.archive_id) + 1 == entry.archive_id => Ok(false),
        last => bail!(
            "{INDEX_NAME} on {where_to} ends with {} but {} records archive `{entry}` as the next \
             one; check the storage, then remove the journal to start over",
            last.map_or_else(|| "no line".to_owned(), |l| format!("`{l}`")),
            Journal::path(&settings.work_dir).display()
        ),
    }
}

/// Phase 1 for a resumed run: makes sure the journal's archive is on the storage, whole.
/// Uploads it from the spool when it is missing or has the wrong size (a copy of ours, as the
/// journal vouches). `false` when it is not there and the spool copy is missing or damaged.
async fn ensure_uploaded(storage: &Storage, journal: &Journal, spool: &Path) -> Result<bool> {
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
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot reach {where_to}")),
    }
    if !spool_is_intact(spool, journal).await? {
        return Ok(false);
    }
    upload_from_spool(storage, journal, &Source::file(spool)).await?;
    Ok(true)
}

/// Phase 2: the manifest, staged in `work_dir` (it can be megabytes) and uploaded.
async fn write_manifest(storage: &Storage, settings: &Settings, journal: &Journal) -> Result<()> {
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
            &WriteOptions::hot(WriteMode::Replace),
            &|_| {},
        )
        .await
        .with_context(|| format!("cannot write {manifest} to {}", storage.describe()))?;
    Ok(())
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
    storage
        .write(
            INDEX_NAME,
            &new_index,
            &WriteOptions::hot(WriteMode::ReplaceIfUnchanged(version)),
        )
        .await
        .with_context(|| format!("cannot write {INDEX_NAME} to {where_to}"))?;
    tracing::info!("{INDEX_NAME} on {where_to} now ends with `{entry}`");
    Ok(new_index)
}
