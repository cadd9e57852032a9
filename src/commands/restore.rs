//! `oiseau locate` and `oiseau restore`: the way back from the index to a replay file.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use backends::{ByteRange, PreflightMode, Storage};
use tokio_util::io::SyncIoBridge;

use crate::catalog::{Catalog, CatalogEntry, Found};
use crate::digest::{ReplayHash, copy_with_blake3};
use crate::settings::Settings;
use crate::storage::open_ready;

/// Prints the archive holding each replay; fails naming the ids that were never archived.
pub async fn locate(settings: &Settings, ids: &[u64]) -> Result<()> {
    let storage = open_ready(settings, PreflightMode::Inspect).await?;
    let catalog = Catalog::load(&storage, &settings.work_dir).await?;
    let mut missing = Vec::new();
    for &id in ids {
        let found = catalog.locate(id);
        if found.is_empty() {
            missing.push(id);
        }
        for (archive, how) in found {
            println!("{}", describe_location(id, archive, how));
        }
    }
    if !missing.is_empty() {
        bail!(
            "never archived: replay{} {}",
            if missing.len() > 1 { "s" } else { "" },
            join(&missing)
        );
    }
    Ok(())
}

fn describe_location(id: u64, archive: &CatalogEntry, how: Found) -> String {
    let name = archive
        .object
        .as_ref()
        .map_or("(missing from the storage)", |o| o.name.as_str());
    let note = match how {
        Found::Exact => "",
        Found::ByRange => " (by the index's id range: no manifest for this archive)",
    };
    format!(
        "replay {id}\tarchive {}\t{name}{note}",
        archive.entry.archive_id
    )
}

/// Fetches the archives holding `ids` and extracts just those replays into `to`, checking
/// each against the hash recorded when it was archived.
pub async fn restore(settings: &Settings, ids: &[u64], to: &Path, overwrite: bool) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for id in ids {
        let target = to.join(format!("replay_{id}.osr"));
        if target.exists() && !overwrite {
            bail!(
                "{} already exists; pass --overwrite to replace it",
                target.display()
            );
        }
    }
    // Reading an archive needs the storage awake: on C14 this may start an unarchive.
    let storage = open_ready(settings, PreflightMode::Prepare).await?;
    let catalog = Catalog::load(&storage, &settings.work_dir).await?;

    // Archive name -> replays wanted from it, with their recorded hash when there is one.
    let mut plan: BTreeMap<String, BTreeMap<String, Option<ReplayHash>>> = BTreeMap::new();
    let mut missing = Vec::new();
    for &id in ids {
        let found = catalog.locate(id);
        // The latest copy wins: a replay archived twice changed in between.
        let Some((archive, _)) = found.iter().rev().find(|(a, _)| a.object.is_some()) else {
            missing.push(id);
            continue;
        };
        let name = format!("replay_{id}.osr");
        let hash = archive.manifest.as_ref().and_then(|m| {
            m.replays
                .iter()
                .find(|(replay_id, _, _)| *replay_id == id)
                .map(|(_, _, hash)| *hash)
        });
        let object = archive.object.as_ref().expect("filtered above");
        plan.entry(object.name.clone())
            .or_default()
            .insert(name, hash);
    }
    if !missing.is_empty() {
        bail!(
            "never archived, or its archive is missing from the storage: {}",
            join(&missing)
        );
    }
    for (archive, wanted) in plan {
        let restored = extract_from(&storage, &archive, wanted, to, overwrite).await?;
        for (name, checked) in restored {
            println!(
                "restored {} from {archive}{}",
                to.join(&name).display(),
                if checked {
                    " (hash checked)"
                } else {
                    " (no recorded hash: archive made by the original tool)"
                }
            );
        }
    }
    Ok(())
}

/// Streams one archive from the storage and writes the wanted members into `to`.
async fn extract_from(
    storage: &Storage,
    archive: &str,
    wanted: BTreeMap<String, Option<ReplayHash>>,
    to: &Path,
    overwrite: bool,
) -> Result<Vec<(String, bool)>> {
    let reader = storage
        .read(archive, ByteRange::ALL)
        .await
        .with_context(|| format!("cannot download {archive} from {}", storage.describe()))?;
    let bridge = SyncIoBridge::new(reader);
    let to = to.to_owned();
    let archive_name = archive.to_owned();
    tokio::task::spawn_blocking(move || extract(bridge, &archive_name, wanted, &to, overwrite))
        .await
        .context("the extraction stopped unexpectedly")?
}

fn extract(
    reader: impl Read,
    archive_name: &str,
    mut wanted: BTreeMap<String, Option<ReplayHash>>,
    to: &Path,
    overwrite: bool,
) -> Result<Vec<(String, bool)>> {
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(reader));
    let mut restored = Vec::new();
    let entries = archive
        .entries()
        .with_context(|| format!("{archive_name} is not a readable .tar.gz"))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{archive_name} is damaged"))?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let Some(expected) = wanted.remove(&name) else {
            continue;
        };
        let target: PathBuf = to.join(&name);
        let staging = to.join(format!(".{name}.restoring"));
        let mut file = std::fs::File::create(&staging)
            .with_context(|| format!("cannot write {}", staging.display()))?;
        let (_, actual) = copy_with_blake3(&mut entry, &mut file)
            .with_context(|| format!("{archive_name} is damaged inside {name}"))?;
        file.sync_all()?;
        if let Ok(mtime) = entry.header().mtime() {
            let _ =
                file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime));
        }
        drop(file);
        if let Some(expected) = &expected
            && *expected != actual
        {
            let _ = std::fs::remove_file(&staging);
            bail!(
                "{name} in {archive_name} does not match its recorded hash: the archive is damaged"
            );
        }
        if target.exists() && !overwrite {
            let _ = std::fs::remove_file(&staging);
            bail!(
                "{} already exists; pass --overwrite to replace it",
                target.display()
            );
        }
        std::fs::rename(&staging, &target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        restored.push((name, expected.is_some()));
        if wanted.is_empty() {
            break;
        }
    }
    if !wanted.is_empty() {
        bail!(
            "{archive_name} does not contain {}",
            wanted.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(restored)
}

fn join(ids: &[u64]) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
