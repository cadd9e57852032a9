//! The storage compared with the index before a run adds to it.

use std::collections::HashSet;

use anyhow::{Context, Result};
use backends::Storage;

use crate::events::{Event, Reporters};
use crate::index::Index;
use crate::layout::{archive_id_of, is_partial};

/// Partial uploads left by killed runs are removed (they never carry a final name); archives
/// the index lists but the storage lacks, and archives beyond the index's last id that no
/// journal vouches for, are reported for the operators to look at, and left alone.
pub async fn tidy_storage(storage: &Storage, index: &Index, reporters: &Reporters) -> Result<()> {
    let objects = storage
        .list()
        .await
        .with_context(|| format!("cannot list {}", storage.describe()))?;
    let last_id = index.last().map_or(0, |entry| entry.archive_id);
    let stored_ids: HashSet<u64> = objects
        .iter()
        .filter_map(|o| archive_id_of(&o.name))
        .collect();
    let missing: Vec<u64> = index
        .entries()
        .iter()
        .map(|entry| entry.archive_id)
        .filter(|id| !stored_ids.contains(id))
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            "the index lists {} archives that are not on {} (ids {}); the backup continues \
             after them, but those replays may be gone: check with the original tool's records",
            missing.len(),
            storage.describe(),
            missing
                .iter()
                .take(20)
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut unlisted = Vec::new();
    for object in &objects {
        if is_partial(&object.name) {
            tracing::info!(
                "removing {}, a partial upload of an interrupted run",
                object.name
            );
            if let Err(e) = storage.delete(&object.name).await {
                tracing::warn!("cannot remove the partial upload {}: {e}", object.name);
            }
        } else if let Some(id) = archive_id_of(&object.name)
            && id > last_id
        {
            tracing::warn!(
                "{} is on {} but the index ends at archive {last_id}; it is not part of the \
                 backup and is left alone: check it, then delete it or restore its replays",
                object.name,
                storage.describe()
            );
            unlisted.push(object.name.clone());
        }
    }
    if !unlisted.is_empty() {
        reporters
            .report(&Event::UnlistedArchives { names: unlisted })
            .await;
    }
    Ok(())
}
