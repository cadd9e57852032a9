//! The archive's way to the storage: planned -> uploaded for a new archive, uploaded while it
//! is packed; packed -> uploaded for an unfinished run's, again from the spool if need be.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use backends::{ErrorKind, ObjectMeta, Source, Storage, WriteOptions};
use indicatif::ProgressBar;

use crate::fault;
use crate::formats::digest::DigestHasher;
use crate::report::progress::{bytes_bar, stacked_bars};
use crate::run::journal::Journal;
use crate::run::journal::Phase;
use crate::run::plan::Plan;
use crate::run::spool::Spool;
use crate::settings::Settings;
use crate::storage::stored_digest;
use crate::units::ByteSize;

/// Packs the plan into a spool file and uploads the archive while it is being written: the
/// upload follows the growing file, and it can give the archive its final name only once the
/// packing is over and the journal that vouches for the archive is on disk. Returns the
/// journal, at [`Phase::Uploaded`], and the spool file.
pub async fn pack_and_upload(
    storage: &Storage,
    settings: &Settings,
    plan: Plan,
) -> Result<(Journal, Spool)> {
    let spool = Spool::prepare(&settings.work_dir, &plan).await?;
    let name = plan.archive_name.clone();
    let estimate = plan.bytes;
    let (source, feed) = Source::growing(spool.path());
    let feed = Arc::new(feed);
    let bars = stacked_bars();
    let pack_bar = bars.add(bytes_bar(plan.bytes, "packing"));
    let upload_bar = bars.add(bytes_bar(plan.bytes, "uploading"));
    // Owns the feed: when packing fails, the feed is dropped here and the upload gives up.
    let packing_into = &spool;
    let packing = async move {
        let packed = packing_into
            .pack(&plan, settings.compression.0, &feed, pack_bar)
            .await?;
        let journal = Journal {
            backend: settings.storage.backend.clone(),
            storage: Some(settings.storage.location()?),
            archive_id: plan.archive_id,
            archive_name: plan.archive_name.clone(),
            timestamp: plan.timestamp,
            archive_size: packed.size,
            digest: packed.digest,
            replays: Journal::replays_from(&plan.replays, &packed.replays),
            phase: Phase::Packed,
        };
        // From here on the journal is the plan; the scan's copy can go.
        drop(plan);
        let journal = save_journal(journal, &settings.work_dir).await?;
        feed.complete(journal.archive_size);
        fault::point("after-pack");
        Ok::<_, anyhow::Error>(journal)
    };
    let uploading = upload_archive(storage, &source, &name, estimate, upload_bar);
    let (packed, uploaded) = tokio::join!(packing, uploading);
    // A failed packing fails the upload too; the packing's error is the one that explains.
    let mut journal = packed?;
    check_uploaded(storage, &journal, &uploaded?)?;
    journal.advance(Phase::Uploaded, &settings.work_dir)?;
    Ok((journal, spool))
}

/// Writes the journal to `work_dir`, fsynced, off the async runtime.
async fn save_journal(journal: Journal, work_dir: &Path) -> Result<Journal> {
    let work_dir = work_dir.to_owned();
    tokio::task::spawn_blocking(move || journal.save(&work_dir).map(|()| journal))
        .await
        .context("the journal's save stopped unexpectedly")?
}

