//! S3-compatible object storage (AWS, Scaleway, MinIO, Backblaze B2, Cloudflare R2, Wasabi),
//! through OpenDAL's S3 service.
//!
//! Archives go to `archive_class`, everything else (the index, manifests, index copies, the
//! lock) to STANDARD: what every run reads must never sit in a class that needs a restore.
//! OpenDAL sets the class per operator, so there are two. Uploads stream as multipart uploads,
//! which appear only once completed: S3 needs no temporary name, and cannot copy a cold object
//! anyway. Creates carry `If-None-Match: *` and conditional replaces `If-Match: <ETag>`, so
//! another writer's object is never overwritten, whatever the timing.
//!
//! Classes that need a restore before a read (GLACIER, DEEP_ARCHIVE) are warmed up object by
//! object before a read (see the `raw` module): the caller asks, comes back later, reads.

mod errors;
mod raw;
mod transport;

use std::time::Duration;

use async_trait::async_trait;
use opendal::{Operator, services};
use serde::{Deserialize, Serialize};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::driver::Prepared;
use crate::opendal_io::write_source;
use crate::{
    BackendConfig, Bound, ByteRange, Capabilities, Driver, ErrorKind, ObjectMeta, ObjectReader,
    Opened, Placement, PreflightMode, Put, Readiness, Result, StorageConfig, StorageError,
};
use raw::{NEEDS_RESTORE, RawS3};
use shared::Secret;

