//! The lock on the storage: held by one writer from the moment it reads the index to choose
//! the next archive id until that archive's index line is written, so that several hosts
//! sharing one storage never pick the same id or write the index over each other.
//!
//! The lock is the object `oiseau.lock`, created in one exclusive step (see
//! `Driver::create_lock`), holding a lease: the holder's host, pid, a token of its own, and
//! when it was taken and until when it holds. A writer that finds the lock held exits 75 and
//! the next run tries again. A lease is taken over when it has expired ([`LEASE`] after it was
//! taken), or when its holder is a process of this host that no longer exists (a run that was
//! killed): the stale lock is removed and taken again. Should two writers take over the same
//! stale lease at once, the index's conditional write still lets only one of them commit.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use backends::{ErrorKind, Source, Storage};
use serde::{Deserialize, Serialize};

use crate::journal::unix_now;
use crate::layout::LOCK_NAME;

/// How long a lease holds: far longer than any commit, so that only a lock whose holder is
/// gone expires.
pub const LEASE: Duration = Duration::from_secs(6 * 3600);

/// Another writer holds the storage; the next run carries on (exit 75).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageBusy(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Lease {
    host: String,
    pid: u32,
    /// Unique to one acquisition: tells this writer's lease from any other.
    token: String,
    taken_at: u64,
    expires_at: u64,
}

impl Lease {
    fn new() -> Result<Self> {
        let taken_at = unix_now()?;
        let mut random = [0u8; 8];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
            .context("cannot get random bytes for the storage lock")?;
        Ok(Lease {
            host: backends::host_name(),
            pid: std::process::id(),
            token: u64::from_le_bytes(random).to_string(),
            taken_at,
            expires_at: taken_at + LEASE.as_secs(),
        })
    }

    /// Whether its holder is surely gone: the lease expired, or it is a process of this host
    /// that no longer exists.
    fn is_stale(&self, now: u64) -> bool {
        now >= self.expires_at || (self.host == backends::host_name() && !process_exists(self.pid))
    }

    fn describe(&self) -> String {
        format!(
            "host {} (pid {}) since {} (unix time), until {}",
            self.host, self.pid, self.taken_at, self.expires_at
        )
    }
}

/// Whether a process of this host with that pid exists.
pub fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM: it exists, owned by someone else.
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// The storage lock, held; [`StorageLock::release`] frees it.
#[derive(Debug)]
pub struct StorageLock {
    storage: Storage,
    lease: Lease,
}

impl StorageLock {
    /// Takes the lock on `storage`, taking over a stale one. A lock held by a live writer is
    /// [`StorageBusy`]. `work_dir` stages the lease.
    pub async fn acquire(storage: &Storage, work_dir: &Path) -> Result<StorageLock> {
        let lease = Lease::new()?;
        let staged = tempfile::NamedTempFile::new_in(work_dir)
            .context("cannot stage the storage lock's lease in work_dir")?;
        std::fs::write(staged.path(), serde_json::to_vec(&lease)?)
            .context("cannot stage the storage lock's lease in work_dir")?;
        let source = Source::file(staged.path());
        let where_to = storage.describe();
        let mut took_over = false;
        loop {
            let refused = match storage.create_lock(LOCK_NAME, &source).await {
                Ok(()) => {
                    tracing::debug!("took the lock on {where_to}");
                    return Ok(StorageLock {
                        storage: storage.clone(),
                        lease,
                    });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => e,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot take the lock on {where_to}"));
                }
            };
            let held = read_lease(storage).await?;
            match held {
                // An attempt whose answer was lost took it after all.
                Some(held) if held.token == lease.token => {
                    return Ok(StorageLock {
                        storage: storage.clone(),
                        lease,
                    });
                }
                Some(held) if held.is_stale(unix_now()?) && !took_over => {
                    tracing::warn!(
                        "taking over the lock on {where_to}: its holder is gone ({})",
                        held.describe()
                    );
                    storage
                        .remove_lock(LOCK_NAME)
                        .await
                        .with_context(|| format!("cannot remove the stale lock on {where_to}"))?;
                    took_over = true;
                }
                Some(held) => {
                    return Err(StorageBusy(format!(
                        "another writer holds the lock on {where_to}: {}; the next run carries on",
                        held.describe()
                    ))
                    .into());
                }
                None => {
                    return Err(StorageBusy(format!(
                        "another writer is taking the lock on {where_to} ({refused}); the next \
                         run carries on. If no oiseau runs anywhere and this lasts, remove \
                         {LOCK_NAME} from the storage"
                    ))
                    .into());
                }
            }
        }
    }

    /// Frees the lock, if it is still this writer's. Best effort: a lock that cannot be freed
    /// is taken over by this host's next run, or expires.
    pub async fn release(self) {
        let where_to = self.storage.describe();
        match read_lease(&self.storage).await {
            Ok(Some(held)) if held.token == self.lease.token => {
                if let Err(e) = self.storage.remove_lock(LOCK_NAME).await {
                    tracing::warn!(
                        "cannot free the lock on {where_to}: {e}; the next run takes it over"
                    );
                }
            }
            Ok(_) => tracing::warn!(
                "the lock on {where_to} was taken over while this run held it; the index's \
                 conditional write kept the commits apart"
            ),
            Err(e) => tracing::warn!("cannot read the lock on {where_to}: {e:#}"),
        }
    }
}

/// The lease in the lock; `None` while the lock has none readable yet (it is being taken, or
/// it is damaged).
async fn read_lease(storage: &Storage) -> Result<Option<Lease>> {
    match storage.read_small(LOCK_NAME).await {
        Ok((_, bytes)) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read the lock on {}", storage.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_stale_once_expired_or_when_its_process_on_this_host_is_gone() {
        let lease = Lease::new().unwrap();
        let now = lease.taken_at;
        assert!(!lease.is_stale(now), "this very process holds it");
        assert!(lease.is_stale(lease.expires_at));
        let dead = Lease {
            pid: u32::MAX - 1,
            ..lease.clone()
        };
        assert!(dead.is_stale(now));
        let elsewhere = Lease {
            host: "another-host".into(),
            ..dead
        };
        assert!(
            !elsewhere.is_stale(now),
            "another host's process is not ours to judge"
        );
    }
}
