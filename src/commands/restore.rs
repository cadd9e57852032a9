//! `oiseau locate` and `oiseau restore`: the way back from the index to a replay file.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use backends::{PreflightMode, Storage};

use crate::archive::ranged::{ReadCounter, failure_reason, open_tar};
use crate::archive::replay::{ExpectedReplay, LocalWriteFailed, copy_checked, read_replay};
use crate::catalog::{Catalog, CatalogEntry, Found};
use crate::report::notify::reporters;
use crate::settings::Settings;
use crate::storage::{open_ready, warm_up};
use crate::units::ByteSize;

/// The replays wanted from an archive, by name, with what its manifest recorded of each.
type Wanted = BTreeMap<String, ExpectedReplay>;

/// Where replays are: a line per archive holding one, and the ids never archived.
pub struct Located {
    pub lines: Vec<String>,
    pub missing: Vec<u64>,
}

impl Located {
    /// An error naming the ids that were never archived, if any.
    pub fn outcome(self) -> Result<()> {
        if !self.missing.is_empty() {
            bail!(
                "never archived: replay{} {}",
                if self.missing.len() > 1 { "s" } else { "" },
                crate::report::output::capped(&self.missing, ", ")
            );
        }
        Ok(())
    }
}

/// The archive holding each replay.
pub async fn locate(settings: &Settings, ids: &[u64]) -> Result<Located> {
    let storage = open_ready(settings, PreflightMode::Inspect).await?;
    let catalog = Catalog::load(&storage, &settings.work_dir).await?;
    let (mut lines, mut missing) = (Vec::new(), Vec::new());
    for &id in ids {
        let found = catalog.locate(id)?;
        if found.is_empty() {
            missing.push(id);
        }
        for (archive, how) in found {
            lines.push(describe_location(id, archive, how));
        }
    }
    Ok(Located { lines, missing })
}

fn describe_location(id: u64, archive: &CatalogEntry, how: Found) -> String {
    let name = archive
        .object()
        .map_or("(missing from the storage)", |o| o.name.as_str());
    let note = match (how, &archive.damaged_manifest) {
        (Found::Exact(_), _) => "",
        (Found::ByRange, None) => {
            " (by the index's id range: no manifest for this archive; `oiseau index legacy` \
             records one)"
        }
        (Found::ByRange, Some(_)) => {
            " (by the index's id range: this archive's manifest is damaged)"
        }
    };
    format!(
        "replay {id}\tarchive {}\t{name}{note}",
        archive.archive_id()
    )
}

/// Makes the folder replays are restored into, or says in a line why it cannot be one.
fn prepare_destination(to: &Path) -> Result<()> {
    if let Some(file) = backends::file_in_the_way(to) {
        bail!(
            "cannot restore into {}: {} is a file, not a folder; pass --to a folder (it is \
             made if missing)",
            to.display(),
            file.display()
        );
    }
    std::fs::create_dir_all(to).map_err(|e| {
        anyhow::anyhow!(
            "cannot make the folder {}: {}; pass --to a folder this user may write",
            to.display(),
            backends::io_words(&e)
        )
    })
}

