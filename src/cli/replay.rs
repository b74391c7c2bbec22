//! `gatewatch replay FILE…`: offline analysis at full speed.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::format::{FormatArgs, SAMPLE_LINES};
use super::output::{escape_for_terminal, table_header, table_row};
use tokio::sync::mpsc;

use crate::detect::{Engine, EngineSettings, Incident, IncidentEvent};
use crate::event::Timestamp;
use crate::input::{self, LineReader};
use crate::store::{redact_url, Store, StoreWriter, WriterReport, WriterSettings};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Log files to read in order (`.gz` content is detected; `-` is stdin).
    #[arg(required = true)]
    files: Vec<String>,
    #[command(flatten)]
    format: FormatArgs,
    /// jsonl: one Incident JSON object per line (printed when its episode closes);
    /// table: one row per incident for people.
    #[arg(long, value_enum, default_value_t = OutputKind::Jsonl)]
    output: OutputKind,
    /// Directory of detector definitions that add to or override the built-ins by id.
    #[arg(long)]
    detectors: Option<PathBuf>,
    /// Event time from the first line during which baselines only learn.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// How far behind the newest event time a line may be and still count.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    late_tolerance: Duration,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Also store incidents (as they open, escalate and close) in this database:
    /// sqlite://PATH (created if missing) or postgres://USER@HOST/DB.
    #[arg(long = "db", value_name = "URL")]
    db: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OutputKind {
    Jsonl,
    Table,
    /// Print no incidents (with --db: store only).
    None,
}

/// Unparsed lines shown in the summary.
const MAX_SAMPLES: usize = 5;

#[derive(Default)]
struct Totals {
    lines: u64,
    bytes: u64,
    parsed: u64,
    unparsed: u64,
    incidents: u64,
    samples: Vec<String>,
}

/// Prints incidents as they close; sends every version to the store when there is one.
struct Sink<W: Write> {
    out: W,
    kind: OutputKind,
    store: Option<mpsc::Sender<Incident>>,
}

impl<W: Write> Sink<W> {
    fn handle(&mut self, event: IncidentEvent, totals: &mut Totals) -> io::Result<()> {
        if let Some(store) = &self.store {
            // Waits while the store task's channel is full: replay runs at the store's pace
            // rather than losing incidents.
            if store.blocking_send(event.incident().clone()).is_err() {
                return Err(io::Error::other("the store task stopped"));
            }
        }
        let IncidentEvent::Closed(incident) = event else {
            return Ok(());
        };
        totals.incidents += 1;
        let printed = self.print(&incident);
        self.unless_only_stdout_closed(printed)
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = self.out.flush();
        self.unless_only_stdout_closed(flushed)
    }

    /// A closed stdout (`| head`) ends printing; with a store, the analysis goes on so every
    /// incident is still stored.
    fn unless_only_stdout_closed(&mut self, result: io::Result<()>) -> io::Result<()> {
        match result {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe && self.store.is_some() => {
                self.kind = OutputKind::None;
                Ok(())
            }
            result => result,
        }
    }

    fn print(&mut self, incident: &Incident) -> io::Result<()> {
        match self.kind {
            OutputKind::Jsonl => {
                serde_json::to_writer(&mut self.out, incident)?;
                self.out.write_all(b"\n")
            }
            OutputKind::Table => writeln!(self.out, "{}", table_row(incident)),
            OutputKind::None => Ok(()),
        }
    }
}

/// The store side of `--db`: a runtime running the batching store task.
struct StoreSink {
    runtime: tokio::runtime::Runtime,
    writer: StoreWriter,
    shown_url: String,
}

impl StoreSink {
    fn open(url: &str) -> anyhow::Result<StoreSink> {
        let runtime = super::db::runtime()?;
        let writer = runtime.block_on(async {
            let store = Store::open(url).await?;
            anyhow::Ok(StoreWriter::spawn(store, WriterSettings::default()))
        })?;
        Ok(StoreSink {
            runtime,
            writer,
            shown_url: redact_url(url),
        })
    }

