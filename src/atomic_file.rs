//! Files that are replaced whole: a crash or a concurrent reader sees the old content or the
//! new one, never a torn file.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes`: written to a hidden temporary file beside it (whose name a
/// collector watching `*.prom` or `*.json` ignores), fsynced, renamed over, and the directory
/// fsynced.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?
        .to_string_lossy();
    let staging = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&staging)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&staging, path)?;
        sync_dir(dir)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&staging);
    })
}

/// Makes renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
