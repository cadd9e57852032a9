//! One deployment per backend, each keeping its objects in a directory the test can inspect
//! and damage: the local storage, the root of a test FTP server, a local rclone remote.

use std::path::PathBuf;

use super::Deployment;
use super::ftp::{FTP_PASSWORD, FtpServer};
use super::rclone::RcloneS3;

/// A deployment on one backend, and the directory where that backend keeps its objects.
pub struct Target {
    pub d: Deployment,
    pub storage: PathBuf,
    pub env: Vec<(&'static str, String)>,
    _server: Option<FtpServer>,
    _remote: Option<tempfile::TempDir>,
    /// The S3 server of [`Target::s3_ignoring_conditions`].
    pub s3: Option<RcloneS3>,
}

impl Target {
    pub fn local() -> Self {
        let d = Deployment::new("");
        let storage = d.storage.clone();
        Target {
            d,
            storage,
            env: Vec::new(),
            _server: None,
            _remote: None,
            s3: None,
        }
    }

    pub fn ftp() -> Self {
        let server = FtpServer::start();
        let d = Deployment::new("");
        d.write_settings_with_tables(
            "",
            &format!(
                "[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"{}\"\ntimeout = \"10s\"\n",
                server.url("")
            ),
        );
        let storage = server.root.clone();
        Target {
            d,
            storage,
            env: vec![("FTP_PASSWORD", FTP_PASSWORD.to_owned())],
            _server: Some(server),
            _remote: None,
            s3: None,
        }
    }

    pub fn rclone() -> Self {
        let remote = tempfile::tempdir().unwrap();
        let d = Deployment::new("");
        d.write_settings_with_tables(
            "",
            &format!(
                "[storage]\nbackend = \"rclone\"\n[storage.rclone]\nremote = \"{}\"\n",
                remote.path().display()
            ),
        );
        let storage = remote.path().to_owned();
        Target {
            d,
            storage,
            env: Vec::new(),
            _server: None,
            _remote: Some(remote),
            s3: None,
        }
    }

    /// The s3 backend on `rclone serve s3`, which ignores conditional writes.
    pub fn s3_ignoring_conditions() -> Self {
        let server = RcloneS3::start(super::s3::ACCESS_KEY, super::s3::SECRET_KEY);
        let storage = server.bucket("replays");
        let d = Deployment::new("");
        d.write_settings_with_tables("", &server.settings("replays"));
        Target {
            d,
            storage,
            env: super::s3::env()
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned()))
                .collect(),
            _server: None,
            _remote: None,
            s3: Some(server),
        }
    }

    pub fn run(&self, extra_env: &[(&str, &str)]) -> std::process::Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"));
        command.arg("--config").arg(&self.d.config).arg("run");
        for (name, value) in &self.env {
            command.env(name, value);
        }
        super::Result::checked(command.envs(extra_env.iter().copied()).output().unwrap()).0
    }

    pub fn init(&self) {
        self.oiseau(&["init"]).expect_code(0);
    }

    /// `oiseau <args>` with this backend's environment.
    pub fn oiseau(&self, args: &[&str]) -> super::Result {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.d.oiseau(args, &env)
    }

    /// Every backend, for tests that must hold on each.
    pub fn all() -> Vec<(&'static str, Target)> {
        vec![
            ("local", Target::local()),
            ("ftp", Target::ftp()),
            ("rclone", Target::rclone()),
        ]
    }
}
