//! Every command of the command line, one module each; [`execute`] runs the one asked for.

pub mod demo;
mod help;
pub mod index;
pub mod init;
pub mod legacy;
pub mod restore;
pub mod verify;

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::{Cli, Command, IndexAction};
use crate::run::{self, RunOptions, RunReport};
use crate::settings::{DEFAULT_CONFIG, Settings};
use crate::status;
use crate::units::ByteSize;

/// Loads the settings (except for `demo`, which makes its own) and runs the command.
pub async fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { dir } => return demo::demo(dir).await,
        Command::Completions { shell } => return help::completions(shell),
        Command::Man { command } => return help::man_page(command.as_deref()),
        _ => {}
    }
    let explicit = cli.config.is_some();
    let config = cli.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let settings = Settings::load(&config, explicit, &|name| std::env::var(name).ok())
        .inspect_err(|e| match cli.command {
            // A consumer of the JSON reads stdout: it is told there too.
            Command::Run { json: true, .. } => crate::report::notify::print_refused(e),
            Command::Status { json: true } => status::print_refused(e),
            _ => {}
        })?;
    match cli.command {
        Command::Run {
            force,
            dry_run,
            json,
        } => {
            let options = RunOptions {
                force,
                dry_run,
                json,
            };
            match run::run(&settings, options).await? {
                RunReport::NothingToDo { .. } => {}
                RunReport::Planned(plan) if json => say!(
                    "{}",
                    serde_json::json!({
                        "plan": {
                            "archive_id": plan.archive_id,
                            "archive_name": plan.archive_name,
                            "replays": plan.replays.len(),
                            "replay_bytes": plan.bytes,
                        }
                    })
                ),
                RunReport::Planned(plan) => say!(
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
        Command::Init => init::init(&settings).await,
        Command::Status { json } => {
            let report = status::inspect(&settings).await;
            if json {
                say!("{}", report.json()?);
            } else {
                for line in report.lines() {
                    say!("{line}");
                }
            }
            report.outcome()
        }
        Command::Locate { ids } => {
            let located = restore::locate(&settings, &ids).await?;
            for line in &located.lines {
                say!("{line}");
            }
            located.outcome()
        }
        Command::Restore { ids, to, overwrite } => {
            restore::restore(&settings, &ids, &to, overwrite).await
        }
        Command::Verify {
            deep,
            since,
            sample,
        } => {
            let report = verify::verify(&settings, deep, sample, since).await?;
            for line in report.lines() {
                say!("{line}");
            }
            report.outcome()
        }
        Command::Index {
            action: IndexAction::Rebuild { write },
        } => index::rebuild_index(&settings, write).await,
        Command::Index {
            action: IndexAction::Legacy { since, archive },
        } => legacy::index_legacy(&settings, since, archive).await,
        Command::Serve => crate::serve::serve(&settings).await,
        Command::Config => {
            crate::report::output::raw(settings.to_redacted_toml()?.as_bytes());
            Ok(())
        }
        Command::Demo { .. } | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled before the settings are loaded")
        }
    }
}
