//! The small commands: `init`, `status`, `config`.

use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use backends::{Preflight, PreflightMode, Storage, StorageError, WriteMode};

use crate::index::INDEX_NAME;
use crate::run::read_index;
use crate::settings::{ByteSize, Settings, SettingsError};
use crate::{TryLater, lock, scan};

/// Opens the configured storage and runs its preflight; a storage that is not ready yet means
/// "try again later".
pub async fn ready_storage(settings: &Settings, mode: PreflightMode) -> Result<Box<dyn Storage>> {
    let mut storage = backends::open(&settings.storage)
        .map_err(|e| SettingsError(format!("storage settings: {e}")))?;
    let where_to = storage.describe();
    match storage
        .preflight(mode)
        .await
        .with_context(|| format!("preflight of {where_to}"))?
    {
        Preflight::Ready => Ok(storage),
        Preflight::Pending(why) => Err(TryLater(why).into()),
    }
}

/// Creates an empty index on a storage that has none. Refuses when one exists: a second
/// `init` on a used storage would restart archive ids and overwrite history.
pub async fn init(settings: &Settings) -> Result<()> {
    let storage = ready_storage(settings, PreflightMode::Prepare).await?;
    let where_to = storage.describe();
    match storage.stat(INDEX_NAME).await {
        Ok(meta) => bail!(
            "{where_to} already has {INDEX_NAME} ({} bytes); it is left as it is",
            meta.size
        ),
        Err(StorageError::NotFound { .. }) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot reach {where_to}")),
    }
    storage
        .write(INDEX_NAME, b"", WriteMode::CreateNew)
        .await
        .with_context(|| format!("cannot create {INDEX_NAME} on {where_to}"))?;
    println!("created an empty {INDEX_NAME} on {where_to}; the first archive will be id 1");
    Ok(())
}

/// Prints where the backup stands. Fails (exit 1) when the storage cannot be read, so a
/// monitoring check can run it as is.
pub async fn status(settings: &Settings) -> Result<()> {
    let scan = scan::scan(&settings.temp_dir, settings.min_age, SystemTime::now())?;
    let bytes = scan.total_bytes();
    println!(
        "temp folder {}: {} replays, {} of {} threshold ({}%); {} too young, {} other entries",
        settings.temp_dir.display(),
        scan.replays.len(),
        ByteSize(bytes),
        settings.threshold,
        bytes * 100 / settings.threshold.0,
        scan.too_young,
        scan.ignored
    );
    match lock::holder(&settings.work_dir) {
        Some(pid) => println!("a run is in progress (pid {pid})"),
        None => println!("no run in progress"),
    }
    let storage = ready_storage(settings, PreflightMode::Inspect).await?;
    let index = read_index(storage.as_ref()).await?;
    match index.last() {
        Some(last) => println!(
            "{}: reachable; {INDEX_NAME} lists {} archives, last line `{last}`",
            storage.describe(),
            index.entries().len()
        ),
        None => println!(
            "{}: reachable; {INDEX_NAME} is empty, no archive yet",
            storage.describe()
        ),
    }
    Ok(())
}
