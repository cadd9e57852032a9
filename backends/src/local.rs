//! A directory on this machine: what the demo and CI use, and what an operator with a mounted
//! disk or NAS can use in production.

use std::path::PathBuf;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use opendal::{ErrorKind, Operator, services};
use serde::{Deserialize, Serialize};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::{
    ObjectMeta, ObjectReader, Progress, Result, Source, Storage, StorageError, WriteMode,
    partial_name,
};

/// `[storage.local]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// The directory that holds the archives and the index; created when missing.
    pub path: PathBuf,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            path: PathBuf::from("backup"),
        }
    }
}

/// Reads and writes through OpenDAL's `fs` service, which fsyncs every file it closes.
#[derive(Debug)]
pub struct LocalStorage {
    root: PathBuf,
    op: Operator,
}

impl LocalStorage {
    pub fn new(config: &LocalConfig) -> Result<Self> {
        let root = std::path::absolute(&config.path).map_err(|e| {
            StorageError::Config(format!("storage.local.path {}: {e}", config.path.display()))
        })?;
        let root_str = root.to_str().ok_or_else(|| {
            StorageError::Config(format!(
                "storage.local.path {} is not valid UTF-8; choose another directory",
                root.display()
            ))
        })?;
        let op = Operator::new(services::Fs::default().root(root_str))
            .map_err(|e| map_err(root_str, e))?;
        Ok(LocalStorage { root, op })
    }

    /// Makes a rename durable: the file's bytes are synced by OpenDAL, the directory entry is
    /// not, and a power cut after the rename could otherwise undo it.
    fn sync_root_dir(&self) -> Result<()> {
        std::fs::File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| StorageError::from_io(&self.root.display().to_string(), e))
    }

    /// Puts `source` under `partial`: a hard link when both are on the same filesystem (the
    /// spool usually is, and the archive then costs no second write), a streamed copy
    /// otherwise. Either way the bytes are on disk (fsynced) before the rename. A link needs
    /// the whole file, so a growing source is waited for: on a local disk the copy would cost
    /// more than the wait.
    async fn send(&self, source: &Source, partial: &str, progress: Progress<'_>) -> Result<u64> {
        let target = self.root.join(partial);
        source.len().await?;
        if std::fs::hard_link(source.path(), &target).is_ok() {
            let synced = std::fs::File::open(&target).and_then(|file| {
                file.sync_all()?;
                Ok(file.metadata()?.len())
            });
            return match synced {
                Ok(size) => {
                    progress(size);
                    Ok(size)
                }
                Err(e) => Err(StorageError::from_io(partial, e)),
            };
        }
        self.copy(source, partial, progress).await
    }

    async fn copy(&self, source: &Source, partial: &str, progress: Progress<'_>) -> Result<u64> {
        let mut chunks = source.chunks();
        let mut writer = self
            .op
            .writer(partial)
            .await
            .map_err(|e| map_err(partial, e))?;
        let mut sent = 0u64;
        loop {
            let chunk = match chunks.try_next().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            let n = chunk.len() as u64;
            if let Err(e) = writer.write(chunk).await {
                let _ = writer.abort().await;
                return Err(map_err(partial, e));
            }
            sent += n;
            progress(sent);
        }
        writer.close().await.map_err(|e| map_err(partial, e))?;
        Ok(sent)
    }
}

#[async_trait]
impl Storage for LocalStorage {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let meta = self.op.stat(name).await.map_err(|e| map_err(name, e))?;
        if !meta.is_file() {
            return Err(StorageError::Failed(format!("{name} is not a file")));
        }
        Ok(ObjectMeta {
            name: name.to_owned(),
            size: meta.content_length(),
        })
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        if !self.root.is_dir() {
            return Err(StorageError::NotFound {
                name: self.root.display().to_string(),
            });
        }
        let entries = self.op.list("/").await.map_err(|e| map_err("/", e))?;
        let mut objects: Vec<ObjectMeta> = entries
            .into_iter()
            .filter(|entry| entry.metadata().is_file())
            .map(|entry| ObjectMeta {
                name: entry.path().to_owned(),
                size: entry.metadata().content_length(),
            })
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    async fn open(&self, name: &str) -> Result<ObjectReader> {
        // OpenDAL opens lazily; asking first turns a missing file into NotFound here.
        self.stat(name).await?;
        let reader = self.op.reader(name).await.map_err(|e| map_err(name, e))?;
        let stream = reader
            .into_futures_async_read(..)
            .await
            .map_err(|e| map_err(name, e))?;
        Ok(Box::new(stream.compat()))
    }

    async fn upload(
        &self,
        source: &Source,
        name: &str,
        mode: WriteMode,
        progress: Progress<'_>,
    ) -> Result<ObjectMeta> {
        if mode == WriteMode::CreateNew {
            match self.stat(name).await {
                Ok(_) => {
                    return Err(StorageError::AlreadyExists {
                        name: name.to_owned(),
                    });
                }
                Err(StorageError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let partial = partial_name(name);
        let sent = match self.send(source, &partial, progress).await {
            Ok(sent) => sent,
            Err(e) => {
                let _ = self.op.delete(&partial).await;
                return Err(e);
            }
        };
        self.op
            .rename(&partial, name)
            .await
            .map_err(|e| map_err(name, e))?;
        self.sync_root_dir()?;
        let stored = self.stat(name).await?;
        if stored.size != sent {
            return Err(StorageError::SizeMismatch {
                name: name.to_owned(),
                expected: sent,
                found: stored.size,
            });
        }
        Ok(stored)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        // OpenDAL's delete succeeds on a missing file; the contract says NotFound.
        self.stat(name).await?;
        self.op.delete(name).await.map_err(|e| map_err(name, e))?;
        self.sync_root_dir()
    }
}

fn map_err(name: &str, err: opendal::Error) -> StorageError {
    let name = name.to_owned();
    match err.kind() {
        ErrorKind::NotFound => StorageError::NotFound { name },
        ErrorKind::AlreadyExists => StorageError::AlreadyExists { name },
        ErrorKind::ConfigInvalid => StorageError::Config(format!("{name}: {err}")),
        _ if err.is_temporary() => StorageError::Transient(format!("{name}: {err}")),
        _ => StorageError::Failed(format!("{name}: {err}")),
    }
}
