//! The storage as callers use it: a driver behind its layers, and the one commit path that
//! turns a driver's primitives into the guarantees of an upload.

use std::sync::Arc;

use tokio::io::AsyncReadExt;

use crate::partial::partial_name;
use crate::{
    ByteRange, Capabilities, ConditionsProbed, Driver, ErrorKind, ObjectMeta, ObjectReader,
    PreflightMode, Prepared, Progress, Put, Readiness, Result, Source, StorageError, Version,
    WriteMode, WriteOptions,
};

/// A storage opened but not yet prepared: nothing can be read or written through it until
/// [`Unprepared::prepare`] has run, which gives the [`Storage`] to use.
#[derive(Debug, Clone)]
pub struct Unprepared {
    storage: Storage,
}

impl Unprepared {
    /// Wraps a driver, with whatever layers it already has.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        Unprepared {
            storage: Storage {
                driver,
                upload_rate: None,
                probed: Arc::default(),
            },
        }
    }

    /// Caps the speed of every upload that streams its bytes (not the local backend's, which
    /// links the file into place), so that a backup never starves the machine's uplink.
    #[must_use]
    pub(crate) fn with_upload_rate(mut self, bytes_per_second: Option<u64>) -> Self {
        self.storage.upload_rate = bytes_per_second;
        self
    }

    pub fn describe(&self) -> String {
        self.storage.describe()
    }

    /// Makes the storage usable (see [`Driver::prepare`]), and gives it with what preparing
    /// found. Once per command.
    pub async fn prepare(&self, mode: PreflightMode) -> Result<PreparedStorage> {
        let Prepared {
            readiness,
            condition,
            notices,
        } = self.storage.driver.prepare(mode).await?;
        Ok(PreparedStorage {
            storage: self.storage.clone(),
            readiness,
            condition,
            notices,
        })
    }
}

/// A storage after its preparation, with what preparing found: `storage` is to be used once
/// `readiness` says it is ready.
#[derive(Debug)]
pub struct PreparedStorage {
    pub storage: Storage,
    pub readiness: Readiness,
    /// See [`Prepared::condition`].
    pub condition: Option<String>,
    /// See [`Prepared::notices`].
    pub notices: Vec<String>,
}

/// A prepared storage: cheap to clone, shared by the tasks of one command.
#[derive(Debug, Clone)]
pub struct Storage {
    driver: Arc<dyn Driver>,
    /// Uploads send at most this many bytes a second.
    upload_rate: Option<u64>,
    /// What a probe found the conditional writes really do, for a driver whose claims need one
    /// (see [`Capabilities::conditions_need_probe`]); until then they are not relied on.
    probed: Arc<std::sync::OnceLock<ConditionsProbed>>,
}

impl Storage {
    pub fn describe(&self) -> String {
        self.driver.describe()
    }

    /// What the storage can do, counting only the conditional writes that were verified: a
    /// driver whose conditions need a probe declares none of them before
    /// [`Storage::trust_conditions`].
    pub fn capabilities(&self) -> Capabilities {
        let claimed = self.driver.capabilities();
        match self.probed.get() {
            _ if !claimed.conditions_need_probe => claimed,
            Some(probed) => claimed.as_probed(*probed),
            None => claimed.as_probed(ConditionsProbed {
                create_if_absent: false,
                replace_if_match: false,
            }),
        }
    }

    /// Whether the driver's conditional writes must be probed before they are relied on.
    pub fn conditions_need_probe(&self) -> bool {
        self.driver.capabilities().conditions_need_probe && self.probed.get().is_none()
    }

    /// Relies on the conditional writes a probe (this one's or a remembered one) verified.
    pub fn trust_conditions(&self, probed: ConditionsProbed) {
        let _ = self.probed.set(probed);
    }

