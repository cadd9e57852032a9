//! `oiseau verify`: is every archive of the index on the storage, with the recorded size, and
//! (`--deep`) intact down to each replay?

use std::io::Read;

use anyhow::{Context, Result, bail};
use backends::{PreflightMode, Storage};

use crate::archive::contents::{Digesting, members, replays};
use crate::archive::ranged::{ReadCounter, failure_reason};
use crate::archive::replay::{ExpectedReplay, read_replay};
use crate::catalog::{Catalog, CatalogEntry, Recorded};
use crate::error::is_try_later;
use crate::formats::access::AccessIndex;
use crate::formats::digest::ReplayHash;
use crate::formats::digest::{ArchiveDigest, DigestHasher};
use crate::formats::manifest::Manifest;
use crate::formats::names::{INDEX_NAME, access_name};
use crate::report::notify::reporters;
use crate::settings::Settings;
use crate::storage::{open_ready, read_for_blocking, warm_up};

/// What `verify` found.
pub struct VerifyReport {
    /// Each archive that failed, with why; strays; what lies beyond the index.
    pub findings: Vec<String>,
    /// What fails the verification, in short.
    problems: Vec<String>,
    checked: usize,
    /// Why nothing was verified, when nothing was.
    nothing: Option<String>,
    /// What was verified, and how deep.
    pub summary: String,
}

impl VerifyReport {
    /// The report in lines: the findings, then the summary when nothing failed.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.findings.clone();
        if self.problems.is_empty() && self.nothing.is_none() {
            lines.push(self.summary.clone());
        }
        lines
    }

    /// An error naming what failed, if anything did.
    pub fn outcome(self) -> Result<()> {
        if let Some(why) = self.nothing {
            bail!("nothing was verified: {why}");
        }
        if !self.problems.is_empty() {
            bail!(
                "{} of {} archives failed verification: {}",
                self.problems.len(),
                self.checked,
                crate::report::output::capped(&self.problems, "; ")
            );
        }
        Ok(())
    }
}

/// Checks the archives of the index (from `since` on); `deep` reads them, whole or, with
/// `sample`, that many replays of each through their ranges. An archive still being restored
/// from a cold class stops the check with "try again later".
pub async fn verify(
    settings: &Settings,
    deep: bool,
    sample: Option<usize>,
    since: Option<u64>,
) -> Result<VerifyReport> {
    let mode = if deep {
        PreflightMode::Prepare
    } else {
        PreflightMode::Inspect
    };
    let storage = open_ready(settings, mode).await?;
    let catalog = Catalog::load(&storage, &settings.work_dir).await?;
    if deep {
        // Cold archives are restored first: this asks, and a later try reads them.
        let checked = catalog
            .archives
            .iter()
            .filter(|a| since.is_none_or(|since| a.archive_id() >= since))
            .filter_map(|a| a.object().map(|o| o.name.as_str()));
        warm_up(&storage, checked, &reporters(settings)).await?;
    }
    let (mut findings, mut problems) = (Vec::new(), Vec::new());
    let mut checked = 0;
    let mut tally = Tally::default();
    let counter = ReadCounter::default();
    let depth = match (deep, sample) {
        (false, _) => Depth::Listing,
        (true, None) => Depth::Whole,
        (true, Some(n)) => Depth::Sample(n),
    };
    for archive in &catalog.archives {
        if since.is_some_and(|since| archive.archive_id() < since) {
            continue;
        }
        checked += 1;
        let label = format!(
            "archive {} ({})",
            archive.archive_id(),
            archive.object().map_or("no such file", |o| o.name.as_str())
        );
        match check(&storage, archive, depth, &counter).await {
            Ok(looked) => {
                tracing::debug!("{label}: ok");
                tally.add(looked);
            }
            // A cold archive awaiting its restore is not a damaged one: come back later.
            Err(e) if is_try_later(&e) => return Err(e.context(label)),
            Err(e) => {
                findings.push(format!("{label}: {}", failure_reason(&e)));
                problems.push(format!("archive {}", archive.archive_id()));
            }
        }
    }
    for stray in &catalog.strays {
        findings.push(format!("{stray}: on the storage but in no index line"));
    }
    if let Some(first) = catalog.beyond_index.first() {
        findings.push(format!(
            "{first}{}: beyond the index's last archive: the index was truncated or replaced; \
             `oiseau index rebuild` rebuilds it",
            match catalog.beyond_index.len() {
                1 => String::new(),
                more => format!(" and {} more", more - 1),
            }
        ));
        problems.push(format!("{INDEX_NAME} ends before {first}"));
    }
    let nothing = (checked == 0).then(|| match since {
        Some(since) => format!("{INDEX_NAME} lists no archive from id {since} on"),
        None => format!("{INDEX_NAME} lists no archive yet"),
    });
    let summary = format!(
        "{checked} archives verified{} on {}",
        match depth {
            Depth::Listing => String::new(),
            Depth::Whole => " (deep: downloaded, hashed and read through)".to_owned(),
            Depth::Sample(n) => format!(
                " (deep: {} replays read from their ranges and hashed, at most {n} per \
                 archive{}; {} bytes read)",
                tally.sampled,
                match tally.whole {
                    0 => String::new(),
                    whole => format!(", {whole} archives without ranges read whole"),
                },
                counter.bytes()
            ),
        },
        storage.describe()
    );
    Ok(VerifyReport {
        findings,
        problems,
        checked,
        nothing,
        summary,
    })
}