/// Fetches the replays `ids` into `to`, each checked against the hash recorded when it was
/// archived: from its own range of its archive where the manifest records one (format 3),
/// else by streaming the archive until every wanted replay of it is out. Every replay that
/// can be restored is; the others are named at the end, and make the command fail.
pub async fn restore(settings: &Settings, ids: &[u64], to: &Path, overwrite: bool) -> Result<()> {
    prepare_destination(to)?;
    let mut failed = Vec::new();
    let mut ids = ids.to_vec();
    ids.retain(|id| {
        let target = to.join(format!("replay_{id}.osr"));
        // A link, even a dangling one, counts: it is never written through.
        let taken = target.symlink_metadata().is_ok() && !overwrite;
        if taken {
            failed.push(format!(
                "replay_{id}.osr ({} already exists; pass --overwrite to replace it)",
                target.display()
            ));
        }
        !taken
    });
    let asked = ids.len() + failed.len();
    if ids.is_empty() {
        bail!(
            "none of the {asked} replays asked for was restored: {}",
            crate::report::output::capped(&failed, ", ")
        );
    }
    // Reading an archive needs the storage awake: on C14 this may start an unarchive.
    let storage = open_ready(settings, PreflightMode::Prepare).await?;
    let catalog = Catalog::load(&storage, &settings.work_dir).await?;

    // Archive name -> replays wanted from it, with their recorded hash when there is one.
    let mut plan: BTreeMap<String, Wanted> = BTreeMap::new();
    let mut missing = Vec::new();
    for &id in &ids {
        let found = catalog.locate(id)?;
        // The latest copy wins: a replay archived twice changed in between.
        let Some((object, how)) = found
            .iter()
            .rev()
            .find_map(|(a, how)| a.object().map(|o| (o, how)))
        else {
            missing.push(id);
            continue;
        };
        let expected = match how {
            Found::Exact(replay) => ExpectedReplay {
                id,
                size: Some(replay.size),
                hash: Some(replay.hash),
                seek: replay.seek,
            },
            Found::ByRange => ExpectedReplay {
                id,
                size: None,
                hash: None,
                seek: None,
            },
        };
        plan.entry(object.name.clone())
            .or_default()
            .insert(expected.name(), expected);
    }
    for id in &missing {
        failed.push(format!(
            "replay_{id}.osr (never archived, or its archive is missing from the storage)"
        ));
    }
    // Cold archives are restored first: this asks, and a later try reads them.
    warm_up(
        &storage,
        plan.keys().map(String::as_str),
        &reporters(settings),
    )
    .await?;
    let damaged: Vec<String> = catalog
        .archives
        .iter()
        .filter(|a| a.damaged_manifest.is_some())
        .filter_map(|a| a.object().map(|o| o.name.clone()))
        .collect();
    let counter = ReadCounter::default();
    for (archive, wanted) in plan {
        let names: Vec<String> = wanted.keys().cloned().collect();
        let extracted =
            match extract_from(&storage, &archive, wanted, to, overwrite, &counter).await {
                Ok(extracted) => extracted,
                // An archive that cannot be read holds back only its own replays.
                Err(e) => {
                    let why = failure_reason(&e);
                    names
                        .into_iter()
                        .map(|name| (name, Err(anyhow::anyhow!("{why}"))))
                        .collect()
                }
            };
        for (name, outcome) in extracted {
            match outcome {
                Ok(checked) => say!(
                    "restored {} from {archive}{}",
                    to.join(&name).display(),
                    if checked {
                        " (hash checked)"
                    } else if damaged.contains(&archive) {
                        " (no recorded hash: the archive's manifest is damaged)"
                    } else {
                        " (no recorded hash: archive made by the original tool; `oiseau index legacy` \
                         records its hashes)"
                    }
                ),
                Err(why) => {
                    say!(
                        "not restored: {name} from {archive}: {}",
                        failure_reason(&why)
                    );
                    failed.push(name);
                }
            }
        }
    }
    say!(
        "read {} bytes ({}) from {}",
        counter.bytes(),
        ByteSize(counter.bytes()),
        storage.describe()
    );
    if !failed.is_empty() {
        bail!(
            "{} of the {} replays asked for could not be restored: {}",
            failed.len(),
            asked,
            crate::report::output::capped(&failed, ", ")
        );
    }
    Ok(())
}

/// What became of each replay wanted from one archive: restored (with whether its hash was
/// checked), or why not.
type Extracted = Vec<(String, Result<bool>)>;

