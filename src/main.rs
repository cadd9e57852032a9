//! oiseau: parse the command line, set up logging, run one command, map the outcome to an
//! exit code (0 done, 1 failed, 2 bad usage or settings, 75 try again later).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use oiseau::cli::{Cli, LogFormat};
use oiseau::error::{EXIT_FAILED, EXIT_TRY_LATER, exit_code};

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
    match runtime.block_on(oiseau::commands::execute(cli)) {
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
