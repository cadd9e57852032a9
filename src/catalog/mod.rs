//! What the storage holds, archive by archive: the index lines, the archive each names, and
//! what its manifest records, when oiseau made it. Answers "which archive holds replay N?".
//!
//! Manifests never change once written. Each is fetched once (several at a time on a new
//! host) and kept in `work_dir/catalog` as a table read by seeking ([`table`]), so that memory
//! grows with the number of archives, not of replays: a command holds each manifest's head,
//! and reads a replay's record when it asks for it.

pub mod history;
pub mod inventory;
pub mod table;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use backends::{ByteRange, ErrorKind, ObjectMeta, Storage};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;

pub use inventory::{Inventory, Slot};
use table::{Replay, ReplayTable};

use crate::formats::manifest::Manifest;
use crate::formats::names::manifest_name;

/// Manifests read from the storage at once by a host that has not seen them yet.
const FETCHES_IN_FLIGHT: usize = 8;

/// What a manifest records, as a command reads it.
#[derive(Debug)]
pub enum Recorded {
    /// Kept in `work_dir`, read by seeking (boxed: its head is a whole manifest's).
    Table(Box<ReplayTable>),
    /// Held in memory: `work_dir` could not keep it.
    Parsed(Box<Manifest>),
}

impl Recorded {
    /// The manifest's head: format, archive, size, digest (its replays are not in it).
    pub fn head(&self) -> &Manifest {
        match self {
            Recorded::Table(table) => &table.head,
            Recorded::Parsed(manifest) => manifest,
        }
    }

    /// How many replays the manifest records.
    pub fn count(&self) -> u64 {
        match self {
            Recorded::Table(table) => table.count,
            Recorded::Parsed(manifest) => manifest.replays.len() as u64,
        }
    }

    /// Replay `id`, when the manifest records it.
    pub fn find(&self, id: u64) -> Result<Option<Replay>> {
        match self {
            Recorded::Table(table) => table
                .find(id)
                .with_context(|| format!("cannot read the catalog of {}", table.head.archive_name)),
            Recorded::Parsed(manifest) => {
                Ok(manifest.position_of(id).map(|at| Replay::at(manifest, at)))
            }
        }
    }

    /// The whole manifest, for a command that reads the archive through.
    pub fn manifest(&self) -> Result<Manifest> {
        match self {
            Recorded::Table(table) => table
                .manifest()
                .with_context(|| format!("cannot read the catalog of {}", table.head.archive_name)),
            Recorded::Parsed(manifest) => Ok((**manifest).clone()),
        }
    }
}

/// One archive of the index, as found on the storage.
#[derive(Debug)]
pub struct CatalogEntry {
    pub slot: Slot,
    /// What its manifest records, for archives oiseau made.
    pub recorded: Option<Recorded>,
    /// Why its manifest could not be used (not a manifest, or another archive's): the archive
    /// is then located by the index's id range, and reported.
    pub damaged_manifest: Option<String>,
}

impl CatalogEntry {
    pub fn archive_id(&self) -> u64 {
        self.slot.entry.archive_id
    }

    pub fn object(&self) -> Option<&ObjectMeta> {
        self.slot.object.as_ref()
    }
}

/// Where a replay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Listed in the archive's manifest.
    Exact(Replay),
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
    /// Reads the storage's inventory and what each manifest records (from `work_dir` when it
    /// has it).
    pub async fn load(storage: &Storage, work_dir: &Path) -> Result<Catalog> {
        let inventory = Inventory::read(storage).await?;
        Catalog::of(storage, work_dir, inventory).await
    }

    /// The catalog of `inventory`: each manifest's table opened, or made from the manifest
    /// fetched from the storage when `work_dir` has none of it (or one of another version).
    pub async fn of(storage: &Storage, work_dir: &Path, inventory: Inventory) -> Result<Catalog> {
        let tables = Tables::new(work_dir);
        let mut archives: Vec<CatalogEntry> = inventory
            .slots
            .into_iter()
            .map(|slot| {
                let recorded = tables
                    .open(&slot)
                    .map(|table| Recorded::Table(Box::new(table)));
                CatalogEntry {
                    slot,
                    recorded,
                    damaged_manifest: None,
                }
            })
            .collect();
        let wanted: Vec<usize> = archives
            .iter()
            .enumerate()
            .filter(|(_, a)| a.slot.manifest.is_some() && a.recorded.is_none())
            .map(|(at, _)| at)
            .collect();
        if !wanted.is_empty() {
            let bar = crate::report::progress::count_bar(wanted.len() as u64, "manifests");
            // Fetched a few at a time, each parsed into its table on a blocking thread as it
            // arrives: only the tables' heads are held.
            let fetched: Vec<(usize, Result<Recorded, ManifestError>)> =
                futures_util::stream::iter(wanted.into_iter().map(|at| {
                    let slot = archives[at].slot.clone();
                    let (bar, tables) = (&bar, tables.clone());
                    async move {
                        let object = slot.object.expect("a manifest has its archive");
                        let manifest_size = slot.manifest.map_or(0, |m| m.size);
                        let recorded = match read_manifest(storage, &object).await {
                            Ok(bytes) => {
                                let place = storage.describe();
                                let id = slot.entry.archive_id;
                                tokio::task::spawn_blocking(move || {
                                    parse_manifest(&bytes, &object, id, &place)
                                        .map(|manifest| tables.keep(manifest, manifest_size))
                                })
                                .await
                                .context("reading a manifest stopped unexpectedly")?
                            }
                            Err(e) => Err(e),
                        };
                        bar.inc(1);
                        Ok::<_, anyhow::Error>((at, recorded))
                    }
                }))
                .buffer_unordered(FETCHES_IN_FLIGHT)
                .try_collect()
                .await?;
            bar.finish_and_clear();
            for (at, fetched) in fetched {
                let archive = &mut archives[at];
                match fetched {
                    Ok(recorded) => archive.recorded = Some(recorded),
                    // One damaged manifest makes its archive less exactly known, never the
                    // others.
                    Err(ManifestError::Damaged(why)) => {
                        tracing::warn!(
                            "{why}; archive {} is located by the index's id range instead",
                            archive.archive_id()
                        );
                        archive.damaged_manifest = Some(why);
                    }
                    Err(ManifestError::Unreadable(e)) => return Err(e),
                }
            }
        }
        Ok(Catalog {
            archives,
            strays: inventory.strays,
            beyond_index: inventory.beyond_index,
        })
    }

    /// Every archive holding replay `id`: exactly from manifests, and from the index ranges
    /// for archives without one. A replay archived twice (it changed after it was packed) is
    /// in both.
    pub fn locate(&self, id: u64) -> Result<Vec<(&CatalogEntry, Found)>> {
        let mut found = Vec::new();
        for archive in &self.archives {
            match &archive.recorded {
                Some(recorded) => {
                    if let Some(replay) = recorded.find(id)? {
                        found.push((archive, Found::Exact(replay)));
                    }
                }
                None => {
                    let slot = &archive.slot;
                    if slot.previous_max < id && id <= slot.entry.max_replay_id {
                        found.push((archive, Found::ByRange));
                    }
                }
            }
        }
        Ok(found)
    }
}

