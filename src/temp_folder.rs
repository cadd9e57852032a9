//! Finds the replays in the temp folder that are ready to be archived.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// One replay file as it was when the folder was scanned. Size, mtime and inode are kept so
/// that a file is packed and deleted only if it is still exactly that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub id: u64,
    /// `<temp_dir>/replay_<id>.osr`: the name is its last part (a batch can hold 100,000
    /// replays, so it is not kept twice).
    pub path: PathBuf,
    pub size: u64,
    pub mtime: SystemTime,
    /// Tells the file from another written under the same name since (same size and time).
    pub inode: u64,
}

impl Replay {
    /// The file name, `replay_<id>.osr` (the scan only takes such ASCII names).
    pub fn name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
    }
}

/// What a scan found: the replays to pack, sorted by id, and what it left alone.
#[derive(Debug, Default)]
pub struct Scan {
    pub replays: Vec<Replay>,
    /// Replay files younger than `min_age`: they may still be being written.
    pub too_young: usize,
    /// Everything that is not a replay file: other names, dot and `.part` files, folders, links.
    pub ignored: usize,
    /// Replay files that can never be archived as they are, each with why and what to do:
    /// named in every run's log and in `status`, and left where they are.
    pub stuck: Vec<Stuck>,
}

/// A replay file that no run will archive until someone acts on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stuck {
    pub name: String,
    pub why: String,
}

/// A time as the system keeps a file's: whole seconds since the epoch, negative before 1970
/// (rounded down), and the nanoseconds after them.
pub fn unix_parts(time: SystemTime) -> (i64, u32) {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => (
            i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            after.subsec_nanos(),
        ),
        Err(before) => {
            let before = before.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (-secs, 0),
                nanos => (-secs - 1, 1_000_000_000 - nanos),
            }
        }
    }
}

/// How far in the future a modification time may be (a clock a little ahead, a file being
/// written on another machine) before the replay is reported instead of waited for.
const FUTURE_TOLERANCE: Duration = Duration::from_secs(3600);

impl Scan {
    pub fn total_bytes(&self) -> u64 {
        self.replays.iter().map(|r| r.size).sum()
    }

    /// How long the oldest replay has waited at `now` (none when there is no replay; zero for
    /// a modification time ahead of `now`).
    pub fn oldest_age(&self, now: SystemTime) -> Option<Duration> {
        let oldest = self.replays.iter().map(|replay| replay.mtime).min()?;
        Some(now.duration_since(oldest).unwrap_or_default())
    }
}

/// The id in a replay file name: `replay_<digits>.osr`, written the one way a number is
/// (no leading zero), nothing else.
pub fn replay_id(name: &str) -> Option<u64> {
    match parse_replay_name(name)? {
        ReplayName::Id(id) => Some(id),
        ReplayName::Unusable(_) => None,
    }
}

/// What a name that has the shape of a replay's says.
enum ReplayName {
    Id(u64),
    /// A replay's name that cannot be archived as it is: why, and what to do.
    Unusable(String),
}

/// `None` for a name that is not a replay's at all.
fn parse_replay_name(name: &str) -> Option<ReplayName> {
    let digits = name.strip_prefix("replay_")?.strip_suffix(".osr")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        let canonical = digits.trim_start_matches('0');
        let canonical = if canonical.is_empty() { "0" } else { canonical };
        return Some(ReplayName::Unusable(format!(
            "its id has leading zeros, so it names the same replay as replay_{canonical}.osr; \
             rename it (or remove the duplicate)"
        )));
    }
    Some(match digits.parse() {
        Ok(id) => ReplayName::Id(id),
        Err(_) => ReplayName::Unusable(format!(
            "its id is beyond the largest replay id ({}); move it out of the temp folder",
            u64::MAX
        )),
    })
}

/// [`scan`] as of now, off the async runtime: a folder can hold 100,000 files.
pub async fn scan_now(dir: &Path, min_age: Duration) -> Result<Scan> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || scan(&dir, min_age, SystemTime::now()))
        .await
        .context("the scan of the temp folder stopped unexpectedly")?
}

