//! `[storage.rclone]`: which remote, which binary, and the daemon's flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RcloneDriver;
use crate::{BackendConfig, Bound, Opened, Result, StorageConfig, StorageError};

/// `[storage.rclone]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RcloneConfig {
    /// Any rclone path: `name:path`, `:backend,opts:path`, or a local path. Env `RCLONE_REMOTE`.
    pub remote: String,
    pub binary: String,
    /// An rclone config file; empty for rclone's own lookup.
    pub config: String,
    /// Extra flags for the daemon, e.g. `["--retries", "5"]`. A storage class here would also
    /// apply to the index: use `archive_options`.
    pub flags: Vec<String>,
    /// Backend options for archive uploads only, in rclone's connection-string syntax, e.g.
    /// `storage_class=GLACIER` (S3), `access_tier=archive` (Azure Blob).
    pub archive_options: String,
    /// How long a restored archive stays readable (S3 remotes).
    pub restore_days: u32,
    /// Expedited, Standard or Bulk (S3 remotes).
    pub restore_tier: String,
    /// Bound on each operation, a whole upload included.
    #[serde(with = "shared::duration")]
    pub timeout: Duration,
}

impl Default for RcloneConfig {
    fn default() -> Self {
        RcloneConfig {
            remote: String::new(),
            binary: "rclone".to_owned(),
            config: String::new(),
            flags: Vec::new(),
            archive_options: String::new(),
            restore_days: 7,
            restore_tier: "Standard".to_owned(),
            timeout: Duration::from_secs(600),
        }
    }
}

impl BackendConfig for RcloneConfig {
    const NAME: &'static str = "rclone";
    const ENV: &'static [(&'static str, &'static str)] = &[("RCLONE_REMOTE", "remote")];

    fn open(self, _storage: &StorageConfig) -> Result<Opened> {
        Opened::new(RcloneDriver::new(&self)?, Bound::EachStep(self.timeout))
    }

    fn location(&self, _storage: &StorageConfig) -> String {
        self.remote.clone()
    }

    /// A remote without a `:` is a path of this machine to rclone (its `local` backend);
    /// only an absolute one is compared, as rclone resolves a relative one from its own
    /// working folder.
    fn local_folder(&self, _storage: &StorageConfig) -> Option<(&'static str, PathBuf)> {
        let path = Path::new(&self.remote);
        (!self.remote.contains(':') && path.is_absolute())
            .then(|| ("storage.rclone.remote", path.to_owned()))
    }
}

/// `remote` with backend `options` added, in rclone's connection-string syntax: `name:path` ->
/// `name,options:path`, `:backend,opts:path` -> `:backend,opts,options:path`. A local path has
/// no backend to take options.
pub(super) fn with_options(remote: &str, options: &str) -> Result<String> {
    if options.trim().is_empty() {
        return Ok(remote.to_owned());
    }
    // The ':' that ends the remote's name and options, outside quotes.
    let mut quote = None;
    let start = usize::from(remote.starts_with(':'));
    let end = remote.char_indices().skip(start).find_map(|(at, c)| {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), c) if c == open => quote = None,
            (None, ':') => return Some(at),
            (None, '/') if start == 0 => return Some(usize::MAX),
            _ => {}
        }
        None
    });
    match end {
        Some(at) if at != usize::MAX => Ok(format!(
            "{},{}{}",
            &remote[..at],
            options.trim().trim_start_matches(','),
            &remote[at..]
        )),
        _ => Err(StorageError::config(format!(
            "storage.rclone.archive_options need a remote (name:path or :backend:path); {remote} \
             is a local path"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_options_go_into_the_connection_string() {
        assert_eq!(
            with_options("s3glacier:replays/osu", "storage_class=GLACIER").unwrap(),
            "s3glacier,storage_class=GLACIER:replays/osu"
        );
        assert_eq!(
            with_options(
                ":s3,endpoint='http://h:9000':b/osu",
                "storage_class=GLACIER"
            )
            .unwrap(),
            ":s3,endpoint='http://h:9000',storage_class=GLACIER:b/osu"
        );
        assert_eq!(with_options("remote:dir", "").unwrap(), "remote:dir");
        assert!(with_options("/srv/backup", "storage_class=GLACIER").is_err());
    }
}
