//! Storage drivers for oiseau.
//!
//! Every backend implements the small [`Driver`] contract and declares its [`Capabilities`];
//! callers use a [`Storage`], which adds the one commit path that turns the primitives into
//! the guarantees of an upload (no partial object under a final name, never an overwritten
//! archive), and layers add retries and timeouts. Objects are flat names in the storage root
//! (`c14_index.txt`, `1700000000_replays_12.tar.gz`): that is the layout the original tool
//! wrote and every backend must keep it.
//!
//! # Adding a backend
//! One module, which owns:
//! - its settings table, a serde struct with `deny_unknown_fields`, implementing
//!   [`BackendConfig`]: its name, its environment variables and how it opens its driver, with
//!   the [`Bound`] on its operations ([`open`] puts the timeout, retry and rate layers on);
//! - its driver, implementing [`Driver`]: `describe`, `capabilities`, `stat`, `list`, ranged
//!   `read`, `put` and `delete`, plus `rename` if it declares it, `prepare` if the storage must
//!   be woken up, `check_hash` if it keeps hashes. The commit of an upload, retries and
//!   timeouts are not its business.
//!
//! Then one line in the registry's `BACKENDS`, a section in the README, and one test that runs
//! the conformance suite (`tests/common/conformance.rs`) on a real server.

// Library code never panics on a value it did not check, and says things through tracing or
// output::say (which honour --quiet and --json), not by printing.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::panic,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]

pub mod c14;
mod capability;
mod driver;
mod error;
pub mod ftp;
pub mod layers;
pub mod local;
pub mod memory;
mod opendal_io;
mod partial;
pub mod rclone;
mod registry;
mod resume;
pub mod s3;
mod source;
mod storage;

pub use capability::{Capabilities, ConditionsProbed};
pub use driver::{
    ByteRange, Driver, ObjectMeta, ObjectReader, Placement, PreflightMode, Prepared, Progress, Put,
    Readiness, Version, WriteMode, WriteOptions,
};
pub use error::{ErrorKind, ErrorStatus, StorageError, file_in_the_way, io_words};
pub use partial::{PARTIAL_SUFFIX, partial_name, partial_owner};
pub use registry::{BACKENDS, Backend, BackendConfig, Bound, Opened, StorageConfig, open};
pub use resume::{ReadInterrupted, is_interrupted};
pub use source::{Chunks, Source, SourceFeed};
pub use storage::{PreparedStorage, Storage, Unprepared};

/// Result of every storage operation.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
