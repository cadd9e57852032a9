//! One run at a time per work_dir: an exclusive OS lock on `work_dir/lock`.
//!
//! The kernel drops the lock when the holder dies, however it dies, so a lock left by a killed
//! run never blocks the next one; the pid written inside only tells operators who holds it.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::LockHeld;

/// Held for the whole run; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

pub fn lock_path(work_dir: &Path) -> PathBuf {
    work_dir.join("lock")
}

/// Takes the lock, creating `work_dir` if needed.
pub fn acquire(work_dir: &Path) -> Result<RunLock> {
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("cannot create work_dir {}", work_dir.display()))?;
    let path = lock_path(work_dir);
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = read_holder(&mut file);
            return Err(LockHeld { path, holder }.into());
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(RunLock { _file: file })
}

/// The pid of the run holding the lock, if one does; for `oiseau status`.
pub fn holder(work_dir: &Path) -> Option<u32> {
    let mut file = File::open(lock_path(work_dir)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => read_holder(&mut file),
    }
}

fn read_holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let work_dir = dir.path().join("work");
        let first = acquire(&work_dir).unwrap();
        let err = acquire(&work_dir).unwrap_err();
        let held = err.downcast_ref::<LockHeld>().expect("LockHeld");
        assert_eq!(held.holder, Some(std::process::id()));
        assert_eq!(holder(&work_dir), Some(std::process::id()));
        drop(first);
        assert_eq!(holder(&work_dir), None);
        acquire(&work_dir).unwrap();
    }
}
