//! The contract a backend implements: a handful of primitives, each stating what it
//! guarantees. Mechanisms that several drivers would otherwise copy (the commit of an upload,
//! retries, timeouts) live above it, in [`crate::Storage`] and the layers.

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::{Capabilities, Result, Source, StorageError};

/// A readable stream of an object's bytes (or of a range of them).
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// Called during an upload with the number of bytes sent so far; it feeds progress bars.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// What is known of one object on a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Name relative to the storage root.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// A token that changes whenever the object is replaced (an ETag, a modification time),
    /// where the storage has one.
    pub version: Option<String>,
}

impl ObjectMeta {
    /// An object known by its name and size only.
    pub fn new(name: impl Into<String>, size: u64) -> Self {
        ObjectMeta {
            name: name.into(),
            size,
            version: None,
        }
    }

    /// What [`WriteMode::ReplaceIfUnchanged`] compares: the storage's own version token, or
    /// the size where the storage has none.
    pub fn version_token(&self) -> Version {
        Version(
            self.version
                .clone()
                .unwrap_or_else(|| format!("size:{}", self.size)),
        )
    }
}

/// An object's version as read earlier, for a write that must not replace a newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(String);

impl Version {
    /// The token itself, for a storage that compares it (an ETag).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A part of an object: `start..end`, or from `start` to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Exclusive; `None` reads to the end of the object.
    pub end: Option<u64>,
}

impl ByteRange {
    /// The whole object.
    pub const ALL: ByteRange = ByteRange {
        start: 0,
        end: None,
    };

    /// `len` bytes from `start`.
    pub fn new(start: u64, len: u64) -> Self {
        ByteRange {
            start,
            end: Some(start + len),
        }
    }

    /// How many bytes the range covers in an object of `size` bytes.
    pub fn len_within(self, size: u64) -> u64 {
        self.end
            .unwrap_or(size)
            .min(size)
            .saturating_sub(self.start)
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(end) => write!(f, "bytes {}..{end}", self.start),
            None => write!(f, "bytes {}..", self.start),
        }
    }
}

/// Where an object belongs: the backend maps it to a storage class, or ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// Read by every run (the index, manifests): always in the storage's hot class.
    #[default]
    Hot,
    /// Written once, read rarely (archives): the cold class where the backend has one.
    Archive,
}

/// Whether a write may replace an object that already exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail with [`crate::ErrorKind::AlreadyExists`] when the name is taken: archives are
    /// never overwritten, whatever happens.
    CreateNew,
    /// Replace the object in one step, so a reader sees the old or the new bytes, never a mix.
    Replace,
    /// Replace the object only if it is still the version read earlier; otherwise fail with
    /// [`crate::ErrorKind::ConditionFailed`] (another writer got there first).
    ReplaceIfUnchanged(Version),
}

/// How one write goes: its mode and its placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    pub mode: WriteMode,
    pub placement: Placement,
}

impl WriteOptions {
    /// A new archive: never replaces anything, placed in the cold class.
    pub fn archive() -> Self {
        WriteOptions {
            mode: WriteMode::CreateNew,
            placement: Placement::Archive,
        }
    }

    /// A small hot object written with `mode`.
    pub fn hot(mode: WriteMode) -> Self {
        WriteOptions {
            mode,
            placement: Placement::Hot,
        }
    }
}

/// One write as [`Driver::put`] receives it.
#[derive(Clone, Copy)]
pub struct Put<'a> {
    pub source: &'a Source,
    /// Create the object only if the name is free, atomically. Asked only of drivers that
    /// declare [`Capabilities::atomic_create`].
    pub if_absent: bool,
    pub placement: Placement,
    /// Replace the object only if it is still this version. Asked only of drivers that
    /// declare [`Capabilities::replace_if_match`].
    pub if_match: Option<&'a Version>,
    pub progress: Progress<'a>,
}

impl<'a> Put<'a> {
    /// A plain write of `source`: replaces, hot, no progress reported.
    pub fn new(source: &'a Source) -> Self {
        Put {
            source,
            if_absent: false,
            placement: Placement::Hot,
            if_match: None,
            progress: &|_| {},
        }
    }
}

/// Whether opening a storage may change its state to make it ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreflightMode {
    /// Do what it takes (a cold storage starts waking up): a run, a restore.
    Prepare,
    /// Only look: `status` and `run --dry-run` change nothing anywhere.
    Inspect,
}

/// The first step of readiness: can the storage be used at all now?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The storage can be read and written now.
    Ready,
    /// The storage is being prepared (an unarchive is under way); come back later. The
    /// message says what is happening, for the log and the operators' chat.
    Pending(String),
}

/// What preparing a storage found: whether it can be used now, and what the operators should
/// know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub readiness: Readiness,
    /// The storage's state, for `oiseau status`: a cold storage says until when it stays open.
    pub condition: Option<String>,
    /// What the operators should hear of, though nothing is wrong with this run: C14's
    /// outdated archives, which cost money until deleted.
    pub notices: Vec<String>,
}

