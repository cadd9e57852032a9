//! Where each replay is, for `serve`: every manifest's ids in one map, loaded once and
//! loaded again when the storage's index has grown, so that a request is a lookup, not a
//! read of every manifest.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use backends::Storage;
use tokio::sync::{Mutex, RwLock};

use crate::catalog::Catalog;
use crate::digest::ReplayHash;
use crate::index::IndexEntry;
use crate::pack::ReplayRange;
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
    catalog: Catalog,
    /// Replay id -> (archive, position in its manifest); the latest archive wins, as a replay
    /// archived twice changed in between.
    exact: HashMap<u64, (u32, u32)>,
    /// The index this was built from: its last line.
    last: Option<IndexEntry>,
}

impl Known {
    async fn load(storage: &Storage, work_dir: &std::path::Path) -> Result<Known> {
        let catalog = Catalog::load(storage, work_dir).await?;
        let mut exact = HashMap::new();
        for (at, archive) in catalog.archives.iter().enumerate() {
            if archive.object.is_none() {
                continue;
            }
            if let Some(manifest) = &archive.manifest {
                let at = u32::try_from(at)?;
                exact.reserve(manifest.replays.len());
                for (position, (id, _, _)) in manifest.replays.iter().enumerate() {
                    exact.insert(*id, (at, u32::try_from(position)?));
                }
            }
        }
        let last = catalog.archives.last().map(|a| a.entry);
        Ok(Known {
            catalog,
            exact,
            last,
        })
    }

    fn locate(&self, id: u64) -> Option<Location> {
        if let Some(&(at, position)) = self.exact.get(&id) {
            let archive = &self.catalog.archives[at as usize];
            let manifest = archive.manifest.as_ref()?;
            let (_, _, hash) = manifest.replays[position as usize];
            return Some(Location {
                archive: archive.object.as_ref()?.name.clone(),
                hash: Some(hash),
                range: manifest.ranges.get(position as usize).copied(),
            });
        }
        // Not in any manifest: the archives without one (the original tool's, or a damaged
        // manifest), by the index's id ranges.
        let (archive, _) = self
            .catalog
            .locate(id)
            .into_iter()
            .rev()
            .find(|(a, _)| a.object.is_some())?;
        Some(Location {
            archive: archive.object.as_ref()?.name.clone(),
            hash: None,
            range: None,
        })
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
        if let Some(found) = known.locate(id) {
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
        let found = fresh.locate(id);
        *self.known.write().await = fresh;
        Ok(found)
    }
}
