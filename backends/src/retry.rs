//! Retries for transient failures, as a layer around any driver: a timeout, a 421 or a reset
//! connection is tried again after a pause; a refused login, a missing file or a full disk is
//! not, since waiting would not change the answer.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    ObjectMeta, ObjectReader, Preflight, PreflightMode, Progress, Result, Source, Storage,
    WriteMode,
};

/// Pauses before the second and third attempts.
const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];

#[derive(Debug)]
pub struct Retrying {
    inner: Box<dyn Storage>,
}

impl Retrying {
    pub fn new(inner: Box<dyn Storage>) -> Self {
        Retrying { inner }
    }

    async fn attempt<T, F, Fut>(&self, what: &str, name: &str, mut operation: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut pauses = BACKOFF.iter();
        loop {
            match operation().await {
                Err(e) if e.is_transient() => match pauses.next() {
                    Some(pause) => {
                        tracing::warn!("{what} {name} failed ({e}); trying again in {pause:?}");
                        tokio::time::sleep(*pause).await;
                    }
                    None => return Err(e),
                },
                result => return result,
            }
        }
    }
}

#[async_trait]
impl Storage for Retrying {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn condition(&self) -> Option<String> {
        self.inner.condition()
    }

    /// Not retried: a preflight may start something (an unarchive) that must happen once.
    async fn preflight(&mut self, mode: PreflightMode) -> Result<Preflight> {
        self.inner.preflight(mode).await
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        self.attempt("stat", name, || self.inner.stat(name)).await
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        self.attempt("list", "", || self.inner.list()).await
    }

    async fn open(&self, name: &str) -> Result<ObjectReader> {
        self.attempt("download", name, || self.inner.open(name))
            .await
    }

    async fn upload(
        &self,
        source: &Source,
        name: &str,
        mode: WriteMode,
        progress: Progress<'_>,
    ) -> Result<ObjectMeta> {
        self.attempt("upload", name, || {
            self.inner.upload(source, name, mode, progress)
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.attempt("delete", name, || self.inner.delete(name))
            .await
    }
}
