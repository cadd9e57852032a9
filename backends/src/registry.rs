//! The backends oiseau knows, each described by its own module: its name, the environment
//! variables that override its settings table, and how to open it. A new backend adds one
//! entry to [`BACKENDS`]; the settings, the environment overlay and `oiseau config` follow.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::c14::C14Config;
use crate::ftp::FtpConfig;
use crate::local::LocalConfig;
use crate::rclone::RcloneConfig;
use crate::s3::S3Config;

use crate::layers::{Retry, Timeout};
use crate::{Driver, Result, StorageError, Unprepared};

/// A folder of this machine that holds the data, with the setting that names it.
pub type LocalFolder = Option<(&'static str, PathBuf)>;

/// A backend's settings table (`[storage.<NAME>]`), which knows how to open its driver.
pub trait BackendConfig: DeserializeOwned + Serialize {
    /// `storage.backend = "<NAME>"`, and the table's name.
    const NAME: &'static str;
    /// Environment variables that override a key of the table: `(variable, key)`.
    const ENV: &'static [(&'static str, &'static str)] = &[];

    /// Builds the bare driver from this table and the rest of the `[storage]` settings, with
    /// how long its operations may take; contacts nothing. The layers go on in [`open`].
    fn open(self, storage: &StorageConfig) -> Result<Opened>;

    /// Where the data lives, in words that stay the same from run to run (no secret, no
    /// session detail) and change when the settings point at another storage: a run journal
    /// records it, so that an interrupted archive is never finished on another storage.
    fn location(&self, storage: &StorageConfig) -> String;

    /// The folder of this machine that holds the data, when the storage is one (the local
    /// backend, an rclone remote that is a plain path): oiseau's own folders must stay out of
    /// it, and it out of them. `None` for a remote storage.
    fn local_folder(&self, _storage: &StorageConfig) -> LocalFolder {
        None
    }

    /// What can be checked from the table alone, before anything is contacted: a value the
    /// storage would refuse only later (after packing, say) is refused when settings load.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// One backend: what the registry needs to know of it.
#[derive(Debug)]
pub struct Backend {
    /// `storage.backend = "<name>"`, and its table is `[storage.<name>]`.
    pub name: &'static str,
    /// Environment variables that override a key of the table: `(variable, key)`. An empty
    /// variable counts as unset.
    pub env: &'static [(&'static str, &'static str)],
    /// See [`BackendConfig::open`].
    pub open: fn(&StorageConfig) -> Result<Opened>,
    /// The table with every default filled in and secrets shown as `***`; an unknown key or a
    /// bad value is an error naming it.
    pub effective: fn(&toml::Table) -> std::result::Result<toml::Table, String>,
    /// See [`BackendConfig::location`].
    pub location: fn(&StorageConfig) -> Result<String>,
    /// See [`BackendConfig::local_folder`].
    pub local_folder: fn(&StorageConfig) -> Result<LocalFolder>,
    /// See [`BackendConfig::check`]; a table that does not parse is left to `open`, which
    /// names the bad key.
    pub check: fn(&StorageConfig) -> Result<()>,
}

impl Backend {
    /// The entry of the backend whose table is `C`.
    pub const fn of<C: BackendConfig>() -> Backend {
        Backend {
            name: C::NAME,
            env: C::ENV,
            open: open_table::<C>,
            effective: effective::<C>,
            location: location_of::<C>,
            local_folder: local_folder_of::<C>,
            check: check_of::<C>,
        }
    }
}

/// Every backend, in the order `oiseau config` prints their tables.
pub static BACKENDS: &[Backend] = &[
    Backend::of::<LocalConfig>(),
    Backend::of::<FtpConfig>(),
    Backend::of::<C14Config>(),
    Backend::of::<RcloneConfig>(),
    Backend::of::<S3Config>(),
];

fn open_table<C: BackendConfig>(storage: &StorageConfig) -> Result<Opened> {
    storage.table::<C>(C::NAME)?.open(storage)
}

fn location_of<C: BackendConfig>(storage: &StorageConfig) -> Result<String> {
    let location = storage.table::<C>(C::NAME)?.location(storage);
    Ok(format!("{} {location}", C::NAME))
}

fn local_folder_of<C: BackendConfig>(storage: &StorageConfig) -> Result<LocalFolder> {
    Ok(storage.table::<C>(C::NAME)?.local_folder(storage))
}

fn check_of<C: BackendConfig>(storage: &StorageConfig) -> Result<()> {
    storage
        .table::<C>(C::NAME)
        .map_or(Ok(()), |table| table.check())
}

fn effective<C: BackendConfig>(table: &toml::Table) -> std::result::Result<toml::Table, String> {
    let typed = C::deserialize(table.clone()).map_err(|e| e.to_string())?;
    toml::Table::try_from(typed).map_err(|e| e.to_string())
}

/// The `[storage]` settings: the selected backend and each backend's own table, kept as
/// written and read by the backend that owns it.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub backend: String,
    tables: BTreeMap<String, toml::Table>,
    /// Where relative paths in the tables start from: the settings file's directory (cron
    /// starts jobs in `$HOME`, not where the operator put the file).
    pub base_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: LocalConfig::NAME.to_owned(),
            tables: BTreeMap::new(),
            base_dir: PathBuf::new(),
        }
    }
}

