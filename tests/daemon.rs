//! `gatewatch run` end to end: the real binary follows real files that the test writes,
//! rotates (rename, the kubelet's rename + gzip, copytruncate), and restarts it over;
//! counts come from its own `/metrics`, incidents from its SQLite store.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

const TOKEN: &str = "test-token-0123456789abcdef";
/// Long enough for a slow CI machine; tests wait for a condition, not for a time.
const PATIENCE: Duration = Duration::from_secs(90);

struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// For what the tests report (rates, stop times), never for what they assert.
#[allow(clippy::disallowed_methods)]
fn stopwatch() -> std::time::Instant {
    std::time::Instant::now()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A config for one source group over `paths`, storing in `dir/gw.db`.
/// One token key for the daemons and the replays they are compared with (without one, the
/// daemon fingerprints with its store's generated key and replay with none).
fn token_key_file() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("daemon-tests-token.key");
    if !path.exists() {
        fs::write(&path, "daemon-tests-key").unwrap();
    }
    path
}

fn config(dir: &Path, paths: &[String], extra_source: &str, extra: &str) -> PathBuf {
    let paths: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    let text = format!(
        "warmup = \"1m\"\n\
         [tokens]\nkey_file = {:?}\n\
         [[sources]]\nname = \"web\"\npaths = [{}]\n{extra_source}\n\
         [store]\nurl = \"sqlite://{}\"\n\
         [api]\nlisten = \"127.0.0.1:{}\"\n\
         [tail]\npoll_interval = \"50ms\"\ndiscover_interval = \"300ms\"\nidle_timeout = \"2s\"\n\
         checkpoint_interval = \"200ms\"\n{extra}\n",
        token_key_file().display().to_string(),
        paths.join(", "),
        dir.join("gw.db").display(),
        free_port(),
    );
    let path = dir.join(format!("gw-{}.toml", free_port()));
    fs::write(&path, text).unwrap();
    path
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let text = fs::read_to_string(config).unwrap();
        let port: u16 = text
            .split("listen = \"127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        let log = config.with_extension(format!("{}.stderr", free_port()));
        let child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
            .args(["run", "--config"])
            .arg(config)
            .env("GATEWATCH_API_TOKEN", TOKEN)
            .env("GATEWATCH_LOG", "info,sqlx=warn,gatewatch::tail=debug")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start gatewatch run");
        let daemon = Daemon { child, port, log };
        daemon.eventually("/readyz answers 200", || {
            daemon
                .get("/readyz")
                .is_some_and(|(status, _)| status == 200)
        });
        daemon
    }

    /// GET `path`: (status, body), or None when nothing answers.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    fn metrics(&self) -> String {
        self.get("/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// A metric's value (summed over label sets when `name` has no labels of its own).
    fn metric(&self, name: &str) -> f64 {
        metric_in(&self.metrics(), name)
    }

    fn eventually(&self, what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..(PATIENCE.as_millis() / 100) {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not within {PATIENCE:?}\n{}", self.log_text());
    }

    /// Waits until `gatewatch_lines_read_total` reaches `lines`; then checks it stays there.
    fn read_exactly(&self, lines: u64) {
        self.eventually(&format!("{lines} lines read"), || {
            self.metric("gatewatch_lines_read_total") as u64 >= lines
        });
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            self.metric("gatewatch_lines_read_total") as u64,
            lines,
            "{}",
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait; returns the exit status's success.
    fn stop(mut self) -> bool {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        if !status.success() {
            eprintln!("{}", self.log_text());
        }
        status.success()
    }

    fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name).is_some_and(|rest| {
                rest.starts_with(' ') || rest.starts_with('{') && !name.contains('{')
            })
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Combined-format line number `n`, `n` milliseconds after a fixed start, from one of 500
/// clients: steady traffic no detector minds.
fn line(n: u64) -> String {
    let secs = n / 1000;
    let (m, s) = (secs / 60 % 60, secs % 60);
    let h = 10 + secs / 3600;
    format!(
        "10.1.{}.{} - - [01/Dec/2026:{h:02}:{m:02}:{s:02} +0000] \"GET /page/{n} HTTP/1.1\" 200 512 \"-\" \"test-agent\"\n",
        n % 500 / 250,
        n % 250 + 1
    )
}

fn lines(range: std::ops::Range<u64>) -> String {
    range.map(line).collect()
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// Writes lines `range` to `path` in batches at about `per_second`.
fn write_paced(path: &Path, range: std::ops::Range<u64>, per_second: u64) {
    let batch = (per_second / 50).max(1);
    let mut n = range.start;
    while n < range.end {
        let end = (n + batch).min(range.end);
        append(path, &lines(n..end));
        n = end;
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gzip(from: &Path, to: &Path) {
    let data = fs::read(from).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(File::create(to).unwrap(), Default::default());
    encoder.write_all(&data).unwrap();
    encoder.finish().unwrap();
    fs::remove_file(from).unwrap();
}

#[test]
fn every_line_once_through_rename_rotations_and_a_copytruncate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &lines(0..1000));
    let config = config(
        dir.path(),
        &[format!("{}/access.log*", dir.path().display())],
        "format = \"combined\"",
        "",
    );
    let daemon = Daemon::start(&config);
    let total = 200_000;
    let step = 33_000;
    let mut written = 1000;
    let started = stopwatch();
    // Renames after rounds 1, 2, 4 and 5; a copytruncate after round 3.
    for round in 1..=5 {
        let end = round * step;
        write_paced(&log, written..end, 100_000);
        written = end;
        if round == 3 {
            // copytruncate: copy, then cut the file the writer keeps appending to.
            fs::copy(&log, dir.path().join("access.log.copied")).unwrap();
            OpenOptions::new()
                .write(true)
                .open(&log)
                .unwrap()
                .set_len(0)
                .unwrap();
        } else {
            fs::rename(&log, dir.path().join(format!("access.log.{round}"))).unwrap();
        }
    }
    write_paced(&log, written..total, 100_000);
    // Reported, not asserted (the acceptance asks for >= 50,000 lines/s; a loaded machine
    // may write slower, which makes the test easier, not wrong).
    eprintln!(
        "wrote {} lines at {:.0} lines/s",
        total - 1000,
        (total - 1000) as f64 / started.elapsed().as_secs_f64()
    );
    daemon.read_exactly(total);
    let text = daemon.metrics();
    assert_eq!(metric_in(&text, "gatewatch_lines_late_total"), 0.0);
    // A file first found under its rotated name is followed there (not counted as renamed).
    assert!(
        metric_in(&text, "gatewatch_rotations_total{kind=\"rename\"}") >= 1.0,
        "{text}"
    );
    assert!(
        metric_in(&text, "gatewatch_rotations_total{kind=\"truncate\"}") >= 1.0,
        "{text}"
    );
    for name in METRICS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "{name} missing from /metrics:\n{text}"
        );
    }
    // Bounded labels: five rotated names, one source label.
    assert!(
        !text.contains("access.log"),
        "no file name in a label:\n{text}"
    );
    check_with_promtool(&text);
    assert!(daemon.stop());
}

/// The metrics issue 9 names, all of which `/metrics` must show.
const METRICS: [&str; 13] = [
    "gatewatch_lines_read_total",
    "gatewatch_lines_parsed_total",
    "gatewatch_lines_unparsed_total",
    "gatewatch_lines_late_total",
    "gatewatch_incidents_opened_total",
    "gatewatch_source_lag_bytes",
    "gatewatch_event_time_lag_seconds",
    "gatewatch_files_tracked",
    "gatewatch_rotations_total",
    "gatewatch_state_keys",
    "gatewatch_state_evictions_total",
    "gatewatch_store_queue_depth",
    "gatewatch_store_errors_total",
];

/// `promtool check metrics`, when the Prometheus tools are installed (.ci/run installs them).
fn check_with_promtool(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: promtool check metrics (promtool is not installed; apt install prometheus)"
        );
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CRI-wrapped line, as the kubelet's container runtime writes them.
fn cri(range: std::ops::Range<u64>) -> String {
    range
        .map(|n| format!("2026-12-01T10:00:00.000000000Z stdout F {}", line(n)))
        .collect()
}

#[test]
fn kubelet_rotation_with_gzip_and_a_restart_across_it() {
    let dir = tempfile::tempdir().unwrap();
    let pod = dir
        .path()
        .join("pods/ingress_controller-abc_uid/controller");
    fs::create_dir_all(&pod).unwrap();
    let current = pod.join("0.log");
    let config = config(
        dir.path(),
        &[format!("{}/pods/*/controller/*.log*", dir.path().display())],
        "format = \"combined\"",
        "",
    );
    append(&current, &cri(0..5000));
    let daemon = Daemon::start(&config);
    // Rotation 1: renamed with a time suffix; the runtime reopens 0.log.
    fs::rename(&current, pod.join("0.log.20261201-100000")).unwrap();
    append(&current, &cri(5000..15_000));
    // Rotation 2: the older rotated file is gzipped (plain one deleted), 0.log renamed again.
    gzip(
        &pod.join("0.log.20261201-100000"),
        &pod.join("0.log.20261201-100000.gz"),
    );
    fs::rename(&current, pod.join("0.log.20261201-100100")).unwrap();
    append(&current, &cri(15_000..20_000));
    daemon.read_exactly(20_000);
    assert!(daemon.stop(), "clean stop");

    // While it is down: more lines, a rotation, and the gzip of the file it was reading
    // (its unread lines now exist only compressed).
    append(&current, &cri(20_000..25_000));
    fs::rename(&current, pod.join("0.log.20261201-100200")).unwrap();
    gzip(
        &pod.join("0.log.20261201-100200"),
        &pod.join("0.log.20261201-100200.gz"),
    );
    append(&current, &cri(25_000..30_000));
    let daemon = Daemon::start(&config);
    daemon.read_exactly(10_000);
    assert_eq!(daemon.metric("gatewatch_lines_unparsed_total"), 0.0);
    assert!(daemon.stop());
}

#[test]
fn a_clean_stop_rereads_nothing_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = config(
        dir.path(),
        &[format!("{}/*.log", dir.path().display())],
        "format = \"combined\"\nstart_at = \"end\"",
        "",
    );
    // Present before the very first start, with start_at = "end": skipped.
    append(&log, &lines(0..3000));
    let daemon = Daemon::start(&config);
    write_paced(&log, 3000..13_000, 50_000);
    daemon.read_exactly(10_000);
    assert!(daemon.stop(), "clean stop");
    // Stopped in the middle of a line: the half line must be read once, whole.
    let more = lines(13_000..23_000);
    let (head, tail) = more.split_at(more.len() / 2 + 7);
    append(&log, head);
    let daemon = Daemon::start(&config);
    append(&log, tail);
    daemon.read_exactly(10_000);
    assert_eq!(daemon.metric("gatewatch_lines_unparsed_total"), 0.0);
    assert!(daemon.stop());
}

/// 50 pod logs appearing one after another, pod 7's two minutes behind the others.
fn fifty_files_appearing_one_lagging(watch: &str, discover: &str) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("pods");
    fs::create_dir(&logs).unwrap();
    let config = config(
        dir.path(),
        &[format!("{}/*.log", logs.display())],
        "format = \"combined\"",
        &format!("watch = \"{watch}\""),
    );
    let text = fs::read_to_string(&config).unwrap().replace(
        "discover_interval = \"300ms\"",
        &format!("discover_interval = \"{discover}\""),
    );
    fs::write(&config, text).unwrap();
    let daemon = Daemon::start(&config);
    let per_file = 400;
    for pod in 0..50u64 {
        // Pod 7's clock (or its log shipping) is two minutes behind the others.
        let shift = if pod == 7 { 0 } else { 120_000 };
        let text: String = (0..per_file)
            .map(|i| line(shift + pod * 2000 + i * 5))
            .collect();
        let path = logs.join(format!("pod-{pod:02}.log"));
        // Created empty first, as writers do: the file-system event comes before the line.
        File::create(&path).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        append(&path, &text);
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.read_exactly(50 * per_file);
    assert_eq!(daemon.metric("gatewatch_lines_late_total"), 0.0);
    assert_eq!(daemon.metric("gatewatch_files_tracked"), 50.0);
    (daemon, dir)
}

#[test]
fn files_appearing_over_time_one_lagging_two_minutes_none_late_with_polling() {
    let (daemon, _dir) = fifty_files_appearing_one_lagging("poll", "300ms");
    assert!(
        daemon.log_text().contains("events=false"),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.stop());
}

#[test]
fn files_appearing_over_time_one_lagging_two_minutes_none_late_with_inotify() {
    // Globs evaluated again only hourly: every file is found through its inotify event.
    let (daemon, _dir) = fifty_files_appearing_one_lagging("auto", "1h");
    assert!(
        daemon.log_text().contains("events=true"),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.stop());
}

/// Incident ids in a SQLite store, through the CLI.
fn stored_ids(db: &Path) -> BTreeSet<String> {
    stored_ids_at(&format!("sqlite://{}", db.display()))
}

fn stored_ids_at(url: &str) -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args([
            "incidents",
            "list",
            "--output",
            "json",
            "--limit",
            "1000",
            "--db",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn attacks_log() -> Vec<u8> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(File::open("testdata/nginx-combined-attacks.log.gz").unwrap())
        .read_to_end(&mut text)
        .unwrap();
    text
}

fn replay_ids(path: &Path) -> BTreeSet<String> {
    let replayed = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args([
            "replay",
            "--no-progress",
            "--output",
            "jsonl",
            "--token-key-file",
        ])
        .arg(token_key_file())
        .arg(path)
        .output()
        .unwrap();
    assert!(replayed.status.success());
    String::from_utf8_lossy(&replayed.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Writes `lines` to `path` 2,000 at a time: 25 minutes of traffic in about a second, far
/// faster than 10x real time.
fn write_fast(path: &Path, lines: &[&[u8]]) {
    for chunk in lines.chunks(2000) {
        append(path, &String::from_utf8_lossy(&chunk.concat()));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon over `dir/live/*.log` with replay's default warm-up.
fn live_config(dir: &Path) -> (PathBuf, PathBuf) {
    let live = dir.join("live");
    fs::create_dir(&live).unwrap();
    let config = config(
        dir,
        &[format!("{}/*.log", live.display())],
        "format = \"combined\"",
        "",
    );
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("warmup = \"1m\"\n", "");
    fs::write(&config, text).unwrap();
    (config, live.join("access.log"))
}

#[test]
fn live_equals_replay() {
    let dir = tempfile::tempdir().unwrap();
    let text = attacks_log();
    let whole = dir.path().join("whole.log");
    fs::write(&whole, &text).unwrap();
    let expected = replay_ids(&whole);
    assert!(expected.len() >= 5, "the attacks log has incidents");

    let (config, log) = live_config(dir.path());
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    let daemon = Daemon::start(&config);
    write_fast(&log, &lines);
    daemon.read_exactly(lines.len() as u64);
    assert!(daemon.stop());
    let stored = stored_ids(&dir.path().join("gw.db"));
    assert_eq!(stored, expected, "the daemon's incidents are replay's");
}

/// Every stored incident's status, through the CLI.
fn stored_statuses(db: &Path) -> Vec<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args([
            "incidents",
            "list",
            "--output",
            "json",
            "--limit",
            "1000",
            "--db",
        ])
        .arg(format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert!(output.status.success());
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn quiet_incidents_close_on_the_wall_clock_without_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    // The built-in detectors with a 30 s quiet period (event time).
    let defs = dir.path().join("detectors");
    fs::create_dir(&defs).unwrap();
    for entry in fs::read_dir("detectors").unwrap() {
        let path = entry.unwrap().path();
        let text: String = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with("quiet =") {
                    "quiet = \"30s\"\n".to_string()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        fs::write(defs.join(path.file_name().unwrap()), text).unwrap();
    }
    let (config, log) = live_config(dir.path());
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("detectors_dir = {defs:?}\n{text}")).unwrap();
    let attacks = attacks_log();
    // The log ends in the middle of the brute-force attack (09:17 to 09:21).
    let lines: Vec<&[u8]> = attacks
        .split_inclusive(|b| *b == b'\n')
        .take_while(|l| !String::from_utf8_lossy(l).contains("20/Nov/2026:09:20:30"))
        .collect();
    let daemon = Daemon::start(&config);
    write_fast(&log, &lines);
    daemon.read_exactly(lines.len() as u64);
    let db = dir.path().join("gw.db");
    assert!(
        stored_statuses(&db).iter().any(|s| s == "open"),
        "the attack's incidents are open when the log stops"
    );
    // No line comes after the last: only the daemon's timer can move event time on.
    daemon.eventually("every incident closed", || {
        let statuses = stored_statuses(&db);
        !statuses.is_empty() && statuses.iter().all(|s| s == "closed")
    });
    assert!(daemon.stop());
}

/// The labelled datasets of ../shared/eval (GATEWATCH_EVAL_DIR elsewhere), when present.
fn eval_datasets() -> Vec<PathBuf> {
    let root = std::env::var_os("GATEWATCH_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/eval"));
    let mut found: Vec<PathBuf> = fs::read_dir(root.join("data"))
        .into_iter()
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path().join("access.log.gz")))
        .filter(|path| path.exists())
        .collect();
    found.sort();
    found
}

#[test]
fn live_equals_replay_on_the_eval_datasets() {
    let datasets = eval_datasets();
    if datasets.is_empty() {
        eprintln!("SKIPPED: no eval datasets (set GATEWATCH_EVAL_DIR to ../shared/eval)");
        return;
    }
    for dataset in datasets {
        let dir = tempfile::tempdir().unwrap();
        let expected = replay_ids(&dataset);
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(File::open(&dataset).unwrap())
            .read_to_end(&mut text)
            .unwrap();
        let (config, log) = live_config(dir.path());
        let auto = fs::read_to_string(&config)
            .unwrap()
            .replace("format = \"combined\"", "format = \"auto\"");
        fs::write(&config, auto).unwrap();
        let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
        let daemon = Daemon::start(&config);
        // 2,000 lines per 20 ms: 30-60 minutes of these logs in seconds (>= 10x real time).
        let started = stopwatch();
        write_fast(&log, &lines);
        eprintln!(
            "{}: {} lines written in {:.1} s",
            dataset.display(),
            lines.len(),
            started.elapsed().as_secs_f64()
        );
        daemon.read_exactly(lines.len() as u64);
        assert_eq!(daemon.metric("gatewatch_lines_late_total"), 0.0);
        assert!(daemon.stop());
        let stored = stored_ids(&dir.path().join("gw.db"));
        assert!(
            !expected.is_empty(),
            "{}: replay finds incidents",
            dataset.display()
        );
        assert_eq!(
            stored,
            expected,
            "{}: the daemon's incidents are replay's",
            dataset.display()
        );
    }
}

/// Sends `signal` to the daemon and waits for it: (exit success, how long it took).
fn signal_and_wait(daemon: &mut Daemon, signal: &str) -> (bool, Duration) {
    let started = stopwatch();
    Command::new("kill")
        .args([signal, &daemon.child.id().to_string()])
        .status()
        .unwrap();
    let status = daemon.child.wait().unwrap();
    (status.success(), started.elapsed())
}

/// The lines a stopped daemon says it read (its last log line).
fn lines_at_stop(log: &str) -> u64 {
    let stopped = log
        .lines()
        .rfind(|l| l.contains("gatewatch run stopped"))
        .unwrap_or_else(|| panic!("no stop logged:\n{log}"));
    let value = stopped.split("lines=").nth(1).unwrap();
    value
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn sigint_and_sigterm_stop_cleanly_while_lines_flow() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = config(
        dir.path(),
        &[format!("{}/*.log", dir.path().display())],
        "format = \"combined\"",
        "",
    );
    let total = 100_000;
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || write_paced(&log, 0..total, 20_000))
    };
    let mut read = 0;
    for signal in ["-INT", "-TERM"] {
        let mut daemon = Daemon::start(&config);
        daemon.eventually("lines flow", || {
            daemon.metric("gatewatch_lines_read_total") > 1000.0
        });
        let (ok, took) = signal_and_wait(&mut daemon, signal);
        // Reported, not asserted: the grace period in `run` bounds it (8 s and the HTTP
        // server's last requests).
        eprintln!("kill {signal} while lines flow: stopped in {took:?}");
        assert!(ok, "{}", daemon.log_text());
        assert!(
            !writer.is_finished(),
            "stopped while lines were being written"
        );
        read += lines_at_stop(&daemon.log_text());
    }
    writer.join().unwrap();
    let daemon = Daemon::start(&config);
    // Two clean stops in mid-stream: every line read exactly once over the three runs.
    daemon.read_exactly(total - read);
    assert!(daemon.stop());
}

#[test]
fn a_long_line_a_dangling_link_and_a_deleted_file_in_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let config = config(
        dir.path(),
        &[format!("{}/*.log", logs.display())],
        "format = \"combined\"\nmax_line_bytes = 1024",
        "[log]\nformat = \"json\"",
    );
    // Open before it is deleted below.
    let doomed = logs.join("doomed.log");
    append(&doomed, &lines(0..1));
    // A link to a file not there yet (a pod log the runtime has not created).
    let target = dir.path().join("later.log");
    std::os::unix::fs::symlink(&target, logs.join("link.log")).unwrap();
    let daemon = Daemon::start(&config);
    daemon.read_exactly(1);
    daemon.eventually("the dangling link is reported", || {
        daemon.log_text().contains("cannot read file; will retry")
    });

    // A 4 MiB line between short ones: cut at 1 KiB, counted, one line.
    let long = logs.join("long.log");
    let mut text = lines(1..101);
    text.push_str(&"x".repeat(4 << 20));
    text.push('\n');
    text.push_str(&lines(101..201));
    append(&long, &text);
    daemon.read_exactly(1 + 201);
    assert_eq!(daemon.metric("gatewatch_lines_cut_total"), 1.0);

    // Lines written and the file deleted at once: what it holds is still read.
    append(&doomed, &lines(201..20_201));
    fs::remove_file(&doomed).unwrap();
    daemon.read_exactly(202 + 20_000);

    // The link's target appears: retried, read.
    append(&target, &lines(20_201..20_301));
    daemon.read_exactly(20_302);
    assert!(daemon.metric("gatewatch_rotations_total{kind=\"delete\"}") >= 1.0);
    let log = daemon.log_text();
    assert!(daemon.stop());
    // Every log line is a JSON object (stderr carries nothing else).
    for line in log
        .lines()
        .filter(|l| !l.starts_with("gatewatch run: listening"))
    {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert!(
            value["fields"].is_object() || value["message"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn a_far_future_line_in_a_live_file_is_set_aside_and_a_quiet_gap_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = config(
        dir.path(),
        &[format!("{}/*.log", dir.path().display())],
        "format = \"combined\"",
        "",
    );
    let daemon = Daemon::start(&config);
    // Alone in its batch: no later line of the file can outvote it, the wall clock does.
    append(
        &log,
        "10.9.9.9 - - [01/Jan/2200:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"x\"\n",
    );
    daemon.read_exactly(1);
    write_paced(&log, 0..5000, 50_000);
    daemon.read_exactly(5001);
    assert_eq!(daemon.metric("gatewatch_lines_out_of_range_total"), 1.0);
    assert_eq!(daemon.metric("gatewatch_lines_late_total"), 0.0);
    // Then quiet (in event time, far more than max_time_jump), and one line stamped now:
    // a live source catching up with the present, not a corrupt time.
    #[allow(clippy::disallowed_methods)] // the wall-clock rule needs a line stamped now
    let now = chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S +0000");
    append(
        &log,
        &format!("10.9.9.8 - - [{now}] \"GET / HTTP/1.1\" 200 1 \"-\" \"x\"\n"),
    );
    daemon.read_exactly(5002);
    assert_eq!(daemon.metric("gatewatch_lines_out_of_range_total"), 1.0);
    assert!(daemon.stop());
}

/// Every incident row in a SQLite store (ids as listed, duplicates kept).
fn stored_id_list(db: &Path) -> Vec<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args([
            "incidents",
            "list",
            "--output",
            "json",
            "--limit",
            "1000",
            "--db",
        ])
        .arg(format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert!(output.status.success());
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_hard_kill_rereads_at_most_what_was_not_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let text = attacks_log();
    let (config, log) = live_config(dir.path());
    let db = dir.path().join("gw.db");
    let lines: Vec<Vec<u8>> = text
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let total = lines.len() as u64;
    let daemon = Daemon::start(&config);
    // The writer goes on through the kill and the restart.
    let writer = {
        let (log, lines) = (log.clone(), lines.clone());
        std::thread::spawn(move || {
            for chunk in lines.chunks(500) {
                append(&log, &String::from_utf8_lossy(&chunk.concat()));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    daemon.eventually("a third read", || {
        daemon.metric("gatewatch_lines_read_total") as u64 >= total / 3
    });
    daemon.kill_hard();
    let killed_mid_stream = !writer.is_finished();
    let first = stored_ids(&db);
    // Where the restart resumes: the last checkpoint the killed daemon committed.
    let resume = checkpoints(&format!("sqlite://{}", db.display()))
        .first()
        .map_or(0, |c| c.offset) as usize;
    let before_resume = text[..resume].iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(
        before_resume > 0,
        "a checkpoint was committed before the kill"
    );

    let daemon = Daemon::start(&config);
    writer.join().unwrap();
    // Every line after the checkpoint is read (again); none before it.
    daemon.read_exactly(total - before_resume);
    assert!(daemon.stop());
    assert!(
        killed_mid_stream,
        "the kill came while lines were being written"
    );
    let stored = stored_id_list(&db);
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), unique.len(), "no incident stored twice");
    assert!(
        unique.is_superset(&first),
        "incidents stored before the kill stay"
    );
    // The learned state saved with the checkpoint carries detection on as if never killed.
    let whole = dir.path().join("whole.log");
    fs::write(&whole, &text).unwrap();
    assert_eq!(
        unique,
        replay_ids(&whole),
        "the incidents of an uninterrupted replay"
    );
}

/// `gatewatch config check` over `text`: (success, stderr, the file's path).
fn config_check(dir: &Path, text: &str) -> (bool, String, PathBuf) {
    let path = dir.join("bad.toml");
    fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr, path)
}

#[test]
fn config_check_names_the_file_and_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr, path) = config_check(
        dir.path(),
        "[[sources]]\npaths = [\"/var/log/*.log\"]\nstart_at = \"middle\"\n[api]\nlisten = \"x\"\n",
    );
    assert!(!ok);
    for key in ["sources[0].start_at", "api.listen"] {
        assert!(
            stderr.contains(&format!("{}: {key}", path.display())),
            "{stderr}"
        );
    }
    let (ok, stderr, _) = config_check(
        dir.path(),
        "[[sources]]\npaths = [\"/var/log/*.log\"]\nunknown = 1\n",
    );
    assert!(!ok && stderr.contains("unknown"), "{stderr}");
    let (ok, stdout_or_err, _) =
        config_check(dir.path(), "[[sources]]\npaths = [\"/var/log/*.log\"]\n");
    assert!(ok, "{stdout_or_err}");
}

/// A TCP proxy to the database that the test can cut (open connections killed, new ones
/// refused), as a crashed or unreachable server would look.
struct CuttableProxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl CuttableProxy {
    fn start(target: &str) -> CuttableProxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = CuttableProxy {
            port,
            up: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            open: std::sync::Arc::default(),
        };
        let (up, open, target) = (proxy.up.clone(), proxy.open.clone(), target.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut open = open.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        proxy
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for stream in self.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

fn checkpoints(url: &str) -> Vec<gatewatch::store::Checkpoint> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = gatewatch::store::Store::open(url).await.unwrap();
        let saved = store.load_checkpoints().await.unwrap();
        store.close().await;
        saved
    })
}

/// Points a config's `[store]` at `url` instead of its SQLite file.
fn use_store(config: &Path, url: &str) {
    let text = fs::read_to_string(config).unwrap();
    let sqlite_line = text
        .lines()
        .find(|l| l.starts_with("url = "))
        .unwrap()
        .to_string();
    fs::write(
        config,
        text.replace(&sqlite_line, &format!("url = {url:?}")),
    )
    .unwrap();
}

#[test]
fn thirty_seconds_without_the_database_lose_nothing() {
    let Some(db) = common::TestDb::postgres("daemon: thirty_seconds_without_the_database") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = attacks_log();
    let whole = dir.path().join("whole.log");
    fs::write(&whole, &text).unwrap();
    let expected = replay_ids(&whole);

    let (host_port, rest) = db.url.rsplit_once('@').unwrap().1.split_once('/').unwrap();
    let proxy = CuttableProxy::start(host_port);
    let via_proxy = db
        .url
        .replace(host_port, &format!("127.0.0.1:{}", proxy.port));
    let _ = rest;
    let (config, log) = live_config(dir.path());
    use_store(&config, &via_proxy);

    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    let third = lines.len() / 3;
    let daemon = Daemon::start(&config);
    write_fast(&log, &lines[..third]);
    daemon.read_exactly(third as u64);
    daemon.eventually("first checkpoint", || !checkpoints(&db.url).is_empty());

    proxy.set_up(false);
    let before = checkpoints(&db.url)[0].offset;
    write_fast(&log, &lines[third..]);
    daemon.eventually("reading goes on during the outage", || {
        daemon.metric("gatewatch_lines_read_total") as usize == lines.len()
    });
    daemon.eventually("/readyz says the store does not answer", || {
        daemon
            .get("/readyz")
            .is_some_and(|(status, _)| status == 503)
    });
    for _ in 0..30 {
        std::thread::sleep(Duration::from_secs(1));
        let saved = checkpoints(&db.url)[0].offset;
        assert_eq!(
            saved, before,
            "no checkpoint moves while incidents cannot be stored"
        );
    }
    assert!(daemon.metric("gatewatch_store_errors_total") > 0.0);
    assert!(
        daemon.metric("gatewatch_store_queue_depth") > 0.0,
        "{}",
        daemon.metrics()
    );

    proxy.set_up(true);
    daemon.eventually("the queue drains once the database is back", || {
        daemon.metric("gatewatch_store_queue_depth") == 0.0
    });
    daemon.eventually("/readyz is 200 again", || {
        daemon
            .get("/readyz")
            .is_some_and(|(status, _)| status == 200)
    });
    assert!(daemon.stop());
    let saved = checkpoints(&db.url);
    assert_eq!(
        saved[0].offset,
        fs::metadata(&log).unwrap().len(),
        "checkpointed to the end"
    );
    let stored = stored_ids_at(&db.url);
    assert_eq!(stored, expected, "every incident stored, none twice");
}

#[test]
fn symlinked_logs_are_followed_to_the_real_file_through_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let pod = dir.path().join("pods/ns_web-1_uid/controller");
    let links = dir.path().join("containers");
    fs::create_dir_all(&pod).unwrap();
    fs::create_dir_all(&links).unwrap();
    let real = pod.join("0.log");
    append(&real, &cri(0..2000));
    // As /var/log/containers/<pod>_<ns>_<container>-<id>.log points into /var/log/pods.
    std::os::unix::fs::symlink(&real, links.join("web-1_ns_controller-abc.log")).unwrap();
    let config = config(
        dir.path(),
        &[format!("{}/*.log", links.display())],
        "format = \"combined\"",
        "",
    );
    let daemon = Daemon::start(&config);
    append(&real, &cri(2000..4000));
    fs::rename(&real, pod.join("0.log.20261201-100000")).unwrap();
    append(&real, &cri(4000..6000));
    daemon.read_exactly(6000);
    assert!(daemon.stop());
}

