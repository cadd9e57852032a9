//! What the storage's own records say beside the index: the archives, their manifests and the
//! timestamped index copies. An index that ends before them was truncated or replaced, and
//! adding to it would reuse archive ids; these records are also what it is rebuilt from.

use std::collections::{HashMap, HashSet};

use anyhow::{Result, bail};
use backends::{ObjectMeta, Storage};

use crate::catalog::fetch_manifest;
use crate::catalog::inventory::{Inventory, record_id};
use crate::formats::index::{Index, IndexEntry};
use crate::formats::names::{
    INDEX_NAME, archive_id_of, index_copy_timestamp, manifest_archive, manifest_name,
};

/// How many index copies are read, newest first, to find one that covers the storage.
const COPIES_READ: usize = 5;

/// Fails, naming what to do, when the storage holds records beyond the index: a run would
/// reuse their ids and hide their replays.
pub async fn refuse_if_behind(storage: &Storage, inventory: &Inventory) -> Result<()> {
    let beyond = &inventory.beyond_index;
    let Some(max_id) = beyond.iter().filter_map(|name| record_id(name)).max() else {
        return Ok(());
    };
    let last = inventory.index.last().map_or(0, |entry| entry.archive_id);
    let copy = newest_copy(storage, &inventory.objects, max_id).await?;
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

/// The index copies, newest first: their names, and those that parse.
async fn newest_copies(storage: &Storage, objects: &[ObjectMeta]) -> Vec<(String, Index)> {
    let mut copies: Vec<(u64, &str)> = objects
        .iter()
        .filter_map(|o| index_copy_timestamp(&o.name).map(|stamp| (stamp, o.name.as_str())))
        .collect();
    copies.sort_unstable_by(|a, b| b.cmp(a));
    let mut parsed = Vec::new();
    for (_, name) in copies.into_iter().take(COPIES_READ) {
        if let Ok((_, bytes)) = storage.read_small(name).await
            && let Ok(copy) = Index::parse(bytes)
        {
            parsed.push((name.to_owned(), copy));
        }
    }
    parsed
}

/// The newest index copy (name and parsed) whose last id reaches `at_least`, among the
/// newest few.
async fn newest_copy(
    storage: &Storage,
    objects: &[ObjectMeta],
    at_least: u64,
) -> Result<Option<(String, Index)>> {
    Ok(newest_copies(storage, objects)
        .await
        .into_iter()
        .find(|(_, copy)| copy.last().is_some_and(|last| last.archive_id >= at_least)))
}

/// What the storage's archives and manifests say of each archive id, read once: an index line
/// is checked against it, never believed over it.
struct Evidence<'a> {
    storage: &'a Storage,
    archives: HashMap<u64, Vec<&'a ObjectMeta>>,
    manifests: HashSet<&'a str>,
    /// Per archive id, the largest replay id its (checked) manifest records, once read.
    max_ids: HashMap<u64, Option<u64>>,
}

impl<'a> Evidence<'a> {
    fn new(storage: &'a Storage, objects: &'a [ObjectMeta]) -> Self {
        let mut archives: HashMap<u64, Vec<&ObjectMeta>> = HashMap::new();
        for object in objects {
            if let Some(id) = archive_id_of(&object.name) {
                archives.entry(id).or_default().push(object);
            }
        }
        Evidence {
            storage,
            archives,
            manifests: objects
                .iter()
                .map(|o| o.name.as_str())
                .filter(|name| manifest_archive(name).is_some())
                .collect(),
            max_ids: HashMap::new(),
        }
    }

    /// The largest replay id the manifest of archive `id` records, when one that describes
    /// its archive can be read.
    async fn manifest_max(&mut self, id: u64) -> Option<u64> {
        if let Some(known) = self.max_ids.get(&id) {
            return *known;
        }
        let mut found = None;
        for object in self.archives.get(&id).into_iter().flatten() {
            if !self
                .manifests
                .contains(manifest_name(&object.name).as_str())
            {
                continue;
            }
            match fetch_manifest(self.storage, object, id).await {
                Ok(manifest) => {
                    found = Some(manifest.max_replay_id());
                    break;
                }
                Err(e) => tracing::warn!("{e:#}"),
            }
        }
        self.max_ids.insert(id, found);
        found
    }

    /// What in `index` the archives and manifests contradict, one sentence per line.
    async fn contradictions(&mut self, index: &Index) -> Vec<String> {
        let mut found = Vec::new();
        for entry in index.entries() {
            if !self.archives.contains_key(&entry.archive_id) {
                found.push(format!(
                    "archive {} is on no object of the storage",
                    entry.archive_id
                ));
            } else if let Some(max) = self.manifest_max(entry.archive_id).await
                && max != entry.max_replay_id
            {
                found.push(format!(
                    "archive {}'s line says replays up to {} but its manifest says {max}",
                    entry.archive_id, entry.max_replay_id
                ));
            }
        }
        found
    }
}

/// An index made again from the storage's records.
pub struct Rebuilt {
    /// The index or index copy it starts from: the longest one the archives and manifests do
    /// not contradict (at worst, none).
    pub base: Index,
    /// Lines from the manifests beyond it.
    pub added: Vec<IndexEntry>,
}

/// The index rebuilt from the storage's records: of the current index (when it parses) and the
/// newest index copies, the longest one the archives and manifests do not contradict, its bytes
/// kept (a copy can be wrong: one that names an archive found nowhere, or a wrong max id, is
/// reported and left out); then one line per manifest beyond it, in id order. Stops with an
/// error at a gap in the ids: an archive without a manifest beyond every usable copy cannot be
/// placed.
pub async fn rebuild(
    storage: &Storage,
    objects: &[ObjectMeta],
    current: Option<Index>,
) -> Result<Rebuilt> {
    let mut evidence = Evidence::new(storage, objects);
    let mut candidates: Vec<(String, Index)> = current
        .map(|index| (INDEX_NAME.to_owned(), index))
        .into_iter()
        .collect();
    candidates.extend(newest_copies(storage, objects).await);
    let last_id = |index: &Index| index.last().map_or(0, |entry| entry.archive_id);
    // Nothing at all is never contradicted: the manifests alone are the last resort.
    let mut base = Index::default();
    for (name, candidate) in candidates {
        let contradictions = evidence.contradictions(&candidate).await;
        if !contradictions.is_empty() {
            tracing::warn!(
                "{name} on {} contradicts the storage ({}); it is not rebuilt from",
                storage.describe(),
                crate::report::output::capped(&contradictions, "; ")
            );
        } else if last_id(&candidate) > last_id(&base) {
            base = candidate;
        }
    }
    let mut manifests: Vec<(u64, &str)> = objects
        .iter()
        .filter_map(|o| {
            let id = manifest_archive(&o.name).and_then(archive_id_of)?;
            Some((id, o.name.as_str()))
        })
        .filter(|(id, _)| *id > last_id(&base))
        .collect();
    manifests.sort_unstable();
    manifests.dedup_by_key(|(id, _)| *id);
    let mut added = Vec::new();
    for (next, (id, name)) in (base.next_archive_id()..).zip(manifests) {
        let max_replay_id = match evidence.manifest_max(id).await {
            Some(max) if id == next => max,
            _ => bail!(
                "archive {next} has no manifest that describes it on {} (the next one found is \
                 {name}); the index cannot be rebuilt past archive {}",
                storage.describe(),
                next - 1
            ),
        };
        added.push(IndexEntry {
            archive_id: id,
            max_replay_id,
        });
    }
    Ok(Rebuilt { base, added })
}
