//! The spool: `work_dir/spool`, where an archive is packed before and while it is uploaded,
//! and the copy a retry or the next run uploads again until the archive is safe.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use backends::SourceFeed;
use indicatif::ProgressBar;

use crate::archive::gzip::{Level, OnWritten};
use crate::archive::pack::{Packed, pack};
use crate::formats::digest::ArchiveDigest;
use crate::formats::names::archive_id_of;
use crate::run::journal::Journal;
use crate::run::plan::Plan;
use crate::units::ByteSize;

/// Where archives are packed: `work_dir/spool`.
fn spool_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("spool")
}

/// An archive's spool file, `work_dir/spool/<archive>`, owned from its making to its removal.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
}

impl Spool {
    /// The spool file for the plan's archive, in a spool folder cleared of stale files and
    /// with room for the archive. Runs only when no journal is left.
    pub async fn prepare(work_dir: &Path, plan: &Plan) -> Result<Spool> {
        let spool_dir = spool_dir(work_dir);
        let needed = needed_space(plan);
        let path = spool_dir.join(&plan.archive_name);
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&spool_dir).with_context(|| {
                format!("cannot create the spool folder {}", spool_dir.display())
            })?;
            remove_stale_spool_files(&spool_dir);
            ensure_free_space(&spool_dir, needed)
        })
        .await
        .context("the spool's preparation stopped unexpectedly")??;
        Ok(Spool { path })
    }

    /// The spool file of an unfinished run's archive (which may be gone).
    pub fn of(work_dir: &Path, journal: &Journal) -> Spool {
        Spool {
            path: spool_dir(work_dir).join(&journal.archive_name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Packs the plan into the file, reporting each piece written to the feed's readers.
    pub async fn pack(
        &self,
        plan: &Plan,
        level: Level,
        feed: &Arc<SourceFeed>,
        bar: ProgressBar,
    ) -> Result<Packed> {
        let replays = Arc::clone(&plan.replays);
        let progress_bar = bar.clone();
        let on_written: OnWritten = {
            let feed = Arc::clone(feed);
            Box::new(move |pieces, len| feed.appended(pieces, len))
        };
        let out = self.path.clone();
        tracing::info!(
            "packing {} replays ({}) into {}",
            plan.replays.len(),
            ByteSize(plan.bytes),
            plan.archive_name
        );
        let packed = tokio::task::spawn_blocking(move || {
            pack(
                &replays,
                &out,
                level,
                &|done| progress_bar.set_position(done),
                on_written,
            )
        })
        .await
        .context("the packer stopped unexpectedly")??;
        bar.finish_and_clear();
        let left_out = packed
            .replays
            .iter()
            .filter(|replay| replay.is_none())
            .count();
        if left_out > 0 {
            tracing::warn!(
                "{left_out} replays vanished or changed while packing; they stay for the next run"
            );
        }
        tracing::info!(bytes = packed.size, digest = %packed.digest, "packed {}", plan.archive_name);
        Ok(packed)
    }

    /// Whether the file is exactly the archive the journal describes.
    pub async fn is_intact(&self, journal: &Journal) -> Result<bool> {
        let path = self.path.clone();
        let expected_size = journal.archive_size;
        let hasher = journal.digest.hasher();
        let digest =
            tokio::task::spawn_blocking(move || -> std::io::Result<Option<ArchiveDigest>> {
                let mut file = match std::fs::File::open(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                if file.metadata()?.len() != expected_size {
                    return Ok(None);
                }
                hasher.read_from(&mut file).map(Some)
            })
            .await
            .context("the spool check stopped unexpectedly")?
            .with_context(|| format!("cannot read the spool file {}", self.path.display()))?;
        Ok(digest.is_some_and(|digest| digest == journal.digest))
    }

    /// Removes the file (once the archive is safe on the storage, or given up) beside the rest
    /// of the run: removing a large file whose pages are being written back waits for the
    /// disk (4.5 s for 5 GB here), and nothing else depends on it.
    pub fn remove_in_background(self) -> tokio::task::JoinHandle<()> {
        tokio::task::spawn_blocking(move || {
            if let Err(e) = std::fs::remove_file(&self.path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("cannot remove the spool file {}: {e}", self.path.display());
            }
        })
    }
}

/// Spool files that no journal refers to: the replays they held are still in the temp folder
/// (cleaning comes last), so the staging copies can go. Only archives, the names a run packs
/// into, are removed: whatever else lies in the folder is not oiseau's to delete.
fn remove_stale_spool_files(spool_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(spool_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().and_then(archive_id_of).is_none()
            || !entry.file_type().is_ok_and(|kind| kind.is_file())
        {
            continue;
        }
        tracing::info!("removing the stale spool file {}", entry.path().display());
        let _ = std::fs::remove_file(entry.path());
    }
}

/// About what the plan's archive takes: replays barely compress; tar adds a header and
/// padding per file.
fn needed_space(plan: &Plan) -> u64 {
    let replays = u64::try_from(plan.replays.len()).unwrap_or(u64::MAX);
    plan.bytes
        .saturating_add(replays.saturating_mul(1024))
        .saturating_add(1 << 20)
}

/// Fails before packing when the spool's disk cannot hold the archive: a full disk halfway
/// through would waste the packing and could starve whatever else writes there.
fn ensure_free_space(spool_dir: &Path, needed: u64) -> Result<()> {
    let stats = rustix::fs::statvfs(spool_dir)
        .with_context(|| format!("cannot read the free space of {}", spool_dir.display()))?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    if free < needed {
        // Rounded sizes that read the same would not show why one is short of the other.
        let (mut has, mut needs) = (ByteSize(free).to_string(), ByteSize(needed).to_string());
        if has == needs {
            (has, needs) = (format!("{free} bytes"), format!("{needed} bytes"));
        }
        bail!(
            "{} has {has} free but the archive needs about {needs}; free some space or set \
             work_dir to a larger disk",
            spool_dir.display(),
        );
    }
    Ok(())
}