/// How far `verify` looks into an archive.
#[derive(Debug, Clone, Copy)]
enum Depth {
    /// Its size on the storage and its manifest.
    Listing,
    /// Read whole: its digest, every replay.
    Whole,
    /// This many replays read from their ranges (format 3 and 4 manifests; others are read whole).
    Sample(usize),
}

/// How an archive that passed was looked at.
enum Looked {
    Listed,
    ReadWhole,
    /// This many of its replays read from their ranges.
    Sampled(usize),
}

/// What a deep verify read, for its last line: it says what was done, not what was asked.
#[derive(Default)]
struct Tally {
    sampled: usize,
    whole: usize,
}

impl Tally {
    fn add(&mut self, looked: Looked) {
        match looked {
            Looked::Listed => {}
            Looked::ReadWhole => self.whole += 1,
            Looked::Sampled(n) => self.sampled += n,
        }
    }
}

async fn check(
    storage: &Storage,
    archive: &CatalogEntry,
    depth: Depth,
    counter: &ReadCounter,
) -> Result<Looked> {
    let Some(object) = archive.object() else {
        bail!("missing from the storage");
    };
    if let Some(why) = &archive.damaged_manifest {
        bail!("its manifest is damaged: {why}");
    }
    if let Some(recorded) = &archive.recorded
        && recorded.head().size != object.size
    {
        bail!(
            "{} bytes on the storage, {} recorded",
            object.size,
            recorded.head().size
        );
    }
    if object.size == 0 {
        bail!("empty on the storage");
    }
    if let Some(access) = archive
        .recorded
        .as_ref()
        .and_then(|r| r.head().access.as_ref())
    {
        check_windows(archive, access, &object.name)?;
    }
    if let Depth::Listing = depth {
        return Ok(Looked::Listed);
    }
    // Read through: the whole manifest of this one archive.
    let manifest = archive
        .recorded
        .as_ref()
        .map(Recorded::manifest)
        .transpose()?;
    if let (Depth::Sample(n), Some(manifest)) = (depth, &manifest)
        && !manifest.recorded_ranges().is_empty()
    {
        return check_sample(storage, &object.name, manifest, n, counter)
            .await
            .map(Looked::Sampled);
    }
    let bridge = counter.counting(read_for_blocking(storage, &object.name).await?);
    let hasher = manifest.as_ref().map(|m| m.digest.hasher());
    let contents = tokio::task::spawn_blocking(move || read_through(bridge, hasher))
        .await
        .context("the check stopped unexpectedly")??;
    let max = contents.replays.iter().map(|(id, _, _)| *id).max();
    let max_in_index = archive.slot.entry.max_replay_id;
    if max != Some(max_in_index) {
        bail!(
            "its largest replay id is {}, the index says {max_in_index}",
            max.map_or("none".into(), |m| m.to_string()),
        );
    }
    if let Some(manifest) = &manifest {
        if contents.digest.as_ref() != Some(&manifest.digest) {
            bail!(
                "its {} differs from the recorded {}",
                contents
                    .digest
                    .as_ref()
                    .map_or_else(|| "digest".to_owned(), ToString::to_string),
                manifest.digest
            );
        }
        if contents.replays != manifest.replays {
            bail!("its replays differ from its manifest");
        }
    }
    Ok(Looked::ReadWhole)
}