/// Every outbox row, as `gatewatch alerts list --output json` prints them.
fn outbox_rows(url: &str) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args([
            "alerts", "list", "--output", "json", "--limit", "100000", "--db", url,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn in_state(rows: &[serde_json::Value], state: &str) -> usize {
    rows.iter().filter(|r| r["state"] == state).count()
}

/// A webhook channel to `port` with test-sized timings, added to a config.
fn with_webhook(config: &Path, port: u16) {
    let mut text = fs::read_to_string(config).unwrap();
    text.push_str(&format!(
        "\n[[alerts]]\nname = \"soc\"\nkind = \"webhook\"\n\
         url = \"http://127.0.0.1:{port}/hook\"\n\
         timeout = \"1s\"\nconnect_timeout = \"500ms\"\nbackoff_max = \"1s\"\n"
    ));
    fs::write(config, text).unwrap();
}

#[test]
fn deliveries_pending_at_a_hard_kill_go_out_after_the_restart() {
    use common::receiver::{free_port, Receiver};
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let text = attacks_log();
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    let (config, log) = live_config(dir.path());
    let port = free_port(); // nothing listens yet: every attempt is refused
    with_webhook(&config, port);

    let daemon = Daemon::start(&config);
    write_fast(&log, &lines);
    daemon.read_exactly(lines.len() as u64);
    daemon.eventually("alerts queued and tried", || {
        let rows = outbox_rows(&db);
        rows.len() >= 5 && rows.iter().all(|r| r["attempts"].as_i64() >= Some(1))
    });
    daemon.eventually("attempts and the outbox in /metrics", || {
        let text = daemon.metrics();
        metric_in(&text, "gatewatch_alert_attempts_total") > 0.0
            && metric_in(&text, "gatewatch_alert_outbox") > 0.0
    });
    check_with_promtool(&daemon.metrics());
    daemon.kill_hard();
    let queued = outbox_rows(&db);
    assert_eq!(in_state(&queued, "pending"), queued.len(), "none delivered");

    let receiver = Receiver::start_on(port, Vec::new());
    let daemon = Daemon::start(&config);
    daemon.eventually("every pending delivery sent after the restart", || {
        let rows = outbox_rows(&db);
        in_state(&rows, "sent") == rows.len()
    });
    assert!(daemon.stop());
    let rows = outbox_rows(&db);
    assert!(
        rows.len() >= queued.len(),
        "re-read lines queued nothing twice"
    );
    let delivered = receiver.delivered();
    let ids: BTreeSet<String> = delivered.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), delivered.len(), "no webhook-id delivered twice");
    assert_eq!(ids.len(), rows.len(), "every row delivered");
}

