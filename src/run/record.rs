//! Where the run record ([`RunRecord`]: what the runs of a work_dir did over time) is kept
//! between runs, `<work_dir>/last-run.json`, so that a run can say how long the storage has
//! been waking up and when the last archive was made. Losing it loses no data: it only feeds
//! the reports.

use std::path::Path;

use crate::report::events::RunRecord;

const RECORD_NAME: &str = "last-run.json";

/// The work_dir's record; a missing or unreadable one is an empty record (said in the log).
pub fn load(work_dir: &Path) -> RunRecord {
    let path = work_dir.join(RECORD_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(
                "ignoring {}: {e}; it is rewritten at the end of this run",
                path.display()
            );
            RunRecord::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RunRecord::default(),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", path.display());
            RunRecord::default()
        }
    }
}

/// Replaces the work_dir's record at once (a reader never sees half of it); a failure is
/// logged, never fatal.
pub fn save(work_dir: &Path, record: &RunRecord) {
    let path = work_dir.join(RECORD_NAME);
    let written = serde_json::to_vec_pretty(record)
        .map_err(std::io::Error::other)
        .and_then(|json| crate::atomic_file::replace(&path, &json));
    if let Err(e) = written {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_survives_between_runs_and_a_damaged_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), RunRecord::default());
        let record = RunRecord {
            last_success: Some(5),
            ..RunRecord::default()
        };
        save(dir.path(), &record);
        assert_eq!(load(dir.path()), record);
        std::fs::write(dir.path().join(RECORD_NAME), "{not json").unwrap();
        assert_eq!(load(dir.path()), RunRecord::default());
    }
}
