//! `settings.toml`: typed, strict (an unknown key is an error naming it), with environment
//! variables on top for the secrets and the few values operators set per machine.

mod folders;
mod serve;
mod sinks;
mod values;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use backends::{Secret, StorageConfig};
use serde::{Deserialize, Serialize};

use crate::gzip::Level;
pub use serve::ServeSettings;
pub use sinks::{
    DiscordSettings, HealthcheckSettings, TelegramSettings, WEBHOOK_EVENTS, WebhookSettings,
};
pub use values::{Bandwidth, ByteSize, Compression};

/// Where `--config` points when neither the flag nor `OISEAU_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "settings.toml";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where new replays land.
    pub temp_dir: PathBuf,
    /// A run packs only once the replays in `temp_dir` add up to this much.
    pub threshold: ByteSize,
    /// Replays younger than this may still be being written and wait for the next run.
    #[serde(with = "backends::duration")]
    pub min_age: Duration,
    /// Lock file, run journal and spool.
    pub work_dir: PathBuf,
    /// gzip effort: `"auto"` or a level 0-9.
    pub compression: Compression,
    /// A cap on upload speed, so that a backup never starves the game server's uplink.
    pub bandwidth: Bandwidth,
    /// A Prometheus textfile (node_exporter's collector) rewritten after every run; empty = off.
    pub metrics_file: PathBuf,
    pub storage: StorageConfig,
    pub telegram: TelegramSettings,
    pub discord: DiscordSettings,
    pub webhook: WebhookSettings,
    pub healthcheck: HealthcheckSettings,
    pub serve: ServeSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            temp_dir: PathBuf::from("temp"),
            threshold: ByteSize(500 * 1024 * 1024),
            min_age: Duration::from_secs(60),
            work_dir: PathBuf::from(".oiseau"),
            compression: Compression(Level::Auto),
            bandwidth: Bandwidth::default(),
            metrics_file: PathBuf::new(),
            storage: StorageConfig::default(),
            telegram: TelegramSettings::default(),
            discord: DiscordSettings::default(),
            webhook: WebhookSettings::default(),
            healthcheck: HealthcheckSettings::default(),
            serve: ServeSettings::default(),
        }
    }
}

/// A settings value that the settings file could not express: bad usage, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