    /// Waits until everything sent is stored (or the shutdown grace ends).
    fn finish(self) -> (WriterReport, String) {
        let report = self.runtime.block_on(self.writer.finish());
        (report, self.shown_url)
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let defs = crate::detectors_dir::load(args.detectors.as_deref())?;
    let settings = EngineSettings {
        late_tolerance_nanos: args.late_tolerance.as_nanos().min(i64::MAX as u128) as i64,
        warmup_nanos: args.warmup.as_nanos().min(i64::MAX as u128) as i64,
    };
    let mut engine = Engine::new(&defs, settings);
    let store = args.db.as_deref().map(StoreSink::open).transpose()?;
    let mut sink = Sink {
        out: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
        kind: args.output,
        store: store.as_ref().map(|s| s.writer.sender()),
    };
    if args.output == OutputKind::Table {
        writeln!(sink.out, "{}", table_header())?;
    }
    let show_progress = !args.no_progress && io::stderr().is_terminal();
    let mut totals = Totals::default();
    #[allow(clippy::disallowed_methods)]
    // Throughput is wall-clock by nature; the core never reads a clock.
    let started = Instant::now();
    let mut first_ts: Option<Timestamp> = None;
    let mut last_ts: Option<Timestamp> = None;

    for path in &args.files {
        let input = input::open(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        let progress = progress_bar(show_progress, input.size, path);
        let raw_bytes = input.raw_bytes.clone();
        let mut reader = LineReader::new(input.reader);
        let (parser, chosen) = args
            .format
            .choose(&reader.peek_lines(SAMPLE_LINES)?)
            .map_err(|e| anyhow::anyhow!("{path}: {e:#}"))?;
        eprintln!(
            "gatewatch replay: {}: format {chosen}",
            escape_for_terminal(path)
        );
        let mut decoder = args.format.decoder(parser);
        let mut write_error: Option<io::Error> = None;
        let mut line_number = 0u64;
        reader.for_each_line(
            |line| {
                line_number += 1;
                totals.lines += 1;
                let observed = decoder.decode(line, |record, parsed| match parsed {
                    Ok(mut req) => {
                        req.source = Some(path);
                        let ts = req.ts;
                        engine.observe(&req, record);
                        Ok(ts)
                    }
                    Err(err) => Err(format!(
                        "{}:{line_number}: {err}: {}",
                        escape_for_terminal(path),
                        escape_for_terminal(&String::from_utf8_lossy(
                            &record[..record.len().min(160)]
                        ))
                    )),
                });
                match observed {
                    None => {}
                    Some(Ok(ts)) => {
                        totals.parsed += 1;
                        first_ts = first_ts.min(ts).or(ts);
                        last_ts = last_ts.max(ts);
                    }
                    Some(Err(sample)) => {
                        totals.unparsed += 1;
                        if totals.samples.len() < MAX_SAMPLES {
                            totals.samples.push(sample);
                        }
                    }
                }
                for event in engine.drain_events() {
                    if let Err(err) = sink.handle(event, &mut totals) {
                        write_error.get_or_insert(err);
                    }
                }
            },
            |_| {
                if let Some(bar) = &progress {
                    bar.set_position(raw_bytes.get());
                }
            },
        )?;
        totals.bytes += reader.bytes;
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        if decoder.truncated() > 0 {
            eprintln!(
                "gatewatch replay: {}: {} joined records cut at the size cap",
                escape_for_terminal(path),
                decoder.truncated()
            );
        }
        if let Some(err) = write_error {
            if err.kind() == io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(err.into());
        }
    }
    engine.finish();
    for event in engine.drain_events() {
        sink.handle(event, &mut totals)?;
    }
    sink.flush()?;
    // The sink's sender must go before the writer can see the channel close.
    drop(sink);
    let stored = store.map(StoreSink::finish);
    print_summary(&totals, &engine, started.elapsed(), first_ts, last_ts);
    let Some((report, url)) = stored else {
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!(
        "  store {url}: {} incident versions received, {} upserts, {} retried batches",
        report.received, report.written, report.retries
    );
    if !report.complete() {
        anyhow::bail!(
            "{url}: not every incident was stored ({} dropped on a full queue, {} rejected, \
             {} still queued at shutdown); last error: {}",
            report.dropped_queue_full,
            report.rejected,
            report.unstored,
            report.last_error.as_deref().unwrap_or("none")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(show: bool, size: Option<u64>, path: &str) -> Option<ProgressBar> {
    if !show {
        return None;
    }
    let bar = match size {
        Some(size) => ProgressBar::new(size).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_message(escape_for_terminal(path));
    Some(bar)
}

fn print_summary(
    totals: &Totals,
    engine: &Engine,
    elapsed: Duration,
    first_ts: Option<Timestamp>,
    last_ts: Option<Timestamp>,
) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "gatewatch replay: {} lines ({:.1} MB) in {:.2} s: {:.0} lines/s, {:.0} MB/s",
        totals.lines,
        totals.bytes as f64 / 1e6,
        secs,
        totals.lines as f64 / secs,
        totals.bytes as f64 / 1e6 / secs
    );
    let stats = engine.stats();
    let _ = writeln!(
        err,
        "  parsed {}, unparsed {}, late {} (beyond the tolerance, not analysed)",
        totals.parsed, totals.unparsed, stats.late
    );
    if let (Some(first), Some(last)) = (first_ts, last_ts) {
        let _ = writeln!(
            err,
            "  event time {} .. {} ({:.1} min)",
            first.to_rfc3339(),
            last.to_rfc3339(),
            (last.nanos() - first.nanos()) as f64 / 60e9
        );
    }
    let _ = writeln!(err, "  incidents {}", totals.incidents);
    for (id, detector) in engine.detector_stats() {
        let _ = writeln!(
            err,
            "    {id}: {} incidents, {} keys tracked, {} evicted",
            detector.incidents, detector.keys, detector.evictions
        );
    }
    if !totals.samples.is_empty() {
        let _ = writeln!(err, "  unparsed samples:");
        for sample in &totals.samples {
            let _ = writeln!(err, "    {sample}");
        }
    }
}
