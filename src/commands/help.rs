//! `oiseau completions` and `oiseau man`: generated from the command-line definitions, so
//! they never drift from what the binary accepts.

use anyhow::{Context, Result, anyhow};
use clap::CommandFactory;

use crate::cli::Cli;
use crate::settings::SettingsError;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "oiseau", &mut script);
    crate::report::output::raw(&script);
    Ok(())
}

/// Prints oiseau(1), or the page of one command (oiseau-run(1)), as roff.
pub fn man_page(command: Option<&str>) -> Result<()> {
    let oiseau = Cli::command();
    let page = match command {
        None => oiseau,
        Some(name) => {
            let sub = oiseau.find_subcommand(name).ok_or_else(|| {
                let names: Vec<&str> = oiseau.get_subcommands().map(|c| c.get_name()).collect();
                anyhow!(SettingsError(format!(
                    "no command {name:?}; the commands are {}",
                    names.join(", ")
                )))
            })?;
            let full = format!("oiseau-{name}");
            sub.clone()
                .name(full.clone())
                .bin_name(format!("oiseau {name}"))
                .display_name(full)
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .context("cannot render the manual page")?;
    crate::report::output::raw(&roff);
    Ok(())
}
