//! Command-line interface: one file per subcommand.

mod db;
mod detectors;
mod format;
mod incidents;
mod migrate;
mod output;
mod parse;
mod replay;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::escape_for_terminal;

#[derive(Parser, Debug)]
#[command(
    name = "gatewatch",
    version,
    about = "Access-log anomaly detector for ingress controllers (nginx, ingress-nginx, Traefik, Envoy)",
    long_about = "gatewatch reads ingress access logs, keeps event-time sliding-window statistics \
                  per client and flags request-rate spikes, scanners and brute force as incidents, \
                  which it stores in SQLite or PostgreSQL for analysts to query and triage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Analyse log files offline at full speed and print the incidents found.
    Replay(replay::ReplayArgs),
    /// Parse access-log lines from stdin and print each record as JSON.
    Parse(parse::ParseArgs),
    /// Show or validate detector definitions.
    #[command(subcommand)]
    Detectors(detectors::DetectorsCommand),
    /// Query and triage stored incidents.
    #[command(subcommand)]
    Incidents(incidents::IncidentsCommand),
    /// Apply database migrations (also done whenever a command opens the store).
    Migrate(migrate::MigrateArgs),
    /// Serve the HTTP API (/healthz, /api/v1/incidents) over a store.
    Serve(serve::ServeArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Parse(args) => parse::run(args),
        Command::Detectors(command) => detectors::run(command),
        Command::Incidents(command) => incidents::run(command),
        Command::Migrate(args) => migrate::run(args),
        Command::Serve(args) => serve::run(args),
    }
}
