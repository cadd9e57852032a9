//! FTP and explicit FTPS (`ftps://`), with suppaftp.
//!
//! Each operation opens its own session (connect, login, binary mode, change to the root),
//! so a server that drops idle connections between the steps of a run costs nothing. Every
//! connect, reply and data read or write is bounded by `timeout`: a dead server fails the
//! operation promptly instead of hanging the run.

use std::future::Future;
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use suppaftp::FtpError;
use suppaftp::list::{File as ListedFile, ListParser};
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::tokio_rustls::{TlsConnector, rustls};
use suppaftp::types::FileType;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::{
    ObjectMeta, ObjectReader, Progress, Result, Secret, Source, Storage, StorageError, WriteMode,
    partial_name,
};

/// `[storage.ftp]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FtpConfig {
    /// `ftp://user@host:21/dir`, or `ftps://` for explicit TLS; the path is the storage root.
    pub url: String,
    /// Never inside the URL, so that the URL can be logged. Env `FTP_PASSWORD`.
    pub password: Secret,
    /// Bound on connecting, on every reply and on every stall of a transfer.
    #[serde(with = "crate::duration")]
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

/// Size of the chunks read from the file being uploaded and from the data connection.
const CHUNK: usize = 256 * 1024;

type Session = AsyncRustlsFtpStream;

#[derive(Debug)]
pub struct FtpStorage {
    tls: bool,
    host: String,
    port: u16,
    user: String,
    password: Secret,
    /// Directory on the server, `""` for the login directory.
    root: String,
    timeout: Duration,
}

