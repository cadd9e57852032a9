//! What the storage's own records say beside the index: the archives, their manifests and the
//! timestamped index copies. An index that ends before them was truncated or replaced, and
//! adding to it would reuse archive ids; these records are also what it is rebuilt from.

use anyhow::{Context, Result, bail};
use backends::{ObjectMeta, Storage};

use crate::index::{Index, IndexEntry};
use crate::layout::{INDEX_NAME, archive_id_of, index_copy_timestamp, manifest_archive};
use crate::manifest::Manifest;

/// How many index copies are read, newest first, to find one that covers the storage.
const COPIES_READ: usize = 5;

/// The archive id an archive or a manifest names.
fn record_id(name: &str) -> Option<u64> {
    archive_id_of(name).or_else(|| manifest_archive(name).and_then(archive_id_of))
}

/// Archives and manifests whose id is beyond the index's last one, by name.
pub fn beyond_index(objects: &[ObjectMeta], index: &Index) -> Vec<String> {
    let last = index.last().map_or(0, |entry| entry.archive_id);
    objects
        .iter()
        .filter(|o| record_id(&o.name).is_some_and(|id| id > last))
        .map(|o| o.name.clone())
        .collect()
}

/// Fails, naming what to do, when the storage holds records beyond the index: a run would
/// reuse their ids and hide their replays.
pub async fn refuse_if_behind(
    storage: &Storage,
    objects: &[ObjectMeta],
    index: &Index,
) -> Result<()> {
    let beyond = beyond_index(objects, index);
    let Some(max_id) = beyond.iter().filter_map(|name| record_id(name)).max() else {
        return Ok(());
    };
    let last = index.last().map_or(0, |entry| entry.archive_id);
    let copy = newest_copy(storage, objects, max_id).await?;
    bail!(
        "{INDEX_NAME} on {} ends at archive {last} but the storage holds archives up to {max_id} \
         ({}): the index was truncated or replaced, and a run now would reuse their ids. {}; \
         nothing was archived or deleted",
        storage.describe(),
        beyond
            .iter()
            .take(4)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        match copy {
            Some((name, _)) => format!(
                "Put back {name} (the newest index copy, which lists them) as {INDEX_NAME}, or run \
                 `oiseau index rebuild`"
            ),
            None => "Run `oiseau index rebuild` to rebuild it from the manifests".to_owned(),
        }
    );
}

/// The newest index copy (name and parsed) whose last id reaches `at_least`, among the
/// newest few.
async fn newest_copy(
    storage: &Storage,
    objects: &[ObjectMeta],
    at_least: u64,
) -> Result<Option<(String, Index)>> {
    let mut copies: Vec<(u64, &str)> = objects
        .iter()
        .filter_map(|o| index_copy_timestamp(&o.name).map(|stamp| (stamp, o.name.as_str())))
        .collect();
    copies.sort_unstable_by(|a, b| b.cmp(a));
    for (_, name) in copies.into_iter().take(COPIES_READ) {
        let Ok((_, bytes)) = storage.read_small(name).await else {
            continue;
        };
        if let Ok(copy) = Index::parse(bytes)
            && copy.last().is_some_and(|last| last.archive_id >= at_least)
        {
            return Ok(Some((name.to_owned(), copy)));
        }
    }
    Ok(None)
}

/// The index rebuilt from the storage's records: the longer of the current index (when it
/// parses) and the newest index copy, its bytes kept, then one line per manifest beyond it,
/// in id order. Stops with an error at a gap in the ids: an archive without a manifest beyond
/// every copy cannot be placed.
pub async fn rebuild(
    storage: &Storage,
    objects: &[ObjectMeta],
    current: Option<Index>,
) -> Result<(Index, Vec<IndexEntry>)> {
    let copy = newest_copy(storage, objects, 0)
        .await?
        .map(|(_, copy)| copy);
    let base = match (current, copy) {
        (Some(current), Some(copy)) => {
            let id = |index: &Index| index.last().map_or(0, |entry| entry.archive_id);
            if id(&copy) > id(&current) {
                copy
            } else {
                current
            }
        }
        (current, copy) => current.or(copy).unwrap_or_default(),
    };
    let mut manifests: Vec<(u64, &str)> = objects
        .iter()
        .filter_map(|o| {
            let id = manifest_archive(&o.name).and_then(archive_id_of)?;
            Some((id, o.name.as_str()))
        })
        .filter(|(id, _)| *id > base.last().map_or(0, |entry| entry.archive_id))
        .collect();
    manifests.sort_unstable();
    let mut added = Vec::new();
    for (next, (id, name)) in (base.next_archive_id()..).zip(manifests) {
        if id != next {
            bail!(
                "archive {next} has no manifest on {} (the next one found is {name}); the index \
                 cannot be rebuilt past archive {}",
                storage.describe(),
                next - 1
            );
        }
        let (_, bytes) = storage
            .read_small(name)
            .await
            .with_context(|| format!("cannot read {name}"))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{name} is not a valid manifest"))?;
        let max_replay_id = manifest
            .replays
            .iter()
            .map(|(id, _, _)| *id)
            .max()
            .unwrap_or(0);
        added.push(IndexEntry {
            archive_id: id,
            max_replay_id,
        });
    }
    Ok((base, added))
}
