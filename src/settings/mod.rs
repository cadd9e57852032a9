//! `settings.toml`: typed, strict (an unknown key is an error naming it), with environment
//! variables on top for the secrets and the few values operators set per machine.

mod folders;
mod serve;
mod sinks;
mod values;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use backends::StorageConfig;
use serde::{Deserialize, Serialize};
use shared::Secret;

use crate::archive::gzip::Level;
use crate::units::ByteSize;
pub use serve::ServeSettings;
pub use sinks::{
    DiscordSettings, HealthcheckSettings, TelegramSettings, WEBHOOK_EVENTS, WebhookSettings,
};
pub use values::{Bandwidth, Compression};

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
    #[serde(with = "shared::duration")]
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

    /// The environment wins over the file, so existing deployments keep their secrets where
    /// they are: oiseau's own variables, then each backend's. An empty variable counts as unset.
    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let get = |variable: &str| env(variable).filter(|value| !value.is_empty());
        for (variable, set) in OWN_ENVIRONMENT {
            if let Some(value) = get(variable) {
                set(self, value);
            }
        }
        for backend in backends::BACKENDS {
            for (variable, key) in backend.env {
                if let Some(value) = get(variable) {
                    self.storage.set(backend.name, key, value);
                }
            }
        }
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
        Ok(shared::redact_userinfo(&text).unwrap_or(text))
    }
}

#[cfg(test)]
mod tests;

/// Sets one setting from its environment variable's value.
type SetFromEnv = fn(&mut Settings, String);

/// oiseau's own environment variables (the original tool's names for the chat channels), each
/// with how it sets its setting; each backend names its own (`BackendConfig::ENV`).
const OWN_ENVIRONMENT: [(&str, SetFromEnv); 5] = [
    ("TELEGRAM_TOKEN", |s, v| {
        s.telegram.token = Secret::new(v);
    }),
    ("TELEGRAM_CHAT_ID", |s, v| {
        s.telegram.chat_id = v;
    }),
    ("DISCORD_WEBHOOK_URL", |s, v| {
        s.discord.webhook_url = Secret::new(v);
    }),
    ("OISEAU_WEBHOOK_URL", |s, v| {
        s.webhook.url = Secret::new(v);
    }),
    ("OISEAU_HEALTHCHECK_URL", |s, v| {
        s.healthcheck.url = Secret::new(v);
    }),
];