impl FtpStorage {
    pub fn new(config: &FtpConfig) -> Result<Self> {
        let bad = |why: String| StorageError::Config(format!("storage.ftp.url: {why}"));
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
        Ok(FtpStorage {
            tls,
            host,
            port: url.port().unwrap_or(21),
            user,
            password: config.password.clone(),
            root,
            timeout: config.timeout,
        })
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Runs one step of the protocol within the timeout, naming `what` in the error.
    async fn within<T>(
        &self,
        what: &str,
        name: Option<&str>,
        step: impl Future<Output = suppaftp::FtpResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, step).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.classify(what, name, e)),
            Err(_) => Err(StorageError::Transient(format!(
                "no answer to {what} within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    fn classify(&self, what: &str, name: Option<&str>, err: FtpError) -> StorageError {
        match err {
            FtpError::UnexpectedResponse(response) => {
                let code = response.status.code();
                let text = String::from_utf8_lossy(&response.body).trim().to_owned();
                match (code, name) {
                    (530, _) => StorageError::Auth(format!(
                        "login of user {} refused ({text}); check the user and storage.ftp.password",
                        self.user
                    )),
                    (550, Some(name)) => StorageError::NotFound {
                        name: name.to_owned(),
                    },
                    (421 | 425 | 426 | 450 | 451, _) => {
                        StorageError::Transient(format!("{what} failed: {text}"))
                    }
                    (452 | 552, _) => StorageError::Failed(format!(
                        "{what} failed, the server is out of space: {text}"
                    )),
                    _ => StorageError::Failed(format!("{what} failed: {text}")),
                }
            }
            FtpError::ConnectionError(e) => StorageError::Transient(format!("{what} failed: {e}")),
            other => StorageError::Failed(format!("{what} failed: {other}")),
        }
    }

    async fn session(&self) -> Result<Session> {
        let address = self.address();
        let connect = async {
            tokio::net::TcpStream::connect(&address)
                .await
                .map_err(FtpError::ConnectionError)
        };
        let tcp = self.within("connect", None, connect).await?;
        let mut ftp = self
            .within("the greeting", None, Session::connect_with_stream(tcp))
            .await?;
        // Servers behind NAT announce a private address for passive data connections;
        // the control connection's address is the one that works.
        ftp.set_passive_nat_workaround(true);
        if self.tls {
            let connector = tls_connector()?;
            ftp = self
                .within(
                    "the TLS handshake",
                    None,
                    ftp.into_secure(connector, &self.host),
                )
                .await?;
        }
        self.within(
            "login",
            None,
            ftp.login(self.user.as_str(), self.password.expose()),
        )
        .await?;
        self.within("TYPE I", None, ftp.transfer_type(FileType::Binary))
            .await?;
        if !self.root.is_empty() {
            self.within("CWD", Some(&self.root), ftp.cwd(&self.root))
                .await
                .map_err(|e| match e {
                    StorageError::NotFound { name } => StorageError::Config(format!(
                        "directory {name} does not exist on the FTP server; create it or fix storage.ftp.url"
                    )),
                    other => other,
                })?;
        }
        Ok(ftp)
    }

    async fn close(&self, mut ftp: Session) {
        let _ = tokio::time::timeout(self.timeout, ftp.quit()).await;
    }

    /// The size of `name`, or `None` when the server has no such file.
    async fn size_of(&self, ftp: &mut Session, name: &str) -> Result<Option<u64>> {
        match self.within("SIZE", Some(name), ftp.size(name)).await {
            Ok(size) => Ok(Some(size as u64)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn send(
        &self,
        ftp: &mut Session,
        source: &Source,
        partial: &str,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let mut chunks = source.chunks();
        let mut data = self
            .within("STOR", Some(partial), ftp.put_with_stream(partial))
            .await?;
        let mut sent = 0u64;
        while let Some(chunk) = chunks.try_next().await? {
            self.data_step("upload", partial, data.write_all(&chunk))
                .await?;
            sent += chunk.len() as u64;
            progress(sent);
        }
        self.within("the end of the upload", Some(partial), data.finish())
            .await?;
        Ok(sent)
    }

    /// One read or write on a data connection, bounded by the timeout: a stall fails the
    /// transfer, a slow but moving one does not.
    async fn data_step<T>(
        &self,
        what: &str,
        name: &str,
        step: impl Future<Output = std::io::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, step).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StorageError::Transient(format!(
                "{what} of {name} broke off: {e}"
            ))),
            Err(_) => Err(StorageError::Transient(format!(
                "{what} of {name} stalled for {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    async fn rename_into_place(
        &self,
        ftp: &mut Session,
        partial: &str,
        name: &str,
        mode: WriteMode,
    ) -> Result<()> {
        if mode == WriteMode::CreateNew && self.size_of(ftp, name).await?.is_some() {
            return Err(StorageError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        match self
            .within("RNFR/RNTO", None, ftp.rename(partial, name))
            .await
        {
            Ok(()) => Ok(()),
            // Some servers refuse to rename onto an existing file; replacing then takes a
            // delete first (a moment without the object, but never a partial one).
            Err(_) if mode == WriteMode::Replace && self.size_of(ftp, name).await?.is_some() => {
                self.within("DELE", Some(name), ftp.rm(name)).await?;
                self.within("RNFR/RNTO", None, ftp.rename(partial, name))
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// Removes a partial upload after a failure, in a fresh session since the failed one may
    /// be unusable. Best effort: a leftover is reported, and never carries a final name.
    async fn remove_partial(&self, partial: &str) {
        let removal = async {
            let mut ftp = self.session().await?;
            let result = self.within("DELE", Some(partial), ftp.rm(partial)).await;
            self.close(ftp).await;
            result
        };
        match removal.await {
            Ok(()) | Err(StorageError::NotFound { .. }) => {}
            Err(e) => tracing::warn!("cannot remove the partial upload {partial}: {e}"),
        }
    }

    async fn listing(&self, ftp: &mut Session) -> Result<Vec<ListedFile>> {
        match self.within("MLSD", None, ftp.mlsd(None)).await {
            Ok(lines) => Ok(lines
                .iter()
                .filter_map(|line| ListParser::parse_mlsd(line).ok())
                .collect()),
            // Servers without MLSD: the classic LIST, in Unix or DOS style.
            Err(StorageError::Failed(_)) => {
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

#[async_trait]
impl Storage for FtpStorage {
    fn describe(&self) -> String {
        let scheme = if self.tls { "ftps" } else { "ftp" };
        format!(
            "FTP server {scheme}://{}@{}/{}",
            self.user,
            self.address(),
            self.root.trim_start_matches('/')
        )
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let mut ftp = self.session().await?;
        let size = self.size_of(&mut ftp, name).await;
        self.close(ftp).await;
        match size? {
            Some(size) => Ok(ObjectMeta {
                name: name.to_owned(),
                size,
            }),
            None => Err(StorageError::NotFound {
                name: name.to_owned(),
            }),
        }
    }

    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        let mut ftp = self.session().await?;
        let listed = self.listing(&mut ftp).await;
        self.close(ftp).await;
        let mut objects: Vec<ObjectMeta> = listed?
            .into_iter()
            .filter(|file| file.is_file())
            .map(|file| ObjectMeta {
                name: file.name().to_owned(),
                size: file.size() as u64,
            })
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    /// Downloads into an unnamed local temporary file, then streams from it: the transfer's
    /// completion reply and its size are checked before a byte is handed out, so a download
    /// cut short can never pass for a whole object.
    async fn open(&self, name: &str) -> Result<ObjectReader> {
        let mut ftp = self.session().await?;
        let Some(size) = self.size_of(&mut ftp, name).await? else {
            self.close(ftp).await;
            return Err(StorageError::NotFound {
                name: name.to_owned(),
            });
        };
        let local_err = |e| StorageError::from_io("a local temporary file", e);
        let mut local = tokio::fs::File::from_std(tempfile::tempfile().map_err(local_err)?);
        let mut data = self
            .within("RETR", Some(name), ftp.retr_as_stream(name))
            .await?;
        let mut buffer = vec![0u8; CHUNK];
        let mut received = 0u64;
        loop {
            let n = self
                .data_step("download", name, data.read(&mut buffer))
                .await?;
            if n == 0 {
                break;
            }
            local.write_all(&buffer[..n]).await.map_err(local_err)?;
            received += n as u64;
        }
        self.within("the end of the download", Some(name), data.finish())
            .await?;
        self.close(ftp).await;
        if received != size {
            return Err(StorageError::Transient(format!(
                "download of {name} ended after {received} of {size} bytes"
            )));
        }
        local.flush().await.map_err(local_err)?;
        local.seek(SeekFrom::Start(0)).await.map_err(local_err)?;
        Ok(Box::new(local))
    }

    async fn upload(
        &self,
        source: &Source,
        name: &str,
        mode: WriteMode,
        progress: Progress<'_>,
    ) -> Result<ObjectMeta> {
        let mut ftp = self.session().await?;
        if mode == WriteMode::CreateNew && self.size_of(&mut ftp, name).await?.is_some() {
            self.close(ftp).await;
            return Err(StorageError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        let partial = partial_name(name);
        let result = async {
            let sent = self.send(&mut ftp, source, &partial, progress).await?;
            let on_server = self.size_of(&mut ftp, &partial).await?.unwrap_or(0);
            if on_server != sent {
                return Err(StorageError::SizeMismatch {
                    name: partial.clone(),
                    expected: sent,
                    found: on_server,
                });
            }
            self.rename_into_place(&mut ftp, &partial, name, mode)
                .await?;
            match self.size_of(&mut ftp, name).await? {
                Some(size) if size == sent => Ok(ObjectMeta {
                    name: name.to_owned(),
                    size,
                }),
                found => Err(StorageError::SizeMismatch {
                    name: name.to_owned(),
                    expected: sent,
                    found: found.unwrap_or(0),
                }),
            }
        }
        .await;
        match &result {
            Ok(_) => self.close(ftp).await,
            Err(_) => {
                drop(ftp);
                self.remove_partial(&partial).await;
            }
        }
        result
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let mut ftp = self.session().await?;
        let result = self.within("DELE", Some(name), ftp.rm(name)).await;
        self.close(ftp).await;
        result
    }
}

/// TLS for `ftps://`, trusting the system's certificate store (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` are honoured, for a private CA).
fn tls_connector() -> Result<AsyncRustlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(StorageError::Config(
            "ftps:// needs trusted certificates and none were found; install ca-certificates or set SSL_CERT_FILE".into(),
        ));
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(AsyncRustlsConnector::from(TlsConnector::from(Arc::new(
        config,
    ))))
}

/// Decodes `%XX` escapes of a URL part.
fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}
