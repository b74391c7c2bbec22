//! `gatewatch config check FILE`: validates a daemon config without starting anything.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::store::redact_url;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a config file: every problem is listed with its key; exit 1 if there is one.
    Check {
        /// The config file (gatewatch.toml).
        file: PathBuf,
    },
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { file } = command;
    let config = super::run::load_config(&file)?;
    println!(
        "{}: ok: {} source group(s), store {}, API on {}",
        file.display(),
        config.sources.len(),
        redact_url(&config.store_url),
        config.api.listen
    );
    for source in &config.sources {
        println!("  {}: {}", source.name, source.paths.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
