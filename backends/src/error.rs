use std::io;

/// Why a storage operation failed.
///
/// The variants are the distinctions a caller acts on: a missing object is a normal answer
/// (a new storage has no index yet), an existing one stops an archive from being overwritten,
/// a transient failure is worth retrying and the others are not. Messages name the object and
/// never carry a secret.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{name} does not exist on the storage")]
    NotFound { name: String },

    #[error("{name} already exists on the storage and is never overwritten")]
    AlreadyExists { name: String },

    #[error("{name} holds {found} bytes on the storage after the upload, {expected} were sent")]
    SizeMismatch {
        name: String,
        expected: u64,
        found: u64,
    },

    #[error("the storage refused the credentials: {0}")]
    Auth(String),

    /// The storage could not be reached or dropped the operation; trying again may work.
    #[error("{0}")]
    Transient(String),

    /// The storage answered with an error that will not go away by retrying.
    #[error("{0}")]
    Failed(String),

    /// The settings of the backend cannot work.
    #[error("{0}")]
    Config(String),
}

impl StorageError {
    /// Whether the same operation may succeed if tried again after a pause.
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Transient(_))
    }

    /// Classifies a local I/O error met while working on `name`.
    pub fn from_io(name: &str, err: io::Error) -> Self {
        use io::ErrorKind::*;
        match err.kind() {
            NotFound => StorageError::NotFound {
                name: name.to_owned(),
            },
            AlreadyExists => StorageError::AlreadyExists {
                name: name.to_owned(),
            },
            TimedOut | ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe
            | UnexpectedEof | Interrupted => StorageError::Transient(format!("{name}: {err}")),
            _ => StorageError::Failed(format!("{name}: {err}")),
        }
    }
}
