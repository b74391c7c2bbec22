//! `gatewatch replay FILE…`: offline analysis at full speed, a thin CLI over `pipeline`.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::format::FormatArgs;
use super::output::{escape_for_terminal, incidents_table};
use crate::detect::ignore::IgnoreRules;
use crate::detect::{Engine, EngineSettings, Incident, IncidentEvent};
use crate::input::{self, DEFAULT_MAX_LINE};
use crate::pipeline::{
    self, ClockSettings, Merge, PipelineSettings, Sink, SourceReport, StoreSink,
};
use crate::store::WriterSettings;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Log files (`.gz` content is detected; `-` is stdin), in any order: their lines are
    /// merged by event time.
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
    /// Key of token fingerprints (`fp_` + HMAC-SHA256 of the log's user field): the file's
    /// bytes, surrounding whitespace stripped. Without it: the key of the store (`--db`), generated
    /// there once; without a store, unkeyed hashes.
    #[arg(long, value_name = "FILE")]
    token_key_file: Option<PathBuf>,
    /// Requests no detector sees (one's own monitors, scanners, health checks): a TOML file
    /// with `cidrs = [...]`, `user_agents = [...]` (substrings) and `paths = [...]` (exact,
    /// or a prefix ending in `*`), as `[ignore]` in the daemon's config.
    #[arg(long, value_name = "FILE")]
    ignore_file: Option<PathBuf>,
    /// Event time from the first line during which baselines only learn.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// How far behind its own file's newest event time a line may be and still count.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    late_tolerance: Duration,
    /// A line whose time jumps further than this from its file's recent lines counts only
    /// if the lines after it agree (otherwise it is set aside: a corrupt or forged time).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    max_time_jump: Duration,
    /// Lines longer than this many bytes are cut there (and counted).
    #[arg(long, default_value_t = DEFAULT_MAX_LINE)]
    max_line_bytes: usize,
    /// Decoding threads (default: one per core); 1 runs everything on one thread.
    #[arg(long)]
    threads: Option<usize>,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Also store incidents (as they open, escalate and close) in this database:
    /// sqlite://PATH (created if missing) or postgres://USER@HOST/DB. Without it (and
    /// without GATEWATCH_DB) replay only prints.
    #[arg(
        long = "db",
        value_name = "URL",
        env = "GATEWATCH_DB",
        // The URL may hold a password: never print the variable's value in --help.
        hide_env_values = true
    )]
    db: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OutputKind {
    Jsonl,
    Table,
    /// Print no incidents (with --db: store only).
    None,
}

/// Prints incidents as their episodes close.
struct Printer<W: Write> {
    out: W,
    kind: OutputKind,
    /// With a store, a closed stdout (`| head`) ends printing but not the analysis.
    keep_going_without_stdout: bool,
    closed_stdout: bool,
    accepted: u64,
    incidents: u64,
    /// `--output table`: the closed incidents, printed by `flush`.
    table: Vec<Incident>,
}

impl<W: Write> Printer<W> {
    fn print(&mut self, incident: &Incident) -> io::Result<()> {
        match self.kind {
            OutputKind::Jsonl => {
                serde_json::to_writer(&mut self.out, incident)?;
                self.out.write_all(b"\n")
            }
            // Printed at the end, in time order and fitted to the terminal.
            OutputKind::Table => {
                self.table.push(incident.clone());
                Ok(())
            }
            OutputKind::None => Ok(()),
        }
    }

    fn unless_only_stdout_closed(&mut self, result: io::Result<()>) -> anyhow::Result<()> {
        match result {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                self.kind = OutputKind::None;
                self.closed_stdout = true;
                if self.keep_going_without_stdout {
                    Ok(())
                } else {
                    Err(err.into())
                }
            }
            result => Ok(result?),
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.kind == OutputKind::Table {
            let incidents: Vec<&Incident> = self.table.iter().collect();
            for line in incidents_table(&incidents, super::table::terminal_width()) {
                if let Err(err) = writeln!(self.out, "{line}") {
                    return self.unless_only_stdout_closed(Err(err));
                }
            }
            self.table.clear();
        }
        let flushed = self.out.flush();
        self.unless_only_stdout_closed(flushed)
    }
}

impl<W: Write> Sink for Printer<W> {
    fn accept(&mut self, seq: u64, event: &IncidentEvent) -> anyhow::Result<()> {
        self.accepted = seq;
        let IncidentEvent::Closed(incident) = event else {
            return Ok(());
        };
        self.incidents += 1;
        let printed = self.print(incident);
        self.unless_only_stdout_closed(printed)
    }

