//! A bound on every operation whose length does not depend on the data: a storage that stops
//! answering fails the operation as temporary (so the retry layer above may try again) instead
//! of hanging the run. Transfers (`read`, `put`) are not bounded here, since a large archive
//! on a slow link may rightly take hours: drivers bound each stall of a transfer instead.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::driver::Prepared;
use crate::{
    ByteRange, Driver, ObjectMeta, ObjectReader, PreflightMode, Put, Readiness, Result, Source,
    StorageError,
};

/// How long a connection may take to send what it holds once it has taken a whole upload:
/// the largest send buffer Linux grows a socket to by default (`tcp_wmem`, 4 MiB) and a
/// protocol's own half MiB, at 64 KiB/s. Only a backstop: a stall meanwhile (no byte
/// acknowledged for the backend's `timeout`) is the kernel's to see (`TCP_USER_TIMEOUT`).
pub(crate) const DRAINING: Duration = Duration::from_secs(((4 << 20) + (512 << 10)) / (64 << 10));

#[derive(Debug)]
pub struct Timeout {
    inner: Arc<dyn Driver>,
    limit: Duration,
}

impl Timeout {
    pub fn new(inner: Arc<dyn Driver>, limit: Duration) -> Self {
        Timeout { inner, limit }
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        object: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::time::timeout(self.limit, call)
            .await
            .unwrap_or_else(|_| {
                Err(StorageError::temporary(format!(
                    "{} did not answer {operation} {object} within {}",
                    self.inner.describe(),
                    humantime::format_duration(self.limit)
                ))
                .with_operation(operation)
                .with_object(object))
            })
    }
}

#[async_trait]
impl Driver for Timeout {
    pass_through_description!();

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        self.bounded("stat", name, self.inner.stat(name)).await
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        self.bounded("list", "", self.inner.list()).await
    }

    async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        self.inner.read(name, range).await
    }

    async fn put(&self, name: &str, put: &Put<'_>) -> Result<u64> {
        self.inner.put(name, put).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.bounded("rename", from, self.inner.rename(from, to))
            .await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.bounded("delete", name, self.inner.delete(name)).await
    }

    /// Not bounded here: waking a storage up takes steps (API calls, a helper process's
    /// start) that each driver bounds itself.
    async fn prepare(&self, mode: PreflightMode) -> Result<Prepared> {
        self.inner.prepare(mode).await
    }

    async fn check_hash(&self, name: &str, local: &Path) -> Result<()> {
        // Hashing the local file takes as long as the file is large: not bounded.
        self.inner.check_hash(name, local).await
    }

    async fn create_lock(&self, name: &str, lease: &Source) -> Result<()> {
        self.bounded("lock", name, self.inner.create_lock(name, lease))
            .await
    }

    async fn remove_lock(&self, name: &str) -> Result<()> {
        self.bounded("unlock", name, self.inner.remove_lock(name))
            .await
    }

    async fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        self.bounded("stat", name, self.inner.modified(name)).await
    }

    async fn warm_up(&self, name: &str) -> Result<Readiness> {
        self.bounded("warm-up", name, self.inner.warm_up(name))
            .await
    }
}
