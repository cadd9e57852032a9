//! Taking the lock for one lease: free, or over a stale lease, by the protocol the storage's
//! verified capabilities allow (see the parent module).

use anyhow::{Context, Result};
use backends::{ErrorKind, Source, Storage, Version, WriteMode, WriteOptions};

use std::path::Path;
use std::time::Duration;

use super::leaseless::{self, ABANDONED_AFTER, Verdict};
use super::{Found, LOCK_NAME, Lease, SETTLE, read_lease};
use crate::clock::unix_now;
use crate::error::StorageBusy;

/// How the lock is taken on this storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// `Driver::create_lock` is exclusive.
    Exclusive,
    /// Nothing is exclusive: write the lease, let it settle, read it back.
    ReadBack,
}

/// Takes the lock for one lease, by one protocol.
pub(super) struct Taker<'a> {
    pub(super) storage: &'a Storage,
    pub(super) protocol: Protocol,
    pub(super) lease: &'a Lease,
}

impl Taker<'_> {
    /// Takes the lock if it is free; `false` when a lease is there.
    pub(super) async fn take_free(&self) -> Result<bool> {
        let where_to = self.storage.describe();
        let staged = stage(self.lease)?;
        match self.protocol {
            Protocol::Exclusive => {
                match self
                    .storage
                    .create_lock(LOCK_NAME, &Source::file(staged.path()))
                    .await
                {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e).with_context(|| format!("cannot take the lock on {where_to}")),
                }
            }
            Protocol::ReadBack => {
                match self.storage.stat(LOCK_NAME).await {
                    Ok(_) => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("cannot read the lock on {where_to}"));
                    }
                }
                if let Err(e) = self.write(WriteMode::Replace).await {
                    // Another writer's lease written over this one as it landed (its check
                    // after the upload then finds other bytes): a race lost, not a failure.
                    return match read_lease(self.storage).await? {
                        Found::Lease(now, _) if now.token != self.lease.token => Ok(false),
                        _ => Err(e),
                    };
                }
                self.confirmed().await
            }
        }
    }

    /// Replaces the stale lease `held`, read at `version`, with this one; `false` when another
    /// writer changed the lock first.
    pub(super) async fn take_over(&self, held: &Lease, version: Version) -> Result<bool> {
        if self.storage.capabilities().replace_if_match {
            return match self.write(WriteMode::ReplaceIfUnchanged(version)).await {
                Ok(()) => Ok(true),
                Err(e) if lost_race(&e) => Ok(false),
                Err(e) => Err(e),
            };
        }
        // Removed only while it is still the stale lease: another writer that took it over
        // meanwhile keeps its brand-new lease.
        match read_lease(self.storage).await? {
            Found::Lease(now, _) if now.token == held.token && now.renewed == held.renewed => {}
            _ => return Ok(false),
        }
        match self.storage.remove_lock(LOCK_NAME).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot remove the stale lock on {}",
                        self.storage.describe()
                    )
                });
            }
        }
        let taken = self.take_free().await?;
        // The read-back protocol confirmed it already.
        Ok(taken && (self.protocol == Protocol::ReadBack || self.confirmed().await?))
    }

    /// Takes over a lock held without a readable lease (`what` says what is there, `state`
    /// tells one such state from another) once this host's runs have seen it so for
    /// [`ABANDONED_AFTER`]; until then it is [`StorageBusy`]. `false` when another writer took
    /// it over first.
    pub(super) async fn take_leaseless(
        &self,
        work_dir: &Path,
        location: &str,
        state: &str,
        what: &str,
    ) -> Result<bool> {
        let seen_for = match leaseless::judge(work_dir, location, state, unix_now()?) {
            Verdict::Wait(seen_for) => {
                return Err(StorageBusy(format!(
                    "{what}: a writer is taking the lock, or stopped while taking it. Seen so for \
                     {}; it is taken over once it has stayed so for {}, and the next run carries \
                     on",
                    rounded(seen_for),
                    rounded(ABANDONED_AFTER)
                ))
                .into());
            }
            Verdict::Abandoned(seen_for) => seen_for,
        };
        tracing::warn!(
            "taking over the lock: {what}, and has been for {}",
            rounded(seen_for)
        );
        match self.storage.remove_lock(LOCK_NAME).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot remove the abandoned lock on {}",
                        self.storage.describe()
                    )
                });
            }
        }
        // Confirmed by reading it back: another writer may be doing the same.
        let taken = self.take_free().await?
            && (self.protocol == Protocol::ReadBack || self.confirmed().await?);
        if taken {
            leaseless::forget(work_dir);
        }
        Ok(taken)
    }

    async fn write(&self, mode: WriteMode) -> Result<()> {
        let bytes = self.lease.bytes()?;
        self.storage
            .write(LOCK_NAME, &bytes, &WriteOptions::hot(mode))
            .await
            .map(drop)
            .map_err(anyhow::Error::from)
    }

    /// After [`SETTLE`], whether the lock still holds this lease.
    async fn confirmed(&self) -> Result<bool> {
        tokio::time::sleep(SETTLE).await;
        Ok(matches!(
            read_lease(self.storage).await?,
            Found::Lease(now, _) if now.token == self.lease.token
        ))
    }
}

/// Whether the write failed because another writer changed or removed the object first.
fn lost_race(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<backends::StorageError>()
        .is_some_and(|e| matches!(e.kind(), ErrorKind::ConditionFailed | ErrorKind::NotFound))
}

/// The lease in a local file, for an exclusive create that takes a file.
fn stage(lease: &Lease) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut staged =
        tempfile::NamedTempFile::new().context("cannot stage the storage lock's lease")?;
    staged
        .write_all(&lease.bytes()?)
        .context("cannot stage the storage lock's lease")?;
    Ok(staged)
}

/// A duration to the second, for messages.
fn rounded(duration: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(duration.as_secs()))
}