    fn durable(&mut self) -> u64 {
        self.accepted
    }
}

/// The `--ignore-file` rules; none without one.
fn read_ignore(path: Option<&std::path::Path>) -> anyhow::Result<IgnoreRules> {
    let Some(path) = path else {
        return Ok(IgnoreRules::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|err| anyhow::anyhow!("--ignore-file {}: {err}", path.display()))?;
    IgnoreRules::parse(&format!("--ignore-file {}", path.display()), &text)
        .map_err(|errors| anyhow::anyhow!(errors.join("\n")))
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let defs = crate::detectors_dir::load(args.detectors.as_deref())?;
    let mut store = args
        .db
        .as_deref()
        .map(|url| StoreSink::open(url, WriterSettings::default()))
        .transpose()?;
    let mut engine = Engine::new(
        &defs,
        EngineSettings {
            warmup_nanos: nanos(args.warmup),
            token_key: super::token_key(args.token_key_file.as_deref(), store.as_ref())?,
            ignore: read_ignore(args.ignore_file.as_deref())?,
            ..EngineSettings::default()
        },
    );
    let settings = PipelineSettings {
        clock: ClockSettings {
            late_tolerance_nanos: nanos(args.late_tolerance),
            max_jump_nanos: nanos(args.max_time_jump),
            wall_clock: None,
        },
        threads: args
            .threads
            .unwrap_or_else(|| PipelineSettings::default().threads),
        ..PipelineSettings::default()
    };
    let inputs = args
        .files
        .iter()
        .map(|path| input::open(path).map_err(|e| anyhow::anyhow!("{path}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let progress = Progress::new(!args.no_progress && io::stderr().is_terminal(), &inputs);
    let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
    let format = args.format.clone();
    let mut read = pipeline::read_spec(
        Arc::new(move |sample: &[&[u8]]| format.choose(sample)),
        args.format.trusted_proxies(),
        pipeline::chunk_bytes_for(inputs.len(), settings.depth, args.max_line_bytes),
        args.max_line_bytes,
    );
    // Path patterns are matched on the decode threads, off the engine's.
    read.path_match = Some(engine.path_match());
    let streams = pipeline::sources(inputs, &read, &settings);

    let mut printer = Printer {
        out: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
        kind: args.output,
        keep_going_without_stdout: store.is_some(),
        closed_stdout: false,
        accepted: 0,
        incidents: 0,
        table: Vec::new(),
    };
    #[allow(clippy::disallowed_methods)]
    // Throughput is wall-clock by nature; the core never reads a clock.
    let started = Instant::now();
    let merged = {
        let mut sinks: Vec<&mut dyn Sink> = vec![&mut printer];
        if let Some(store) = store.as_mut() {
            sinks.push(store);
        }
        pipeline::run(
            names,
            streams,
            &mut engine,
            &mut sinks,
            &settings,
            &mut |merge| progress.update(merge),
        )
    };
    let merged = match merged {
        Ok(merged) => merged,
        // `| head` without a store: the reader has what it asked for.
        Err(_) if printer.closed_stdout => return Ok(ExitCode::SUCCESS),
        Err(err) => return Err(err),
    };
    progress.finish();
    if printer.flush().is_err() {
        return Ok(ExitCode::SUCCESS);
    }
    let elapsed = started.elapsed();
    let stored = store.map(|store| {
        let url = store.url().to_owned();
        (store.finish(), url)
    });
    let trusted = !args.format.trusted_proxies().is_empty();
    let failed = print_summary(&merged, &engine, printer.incidents, elapsed, trusted);
    let mut status = ExitCode::SUCCESS;
    if let Some((report, url)) = stored {
        eprintln!(
            "  store {url}: {} incident events received, {} upserts, {} retried batches",
            report.received, report.written, report.retries
        );
        if !report.complete() {
            eprintln!(
                "gatewatch replay: {url}: not every incident was stored ({} rejected, {} still \
                 queued at shutdown); last error: {}",
                report.rejected,
                report.unstored,
                report.last_error.as_deref().unwrap_or("none")
            );
            status = ExitCode::FAILURE;
        }
    }
    if failed {
        status = ExitCode::FAILURE;
    }
    Ok(status)
}

fn nanos(duration: Duration) -> i64 {
    duration.as_nanos().min(i64::MAX as u128) as i64
}

/// A progress bar over the raw bytes of every input, when stderr is a terminal.
struct Progress {
    bar: Option<ProgressBar>,
    counters: Vec<Arc<AtomicU64>>,
}

impl Progress {
    fn new(show: bool, inputs: &[input::Input]) -> Self {
        let counters = inputs.iter().map(|i| i.raw_bytes.clone()).collect();
        if !show {
            return Progress {
                bar: None,
                counters,
            };
        }
        let total: Option<u64> = inputs.iter().map(|i| i.size).sum();
        let bar = match total {
            Some(size) => ProgressBar::new(size).with_style(
                // `wide_bar` takes what the terminal has left, so the line never wraps (a
                // wrapped bar leaves a stale frame behind when cleared).
                ProgressStyle::with_template(
                    "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        let label = match inputs {
            [one] => short_label(&escape_for_terminal(&one.name)),
            many => format!("{} files", many.len()),
        };
        bar.set_message(label);
        Progress {
            bar: Some(bar),
            counters,
        }
    }

    fn update(&self, _merge: &Merge) {
        if let Some(bar) = &self.bar {
            bar.set_position(
                self.counters
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .sum(),
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Warnings about who the clients are: `--trusted-proxies` that matched no peer (so it
/// changed nothing), or, without it, one private address sending most requests (a proxy in
/// front that nobody declared: every client then looks like that one address).
fn proxy_warnings(reports: &[SourceReport], trusted: bool) -> Vec<String> {
    let parsed: u64 = reports.iter().map(|r| r.parsed).sum();
    if parsed == 0 {
        return Vec::new();
    }
    if trusted {
        if reports.iter().all(|r| r.proxied == 0) {
            return vec![format!(
                "warning: --trusted-proxies matched the peer of none of the {parsed} requests, so \
                 it changed no client address: check the proxies' addresses against the log's \
                 first field"
            )];
        }
        return Vec::new();
    }
    let mut private = pipeline::PrivateClients::default();
    for report in reports {
        private.merge(&report.private_clients);
    }
    match private.top() {
        Some((ip, count)) if count * 2 >= parsed => vec![format!(
            "warning: {ip}, a private address, sent at least {:.0}% of the requests: if it is a \
             proxy in front of the server, declare it (--trusted-proxies {ip}/32) and log the \
             forwarded chain (--format nginx-main, or $http_x_forwarded_for in --log-format), or \
             every client looks like {ip}",
            count as f64 * 100.0 / parsed as f64
        )],
        _ => Vec::new(),
    }
}

/// Prints the summary on stderr; true when a source failed.
fn print_summary(
    merge: &Merge,
    engine: &Engine,
    incidents: u64,
    elapsed: Duration,
    trusted: bool,
) -> bool {
    let reports = merge.reports();
    let total = |f: fn(&SourceReport) -> u64| reports.iter().map(f).sum::<u64>();
    let (lines, bytes) = (total(|r| r.lines), total(|r| r.bytes));
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut err = io::stderr().lock();
    for report in &reports {
        if let Some(format) = &report.format {
            let _ = writeln!(
                err,
                "gatewatch replay: {}: format {format}",
                escape_for_terminal(&report.name)
            );
        }
    }
    let _ = writeln!(
        err,
        "gatewatch replay: {lines} lines ({:.1} MB) in {secs:.2} s: {:.0} lines/s, {:.0} MB/s",
        bytes as f64 / 1e6,
        lines as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    if reports.len() > 1 {
        let order: Vec<String> = merge
            .order()
            .iter()
            .map(|&i| escape_for_terminal(&reports[i].name))
            .collect();
        let _ = writeln!(
            err,
            "  {} files merged by event time (oldest first line first): {}",
            reports.len(),
            order.join(", ")
        );
    }
    let _ = writeln!(
        err,
        "  parsed {}, unparsed {}, late {}, out of range {}",
        total(|r| r.parsed),
        total(|r| r.unparsed),
        total(|r| r.late),
        total(|r| r.out_of_range)
    );
    if total(|r| r.late) > 0 {
        let _ = writeln!(
            err,
            "    late: more than --late-tolerance behind their file's newest time (not analysed)"
        );
    }
    if total(|r| r.out_of_range) > 0 {
        let _ = writeln!(
            err,
            "    out of range: times far from their file's others (set aside, see --max-time-jump)"
        );
    }
    let (cut, incomplete) = (total(|r| r.cut_lines), total(|r| r.incomplete));
    if cut > 0 || incomplete > 0 {
        let _ = writeln!(
            err,
            "  {cut} lines cut at --max-line-bytes, {incomplete} container records without \
             their last fragment"
        );
    }
    let first = reports.iter().filter_map(|r| r.first).min();
    let last = reports.iter().filter_map(|r| r.last).max();
    if let (Some(first), Some(last)) = (first, last) {
        let _ = writeln!(
            err,
            "  event time {} .. {} ({})",
            first.to_rfc3339(),
            last.to_rfc3339(),
            span((last.nanos() - first.nanos()).max(0))
        );
    }
    for warning in proxy_warnings(&reports, trusted) {
        let _ = writeln!(err, "gatewatch replay: {warning}");
    }
    let ignored = engine.stats().ignored;
    if ignored > 0 {
        let _ = writeln!(err, "  ignored {ignored} requests (--ignore-file)");
    }
    let _ = writeln!(err, "  incidents {incidents}");
    for (id, detector) in engine.detector_stats() {
        let _ = writeln!(
            err,
            "    {id}: {}, {} tracked, {} evicted",
            plural(detector.incidents, "incident"),
            plural(detector.keys as u64, "key"),
            detector.evictions
        );
    }
    let samples: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.samples.iter().map(move |s| {
                format!(
                    "{}:{}",
                    escape_for_terminal(&r.name),
                    escape_for_terminal(s)
                )
            })
        })
        .take(5)
        .collect();
    if !samples.is_empty() {
        let _ = writeln!(err, "  unparsed samples:");
        for sample in samples {
            let _ = writeln!(err, "    {sample}");
        }
    }
    let mut failed = false;
    for report in &reports {
        if let Some(error) = &report.error {
            failed = true;
            let _ = writeln!(
                err,
                "gatewatch replay: error: {} (read up to byte {}; what came before was analysed)",
                escape_for_terminal(error),
                report.processed_offset
            );
        }
    }
    failed
}

/// A file name for the progress line: at most 24 characters, keeping its end.
fn short_label(name: &str) -> String {
    const MAX: usize = 24;
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= MAX {
        return name.to_owned();
    }
    let tail: String = chars[chars.len() - (MAX - 1)..].iter().collect();
    format!("…{tail}")
}

/// "1 incident", "2 incidents".
fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A span of event time as people say it: "25.0 min", "21.0 h", "3.2 days".
fn span(nanos: i64) -> String {
    let minutes = nanos as f64 / 60e9;
    if minutes < 120.0 {
        format!("{minutes:.1} min")
    } else if minutes < 48.0 * 60.0 {
        format!("{:.1} h", minutes / 60.0)
    } else {
        format!("{:.1} days", minutes / (24.0 * 60.0))
    }
}

#[cfg(test)]
mod summary_tests {
    use super::*;

    #[test]
    fn counts_and_spans_read_as_people_say_them() {
        assert_eq!(plural(1, "incident"), "1 incident");
        assert_eq!(plural(0, "incident"), "0 incidents");
        assert_eq!(plural(37, "incident"), "37 incidents");
        assert_eq!(span(25 * 60_000_000_000), "25.0 min");
        assert_eq!(span(1260 * 60_000_000_000), "21.0 h");
        assert_eq!(span(3 * 24 * 3_600_000_000_000), "3.0 days");
    }

    #[test]
    fn progress_labels_keep_the_end_of_long_names() {
        assert_eq!(short_label("access.log"), "access.log");
        let long = short_label("/var/log/pods/ingress-nginx_controller-7d9f/access.log.gz");
        assert_eq!(long.chars().count(), 24);
        assert!(
            long.starts_with('…') && long.ends_with("access.log.gz"),
            "{long}"
        );
    }

    #[test]
    fn a_proxy_warning_needs_most_requests_from_one_private_address() {
        let report = |parsed: u64, private: &[(&str, u64)], proxied: u64| {
            let mut report = SourceReport {
                parsed,
                proxied,
                ..SourceReport::default()
            };
            for (ip, n) in private {
                report.private_clients.add(ip.parse().unwrap(), *n);
            }
            report
        };
        assert!(proxy_warnings(&[report(100, &[("10.0.0.5", 40)], 0)], false).is_empty());
        let warned = proxy_warnings(
            &[
                report(60, &[("10.0.0.5", 30)], 0),
                report(40, &[("10.0.0.5", 30)], 0),
            ],
            false,
        );
        assert!(
            warned[0].contains("10.0.0.5, a private address, sent at least 60%"),
            "{warned:?}"
        );
        assert!(proxy_warnings(&[report(100, &[], 3)], true).is_empty());
        assert!(
            proxy_warnings(&[report(100, &[], 0)], true)[0].contains("matched the peer of none")
        );
    }
}