/// Packed -> uploaded, for a resumed run: makes sure the journal's archive is on the storage,
/// whole. Uploads it from the spool (checked against the journal) when it is missing. `false`
/// when it is not there and the spool copy is missing or damaged.
///
/// An object under the archive's name is this run's only if its digest is the journal's: a
/// name appears on the storage only once its bytes are whole, so any other object there is
/// another writer's, and is never deleted.
pub async fn ensure_uploaded(
    storage: &Storage,
    journal: &Journal,
    spool: &Spool,
    work_dir: &Path,
) -> Result<bool> {
    let name = &journal.archive_name;
    let where_to = storage.describe();
    match storage.stat(name).await {
        Ok(meta) => {
            let same = meta.size == journal.archive_size
                && stored_digest(storage, name, journal.digest.hasher()).await? == journal.digest;
            if !same {
                bail!(
                    "{name} on {where_to} is not the archive {} records (another writer's?); \
                     nothing was deleted: check that archive, then remove the journal",
                    Journal::path(work_dir).display()
                );
            }
            tracing::info!("{name} is already on {where_to}");
            return Ok(true);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot reach {where_to}")),
    }
    if !spool.is_intact(journal).await? {
        return Ok(false);
    }
    upload_from_spool(storage, journal, &Source::file(spool.path())).await?;
    Ok(true)
}

/// Uploads the finished spool copy of the journal's archive.
async fn upload_from_spool(storage: &Storage, journal: &Journal, source: &Source) -> Result<()> {
    let bar = bytes_bar(journal.archive_size, "uploading");
    let uploaded = upload_archive(
        storage,
        source,
        &journal.archive_name,
        journal.archive_size,
        bar,
    )
    .await?;
    check_uploaded(storage, journal, &uploaded)
}

/// Uploads an archive, logging its progress against `estimate` (the final size may not be
/// known yet), and returns what the storage holds under its name.
async fn upload_archive(
    storage: &Storage,
    source: &Source,
    name: &str,
    estimate: u64,
    bar: ProgressBar,
) -> Result<ObjectMeta> {
    let where_to = storage.describe();
    tracing::info!("uploading {name} to {where_to}");
    // Logs reach cron's mail and journald where no bar is drawn: a line per quarter.
    let quarters_logged = AtomicU64::new(0);
    let uploaded = storage
        .upload(source, name, &WriteOptions::archive(), &|sent| {
            bar.set_position(sent);
            let quarter = sent * 4 / estimate.max(1);
            if quarter > quarters_logged.fetch_max(quarter, Ordering::Relaxed) && quarter < 4 {
                tracing::info!("uploaded {} of {name}", ByteSize(sent));
            }
            if sent * 2 >= estimate {
                fault::point("mid-upload");
            }
        })
        .await;
    bar.finish_and_clear();
    match uploaded {
        Ok(stored) => Ok(stored),
        // An earlier attempt of the retried upload may have landed after all; or another
        // writer made an archive of that name. Only the same bytes make it ours.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            match landed(storage, name, source).await? {
                Some(stored) => Ok(stored),
                None => Err(e).with_context(|| {
                    format!(
                        "cannot upload {name} to {where_to}: an archive of that name with other \
                     contents is there (another writer's?); nothing was deleted"
                    )
                }),
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot upload {name} to {where_to}")),
    }
}

/// What the storage holds under `name`, if it is byte for byte the finished `source`.
async fn landed(storage: &Storage, name: &str, source: &Source) -> Result<Option<ObjectMeta>> {
    let size = source.len().await?;
    let stored = storage.stat(name).await?;
    if stored.size != size {
        return Ok(None);
    }
    let path = source.path().to_owned();
    let ours = tokio::task::spawn_blocking(move || {
        DigestHasher::blake3().read_from(&mut std::fs::File::open(path)?)
    })
    .await
    .context("the digest of the spool file stopped unexpectedly")?
    .context("cannot read the spool file back")?;
    let theirs = stored_digest(storage, name, DigestHasher::blake3()).await?;
    Ok((theirs == ours).then_some(stored))
}

/// Fails unless the storage holds the journal's archive at its packed size.
fn check_uploaded(storage: &Storage, journal: &Journal, stored: &ObjectMeta) -> Result<()> {
    if stored.size != journal.archive_size {
        bail!(
            "{} is {} bytes on {}, {} were packed; nothing was deleted",
            journal.archive_name,
            stored.size,
            storage.describe(),
            journal.archive_size
        );
    }
    Ok(())
}