    /// Finds out what the server does with conditional writes, on a new object `name` that it
    /// removes afterwards: created twice with `If-None-Match: *` (the second must be refused),
    /// then replaced with `If-Match` of a version it never had (which must be refused too).
    pub async fn probe_conditions(&self, name: &str) -> Result<ConditionsProbed> {
        let driver = self.driver.as_ref();
        let staged = stage_bytes(b"oiseau checks that this storage honours conditional writes")
            .map_err(|e| StorageError::from_io(name, e))?;
        let source = Source::file(staged.path());
        let create = Put {
            if_absent: true,
            ..Put::new(&source)
        };
        let result = async {
            driver.put(name, &create).await?;
            let create_if_absent = match driver.put(name, &create).await {
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => true,
                Err(e) => return Err(e),
            };
            let never = ObjectMeta {
                version: Some("\"oiseau-probe-no-such-version\"".to_owned()),
                ..ObjectMeta::new(name, 0)
            }
            .version_token();
            let replace = Put {
                if_match: Some(&never),
                ..Put::new(&source)
            };
            let replace_if_match = match driver.put(name, &replace).await {
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::ConditionFailed => true,
                Err(e) => return Err(e),
            };
            Ok(ConditionsProbed {
                create_if_absent,
                replace_if_match,
            })
        }
        .await;
        match driver.delete(name).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove the probe object {name}: {e}"),
        }
        result
    }

    /// See [`Driver::modified`].
    pub async fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        self.driver.modified(name).await
    }

    /// See [`Driver::stat`].
    pub async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        self.driver.stat(name).await
    }

    /// See [`Driver::list`].
    pub async fn list(&self) -> Result<Vec<ObjectMeta>> {
        self.driver.list().await
    }

    /// See [`Driver::read`]; a read the network breaks is resumed from where it broke (see
    /// [`crate::resume`]).
    pub async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        let reader = self.driver.read(name, range).await?;
        Ok(crate::resume::resuming(
            Arc::clone(&self.driver),
            name,
            range,
            reader,
        ))
    }

    /// Reads a small object (an index, a manifest) whole, with its metadata read first, so
    /// that a later [`WriteMode::ReplaceIfUnchanged`] compares against what was read.
    pub async fn read_small(&self, name: &str) -> Result<(ObjectMeta, Vec<u8>)> {
        let meta = self.driver.stat(name).await?;
        let mut bytes = Vec::new();
        self.read(name, ByteRange::ALL)
            .await?
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| StorageError::from_io(name, e).with_operation("read"))?;
        Ok((meta, bytes))
    }

    /// See [`Driver::delete`].
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.driver.delete(name).await
    }

    /// See [`Driver::warm_up`].
    pub async fn warm_up(&self, name: &str) -> Result<Readiness> {
        if !self.driver.capabilities().needs_warm_up {
            return Ok(Readiness::Ready);
        }
        self.driver.warm_up(name).await
    }

    /// See [`Driver::create_lock`].
    pub async fn create_lock(&self, name: &str, lease: &Source) -> Result<()> {
        self.driver.create_lock(name, lease).await
    }

    /// See [`Driver::remove_lock`].
    pub async fn remove_lock(&self, name: &str) -> Result<()> {
        self.driver.remove_lock(name).await
    }

    /// Uploads the local file `source` as `name`, and returns what the storage then holds.
    ///
    /// Whatever the driver's mechanism, no reader ever sees a partial object under `name`,
    /// [`WriteMode::CreateNew`] never replaces an object, and success means the object is
    /// there with the size sent (and the hash, where the storage keeps one). The mechanism is
    /// the driver's native create-if-absent where it has one, else a temporary name, a size
    /// check and a rename.
    pub async fn upload(
        &self,
        source: &Source,
        name: &str,
        options: &WriteOptions,
        progress: Progress<'_>,
    ) -> Result<ObjectMeta> {
        let driver = self.driver.as_ref();
        let capabilities = self.capabilities();
        let source = &source.paced(self.upload_rate);
        let put = |if_absent, if_match| Put {
            source,
            if_absent,
            placement: options.placement,
            if_match,
            progress,
        };
        // An upload that is atomic by itself goes straight to its name where there is no
        // rename to stage it with (object storage through rclone, where a move is a copy):
        // the create is then checked just before, and the storage lock keeps writers apart.
        let direct = match &options.mode {
            WriteMode::CreateNew => {
                capabilities.atomic_create || (capabilities.atomic_replace && !capabilities.rename)
            }
            WriteMode::Replace | WriteMode::ReplaceIfUnchanged(_) => capabilities.atomic_replace,
        };
        if direct {
            let if_absent = options.mode == WriteMode::CreateNew && capabilities.atomic_create;
            let if_match = match &options.mode {
                WriteMode::ReplaceIfUnchanged(version) if capabilities.replace_if_match => {
                    Some(version)
                }
                _ => {
                    check_mode(driver, name, &options.mode, capabilities).await?;
                    None
                }
            };
            let sent = match driver.put(name, &put(if_absent, if_match)).await {
                Ok(sent) => sent,
                Err(e) if options.mode == WriteMode::CreateNew => {
                    landed_despite(driver, name, source, e).await?
                }
                Err(e) => return Err(e),
            };
            return verified(driver, name, source, sent).await;
        }
        if !capabilities.rename {
            return Err(StorageError::config(format!(
                "{} can neither create objects atomically nor rename them: nothing can be \
                 written to it safely",
                driver.describe()
            )));
        }
        check_mode(driver, name, &options.mode, capabilities).await?;
        let partial = partial_name(name);
        let result = async {
            let sent = driver.put(&partial, &put(false, None)).await?;
            let staged = driver.stat(&partial).await?;
            if staged.size != sent {
                return Err(StorageError::size_mismatch(&partial, sent, staged.size));
            }
            // Checked again just before the move: a rename replaces silently.
            check_mode(driver, name, &options.mode, capabilities).await?;
            if let Err(e) = driver.rename(&partial, name).await {
                // The move may have happened with its answer lost (a retry then finds no
                // partial upload): it did if the partial is gone and the name holds its size.
                let moved = matches!(driver.stat(&partial).await, Err(ref gone) if gone.kind() == ErrorKind::NotFound)
                    && driver.stat(name).await.is_ok_and(|meta| meta.size == sent);
                if !moved {
                    return Err(e);
                }
                tracing::info!("the answer to moving {partial} to {name} was lost; it was moved");
            }
            verified(driver, name, source, sent).await
        }
        .await;
        if result.is_err() {
            remove_partial(driver, &partial).await;
        }
        result
    }

    /// Writes a small object from memory, with the same guarantees as [`Storage::upload`].
    ///
    /// A write whose answer was lost after the storage applied it fails, or meets its own
    /// result when retried (a conditional write then refused, a staged copy already moved):
    /// before a failure is believed, the object is read back, and if it holds exactly these
    /// bytes the write happened.
    pub async fn write(
        &self,
        name: &str,
        bytes: &[u8],
        options: &WriteOptions,
    ) -> Result<ObjectMeta> {
        let staged = stage_bytes(bytes).map_err(|e| StorageError::from_io(name, e))?;
        let error = match self
            .upload(&Source::file(staged.path()), name, options, &|_| {})
            .await
        {
            Ok(meta) => return Ok(meta),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Config | ErrorKind::NotReady | ErrorKind::Denied
                ) =>
            {
                return Err(e);
            }
            Err(e) => e,
        };
        match self.read_small(name).await {
            Ok((meta, found)) if found == bytes => {
                tracing::info!("the answer to writing {name} was lost; it was written");
                Ok(meta)
            }
            _ => Err(error),
        }
    }
}

