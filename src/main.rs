//! The `gatewatch` binary: parses arguments, runs a command, maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = gatewatch::cli::Cli::parse();
    match gatewatch::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gatewatch: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
