//! A scratch deployment of oiseau for end-to-end tests: a temp folder, a local storage, a work
//! dir and a settings file, driven through the real binary.

#![allow(dead_code)] // each test file uses its own share of these helpers

pub mod conformance;
pub mod ftp;
pub mod http;
pub mod proxy;
pub mod rclone;
pub mod s3;
pub mod seaweed;
pub mod seed;
pub mod target;
pub mod telegram;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

pub use oiseau::sample::noise;

pub const INDEX: &str = "c14_index.txt";

/// Environment variables a developer's shell might carry that would change what oiseau does.
const CLEARED_ENV: [&str; 15] = [
    "DISCORD_WEBHOOK_URL",
    "OISEAU_WEBHOOK_URL",
    "OISEAU_HEALTHCHECK_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "OISEAU_CONFIG",
    "OISEAU_LOG",
    "TELEGRAM_TOKEN",
    "TELEGRAM_CHAT_ID",
    "ONLINE_API_KEY",
    "C14_SYNC_NAME",
    "RCLONE_REMOTE",
    "FTP_PASSWORD",
    "RUST_LOG",
];

pub struct Deployment {
    pub root: tempfile::TempDir,
    pub temp: PathBuf,
    pub storage: PathBuf,
    pub work: PathBuf,
    pub config: PathBuf,
}

impl Deployment {
    /// A deployment whose settings are `extra` appended to a minimal local-backend file
    /// (threshold 1 KiB, min_age 0s).
    pub fn new(extra: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let temp = root.path().join("temp");
        let storage = root.path().join("backup");
        let work = root.path().join("work");
        std::fs::create_dir_all(&temp).unwrap();
        let config = root.path().join("settings.toml");
        let deployment = Deployment {
            temp,
            storage,
            work,
            config,
            root,
        };
        deployment.write_settings(extra);
        deployment
    }

    /// Writes the settings file: `top` (top-level keys, which replace the defaults of the same
    /// name) then `tables`, then the local storage table.
    pub fn write_settings(&self, top: &str) {
        self.write_settings_with_tables(top, "");
    }

