//! Real FTP servers for tests: libunftp in-process, and pyftpdlib as a child process (servers
//! differ in their replies, and one hides bugs another shows).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use unftp_core::auth::{AuthenticationError, Authenticator, Credentials, Principal};

pub const FTP_USER: &str = "oiseau";
pub const FTP_PASSWORD: &str = "ftp-TEST-SECRET-pass";

/// A libunftp server on 127.0.0.1 with its own runtime, so that killing it drops every session
/// at once, as a crashed server would.
pub struct FtpServer {
    pub port: u16,
    pub root: PathBuf,
    _root_dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Debug)]
struct OnePassword;

#[async_trait]
impl Authenticator for OnePassword {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        if username != FTP_USER {
            return Err(AuthenticationError::BadUser);
        }
        if creds.password.as_deref() != Some(FTP_PASSWORD) {
            return Err(AuthenticationError::BadPassword);
        }
        Ok(Principal {
            username: username.to_owned(),
        })
    }
}

impl FtpServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that also speaks explicit TLS (AUTH TLS), with this PEM certificate and key.
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        Self::start_with(Some((cert.to_owned(), key.to_owned())))
    }

    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Self {
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path().to_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = root.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let root = served.clone();
                let mut builder = libunftp::ServerBuilder::with_authenticator(
                    Box::new(move || unftp_sbe_fs::Filesystem::new(root.clone()).unwrap()),
                    Arc::new(OnePassword),
                );
                if let Some((cert, key)) = &tls {
                    builder = builder.ftps(cert.clone(), key.clone());
                }
                let server = builder.build().unwrap();
                tokio::spawn(async move {
                    let _ = server.service(stream).await;
                });
            }
        });
        FtpServer {
            port,
            root,
            _root_dir: root_dir,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self, dir: &str) -> String {
        format!("ftp://{FTP_USER}@127.0.0.1:{}/{dir}", self.port)
    }

    /// Stops the server the hard way: every connection is dropped mid-sentence.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The Python that has the test tools: the one `scripts/test` provisions, else `python3`.
pub fn test_python() -> String {
    std::env::var("OISEAU_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// pyftpdlib serving a temporary folder.
pub struct PyFtpServer {
    pub port: u16,
    pub root: tempfile::TempDir,
    child: std::process::Child,
}

impl PyFtpServer {
    pub fn start() -> Self {
        Self::start_with(&["-w"])
    }

    /// A server whose user may read and list, never write (pyftpdlib without `-w`).
    pub fn start_read_only() -> Self {
        Self::start_with(&[])
    }

    fn start_with(flags: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let python = test_python();
        let mut child = std::process::Command::new(&python)
            .args(["-m", "pyftpdlib", "-i", "127.0.0.1"])
            .args(flags)
            .arg("-p")
            .arg(port.to_string())
            .arg("-d")
            .arg(root.path())
            .args(["-u", FTP_USER, "-P", FTP_PASSWORD])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {python} ({e}): run the tests with scripts/test")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "pyftpdlib stopped at once under {python} ({status}): it is not installed \
                     there; run the tests with scripts/test, which provisions it"
                );
            }
            assert!(
                Instant::now() < deadline,
                "pyftpdlib on port {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PyFtpServer { port, root, child }
    }

    pub fn url(&self, dir: &str) -> String {
        format!("ftp://{FTP_USER}@127.0.0.1:{}/{dir}", self.port)
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for PyFtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fills `d`'s temp folder with ~80 MB of replays (so the upload lasts long enough to be cut),
/// runs `oiseau run` with `env`, kills `server` as soon as the archive's partial upload appears in its
/// root, and checks the outcome: exit 1 naming the upload, no archive under its final name,
/// the index and the temp folder untouched.
pub async fn assert_server_death_mid_upload_loses_nothing(
    d: &super::Deployment,
    env: (&str, &str),
    server: &mut FtpServer,
) {
    std::fs::write(server.root.join(super::INDEX), "").unwrap();
    let replays = super::add_sized_replays(&d.temp, 1, 160, 512 * 1024);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_oiseau"))
        .arg("--config")
        .arg(&d.config)
        .arg("run")
        .env(env.0, env.1)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !super::names_in(&server.root)
        .iter()
        .any(|n| n.contains(".tar.gz.") && n.ends_with(".oiseau-part"))
    {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill();
    let out = super::Finished::checked(child.wait_with_output().await.unwrap()).expect_code(1);
    assert!(out.stderr().contains("cannot upload"), "{}", out.stderr());
    let names = super::names_in(&server.root);
    assert!(names.iter().all(|n| !n.ends_with(".tar.gz")), "{names:?}");
    assert_eq!(std::fs::read(server.root.join(super::INDEX)).unwrap(), b"");
    assert_eq!(d.temp_names().len(), replays.len());
}
