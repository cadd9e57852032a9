//! `oiseau index rebuild`: the index made again from the storage's own records (the newest
//! index copy and the manifests), for an index that was truncated, emptied or replaced.

use anyhow::{Context, Result};
use backends::{ErrorKind, PreflightMode, WriteMode, WriteOptions};

use crate::catalog::history::rebuild;
use crate::formats::index::Index;
use crate::formats::names::INDEX_NAME;
use crate::settings::Settings;
use crate::storage::lease::StorageLock;
use crate::storage::open_ready;

/// Prints the rebuilt index; with `write`, replaces the storage's index with it (under the
/// storage lock, and only if the index did not change meanwhile).
pub async fn rebuild_index(settings: &Settings, write: bool) -> Result<()> {
    let storage = open_ready(settings, PreflightMode::Prepare).await?;
    let where_to = storage.describe();
    let objects = storage
        .list()
        .await
        .with_context(|| format!("cannot list {where_to}"))?;
    let current = match storage.read_small(INDEX_NAME).await {
        Ok((meta, bytes)) => Some((meta, Index::parse(bytes).ok())),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {INDEX_NAME} from {where_to}"));
        }
    };
    let parsed = current.as_ref().and_then(|(_, index)| index.clone());
    let found = rebuild(&storage, &objects, parsed).await?;
    let rebuilt = found.base.appended_all(&found.added);
    crate::report::output::raw(&rebuilt);
    tracing::info!(
        "rebuilt {INDEX_NAME}: {} lines, {} of them from manifests beyond the index copies",
        Index::parse(rebuilt.clone())?.entries().len(),
        found.added.len()
    );
    if !write {
        tracing::info!("nothing was changed; pass --write to replace {INDEX_NAME} on {where_to}");
        return Ok(());
    }
    let mode = match &current {
        Some((meta, _)) => WriteMode::ReplaceIfUnchanged(meta.version_token()),
        None => WriteMode::CreateNew,
    };
    let location = settings.storage.location()?;
    let lock = StorageLock::acquire(&storage, &settings.work_dir, &location).await?;
    let written = storage
        .write(INDEX_NAME, &rebuilt, &WriteOptions::hot(mode))
        .await
        .with_context(|| format!("cannot write {INDEX_NAME} to {where_to}"));
    lock.release().await;
    written?;
    tracing::info!("{INDEX_NAME} on {where_to} replaced");
    Ok(())
}
