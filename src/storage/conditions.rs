//! Whether the storage really honours conditional writes, found out rather than assumed. An
//! S3-compatible server may accept `If-None-Match: *` and `If-Match` and ignore them (`rclone
//! serve s3`, several services): relied on there, two writers both "take" the lock and write
//! the same archive id. So before a writer relies on them, a probe checks what the server
//! does; the answer is remembered per storage in `work_dir/capabilities.json` and checked again
//! after [`RECHECK`] (a server can be upgraded, or replaced behind the same address).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use backends::{ConditionsProbed, Storage};
use serde::{Deserialize, Serialize};

use crate::clock::unix_now;
use crate::formats::names::probe_name;

/// How long a probe's answer is trusted.
pub const RECHECK: Duration = Duration::from_secs(7 * 24 * 3600);

const FILE_NAME: &str = "capabilities.json";

/// What was found per storage (its location, as the settings name it).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    storages: BTreeMap<String, Probed>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Probed {
    #[serde(flatten)]
    conditions: ConditionsProbed,
    /// Unix time of the probe, by this host's clock (only ever compared with itself).
    checked_at: u64,
}

fn record_path(work_dir: &Path) -> PathBuf {
    work_dir.join(FILE_NAME)
}

/// Makes `storage` rely on the conditional writes it really honours: the remembered answer
/// while it is fresh, else a new probe (a few small requests), remembered. Nothing to do for a
/// storage whose conditions need no probe.
pub async fn verify(storage: &Storage, work_dir: &Path, location: &str) -> Result<()> {
    if !storage.conditions_need_probe() {
        return Ok(());
    }
    let path = record_path(work_dir);
    // A damaged or unreadable record only costs a new probe.
    let mut record: Record = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let now = unix_now()?;
    if let Some(known) = record.storages.get(location)
        && known.checked_at <= now
        && now - known.checked_at < RECHECK.as_secs()
    {
        storage.trust_conditions(known.conditions);
        return Ok(());
    }
    let conditions = storage
        .probe_conditions(&probe_name(&std::process::id().to_string()))
        .await
        .with_context(|| {
            format!(
                "cannot check how {} handles conditional writes",
                storage.describe()
            )
        })?;
    if !(conditions.create_if_absent && conditions.replace_if_match) {
        tracing::warn!(
            "{} ignores conditional writes (If-None-Match: {}, If-Match: {}): oiseau does not \
             rely on them there; the lock is taken by writing the lease and reading it back",
            storage.describe(),
            honoured(conditions.create_if_absent),
            honoured(conditions.replace_if_match),
        );
    }
    record.storages.insert(
        location.to_owned(),
        Probed {
            conditions,
            checked_at: now,
        },
    );
    let bytes = serde_json::to_vec_pretty(&record)?;
    if let Err(e) = crate::atomic_file::replace(&path, &bytes) {
        tracing::warn!(
            "cannot remember the probe in {}: {e}; the next run probes again",
            path.display()
        );
    }
    storage.trust_conditions(conditions);
    Ok(())
}

fn honoured(yes: bool) -> &'static str {
    if yes { "honoured" } else { "ignored" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backends::memory::MemoryDriver;

    #[tokio::test]
    async fn a_server_that_ignores_conditions_is_found_out_and_remembered() {
        let work_dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::prepared(MemoryDriver::ignoring_conditions()).await;
        assert!(
            !storage.capabilities().atomic_create,
            "not relied on before the probe"
        );
        verify(&storage, work_dir.path(), "memory").await.unwrap();
        let capabilities = storage.capabilities();
        assert!(!capabilities.atomic_create && !capabilities.replace_if_match);
        assert!(!capabilities.exclusive_lock);
        assert!(
            storage.list().await.unwrap().is_empty(),
            "the probe is gone"
        );

        let record = std::fs::read_to_string(record_path(work_dir.path())).unwrap();
        assert!(record.contains("\"create_if_absent\": false"), "{record}");
        // The next command trusts the record without a probe.
        let again = crate::storage::prepared(MemoryDriver::ignoring_conditions()).await;
        verify(&again, work_dir.path(), "memory").await.unwrap();
        assert!(!again.conditions_need_probe());
    }

    #[tokio::test]
    async fn a_server_that_honours_them_keeps_them() {
        let work_dir = tempfile::tempdir().unwrap();
        let honest = MemoryDriver::with_capabilities(backends::Capabilities {
            conditions_need_probe: true,
            ..backends::Capabilities {
                atomic_create: true,
                atomic_replace: true,
                replace_if_match: true,
                exclusive_lock: true,
                ..backends::Capabilities::default()
            }
        });
        let storage = crate::storage::prepared(honest).await;
        verify(&storage, work_dir.path(), "memory").await.unwrap();
        let capabilities = storage.capabilities();
        assert!(capabilities.atomic_create && capabilities.replace_if_match);
        assert!(capabilities.exclusive_lock);
    }
}
