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

#[derive(Debug, Subcommand)]
pub enum IndexAction {
    /// Rebuild c14_index.txt from the newest index copy and the manifests, and print it
    Rebuild {
        /// Replace the storage's c14_index.txt with it
        #[arg(long)]
        write: bool,
    },
    /// Record a manifest and an access index for each archive of the original tool (one
    /// without a manifest), by reading it through once: locate, restore, verify and serve
    /// then find, read and check its replays like those of oiseau's own archives
    Legacy {
        /// Only archives from this id on
        #[arg(long, value_name = "ARCHIVE_ID", conflicts_with = "archive")]
        since: Option<u64>,
        /// Only this archive
        #[arg(long, value_name = "ARCHIVE_ID")]
        archive: Option<u64>,
    },
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
        /// Print one JSON object with the outcome and its figures on stdout (the log stays
        /// on stderr)
        #[arg(long)]
        json: bool,
    },
    /// Create an empty c14_index.txt on a new storage
    Init,
    /// Show where the backup stands: temp folder, last archive, storage, lock
    Status {
        /// One JSON object, for monitoring
        #[arg(long)]
        json: bool,
    },
    /// Print the archive holding each replay
    Locate {
        /// Replay ids (the digits of replay_<id>.osr)
        #[arg(required = true, value_name = "REPLAY_ID")]
        ids: Vec<u64>,
    },
    /// Extract replays from their archives into a folder, checking their recorded hashes
    Restore {
        #[arg(required = true, value_name = "REPLAY_ID")]
        ids: Vec<u64>,
        /// Folder to write the replays to
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Replace files that already exist in DIR
        #[arg(long)]
        overwrite: bool,
    },
    /// Check that every archive of the index is on the storage, whole
    Verify {
        /// Also download each archive, check its recorded digest and read every replay
        #[arg(long)]
        deep: bool,
        /// With --deep: read only N replays of each archive, each from its own range, and check
        /// their hashes (archives without ranges in their manifest are still read whole)
        #[arg(long, value_name = "N", requires = "deep")]
        sample: Option<usize>,
        /// Only archives from this id on
        #[arg(long, value_name = "ARCHIVE_ID")]
        since: Option<u64>,
    },
    /// Answer GET /replays/<id> over HTTP for a game server, from a cache or the storage
    Serve,
    /// Work on the index of the storage
    Index {
        #[command(subcommand)]
        action: IndexAction,
    },
    /// Print the effective settings, secrets redacted
    Config,
    /// Print a shell completion script: `oiseau completions bash > /etc/bash_completion.d/oiseau`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `oiseau man | man -l -`; `oiseau man run` for a command's
    Man {
        /// The command whose page to print (oiseau-run(1), ...)
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
    /// Run a real backup of generated replays into a scratch folder, with no set-up
    Demo {
        /// Folder to create the demo in [default: a new folder under the system temp dir]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}
