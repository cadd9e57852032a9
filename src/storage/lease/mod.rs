//! The lock on the storage: held by one writer from the moment it reads the index to choose
//! the next archive id until that archive's index line is written, so that several hosts
//! sharing one storage never pick the same id or write the index over each other.
//!
//! The lock is the object `oiseau.lock`, holding a lease: the holder's host, its process (pid,
//! boot and start time), a token of its own, and when it was taken. Every protocol step lives
//! here, chosen by what the storage verifiably can do (its conditional writes are probed first,
//! see [`crate::storage::conditions`]):
//! - **taking a free lock**: in one exclusive step where the storage has one
//!   (`Driver::create_lock`: an atomic create, FTP's `MKD`); elsewhere the name is checked free,
//!   the lease written, and read back after [`SETTLE`]: of two writers within that time, the
//!   one whose lease was overwritten sees it and backs off.
//! - **judging a held lock**: a lease of this host is stale once its process is gone (see
//!   [`crate::process`]); another host's once the lock object has not been written for
//!   [`LEASE`], both times by the storage's own clock (no host's clock is compared with
//!   another's). A live holder rewrites its lease every [`RENEW_EVERY`].
//! - **taking over a stale lock**: one conditional replace of exactly the stale version where
//!   the storage honours `If-Match`; elsewhere the lease is read again, removed only if it is
//!   still the stale one, the lock taken as a free one, and read back.
//!
//! A writer that finds the lock held, or loses a race for it, exits 75 and the next run tries
//! again. Should two writers still both believe they hold it, the index's conditional write
//! lets only one of them commit.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use backends::{ErrorKind, Storage, Version, WriteMode, WriteOptions};
use serde::{Deserialize, Serialize};

mod leaseless;
mod staleness;
mod take;

use staleness::staleness;
use take::{Protocol, Taker};

use crate::clock::unix_now;
use crate::error::StorageBusy;
use crate::formats::names::LOCK_NAME;
use crate::process::ProcessIdentity;

/// How long a lock may go unwritten before another host takes it over: far longer than any
/// pause between a live holder's renewals.
pub const LEASE: Duration = Duration::from_secs(6 * 3600);

/// How often a holder rewrites its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(30 * 60);

/// How long a lease written without an exclusive step is left before it is read back.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Lease {
    host: String,
    #[serde(flatten)]
    process: ProcessIdentity,
    /// Unique to one acquisition: tells this writer's lease from any other.
    token: String,
    /// By the holder's clock, for the operators only: no decision reads them.
    taken_at: u64,
    expires_at: u64,
    /// How many times the holder rewrote it.
    #[serde(default)]
    renewed: u64,
}

impl Lease {
    fn new() -> Result<Self> {
        let taken_at = unix_now()?;
        let mut random = [0u8; 8];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
            .context("cannot get random bytes for the storage lock")?;
        Ok(Lease {
            host: shared::host_name(),
            process: ProcessIdentity::current(),
            token: u64::from_le_bytes(random).to_string(),
            taken_at,
            expires_at: taken_at + LEASE.as_secs(),
            renewed: 0,
        })
    }

    fn bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).context("cannot write the storage lock's lease")
    }

    fn describe(&self) -> String {
        format!(
            "host {} (pid {}) since {} (unix time, its clock)",
            self.host, self.process.pid, self.taken_at
        )
    }
}

/// What `oiseau.lock` holds.
enum Found {
    Missing,
    /// There, but no lease can be read from it (being written, or damaged).
    Unreadable(Version),
    Lease(Box<Lease>, Version),
}

