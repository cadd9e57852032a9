//! What a run is about to do: the scan of the temp folder, the threshold, and the archive the
//! replays go into.

use std::sync::Arc;

use anyhow::Result;

use crate::clock::unix_now;
use crate::formats::index::Index;
use crate::formats::names::archive_name;
use crate::settings::Settings;
use crate::temp_folder::{Replay, Scan, scan_now};
use crate::units::ByteSize;

/// The archive a run is about to make.
#[derive(Debug)]
pub struct Plan {
    pub archive_id: u64,
    pub archive_name: String,
    /// Shared with the packer's thread rather than copied: a batch can be 100,000 replays.
    pub replays: Arc<Vec<Replay>>,
    pub bytes: u64,
    /// Seconds since the epoch; shared by the archive and the index copy of one run.
    pub timestamp: u64,
}

impl Plan {
    /// The next archive after `index`, holding every replay of the scan.
    pub fn new(index: &Index, scan: Scan) -> Result<Self> {
        let timestamp = unix_now()?;
        let archive_id = index.next_archive_id();
        Ok(Plan {
            archive_id,
            archive_name: archive_name(timestamp, archive_id),
            bytes: scan.total_bytes(),
            replays: Arc::new(scan.replays),
            timestamp,
        })
    }
}

/// How many replays that cannot be archived a run names in its log.
const STUCK_NAMED: usize = 20;

/// Scans the temp folder (off the async runtime: a folder can hold 100,000 files) and logs
/// what it found.
pub async fn scan_temp_folder(settings: &Settings) -> Result<Scan> {
    let scan = scan_now(&settings.temp_dir, settings.min_age).await?;
    tracing::info!(
        replays = scan.replays.len(),
        bytes = scan.total_bytes(),
        too_young = scan.too_young,
        ignored = scan.ignored,
        "scanned {}",
        settings.temp_dir.display()
    );
    for stuck in scan.stuck.iter().take(STUCK_NAMED) {
        tracing::warn!("{} is never archived as it is: {}", stuck.name, stuck.why);
    }
    if scan.stuck.len() > STUCK_NAMED {
        tracing::warn!(
            "{} more replay files cannot be archived as they are; `oiseau status` lists them",
            scan.stuck.len() - STUCK_NAMED
        );
    }
    if scan.ignored > 0 {
        tracing::info!(
            "left alone {} entries of the temp folder that are not replay files",
            scan.ignored
        );
    }
    Ok(scan)
}

/// Whether the scan holds enough to pack now (`force` packs whatever is there); logs why not.
pub fn worth_packing(scan: &Scan, threshold: u64, force: bool) -> bool {
    let bytes = scan.total_bytes();
    if scan.replays.is_empty() || (bytes < threshold && !force) {
        tracing::info!(
            "nothing to do: {} of {}",
            ByteSize(bytes),
            ByteSize(threshold)
        );
        return false;
    }
    true
}
