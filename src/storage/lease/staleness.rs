//! Whether a lease's holder is gone, judged without comparing one host's clock with another's:
//! a process of this host by its identity, another host's lease by how long the storage's own
//! clock says the lock went unwritten.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use backends::{Storage, WriteMode, WriteOptions};

use super::{LEASE, LOCK_NAME, Lease};
use crate::formats::names::probe_name;

/// Why `held` is stale, or `None` while its holder may be alive.
pub(super) async fn staleness(storage: &Storage, held: &Lease) -> Result<Option<String>> {
    if held.host == shared::host_name() {
        return Ok(
            (!held.process.is_alive()).then(|| "its process on this host is gone".to_owned())
        );
    }
    let Some(written) = storage.modified(LOCK_NAME).await.ok().flatten() else {
        return Ok(None);
    };
    let now = storage_now(storage).await?;
    let idle = now.duration_since(written).unwrap_or_default();
    Ok((idle >= LEASE).then(|| {
        format!(
            "it has not been written for {} by the storage's clock",
            humantime::format_duration(Duration::from_secs(idle.as_secs()))
        )
    }))
}

/// The storage's clock now: the time it gives an object written just now.
async fn storage_now(storage: &Storage) -> Result<SystemTime> {
    let name = probe_name(&format!("clock-{}", std::process::id()));
    let where_to = storage.describe();
    storage
        .write(&name, b"", &WriteOptions::hot(WriteMode::Replace))
        .await
        .with_context(|| format!("cannot read the clock of {where_to}"))?;
    let now = storage.modified(&name).await;
    if let Err(e) = storage.delete(&name).await {
        tracing::warn!("cannot remove {name} from {where_to}: {e}");
    }
    now.with_context(|| format!("cannot read the clock of {where_to}"))?
        .with_context(|| format!("{where_to} keeps no modification times"))
}