/// The storage lock, held; [`StorageLock::release`] frees it.
#[derive(Debug)]
pub struct StorageLock {
    storage: Storage,
    token: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl StorageLock {
    /// Takes the lock on `storage` (at `location`, as the settings name it), taking over a
    /// stale one. A lock held by a live writer, or a race lost, is [`StorageBusy`]. `work_dir`
    /// remembers what the storage's conditional writes do.
    pub async fn acquire(
        storage: &Storage,
        work_dir: &Path,
        location: &str,
    ) -> Result<StorageLock> {
        crate::storage::conditions::verify(storage, work_dir, location).await?;
        let where_to = storage.describe();
        let protocol = if storage.capabilities().exclusive_lock {
            Protocol::Exclusive
        } else {
            tracing::warn!(
                "{where_to} has no exclusive create: the lock is taken by writing the lease and \
                 reading it back {}s later (safe unless two writers start within that time; the \
                 index's checks remain the backstop)",
                SETTLE.as_secs()
            );
            Protocol::ReadBack
        };
        let lease = Lease::new()?;
        let taker = Taker {
            storage,
            protocol,
            lease: &lease,
        };
        let busy = |why: String| -> Result<StorageLock> {
            Err(StorageBusy(format!(
                "{why}; try again once it is done (a scheduled run waits for its next turn)"
            ))
            .into())
        };
        // A second pass only when the lock vanished while it was looked at.
        for pass in 0..2 {
            if taker.take_free().await? {
                leaseless::forget(work_dir);
                return Ok(StorageLock::held(storage, lease));
            }
            let (held, version) = match read_lease(storage).await? {
                Found::Missing if pass == 0 => continue,
                // Taken, yet no lease: on FTP, the lock's folder without its lease.
                Found::Missing => {
                    let folder = backends::ftp::lock_dir(LOCK_NAME);
                    let what = format!("{folder} is on {where_to} without the lease {LOCK_NAME}");
                    if taker
                        .take_leaseless(work_dir, location, "missing", &what)
                        .await?
                    {
                        return Ok(StorageLock::held(storage, lease));
                    }
                    return busy(format!(
                        "another writer took over the lock on {where_to} first"
                    ));
                }
                Found::Unreadable(version) => {
                    let what = format!("{LOCK_NAME} on {where_to} holds no readable lease");
                    let state = format!("unreadable {version:?}");
                    if taker
                        .take_leaseless(work_dir, location, &state, &what)
                        .await?
                    {
                        return Ok(StorageLock::held(storage, lease));
                    }
                    return busy(format!(
                        "another writer took over the lock on {where_to} first"
                    ));
                }
                Found::Lease(held, version) => (held, version),
            };
            leaseless::forget(work_dir);
            // An attempt whose answer was lost took it after all.
            if held.token == lease.token {
                return Ok(StorageLock::held(storage, lease));
            }
            match staleness(storage, &held).await? {
                None => {
                    return busy(format!(
                        "another writer holds the lock on {where_to}: {}",
                        held.describe()
                    ));
                }
                Some(why) => {
                    tracing::warn!(
                        "taking over the lock on {where_to}: {why} ({})",
                        held.describe()
                    );
                    if taker.take_over(&held, version).await? {
                        return Ok(StorageLock::held(storage, lease));
                    }
                    return busy(format!(
                        "another writer took over the stale lock on {where_to} first"
                    ));
                }
            }
        }
        busy(format!(
            "the lock on {where_to} keeps changing hands: other writers are at work"
        ))
    }

    fn held(storage: &Storage, lease: Lease) -> StorageLock {
        tracing::debug!("took the lock on {}", storage.describe());
        StorageLock {
            storage: storage.clone(),
            token: lease.token.clone(),
            renewal: tokio::spawn(renew(storage.clone(), lease)),
        }
    }

    /// Frees the lock, if it is still this writer's. Best effort: a lock that cannot be freed
    /// is taken over by this host's next run, or once it has gone unwritten for [`LEASE`].
    pub async fn release(self) {
        self.renewal.abort();
        let where_to = self.storage.describe();
        match read_lease(&self.storage).await {
            Ok(Found::Lease(held, _)) if held.token == self.token => {
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

/// Rewrites the lease every [`RENEW_EVERY`] while it is still this writer's, so that no other
/// host judges it stale while the holder works.
async fn renew(storage: Storage, mut lease: Lease) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let version = match read_lease(&storage).await {
            Ok(Found::Lease(held, version)) if held.token == lease.token => version,
            Ok(_) => {
                tracing::warn!(
                    "the lock on {} is no longer this run's; it is not renewed",
                    storage.describe()
                );
                return;
            }
            Err(e) => {
                tracing::warn!("cannot renew the lock on {}: {e:#}", storage.describe());
                continue;
            }
        };
        lease.renewed += 1;
        let mode = if storage.capabilities().replace_if_match {
            WriteMode::ReplaceIfUnchanged(version)
        } else {
            WriteMode::Replace
        };
        let written = match lease.bytes() {
            Ok(bytes) => storage
                .write(LOCK_NAME, &bytes, &WriteOptions::hot(mode))
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!("cannot renew the lock on {}: {e:#}", storage.describe());
        }
    }
}

/// What the lock holds now.
async fn read_lease(storage: &Storage) -> Result<Found> {
    match storage.read_small(LOCK_NAME).await {
        Ok((meta, bytes)) => Ok(match serde_json::from_slice(&bytes) {
            Ok(lease) => Found::Lease(Box::new(lease), meta.version_token()),
            Err(_) => Found::Unreadable(meta.version_token()),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Found::Missing),
        Err(e) => Err(e).with_context(|| format!("cannot read the lock on {}", storage.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backends::Driver;
    use backends::memory::MemoryDriver;

    fn foreign_lease() -> Lease {
        Lease {
            host: "another-host".into(),
            ..Lease::new().unwrap()
        }
    }

    async fn plant(storage: &Storage, lease: &Lease) {
        storage
            .write(
                LOCK_NAME,
                &lease.bytes().unwrap(),
                &WriteOptions::hot(WriteMode::Replace),
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_live_lease_of_another_host_is_never_overwritten_even_without_conditions() {
        let work_dir = tempfile::tempdir().unwrap();
        for storage in [
            crate::storage::prepared(MemoryDriver::default()).await,
            crate::storage::prepared(MemoryDriver::ignoring_conditions()).await,
        ] {
            let held = foreign_lease();
            plant(&storage, &held).await;
            let err = StorageLock::acquire(&storage, work_dir.path(), "memory")
                .await
                .unwrap_err();
            assert!(err.is::<StorageBusy>(), "{err:#}");
            let (_, bytes) = storage.read_small(LOCK_NAME).await.unwrap();
            assert_eq!(bytes, held.bytes().unwrap(), "the holder's lease is intact");
        }
    }

    #[tokio::test]
    async fn a_lease_of_a_gone_process_of_this_host_is_taken_over_in_one_conditional_step() {
        let work_dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::prepared(MemoryDriver::default()).await;
        let dead = Lease {
            process: ProcessIdentity {
                start_ticks: Some(1),
                ..ProcessIdentity::current()
            },
            ..Lease::new().unwrap()
        };
        plant(&storage, &dead).await;
        let lock = StorageLock::acquire(&storage, work_dir.path(), "memory")
            .await
            .unwrap();
        let Found::Lease(now, _) = read_lease(&storage).await.unwrap() else {
            panic!("a lease is there");
        };
        assert_eq!(now.token, lock.token);
        lock.release().await;
        assert!(matches!(
            read_lease(&storage).await.unwrap(),
            Found::Missing
        ));
    }

    #[tokio::test]
    async fn taking_over_loses_cleanly_when_the_stale_lease_changed_meanwhile() {
        let without_if_match = MemoryDriver::with_capabilities(backends::Capabilities {
            replace_if_match: false,
            ..MemoryDriver::default().capabilities()
        });
        for storage in [
            crate::storage::prepared(MemoryDriver::default()).await,
            crate::storage::prepared(without_if_match).await,
        ] {
            lose_a_take_over(&storage).await;
        }
    }

    async fn lose_a_take_over(storage: &Storage) {
        let stale = foreign_lease();
        plant(storage, &stale).await;
        let Found::Lease(_, version) = read_lease(storage).await.unwrap() else {
            panic!("a lease is there");
        };
        // Another writer takes it over first.
        let winner = foreign_lease();
        plant(storage, &winner).await;
        let me = Lease::new().unwrap();
        for protocol in [Protocol::Exclusive, Protocol::ReadBack] {
            let taker = Taker {
                storage,
                protocol,
                lease: &me,
            };
            assert!(!taker.take_over(&stale, version.clone()).await.unwrap());
            let (_, bytes) = storage.read_small(LOCK_NAME).await.unwrap();
            assert_eq!(bytes, winner.bytes().unwrap(), "{protocol:?}");
        }
    }
}