/// Writes the wanted replays of one archive into `to`: each from its own range when every one
/// has a range, else from the archive streamed from its start. An archive that cannot be
/// streamed at all is an error; a damaged or missing replay is reported in its place and the
/// others are still restored.
async fn extract_from(
    storage: &Storage,
    archive: &str,
    wanted: Wanted,
    to: &Path,
    overwrite: bool,
    counter: &ReadCounter,
) -> Result<Extracted> {
    if wanted.values().any(|expected| expected.seek.is_none()) {
        let tar = open_tar(storage, archive, None, counter).await?;
        let (archive, to) = (archive.to_owned(), to.to_owned());
        return tokio::task::spawn_blocking(move || extract(tar, &archive, wanted, &to, overwrite))
            .await
            .context("the extraction stopped unexpectedly")?;
    }
    let mut extracted = Vec::new();
    for (name, expected) in wanted {
        let outcome = async {
            let staging = staging_file(to, &name)?;
            let read = read_replay(storage, archive, expected, counter, staging)
                .await
                .map_err(|e| said_locally(e, to, &name))?;
            place(read.out, read.mtime, to, &name, overwrite)?;
            Ok(read.checked)
        };
        extracted.push((name.clone(), outcome.await));
    }
    Ok(extracted)
}

/// Extracts the wanted members of a tar stream.
fn extract(
    tar: impl Read,
    archive_name: &str,
    mut wanted: Wanted,
    to: &Path,
    overwrite: bool,
) -> Result<Extracted> {
    let mut archive = tar::Archive::new(tar);
    let mut extracted = Vec::new();
    let entries = archive
        .entries()
        .with_context(|| format!("{archive_name} is not a readable .tar.gz"))?;
    let mut broken = None;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                // The stream itself is broken: nothing after this point can be read.
                broken = Some(failure_reason(&anyhow::Error::from(e)));
                break;
            }
        };
        let Ok(name) = entry.path().map(|path| path.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some(expected) = wanted.remove(&name) else {
            continue;
        };
        let outcome = write_replay(&mut entry, &expected, to, overwrite)
            .with_context(|| format!("{archive_name}, member {name}"));
        extracted.push((name, outcome));
        if wanted.is_empty() {
            break;
        }
    }
    for name in wanted.into_keys() {
        let missing = Err(match &broken {
            Some(why) => anyhow::anyhow!("{archive_name} could not be read up to it: {why}"),
            None => anyhow::anyhow!("{archive_name} does not contain it"),
        });
        extracted.push((name, missing));
    }
    Ok(extracted)
}

/// Writes one member as `to/name`, checked against what its manifest recorded; returns whether
/// a recorded hash was checked.
fn write_replay(
    entry: &mut tar::Entry<'_, impl Read>,
    expected: &ExpectedReplay,
    to: &Path,
    overwrite: bool,
) -> Result<bool> {
    let name = expected.name();
    let mut staging = staging_file(to, &name)?;
    copy_checked(entry, expected, &mut staging).map_err(|e| said_locally(e, to, &name))?;
    place(staging, entry.header().mtime().ok(), to, &name, overwrite)?;
    Ok(expected.hash.is_some())
}

/// A new file of a unique name in `to` for replay `name`, created exclusively, so that no
/// symbolic link or existing file in `to` is ever written through; a replay that fails its
/// check leaves nothing behind (the file is removed when dropped).
fn staging_file(to: &Path, name: &str) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".restoring")
        .tempfile_in(to)
        .with_context(|| format!("cannot write into {}", to.display()))
}

/// A failure of the local disk (full, a quota, gone read-only) said as such: never blamed on
/// the archive.
fn said_locally(error: anyhow::Error, to: &Path, name: &str) -> anyhow::Error {
    match error.downcast_ref::<LocalWriteFailed>() {
        Some(local) => anyhow::anyhow!(
            "cannot write {}: {local}; free space in {} or pass another --to",
            to.join(name).display(),
            to.display()
        ),
        None => error,
    }
}

/// Gives a checked replay its name (and its archived time), on disk for good.
fn place(
    staging: tempfile::NamedTempFile,
    mtime: Option<u64>,
    to: &Path,
    name: &str,
    overwrite: bool,
) -> Result<()> {
    staging.as_file().sync_all()?;
    if let Some(mtime) = mtime {
        let _ = staging
            .as_file()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime));
    }
    let target = to.join(name);
    let placed = if overwrite {
        staging.persist(&target).map(drop)
    } else {
        staging.persist_noclobber(&target).map(drop)
    };
    placed.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; pass --overwrite to replace it",
                target.display()
            )
        } else {
            anyhow::Error::new(e.error).context(format!("cannot write {}", target.display()))
        }
    })
}
