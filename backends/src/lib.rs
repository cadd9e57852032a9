//! Storage drivers for oiseau.
//!
//! Every backend speaks the same small [`Storage`] contract, so the backup run, the restore
//! commands and the conformance tests are written once. Objects are flat names in the storage
//! root (`c14_index.txt`, `1700000000_replays_12.tar.gz`): that is the layout the original tool
//! wrote and every backend must keep it.

pub mod c14;
pub mod duration;
mod error;
pub mod ftp;
pub mod local;
pub mod rclone;
mod retry;
mod secret;
mod source;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

pub use error::StorageError;
pub use secret::Secret;
pub use source::{Chunks, Source, SourceFeed};

/// Result of every storage operation.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A readable stream of one object's bytes.
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// Called during an upload with the number of bytes sent so far; it feeds progress bars.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// Suffix of the temporary name an upload is written under before it is renamed into place.
///
/// A name carrying it is never a finished object: listings show it only so that stray partial
/// uploads left by a killed run can be reported and removed.
pub const PARTIAL_SUFFIX: &str = ".oiseau-part";

/// A fresh temporary name for an upload of `name`, in the same directory.
///
/// Unique per process and attempt, so two writers (a killed run's leftover child and the run
/// that resumes it) never write into the same partial file.
pub fn partial_name(name: &str) -> String {
    static ATTEMPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let attempt = ATTEMPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}.{}-{attempt}{PARTIAL_SUFFIX}", std::process::id())
}

/// What is known of one object on a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Name relative to the storage root.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// Whether an upload may replace an object that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail with [`StorageError::AlreadyExists`] when the name is taken: archives are never
    /// overwritten, whatever happens.
    CreateNew,
    /// Replace the object in one step, so a reader sees the old or the new bytes, never a mix
    /// (the index).
    Replace,
}

/// Whether a preflight may change the storage's state to make it ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreflightMode {
    /// Do what it takes (a cold storage starts waking up): a run, a restore.
    Prepare,
    /// Only look: `status` and `run --dry-run` change nothing anywhere.
    Inspect,
}

/// Outcome of a backend's preflight hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// The storage can be read and written now.
    Ready,
    /// The storage is being prepared (for example an unarchive is under way); come back later.
    /// The message says what is happening, for the log and the operators' chat.
    Pending(String),
}

/// The storage contract every backend implements.
///
/// Drivers speak only their protocol; retries, progress and the run's policy live in the
/// caller. Every method names the object it failed on in its error.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug {
    /// A short description for logs and messages, such as `local directory /srv/backup`.
    /// Never contains a secret.
    fn describe(&self) -> String;

    /// What an operator should know about the storage's state after the preflight, for
    /// `oiseau status`: a cold storage says until when it stays open.
    fn condition(&self) -> Option<String> {
        None
    }

    /// Makes the storage usable before a run touches it. Most backends have nothing to do; a
    /// cold storage may have to be woken up first and answers [`Preflight::Pending`] meanwhile.
    async fn preflight(&mut self, _mode: PreflightMode) -> Result<Preflight> {
        Ok(Preflight::Ready)
    }

    /// Size of one object; [`StorageError::NotFound`] when it does not exist.
    async fn stat(&self, name: &str) -> Result<ObjectMeta>;

    /// Every file in the storage root, sorted by name. A storage that cannot be reached is an
    /// error, never an empty list.
    async fn list(&self) -> Result<Vec<ObjectMeta>>;

    /// Streams one object; [`StorageError::NotFound`] when it does not exist (never an empty
    /// stream).
    async fn open(&self, name: &str) -> Result<ObjectReader>;

    /// Uploads the local file `source` as `name`; a growing source is streamed as it is
    /// written, and the upload finishes only once the source is complete.
    ///
    /// The bytes go to a [`partial_name`] first and are renamed into place only when
    /// complete, so no reader ever sees a partial object under its final name. The size on the
    /// storage is checked before returning: success means the object is there, whole.
    async fn upload(
        &self,
        source: &Source,
        name: &str,
        mode: WriteMode,
        progress: Progress<'_>,
    ) -> Result<ObjectMeta>;

    /// Removes one object; [`StorageError::NotFound`] when it does not exist.
    async fn delete(&self, name: &str) -> Result<()>;

    /// Reads a small object (an index, a manifest) whole. Archives go through [`Storage::open`].
    async fn read(&self, name: &str) -> Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut bytes = Vec::new();
        self.open(name)
            .await?
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| StorageError::from_io(name, e))?;
        Ok(bytes)
    }

    /// Writes a small object from memory, with the same guarantees as [`Storage::upload`].
    async fn write(&self, name: &str, bytes: &[u8], mode: WriteMode) -> Result<ObjectMeta> {
        let staged = stage_bytes(bytes).map_err(|e| StorageError::from_io(name, e))?;
        self.upload(&Source::file(staged.path()), name, mode, &|_| {})
            .await
    }
}

/// Puts bytes in a local temporary file so that small writes share the upload path.
fn stage_bytes(bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut staged = tempfile::NamedTempFile::new()?;
    staged.write_all(bytes)?;
    staged.flush()?;
    Ok(staged)
}

/// Which driver the `[storage]` settings select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A directory on this machine (or a mounted one).
    #[default]
    Local,
    /// An FTP or FTPS server with fixed credentials.
    Ftp,
    /// online.net C14: unarchive through the API, then FTP into the bucket.
    C14,
    /// Any rclone remote, through the rclone binary.
    Rclone,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Local => "local",
            Backend::Ftp => "ftp",
            Backend::C14 => "c14",
            Backend::Rclone => "rclone",
        })
    }
}

/// The `[storage]` settings: the selected backend and each driver's own table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: Backend,
    pub local: local::LocalConfig,
    pub ftp: ftp::FtpConfig,
    pub c14: c14::C14Config,
    pub rclone: rclone::RcloneConfig,
}

/// Opens the driver the settings select, with transient failures retried. Nothing is
/// contacted yet: reaching the storage is the job of [`Storage::preflight`] and the first
/// operation.
pub fn open(config: &StorageConfig) -> Result<Box<dyn Storage>> {
    let driver: Box<dyn Storage> = match config.backend {
        Backend::Local => Box::new(local::LocalStorage::new(&config.local)?),
        Backend::Ftp => Box::new(ftp::FtpStorage::new(&config.ftp)?),
        Backend::C14 => Box::new(c14::C14Storage::new(&config.c14, config.ftp.timeout)?),
        Backend::Rclone => Box::new(rclone::RcloneStorage::new(&config.rclone)?),
    };
    Ok(Box::new(retry::Retrying::new(driver)))
}
