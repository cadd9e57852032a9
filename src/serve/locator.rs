//! Where each replay is, for `serve`: the catalog, loaded once and loaded again when the
//! storage's index has grown, so that a request is a lookup in one archive's table, not a
//! read of every manifest.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use backends::Storage;
use tokio::sync::{Mutex, RwLock};

use crate::catalog::{Catalog, Found, Recorded};
use crate::formats::digest::ReplayHash;
use crate::formats::index::IndexEntry;
use crate::formats::range::ReplaySeek;
use crate::storage::read_index;

/// How often a miss may look at the storage's index for new archives.
const INDEX_CHECK: Duration = Duration::from_secs(10);

/// Where one replay is.
#[derive(Debug, Clone)]
pub struct Location {
    pub archive: String,
    pub archive_id: u64,
    /// Its recorded size and hash, and where it can be read alone, when its archive has a
    /// manifest; without one, it was found by the index's id ranges.
    pub size: Option<u64>,
    pub hash: Option<ReplayHash>,
    pub seek: Option<ReplaySeek>,
}

/// One archive as the page lists it.
#[derive(Debug, Clone)]
pub struct ArchiveRow {
    pub id: u64,
    pub max_replay_id: u64,
    /// Its object, when the storage holds it.
    pub name: Option<String>,
    pub bytes: Option<u64>,
    /// Replays its manifest records; `None` without one.
    pub replays: Option<u64>,
    /// Its manifest's format; `None` without one.
    pub format: Option<u32>,
}

pub struct Locator {
    storage: Storage,
    work_dir: PathBuf,
    known: RwLock<Arc<Known>>,
    /// When a miss last looked at the index; `None` until one has.
    checked: Mutex<Option<Instant>>,
}

struct Known {
    /// Each archive's manifest head and table: a lookup reads a few records of one table.
    catalog: Catalog,
    /// The index this was built from: its last line.
    last: Option<IndexEntry>,
}

impl Known {
    async fn load(storage: &Storage, work_dir: &std::path::Path) -> Result<Known> {
        let catalog = Catalog::load(storage, work_dir).await?;
        let last = catalog.archives.last().map(|a| a.slot.entry);
        Ok(Known { catalog, last })
    }

    /// The latest archive holding `id` wins, as a replay archived twice changed in between;
    /// an archive without a manifest (the original tool's, or a damaged manifest) is found by
    /// the index's id ranges, with no hash to check.
    fn locate(&self, id: u64) -> Result<Option<Location>> {
        let found = self.catalog.locate(id)?;
        let Some((archive, how)) = found.iter().rev().find(|(a, _)| a.object().is_some()) else {
            return Ok(None);
        };
        let archive_id = archive.archive_id();
        let archive = archive
            .object()
            .map_or_else(String::new, |o| o.name.clone());
        Ok(Some(match how {
            Found::Exact(replay) => Location {
                archive,
                archive_id,
                size: Some(replay.size),
                hash: Some(replay.hash),
                seek: replay.seek,
            },
            Found::ByRange => Location {
                archive,
                archive_id,
                size: None,
                hash: None,
                seek: None,
            },
        }))
    }
}

impl Locator {
    pub async fn load(storage: Storage, work_dir: PathBuf) -> Result<Locator> {
        let known = Known::load(&storage, &work_dir).await?;
        Ok(Locator {
            storage,
            work_dir,
            known: RwLock::new(Arc::new(known)),
            // The first miss looks at once.
            checked: Mutex::new(None),
        })
    }

    /// Archives known, for `/healthz`.
    pub async fn archives(&self) -> usize {
        self.known.read().await.catalog.archives.len()
    }

    /// Every archive of the index as last loaded, oldest first: from the manifests' heads held
    /// in memory, so a page lists thousands without reading the storage.
    pub async fn archive_rows(&self) -> Vec<ArchiveRow> {
        let known = Arc::clone(&*self.known.read().await);
        known
            .catalog
            .archives
            .iter()
            .map(|archive| ArchiveRow {
                id: archive.archive_id(),
                max_replay_id: archive.slot.entry.max_replay_id,
                name: archive.object().map(|o| o.name.clone()),
                bytes: archive.object().map(|o| o.size),
                replays: archive.recorded.as_ref().map(Recorded::count),
                format: archive.recorded.as_ref().map(|r| r.head().format),
            })
            .collect()
    }

    /// Where replay `id` is; `None` when no archive holds it, even after a look for new ones.
    pub async fn locate(&self, id: u64) -> Result<Option<Location>> {
        let known = Arc::clone(&*self.known.read().await);
        if let Some(found) = known.locate(id)? {
            return Ok(Some(found));
        }
        // Not known: new archives may have been committed since. One look per INDEX_CHECK,
        // whatever the number of requests for unknown ids.
        {
            let mut checked = self.checked.lock().await;
            if checked.is_some_and(|at| at.elapsed() < INDEX_CHECK) {
                return Ok(None);
            }
            *checked = Some(Instant::now());
        }
        let (index, _) = read_index(&self.storage).await?;
        if index.last() == known.last {
            return Ok(None);
        }
        tracing::info!("the index grew: loading the new manifests");
        let fresh = Arc::new(Known::load(&self.storage, &self.work_dir).await?);
        let found = fresh.locate(id)?;
        *self.known.write().await = fresh;
        Ok(found)
    }
}
