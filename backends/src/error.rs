use std::fmt;
use std::io;

/// What went wrong, as far as a caller acts on it. Whether to try again is a separate
/// question ([`ErrorStatus`]): a timeout and a full disk are both [`ErrorKind::Other`], and
/// only one of them is worth a second attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist (a new storage has no index yet: a normal answer).
    NotFound,
    /// A create-only write met an existing object: archives are never overwritten.
    AlreadyExists,
    /// A conditional write found the object changed since it was read (another writer).
    ConditionFailed,
    /// The object exists but cannot be read yet: a cold archive awaiting its restore. The
    /// message says what is under way; the caller comes back later (exit 75).
    NotReady,
    /// The storage refused the credentials or the permission.
    Denied,
    /// The settings of the backend cannot work.
    Config,
    /// Anything else: a protocol error, a full disk, a size that does not match.
    Other,
}

/// Whether an operation may succeed if tried again, as OpenDAL's `ErrorStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStatus {
    /// Worth another attempt after a pause: a timeout, a dropped connection, an FTP 421.
    Temporary,
    /// Trying again gives the same answer.
    Permanent,
    /// Was temporary, and still failed after every retry the retry layer allowed.
    Persistent,
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a storage operation failed: a kind, a retry status, the operation and the object it
/// was working on, a message for people and the underlying error, chained.
///
/// The message names the object and says what to do where a driver knows; it never carries a
/// secret. `Display` prints the message alone, so that an operator reads one line.
#[derive(Debug)]
pub struct StorageError {
    kind: ErrorKind,
    status: ErrorStatus,
    operation: &'static str,
    object: Option<String>,
    message: String,
    source: Option<Source>,
}

impl StorageError {
    /// A permanent error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StorageError {
            kind,
            status: ErrorStatus::Permanent,
            operation: "",
            object: None,
            message: message.into(),
            source: None,
        }
    }

    /// `name` does not exist on the storage.
    pub fn not_found(name: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("{name} does not exist on the storage"),
        )
        .with_object(name)
    }

    /// `name` exists and a create-only write refused to replace it.
    pub fn already_exists(name: &str) -> Self {
        Self::new(
            ErrorKind::AlreadyExists,
            format!("{name} already exists on the storage and is never overwritten"),
        )
        .with_object(name)
    }

    /// The storage holds `found` bytes under `name` where `expected` were written.
    pub fn size_mismatch(name: &str, expected: u64, found: u64) -> Self {
        Self::new(
            ErrorKind::Other,
            format!(
                "{name} holds {found} bytes on the storage after the upload, {expected} were sent"
            ),
        )
        .with_object(name)
    }

    /// A failure that may go away: the retry layer tries the operation again.
    pub fn temporary(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message).with_status(ErrorStatus::Temporary)
    }

    /// Settings that cannot work.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Anything else, permanent.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    #[must_use]
    pub fn with_status(mut self, status: ErrorStatus) -> Self {
        self.status = status;
        self
    }

    /// Records the operation that failed (`stat`, `put`, ...), once: the innermost one wins.
    #[must_use]
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        if self.operation.is_empty() {
            self.operation = operation;
        }
        self
    }

    /// Records the object the operation worked on, once: the innermost one wins.
    #[must_use]
    pub fn with_object(mut self, object: &str) -> Self {
        if self.object.is_none() && !object.is_empty() {
            self.object = Some(object.to_owned());
        }
        self
    }

    #[must_use]
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn status(&self) -> ErrorStatus {
        self.status
    }

    /// The operation that failed, `""` when none was recorded.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The object the failed operation worked on.
    pub fn object(&self) -> Option<&str> {
        self.object.as_deref()
    }

    /// Whether the same operation may succeed if tried again after a pause.
    pub fn is_temporary(&self) -> bool {
        self.status == ErrorStatus::Temporary
    }

    /// Classifies a local I/O error met while working on `name`.
    pub fn from_io(name: &str, err: io::Error) -> Self {
        use io::ErrorKind as Io;
        let error = match err.kind() {
            Io::NotFound => return Self::not_found(name).with_source(err),
            Io::AlreadyExists => return Self::already_exists(name).with_source(err),
            Io::PermissionDenied => Self::new(
                ErrorKind::Denied,
                format!("{name}: permission denied; fix the permissions of the storage"),
            ),
            Io::ReadOnlyFilesystem => Self::other(format!(
                "{name}: the file system is read-only; remount it writable or choose another storage"
            )),
            Io::StorageFull | Io::QuotaExceeded => Self::other(format!(
                "{name}: no space left; free some space on the storage"
            )),
            Io::NotADirectory => Self::other(format!(
                "{name}: part of its path is a file, not a folder; check the storage's path"
            )),
            Io::TimedOut
            | Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::BrokenPipe
            | Io::UnexpectedEof
            | Io::Interrupted => Self::temporary(format!("{name}: {}", io_words(&err))),
            _ => Self::other(format!("{name}: {}", io_words(&err))),
        };
        error.with_object(name).with_source(err)
    }
}

/// A system error in words, once: its description without the `(os error N)` that the
/// standard library appends (the number helps nobody who reads a log line).
pub fn io_words(err: &io::Error) -> String {
    let text = err.to_string();
    match (text.rfind(" (os error "), err.raw_os_error()) {
        (Some(at), Some(_)) => text[..at].to_owned(),
        _ => text,
    }
}

/// The file that stands where `path` or one of its parents should be a folder, if one does:
/// what to name when a folder cannot be made there (the system only says "File exists" or
/// "Not a directory").
pub fn file_in_the_way(path: &std::path::Path) -> Option<&std::path::Path> {
    path.ancestors()
        .find(|part| part.exists() && !part.is_dir())
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StorageError {
    /// The library's or the system's own error beneath, for a debug log: its text carries
    /// request contexts and response headers that an operator's line must not.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

/// Only another `StorageError` is a source in the chain a message is printed from: the
/// message already says what the library's error meant, once (see [`StorageError::cause`]).
impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .filter(|source| source.is::<StorageError>())
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_errors_keep_their_kind_status_object_and_cause() {
        let missing = StorageError::from_io("index", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert_eq!(missing.object(), Some("index"));
        assert!(missing.cause().is_some(), "kept for a debug log");
        assert!(
            std::error::Error::source(&missing).is_none(),
            "not printed after the message again"
        );
        let reset = StorageError::from_io("a", io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(reset.is_temporary());
        let full = StorageError::from_io("a", io::Error::other("disk full"));
        assert_eq!(full.status(), ErrorStatus::Permanent);
    }

    #[test]
    fn the_innermost_operation_and_object_win() {
        let e = StorageError::other("x")
            .with_operation("rename")
            .with_operation("put")
            .with_object("a.part")
            .with_object("a");
        assert_eq!(e.operation(), "rename");
        assert_eq!(e.object(), Some("a.part"));
        assert_eq!(e.to_string(), "x");
    }
}