/// `[storage.s3]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// Objects live under `<prefix>/`; `""` is the bucket's root. Hosts that share a prefix
    /// share one backup, taking turns through the lock; a prefix each keeps them apart.
    pub prefix: String,
    pub region: String,
    /// Empty for AWS.
    pub endpoint: String,
    /// `true` for AWS (`bucket.s3.amazonaws.com`); `false` for path-style addressing.
    pub virtual_host_style: bool,
    /// Storage class of the archives (STANDARD, GLACIER, DEEP_ARCHIVE, ONEZONE_IA, ...).
    pub archive_class: String,
    /// How long a restored archive stays readable.
    pub restore_days: u32,
    /// Expedited, Standard or Bulk: how fast (and how dear) a restore is.
    pub restore_tier: String,
    /// Env `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// Env `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Secret,
    /// Env `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Secret,
    /// Bound on every request, and on every stall of a transfer.
    #[serde(with = "shared::duration")]
    pub timeout: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".to_owned(),
            endpoint: String::new(),
            virtual_host_style: false,
            archive_class: "STANDARD".to_owned(),
            restore_days: 7,
            restore_tier: "Standard".to_owned(),
            access_key_id: String::new(),
            secret_access_key: Secret::default(),
            session_token: Secret::default(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// A multipart upload started longer ago than this belongs to no live run: a run's lease lasts
/// 6 hours, and no archive upload takes a day.
const ABANDONED: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// A bound on one step of a transfer (sending a part, reading a piece of an answer) far
/// beyond any stall: stalls are judged by progress in [`transport`], a part on a slow link
/// rightly takes minutes.
const TRANSFER_BACKSTOP: Duration = Duration::from_secs(3600);

/// The storage classes S3 knows (an object in any other is refused at upload, after packing).
const STORAGE_CLASSES: [&str; 9] = [
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
    "EXPRESS_ONEZONE",
];

/// How S3 restores a cold object, fastest first.
const RESTORE_TIERS: [&str; 3] = ["Expedited", "Standard", "Bulk"];

/// How many times one S3 request is tried again on a temporary failure, beneath the retries
/// of whole operations.
const REQUEST_RETRIES: usize = 4;

/// Size of the parts of a multipart upload: S3's minimum is 5 MiB; a few parts in flight stay
/// well within the run's memory budget.
const PART_SIZE: usize = 8 << 20;

/// Parts of one multipart upload sent at once: one request at a time leaves the link idle
/// while S3 answers each part; four keep it busy (as rclone and s5cmd do) for at most
/// 4 x 8 MiB held in memory. OpenDAL runs them on tokio's executor.
const PARTS_IN_FLIGHT: usize = 4;

impl BackendConfig for S3Config {
    const NAME: &'static str = "s3";
    const ENV: &'static [(&'static str, &'static str)] = &[
        ("AWS_ACCESS_KEY_ID", "access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
        ("AWS_SESSION_TOKEN", "session_token"),
    ];

    fn open(self, _storage: &StorageConfig) -> Result<Opened> {
        Opened::new(S3Driver::new(&self)?, Bound::EachStep(self.timeout))
    }

    fn check(&self) -> Result<()> {
        let bucket = self.bucket.trim();
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket.is_empty() && !valid_bucket {
            return Err(StorageError::config(format!(
                "storage.s3.bucket {bucket:?} is not an S3 bucket name (3 to 63 lowercase \
                 letters, digits, dots and hyphens, starting and ending with a letter or digit)"
            )));
        }
        let endpoint = self.endpoint.trim();
        if !(endpoint.is_empty()
            || endpoint.starts_with("https://")
            || endpoint.starts_with("http://"))
        {
            return Err(StorageError::config(format!(
                "storage.s3.endpoint {:?} must start with https:// (or http:// for a test server)",
                shared::redact_userinfo(endpoint).unwrap_or_else(|| endpoint.to_owned())
            )));
        }
        let class = self.archive_class.trim().to_ascii_uppercase();
        if !STORAGE_CLASSES.contains(&class.as_str()) {
            return Err(StorageError::config(format!(
                "storage.s3.archive_class {:?} is not an S3 storage class; use one of {}",
                self.archive_class,
                STORAGE_CLASSES.join(", ")
            )));
        }
        if !RESTORE_TIERS.contains(&self.restore_tier.as_str()) {
            return Err(StorageError::config(format!(
                "storage.s3.restore_tier {:?} is not Expedited, Standard or Bulk",
                self.restore_tier
            )));
        }
        Ok(())
    }

    fn location(&self, _storage: &StorageConfig) -> String {
        let endpoint = if self.endpoint.is_empty() {
            "aws"
        } else {
            self.endpoint.trim_end_matches('/')
        };
        format!(
            "{endpoint} {}/{}",
            self.bucket,
            self.prefix.trim_matches('/')
        )
    }
}

#[derive(Debug)]
pub struct S3Driver {
    bucket: String,
    prefix: String,
    archive_class: String,
    /// STANDARD: everything but the archives.
    hot: Operator,
    /// `archive_class`.
    archive: Operator,
    raw: RawS3,
}

impl S3Driver {
    /// Aborts the multipart uploads under the prefix started more than `age` ago, and returns
    /// their keys: what every run's preparation does with a day.
    pub async fn abort_abandoned_uploads(&self, age: Duration) -> Result<Vec<String>> {
        let age = chrono::TimeDelta::from_std(age)
            .map_err(|_| StorageError::other(format!("an age of {age:?} is too long")))?;
        self.raw
            .abort_abandoned_uploads(chrono::Utc::now() - age)
            .await
    }

    pub fn new(config: &S3Config) -> Result<Self> {
        if config.bucket.trim().is_empty() {
            return Err(StorageError::config(
                "storage.s3.bucket is empty; set it to the bucket that holds the backup",
            ));
        }
        if config.access_key_id.is_empty() || config.secret_access_key.is_empty() {
            return Err(StorageError::config(
                "storage.s3 has no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (or access_key_id and secret_access_key)",
            ));
        }
        config.check()?;
        let class = config.archive_class.trim().to_ascii_uppercase();
        let prefix = config.prefix.trim_matches('/').to_owned();
        Ok(S3Driver {
            bucket: config.bucket.clone(),
            raw: RawS3::new(config, &prefix)?,
            hot: operator(config, &prefix, "STANDARD")?,
            archive: operator(config, &prefix, &class)?,
            archive_class: class,
            prefix,
        })
    }

    fn operator_for(&self, placement: Placement) -> &Operator {
        match placement {
            Placement::Hot => &self.hot,
            Placement::Archive => &self.archive,
        }
    }

    /// An OpenDAL error as a storage error naming the bucket, the key and S3's own words.
    fn error(&self, name: &str, err: opendal::Error) -> StorageError {
        errors::storage_error(&self.bucket, &self.prefix, name, err)
    }
}

fn operator(config: &S3Config, prefix: &str, class: &str) -> Result<Operator> {
    let mut builder = services::S3::default()
        .bucket(&config.bucket)
        .root(&format!("/{prefix}"))
        .region(&config.region)
        .access_key_id(&config.access_key_id)
        .secret_access_key(config.secret_access_key.expose())
        .default_storage_class(class)
        // Credentials come from the settings only: never from files or instance metadata
        // that the operator did not name.
        .disable_config_load()
        .disable_ec2_metadata();
    if !config.session_token.is_empty() {
        builder = builder.session_token(config.session_token.expose());
    }
    if !config.endpoint.is_empty() {
        builder = builder.endpoint(&config.endpoint);
    }
    if config.virtual_host_style {
        builder = builder.enable_virtual_host_style();
    }
    // OpenDAL's process-wide HTTP client (reqwest with rustls on ring), installed once.
    shared::install_tls_provider();
    opendal::init_default_registry();
    opendal_http_transport_reqwest::install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(config.timeout)
        // Sent bytes left unacknowledged this long: the link stalled (see `transport`).
        .tcp_user_timeout(config.timeout)
        .build()
        .map_err(|e| StorageError::config(format!("storage.s3: cannot set up HTTPS: {e}")))?;
    let transport = opendal::HttpTransporter::new(transport::Watched::new(client, config.timeout));
    let op = Operator::new(builder)
        .map_err(|e| StorageError::config(format!("storage.s3: {e}")))?
        .with_context(opendal::OperationContext::new().with_http_transport(transport));
    // Each request bounded by the timeout, each transfer by its progress (the transport);
    // then each request
    // retried on its own (a part of a multipart upload, not the whole upload), so that a run
    // makes progress as long as most requests get through. A conditional write whose answer
    // was lost meets its own result when retried: the storage contract's callers look before
    // they decide.
    Ok(op
        .layer(
            opendal::layers::TimeoutLayer::new()
                .with_timeout(config.timeout)
                .with_io_timeout(TRANSFER_BACKSTOP),
        )
        .layer(
            opendal::layers::RetryLayer::new()
                .with_max_times(REQUEST_RETRIES)
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_jitter()
                .with_notify(errors::say_request_retried),
        ))
}

#[async_trait]
impl Driver for S3Driver {
    fn describe(&self) -> String {
        format!("S3 bucket {}/{}", self.bucket, self.prefix)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_create: true,
            atomic_replace: true,
            replace_if_match: true,
            needs_warm_up: NEEDS_RESTORE.contains(&self.archive_class.as_str()),
            exclusive_lock: true,
            conditions_need_probe: true,
            ..Capabilities::default()
        }
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let meta = self.hot.stat(name).await.map_err(|e| self.error(name, e))?;
        Ok(ObjectMeta {
            name: name.to_owned(),
            size: meta.content_length(),
            version: meta.etag().map(str::to_owned),
        })
    }

    async fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        let meta = self.hot.stat(name).await.map_err(|e| self.error(name, e))?;
        Ok(meta.last_modified().map(std::time::SystemTime::from))
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        let entries = self.hot.list("/").await.map_err(|e| self.error("", e))?;
        let mut objects: Vec<ObjectMeta> = entries
            .into_iter()
            .filter(|entry| entry.metadata().is_file())
            .map(|entry| ObjectMeta::new(entry.name(), entry.metadata().content_length()))
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        let size = self.stat(name).await?.size;
        let len = range.len_within(size);
        if len == 0 {
            return Ok(Box::new(tokio::io::empty()));
        }
        let reader = self
            .hot
            .reader(name)
            .await
            .map_err(|e| self.error(name, e))?;
        let stream = reader
            .into_futures_async_read(range.start..range.start + len)
            .await
            .map_err(|e| self.error(name, e))?;
        Ok(Box::new(stream.compat()))
    }

    async fn put(&self, name: &str, put: &Put<'_>) -> Result<u64> {
        let mut writer = self
            .operator_for(put.placement)
            .writer_with(name)
            .chunk(PART_SIZE)
            .concurrent(PARTS_IN_FLIGHT);
        if put.if_absent {
            writer = writer.if_not_exists(true);
        }
        if let Some(version) = put.if_match {
            writer = writer.if_match(version.as_str());
        }
        let writer = writer.await.map_err(|e| self.error(name, e))?;
        write_source(writer, put.source, put.progress, |e| {
            let error = self.error(name, e);
            // A create refused by `If-None-Match: *`: the name is taken.
            if put.if_absent && error.kind() == ErrorKind::ConditionFailed {
                StorageError::already_exists(name).with_source(error)
            } else {
                error
            }
        })
        .await
    }

    /// Aborts the multipart uploads under the prefix abandoned more than [`ABANDONED`] ago (a
    /// killed run's; S3 bills them until aborted). Never fails the command: a listing refused
    /// is reported, and a bucket lifecycle rule is the operator's other way.
    async fn prepare(&self, mode: PreflightMode) -> Result<Prepared> {
        if mode == PreflightMode::Prepare {
            let before = chrono::Utc::now() - ABANDONED;
            match self.raw.abort_abandoned_uploads(before).await {
                Ok(keys) => {
                    for key in keys {
                        tracing::info!("aborted the abandoned multipart upload of {key}");
                    }
                }
                Err(e) => tracing::warn!("cannot look for abandoned multipart uploads: {e}"),
            }
        }
        Ok(Prepared {
            condition: Some(format!(
                "archives in {}, everything else STANDARD",
                self.archive_class
            )),
            ..Readiness::Ready.into()
        })
    }

    async fn warm_up(&self, name: &str) -> Result<Readiness> {
        if !NEEDS_RESTORE.contains(&self.archive_class.as_str()) {
            return Ok(Readiness::Ready);
        }
        self.raw.warm_up(name).await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        // S3 deletes a missing key without a word; the contract says NotFound.
        self.stat(name).await?;
        self.hot.delete(name).await.map_err(|e| self.error(name, e))
    }
}
