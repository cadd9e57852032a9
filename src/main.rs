//! oiseau: parse the command line, set up logging, run one command, map the outcome to an
//! exit code (0 done, 1 failed, 2 bad usage or settings, 75 try again later).

use std::process::ExitCode;

use clap::Parser;

use oiseau::cli::Cli;
use oiseau::error::{EXIT_FAILED, EXIT_TRY_LATER, exit_code};

fn main() -> ExitCode {
    let cli = Cli::parse();
    oiseau::report::logging::init(cli.log_format);
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
            if let Some(cause) = e
                .chain()
                .filter_map(|c| c.downcast_ref::<backends::StorageError>())
                .find_map(backends::StorageError::cause)
            {
                tracing::debug!("the storage's own error: {cause:?}");
            }
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