impl Settings {
    /// Reads the settings file, applies the environment and resolves relative paths against the
    /// file's directory (cron starts jobs in `$HOME`, not where the operator put the file).
    ///
    /// A missing file is an error when it was asked for by name; the default `settings.toml`
    /// may be absent, and then the defaults apply relative to the current directory.
    pub fn load(path: &Path, explicit: bool, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let mut settings = match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut settings: Settings = toml::from_str(&text).map_err(|e| {
                    SettingsError(format!(
                        "{}: {}",
                        path.display(),
                        e.to_string().lines().collect::<Vec<_>>().join(" ")
                    ))
                })?;
                settings.refuse_empty_paths()?;
                let base = path.parent().unwrap_or(Path::new(""));
                settings.resolve_paths(base);
                settings
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                tracing::info!(
                    "no settings file {}: using the defaults (temp folder ./temp, storage \
                     ./backup); copy settings.sample.toml there, or pass --config",
                    path.display()
                );
                Settings::default()
            }
            Err(e) => {
                let advice = match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        "it does not exist; pass --config with an existing file \
                         (settings.sample.toml lists every setting)"
                    }
                    std::io::ErrorKind::InvalidData => {
                        "it is not UTF-8 text; save it as UTF-8 (TOML requires it)"
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        "permission denied; let the user oiseau runs as read it"
                    }
                    std::io::ErrorKind::IsADirectory => {
                        "it is a folder; pass --config with the settings file in it"
                    }
                    _ => &format!("{}; check the file", backends::io_words(&e)),
                };
                return Err(SettingsError(format!(
                    "cannot read the settings file {}: {advice}",
                    path.display()
                ))
                .into());
            }
        };
        settings.apply_env(env);
        settings.validate()?;
        Ok(settings)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.temp_dir,
            &mut self.work_dir,
            &mut self.metrics_file,
            &mut self.serve.cache_dir,
        ] {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = base.join(&*path);
            }
        }
        base.clone_into(&mut self.storage.base_dir);
    }

    /// The original tool's environment names win over the file, so existing deployments keep
    /// their secrets where they are. An empty variable counts as unset. Each backend names its
    /// own variables.
    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let get = |name: &str| env(name).filter(|value| !value.is_empty());
        if let Some(token) = get("TELEGRAM_TOKEN") {
            self.telegram.token = Secret::new(token);
        }
        if let Some(chat_id) = get("TELEGRAM_CHAT_ID") {
            self.telegram.chat_id = chat_id;
        }
        if let Some(url) = get("DISCORD_WEBHOOK_URL") {
            self.discord.webhook_url = Secret::new(url);
        }
        if let Some(url) = get("OISEAU_WEBHOOK_URL") {
            self.webhook.url = Secret::new(url);
        }
        if let Some(url) = get("OISEAU_HEALTHCHECK_URL") {
            self.healthcheck.url = Secret::new(url);
        }
        self.storage.apply_env(env);
    }

    /// Before relative paths are resolved: an empty one would become the settings' folder.
    fn refuse_empty_paths(&self) -> Result<()> {
        for (key, path) in [("temp_dir", &self.temp_dir), ("work_dir", &self.work_dir)] {
            if path.as_os_str().is_empty() {
                return Err(SettingsError(format!(
                    "{key} is empty; set it to a folder (a relative one starts at the settings \
                     file's folder)"
                ))
                .into());
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if self.threshold.0 == 0 {
            return Err(SettingsError(
                "threshold must be above 0 bytes; use `oiseau run --force` to pack whatever is there"
                    .into(),
            )
            .into());
        }
        if self.serve.max_concurrent_reads == 0 {
            return Err(
                SettingsError("serve.max_concurrent_reads must be at least 1".into()).into(),
            );
        }
        let listen = self.serve.listen.trim();
        let has_port = listen
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !has_port {
            return Err(SettingsError(format!(
                "serve.listen {listen:?} is not an address with a port, such as \"127.0.0.1:8750\""
            ))
            .into());
        }
        // A value the storage would refuse only later (after packing) is refused now.
        if let Err(e) = self.storage.check() {
            return Err(SettingsError(e.to_string()).into());
        }
        self.check_folders_apart()?;
        if let Some(unknown) = self
            .webhook
            .events
            .iter()
            .find(|event| !WEBHOOK_EVENTS.contains(&event.as_str()))
        {
            return Err(SettingsError(format!(
                "webhook.events: unknown event {unknown:?}; the events are {}",
                WEBHOOK_EVENTS.join(", ")
            ))
            .into());
        }
        Ok(())
    }

    /// Where `serve` keeps its cache: `[serve] cache_dir`, or `work_dir/serve-cache`.
    pub fn serve_cache_dir(&self) -> PathBuf {
        if self.serve.cache_dir.as_os_str().is_empty() {
            self.work_dir.join("serve-cache")
        } else {
            self.serve.cache_dir.clone()
        }
    }

    /// See [`folders::check_apart`]. A storage table that does not parse is left to the
    /// storage's opening, which names the bad key.
    fn check_folders_apart(&self) -> Result<()> {
        let cache_dir = self.serve_cache_dir();
        let storage = self.storage.local_folder().ok().flatten();
        let mut folders = vec![
            ("temp_dir", self.temp_dir.as_path()),
            ("work_dir", self.work_dir.as_path()),
            ("serve.cache_dir", cache_dir.as_path()),
        ];
        if let Some((key, path)) = &storage {
            folders.push((key, path.as_path()));
        }
        folders::check_apart(&folders)?;
        Ok(())
    }

    /// Settings as TOML with secrets shown as `***`, also a password written inside a URL
    /// (`ftp://user:password@host/`, an endpoint or API URL with credentials).
    pub fn to_redacted_toml(&self) -> Result<String> {
        let text = toml::to_string_pretty(self).context("cannot print the settings")?;
        Ok(backends::redact_userinfo(&text).unwrap_or(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load_text(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load(&path, true, env)
    }

    #[test]
    fn sizes_take_the_units_operators_write() {
        assert_eq!(ByteSize::parse("500 MiB"), Ok(ByteSize(500 << 20)));
        assert_eq!(ByteSize::parse("500MB"), Ok(ByteSize(500_000_000)));
        assert_eq!(ByteSize::parse("1.5 GiB"), Ok(ByteSize(3 << 29)));
        assert_eq!(ByteSize::parse("1234"), Ok(ByteSize(1234)));
        assert_eq!(ByteSize::parse("12 B"), Ok(ByteSize(12)));
        assert_eq!(ByteSize::parse(".5 KiB"), Ok(ByteSize(512)));
        assert_eq!(
            ByteSize::parse("0.0001 KB"),
            Ok(ByteSize(0)),
            "rounded to the byte"
        );
        assert!(ByteSize::parse(".").is_err());
        assert_eq!(ByteSize(1536).to_string(), "1.5 KiB");
        assert_eq!(ByteSize((500 << 20) - 1).to_string(), "500.0 MiB");
        assert_eq!(ByteSize(1023).to_string(), "1023 B");
        assert!(
            ByteSize::parse("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(ByteSize::parse("MiB").is_err());
    }

    #[test]
    fn compression_is_auto_or_a_level() {
        assert_eq!(
            load_text("", &no_env).unwrap().compression,
            Compression(Level::Auto)
        );
        let s = load_text("compression = 6", &no_env).unwrap();
        assert_eq!(s.compression, Compression(Level::Fixed(6)));
        for bad in ["compression = 10", "compression = \"fast\""] {
            let err = load_text(bad, &no_env).unwrap_err();
            assert!(format!("{err:#}").contains("compression is"), "{err:#}");
        }
    }

    #[test]
    fn a_bad_size_says_what_is_expected() {
        for (text, expected) in [
            ("threshold = -1", "negative"),
            ("threshold = 1.5", "not a whole number of bytes"),
            ("threshold = true", "whole bytes (2048) or a string"),
            ("threshold = \"99999999999999 GiB\"", "is too large"),
            ("threshold = \"20000000000 GB\"", "is too large"),
            ("bandwidth = \"-5 MiB/s\"", "is negative"),
            ("[serve]\nlisten = \"127.0.0.1\"", "serve.listen"),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\narchive_class = \"COLD\"",
                "not an S3 storage class",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"minio.example.org:9000\"",
                "must start with https://",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"ftp://h:9\"",
                "must start with https://",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"My_Bucket\"",
                "not an S3 bucket name",
            ),
        ] {
            let err = load_text(text, &no_env).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{text}: {err:#}");
        }
    }

    #[test]
    fn empty_paths_are_refused() {
        for text in [
            "temp_dir = \"\"",
            "work_dir = \"\"",
            "[storage.local]\npath = \"\"",
        ] {
            let err = load_text(text, &no_env).unwrap_err();
            assert!(format!("{err:#}").contains("empty"), "{text}: {err:#}");
        }
    }

    #[test]
    fn threshold_accepts_an_integer_or_a_string() {
        let s = load_text("threshold = 2048", &no_env).unwrap();
        assert_eq!(s.threshold, ByteSize(2048));
        let s = load_text("threshold = \"2 KiB\"", &no_env).unwrap();
        assert_eq!(s.threshold, ByteSize(2048));
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = load_text("[storage.local]\npth = \"x\"\n", &no_env).unwrap_err();
        assert!(format!("{err:#}").contains("pth"), "{err:#}");
        let err = load_text("tresh = 5\n", &no_env).unwrap_err();
        assert!(format!("{err:#}").contains("tresh"), "{err:#}");
    }

    #[test]
    fn relative_paths_are_taken_from_the_settings_file_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "temp_dir = \"incoming\"\ntemp_dir_is_not = 1\n").unwrap();
        assert!(Settings::load(&path, true, &no_env).is_err());
        std::fs::write(
            &path,
            "temp_dir = \"incoming\"\nwork_dir = \"/var/lib/oiseau\"\n",
        )
        .unwrap();
        let s = Settings::load(&path, true, &no_env).unwrap();
        assert_eq!(s.temp_dir, dir.path().join("incoming"));
        assert_eq!(s.work_dir, PathBuf::from("/var/lib/oiseau"));
        let local = backends::local::LocalConfig::from_storage(&s.storage).unwrap();
        assert_eq!(local.path, dir.path().join("backup"));
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let env = |name: &str| match name {
            "TELEGRAM_TOKEN" => Some("from-env".to_owned()),
            "TELEGRAM_CHAT_ID" => Some(String::new()),
            _ => None,
        };
        let s = load_text(
            "[telegram]\ntoken = \"from-file\"\nchat_id = \"42\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(s.telegram.token.expose(), "from-env");
        assert_eq!(
            s.telegram.chat_id, "42",
            "an empty variable counts as unset"
        );
    }

    #[test]
    fn a_missing_file_is_an_error_only_when_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        assert!(Settings::load(&path, true, &no_env).is_err());
        let s = Settings::load(&path, false, &no_env).unwrap();
        assert_eq!(s.threshold, ByteSize(500 << 20));
    }

    #[test]
    fn the_sample_settings_file_is_valid_and_matches_the_defaults() {
        let sample = include_str!("../../settings.sample.toml");
        let parsed: Settings = toml::from_str(sample).unwrap();
        let defaults = Settings::default();
        assert_eq!(
            toml::to_string(&parsed).unwrap(),
            toml::to_string(&defaults).unwrap()
        );
    }

    #[test]
    fn bandwidth_is_a_rate_or_empty() {
        assert_eq!(load_text("", &no_env).unwrap().bandwidth, Bandwidth(None));
        let s = load_text("bandwidth = \"20 MiB/s\"", &no_env).unwrap();
        assert_eq!(s.bandwidth, Bandwidth(Some(20 << 20)));
        for (bad, expected) in [
            ("bandwidth = \"20 MiB\"", "not a rate"),
            ("bandwidth = \"0 B/s\"", "would stop every upload"),
            ("bandwidth = \"fast/s\"", "unknown unit"),
        ] {
            let err = load_text(bad, &no_env).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{bad}: {err:#}");
        }
    }

    #[test]
    fn webhook_events_are_checked_and_urls_come_from_the_environment() {
        let err = load_text("[webhook]\nevents = [\"done\", \"finished\"]\n", &no_env).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown event \"finished\""),
            "{err:#}"
        );
        let env = |name: &str| {
            matches!(
                name,
                "DISCORD_WEBHOOK_URL" | "OISEAU_WEBHOOK_URL" | "OISEAU_HEALTHCHECK_URL"
            )
            .then(|| format!("https://example.com/{name}"))
        };
        let s = load_text("", &env).unwrap();
        assert!(
            s.discord
                .webhook_url
                .expose()
                .ends_with("DISCORD_WEBHOOK_URL")
        );
        assert!(s.webhook.url.expose().ends_with("OISEAU_WEBHOOK_URL"));
        assert!(
            s.healthcheck
                .url
                .expose()
                .ends_with("OISEAU_HEALTHCHECK_URL")
        );
        let printed = s.to_redacted_toml().unwrap();
        assert!(!printed.contains("example.com"), "{printed}");
    }

    #[test]
    fn printed_settings_hide_passwords_written_in_urls() {
        let s = load_text(
            "[telegram]\napi_url = \"https://bot:tg-pw@proxy.example\"\n\
             [storage.ftp]\nurl = \"ftp://backup:ftp-pw@ftp.example/replays\"\n\
             [storage.s3]\nendpoint = \"https://key:s3-pw@s3.example\"\n",
            &no_env,
        )
        .unwrap();
        let printed = s.to_redacted_toml().unwrap();
        for password in ["tg-pw", "ftp-pw", "s3-pw"] {
            assert!(!printed.contains(password), "{printed}");
        }
        assert!(
            printed.contains("ftp://backup:***@ftp.example/replays"),
            "{printed}"
        );
    }

    #[test]
    fn printed_settings_hide_the_token() {
        let s = load_text("[telegram]\ntoken = \"123:SECRET\"\n", &no_env).unwrap();
        let printed = s.to_redacted_toml().unwrap();
        assert!(!printed.contains("SECRET"));
        assert!(printed.contains("token = \"***\""), "{printed}");
    }
}
