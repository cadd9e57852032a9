//! The wall clock, as the records oiseau writes keep it.

use anyhow::{Context, Result};
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock as seconds since the epoch.
pub fn unix_now() -> Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}
