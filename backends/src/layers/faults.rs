//! Faults injected on purpose (OpenDAL's chaos layer), so that the decisions taken on a
//! failure (retry, give up, wait, never delete) get fast, exact tests in-process, beside the
//! end-to-end ones on real servers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::driver::Prepared;
use crate::{
    ByteRange, Driver, ErrorKind, ObjectMeta, ObjectReader, PreflightMode, Put, Readiness, Result,
    Source, StorageError,
};

/// What an injected fault looks like to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The connection dropped: a temporary error, worth a retry.
    DropConnection,
    /// The storage refused for good: a permanent error.
    Refuse,
    /// The object is cold and not restored yet.
    NotReady,
    /// `prepare` answers that the storage is still waking up.
    Pending,
    /// The write reaches the storage and is applied, then its answer is lost: the caller sees
    /// a dropped connection (a temporary error) for a write that happened.
    AnswerLost,
}

/// Wraps a driver and fails chosen calls: the nth call of an operation (counted from 1), or
/// every call from the nth on.
#[derive(Debug)]
pub struct Faults {
    inner: Arc<dyn Driver>,
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<HashMap<&'static str, usize>>,
}

#[derive(Debug)]
struct Rule {
    operation: &'static str,
    from: usize,
    /// `None`: every call from `from` on.
    until: Option<usize>,
    fault: Fault,
}

impl Faults {
    pub fn new(inner: Arc<dyn Driver>) -> Self {
        Faults {
            inner,
            rules: Mutex::new(Vec::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// Fails the `nth` call of `operation` (`prepare`, `stat`, `list`, `read`, `put`,
    /// `rename`, `delete`) with `fault`.
    #[must_use]
    pub fn fail(self, operation: &'static str, nth: usize, fault: Fault) -> Self {
        self.add(operation, nth, Some(nth), fault)
    }

    /// Fails every call of `operation` from the `nth` on.
    #[must_use]
    pub fn fail_from(self, operation: &'static str, nth: usize, fault: Fault) -> Self {
        self.add(operation, nth, None, fault)
    }

    fn add(self, operation: &'static str, from: usize, until: Option<usize>, fault: Fault) -> Self {
        if let Ok(mut rules) = self.rules.lock() {
            rules.push(Rule {
                operation,
                from,
                until,
                fault,
            });
        }
        self
    }

    /// How many times `operation` was called so far.
    pub fn calls(&self, operation: &str) -> usize {
        self.calls
            .lock()
            .map_or(0, |calls| calls.get(operation).copied().unwrap_or(0))
    }

    /// Counts the call and returns the fault it must meet, if any.
    fn check(&self, operation: &'static str) -> Option<Fault> {
        let nth = {
            let mut calls = self.calls.lock().ok()?;
            let count = calls.entry(operation).or_insert(0);
            *count += 1;
            *count
        };
        let rules = self.rules.lock().ok()?;
        rules
            .iter()
            .find(|rule| {
                rule.operation == operation
                    && nth >= rule.from
                    && rule.until.is_none_or(|until| nth <= until)
            })
            .map(|rule| rule.fault.clone())
    }

    /// Runs a write, meeting its fault before it (most) or after it ([`Fault::AnswerLost`]).
    async fn applied_then_injected<T>(
        &self,
        operation: &'static str,
        object: &str,
        write: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.check(operation) {
            Some(Fault::AnswerLost) => {
                write.await?;
                fault(Fault::AnswerLost, operation, object)
            }
            Some(found) => fault(found, operation, object),
            None => write.await,
        }
    }

    fn injected(&self, operation: &'static str, object: &str) -> Result<()> {
        match self.check(operation) {
            Some(found) => fault(found, operation, object),
            None => Ok(()),
        }
    }
}

/// The error a caller meets for `fault` on `operation`.
fn fault<T>(fault: Fault, operation: &'static str, object: &str) -> Result<T> {
    let error = match fault {
        Fault::DropConnection | Fault::AnswerLost => {
            StorageError::temporary(format!("{operation} {object}: connection dropped"))
        }
        Fault::Refuse => StorageError::other(format!("{operation} {object}: refused")),
        Fault::NotReady | Fault::Pending => StorageError::new(
            ErrorKind::NotReady,
            format!("{object} is in cold storage; a restore is under way"),
        ),
    };
    Err(error.with_operation(operation).with_object(object))
}

#[async_trait]
impl Driver for Faults {
    pass_through_description!();

    async fn prepare(&self, mode: PreflightMode) -> Result<Prepared> {
        if self.check("prepare") == Some(Fault::Pending) {
            let waking = format!("{} is waking up", self.inner.describe());
            return Ok(Readiness::Pending(waking).into());
        }
        self.inner.prepare(mode).await
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        self.injected("stat", name)?;
        self.inner.stat(name).await
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        self.injected("list", "")?;
        self.inner.list().await
    }

    async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        self.injected("read", name)?;
        self.inner.read(name, range).await
    }

    async fn put(&self, name: &str, put: &Put<'_>) -> Result<u64> {
        self.applied_then_injected("put", name, self.inner.put(name, put))
            .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.applied_then_injected("rename", from, self.inner.rename(from, to))
            .await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.injected("delete", name)?;
        self.inner.delete(name).await
    }

    async fn check_hash(&self, name: &str, local: &Path) -> Result<()> {
        self.inner.check_hash(name, local).await
    }

    async fn create_lock(&self, name: &str, lease: &Source) -> Result<()> {
        self.applied_then_injected("create_lock", name, self.inner.create_lock(name, lease))
            .await
    }

    async fn remove_lock(&self, name: &str) -> Result<()> {
        self.inner.remove_lock(name).await
    }

    async fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        self.inner.modified(name).await
    }

    async fn warm_up(&self, name: &str) -> Result<Readiness> {
        if self.check("warm_up") == Some(Fault::Pending) {
            return Ok(Readiness::Pending(format!("{name} is being restored")));
        }
        self.inner.warm_up(name).await
    }
}