impl StorageConfig {
    /// The table `[storage.<name>]` as its backend's type; defaults where it is absent.
    pub fn table<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let table = self.tables.get(name).cloned().unwrap_or_default();
        T::deserialize(table)
            .map_err(|e| StorageError::config(format!("storage.{name}: {}", one_line(&e))))
    }

    /// Sets one key of a backend's table, as the environment or a test would.
    pub fn set(&mut self, backend: &str, key: &str, value: impl Into<toml::Value>) {
        self.tables
            .entry(backend.to_owned())
            .or_default()
            .insert(key.to_owned(), value.into());
    }

    /// Where the selected backend keeps the data (see [`BackendConfig::location`]).
    pub fn location(&self) -> Result<String> {
        (self.selected()?.location)(self)
    }

    /// The folder of this machine the selected backend keeps the data in, with the setting
    /// that names it (see [`BackendConfig::local_folder`]).
    pub fn local_folder(&self) -> Result<LocalFolder> {
        (self.selected()?.local_folder)(self)
    }

    /// See [`BackendConfig::check`], for the selected backend.
    pub fn check(&self) -> Result<()> {
        (self.selected()?.check)(self)
    }

    /// The selected backend's entry.
    pub fn selected(&self) -> Result<&'static Backend> {
        find(&self.backend).ok_or_else(|| {
            StorageError::config(format!(
                "storage.backend {:?} is not one of {}",
                self.backend,
                names()
            ))
        })
    }
}

fn find(name: &str) -> Option<&'static Backend> {
    BACKENDS.iter().find(|backend| backend.name == name)
}

fn names() -> String {
    BACKENDS
        .iter()
        .map(|backend| backend.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_line(error: &impl std::fmt::Display) -> String {
    error.to_string().lines().collect::<Vec<_>>().join(" ")
}

/// A backend's driver as it opens it, and how long one of its operations may take.
pub struct Opened {
    pub driver: Arc<dyn Driver>,
    pub bound: Bound,
}

/// How long one operation of a driver may take.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// The driver bounds each step of its protocol (a reply, a request) by this itself: the
    /// layer is a backstop at twice that, so that the driver's own error, which names the step
    /// that hung, comes first.
    EachStep(Duration),
    /// The layer bounds each operation by this.
    EachOperation(Duration),
}

impl Opened {
    pub fn new(driver: impl Driver + 'static, bound: Bound) -> Result<Opened> {
        Ok(Opened {
            driver: Arc::new(driver),
            bound,
        })
    }
}

/// Opens the storage the settings select, in layers, innermost first: the driver, a timeout
/// on each operation, retries of the temporary failures, and `upload_rate` (bytes a second)
/// on what is uploaded. Nothing is contacted yet: reaching the storage is the job of
/// [`Unprepared::prepare`] and the first operation.
pub fn open(config: &StorageConfig, upload_rate: Option<u64>) -> Result<Unprepared> {
    let Opened { driver, bound } = (config.selected()?.open)(config)?;
    let limit = match bound {
        Bound::EachStep(step) => step.saturating_mul(2),
        Bound::EachOperation(limit) => limit,
    };
    let timed: Arc<dyn Driver> = Arc::new(Timeout::new(driver, limit));
    let retried = Arc::new(Retry::new(timed));
    Ok(Unprepared::new(retried).with_upload_rate(upload_rate))
}

impl<'de> Deserialize<'de> for StorageConfig {
    /// Checks every table present, selected or not: a typo in any of them is an error naming
    /// it, not a silent default.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut raw = toml::Table::deserialize(deserializer)?;
        let backend = match raw.remove("backend") {
            None => StorageConfig::default().backend,
            Some(toml::Value::String(name)) if find(&name).is_some() => name,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "storage.backend {other} is not one of {}",
                    names()
                )));
            }
        };
        let mut tables = BTreeMap::new();
        for (name, value) in raw {
            let Some(entry) = find(&name) else {
                return Err(D::Error::custom(format!(
                    "unknown key storage.{name}: the storage tables are {}",
                    names()
                )));
            };
            let toml::Value::Table(table) = value else {
                return Err(D::Error::custom(format!("storage.{name} must be a table")));
            };
            (entry.effective)(&table)
                .map_err(|e| D::Error::custom(format!("storage.{name}: {e}")))?;
            tables.insert(name, table);
        }
        Ok(StorageConfig {
            backend,
            tables,
            base_dir: PathBuf::new(),
        })
    }
}

impl Serialize for StorageConfig {
    /// Every backend's table with its defaults, secrets as `***`: what `oiseau config` shows.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("backend", &self.backend)?;
        for backend in BACKENDS {
            let table = self.tables.get(backend.name).cloned().unwrap_or_default();
            let effective = (backend.effective)(&table).map_err(S::Error::custom)?;
            map.serialize_entry(backend.name, &effective)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<StorageConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn unknown_tables_keys_and_backends_are_named() {
        let err = parse("backend = \"s4\"").unwrap_err().to_string();
        assert!(
            err.contains("\"s4\" is not one of local, ftp, c14, rclone, s3"),
            "{err}"
        );
        let err = parse("[ftpp]\nurl = \"x\"").unwrap_err().to_string();
        assert!(err.contains("unknown key storage.ftpp"), "{err}");
        let err = parse("[rclone]\nremot = \"x\"").unwrap_err().to_string();
        assert!(err.contains("remot"), "{err}");
    }

    #[test]
    fn printed_tables_hide_secrets_and_show_defaults() {
        let mut config = parse("").unwrap();
        config.set("c14", "api_key", "TOP-SECRET");
        let printed = toml::to_string(&config).unwrap();
        assert!(!printed.contains("TOP-SECRET"), "{printed}");
        assert!(printed.contains("api_key = \"***\""), "{printed}");
        assert!(printed.contains("[rclone]"), "{printed}");
    }
}
