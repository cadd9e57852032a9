//! oiseau backs up osu! replays to cold storage and gets them back. Every command lives in
//! this library; `main.rs` only parses the command line, sets up logging and maps the
//! outcome to an exit code.

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

#[macro_use]
mod output;

mod atomic_file;
pub mod catalog;
pub mod cli;
pub mod commands;
mod conditions;
pub mod digest;
pub mod error;
pub mod events;
mod fault;
pub mod gzip;
pub mod history;
pub mod index;
pub mod journal;
pub mod layout;
pub mod lease;
pub mod lock;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod pack;
mod process;
mod progress;
mod ranged;
pub mod record;
pub mod run;
pub mod sample;
pub mod scan;
pub mod serve;
pub mod settings;
pub mod storage;
