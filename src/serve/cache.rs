//! The replays `serve` has fetched, kept on disk and bounded in size: the least recently used
//! are evicted first. A game server asks for the same replays in bursts (a score page, a
//! tournament), and each storage read costs time and, on cold storage, money.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::scan::replay_id;

/// The name a replay being fetched is written under; only such files are removed when the
/// cache opens, never anything else found in the folder.
const STAGING_PREFIX: &str = ".fetching.";

pub struct Cache {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Replay id -> (size, last use).
    entries: HashMap<u64, (u64, u64)>,
    total: u64,
    /// A counter standing for time: each use takes the next value.
    clock: u64,
}

impl Cache {
    /// Opens the cache in `dir` (created if missing), with the replays already there, oldest
    /// first; temporary files of an interrupted fetch are removed, nothing else.
    pub fn open(dir: &Path, limit: u64) -> Result<Cache> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the cache folder {}", dir.display()))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)
            .with_context(|| format!("cannot list the cache folder {}", dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let meta = entry.metadata()?;
            if let Some(id) = replay_id(&name).filter(|_| meta.is_file()) {
                found.push((meta.modified().ok(), id, meta.len()));
            }
        }
        found.sort();
        let cache = Cache {
            dir: dir.to_owned(),
            limit,
            state: Mutex::new(State::default()),
        };
        for (_, id, size) in found {
            cache.admit(id, size);
        }
        Ok(cache)
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("replay_{id}.osr"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached file of replay `id`, marked as just used.
    pub fn get(&self, id: u64) -> Option<PathBuf> {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        let (_, used) = state.entries.get_mut(&id)?;
        *used = now;
        Some(self.path(id))
    }

    /// A new temporary file in the cache folder, for a replay being fetched.
    pub fn stage(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempfile_in(&self.dir)
            .with_context(|| format!("cannot write into the cache folder {}", self.dir.display()))
    }

    /// Gives a fetched replay its place in the cache, and evicts the least recently used
    /// others while the cache is over its bound.
    pub fn insert(&self, id: u64, staged: tempfile::NamedTempFile, size: u64) -> Result<PathBuf> {
        let path = self.path(id);
        staged
            .persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.admit(id, size);
        Ok(path)
    }

    fn admit(&self, id: u64, size: u64) {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some((old, _)) = state.entries.insert(id, (size, now)) {
            state.total -= old;
        }
        state.total += size;
        while state.total > self.limit {
            let Some((&victim, &(victim_size, _))) = state
                .entries
                .iter()
                .filter(|(other, _)| **other != id)
                .min_by_key(|(_, (_, used))| *used)
            else {
                break;
            };
            state.entries.remove(&victim);
            state.total -= victim_size;
            let _ = std::fs::remove_file(self.path(victim));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn put(cache: &Cache, id: u64, size: usize) {
        let mut staged = cache.stage().unwrap();
        staged.write_all(&vec![7; size]).unwrap();
        cache.insert(id, staged, size as u64).unwrap();
    }

    #[test]
    fn the_least_recently_used_go_first_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), 250).unwrap();
        put(&cache, 1, 100);
        put(&cache, 2, 100);
        assert!(cache.get(1).is_some(), "1 is now the most recently used");
        put(&cache, 3, 100);
        assert!(cache.get(2).is_none(), "2 was the least recently used");
        assert!(cache.get(1).is_some() && cache.get(3).is_some());
        assert!(!dir.path().join("replay_2.osr").exists());
        drop(cache);
        std::fs::write(dir.path().join(".fetching.x"), b"half").unwrap();
        let again = Cache::open(dir.path(), 250).unwrap();
        assert!(again.get(1).is_some() && again.get(3).is_some());
        assert!(!dir.path().join(".fetching.x").exists());
    }
}
