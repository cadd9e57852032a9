//! Command-line definitions (clap); nothing here does any work.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Backs up osu! replays from a temp folder to cold storage, and tells the operators.
#[derive(Debug, Parser)]
#[command(name = "oiseau", version)]
pub struct Cli {
    /// Settings file [default: ./settings.toml]
    #[arg(long, short, global = true, env = "OISEAU_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object per line
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive the replays of the temp folder once they reach the threshold
    Run {
        /// Pack even below the threshold
        #[arg(long)]
        force: bool,
        /// Print the plan (archive id and name, replays, bytes) and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Create an empty c14_index.txt on a new storage
    Init,
    /// Show the temp folder, the last archive and whether the storage is reachable
    Status,
    /// Print the effective settings, secrets redacted
    Config,
    /// Run a real backup of generated replays into a scratch folder, with no set-up
    Demo {
        /// Folder to create the demo in [default: a new folder under the system temp dir]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}