/// The tables in `work_dir/catalog`.
#[derive(Clone)]
struct Tables {
    folder: PathBuf,
}

impl Tables {
    fn new(work_dir: &Path) -> Tables {
        Tables {
            folder: work_dir.join("catalog"),
        }
    }

    fn path(&self, archive: &str) -> PathBuf {
        self.folder.join(format!("{archive}.replays"))
    }

    /// The table of the slot's manifest, when one of that very manifest is kept.
    fn open(&self, slot: &Slot) -> Option<ReplayTable> {
        let (object, manifest) = (slot.object.as_ref()?, slot.manifest.as_ref()?);
        let table = ReplayTable::open(&self.path(&object.name)).ok()?;
        (table.manifest_size == manifest.size
            && table
                .head
                .contradicts(object, slot.entry.archive_id)
                .is_none())
        .then_some(table)
    }

    /// Keeps `manifest` as a table, or in memory when `work_dir` cannot keep it (said once).
    fn keep(&self, manifest: Manifest, manifest_size: u64) -> Recorded {
        let kept = std::fs::create_dir_all(&self.folder).and_then(|()| {
            ReplayTable::write(&self.path(&manifest.archive_name), &manifest, manifest_size)
        });
        match kept {
            Ok(table) => Recorded::Table(Box::new(table)),
            Err(e) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    let why = match backends::file_in_the_way(&self.folder) {
                        Some(file) => format!("{} is a file, not a folder", file.display()),
                        None => backends::io_words(&e),
                    };
                    tracing::warn!(
                        "cannot keep the catalog in {}: {why}; manifests are read from the \
                         storage each time",
                        self.folder.display(),
                    );
                });
                Recorded::Parsed(Box::new(manifest))
            }
        }
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

/// The manifest of the archive `object` (index id `archive_id`), read from the storage in one
/// request and checked to describe that archive.
pub async fn fetch_manifest(
    storage: &Storage,
    object: &ObjectMeta,
    archive_id: u64,
) -> Result<Manifest, ManifestError> {
    let bytes = read_manifest(storage, object).await?;
    parse_manifest(&bytes, object, archive_id, &storage.describe())
}

/// The bytes of the manifest of the archive `object`, in one request.
async fn read_manifest(storage: &Storage, object: &ObjectMeta) -> Result<Vec<u8>, ManifestError> {
    let name = manifest_name(&object.name);
    let unreadable = |e: backends::StorageError| {
        ManifestError::Unreadable(if e.kind() == ErrorKind::NotFound {
            anyhow::anyhow!(
                "{name} vanished from {} while being read",
                storage.describe()
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot read {name}"))
        })
    };
    let mut bytes = Vec::new();
    storage
        .read(&name, ByteRange::ALL)
        .await
        .map_err(unreadable)?
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| unreadable(backends::StorageError::from_io(&name, e)))?;
    Ok(bytes)
}

/// A manifest's bytes as the manifest of `object` (index id `archive_id`) on the storage
/// `place`, or why they are not one.
fn parse_manifest(
    bytes: &[u8],
    object: &ObjectMeta,
    archive_id: u64,
    place: &str,
) -> Result<Manifest, ManifestError> {
    let name = manifest_name(&object.name);
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| {
        ManifestError::Damaged(format!("{name} on {place} is not a valid manifest: {e}"))
    })?;
    if let Some(why) = manifest.contradicts(object, archive_id) {
        return Err(ManifestError::Damaged(format!(
            "{name} on {place} does not belong to its archive: {why}"
        )));
    }
    Ok(manifest)
}
