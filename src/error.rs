//! How a command's outcome becomes an exit code (0 done, 1 failed, 2 bad usage or settings,
//! 75 try again later), and the errors that choose the code.

use backends::{ErrorKind, StorageError};

use crate::settings::SettingsError;

/// The storage or another run is busy; the next scheduled run will carry on (exit 75).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TryLater(pub String);

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
/// EX_TEMPFAIL from sysexits.h: what cron wrappers and systemd treat as "retry later".
pub const EXIT_TRY_LATER: u8 = 75;

/// Whether the error only means "not now": the storage is waking up, an object awaits its
/// restore, or another run holds the lock.
pub fn is_try_later(error: &anyhow::Error) -> bool {
    // A context of its own type is found by `downcast_ref`, not in `chain`.
    error.downcast_ref::<TryLater>().is_some()
        || error.chain().any(|cause| {
            cause.is::<TryLater>()
                || is_another_writer(cause)
                || cause
                    .downcast_ref::<StorageError>()
                    .is_some_and(|e| e.kind() == ErrorKind::NotReady)
        })
}

/// Whether `cause` says another run (here, or on another host) holds a lock.
pub fn is_another_writer(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.is::<LockHeld>() || cause.is::<StorageBusy>()
}

/// The exit code for a command that failed with `error`.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if is_try_later(error) {
        EXIT_TRY_LATER
    } else if error.chain().any(|cause| cause.is::<SettingsError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_race_lost_said_as_context_means_try_later() {
        let lost = StorageError::new(ErrorKind::ConditionFailed, "412");
        let error = anyhow::Error::from(lost)
            .context("cannot write the index")
            .context(TryLater("another writer first".into()));
        assert_eq!(exit_code(&error), EXIT_TRY_LATER);
    }

    #[test]
    fn a_cold_object_anywhere_in_the_chain_means_try_later() {
        let cold = StorageError::new(ErrorKind::NotReady, "restore under way");
        let error = Err::<(), _>(cold)
            .context("cannot read archive 3")
            .unwrap_err();
        assert_eq!(exit_code(&error), EXIT_TRY_LATER);
        let gone = StorageError::not_found("x");
        let error = Err::<(), _>(gone).context("cannot read x").unwrap_err();
        assert_eq!(exit_code(&error), EXIT_FAILED);
        let settings = anyhow::Error::new(SettingsError("bad".into()));
        assert_eq!(exit_code(&settings), EXIT_USAGE);
    }
}

/// Another process holds the lock: try again later (exit 75).
#[derive(Debug, thiserror::Error)]
#[error("another oiseau process{} holds the lock {}; this one stops: try again once it is done (a scheduled run waits for its next turn)", holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default(), path.display())]
pub struct LockHeld {
    pub path: std::path::PathBuf,
    pub holder: Option<u32>,
}

/// Another writer holds the storage, or won the race for it, or the lock is held without a
/// lease that has not yet been judged abandoned: try again later (exit 75).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageBusy(pub String);
