//! The last step of a commit: the temp folder loses exactly the replays the archive holds.

use std::path::Path;

use crate::fault;
use crate::run::journal::JournalReplay;

/// Deletes the archived replays that are still exactly what was packed, and returns how many
/// were kept because they changed (they go into a later archive: duplicated, never lost).
pub fn clean_temp_folder(temp_dir: &Path, archived: &[JournalReplay]) -> usize {
    // Names are looked up relative to the open folder: a batch can be 100,000 files, and each
    // full path would be walked twice (check, then delete).
    let folder = match rustix::fs::open(
        temp_dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(folder) => folder,
        Err(e) => {
            tracing::warn!(
                "cannot open {} to remove the archived replays: {e}; they are kept",
                temp_dir.display()
            );
            return archived.len();
        }
    };
    let mut kept = 0;
    for (done, packed) in archived.iter().enumerate() {
        if done * 2 == archived.len() {
            fault::point("mid-cleanup");
        }
        let path = || temp_dir.join(&packed.name);
        match packed.is_unchanged_in(&folder) {
            Ok(true) => {
                if let Err(e) = rustix::fs::unlinkat(
                    &folder,
                    packed.name.as_str(),
                    rustix::fs::AtFlags::empty(),
                ) {
                    tracing::warn!("cannot remove {}: {e}", path().display());
                    kept += 1;
                }
            }
            Ok(false) => {
                tracing::warn!(
                    "{} changed after it was packed; kept for the next run",
                    path().display()
                );
                kept += 1;
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => {
                tracing::warn!("cannot check {}: {e}; kept", path().display());
                kept += 1;
            }
        }
    }
    kept
}
