//! FTP and explicit FTPS (`ftps://`), with suppaftp.
//!
//! A logged-in session is kept between operations and checked with `NOOP` before it is used
//! again: a login can cost seconds (password hashing on the server, a TLS handshake), and a
//! server that dropped the idle session costs one fresh login. Every connect, reply and data
//! read or write is bounded by `timeout`: a dead server fails the operation promptly instead of
//! hanging the run.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use suppaftp::list::{File as ListedFile, ListParser};
use tokio::io::AsyncWriteExt;

use crate::layers::timeout::DRAINING;
use crate::{
    BackendConfig, Bound, ByteRange, Capabilities, Driver, ErrorKind, ObjectMeta, ObjectReader,
    Opened, Progress, Put, Result, Source, StorageConfig, StorageError,
};
use shared::Secret;

/// `[storage.ftp]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FtpConfig {
    /// `ftp://user@host:21/dir`, or `ftps://` for explicit TLS; the path is the storage root.
    pub url: String,
    /// Never inside the URL, so that the URL can be logged. Env `FTP_PASSWORD`.
    pub password: Secret,
    /// Bound on connecting, on every reply and on every stall of a transfer.
    #[serde(with = "shared::duration")]
    pub timeout: Duration,
}

impl Default for FtpConfig {
    fn default() -> Self {
        FtpConfig {
            url: String::new(),
            password: Secret::default(),
            timeout: Duration::from_secs(60),
        }
    }
}

mod session;
mod transfer;

use session::{Idle, Session};
use transfer::{Download, Steps, data_step};

/// The slices an upload is handed to the data connection in: each one it takes is progress.
const SLICE: usize = 64 << 10;

#[derive(Debug)]
pub struct FtpDriver {
    tls: bool,
    host: String,
    port: u16,
    user: String,
    password: Secret,
    /// Directory on the server, `""` for the login directory.
    root: String,
    timeout: Duration,
    /// A logged-in session left by the last operation, for the next one.
    idle: Arc<Idle>,
}

impl FtpDriver {
    /// Plain FTP: `RNFR`/`RNTO` and `REST`; no atomic create, no hashes.
    pub const CAPABILITIES: Capabilities = Capabilities {
        atomic_create: false,
        atomic_replace: false,
        replace_if_match: false,
        rename: true,
        server_side_hash: false,
        needs_warm_up: false,
        exclusive_lock: true,
        conditions_need_probe: false,
    };

