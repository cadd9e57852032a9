//! FTP and explicit FTPS (`ftps://`), with suppaftp.
//!
//! A logged-in session is kept between operations and checked with `NOOP` before it is used
//! again: a login can cost seconds (password hashing on the server, a TLS handshake), and a
//! server that dropped the idle session costs one fresh login. Every connect, reply and data
//! read or write is bounded by `timeout`: a dead server fails the operation promptly instead of
//! hanging the run.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use suppaftp::FtpError;
use suppaftp::list::{File as ListedFile, ListParser};
use suppaftp::tokio::{
    AsyncRustlsConnector, AsyncRustlsFtpStream, AsyncRustlsStream, TransferStream,
};
use suppaftp::tokio_rustls::{TlsConnector, rustls};
use suppaftp::types::FileType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::layers::Timeout;
use crate::{
    BackendConfig, ByteRange, Capabilities, Driver, ErrorKind, ObjectMeta, ObjectReader, Progress,
    Put, Result, Secret, Source, StorageConfig, StorageError,
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

/// Size of the chunks read from the data connection.
const CHUNK: usize = 256 * 1024;

type Session = AsyncRustlsFtpStream;
type Transfer = TransferStream<AsyncRustlsStream>;

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
    idle: Idle,
}

/// The kept session; suppaftp's sessions have no `Debug`.
#[derive(Default)]
struct Idle(Mutex<Option<Session>>);

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Idle")
    }
}

/// What a streaming download needs once the driver has handed it out.
struct Steps {
    name: String,
    timeout: Duration,
}

impl FtpDriver {
    /// Plain FTP: `RNFR`/`RNTO` and `REST`; no atomic create, no hashes.
    pub const CAPABILITIES: Capabilities = Capabilities {
        atomic_create: false,
        atomic_replace: false,
        rename: true,
        ranged_read: true,
        server_side_hash: false,
        storage_classes: false,
        needs_warm_up: false,
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
            idle: Idle::default(),
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
            Err(_) => Err(StorageError::temporary(format!(
                "no answer to {what} within {}",
                humantime::format_duration(self.timeout)
            ))
            .with_object(name.unwrap_or_default())),
        }
    }

    fn classify(&self, what: &str, name: Option<&str>, err: FtpError) -> StorageError {
        let error = match &err {
            FtpError::UnexpectedResponse(response) => {
                let code = response.status.code();
                let text = String::from_utf8_lossy(&response.body).trim().to_owned();
                match (code, name) {
                    (530, _) => StorageError::new(
                        ErrorKind::Denied,
                        format!(
                            "login of user {} refused ({text}); check the user and storage.ftp.password",
                            self.user
                        ),
                    ),
                    (550, Some(name)) => StorageError::not_found(name),
                    (421 | 425 | 426 | 450 | 451, _) => {
                        StorageError::temporary(format!("{what} failed: {text}"))
                    }
                    (452 | 552, _) => StorageError::other(format!(
                        "{what} failed, the server is out of space: {text}"
                    )),
                    _ => StorageError::other(format!("{what} failed: {text}")),
                }
            }
            FtpError::ConnectionError(e) => StorageError::temporary(format!("{what} failed: {e}")),
            other => StorageError::other(format!("{what} failed: {other}")),
        };
        error.with_object(name.unwrap_or_default()).with_source(err)
    }

    /// A logged-in session in the root: the idle one if it still answers, else a new one.
    async fn session(&self) -> Result<Session> {
        let idle = self.idle.0.lock().ok().and_then(|mut idle| idle.take());
        if let Some(mut ftp) = idle {
            if self.within("NOOP", None, ftp.noop()).await.is_ok() {
                return Ok(ftp);
            }
            tracing::debug!("the idle FTP session was dropped by the server; logging in again");
        }
        self.connect().await
    }

    /// Keeps a session that ended its operation cleanly for the next one.
    fn release(&self, ftp: Session) {
        if let Ok(mut idle) = self.idle.0.lock() {
            *idle = Some(ftp);
        }
    }

    /// Runs `operation` on a session and keeps the session if the operation got an answer
    /// from the server (an error reply included); one that broke off is dropped.
    async fn with_session<T>(
        &self,
        operation: impl AsyncFnOnce(&mut Session) -> Result<T>,
    ) -> Result<T> {
        let mut ftp = self.session().await?;
        let result = operation(&mut ftp).await;
        match &result {
            Err(e) if e.is_temporary() => {}
            _ => self.release(ftp),
        }
        result
    }

    async fn connect(&self) -> Result<Session> {
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
                .map_err(|e| match e.kind() {
                    ErrorKind::NotFound => StorageError::config(format!(
                        "directory {} does not exist on the FTP server; create it or fix storage.ftp.url",
                        self.root
                    )),
                    _ => e,
                })?;
        }
        Ok(ftp)
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
        let mut sent = 0u64;
        while let Some(chunk) = chunks.try_next().await? {
            data_step(self.timeout, "upload", name, data.write_all(&chunk)).await?;
            sent += chunk.len() as u64;
            progress(sent);
        }
        self.within("the end of the upload", Some(name), data.finish())
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