    pub fn write_settings_with_tables(&self, top: &str, tables: &str) {
        let mut text = String::new();
        for (key, value) in [
            ("temp_dir", "\"temp\""),
            ("work_dir", "\"work\""),
            ("threshold", "\"1 KiB\""),
            ("min_age", "\"0s\""),
        ] {
            if !top
                .lines()
                .any(|line| line.split('=').next().unwrap().trim() == key)
            {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text.push_str(&format!(
            "{top}\n{tables}\n[storage.local]\npath = \"backup\"\n"
        ));
        std::fs::write(&self.config, text).unwrap();
    }

    /// Runs `oiseau --config <settings> <args>` with a clean environment plus `env`.
    pub fn oiseau(&self, args: &[&str], env: &[(&str, &str)]) -> Finished {
        Finished::checked(self.command(args, env).output().unwrap())
    }

    /// Same as [`Deployment::oiseau`], without blocking the async test's runtime.
    pub async fn oiseau_async(&self, args: &[&str], env: &[(&str, &str)]) -> Finished {
        let mut command = tokio::process::Command::from(self.command(args, env));
        Finished::checked(command.output().await.unwrap())
    }

    /// Starts `oiseau <args>` in the background (a server), its output discarded.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        self.command(args, env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"));
        command.arg("--config").arg(&self.config).args(args);
        for name in CLEARED_ENV {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        command
    }

    /// Writes replays with the given ids, each a distinct, incompressible-ish 2-5 KiB, and
    /// returns their contents by name.
    pub fn add_replays(&self, ids: &[u64]) -> BTreeMap<String, Vec<u8>> {
        ids.iter()
            .map(|&id| {
                let name = format!("replay_{id}.osr");
                let bytes = replay_bytes(id);
                std::fs::write(self.temp.join(&name), &bytes).unwrap();
                (name, bytes)
            })
            .collect()
    }

    /// `oiseau status --json`, parsed; the command must succeed.
    pub fn status_json(&self, env: &[(&str, &str)]) -> serde_json::Value {
        let out = self.oiseau(&["status", "--json"], env).expect_code(0);
        serde_json::from_str(&out.stdout()).unwrap()
    }

    /// The name of the last archive, as `status` tells it.
    pub fn last_archive(&self, env: &[(&str, &str)]) -> String {
        let status = self.status_json(env);
        status["last_archive"]["name"].as_str().unwrap().to_owned()
    }

    pub fn temp_names(&self) -> Vec<String> {
        names_in(&self.temp)
    }

    pub fn storage_names(&self) -> Vec<String> {
        names_in(&self.storage)
    }

    pub fn index(&self) -> Vec<u8> {
        std::fs::read(self.storage.join(INDEX)).unwrap()
    }

    /// Names of the archives on the storage, by id.
    pub fn archives(&self) -> Vec<String> {
        self.archives_in(&self.storage)
    }

    /// Names of the archives in a storage directory, by id.
    pub fn archives_in(&self, storage: &Path) -> Vec<String> {
        let mut archives: Vec<String> = names_in(storage)
            .into_iter()
            .filter(|name| name.ends_with(".tar.gz"))
            .collect();
        archives.sort_by_key(|name| archive_id(name));
        archives
    }
}

/// The id in `<unix_time>_replays_<id>.tar.gz`.
pub fn archive_id(name: &str) -> u64 {
    name.rsplit_once("_replays_")
        .and_then(|(_, rest)| rest.strip_suffix(".tar.gz"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not an archive name"))
}

pub fn replay_bytes(id: u64) -> Vec<u8> {
    noise(id, 2048 + (id * 7919 % 3072) as usize)
}

pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The members of a `.tar.gz`, by name, read with the tar and flate2 crates.
pub fn archive_members(path: &Path) -> BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap());
    let mut archive = tar::Archive::new(gz);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Sets a file's modification time, to make a replay young or old.
pub fn set_age(path: &Path, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// Every secret the tests hand to oiseau contains this marker.
pub const SECRET_MARKER: &str = "TEST-SECRET";

/// Every point where the fault tests kill a run (`OISEAU_CRASH_AT`).
pub const CRASH_STEPS: [&str; 5] = [
    "after-pack",
    "mid-upload",
    "after-upload",
    "after-index",
    "mid-cleanup",
];

/// A finished oiseau process.
pub struct Finished(pub Output);

impl Finished {
    /// Wraps an output after checking that no test secret leaked into it: every run of the
    /// suite goes through here.
    pub fn checked(output: Output) -> Self {
        for stream in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(
                !text.contains(SECRET_MARKER),
                "a secret was printed:\n{text}"
            );
        }
        Finished(output)
    }

    pub fn code(&self) -> i32 {
        self.0.status.code().expect("oiseau exited by itself")
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts that standard output says `words`, showing it when it does not.
    #[track_caller]
    pub fn assert_stdout_has(&self, words: &str) -> &Self {
        let stdout = self.stdout();
        assert!(stdout.contains(words), "stdout lacks {words:?}:\n{stdout}");
        self
    }

    /// Asserts that standard error says `words`, showing it when it does not.
    #[track_caller]
    pub fn assert_stderr_has(&self, words: &str) -> &Self {
        let stderr = self.stderr();
        assert!(stderr.contains(words), "stderr lacks {words:?}:\n{stderr}");
        self
    }

    /// Asserts the exit code, showing the output when it is not the expected one.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// The invariants a backup keeps whatever happens, checked on a storage that is a directory
/// on this machine (local, or the root of a test FTP server):
/// - every replay in `original` is in the temp folder unchanged, or inside an archive that the
///   index lists, byte for byte;
/// - index ids are contiguous from 1 and each indexed archive exists exactly once.
///
/// With `settled` (a run has completed since the last fault), also: nothing on the storage is
/// outside the index, and no partial upload is left under any name.
///
/// Returns the names of the replays found in archives.
pub fn assert_nothing_lost(
    original: &BTreeMap<String, Vec<u8>>,
    temp: &Path,
    storage: &Path,
    settled: bool,
) -> Vec<String> {
    let index = std::fs::read_to_string(storage.join(INDEX)).expect("the index exists");
    let ids: Vec<u64> = index
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "index ids: {index:?}"
    );
    let names = names_in(storage);
    assert!(
        !settled || names.iter().all(|n| !n.ends_with(".oiseau-part")),
        "partial uploads left: {names:?}"
    );
    let archives: Vec<&String> = names.iter().filter(|n| n.ends_with(".tar.gz")).collect();
    let mut archived = BTreeMap::new();
    for id in &ids {
        let matching: Vec<&&String> = archives.iter().filter(|n| archive_id(n) == *id).collect();
        assert_eq!(matching.len(), 1, "archive {id}: {names:?}");
        for (name, bytes) in archive_members(&storage.join(matching[0])) {
            assert!(
                archived.insert(name.clone(), bytes).is_none(),
                "{name} archived twice"
            );
        }
    }
    if settled {
        assert_eq!(
            archives.len(),
            ids.len(),
            "archives outside the index: {names:?}"
        );
    }
    for (name, bytes) in original {
        let in_temp = std::fs::read(temp.join(name)).ok();
        match (in_temp, archived.get(name)) {
            (Some(kept), _) => assert_eq!(&kept, bytes, "{name} changed in the temp folder"),
            (None, Some(stored)) => assert_eq!(stored, bytes, "{name} differs in its archive"),
            (None, None) => panic!("{name} was deleted but is in no indexed archive"),
        }
    }
    archived.into_keys().collect()
}

/// Writes `count` replays of `size` bytes each, ids from `first`.
pub fn add_sized_replays(
    temp: &Path,
    first: u64,
    count: u64,
    size: usize,
) -> BTreeMap<String, Vec<u8>> {
    (first..first + count)
        .map(|id| {
            let name = format!("replay_{id}.osr");
            let bytes = noise(id, size);
            std::fs::write(temp.join(&name), &bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

/// SHA-256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bytes `oiseau restore` says it read from the storage.
pub fn bytes_read(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("read ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no \"read N bytes\" line in:\n{stdout}"))
}
