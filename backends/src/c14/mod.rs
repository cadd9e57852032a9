//! online.net C14 (Classic): cold storage whose sync archive must be unarchived into a
//! temporary bucket before it can be written; the bucket is then an FTP server.
//!
//! The preflight hook runs the original tool's workflow against the API (see the README):
//! check the key, find the archive by name, wait while an operation is in progress, report
//! (and optionally delete) outdated archives, then either start an unarchive and come back
//! later, or take the bucket's FTP credentials. After that every operation is FTP.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

mod api;

use crate::driver::Prepared;
use crate::ftp::{FtpConfig, FtpDriver};
use crate::{
    BackendConfig, Bound, ByteRange, Capabilities, Driver, ErrorKind, ObjectMeta, ObjectReader,
    Opened, PreflightMode, Put, Readiness, Result, Source, StorageConfig, StorageError,
};
use api::{Api, ApiError, Archive, Bucket, Location};
use shared::Secret;

/// `[storage.c14]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct C14Config {
    /// online.net API key. Env `ONLINE_API_KEY`.
    pub api_key: Secret,
    /// Name of the sync archive, compared case-insensitively. Env `C14_SYNC_NAME`.
    pub sync_name: String,
    pub api_url: String,
    /// Delete older archives that carry the sync name (each re-archive leaves one behind).
    pub delete_outdated: bool,
}

impl Default for C14Config {
    fn default() -> Self {
        C14Config {
            api_key: Secret::default(),
            sync_name: "sync".to_owned(),
            api_url: "https://api.online.net".to_owned(),
            delete_outdated: false,
        }
    }
}

impl BackendConfig for C14Config {
    const NAME: &'static str = "c14";
    const ENV: &'static [(&'static str, &'static str)] = &[
        ("ONLINE_API_KEY", "api_key"),
        ("C14_SYNC_NAME", "sync_name"),
    ];

    fn open(self, storage: &StorageConfig) -> Result<Opened> {
        // The bucket is an FTP server: its sessions follow `[storage.ftp] timeout`.
        let ftp_timeout = storage.table::<FtpConfig>(FtpConfig::NAME)?.timeout;
        Opened::new(
            C14Driver::new(&self, ftp_timeout)?,
            Bound::EachStep(ftp_timeout),
        )
    }

    /// The sync archive, whichever bucket is open for it now.
    fn location(&self, _storage: &StorageConfig) -> String {
        format!(
            "archive {:?} at {}",
            self.sync_name.to_lowercase(),
            self.api_url
        )
    }
}

#[derive(Debug)]
pub struct C14Driver {
    api: Api,
    sync_name: String,
    delete_outdated: bool,
    /// Timeout of the bucket's FTP sessions.
    ftp_timeout: Duration,
    /// The open bucket, once [`Driver::prepare`] found it.
    bucket: OnceLock<OpenBucket>,
    /// The outdated archives the last [`Driver::prepare`] found, said as operators hear them.
    outdated: std::sync::Mutex<Vec<String>>,
}

#[derive(Debug)]
struct OpenBucket {
    ftp: FtpDriver,
    /// When the bucket is archived again, as the API says.
    until: Option<String>,
}

