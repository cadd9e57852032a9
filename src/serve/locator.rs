//! Where each replay is, for `serve`: the catalog, loaded once and loaded again when the
//! storage's index has grown, so that a request is a lookup in one archive's table, not a
//! read of every manifest.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use backends::Storage;
use tokio::sync::{Mutex, RwLock};

use crate::catalog::{Catalog, Found};
use crate::formats::digest::ReplayHash;
use crate::formats::index::IndexEntry;
use crate::formats::range::ReplayRange;
use crate::storage::read_index;

/// How often a miss may look at the storage's index for new archives.
const INDEX_CHECK: Duration = Duration::from_secs(10);

/// Where one replay is.
#[derive(Debug, Clone)]
pub struct Location {
    pub archive: String,
    /// Its recorded hash, and where it can be read alone, when its archive has a manifest.
    pub hash: Option<ReplayHash>,
    pub range: Option<ReplayRange>,
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
        let archive = archive
            .object()
            .map_or_else(String::new, |o| o.name.clone());
        Ok(Some(match how {
            Found::Exact(replay) => Location {
                archive,
                hash: Some(replay.hash),
                range: replay.range,
            },
            Found::ByRange => Location {
                archive,
                hash: None,
                range: None,
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
