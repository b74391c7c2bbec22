//! The `gatewatch` binary: parses arguments, runs a command, maps errors to exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Operational events (store retries, a full queue) go to stderr; GATEWATCH_LOG=debug etc.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_env("GATEWATCH_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let cli = gatewatch::cli::Cli::parse();
    match gatewatch::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gatewatch: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