/// Lists `dir` (not recursively). Symbolic links are never followed: what is archived and later
/// deleted must be the file itself.
pub fn scan(dir: &Path, min_age: Duration, now: SystemTime) -> Result<Scan> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot list the temp folder {}; check temp_dir in the settings",
            dir.display()
        )
    })?;
    let mut scan = Scan::default();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            scan.ignored += 1;
            continue;
        };
        let id = match parse_replay_name(name) {
            None => {
                scan.ignored += 1;
                continue;
            }
            Some(ReplayName::Unusable(why)) => {
                scan.stuck.push(Stuck {
                    name: name.to_owned(),
                    why,
                });
                continue;
            }
            Some(ReplayName::Id(id)) => id,
        };
        // A file removed since read_dir is simply not there any more.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            scan.ignored += 1;
            continue;
        }
        let mtime = meta
            .modified()
            .with_context(|| format!("cannot read the mtime of {}", entry.path().display()))?;
        // A modification time a little in the future counts as young: the file may still be
        // written. Far in the future, no run would ever take it.
        if mtime
            .duration_since(now)
            .is_ok_and(|ahead| ahead > FUTURE_TOLERANCE)
        {
            scan.stuck.push(Stuck {
                name: name.to_owned(),
                why: "its modification time is in the future; check the clock of whatever wrote \
                      it, or touch it"
                    .to_owned(),
            });
            continue;
        }
        if now.duration_since(mtime).unwrap_or(Duration::ZERO) < min_age {
            scan.too_young += 1;
            continue;
        }
        if rustix::fs::access(entry.path(), rustix::fs::Access::READ_OK).is_err() {
            scan.stuck.push(Stuck {
                name: name.to_owned(),
                why: "oiseau cannot read it; fix its permissions".to_owned(),
            });
            continue;
        }
        scan.replays.push(Replay {
            id,
            path: entry.path(),
            size: meta.len(),
            mtime,
            inode: meta.ino(),
        });
    }
    scan.replays
        .sort_by(|a, b| a.id.cmp(&b.id).then(a.name().cmp(b.name())));
    // The list lives through the packing; grown by doubling, it may hold twice its room.
    scan.replays.shrink_to_fit();
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_replay_names_count() {
        assert_eq!(replay_id("replay_123.osr"), Some(123));
        assert_eq!(replay_id("replay_0.osr"), Some(0));
        for name in [
            "replay_.osr",
            "replay_12a.osr",
            "replay_-1.osr",
            "replay_+1.osr",
            "replay_12.osr.part",
            ".replay_12.osr",
            "replay_12.OSR",
            "Replay_12.osr",
            "replay_ 12.osr",
            "replay_99999999999999999999999.osr",
        ] {
            assert_eq!(replay_id(name), None, "{name}");
        }
    }

    #[test]
    fn scan_skips_young_files_folders_links_and_other_names() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        let write = |name: &str, bytes: &[u8], mtime: SystemTime| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        };
        write("replay_2.osr", b"two", old);
        write("replay_02.osr", b"two again", old);
        write("replay_99999999999999999999999.osr", b"huge", old);
        write(
            "replay_8.osr",
            b"from the future",
            SystemTime::now() + Duration::from_secs(7 * 24 * 3600),
        );
        write("replay_10.osr", b"ten!", old);
        write("replay_3.osr", b"young", SystemTime::now());
        write("replay_4.osr.part", b"partial", old);
        write(".replay_5.osr", b"hidden", old);
        write("notes.txt", b"notes", old);
        std::fs::create_dir(dir.path().join("replay_6.osr")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("replay_2.osr"),
            dir.path().join("replay_7.osr"),
        )
        .unwrap();

        let scan = scan(dir.path(), Duration::from_secs(60), SystemTime::now()).unwrap();
        let ids: Vec<u64> = scan.replays.iter().map(|r| r.id).collect();
        assert_eq!(ids, [2, 10]);
        assert_eq!(scan.total_bytes(), 7);
        assert_eq!(scan.too_young, 1);
        assert_eq!(scan.ignored, 5);
        let mut stuck: Vec<&str> = scan.stuck.iter().map(|s| s.name.as_str()).collect();
        stuck.sort_unstable();
        assert_eq!(
            stuck,
            [
                "replay_02.osr",
                "replay_8.osr",
                "replay_99999999999999999999999.osr"
            ]
        );
        assert!(scan.stuck.iter().all(|s| !s.why.is_empty()));
    }

    #[test]
    fn times_before_1970_split_as_the_system_keeps_them() {
        assert_eq!(unix_parts(UNIX_EPOCH + Duration::new(5, 7)), (5, 7));
        assert_eq!(
            unix_parts(UNIX_EPOCH - Duration::new(1, 500_000_000)),
            (-2, 500_000_000)
        );
        assert_eq!(unix_parts(UNIX_EPOCH - Duration::from_secs(3)), (-3, 0));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay_1.osr");
        std::fs::write(&path, b"old").unwrap();
        let then = UNIX_EPOCH - Duration::new(86_400, 250_000_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(then)
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(unix_parts(then), (meta.mtime(), meta.mtime_nsec() as u32));
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let err = scan(
            Path::new("/nonexistent/oiseau-temp"),
            Duration::ZERO,
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/oiseau-temp"));
    }
}
