//! oiseau: parse the command line, load the settings, run one command, map the outcome to an
//! exit code (0 done, 1 failed, 2 bad usage or settings, 75 try again later).

mod catalog;
mod cli;
mod commands;
mod demo;
mod digest;
mod fault;
mod gzip;
mod index;
mod journal;
mod lock;
mod manifest;
mod notify;
mod pack;
mod progress;
mod restore;
mod run;
mod sample;
mod scan;
mod settings;
mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, LogFormat};
use run::{RunOptions, RunReport};
use settings::{ByteSize, DEFAULT_CONFIG, Settings, SettingsError};

/// The storage or another run is busy; the next scheduled run will carry on (exit 75).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TryLater(pub String);

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
/// EX_TEMPFAIL from sysexits.h: what cron wrappers and systemd treat as "retry later".
const EXIT_TRY_LATER: u8 = 75;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            if code == EXIT_TRY_LATER {
                tracing::warn!("{e:#}");
            } else {
                tracing::error!("{e:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_from_env("OISEAU_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // suppaftp traces every command it sends, PASS included: that level never reaches a log.
    let no_secrets = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("suppaftp") && *meta.level() == tracing::Level::TRACE)
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter).with(no_secrets);
    match format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json()).init(),
    }
}

fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<TryLater>().is_some()
        || error.downcast_ref::<lock::LockHeld>().is_some()
    {
        EXIT_TRY_LATER
    } else if error.downcast_ref::<SettingsError>().is_some() {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}

async fn execute(cli: Cli) -> Result<()> {
    if let Command::Demo { dir } = cli.command {
        return demo::demo(dir).await;
    }
    let explicit = cli.config.is_some();
    let config = cli.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let settings = Settings::load(&config, explicit, &|name| std::env::var(name).ok())?;
    match cli.command {
        Command::Run { force, dry_run } => {
            match run::run(&settings, RunOptions { force, dry_run }).await? {
                RunReport::NothingToDo => {}
                RunReport::Planned(plan) => println!(
                    "plan: archive {} as {}: {} replays, {} ({} bytes); nothing was changed",
                    plan.archive_id,
                    plan.archive_name,
                    plan.replays.len(),
                    ByteSize(plan.bytes),
                    plan.bytes
                ),
                RunReport::Archived(done) => tracing::info!(
                    archive_id = done.archive_id,
                    replays = done.replays,
                    replay_bytes = done.replay_bytes,
                    archive_bytes = done.archive_bytes,
                    kept = done.kept,
                    seconds = done.duration.as_secs_f64(),
                    "backup done: {}",
                    done.archive_name
                ),
            }
            Ok(())
        }
        Command::Init => commands::init(&settings).await,
        Command::Status { json } => commands::status(&settings, json).await,
        Command::Locate { ids } => restore::locate(&settings, &ids).await,
        Command::Restore { ids, to, overwrite } => {
            restore::restore(&settings, &ids, &to, overwrite).await
        }
        Command::Verify { deep, since } => verify::verify(&settings, deep, since).await,
        Command::Config => {
            print!("{}", settings.to_redacted_toml()?);
            Ok(())
        }
        Command::Demo { .. } => unreachable!("handled before the settings are loaded"),
    }
}
