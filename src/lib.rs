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
pub mod report;

pub mod archive;
mod atomic_file;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod error;
mod fault;
pub mod formats;
mod process;
pub mod run;
pub mod sample;
pub mod serve;
pub mod settings;
pub mod status;
pub mod storage;
pub mod temp_folder;
pub mod units;
