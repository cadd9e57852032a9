//! What the storage holds, archive by archive: the index lines, the archive each names, and
//! its manifest when oiseau made it. Answers "which archive holds replay N?".
//!
//! Manifests never change once written, so each is fetched once and kept in
//! `work_dir/manifests`; a later `locate` reads them from there.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use backends::{ErrorKind, ObjectMeta, Storage};

use crate::history::beyond_index;
use crate::index::IndexEntry;
use crate::layout::{archive_id_of, manifest_name};
use crate::manifest::Manifest;
use crate::storage::read_index;

/// One archive of the index, as found on the storage.
#[derive(Debug)]
pub struct CatalogEntry {
    pub entry: IndexEntry,
    /// The largest replay id of the previous archive: without a manifest, this archive is
    /// taken to hold the ids above it up to `entry.max_replay_id`.
    pub previous_max: u64,
    /// The archive object, when the storage has one with this id.
    pub object: Option<ObjectMeta>,
    /// Its manifest, for archives oiseau made.
    pub manifest: Option<Manifest>,
    /// Why its manifest could not be used (unreadable, not a manifest): the archive is then
    /// located by the index's id range, and reported.
    pub damaged_manifest: Option<String>,
}

/// Where a replay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Listed in the archive's manifest.
    Exact,
    /// Inside the archive's id range of the index (the original tool's archives).
    ByRange,
}

#[derive(Debug)]
pub struct Catalog {
    pub archives: Vec<CatalogEntry>,
    /// Objects on the storage that look like archives but are in no index line.
    pub strays: Vec<String>,
    /// Archives and manifests beyond the index's last id: the index was truncated or replaced.
    pub beyond_index: Vec<String>,
}

impl Catalog {
    /// Reads the index, lists the storage and loads every manifest (from the cache when it
    /// has it).
    pub async fn load(storage: &Storage, work_dir: &Path) -> Result<Catalog> {
        let (index, _) = read_index(storage).await?;
        let objects = storage
            .list()
            .await
            .with_context(|| format!("cannot list {}", storage.describe()))?;
        let cache = work_dir.join("manifests");
        // Indexed once: a storage of years holds thousands of archives.
        let names: HashSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
        let mut by_id: HashMap<u64, Vec<&ObjectMeta>> = HashMap::new();
        for object in &objects {
            if let Some(id) = archive_id_of(&object.name) {
                by_id.entry(id).or_default().push(object);
            }
        }
        let has_manifest = |archive: &str| names.contains(manifest_name(archive).as_str());
        let mut archives = Vec::with_capacity(index.entries().len());
        let mut previous_max = 0;
        for entry in index.entries() {
            let candidates = by_id.get(&entry.archive_id).map_or(&[][..], Vec::as_slice);
            // Prefer the copy that has a manifest: a killed run of the original tool may have
            // left a second archive with the same id.
            let object = candidates
                .iter()
                .find(|o| has_manifest(&o.name))
                .or(candidates.first())
                .map(|o| (*o).clone());
            let (manifest, damaged_manifest) = match &object {
                // One damaged manifest makes its archive less exactly known, never the others.
                Some(o) if has_manifest(&o.name) => {
                    match fetch_manifest(storage, &cache, o, entry.archive_id).await {
                        Ok(manifest) => (Some(manifest), None),
                        Err(ManifestError::Damaged(why)) => {
                            tracing::warn!(
                                "{why}; archive {} is located by the index's id range instead",
                                entry.archive_id
                            );
                            (None, Some(why))
                        }
                        Err(ManifestError::Unreadable(e)) => return Err(e),
                    }
                }
                _ => (None, None),
            };
            archives.push(CatalogEntry {
                entry: *entry,
                previous_max,
                object,
                manifest,
                damaged_manifest,
            });
            previous_max = entry.max_replay_id;
        }
        let chosen: HashSet<&str> = archives
            .iter()
            .filter_map(|a| a.object.as_ref().map(|o| o.name.as_str()))
            .collect();
        let strays = objects
            .iter()
            .filter(|o| archive_id_of(&o.name).is_some() && !chosen.contains(o.name.as_str()))
            .map(|o| o.name.clone())
            .collect();
        Ok(Catalog {
            archives,
            strays,
            beyond_index: beyond_index(&objects, &index),
        })
    }

    /// Every archive holding replay `id`: exactly from manifests, and from the index ranges
    /// for archives without one. A replay archived twice (it changed after it was packed) is
    /// in both.
    pub fn locate(&self, id: u64) -> Vec<(&CatalogEntry, Found)> {
        self.archives
            .iter()
            .filter_map(|archive| match &archive.manifest {
                Some(manifest) => manifest
                    .replays
                    .iter()
                    .any(|(replay_id, _, _)| *replay_id == id)
                    .then_some((archive, Found::Exact)),
                None => (archive.previous_max < id && id <= archive.entry.max_replay_id)
                    .then_some((archive, Found::ByRange)),
            })
            .collect()
    }
}

/// Why a manifest gave no answer: only [`ManifestError::Damaged`] says something of the
/// manifest itself; a storage that could not be read says nothing of it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not a manifest, or one that describes another archive.
    #[error("{0}")]
    Damaged(String),
    /// The storage did not give it.
    #[error(transparent)]
    Unreadable(anyhow::Error),
}

/// The manifest of the archive `object` (index id `archive_id`), from the cache or from the
/// storage (and then cached, best effort: a full or read-only `work_dir` costs a download the
/// next time, and is no reason to doubt the manifest).
pub async fn fetch_manifest(
    storage: &Storage,
    cache: &Path,
    object: &ObjectMeta,
    archive_id: u64,
) -> Result<Manifest, ManifestError> {
    let name = manifest_name(&object.name);
    let cached: PathBuf = cache.join(&name);
    if let Ok(bytes) = std::fs::read(&cached)
        && let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes)
        && manifest.contradicts(object, archive_id).is_none()
    {
        return Ok(manifest);
    }
    let bytes = match storage.read_small(&name).await {
        Ok((_, bytes)) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(ManifestError::Unreadable(anyhow::anyhow!(
                "{name} vanished from {} while being read",
                storage.describe()
            )));
        }
        Err(e) => {
            return Err(ManifestError::Unreadable(
                anyhow::Error::new(e).context(format!("cannot read {name}")),
            ));
        }
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        ManifestError::Damaged(format!(
            "{name} on {} is not a valid manifest: {e}",
            storage.describe()
        ))
    })?;
    if let Some(why) = manifest.contradicts(object, archive_id) {
        return Err(ManifestError::Damaged(format!(
            "{name} on {} does not belong to its archive: {why}",
            storage.describe()
        )));
    }
    if let Err(e) = cache_manifest(cache, &name, &bytes) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!(
                "cannot keep manifests in {}: {}; they are read from the storage each time",
                cache.display(),
                backends::io_words(&e)
            );
        });
    }
    Ok(manifest)
}

fn cache_manifest(cache: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(cache)?;
    let staging = cache.join(format!("{name}.tmp"));
    std::fs::write(&staging, bytes)
        .and_then(|()| std::fs::rename(&staging, cache.join(name)))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&staging);
        })
}