/// One read or write on a data connection, bounded by the timeout: a stall fails the
/// transfer, a slow but moving one does not.
async fn data_step<T>(
    timeout: Duration,
    what: &str,
    name: &str,
    step: impl Future<Output = std::io::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(
            StorageError::temporary(format!("{what} of {name} broke off: {e}"))
                .with_object(name)
                .with_source(e),
        ),
        Err(_) => Err(StorageError::temporary(format!(
            "{what} of {name} stalled for {}",
            humantime::format_duration(timeout)
        ))
        .with_object(name)),
    }
}

/// A download in progress: the session, its data connection and how much is still wanted.
struct Download {
    ftp: Session,
    data: Transfer,
    steps: Steps,
    /// Bytes of the range not yet handed out.
    wanted: u64,
    /// Whether the range runs to the end of the object: the transfer is then completed and
    /// its reply checked; otherwise it is abandoned once the range is read (an early abort).
    to_end: bool,
}

impl Download {
    async fn next_chunk(mut self) -> std::io::Result<Option<(Bytes, Self)>> {
        let into_io = std::io::Error::other;
        if self.wanted == 0 {
            if self.to_end {
                let completed = tokio::time::timeout(self.steps.timeout, self.data.finish()).await;
                if !matches!(completed, Ok(Ok(()))) {
                    return Err(into_io(StorageError::temporary(format!(
                        "the download of {} did not complete",
                        self.steps.name
                    ))));
                }
                let _ = tokio::time::timeout(self.steps.timeout, self.ftp.quit()).await;
            }
            return Ok(None);
        }
        let len = usize::try_from(self.wanted.min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut buffer = vec![0u8; len];
        let n = data_step(
            self.steps.timeout,
            "download",
            &self.steps.name,
            self.data.read(&mut buffer),
        )
        .await
        .map_err(into_io)?;
        if n == 0 {
            return Err(into_io(StorageError::temporary(format!(
                "download of {} ended {} bytes early",
                self.steps.name, self.wanted
            ))));
        }
        buffer.truncate(n);
        self.wanted -= n as u64;
        Ok(Some((Bytes::from(buffer), self)))
    }
}

impl BackendConfig for FtpConfig {
    const NAME: &'static str = "ftp";
    const ENV: &'static [(&'static str, &'static str)] = &[("FTP_PASSWORD", "password")];

    fn open(self, _storage: &StorageConfig) -> Result<Arc<dyn Driver>> {
        Ok(Timeout::wrap(FtpDriver::new(&self)?, self.timeout))
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

    async fn delete(&self, name: &str) -> Result<()> {
        self.with_session(async |ftp| self.within("DELE", Some(name), ftp.rm(name)).await)
            .await
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
        return Err(StorageError::config(
            "ftps:// needs trusted certificates and none were found; install ca-certificates or set SSL_CERT_FILE",
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
