//! A directory on this machine: what the demo and CI use, and what an operator with a mounted
//! disk or NAS can use in production.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use opendal::{ErrorKind as OpendalKind, Operator, services};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::opendal_io::write_source;
use crate::{
    BackendConfig, Bound, ByteRange, Capabilities, Driver, ObjectMeta, ObjectReader, Opened,
    Progress, Put, Result, Source, StorageConfig, StorageError, partial_name,
};

/// `[storage.local]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// The directory that holds the archives and the index; created when missing. Relative
    /// to the settings file's directory. Never empty: that would be the settings' own folder.
    #[serde(deserialize_with = "non_empty_path")]
    pub path: PathBuf,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            path: PathBuf::from("backup"),
        }
    }
}

impl LocalConfig {
    /// The `[storage.local]` table, its path resolved from the settings file's directory.
    pub fn from_storage(storage: &StorageConfig) -> Result<Self> {
        Ok(storage.table::<Self>(Self::NAME)?.resolved(storage))
    }

    fn resolved(mut self, storage: &StorageConfig) -> Self {
        self.path = storage.base_dir.join(&self.path);
        self
    }
}

impl BackendConfig for LocalConfig {
    const NAME: &'static str = "local";

    fn open(self, storage: &StorageConfig) -> Result<Opened> {
        let driver = LocalDriver::new(&self.resolved(storage))?;
        Opened::new(driver, Bound::EachOperation(TIMEOUT))
    }

    fn location(&self, storage: &StorageConfig) -> String {
        let path = storage.base_dir.join(&self.path);
        std::path::absolute(&path)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn local_folder(&self, storage: &StorageConfig) -> Option<(&'static str, PathBuf)> {
        Some(("storage.local.path", storage.base_dir.join(&self.path)))
    }
}

fn non_empty_path<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
    let path = PathBuf::deserialize(deserializer)?;
    if path.as_os_str().is_empty() {
        return Err(serde::de::Error::custom(
            "path is empty; set it to the folder that holds the archives",
        ));
    }
    Ok(path)
}

/// A disk that stops answering (a hung network mount) fails the operation after this long.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Lists and streams through OpenDAL's `fs` service, which fsyncs every file it closes;
/// creates, renames and removes with the system calls whose atomicity the contract needs.
#[derive(Debug)]
pub struct LocalDriver {
    root: PathBuf,
    op: Operator,
}

impl LocalDriver {
    pub fn new(config: &LocalConfig) -> Result<Self> {
        let root = std::path::absolute(&config.path).map_err(|e| {
            StorageError::config(format!(
                "storage.local.path {}: {}",
                config.path.display(),
                crate::io_words(&e)
            ))
        })?;
        let root_str = root.to_str().ok_or_else(|| {
            StorageError::config(format!(
                "storage.local.path {} is not valid UTF-8; choose another directory",
                root.display()
            ))
        })?;
        // The folder is made when first written; a file where it or a parent should be is
        // said here, in a line, rather than as the file system library's account of it.
        if let Some(file) = crate::file_in_the_way(&root) {
            let what = if file == root {
                "it is a file, not a folder".to_owned()
            } else {
                format!("{} is a file, not a folder", file.display())
            };
            return Err(StorageError::config(format!(
                "storage.local.path {}: {what}; point storage.local.path at a folder",
                root.display(),
            )));
        }
        let op = Operator::new(services::Fs::default().root(root_str))
            .map_err(|e| map_err(root_str, e))?;
        Ok(LocalDriver { root, op })
    }

    /// Writes `source` to the new file `staged`: a hard link when both are on the same
    /// filesystem (the spool usually is, and the archive then costs no second write), a
    /// streamed copy otherwise. Either way the bytes are on disk (fsynced) before the caller
    /// gives them their name. A link needs the whole file, so a growing source is waited for:
    /// on a local disk the copy would cost more than the wait.
    async fn stage(&self, source: &Source, staged: &str, progress: Progress<'_>) -> Result<u64> {
        source.len().await?;
        let from = source.path().to_owned();
        let target = self.root.join(staged);
        let linked = blocking(staged, move || {
            if std::fs::hard_link(&from, &target).is_err() {
                return Ok(None);
            }
            let file = std::fs::File::open(&target)?;
            file.sync_all()?;
            Ok(Some(file.metadata()?.len()))
        })
        .await?;
        let size = match linked {
            Some(size) => {
                progress(size);
                size
            }
            None => self.copy(source, staged, progress).await?,
        };
        // Every object readable like the archives, whatever mode its source had (a staged
        // index or manifest is a private temporary file).
        let target = self.root.join(staged);
        blocking(staged, move || {
            std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o644))
        })
        .await?;
        Ok(size)
    }

    async fn copy(&self, source: &Source, staged: &str, progress: Progress<'_>) -> Result<u64> {
        let writer = self
            .op
            .writer(staged)
            .await
            .map_err(|e| map_err(staged, e))?;
        write_source(writer, source, progress, |e| map_err(staged, e)).await
    }

    /// Gives the staged file its name: a hard link, which fails if the name is taken, for a
    /// create; a rename, which replaces in one step, otherwise. Then makes it durable: the
    /// directory entry is synced, or a power cut could undo it.
    async fn name_staged(&self, staged: &str, name: &str, if_absent: bool) -> Result<()> {
        let root = self.root.clone();
        let (staged_path, target) = (root.join(staged), root.join(name));
        blocking(name, move || {
            if if_absent {
                std::fs::hard_link(&staged_path, &target)?;
                std::fs::remove_file(&staged_path)?;
            } else {
                std::fs::rename(&staged_path, &target)?;
            }
            sync_dir(&root)
        })
        .await
    }
}