/// The access windows an indexed archive of the original tool is read with: there, and whole.
fn check_windows(archive: &CatalogEntry, access: &AccessIndex, name: &str) -> Result<()> {
    let windows = access_name(name);
    let expected = access.windows_size();
    match &archive.slot.windows {
        None => bail!(
            "its access windows {windows} are missing, so its replays are read from its start; \
             `oiseau index legacy --archive {}` writes them again",
            archive.archive_id()
        ),
        Some(found) if found.size != expected => bail!(
            "its access windows {windows} have {} bytes where its manifest's {} points need \
             {expected}; remove them, then `oiseau index legacy --archive {}` writes them again",
            found.size,
            access.points.len(),
            archive.archive_id()
        ),
        Some(_) => Ok(()),
    }
}

/// Reads `n` replays of the archive, spread over it from a random start, each from its own
/// range, and checks each against its recorded size and hash. Every sampled replay is read,
/// so that all the damaged ones are named, whatever the start.
async fn check_sample(
    storage: &Storage,
    archive: &str,
    manifest: &Manifest,
    n: usize,
    counter: &ReadCounter,
) -> Result<usize> {
    let count = manifest.replays.len().min(manifest.recorded_ranges().len());
    if count == 0 {
        return Ok(0);
    }
    let n = n.clamp(1, count);
    let start = usize::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    )
    .unwrap_or(0);
    let mut damaged = Vec::new();
    for k in 0..n {
        let at = (start + k * count / n) % count;
        let (id, size, hash) = manifest.replays[at];
        let recorded = ExpectedReplay {
            id,
            size: Some(size),
            hash: Some(hash),
            seek: manifest.seek(at),
        };
        if let Err(e) = read_replay(storage, archive, recorded, counter, std::io::sink()).await {
            damaged.push(format!("{} ({})", recorded.name(), failure_reason(&e)));
        }
    }
    if !damaged.is_empty() {
        bail!(
            "{} of {n} replays read from their ranges are wrong: {}",
            damaged.len(),
            crate::report::output::capped(&damaged, ", ")
        );
    }
    Ok(n)
}

struct Contents {
    /// Present when a hasher was given.
    digest: Option<ArchiveDigest>,
    replays: Vec<(u64, u64, ReplayHash)>,
}

/// Reads a whole `.tar.gz`: each member's id, size and BLAKE3, and the digest of its bytes
/// with `hasher` (the original tool's archives have no recorded digest to compare with).
fn read_through(reader: impl Read, hasher: Option<DigestHasher>) -> Result<Contents> {
    let mut digesting = Digesting::new(reader, hasher);
    let members = members(flate2::read::MultiGzDecoder::new(&mut digesting))?;
    let digest = digesting.finish().context("cannot read it to the end")?;
    Ok(Contents {
        digest,
        replays: replays(&members),
    })
}