/// Fails when the write mode forbids writing `name` now. With a native atomic create, the
/// driver's own condition decides and nothing is checked here.
async fn check_mode(
    driver: &dyn Driver,
    name: &str,
    mode: &WriteMode,
    capabilities: Capabilities,
) -> Result<()> {
    match mode {
        WriteMode::CreateNew if capabilities.atomic_create => Ok(()),
        WriteMode::CreateNew => match driver.stat(name).await {
            Ok(_) => Err(StorageError::already_exists(name)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        },
        WriteMode::Replace => Ok(()),
        WriteMode::ReplaceIfUnchanged(expected) => {
            let found = driver.stat(name).await?.version_token();
            if &found == expected {
                Ok(())
            } else {
                Err(changed(name, expected, &found))
            }
        }
    }
}

fn changed(name: &str, expected: &Version, found: &Version) -> StorageError {
    StorageError::new(
        ErrorKind::ConditionFailed,
        format!(
            "{name} changed on the storage since it was read ({expected:?}, now {found:?}): \
             another writer is at work"
        ),
    )
    .with_object(name)
}

/// The size that landed under the new name `name` although its upload failed with `error`: the
/// answer to its last step was lost (an S3 `CompleteMultipartUpload` applied, then retried and
/// refused as an unknown upload). A new name that now holds the source's size is this
/// upload's (no other writer makes that name); anything else is the `error`. A name that was
/// already taken is left to the caller, which compares contents.
async fn landed_despite(
    driver: &dyn Driver,
    name: &str,
    source: &Source,
    error: StorageError,
) -> Result<u64> {
    if matches!(
        error.kind(),
        ErrorKind::AlreadyExists | ErrorKind::Denied | ErrorKind::Config | ErrorKind::NotReady
    ) {
        return Err(error);
    }
    let (Ok(size), Ok(stored)) = (source.len().await, driver.stat(name).await) else {
        return Err(error);
    };
    if stored.size != size {
        return Err(error);
    }
    tracing::info!("the answer to uploading {name} was lost; it landed whole");
    Ok(size)
}

/// Checks what landed under `name`: the size sent, and the hash where the storage keeps one.
async fn verified(
    driver: &dyn Driver,
    name: &str,
    source: &Source,
    sent: u64,
) -> Result<ObjectMeta> {
    let stored = driver.stat(name).await?;
    if stored.size != sent {
        return Err(StorageError::size_mismatch(name, sent, stored.size));
    }
    if driver.capabilities().server_side_hash {
        driver.check_hash(name, source.path()).await?;
    }
    Ok(stored)
}

/// Best effort: a leftover is reported, and never carries a final name.
async fn remove_partial(driver: &dyn Driver, partial: &str) {
    match driver.delete(partial).await {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove the partial upload {partial}: {e}"),
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
