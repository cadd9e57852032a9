//! One reading of what the storage holds, made once per command: the index with the version
//! it was read at, every object, each index line's archive and manifest, and what is outside
//! the index. The run's tidy step, `status`, `verify`, `locate`, `restore` and `serve` read
//! the storage through it, so each problem is found, and said, in one place.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use backends::{ObjectMeta, Storage, Version};

use crate::formats::index::{Index, IndexEntry};
use crate::formats::names::{access_name, archive_id_of, manifest_archive, manifest_name};
use crate::storage::read_index;

/// One line of the index and what the storage holds for it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub entry: IndexEntry,
    /// The largest replay id of the previous line: without a manifest, this archive is taken
    /// to hold the ids above it up to `entry.max_replay_id`.
    pub previous_max: u64,
    /// The archive object, when the storage has one with this id.
    pub object: Option<ObjectMeta>,
    /// Its manifest object, for archives oiseau made or indexed.
    pub manifest: Option<ObjectMeta>,
    /// Its access windows, for archives of the original tool that `oiseau index legacy`
    /// indexed.
    pub windows: Option<ObjectMeta>,
}

#[derive(Debug)]
pub struct Inventory {
    pub index: Index,
    pub version: Version,
    pub objects: Vec<ObjectMeta>,
    pub slots: Vec<Slot>,
    /// Objects that look like archives but are in no index line.
    pub strays: Vec<String>,
    /// Archives and manifests beyond the index's last id: the index was truncated or replaced.
    pub beyond_index: Vec<String>,
}

impl Inventory {
    /// Reads the index, then lists the storage.
    pub async fn read(storage: &Storage) -> Result<Inventory> {
        let (index, version) = read_index(storage).await?;
        let objects = storage
            .list()
            .await
            .with_context(|| format!("cannot list {}", storage.describe()))?;
        Ok(Inventory::of(index, version, objects))
    }

    /// What `objects` hold for each line of `index`.
    pub fn of(index: Index, version: Version, objects: Vec<ObjectMeta>) -> Inventory {
        // Indexed once: a storage of years holds thousands of archives.
        let by_name: HashMap<&str, &ObjectMeta> =
            objects.iter().map(|o| (o.name.as_str(), o)).collect();
        let mut by_id: HashMap<u64, Vec<&ObjectMeta>> = HashMap::new();
        for object in &objects {
            if let Some(id) = archive_id_of(&object.name) {
                by_id.entry(id).or_default().push(object);
            }
        }
        let manifest_of = |archive: &str| by_name.get(manifest_name(archive).as_str()).copied();
        let mut slots = Vec::with_capacity(index.entries().len());
        let mut previous_max = 0;
        for entry in index.entries() {
            let candidates = by_id.get(&entry.archive_id).map_or(&[][..], Vec::as_slice);
            // Prefer the copy that has a manifest: a killed run of the original tool may have
            // left a second archive with the same id.
            let object = candidates
                .iter()
                .find(|o| manifest_of(&o.name).is_some())
                .or(candidates.first())
                .map(|o| (*o).clone());
            let manifest = object.as_ref().and_then(|o| manifest_of(&o.name)).cloned();
            let windows = object
                .as_ref()
                .and_then(|o| by_name.get(access_name(&o.name).as_str()))
                .map(|o| (*o).clone());
            slots.push(Slot {
                entry: *entry,
                previous_max,
                object,
                manifest,
                windows,
            });
            previous_max = entry.max_replay_id;
        }
        let chosen: HashSet<&str> = slots
            .iter()
            .filter_map(|s| s.object.as_ref().map(|o| o.name.as_str()))
            .collect();
        let strays = objects
            .iter()
            .filter(|o| archive_id_of(&o.name).is_some() && !chosen.contains(o.name.as_str()))
            .map(|o| o.name.clone())
            .collect();
        let beyond_index = beyond_index(&objects, &index);
        Inventory {
            index,
            version,
            objects,
            slots,
            strays,
            beyond_index,
        }
    }

    /// The ids of the index's archives the storage does not hold.
    pub fn missing(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|s| s.object.is_none())
            .map(|s| s.entry.archive_id)
            .collect()
    }
}

/// The archive id an archive or a manifest names.
pub fn record_id(name: &str) -> Option<u64> {
    archive_id_of(name).or_else(|| manifest_archive(name).and_then(archive_id_of))
}

/// Archives and manifests whose id is beyond the index's last one, by name.
fn beyond_index(objects: &[ObjectMeta], index: &Index) -> Vec<String> {
    let last = index.last().map_or(0, |entry| entry.archive_id);
    objects
        .iter()
        .filter(|o| record_id(&o.name).is_some_and(|id| id > last))
        .map(|o| o.name.clone())
        .collect()
}