#[test]
fn two_daemons_on_one_postgres_outbox_deliver_each_alert_once() {
    use common::receiver::Receiver;
    let Some(db) = common::TestDb::postgres("daemon: two_daemons_on_one_postgres_outbox") else {
        return;
    };
    let receiver = Receiver::start(Vec::new());
    let text = attacks_log();
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    let mut daemons = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let (config, log) = live_config(dir.path());
        use_store(&config, &db.url);
        with_webhook(&config, receiver.port);
        daemons.push((Daemon::start(&config), log));
        dirs.push(dir);
    }
    // Both read the same traffic (two replicas of one view): the same incidents, the same
    // alerts, one outbox.
    for (_, log) in &daemons {
        write_fast(log, &lines);
    }
    for (daemon, _) in &daemons {
        daemon.read_exactly(lines.len() as u64);
    }
    let (first, _) = &daemons[0];
    first.eventually("every alert sent", || {
        let rows = outbox_rows(&db.url);
        !rows.is_empty() && in_state(&rows, "sent") == rows.len()
    });
    std::thread::sleep(Duration::from_secs(1));
    for (daemon, _) in daemons {
        assert!(daemon.stop());
    }
    let rows = outbox_rows(&db.url);
    let delivered = receiver.delivered();
    let ids: BTreeSet<String> = delivered.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), delivered.len(), "no webhook-id delivered twice");
    assert_eq!(ids.len(), rows.len());
    assert_eq!(receiver.received().len(), rows.len(), "nothing sent twice");
}

/// The daemon serves through the same hardened server as `serve`: `[api]` timeouts close a
/// silent socket and a half-sent header, and the API keeps answering.
#[test]
fn the_daemons_api_closes_silent_and_half_sent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    fs::write(&log, lines(0..10)).unwrap();
    let path = config(dir.path(), &[log.display().to_string()], "", "");
    let text = fs::read_to_string(&path).unwrap().replacen(
        "[api]\n",
        "[api]\nheader_timeout = \"1s\"\nidle_timeout = \"1s\"\nmax_connections = 64\n",
        1,
    );
    fs::write(&path, text).unwrap();
    let daemon = Daemon::start(&path);
    let closed = |stream: &mut TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    };
    let mut silent = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    let mut half = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(closed(&mut silent), "a silent socket stays open");
    assert!(closed(&mut half), "a half-sent header stays open");
    assert_eq!(daemon.get("/healthz").map(|(s, _)| s), Some(200));
    assert!(daemon.stop());
}
