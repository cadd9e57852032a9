//! A storage in memory: for the fast in-process tests of the run's decisions and of the
//! commit path. It keeps the whole contract (the conformance suite runs on it) and can declare
//! fewer capabilities than it has, so that every commit mechanism can be exercised.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;

use crate::{
    ByteRange, Capabilities, Driver, ErrorKind, ObjectMeta, ObjectReader, Put, Result, Source,
    StorageError,
};

#[derive(Debug)]
pub struct MemoryDriver {
    capabilities: Capabilities,
    /// Claims conditional writes but ignores their conditions, as some S3 servers do.
    ignores_conditions: bool,
    objects: Mutex<BTreeMap<String, Stored>>,
}

#[derive(Debug, Clone)]
struct Stored {
    bytes: Bytes,
    /// Bumped by every write, as an ETag would change.
    generation: u64,
    written: std::time::SystemTime,
}

impl Default for MemoryDriver {
    fn default() -> Self {
        Self::with_capabilities(Capabilities {
            atomic_create: true,
            atomic_replace: true,
            replace_if_match: true,
            rename: true,
            exclusive_lock: true,
            ..Capabilities::default()
        })
    }
}

impl MemoryDriver {
    /// Declares `capabilities`; the ones it does not have (hashes, classes) are ignored.
    pub fn with_capabilities(capabilities: Capabilities) -> Self {
        MemoryDriver {
            capabilities,
            ignores_conditions: false,
            objects: Mutex::new(BTreeMap::new()),
        }
    }

    /// A storage that claims `If-None-Match` and `If-Match` (to be probed, as S3's are) and
    /// ignores both: creates replace, conditional replaces always replace.
    pub fn ignoring_conditions() -> Self {
        MemoryDriver {
            ignores_conditions: true,
            ..Self::with_capabilities(Capabilities {
                conditions_need_probe: true,
                ..Self::default().capabilities
            })
        }
    }

    fn objects(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Stored>>> {
        self.objects
            .lock()
            .map_err(|_| StorageError::other("the memory storage was poisoned by a panic"))
    }

    fn store(&self, name: &str, bytes: Bytes, put: &Put<'_>) -> Result<()> {
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut objects = self.objects()?;
        if put.if_absent && !self.ignores_conditions && objects.contains_key(name) {
            return Err(StorageError::already_exists(name));
        }
        if let Some(expected) = put.if_match.filter(|_| !self.ignores_conditions) {
            let current = objects
                .get(name)
                .map(|stored| stored.generation.to_string());
            if current.as_deref() != Some(expected.as_str()) {
                return Err(StorageError::new(
                    ErrorKind::ConditionFailed,
                    format!("{name} changed since it was read"),
                )
                .with_object(name));
            }
        }
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        objects.insert(
            name.to_owned(),
            Stored {
                bytes,
                generation,
                written: std::time::SystemTime::now(),
            },
        );
        Ok(())
    }
}

fn meta(name: &str, stored: &Stored) -> ObjectMeta {
    ObjectMeta {
        name: name.to_owned(),
        size: stored.bytes.len() as u64,
        version: Some(stored.generation.to_string()),
    }
}

#[async_trait]
impl Driver for MemoryDriver {
    fn describe(&self) -> String {
        "memory storage".to_owned()
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        self.objects()?
            .get(name)
            .map(|stored| meta(name, stored))
            .ok_or_else(|| StorageError::not_found(name))
    }

    async fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        self.objects()?
            .get(name)
            .map(|stored| Some(stored.written))
            .ok_or_else(|| StorageError::not_found(name))
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .objects()?
            .iter()
            .map(|(name, stored)| meta(name, stored))
            .collect())
    }

    async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        let bytes = self
            .objects()?
            .get(name)
            .map(|stored| stored.bytes.clone())
            .ok_or_else(|| StorageError::not_found(name))?;
        let size = bytes.len() as u64;
        let start = usize::try_from(range.start.min(size)).unwrap_or(usize::MAX);
        let len = usize::try_from(range.len_within(size)).unwrap_or(usize::MAX);
        Ok(Box::new(std::io::Cursor::new(
            bytes.slice(start..start + len),
        )))
    }

    async fn put(&self, name: &str, put: &Put<'_>) -> Result<u64> {
        let mut chunks = put.source.chunks();
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.try_next().await? {
            bytes.extend_from_slice(&chunk);
            (put.progress)(bytes.len() as u64);
        }
        let sent = bytes.len() as u64;
        self.store(name, Bytes::from(bytes), put)?;
        Ok(sent)
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let mut objects = self.objects()?;
        let stored = objects
            .remove(from)
            .ok_or_else(|| StorageError::not_found(from))?;
        objects.insert(to.to_owned(), stored);
        Ok(())
    }

    /// Exclusive whatever capabilities it declares (the map is behind one lock), unless it
    /// ignores conditions.
    async fn create_lock(&self, name: &str, lease: &Source) -> Result<()> {
        let bytes = tokio::fs::read(lease.path())
            .await
            .map_err(|e| lease.error(e))?;
        let create = Put {
            if_absent: true,
            ..Put::new(lease)
        };
        self.store(name, Bytes::from(bytes), &create)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.objects()?
            .remove(name)
            .map(drop)
            .ok_or_else(|| StorageError::not_found(name))
    }
}