impl From<Readiness> for Prepared {
    fn from(readiness: Readiness) -> Prepared {
        Prepared {
            readiness,
            condition: None,
            notices: Vec::new(),
        }
    }
}

/// The storage contract every backend implements.
///
/// Drivers speak only their protocol: no retries, no policy, no copy of the commit sequence.
/// Every method names the object it failed on in its error, and takes `&self`, so one driver
/// serves several tasks behind an `Arc`.
#[async_trait]
pub trait Driver: Send + Sync + fmt::Debug {
    /// A short description for logs and messages, such as `local directory /srv/backup`.
    /// Never contains a secret.
    fn describe(&self) -> String;

    fn capabilities(&self) -> Capabilities;

    /// The first step of readiness: makes the storage usable before anything touches it (a
    /// cold storage may have to be woken up first, and answers [`Readiness::Pending`]
    /// meanwhile; a driver working through a helper process starts it here), and says what
    /// it found. Called once per command, before any other method.
    async fn prepare(&self, _mode: PreflightMode) -> Result<Prepared> {
        Ok(Readiness::Ready.into())
    }

    /// What the storage knows of one object; [`crate::ErrorKind::NotFound`] when it does not
    /// exist.
    async fn stat(&self, name: &str) -> Result<ObjectMeta>;

    /// When `name` was last written, by the storage's own clock; `None` where the storage
    /// keeps no such time. A lock's age is judged with it, so that no host's clock is ever
    /// compared with another's. [`crate::ErrorKind::NotFound`] when it does not exist.
    async fn modified(&self, name: &str) -> Result<Option<SystemTime>> {
        self.stat(name).await.map(|_| None)
    }

    /// Every file in the storage root, sorted by name. A storage that cannot be reached is an
    /// error, never an empty list.
    async fn list(&self) -> Result<Vec<ObjectMeta>>;

    /// Streams `range` of one object, reading no more of it than the range. Missing:
    /// [`crate::ErrorKind::NotFound`], never an empty stream; cold and not restored:
    /// [`crate::ErrorKind::NotReady`]. A stream cut short ends in an error, never early.
    async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader>;

    /// Writes the put's source under `name`, reporting its progress, and returns the bytes
    /// written; a growing source is streamed as it is written, and the write ends only once
    /// the source is complete. The put's placement picks the storage class, where the driver
    /// has them.
    ///
    /// With `if_absent`, see [`Capabilities::atomic_create`]. Without it, `name` is replaced
    /// if it exists, and a driver without [`Capabilities::atomic_replace`] may leave a partial
    /// object under `name` when it fails: the commit path then uses it for temporary names
    /// only. A failed `put` removes what it wrote where it can.
    async fn put(&self, name: &str, put: &Put<'_>) -> Result<u64>;

    /// Moves `from` to `to` on the server, replacing `to` (see [`Capabilities::rename`]).
    async fn rename(&self, from: &str, _to: &str) -> Result<()> {
        Err(
            StorageError::other(format!("{} cannot rename objects", self.describe()))
                .with_object(from),
        )
    }

    /// Removes one object; [`crate::ErrorKind::NotFound`] when it does not exist.
    async fn delete(&self, name: &str) -> Result<()>;

    /// The second step of readiness, per object: makes `name` readable (a cold archive's
    /// restore is requested, once) and says whether it is now, or is still being prepared.
    /// Default: every object is readable.
    async fn warm_up(&self, _name: &str) -> Result<Readiness> {
        Ok(Readiness::Ready)
    }

    /// Compares the storage's own hash of `name` with the same hash of the local file
    /// `local`, where the storage keeps one (see [`Capabilities::server_side_hash`]).
    async fn check_hash(&self, _name: &str, _local: &Path) -> Result<()> {
        Ok(())
    }

    /// Takes the lock `name`, leaving `lease` readable under that name: in one atomic step, so
    /// that of several writers trying at once exactly one succeeds and the others get
    /// [`crate::ErrorKind::AlreadyExists`]. Default: an atomic create, for drivers that
    /// declare [`Capabilities::atomic_create`]; others override it with their protocol's
    /// exclusive step.
    async fn create_lock(&self, name: &str, lease: &Source) -> Result<()> {
        if !self.capabilities().atomic_create {
            return Err(StorageError::config(format!(
                "{} has no exclusive create: several writers cannot share it safely",
                self.describe()
            )));
        }
        let put = Put {
            if_absent: true,
            ..Put::new(lease)
        };
        self.put(name, &put).await.map(drop)
    }

    /// Frees the lock `name` taken by [`Driver::create_lock`].
    async fn remove_lock(&self, name: &str) -> Result<()> {
        self.delete(name).await
    }
}