/// Runs blocking file system work off the async runtime, naming `name` in its error.
async fn blocking<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::from_io(name, io::Error::other(e)))?
        .map_err(|e| StorageError::from_io(name, e))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl Driver for LocalDriver {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_create: true,
            atomic_replace: true,
            rename: true,
            exclusive_lock: true,
            ..Capabilities::default()
        }
    }

    async fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        let meta = tokio::fs::metadata(self.root.join(name))
            .await
            .map_err(|e| StorageError::from_io(name, e))?;
        Ok(meta.modified().ok())
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let meta = tokio::fs::metadata(self.root.join(name))
            .await
            .map_err(|e| StorageError::from_io(name, e))?;
        if !meta.is_file() {
            return Err(StorageError::other(format!("{name} is not a file")).with_object(name));
        }
        Ok(ObjectMeta {
            name: name.to_owned(),
            size: meta.len(),
            version: Some(format!(
                "{}-{}.{}-{}",
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.len()
            )),
        })
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let what = root.display().to_string();
        blocking(&what, move || {
            let mut objects = Vec::new();
            for entry in std::fs::read_dir(&root)? {
                let entry = entry?;
                // Another writer may rename or remove an entry (its partial upload, the lock)
                // between the listing and this look at it: it is simply not there any more.
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if let (true, Some(name)) = (meta.is_file(), entry.file_name().to_str()) {
                    objects.push(ObjectMeta::new(name, meta.len()));
                }
            }
            objects.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(objects)
        })
        .await
    }

    async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        let size = self.stat(name).await?.size;
        let mut file = tokio::fs::File::open(self.root.join(name))
            .await
            .map_err(|e| StorageError::from_io(name, e))?;
        file.seek(io::SeekFrom::Start(range.start))
            .await
            .map_err(|e| StorageError::from_io(name, e))?;
        Ok(Box::new(file.take(range.len_within(size))))
    }

    async fn put(&self, name: &str, put: &Put<'_>) -> Result<u64> {
        let staged = partial_name(name);
        let result = async {
            let sent = self.stage(put.source, &staged, put.progress).await?;
            self.name_staged(&staged, name, put.if_absent).await?;
            Ok(sent)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(self.root.join(&staged));
        }
        result
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let root = self.root.clone();
        let (from_path, to_path) = (root.join(from), root.join(to));
        blocking(from, move || {
            std::fs::rename(from_path, to_path)?;
            sync_dir(&root)
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.stat(name).await?;
        let root = self.root.clone();
        let path = root.join(name);
        blocking(name, move || {
            std::fs::remove_file(path)?;
            sync_dir(&root)
        })
        .await
    }
}

fn map_err(name: &str, err: opendal::Error) -> StorageError {
    // The file system's own answer says best what went wrong and whether trying again can
    // help: OpenDAL calls every I/O error temporary, so a full disk or a refused permission
    // would be retried for nothing.
    if let Some(io) =
        std::error::Error::source(&err).and_then(|source| source.downcast_ref::<std::io::Error>())
    {
        return StorageError::from_io(name, std::io::Error::new(io.kind(), io.to_string()));
    }
    let error = match err.kind() {
        OpendalKind::NotFound => StorageError::not_found(name),
        OpendalKind::AlreadyExists => StorageError::already_exists(name),
        OpendalKind::ConfigInvalid => StorageError::config(format!("{name}: {}", err.message())),
        _ if err.is_temporary() => StorageError::temporary(format!("{name}: {}", err.message())),
        _ => StorageError::other(format!("{name}: {}", err.message())),
    };
    error.with_object(name).with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_or_a_refusal_is_not_retried_a_reset_is() {
        let failed = |kind: std::io::ErrorKind| {
            let err = opendal::Error::new(OpendalKind::Unexpected, "write failed")
                .set_temporary()
                .set_source(std::io::Error::from(kind));
            map_err("c14_index.txt", err)
        };
        for kind in [
            std::io::ErrorKind::StorageFull,
            std::io::ErrorKind::QuotaExceeded,
            std::io::ErrorKind::PermissionDenied,
            std::io::ErrorKind::ReadOnlyFilesystem,
        ] {
            let error = failed(kind);
            assert!(!error.is_temporary(), "{kind:?}: {error}");
            assert!(error.to_string().contains("c14_index.txt"), "{error}");
        }
        assert!(
            failed(std::io::ErrorKind::StorageFull)
                .to_string()
                .contains("no space left")
        );
        assert!(failed(std::io::ErrorKind::Interrupted).is_temporary());
    }
}
