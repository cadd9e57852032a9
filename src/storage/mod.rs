//! The configured storage as the commands use it: opened from the settings, made ready (or
//! "try again later"), and its index read; how its conditional writes are checked, and the
//! lease a writer holds on it.

pub(crate) mod conditions;
pub mod lease;

use anyhow::{Context, Result, anyhow};
use backends::{
    ByteRange, ErrorKind, ObjectReader, PreflightMode, PreparedStorage, Readiness, Storage,
    Unprepared, Version,
};
use tokio_util::io::SyncIoBridge;

use crate::formats::digest::{ArchiveDigest, DigestHasher};

use crate::error::TryLater;
use crate::formats::index::Index;
use crate::formats::names::{INDEX_NAME, archive_id_of};
use crate::report::events::{Event, Reporters};
use crate::settings::{Settings, SettingsError};

/// Opens the configured storage without contacting it.
pub fn open(settings: &Settings) -> Result<Unprepared> {
    backends::open(&settings.storage, settings.bandwidth.0)
        .map_err(|e| SettingsError(format!("storage settings: {e}")).into())
}

/// Prepares the storage; one that is not ready yet means "try again later".
pub async fn ready(storage: &Unprepared, mode: PreflightMode) -> Result<PreparedStorage> {
    let prepared = storage
        .prepare(mode)
        .await
        .with_context(|| format!("preflight of {}", storage.describe()))?;
    match &prepared.readiness {
        Readiness::Ready => Ok(prepared),
        Readiness::Pending(why) => Err(TryLater(why.clone()).into()),
    }
}

/// Opens the configured storage and makes it ready.
pub async fn open_ready(settings: &Settings, mode: PreflightMode) -> Result<Storage> {
    Ok(ready(&open(settings)?, mode).await?.storage)
}

/// Reads and parses the storage's index, with the version it was read at.
///
/// An index that is missing or is no index at all is looked into before it is reported, so
/// that the advice fits the cause: a bucket or folder that does not exist, an endpoint that
/// is not a storage, a storage that holds archives but lost its index, or a new storage.
pub async fn read_index(storage: &Storage) -> Result<(Index, Version)> {
    let (meta, raw) = match storage.read_small(INDEX_NAME).await {
        Ok(read) => read,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(index_missing(storage).await),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read {INDEX_NAME} from {}", storage.describe()));
        }
    };
    match Index::parse(raw) {
        Ok(index) => Ok((index, meta.version_token())),
        Err(damaged) => Err(match storage.list().await {
            Err(listing) => anyhow!(
                "{} answered {INDEX_NAME} but cannot be listed ({listing}); check that the                  storage settings point at the storage itself",
                storage.describe()
            ),
            Ok(_) => anyhow::Error::new(damaged).context(format!("on {}", storage.describe())),
        }),
    }
}

/// Why a storage has no index, found by listing it.
async fn index_missing(storage: &Storage) -> anyhow::Error {
    match storage.list().await {
        Err(listing) => anyhow::Error::new(listing)
            .context(format!("{} has no {INDEX_NAME}", storage.describe())),
        Ok(objects) => match objects
            .iter()
            .filter(|o| archive_id_of(&o.name).is_some())
            .count()
        {
            0 => anyhow!(
                "{} has no {INDEX_NAME}; if this is a new storage, run `oiseau init` first, \
                 otherwise check the storage settings",
                storage.describe()
            ),
            archives => anyhow!(
                "{} holds {archives} archives but no {INDEX_NAME}; run `oiseau index rebuild \
                 --write` to make it again from them",
                storage.describe()
            ),
        },
    }
}

/// A whole object as a blocking reader, for a tar reader or a hasher on a blocking thread.
pub async fn read_for_blocking(
    storage: &Storage,
    name: &str,
) -> Result<SyncIoBridge<ObjectReader>> {
    read_range_for_blocking(storage, name, ByteRange::ALL).await
}

/// A part of an object as a blocking reader.
pub async fn read_range_for_blocking(
    storage: &Storage,
    name: &str,
    range: ByteRange,
) -> Result<SyncIoBridge<ObjectReader>> {
    let reader = storage.read(name, range).await.with_context(|| {
        let part = if range == ByteRange::ALL {
            String::new()
        } else {
            format!("{range} of ")
        };
        format!("cannot read {part}{name} from {}", storage.describe())
    })?;
    Ok(SyncIoBridge::new(reader))
}

/// The digest of an object as the storage holds it, read through: how an archive found under
/// a name is known to be this run's and not another writer's (equal sizes prove nothing).
pub async fn stored_digest(
    storage: &Storage,
    name: &str,
    hasher: DigestHasher,
) -> Result<ArchiveDigest> {
    let mut bridge = read_for_blocking(storage, name).await?;
    tokio::task::spawn_blocking(move || hasher.read_from(&mut bridge))
        .await
        .context("the digest of a stored object stopped unexpectedly")?
        .with_context(|| format!("cannot read {name} back from {}", storage.describe()))
}

/// Makes the archives about to be read readable: a cold archive's restore is requested (once).
/// While any of them is not readable yet, the operators are told and the command is "try again
/// later"; the next try reads them.
pub async fn warm_up<'a>(
    storage: &Storage,
    names: impl IntoIterator<Item = &'a str>,
    reporters: &Reporters,
) -> Result<()> {
    let pending = ask_to_warm_up(storage, names).await?;
    try_later_for_cold(&pending, reporters).await
}

/// Asks for each archive to be made readable; those that are not yet, by name, with why.
pub async fn ask_to_warm_up<'a>(
    storage: &Storage,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<(String, String)>> {
    let mut pending = Vec::new();
    for name in names {
        let readiness = storage.warm_up(name).await.with_context(|| {
            format!(
                "cannot prepare {name} on {} for reading",
                storage.describe()
            )
        })?;
        if let Readiness::Pending(why) = readiness {
            pending.push((name.to_owned(), why));
        }
    }
    Ok(pending)
}

/// "Try again later" for archives still being restored from a cold class (`pending`: each by
/// name, with why, as [`ask_to_warm_up`] gives them), the operators told; nothing when none is.
pub async fn try_later_for_cold(pending: &[(String, String)], reporters: &Reporters) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let detail = format!(
        "{} archive{} in cold storage not readable yet, try again later: {}",
        pending.len(),
        if pending.len() == 1 { "" } else { "s" },
        crate::report::output::capped(pending.iter().map(|(_, why)| why), "; ")
    );
    reporters
        .report(&Event::ArchivesWarmingUp {
            detail: detail.clone(),
        })
        .await;
    Err(TryLater(detail).into())
}

/// A storage over `driver`, prepared, for tests that need no storage settings.
#[cfg(test)]
pub(crate) async fn prepared(driver: impl backends::Driver + 'static) -> Storage {
    Unprepared::new(std::sync::Arc::new(driver))
        .prepare(PreflightMode::Prepare)
        .await
        .expect("an in-memory storage prepares")
        .storage
}
