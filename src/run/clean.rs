//! Committed -> done: the history copy of the index, then the temp folder loses exactly the
//! replays the archive holds, the spool copy goes, and last the journal.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use backends::{Storage, WriteMode, WriteOptions};

use crate::fault;
use crate::formats::names::index_copy_name;
use crate::report::events::Archived;
use crate::run::journal::{Journal, JournalReplay};
use crate::run::spool::Spool;

/// Finishes a committed archive. `new_index` is the index this run wrote, whose timestamped
/// copy goes beside it; the copy and the cleaning are independent, and go on side by side.
pub async fn finish_committed(
    storage: &Storage,
    journal: Journal,
    spool: Spool,
    new_index: Option<Vec<u8>>,
    temp_dir: &Path,
    work_dir: &Path,
    started: Instant,
) -> Result<Archived> {
    let where_to = storage.describe();
    let copy = index_copy_name(journal.timestamp);
    let write_copy = async {
        // The copy is history, not part of the commit: the archive is already safe, so a
        // failed copy is reported and the run goes on. Two runs within one second share the
        // name, and then the later copy (a superset) replaces the earlier one.
        if let Some(new_index) = &new_index
            && let Err(e) = storage
                .write(&copy, new_index, &WriteOptions::hot(WriteMode::Replace))
                .await
        {
            tracing::warn!("cannot write the index copy {copy} to {where_to}: {e}");
        }
    };
    let replay_bytes = journal.replays.iter().map(|r| r.size).sum();
    let replays = journal.replays.len();
    let cleaning = tokio::task::spawn_blocking({
        let temp_dir = temp_dir.to_owned();
        let packed = journal.replays;
        move || clean_temp_folder(&temp_dir, &packed)
    });
    let ((), kept, _) = tokio::join!(write_copy, cleaning, spool.remove_in_background());
    let kept = kept.context("the cleaning of the temp folder stopped unexpectedly")?;
    Journal::remove(work_dir)?;
    Ok(Archived {
        archive_id: journal.archive_id,
        archive_name: journal.archive_name,
        replays,
        replay_bytes,
        archive_bytes: journal.archive_size,
        kept,
        duration: started.elapsed(),
    })
}

/// Deletes the archived replays that are still exactly what was packed, and returns how many
/// were kept because they changed (they go into a later archive: duplicated, never lost).
pub fn clean_temp_folder(temp_dir: &Path, archived: &[JournalReplay]) -> usize {
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
