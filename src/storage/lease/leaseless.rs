//! A lock taken without a readable lease: the FTP folder `oiseau.lock.d` without
//! `oiseau.lock` (a run stopped, or its answer was lost, between the two), or a lease that does
//! not parse. Nobody can say whose it is, so it cannot be judged by its holder; left alone, it
//! would keep every writer out for good.
//!
//! A writer taking the lock goes through that state for a moment only, so the lock is judged
//! abandoned once this host's runs have seen it in the very same state for
//! [`ABANDONED_AFTER`], each sighting no more than that apart (a later, different writer's
//! moment is never mistaken for the old one). Both times are this host's clock: nothing is
//! compared with another host's.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a lock must stay without a readable lease before it is taken over: far longer
/// than a writer takes between taking the lock and writing its lease, retries included.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(15 * 60);

/// Where this host's runs remember the lock they found without a lease.
const SIGHTING_NAME: &str = "lock-without-lease.json";

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Sighting {
    /// The storage, as the settings name it.
    location: String,
    /// What was found: which object, and its version when it has one.
    state: String,
    /// Unix times, this host's clock.
    first_seen: u64,
    last_seen: u64,
}

/// What to do with a lock found without a lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Seen so for this long only: wait.
    Wait(Duration),
    /// Seen so for this long: take it over.
    Abandoned(Duration),
}

/// Records that the lock on `location` was found without a lease in `state` at `now`, and
/// judges it.
pub fn judge(work_dir: &Path, location: &str, state: &str, now: u64) -> Verdict {
    let path = work_dir.join(SIGHTING_NAME);
    let earlier: Option<Sighting> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let first_seen = match earlier {
        Some(seen)
            if seen.location == location
                && seen.state == state
                && now.saturating_sub(seen.last_seen) <= ABANDONED_AFTER.as_secs() =>
        {
            seen.first_seen
        }
        _ => now,
    };
    let sighting = Sighting {
        location: location.to_owned(),
        state: state.to_owned(),
        first_seen,
        last_seen: now,
    };
    let saved = serde_json::to_vec(&sighting)
        .map_err(std::io::Error::other)
        .and_then(|json| crate::atomic_file::replace(&path, &json));
    if let Err(e) = saved {
        // Unremembered, the lock is judged afresh by the next run: it waits longer, no more.
        tracing::warn!("cannot write {}: {e}", path.display());
    }
    let seen_for = Duration::from_secs(now.saturating_sub(first_seen));
    if seen_for >= ABANDONED_AFTER {
        Verdict::Abandoned(seen_for)
    } else {
        Verdict::Wait(seen_for)
    }
}

/// Forgets the sighting: the lock was found free, or with a lease.
pub fn forget(work_dir: &Path) {
    let _ = std::fs::remove_file(work_dir.join(SIGHTING_NAME));
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: u64 = ABANDONED_AFTER.as_secs();

    #[test]
    fn abandoned_only_when_seen_the_same_all_along() {
        let dir = tempfile::tempdir().unwrap();
        let at = |now| judge(dir.path(), "ftp://host/", "missing", now);
        assert_eq!(at(1000), Verdict::Wait(Duration::ZERO));
        assert_eq!(
            at(1000 + BOUND / 2),
            Verdict::Wait(Duration::from_secs(BOUND / 2))
        );
        assert_eq!(
            at(1000 + BOUND),
            Verdict::Abandoned(Duration::from_secs(BOUND))
        );

        // Another state, or a sighting too long after the last: counted afresh.
        forget(dir.path());
        assert_eq!(at(5000), Verdict::Wait(Duration::ZERO));
        assert_eq!(
            judge(dir.path(), "ftp://host/", "unreadable \"v2\"", 5000 + BOUND),
            Verdict::Wait(Duration::ZERO)
        );
        assert_eq!(
            judge(
                dir.path(),
                "ftp://host/",
                "unreadable \"v2\"",
                5000 + 3 * BOUND
            ),
            Verdict::Wait(Duration::ZERO)
        );
    }
}