    pub fn new(config: &FtpConfig) -> Result<Self> {
        let bad = |why: String| StorageError::config(format!("storage.ftp.url: {why}"));
        if config.url.is_empty() {
            return Err(bad("empty; set it to ftp://user@host:21/dir".into()));
        }
        let url = url::Url::parse(&config.url).map_err(|e| bad(format!("not a URL ({e})")))?;
        let tls = match url.scheme() {
            "ftp" => false,
            "ftps" => true,
            other => return Err(bad(format!("scheme {other}:// is not ftp:// or ftps://"))),
        };
        if url.password().is_some() {
            return Err(bad(
                "holds a password; put it in storage.ftp.password or FTP_PASSWORD instead".into(),
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("has no host".into()))?
            .trim_matches(['[', ']'])
            .to_owned();
        let decode = |text: &str| {
            percent_decode(text).ok_or_else(|| bad(format!("{text:?} is not valid UTF-8")))
        };
        let user = match url.username() {
            "" => "anonymous".to_owned(),
            user => decode(user)?,
        };
        let root = decode(url.path().trim_end_matches('/'))?;
        Ok(FtpDriver {
            tls,
            host,
            port: url.port().unwrap_or(21),
            user,
            password: config.password.clone(),
            root,
            timeout: config.timeout,
            idle: Arc::default(),
        })
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The size of `name`, or `None` when the server has no such file.
    async fn size_of(&self, ftp: &mut Session, name: &str) -> Result<Option<u64>> {
        match self.within("SIZE", Some(name), ftp.size(name)).await {
            Ok(size) => Ok(Some(size as u64)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn send(
        &self,
        ftp: &mut Session,
        source: &Source,
        name: &str,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let mut chunks = source.chunks();
        let mut data = self
            .within("STOR", Some(name), ftp.put_with_stream(name))
            .await?;
        // A stall is no byte acknowledged for `timeout`, which only the kernel sees once
        // the socket's buffers hold the rest (see `crate::layers::timeout::DRAINING`).
        let socket = data.get_ref().get_ref();
        if let Err(e) = socket2::SockRef::from(socket).set_tcp_user_timeout(Some(self.timeout)) {
            tracing::debug!("cannot bound the FTP data connection's unacknowledged bytes: {e}");
        }
        let mut sent = 0u64;
        while let Some(chunk) = chunks.try_next().await? {
            // Each slice the connection takes is progress.
            for slice in chunk.chunks(SLICE) {
                data_step(self.timeout, "upload", name, data.write_all(slice)).await?;
            }
            sent += chunk.len() as u64;
            progress(sent);
        }
        self.within_for(
            self.timeout + DRAINING,
            "the end of the upload",
            Some(name),
            data.finish(),
        )
        .await?;
        Ok(sent)
    }

    async fn listing(&self, ftp: &mut Session) -> Result<Vec<ListedFile>> {
        match self.within("MLSD", None, ftp.mlsd(None)).await {
            Ok(lines) => Ok(lines
                .iter()
                .filter_map(|line| ListParser::parse_mlsd(line).ok())
                .collect()),
            // Servers without MLSD: the classic LIST, in Unix or DOS style.
            Err(e) if e.kind() == ErrorKind::Other && !e.is_temporary() => {
                let lines = self.within("LIST", None, ftp.list(None)).await?;
                Ok(lines
                    .iter()
                    .filter_map(|line| {
                        ListParser::parse_posix(line)
                            .or_else(|_| ListParser::parse_dos(line))
                            .ok()
                    })
                    .collect())
            }
            Err(e) => Err(e),
        }
    }
}

impl BackendConfig for FtpConfig {
    const NAME: &'static str = "ftp";
    const ENV: &'static [(&'static str, &'static str)] = &[("FTP_PASSWORD", "password")];

    fn open(self, _storage: &StorageConfig) -> Result<Opened> {
        Opened::new(FtpDriver::new(&self)?, Bound::EachStep(self.timeout))
    }

    fn location(&self, _storage: &StorageConfig) -> String {
        self.url.trim_end_matches('/').to_owned()
    }
}

#[async_trait]
impl Driver for FtpDriver {
    fn describe(&self) -> String {
        let scheme = if self.tls { "ftps" } else { "ftp" };
        format!(
            "FTP server {scheme}://{}@{}/{}",
            self.user,
            self.address(),
            self.root.trim_start_matches('/')
        )
    }

    fn capabilities(&self) -> Capabilities {
        Self::CAPABILITIES
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let size = self
            .with_session(async |ftp| self.size_of(ftp, name).await)
            .await?;
        size.map(|size| ObjectMeta::new(name, size))
            .ok_or_else(|| StorageError::not_found(name))
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        let listed = self
            .with_session(async |ftp| self.listing(ftp).await)
            .await?;
        let mut objects: Vec<ObjectMeta> = listed
            .into_iter()
            .filter(|file| file.is_file())
            .map(|file| ObjectMeta::new(file.name(), file.size() as u64))
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    /// `REST` to the range's start, `RETR`, and only the range's bytes read: a range that
    /// ends before the object does closes the session there instead of reading the rest.
    async fn read(&self, name: &str, range: ByteRange) -> Result<ObjectReader> {
        let mut ftp = self.session().await?;
        let Some(size) = self.size_of(&mut ftp, name).await? else {
            self.release(ftp);
            return Err(StorageError::not_found(name));
        };
        let wanted = range.len_within(size);
        let start = usize::try_from(range.start).map_err(|_| {
            StorageError::other(format!("{range} of {name} is beyond this machine's reach"))
        })?;
        if start > 0 {
            self.within("REST", Some(name), ftp.resume_transfer(start))
                .await?;
        }
        let data = self
            .within("RETR", Some(name), ftp.retr_as_stream(name))
            .await?;
        let download = Download {
            ftp,
            idle: Arc::clone(&self.idle),
            data,
            steps: Steps {
                name: name.to_owned(),
                timeout: self.timeout,
            },
            wanted,
            to_end: range.start + wanted >= size,
        };
        let chunks = futures_util::stream::try_unfold(download, Download::next_chunk);
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(
            chunks,
        ))))
    }

    async fn put(&self, name: &str, put: &Put<'_>) -> Result<u64> {
        let mut ftp = self.session().await?;
        match self.send(&mut ftp, put.source, name, put.progress).await {
            Ok(sent) => {
                self.release(ftp);
                Ok(sent)
            }
            Err(e) => {
                // The failed session may be unusable: the removal gets a fresh one.
                drop(ftp);
                let removal = self
                    .with_session(async |ftp| self.within("DELE", Some(name), ftp.rm(name)).await);
                match removal.await {
                    Ok(()) => {}
                    Err(removal) if removal.kind() == ErrorKind::NotFound => {}
                    Err(removal) => {
                        tracing::warn!("cannot remove the partial upload {name}: {removal}");
                    }
                }
                Err(e)
            }
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.with_session(async |ftp| {
            match self
                .within("RNFR/RNTO", Some(from), ftp.rename(from, to))
                .await
            {
                Ok(()) => Ok(()),
                // Some servers refuse to rename onto an existing file; replacing then takes a
                // delete first (a moment without the object, but never a partial one).
                Err(e)
                    if e.kind() != ErrorKind::NotFound
                        && self.size_of(ftp, to).await?.is_some() =>
                {
                    self.within("DELE", Some(to), ftp.rm(to)).await?;
                    self.within("RNFR/RNTO", Some(from), ftp.rename(from, to))
                        .await
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `MDTM`, in the server's clock (UTC, as RFC 3659 says).
    async fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        let time = self
            .with_session(async |ftp| self.within("MDTM", Some(name), ftp.mdtm(name)).await)
            .await?;
        Ok(Some(time.and_utc().into()))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.with_session(async |ftp| self.within("DELE", Some(name), ftp.rm(name)).await)
            .await
    }

    /// `MKD <name>.d`, which a server grants to one client only, then the lease under `name`.
    async fn create_lock(&self, name: &str, lease: &Source) -> Result<()> {
        let dir = lock_dir(name);
        self.with_session(async |ftp| {
            match self.within("MKD", Some(&dir), ftp.mkdir(&dir)).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let held = self
                        .listing(ftp)
                        .await?
                        .iter()
                        .any(|entry| entry.is_directory() && entry.name() == dir);
                    Err(if held {
                        StorageError::already_exists(name)
                    } else {
                        e
                    })
                }
            }
        })
        .await?;
        // The lease is written under a partial name and moved into place: `STOR` is not atomic,
        // and another writer confirming its own lease must never read this one half-written.
        // A lock folder without its lease would keep every writer out until it is judged
        // abandoned: undone when the lease cannot be written, so that a retry starts clean.
        let staging = crate::partial_name(name);
        let written = match self.put(&staging, &Put::new(lease)).await {
            Ok(_) => self.rename(&staging, name).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let _ = self.delete(&staging).await;
            let undone = self
                .with_session(async |ftp| self.within("RMD", Some(&dir), ftp.rmdir(&dir)).await)
                .await;
            if let Err(undo) = undone {
                tracing::warn!("cannot remove {dir} after its lease failed: {undo}");
            }
            return Err(e);
        }
        Ok(())
    }

    async fn remove_lock(&self, name: &str) -> Result<()> {
        match self.delete(name).await {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let dir = lock_dir(name);
        self.with_session(async |ftp| self.within("RMD", Some(&dir), ftp.rmdir(&dir)).await)
            .await
    }
}

/// The directory whose creation is the lock `name` on FTP.
pub fn lock_dir(name: &str) -> String {
    format!("{name}.d")
}

/// Decodes `%XX` escapes of a URL part.
fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}
