//! One deployment per backend, each keeping its objects in a directory the test can inspect
//! and damage: the local storage, the root of a test FTP server, a local rclone remote.

use std::path::PathBuf;

use super::Deployment;
use super::ftp::{FTP_PASSWORD, FtpServer};
use super::rclone::RcloneS3;
use super::seaweed::SeaweedServer;

/// A deployment on one backend, and the directory where that backend keeps its objects.
pub struct Target {
    pub d: Deployment,
    pub storage: PathBuf,
    pub env: Vec<(&'static str, String)>,
    _server: Option<FtpServer>,
    _remote: Option<tempfile::TempDir>,
    /// The S3 server of [`Target::s3_ignoring_conditions`].
    pub s3: Option<RcloneS3>,
    /// The S3 server of [`Target::seaweedfs`], whose objects [`Target::seen`] copies into
    /// `storage`.
    seaweed: Option<SeaweedServer>,
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
            seaweed: None,
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
            seaweed: None,
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
            seaweed: None,
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
            env: s3_env(),
            _server: None,
            _remote: None,
            s3: Some(server),
            seaweed: None,
        }
    }

    /// The s3 backend on SeaweedFS, which checks signatures and honours conditional writes.
    pub fn seaweedfs() -> Self {
        let server = SeaweedServer::start();
        server.create_bucket("replays");
        let d = Deployment::new("");
        d.write_settings_with_tables("", &server.settings("replays", "osu"));
        Target {
            storage: d.root.path().join("seen"),
            d,
            env: s3_env(),
            _server: None,
            _remote: None,
            s3: None,
            seaweed: Some(server),
        }
    }

    /// The `[storage]` tables of this target's settings, for another deployment on the same
    /// storage.
    pub fn storage_tables(&self) -> String {
        let settings = std::fs::read_to_string(&self.d.config).unwrap();
        let (_, tables) = settings.split_once("[storage]").unwrap();
        let tables = tables.split("[storage.local]").next().unwrap();
        format!("[storage]{tables}")
    }

    /// Whether the storage's objects are files of `storage`, which a test may age or damage.
    pub fn is_folder(&self) -> bool {
        self.s3.is_none() && self.seaweed.is_none()
    }

    /// The folder that holds the storage's objects now (for SeaweedFS, a fresh copy of them).
    pub fn seen(&self) -> &std::path::Path {
        if let Some(server) = &self.seaweed {
            server.snapshot("replays/osu", &self.storage);
        }
        &self.storage
    }

    /// Writes the object `name` behind oiseau's back, as another tool or host would.
    pub fn put(&self, name: &str, bytes: &[u8]) {
        match (&self.s3, &self.seaweed) {
            (Some(server), _) => server.put("replays", name, bytes),
            (_, Some(server)) => server.put("replays", &format!("osu/{name}"), bytes),
            _ => {
                std::fs::create_dir_all(&self.storage).unwrap();
                std::fs::write(self.storage.join(name), bytes).unwrap();
            }
        }
    }

    /// Writes `lease` into the storage's lock behind oiseau's back, as another host holding it
    /// would (on FTP, the lock is also its directory).
    pub fn plant_lock(&self, lease: &[u8]) {
        match (&self.s3, &self.seaweed, &self._server) {
            (Some(server), _, _) => server.put("replays", "oiseau.lock", lease),
            (_, Some(server), _) => server.put("replays", "osu/oiseau.lock", lease),
            (_, _, ftp) => {
                if ftp.is_some() {
                    let _ = std::fs::create_dir(self.storage.join("oiseau.lock.d"));
                }
                std::fs::write(self.storage.join("oiseau.lock"), lease).unwrap();
            }
        }
    }

    pub fn run(&self, extra_env: &[(&str, &str)]) -> std::process::Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"));
        command.arg("--config").arg(&self.d.config).arg("run");
        for (name, value) in &self.env {
            command.env(name, value);
        }
        super::Finished::checked(command.envs(extra_env.iter().copied()).output().unwrap()).0
    }

    pub fn init(&self) {
        self.oiseau(&["init"]).expect_code(0);
    }

    /// `oiseau <args>` with this backend's environment.
    pub fn oiseau(&self, args: &[&str]) -> super::Finished {
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

/// The S3 credentials, as the s3 targets pass them.
fn s3_env() -> Vec<(&'static str, String)> {
    super::s3::env()
        .iter()
        .map(|(name, value)| (*name, (*value).to_owned()))
        .collect()
}