impl C14Driver {
    /// Finds the sync archive's open bucket, or starts its unarchive (a run) or says it is
    /// closed (a look): the first step of [`Driver::prepare`].
    async fn open_sync_bucket(&self, mode: PreflightMode) -> Result<Readiness> {
        if self.bucket.get().is_some() {
            return Ok(Readiness::Ready);
        }
        self.api
            .json::<serde_json::Value>(Method::GET, "/api/v1/user")
            .await?;
        let archives = self.sync_archives().await?;
        let (newest, outdated) = archives.split_first().expect("at least one archive");
        if let Some(busy) = archives.iter().find(|a| a.status != "active") {
            return Ok(Readiness::Pending(format!(
                "C14 archive {:?} ({}) is {}: an operation is in progress; still waiting",
                busy.name, busy.reference, busy.status
            )));
        }
        self.handle_outdated(outdated, mode).await?;
        let bucket_path = format!("{}/bucket", newest.reference);
        let bucket = match self.api.json::<Bucket>(Method::GET, &bucket_path).await {
            Ok(bucket) => bucket,
            Err(e) if e.kind() == ErrorKind::NotFound && mode == PreflightMode::Inspect => {
                return Ok(Readiness::Pending(format!(
                    "the bucket of C14 archive {:?} is closed; a run will start an unarchive",
                    newest.name
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return self.unarchive(newest).await,
            Err(e) => return Err(e),
        };
        if let Some(until) = &bucket.archival_date {
            tracing::info!(
                "the bucket of C14 archive {:?} is open until {until}",
                newest.name
            );
        }
        let until = bucket.archival_date.clone();
        let ftp = self.open_bucket(newest, bucket)?;
        // Two tasks preparing at once find the same bucket: the first one's is kept.
        let _ = self.bucket.set(OpenBucket { ftp, until });
        Ok(Readiness::Ready)
    }

    pub fn new(config: &C14Config, ftp_timeout: Duration) -> Result<Self> {
        if config.api_key.is_empty() {
            return Err(StorageError::config(
                "storage.c14.api_key is empty; set it or ONLINE_API_KEY",
            ));
        }
        if config.sync_name.trim().is_empty() {
            return Err(StorageError::config(
                "storage.c14.sync_name is empty; set it or C14_SYNC_NAME",
            ));
        }
        Ok(C14Driver {
            api: Api::new(&config.api_url, config.api_key.clone())?,
            sync_name: config.sync_name.clone(),
            delete_outdated: config.delete_outdated,
            ftp_timeout,
            bucket: OnceLock::new(),
            outdated: std::sync::Mutex::default(),
        })
    }

    fn bucket(&self) -> Result<&FtpDriver> {
        self.bucket.get().map(|open| &open.ftp).ok_or_else(|| {
            StorageError::other(format!(
                "{}: the bucket is not open; the preflight must succeed first",
                self.describe()
            ))
        })
    }

    /// The archives named like the sync archive, newest first.
    async fn sync_archives(&self) -> Result<Vec<Archive>> {
        let all: Vec<Archive> = self
            .api
            .json(Method::GET, "/api/v1/storage/c14/archive")
            .await?;
        let wanted = self.sync_name.to_lowercase();
        let mut matching: Vec<Archive> = Vec::new();
        let mut others = Vec::new();
        for archive in all {
            if archive.name.to_lowercase() == wanted {
                matching.push(archive);
            } else {
                others.push(archive.name);
            }
        }
        if matching.is_empty() {
            return Err(StorageError::config(format!(
                "online.net has no C14 archive named {:?} (found: {}); check storage.c14.sync_name",
                self.sync_name,
                if others.is_empty() {
                    "none".to_owned()
                } else {
                    others.join(", ")
                }
            )));
        }
        for archive in &matching {
            archive.created()?;
        }
        matching.sort_by_key(|archive| std::cmp::Reverse(archive.created().unwrap_or_default()));
        Ok(matching)
    }

    async fn handle_outdated(&self, outdated: &[Archive], mode: PreflightMode) -> Result<()> {
        let mut notices = Vec::with_capacity(outdated.len());
        for archive in outdated {
            let delete = self.delete_outdated && mode == PreflightMode::Prepare;
            let notice = format!(
                "outdated C14 archive {:?} ({}), created {}: {}",
                archive.name,
                archive.reference,
                archive.creation_date,
                if delete {
                    "deleting it"
                } else {
                    "set storage.c14.delete_outdated = true to delete such archives"
                }
            );
            tracing::warn!("{notice}");
            notices.push(notice);
            if delete {
                match self
                    .api
                    .call(Method::DELETE, &archive.reference, None)
                    .await
                {
                    Ok(_) => {}
                    Err(ApiError::Status(StatusCode::CONFLICT, _)) => {
                        tracing::info!("a delete of {} is already pending", archive.reference);
                    }
                    Err(e) => return Err(e.into_storage(&self.api, &archive.reference)),
                }
            }
        }
        *self
            .outdated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = notices;
        Ok(())
    }

    /// Starts an unarchive of `archive` into its first location.
    async fn unarchive(&self, archive: &Archive) -> Result<Readiness> {
        let locations: Vec<Location> = self
            .api
            .json(Method::GET, &format!("{}/location", archive.reference))
            .await?;
        let location = locations.first().ok_or_else(|| {
            StorageError::other(format!(
                "online.net lists no location to unarchive C14 archive {:?} into",
                archive.name
            ))
        })?;
        let body = serde_json::json!({
            "location_id": location.uuid_ref,
            "protocols": ["ssh", "ftp"],
            "rearchive": true,
        });
        let path = format!("{}/unarchive", archive.reference);
        match self.api.call(Method::POST, &path, Some(body)).await {
            Ok(_) => Ok(Readiness::Pending(format!(
                "unarchive started for C14 archive {:?} at {}; the backup goes on once the bucket is open",
                archive.name, location.name
            ))),
            Err(ApiError::Status(StatusCode::CONFLICT, _)) => Ok(Readiness::Pending(format!(
                "unarchive of C14 archive {:?} already requested; still waiting for the bucket",
                archive.name
            ))),
            Err(e) => Err(e.into_storage(&self.api, &path)),
        }
    }

    fn open_bucket(&self, archive: &Archive, bucket: Bucket) -> Result<FtpDriver> {
        let credentials = bucket
            .credentials
            .into_iter()
            .find(|c| c.protocol.eq_ignore_ascii_case("ftp"))
            .ok_or_else(|| {
                StorageError::other(format!(
                    "the open bucket of C14 archive {:?} offers no FTP credentials",
                    archive.name
                ))
            })?;
        let mut url = url::Url::parse(&credentials.uri).map_err(|e| {
            StorageError::other(format!(
                "the bucket's FTP address {:?} is not a URL: {e}",
                credentials.uri
            ))
        })?;
        let _ = url.set_password(None);
        let _ = url.set_username(&credentials.login);
        FtpDriver::new(&FtpConfig {
            url: url.to_string(),
            password: credentials.password,
            timeout: self.ftp_timeout,
        })
    }
}

#[async_trait]
impl Driver for C14Driver {
    fn describe(&self) -> String {
        match self.bucket.get() {
            Some(open) => format!(
                "C14 archive {:?} through {}",
                self.sync_name,
                open.ftp.describe()
            ),
            None => format!("C14 archive {:?} ({})", self.sync_name, self.api.base),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_warm_up: true,
            ..FtpDriver::CAPABILITIES
        }
    }

    /// Opens the bucket (or says why it cannot be yet), and says until when it stays open and
    /// which outdated archives cost money.
    async fn prepare(&self, mode: PreflightMode) -> Result<Prepared> {
        let readiness = self.open_sync_bucket(mode).await?;
        let condition = self.bucket.get().map(|open| {
            let until = open.until.as_deref().unwrap_or("an unknown date");
            format!("bucket open until {until}")
        });
        let notices = self
            .outdated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Ok(Prepared {
            readiness,
            condition,
            notices,
        })
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        self.bucket()?.stat(name).await
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        self.bucket()?.list().await
    }

    async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        self.bucket()?.read(name, range).await
    }

    async fn put(&self, name: &str, put: &Put<'_>) -> Result<u64> {
        self.bucket()?.put(name, put).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.bucket()?.rename(from, to).await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.bucket()?.delete(name).await
    }

    async fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        self.bucket()?.modified(name).await
    }

    async fn create_lock(&self, name: &str, lease: &Source) -> Result<()> {
        self.bucket()?.create_lock(name, lease).await
    }

    async fn remove_lock(&self, name: &str) -> Result<()> {
        self.bucket()?.remove_lock(name).await
    }
}
