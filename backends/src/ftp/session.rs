//! FTP sessions: connecting, logging in, every protocol step bounded by the timeout, and the
//! one idle session kept between operations.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suppaftp::FtpError;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::tokio_rustls::{TlsConnector, rustls};
use suppaftp::types::FileType;

use super::FtpDriver;
use crate::{ErrorKind, Result, StorageError};

pub(super) type Session = AsyncRustlsFtpStream;

/// The kept session; suppaftp's sessions have no `Debug`.
#[derive(Default)]
pub(super) struct Idle(Mutex<Option<Session>>);

impl Idle {
    /// Keeps a session that ended its operation cleanly for the next one.
    pub(super) fn keep(&self, ftp: Session) {
        if let Ok(mut idle) = self.0.lock() {
            *idle = Some(ftp);
        }
    }
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Idle")
    }
}

impl FtpDriver {
    /// Runs one step of the protocol within the timeout, naming `what` in the error.
    pub(super) async fn within<T>(
        &self,
        what: &str,
        name: Option<&str>,
        step: impl Future<Output = suppaftp::FtpResult<T>>,
    ) -> Result<T> {
        self.within_for(self.timeout, what, name, step).await
    }

    /// [`Self::within`], for a step allowed `limit`.
    pub(super) async fn within_for<T>(
        &self,
        limit: Duration,
        what: &str,
        name: Option<&str>,
        step: impl Future<Output = suppaftp::FtpResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, step).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.classify(what, name, e)),
            Err(_) => Err(StorageError::temporary(format!(
                "no answer to {what} within {}",
                humantime::format_duration(limit)
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
                    // Refused to write: a read-only user, or a folder it may not write in.
                    (550 | 553, Some(name))
                        if matches!(what, "STOR" | "MKD" | "the end of the upload" | "upload") =>
                    {
                        StorageError::new(
                            ErrorKind::Denied,
                            format!(
                                "the FTP server refused to write {name} ({text}); let user {} \
                                 write in {}",
                                self.user,
                                if self.root.is_empty() {
                                    "its home folder"
                                } else {
                                    &self.root
                                }
                            ),
                        )
                    }
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
    pub(super) async fn session(&self) -> Result<Session> {
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
    pub(super) fn release(&self, ftp: Session) {
        self.idle.keep(ftp);
    }

    /// Runs `operation` on a session and keeps the session if the operation got an answer
    /// from the server (an error reply included); one that broke off is dropped.
    pub(super) async fn with_session<T>(
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
        tracing::debug!(
            "logged in to the FTP server {} as {}",
            self.address(),
            self.user
        );
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
    shared::install_tls_provider();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(AsyncRustlsConnector::from(TlsConnector::from(Arc::new(
        config,
    ))))
}
