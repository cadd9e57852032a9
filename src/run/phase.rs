//! An archive taken from wherever its run stands to done, one recorded phase at a time:
//! packed -> uploaded ([`super::upload`]) -> committed ([`super::commit`]) -> done
//! ([`super::clean`]). A new archive enters at "uploaded" (it is uploaded while packed); an
//! unfinished run's enters at the phase its journal records. Each step asks the storage where
//! the archive stands before it acts, since a kill can fall between a step and its record.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use backends::Storage;

use crate::formats::names::INDEX_NAME;
use crate::report::events::Archived;
use crate::run::clean::finish_committed;
use crate::run::commit::{Committed, Standing, commit, standing_now};
use crate::run::journal::{Journal, Phase};
use crate::run::spool::Spool;
use crate::run::upload::ensure_uploaded;

/// The folders a run works in.
#[derive(Debug, Clone, Copy)]
pub struct Folders<'a> {
    pub temp_dir: &'a Path,
    pub work_dir: &'a Path,
}

/// Takes `journal`'s archive through its remaining phases. `None` when it had to be given up
/// (another writer's archive took its id, or it never reached the storage and its spool copy
/// is gone): its replays are all still in the temp folder and go into the next archive.
pub async fn finish(
    storage: &Storage,
    mut journal: Journal,
    spool: Spool,
    folders: Folders<'_>,
    started: Instant,
) -> Result<Option<Archived>> {
    let work_dir = folders.work_dir;
    // Whether this run has seen the index list the archive, and the index it wrote if it did.
    let mut seen_committed = false;
    let mut new_index = None;
    loop {
        match journal.phase {
            Phase::Packed => match standing_now(storage, &journal, work_dir).await? {
                Standing::Committed => {
                    seen_committed = true;
                    journal.advance(Phase::Committed, work_dir)?;
                }
                Standing::Lost => return give_up(spool, work_dir),
                Standing::Next => {
                    if !ensure_uploaded(storage, &journal, &spool, work_dir).await? {
                        tracing::warn!(
                            "archive {} of an interrupted run never reached {} and its spool \
                             copy is gone; its replays are still in the temp folder and will \
                             be packed again",
                            journal.archive_name,
                            storage.describe()
                        );
                        return give_up(spool, work_dir);
                    }
                    journal.advance(Phase::Uploaded, work_dir)?;
                }
            },
            Phase::Uploaded => {
                match commit(storage, &journal, work_dir).await? {
                    Committed::Now(index) => new_index = Some(index),
                    Committed::Already => {}
                    Committed::Lost => return give_up(spool, work_dir),
                }
                seen_committed = true;
                journal.advance(Phase::Committed, work_dir)?;
            }
            Phase::Committed => {
                // Recorded by an earlier run: believed once the index still says so.
                if !seen_committed
                    && standing_now(storage, &journal, work_dir).await? != Standing::Committed
                {
                    bail!(
                        "{} records archive {} as committed, but {INDEX_NAME} on {} does not \
                         list it now (was the index replaced?); nothing was deleted: check the \
                         storage with `oiseau status`, then remove the journal",
                        Journal::path(work_dir).display(),
                        journal.archive_name,
                        storage.describe()
                    );
                }
                let temp_dir = folders.temp_dir;
                let archived = finish_committed(
                    storage, journal, spool, new_index, temp_dir, work_dir, started,
                )
                .await?;
                return Ok(Some(archived));
            }
        }
    }
}

/// Drops an archive that cannot be committed: its spool copy and its journal go, its replays
/// stay in the temp folder.
fn give_up(spool: Spool, work_dir: &Path) -> Result<Option<Archived>> {
    let _ = std::fs::remove_file(spool.path());
    Journal::remove(work_dir)?;
    Ok(None)
}
