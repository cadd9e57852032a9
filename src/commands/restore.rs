//! `oiseau locate` and `oiseau restore`: the way back from the index to a replay file.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use backends::{PreflightMode, Storage};

use crate::catalog::{Catalog, CatalogEntry, Found};
use crate::digest::{ReplayHash, copy_with_blake3};
use crate::notify::reporters;
use crate::pack::ReplayRange;
use crate::ranged::{ReadCounter, failure_reason, open_tar};
use crate::settings::{ByteSize, Settings};
use crate::storage::{open_ready, warm_up};

/// A replay wanted from an archive: its recorded hash and range, when its manifest has them.
type Wanted = BTreeMap<String, (Option<ReplayHash>, Option<ReplayRange>)>;

/// Prints the archive holding each replay; fails naming the ids that were never archived.
pub async fn locate(settings: &Settings, ids: &[u64]) -> Result<()> {
    let storage = open_ready(settings, PreflightMode::Inspect).await?;
    let catalog = Catalog::load(&storage, &settings.work_dir).await?;
    let mut missing = Vec::new();
    for &id in ids {
        let found = catalog.locate(id)?;
        if found.is_empty() {
            missing.push(id);
        }
        for (archive, how) in found {
            say!("{}", describe_location(id, archive, how));
        }
    }
    if !missing.is_empty() {
        bail!(
            "never archived: replay{} {}",
            if missing.len() > 1 { "s" } else { "" },
            crate::output::capped(&missing, ", ")
        );
    }
    Ok(())
}

fn describe_location(id: u64, archive: &CatalogEntry, how: Found) -> String {
    let name = archive
        .object()
        .map_or("(missing from the storage)", |o| o.name.as_str());
    let note = match (how, &archive.damaged_manifest) {
        (Found::Exact(_), _) => "",
        (Found::ByRange, None) => " (by the index's id range: no manifest for this archive)",
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
            crate::output::capped(&failed, ", ")
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
        let name = format!("replay_{id}.osr");
        let recorded = match how {
            Found::Exact(replay) => (Some(replay.hash), replay.range),
            Found::ByRange => (None, None),
        };
        plan.entry(object.name.clone())
            .or_default()
            .insert(name, recorded);
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
                        " (no recorded hash: archive made by the original tool)"
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
            crate::output::capped(&failed, ", ")
        );
    }
    Ok(())
}

/// What became of each replay wanted from one archive: restored (with whether its hash was
/// checked), or why not.
type Extracted = Vec<(String, Result<bool>)>;

/// Writes the wanted replays of one archive into `to`: each from its own range when every one
/// has a range, else from the archive streamed from its start. An archive that cannot be read
/// at all is an error; a damaged or missing replay is reported in its place and the others
/// are still restored.
async fn extract_from(
    storage: &Storage,
    archive: &str,
    wanted: Wanted,
    to: &Path,
    overwrite: bool,
    counter: &ReadCounter,
) -> Result<Extracted> {
    let ranges: Option<Vec<ReplayRange>> = wanted.values().map(|(_, range)| *range).collect();
    let Some(ranges) = ranges else {
        let tar = open_tar(storage, archive, None, counter).await?;
        let hashes = wanted
            .into_iter()
            .map(|(name, (hash, _))| (name, hash))
            .collect();
        return extract_blocking(tar, archive, hashes, to, overwrite).await;
    };
    let mut extracted = Vec::new();
    for ((name, (hash, _)), range) in wanted.into_iter().zip(ranges) {
        let tar = open_tar(storage, archive, Some(range), counter).await?;
        let one = BTreeMap::from([(name, hash)]);
        extracted.extend(extract_blocking(tar, archive, one, to, overwrite).await?);
    }
    Ok(extracted)
}

async fn extract_blocking(
    tar: impl Read + Send + 'static,
    archive: &str,
    wanted: BTreeMap<String, Option<ReplayHash>>,
    to: &Path,
    overwrite: bool,
) -> Result<Extracted> {
    let to = to.to_owned();
    let archive_name = archive.to_owned();
    tokio::task::spawn_blocking(move || extract(tar, &archive_name, wanted, &to, overwrite))
        .await
        .context("the extraction stopped unexpectedly")?
}

/// Extracts the wanted members of a tar stream.
fn extract(
    tar: impl Read,
    archive_name: &str,
    mut wanted: BTreeMap<String, Option<ReplayHash>>,
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
        let outcome = write_replay(&mut entry, &name, expected, to, overwrite)
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

/// Writes one member as `to/name`: into a new file of a unique name (created exclusively, so
/// no symbolic link or existing file in `to` is ever written through), checked against its
/// recorded hash, then given its name; a replay that fails its check leaves nothing behind.
fn write_replay(
    entry: &mut tar::Entry<'_, impl Read>,
    name: &str,
    expected: Option<ReplayHash>,
    to: &Path,
    overwrite: bool,
) -> Result<bool> {
    let mut staging = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".restoring")
        .tempfile_in(to)
        .with_context(|| format!("cannot write into {}", to.display()))?;
    let mut out = WriteFailure::watching(staging.as_file_mut());
    let copied = copy_with_blake3(entry, &mut out);
    if let Some(local) = out.failed {
        // The local disk's doing (full, a quota, gone read-only): never blamed on the archive.
        bail!(
            "cannot write {}: {}; free space in {} or pass another --to",
            to.join(name).display(),
            local,
            to.display()
        );
    }
    let (_, actual) = copied.context("the archive is damaged there")?;
    if let Some(expected) = &expected
        && *expected != actual
    {
        bail!("it does not match its recorded hash: the archive is damaged there");
    }
    staging.as_file().sync_all()?;
    if let Ok(mtime) = entry.header().mtime() {
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
    })?;
    Ok(expected.is_some())
}

/// A writer that remembers its own failure, to tell a full disk from a damaged archive when a
/// copy between the two fails.
struct WriteFailure<W> {
    inner: W,
    /// The first failure, in words.
    failed: Option<String>,
}

impl<W: std::io::Write> WriteFailure<W> {
    fn watching(inner: W) -> Self {
        WriteFailure {
            inner,
            failed: None,
        }
    }

    fn note<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        result.inspect_err(|e| {
            self.failed.get_or_insert_with(|| backends::io_words(e));
        })
    }
}

impl<W: std::io::Write> std::io::Write for WriteFailure<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes);
        self.note(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.inner.flush();
        self.note(flushed)
    }
}
