//! What oiseau's crates share that is no storage: secrets kept out of every output, the TLS
//! provider of every connection, durations as the settings write them, and this machine's name.

// Library code never panics on a value it did not check, and never prints.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::panic,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]

pub mod duration;
mod host;
mod secret;
mod tls;

pub use host::host_name;
pub use secret::{Secret, redact_userinfo, register as register_secret, scrub as scrub_secrets};
pub use tls::install_provider as install_tls_provider;
