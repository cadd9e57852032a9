//! `oiseau init`: an empty index on a new storage.

use anyhow::{Context, Result, bail};
use backends::{ErrorKind, PreflightMode, WriteMode, WriteOptions};

use crate::formats::names::INDEX_NAME;
use crate::settings::Settings;
use crate::storage::open_ready;

/// Creates an empty index on a storage that has none. Refuses when one exists: a second
/// `init` on a used storage would restart archive ids and overwrite history.
pub async fn init(settings: &Settings) -> Result<()> {
    let storage = open_ready(settings, PreflightMode::Prepare).await?;
    let where_to = storage.describe();
    match storage.stat(INDEX_NAME).await {
        Ok(meta) => bail!(
            "{where_to} already has {INDEX_NAME} ({} bytes); it is left as it is",
            meta.size
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot reach {where_to}")),
    }
    storage
        .write(INDEX_NAME, b"", &WriteOptions::hot(WriteMode::CreateNew))
        .await
        .with_context(|| format!("cannot create {INDEX_NAME} on {where_to}"))?;
    say!("created an empty {INDEX_NAME} on {where_to}; the first archive will be id 1");
    Ok(())
}
