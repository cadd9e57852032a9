//! The replays `serve` has fetched, kept on disk and bounded in size: the least recently used
//! are evicted first. A game server asks for the same replays in bursts (a score page, a
//! tournament), and each storage read costs time and, on cold storage, money.
//!
//! The cache is an optimisation only: a folder that cannot be created or written (deleted, on a
//! full disk, turned into a file) or that another `serve` already uses never fails a request.
//! Replays are then answered from the storage, and [`Cache::problem`] says why, for the log
//! and `/healthz`.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::temp_folder::replay_id;

/// The name a replay being fetched is written under; only such files are removed when the
/// cache opens, never anything else found in the folder.
const STAGING_PREFIX: &str = ".fetching.";

/// Held (an OS lock) by the one `serve` using the folder: two evicting each other's files
/// would each count only their own bytes, and exceed the bound together.
const LOCK_NAME: &str = ".serve.lock";

pub struct Cache {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
    /// Why this `serve` cannot use the folder at all; `None` once it holds the folder's lock.
    shared: Option<String>,
    _lock: Option<File>,
}

#[derive(Default)]
struct State {
    /// Replay id -> (size, last use).
    entries: HashMap<u64, (u64, u64)>,
    total: u64,
    /// A counter standing for time: each use takes the next value.
    clock: u64,
    /// Why the last write into the folder failed, until one succeeds.
    problem: Option<String>,
}

impl Cache {
    /// Opens the cache in `dir` (created if missing), with the replays already there, oldest
    /// first; temporary files of an interrupted fetch are removed, nothing else. A folder it
    /// cannot use is reported, never fatal.
    pub fn open(dir: &Path, limit: u64) -> Cache {
        let mut cache = Cache {
            dir: dir.to_owned(),
            limit,
            state: Mutex::new(State::default()),
            shared: None,
            _lock: None,
        };
        match cache.take_folder() {
            Ok(found) => {
                for (_, id, size) in found {
                    cache.admit(id, size);
                }
            }
            Err(e) => {
                let why = format!("{e:#}; replays are answered from the storage");
                tracing::warn!("the cache {}: {why}", dir.display());
                cache.shared = Some(why);
            }
        }
        cache
    }

    /// Locks the folder for this `serve` and lists the replays in it, oldest first.
    fn take_folder(&mut self) -> Result<Vec<(Option<std::time::SystemTime>, u64, u64)>> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the cache folder {}", dir.display()))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another oiseau serve uses this folder (give each its own serve.cache_dir)"
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        self._lock = Some(lock);
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
        Ok(found)
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("replay_{id}.osr"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached bytes of replay `id`, marked as just used. A cached file that went away
    /// (the folder emptied by hand) is forgotten, and the replay fetched again.
    pub fn get(&self, id: u64) -> Option<Vec<u8>> {
        {
            let mut state = self.lock();
            state.clock += 1;
            let now = state.clock;
            let (_, used) = state.entries.get_mut(&id)?;
            *used = now;
        }
        match std::fs::read(self.path(id)) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                let mut state = self.lock();
                if let Some((size, _)) = state.entries.remove(&id) {
                    state.total -= size;
                }
                None
            }
        }
    }

    /// Keeps a fetched replay, evicting the least recently used others while the cache is
    /// over its bound. Best effort: a folder that cannot be written is recorded as the
    /// cache's problem, and the replay is still answered.
    pub fn store(&self, id: u64, bytes: &[u8]) {
        if self.shared.is_some() {
            return;
        }
        match self.write(id, bytes) {
            Ok(()) => {
                let solved = self.lock().problem.take();
                if solved.is_some() {
                    tracing::info!("the cache {} is usable again", self.dir.display());
                }
                self.admit(id, bytes.len() as u64);
            }
            Err(e) => {
                let why = format!("{e:#}; replays are answered from the storage");
                let mut state = self.lock();
                if state.problem.as_deref() != Some(why.as_str()) {
                    tracing::warn!("the cache {}: {why}", self.dir.display());
                }
                state.problem = Some(why);
            }
        }
    }

    /// Writes the replay under its name, through a staging file: a reader never sees half.
    fn write(&self, id: u64, bytes: &[u8]) -> Result<()> {
        let dir = &self.dir;
        // Recreated if it was removed under a running serve.
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the cache folder {}", dir.display()))?;
        let mut staged = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempfile_in(dir)
            .with_context(|| format!("cannot write into the cache folder {}", dir.display()))?;
        staged
            .write_all(bytes)
            .with_context(|| format!("cannot write into the cache folder {}", dir.display()))?;
        let path = self.path(id);
        staged
            .persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Why the cache cannot be used now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        self.shared.clone().or_else(|| self.lock().problem.clone())
    }

    /// The bytes it holds, and its bound.
    pub fn usage(&self) -> (u64, u64) {
        (self.lock().total, self.limit)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    fn put(cache: &Cache, id: u64, size: usize) {
        cache.store(id, &vec![7; size]);
        assert_eq!(cache.problem(), None);
    }

    #[test]
    fn the_least_recently_used_go_first_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), 250);
        put(&cache, 1, 100);
        put(&cache, 2, 100);
        assert!(cache.get(1).is_some(), "1 is now the most recently used");
        put(&cache, 3, 100);
        assert!(cache.get(2).is_none(), "2 was the least recently used");
        assert!(cache.get(1).is_some() && cache.get(3).is_some());
        assert!(!dir.path().join("replay_2.osr").exists());
        drop(cache);
        std::fs::write(dir.path().join(".fetching.x"), b"half").unwrap();
        let again = Cache::open(dir.path(), 250);
        assert!(again.get(1).is_some() && again.get(3).is_some());
        assert!(!dir.path().join(".fetching.x").exists());
    }
}

#[cfg(test)]
mod problems {
    use super::*;

    #[test]
    fn a_second_serve_on_the_folder_keeps_out_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = Cache::open(dir.path(), 1000);
        let second = Cache::open(dir.path(), 1000);
        assert_eq!(first.problem(), None);
        assert!(
            second.problem().unwrap().contains("another oiseau serve"),
            "{:?}",
            second.problem()
        );
        second.store(1, b"replay");
        assert!(second.get(1).is_none());
        assert!(!dir.path().join("replay_1.osr").exists());
    }

    #[test]
    fn a_folder_removed_or_unwritable_is_a_problem_said_then_solved() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = Cache::open(&dir, 1000);
        cache.store(1, b"one");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(cache.get(1), None, "its file went away: fetched again");
        assert_eq!(cache.usage().0, 0);
        cache.store(2, b"two");
        assert_eq!(cache.get(2).as_deref(), Some(&b"two"[..]), "recreated");

        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, b"a file where the folder was").unwrap();
        cache.store(3, b"three");
        assert!(
            cache
                .problem()
                .unwrap()
                .contains("cannot create the cache folder"),
            "{:?}",
            cache.problem()
        );
        std::fs::remove_file(&dir).unwrap();
        cache.store(4, b"four");
        assert_eq!(cache.problem(), None);
    }
}
