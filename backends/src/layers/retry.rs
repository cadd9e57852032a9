//! Retries of temporary failures: a timeout, a 421 or a reset connection is tried again after a
//! pause; a refused login, a missing file or a full disk is not, since waiting would not change
//! the answer. This layer alone decides retrying: drivers only say whether an error is
//! temporary.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::driver::Prepared;
use crate::{
    ByteRange, Driver, ErrorStatus, ObjectMeta, ObjectReader, PreflightMode, Put, Readiness,
    Result, Source, StorageError,
};

/// Pauses before the second and third attempts, before jitter.
const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];

/// One retry about to happen, for the hook.
#[derive(Debug)]
pub struct RetryEvent<'a> {
    pub operation: &'static str,
    pub object: &'a str,
    pub error: &'a StorageError,
    /// The attempt about to start, from 2.
    pub attempt: usize,
    pub pause: Duration,
}

/// Told of each retry: logs by default; a metrics reporter may count them.
pub type RetryHook = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

pub struct Retry {
    inner: Arc<dyn Driver>,
    backoff: Vec<Duration>,
    hook: RetryHook,
}

impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Retry {
    /// Two retries, after about 1 s and 4 s, each logged as a warning.
    pub fn new(inner: Arc<dyn Driver>) -> Self {
        Retry {
            inner,
            backoff: BACKOFF.to_vec(),
            hook: Arc::new(|event: &RetryEvent<'_>| {
                tracing::warn!(
                    "{} {} failed ({}); trying again in {:.1?}",
                    event.operation,
                    event.object,
                    event.error,
                    event.pause
                );
            }),
        }
    }

    /// Pauses before each retry (their number is the number of retries), before jitter.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Vec<Duration>) -> Self {
        self.backoff = backoff;
        self
    }

    #[must_use]
    pub fn with_hook(mut self, hook: RetryHook) -> Self {
        self.hook = hook;
        self
    }

    async fn attempt<T, F, Fut>(
        &self,
        operation: &'static str,
        object: &str,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut pauses = self.backoff.iter().enumerate();
        loop {
            // Every error leaves here naming the operation and the object, for the caller's
            // message and for whatever counts failures.
            let error = match call().await {
                Err(e) if e.is_temporary() => e.with_operation(operation).with_object(object),
                Err(e) => return Err(e.with_operation(operation).with_object(object)),
                ok => return ok,
            };
            let Some((done, pause)) = pauses.next() else {
                return Err(error.with_status(ErrorStatus::Persistent));
            };
            let pause = jittered(*pause);
            (self.hook)(&RetryEvent {
                operation,
                object,
                error: &error,
                attempt: done + 2,
                pause,
            });
            tokio::time::sleep(pause).await;
        }
    }
}

/// Between 75 % and 125 % of `pause`, so that writers that failed together do not come back
/// together.
fn jittered(pause: Duration) -> Duration {
    let mut byte = [0u8; 1];
    // Without randomness the pause is simply not spread.
    let _ = rustix::rand::getrandom(&mut byte, rustix::rand::GetRandomFlags::empty());
    pause.mul_f64(0.75 + f64::from(byte[0]) / 510.0)
}

#[async_trait]
impl Driver for Retry {
    pass_through_description!();

    /// Not retried: it may start something (an unarchive) that must happen once.
    async fn prepare(&self, mode: PreflightMode) -> Result<Prepared> {
        self.inner.prepare(mode).await
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        self.attempt("stat", name, || self.inner.stat(name)).await
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        self.attempt("list", "", || self.inner.list()).await
    }

    async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        self.attempt("read", name, || self.inner.read(name, range))
            .await
    }

    /// Retried whole: the source is read again from its start.
    async fn put(&self, name: &str, put: &Put<'_>) -> Result<u64> {
        self.attempt("upload", name, || self.inner.put(name, put))
            .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.attempt("rename", from, || self.inner.rename(from, to))
            .await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.attempt("delete", name, || self.inner.delete(name))
            .await
    }

    async fn check_hash(&self, name: &str, local: &Path) -> Result<()> {
        self.attempt("hash check", name, || self.inner.check_hash(name, local))
            .await
    }

    /// Not retried: an attempt whose answer was lost may have taken the lock, and a second
    /// one would find it held. The caller reads the lease to tell.
    /// Retried like any write: an attempt whose answer was lost after the lock was taken meets
    /// `AlreadyExists` on the next one, and the caller then finds its own lease there.
    async fn create_lock(&self, name: &str, lease: &Source) -> Result<()> {
        self.attempt("lock", name, || self.inner.create_lock(name, lease))
            .await
    }

    async fn remove_lock(&self, name: &str) -> Result<()> {
        self.attempt("unlock", name, || self.inner.remove_lock(name))
            .await
    }

    async fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        self.attempt("stat", name, || self.inner.modified(name))
            .await
    }

    async fn warm_up(&self, name: &str) -> Result<Readiness> {
        self.attempt("warm-up", name, || self.inner.warm_up(name))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::layers::{Fault, Faults};
    use crate::memory::MemoryDriver;
    use std::sync::Mutex;

    fn retrying(faults: Faults, heard: &Arc<Mutex<Vec<(usize, Duration)>>>) -> Retry {
        let heard = Arc::clone(heard);
        Retry::new(Arc::new(faults))
            .with_backoff(vec![Duration::from_millis(4), Duration::from_millis(8)])
            .with_hook(Arc::new(move |event: &RetryEvent<'_>| {
                heard.lock().unwrap().push((event.attempt, event.pause));
            }))
    }

    #[tokio::test]
    async fn temporary_failures_are_retried_with_jitter_and_reported() {
        let heard = Arc::default();
        let faults = Faults::new(Arc::new(MemoryDriver::default()))
            .fail("list", 1, Fault::DropConnection)
            .fail("list", 2, Fault::DropConnection);
        let retry = retrying(faults, &heard);
        assert!(retry.list().await.unwrap().is_empty());
        let heard = heard.lock().unwrap();
        assert_eq!(
            heard
                .iter()
                .map(|(attempt, _)| *attempt)
                .collect::<Vec<_>>(),
            [2, 3]
        );
        let (_, first) = heard[0];
        assert!(first >= Duration::from_millis(3) && first <= Duration::from_millis(5));
    }

    #[tokio::test]
    async fn the_last_temporary_failure_becomes_persistent_and_permanent_ones_are_not_retried() {
        let heard = Arc::default();
        let faults = Faults::new(Arc::new(MemoryDriver::default()))
            .fail_from("stat", 1, Fault::DropConnection)
            .fail("delete", 1, Fault::Refuse);
        let retry = retrying(faults, &heard);
        let error = retry.stat("index").await.unwrap_err();
        assert_eq!(error.status(), ErrorStatus::Persistent);
        assert_eq!((error.operation(), error.object()), ("stat", Some("index")));
        assert_eq!(heard.lock().unwrap().len(), 2);
        let refused = retry.delete("index").await.unwrap_err();
        assert_eq!(refused.status(), ErrorStatus::Permanent);
        assert_eq!(refused.kind(), ErrorKind::Other);
        assert_eq!(
            heard.lock().unwrap().len(),
            2,
            "a permanent error is not retried"
        );
    }
}
