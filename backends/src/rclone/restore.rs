//! Cold archives on object storage: found by a read that fails, restored through rclone's
//! backend command (S3's `restore`).

use serde_json::json;
use tokio::io::AsyncReadExt;

use super::RcloneDriver;
use super::serve::is_cold;
use crate::{ByteRange, Driver, ErrorKind, Readiness, Result, StorageError};

impl RcloneDriver {
    /// On object storage: a byte of the archive is read; if it is cold, rclone's S3 backend is
    /// asked to restore it (`backend/command restore`), and it is pending until a read works.
    pub(super) async fn restore_if_cold(&self, name: &str) -> Result<Readiness> {
        if !self.info.get().is_some_and(|info| info.bucket_based) {
            return Ok(Readiness::Ready);
        }
        match self.read(name, ByteRange::new(0, 1)).await {
            Ok(mut reader) => {
                let mut byte = [0u8; 1];
                match reader.read(&mut byte).await {
                    Ok(_) => return Ok(Readiness::Ready),
                    Err(e) if !is_cold(&e.to_string()) => {
                        return Err(StorageError::from_io(name, e));
                    }
                    Err(_) => {}
                }
            }
            Err(e) if e.kind() == ErrorKind::NotReady => {}
            Err(e) => return Err(e),
        }
        let (dir, file) = match name.rsplit_once('/') {
            Some((dir, file)) => (format!("{}/{dir}", self.config.remote), file),
            None => (self.config.remote.clone(), name),
        };
        let answer = self
            .rc(
                "backend/command",
                json!({
                    "command": "restore",
                    "fs": dir,
                    "opt": {
                        "priority": self.config.restore_tier,
                        "lifetime": self.config.restore_days.to_string(),
                    },
                    "_filter": {"IncludeRule": [file]},
                }),
            )
            .await?;
        match answer {
            Ok(_) => Ok(Readiness::Pending(format!(
                "{name}: restore requested or under way ({} tier, readable for {} days once \
                 done)",
                self.config.restore_tier, self.config.restore_days
            ))),
            Err(refusal) => Err(StorageError::other(format!(
                "{name} is cold and rclone cannot restore it on {} ({}); restore it by hand, \
                 then try again",
                self.config.remote, refusal.message
            ))
            .with_object(name)),
        }
    }
}
