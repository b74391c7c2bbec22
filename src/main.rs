//! The `gatewatch` binary: parses arguments, runs a command, maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = gatewatch::cli::Cli::parse();
    // Operational events (store retries, a full queue) go to stderr; GATEWATCH_LOG=debug etc.
    // The daemon sets up its own from its config.
    if !cli.configures_logging() {
        gatewatch::cli::init_logging(gatewatch::config::LogFormat::Text, "warn");
    }
    match gatewatch::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gatewatch: error: {}", gatewatch::cli::describe_error(&err));
            ExitCode::from(1)
        }
    }
}
