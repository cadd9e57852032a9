//! The storage compared with the index before a run adds to it, under the storage lock.

use anyhow::Result;
use backends::{Storage, partial_owner};

use crate::catalog::Inventory;
use crate::catalog::history::refuse_if_behind;
use crate::process::ProcessIdentity;

/// Refuses to go on when the storage holds archives or manifests beyond the index (it was
/// truncated or replaced: a run would reuse their ids). Removes the partial uploads left by
/// killed runs of this host; another host's are reported and left to it. Reports archives the
/// index lists but the storage lacks.
pub async fn tidy_storage(storage: &Storage, inventory: &Inventory) -> Result<()> {
    refuse_if_behind(storage, inventory).await?;
    let missing = inventory.missing();
    if !missing.is_empty() {
        tracing::warn!(
            "the index lists {} archive{} that {} not on {} (ids {}); the backup continues after \
             them, but their replays cannot be restored from there: check the storage",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            if missing.len() == 1 { "is" } else { "are" },
            storage.describe(),
            crate::report::output::capped(&missing, ", ")
        );
    }
    let this_host = shared::host_name();
    for object in &inventory.objects {
        let Some((host, pid)) = partial_owner(&object.name) else {
            continue;
        };
        let ours = host.as_deref().is_none_or(|host| host == this_host);
        if !ours {
            tracing::warn!(
                "{} is a partial upload of host {}; it is left to that host's next run (remove \
                 it by hand if that host is gone)",
                object.name,
                host.unwrap_or_default()
            );
        } else if pid != std::process::id() && !ProcessIdentity::pid_only(pid).is_alive() {
            tracing::info!(
                "removing {}, a partial upload of an interrupted run",
                object.name
            );
            if let Err(e) = storage.delete(&object.name).await {
                tracing::warn!("cannot remove the partial upload {}: {e}", object.name);
            }
        }
    }
    Ok(())
}
