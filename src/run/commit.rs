//! Uploaded -> committed: the archive's manifest, then the index line that commits it, written
//! only over the index this run read. And where an unfinished archive stands in the index, which
//! every step of a resumed run asks before it acts.

use std::path::Path;

use anyhow::{Context, Result, bail};
use backends::{ErrorKind, Source, Storage, Version, WriteMode, WriteOptions};

use crate::error::TryLater;
use crate::fault;
use crate::formats::index::Index;
use crate::formats::names::{INDEX_NAME, archive_id_of, manifest_name};
use crate::run::journal::Journal;
use crate::storage::{read_index, stored_digest};

/// What committing did.
pub enum Committed {
    /// This run wrote the index line; the new index, for its history copy.
    Now(Vec<u8>),
    /// The index already listed it (an interrupted run got that far).
    Already,
    /// Another writer's archive took its id: its replays were never deleted.
    Lost,
}

/// Commits the uploaded archive: its manifest, then its index line.
pub async fn commit(storage: &Storage, journal: &Journal, work_dir: &Path) -> Result<Committed> {
    let (index, version) = read_index(storage).await?;
    match standing(storage, journal, &index, work_dir).await? {
        Standing::Committed => return Ok(Committed::Already),
        Standing::Lost => return Ok(Committed::Lost),
        Standing::Next => {}
    }
    fault::point("after-upload");
    write_manifest(storage, journal, work_dir).await?;
    let new_index = write_index_line(storage, journal, &index, version).await?;
    fault::point("after-index");
    Ok(Committed::Now(new_index))
}

/// Where the journal's archive stands in the index now.
pub async fn standing_now(
    storage: &Storage,
    journal: &Journal,
    work_dir: &Path,
) -> Result<Standing> {
    let (index, _) = read_index(storage).await?;
    standing(storage, journal, &index, work_dir).await
}

/// Where the journal's archive stands in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The index holds its line: it is committed.
    Committed,
    /// Its line comes next.
    Next,
    /// Another writer's archive took its id: its replays were never deleted.
    Lost,
}

/// Where the journal's archive stands in `index`; an error when the index ends before the
/// line that should precede it (it was truncated or replaced). An index that went on past its
/// id is looked into ([`resolve_taken_id`]).
async fn standing(
    storage: &Storage,
    journal: &Journal,
    index: &Index,
    work_dir: &Path,
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
        return resolve_taken_id(storage, journal, index).await;
    }
    let where_to = storage.describe();
    bail!(
        "{INDEX_NAME} on {where_to} ends with {} but {} records archive `{entry}` as the next \
         one; check the storage, then remove the journal to start over",
        last.map_or_else(|| "no line".to_owned(), |l| format!("`{l}`")),
        Journal::path(work_dir).display()
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

/// The manifest, staged in `work_dir` (it can be megabytes) and uploaded, never over
/// another: one already there is accepted only if it is byte for byte this one (an
/// interrupted run wrote it).
async fn write_manifest(storage: &Storage, journal: &Journal, work_dir: &Path) -> Result<()> {
    let manifest = manifest_name(&journal.archive_name);
    let where_to = storage.describe();
    let staged = tempfile::NamedTempFile::new_in(work_dir)
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

/// The index line that commits the archive, written only over the index this run
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
