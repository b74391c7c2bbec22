//! `gatewatch parse`: stdin lines → one JSON object per record (or its error).

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use clap::Args;

use super::format::{FormatArgs, SAMPLE_LINES};
use crate::input::LineReader;
use crate::input::DEFAULT_MAX_LINE;
use crate::parse::RequestJson;

#[derive(Args, Debug)]
pub struct ParseArgs {
    #[command(flatten)]
    format: FormatArgs,
}

pub fn run(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let mut reader = LineReader::new(io::stdin().lock(), DEFAULT_MAX_LINE);
    let (parser, chosen) = args.format.choose(&reader.peek_lines(SAMPLE_LINES)?)?;
    eprintln!("gatewatch parse: format {chosen}");
    let mut decoder = args.format.decoder(parser);
    let mut out = BufWriter::new(io::stdout().lock());
    let mut line_number = 0u64;
    let mut write_error = None;
    reader.for_each_line(|line| {
        line_number += 1;
        let json = decoder.decode(line, |_, parsed| match parsed {
            Ok(req) => serde_json::to_string(&RequestJson::from(&req)),
            Err(err) => serde_json::to_string(&serde_json::json!({
                "error": err.to_string(),
                "line": line_number,
            })),
        });
        if let Some(Ok(json)) = json {
            if let Err(err) = writeln!(out, "{json}") {
                write_error.get_or_insert(err);
            }
        }
    })?;
    out.flush()?;
    match write_error {
        Some(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Some(err) => Err(err.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}
