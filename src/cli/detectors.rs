//! `gatewatch detectors list|check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::output::escape_for_terminal;
use crate::detect::DetectorDef;
use crate::detectors_dir;

#[derive(Subcommand, Debug)]
pub enum DetectorsCommand {
    /// List the detectors that would run: built-ins plus DIR's additions and overrides.
    List {
        /// Directory of `*.toml` definitions that add to or override the built-ins by id.
        #[arg(long)]
        detectors: Option<PathBuf>,
    },
    /// Validate every `*.toml` definition in DIR and report all problems.
    Check {
        /// Directory of `*.toml` detector definitions.
        dir: PathBuf,
    },
}

pub fn run(command: DetectorsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DetectorsCommand::List { detectors } => {
            let defs = detectors_dir::load(detectors.as_deref())?;
            println!(
                "{:<20} {:<12} {:<7} {:<9} {:<34} DESCRIPTION",
                "ID", "KIND", "ENTITY", "SEVERITY", "ORIGIN"
            );
            for def in &defs {
                print_def(def);
            }
            Ok(ExitCode::SUCCESS)
        }
        DetectorsCommand::Check { dir } => match detectors_dir::load_dir(&dir) {
            Ok(defs) => {
                println!("{}: {} definitions OK", dir.display(), defs.len());
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                for error in &errors.0 {
                    eprintln!("{}", escape_for_terminal(error));
                }
                eprintln!("{}: {} problem(s)", dir.display(), errors.0.len());
                Ok(ExitCode::from(1))
            }
        },
    }
}

fn print_def(def: &DetectorDef) {
    println!(
        "{:<20} {:<12} {:<7} {:<9} {:<34} {}",
        escape_for_terminal(&def.id),
        def.params.kind(),
        def.entity.as_str(),
        def.severity.as_str(),
        escape_for_terminal(&def.origin),
        escape_for_terminal(&def.description)
    );
}
