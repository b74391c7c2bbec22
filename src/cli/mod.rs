//! Command-line interface: one file per subcommand.

mod alerts;
mod config_cmd;
mod db;
mod detectors;
mod format;
mod incidents;
mod migrate;
mod output;
mod parse;
mod replay;
mod run;
mod serve;
mod table;

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
    /// Apply database migrations (also done whenever a command that writes opens the store).
    Migrate(migrate::MigrateArgs),
    /// Serve the HTTP API (/healthz, /api/v1/incidents) over a store.
    Serve(serve::ServeArgs),
    /// The daemon: follow live logs (rotation, restarts), detect, store, serve /metrics.
    Run(run::RunArgs),
    /// Check a daemon config file.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Alert deliveries: list, show, retry, and test a channel.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Parse(args) => parse::run(args),
        Command::Detectors(command) => detectors::run(command),
        Command::Incidents(command) => incidents::run(command),
        Command::Migrate(args) => migrate::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Run(args) => run::run(args),
        Command::Config(command) => config_cmd::run(command),
        Command::Alerts(command) => alerts::run(command),
    }
}

/// Operational logs on stderr. `GATEWATCH_LOG` (a tracing filter) overrides `level`.
pub fn init_logging(format: crate::config::LogFormat, level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GATEWATCH_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    // A second init (tests call commands in-process) keeps the first subscriber.
    let _ = match format {
        crate::config::LogFormat::Json => builder.json().try_init(),
        crate::config::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

impl Cli {
    /// Whether the command sets up logging itself (from its config).
    pub fn configures_logging(&self) -> bool {
        matches!(self.command, Command::Run(_))
    }
}

/// An error and its causes on one line, each said once: many errors (ours and sqlx's) quote
/// their source in their own message, which the chain would otherwise repeat
/// ("pool timed out…: pool timed out…").
pub fn describe_error(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The token fingerprint key: the key file's when one is given, else the store's (generated
/// once and kept there), else none (fingerprints are then plain hashes: stable, but a
/// known token's fingerprint can be computed).
pub fn token_key(
    file: Option<&std::path::Path>,
    store: Option<&crate::pipeline::StoreSink>,
) -> anyhow::Result<std::sync::Arc<[u8]>> {
    match (file, store) {
        (Some(_), _) | (None, None) => read_token_key(file),
        (None, Some(store)) => {
            let key = (store.handle())
                .block_on(store.store().token_key())
                .map_err(|e| anyhow::anyhow!("reading the store's token key: {e}"))?;
            Ok(std::sync::Arc::from(key.as_bytes()))
        }
    }
}

/// The token fingerprint key from `--token-key-file`: the file's bytes, surrounding
/// whitespace stripped (as the scorer reads it); empty without a file.
pub fn read_token_key(path: Option<&std::path::Path>) -> anyhow::Result<std::sync::Arc<[u8]>> {
    let Some(path) = path else {
        return Ok(std::sync::Arc::from(&[][..]));
    };
    let bytes = std::fs::read(path)
        .map_err(|err| anyhow::anyhow!("--token-key-file {}: {err}", path.display()))?;
    let text = bytes.trim_ascii();
    if text.is_empty() {
        anyhow::bail!("--token-key-file {}: the file is empty", path.display());
    }
    Ok(std::sync::Arc::from(text))
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open database x: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn a_cause_its_error_already_quotes_is_said_once() {
        let io = std::io::Error::other("pool timed out");
        let err = anyhow::Error::new(Quoting(io)).context("incidents list");
        assert_eq!(
            describe_error(&err),
            "incidents list: cannot open database x: pool timed out"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe_error(&plain), "outer: inner");
    }
}
