//! Command-line interface: one file per subcommand.

mod detectors;
mod output;
mod parse;
mod replay;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::{escape_for_terminal, RequestJson};

#[derive(Parser, Debug)]
#[command(
    name = "gatewatch",
    version,
    about = "Access-log anomaly detector for ingress controllers (nginx, ingress-nginx)",
    long_about = "gatewatch reads ingress access logs, keeps event-time sliding-window statistics \
                  per client and flags request-rate spikes, scanners and brute force as incidents."
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
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Parse(args) => parse::run(args),
        Command::Detectors(command) => detectors::run(command),
    }
}

/// The parser for `--format NAME` (not `auto`), or an error that lists the names.
fn named_parser(name: &str) -> anyhow::Result<Box<dyn crate::parse::Parser>> {
    crate::parse::preset(name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown --format {name:?}; known formats: auto, {}",
            crate::parse::PRESET_NAMES.join(", ")
        )
    })
}

/// Unwraps container wrappers from sample lines, for format detection.
fn unwrapped_sample(lines: &[&[u8]]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .filter_map(|line| match crate::parse::unwrap_line(line) {
            None => Some(line.to_vec()),
            Some(Ok(unwrapped)) if !unwrapped.partial => Some(unwrapped.inner.into_owned()),
            Some(_) => None,
        })
        .collect()
}

/// Resolves `--format` for one input: a named preset, or auto-detection from its first
/// lines. Returns the parser and a note saying how it was chosen.
fn choose_parser(
    format: &str,
    sample: &[&[u8]],
) -> anyhow::Result<(Box<dyn crate::parse::Parser>, String)> {
    if format != "auto" {
        return Ok((named_parser(format)?, format!("{format} (--format)")));
    }
    let unwrapped = unwrapped_sample(sample);
    match crate::parse::detect_format(unwrapped.iter().map(Vec::as_slice)) {
        Some(found) => Ok((
            named_parser(found.format)?,
            format!(
                "{} (auto: parsed {}/{} sample lines)",
                found.format, found.parsed, found.sampled
            ),
        )),
        None if sample.is_empty() => {
            Ok((named_parser("combined")?, "combined (empty input)".into()))
        }
        None => anyhow::bail!(
            "--format auto: none of the formats ({}) parses any of the first {} lines; \
             name one with --format",
            crate::parse::PRESET_NAMES.join(", "),
            sample.len()
        ),
    }
}
