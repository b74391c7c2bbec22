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
            let rows: Vec<[String; 6]> = defs.iter().map(row).collect();
            let header =
                ["ID", "KIND", "ENTITY", "SEVERITY", "ORIGIN", "DESCRIPTION"].map(String::from);
            // Columns as wide as their widest cell (the description is last, unpadded).
            let mut widths = [0usize; 5];
            for cells in std::iter::once(&header).chain(&rows) {
                for (width, cell) in widths.iter_mut().zip(cells) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            let mut out = std::io::stdout().lock();
            for cells in std::iter::once(&header).chain(&rows) {
                let mut line = String::new();
                for (width, cell) in widths.iter().zip(cells) {
                    line.push_str(&format!("{cell:<width$}  "));
                }
                line.push_str(&cells[5]);
                // A closed pipe (`| head`) ends the listing quietly.
                if std::io::Write::write_fmt(&mut out, format_args!("{line}\n")).is_err() {
                    break;
                }
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

/// A definition's cells, log-free but escaped all the same (a directory's files are text).
fn row(def: &DetectorDef) -> [String; 6] {
    [
        escape_for_terminal(&def.id),
        def.params.kind().to_string(),
        def.entity.as_str().to_string(),
        def.severity.as_str().to_string(),
        escape_for_terminal(&def.origin),
        escape_for_terminal(&def.description),
    ]
}
