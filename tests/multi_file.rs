//! Several inputs are one stream in event time: rotated files named in any order (gz mixed
//! with plain) and one file per pod with overlapping times replay exactly as the single
//! time-ordered file does, with no line counted late.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gatewatch::parse::time::parse_time_local;
use serde_json::Value;

const ATTACK_LOG: &str = "testdata/nginx-combined-attacks.log.gz";

fn replay(files: &[PathBuf], extra: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .arg("replay")
        .args(files)
        .args(["--no-progress"])
        .args(extra)
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn incidents(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Incidents without what depends on the order of lines within one second: lines of one
/// second from different files have no order between them, so which of them is the sample,
/// and the share of errors the summary quotes at the moment of detection, may differ.
fn order_independent(mut incidents: Vec<Value>) -> Vec<Value> {
    for incident in &mut incidents {
        incident.as_object_mut().unwrap().remove("summary");
        // Tallies depend on the order of lines with the same time (which one opened the
        // incident, which values a full tally kept), and that order is the files'.
        let explain = incident["explain"].as_object_mut().unwrap();
        explain.retain(|key, _| key == "rule");
        for evidence in incident["evidence"].as_array_mut().unwrap() {
            evidence.as_object_mut().unwrap().remove("line");
        }
    }
    incidents.sort_by_key(|i| i["id"].as_str().unwrap().to_owned());
    incidents
}

/// The attacks log's lines, stably sorted by their time (it has a little jitter).
fn time_ordered_lines() -> Vec<Vec<u8>> {
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(
        std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join(ATTACK_LOG)).unwrap(),
    )
    .read_to_end(&mut text)
    .unwrap();
    let mut lines: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.to_vec())
        .collect();
    lines.sort_by_key(|line| {
        let open = line.iter().position(|&b| b == b'[').unwrap();
        parse_time_local(&line[open + 1..open + 27]).unwrap()
    });
    lines
}

fn write(path: &Path, lines: &[Vec<u8>], gzip: bool) {
    let mut text = Vec::new();
    for line in lines {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    let file = std::fs::File::create(path).unwrap();
    if gzip {
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        encoder.write_all(&text).unwrap();
        encoder.finish().unwrap();
    } else {
        let mut file = file;
        file.write_all(&text).unwrap();
    }
}

fn summary_says(out: &Output, text: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(text), "{text:?} not in: {stderr}");
}

/// A deterministic shuffle (no clock, no global RNG) for the order files are named in.
fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

#[test]
fn rotated_files_in_any_order_replay_as_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let lines = time_ordered_lines();
    let single = dir.path().join("access.log.single");
    write(&single, &lines, false);
    let expected = incidents(&replay(std::slice::from_ref(&single), &[]));
    assert!(expected.len() >= 5, "{expected:?}");

    // Rotation: access.log.2.gz (oldest) … access.log (newest), gz mixed with plain.
    let third = lines.len() / 3;
    let parts = [
        (dir.path().join("access.log.2.gz"), &lines[..third], true),
        (
            dir.path().join("access.log.1"),
            &lines[third..2 * third],
            false,
        ),
        (dir.path().join("access.log"), &lines[2 * third..], false),
    ];
    for (path, part, gzip) in &parts {
        write(path, part, *gzip);
    }
    let names: Vec<PathBuf> = parts.iter().map(|(p, _, _)| p.clone()).collect();
    for order in [[2, 1, 0], [0, 1, 2], [1, 2, 0]] {
        let files: Vec<PathBuf> = order.iter().map(|&i| names[i].clone()).collect();
        let out = replay(&files, &[]);
        // Ties go to the older file, so the rotated set is exactly the single file.
        assert_eq!(incidents(&out), expected, "order {order:?}");
        summary_says(&out, "late 0");
        summary_says(&out, "3 files merged by event time");
        summary_says(&out, "access.log.2.gz, ");
    }
}

#[test]
fn pod_files_with_overlapping_times_replay_as_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let lines = time_ordered_lines();
    let single = dir.path().join("all.log");
    write(&single, &lines, false);
    let expected = order_independent(incidents(&replay(std::slice::from_ref(&single), &[])));

    // A load balancer spreads lines over 50 pods; pod 0 started 2 minutes after the others
    // and pod 1 lags: its file is a pipe whose writer only starts after the others are read.
    let pods = 50;
    let mut seed = 7;
    let mut per_pod: Vec<Vec<Vec<u8>>> = vec![Vec::new(); pods];
    let start = &lines[0];
    let open = start.iter().position(|&b| b == b'[').unwrap();
    let first = parse_time_local(&start[open + 1..open + 27]).unwrap();
    for line in &lines {
        let at = parse_time_local(&line[open_of(line) + 1..open_of(line) + 27]).unwrap();
        let mut pod = (lcg(&mut seed) % pods as u64) as usize;
        if pod == 0 && at.nanos() - first.nanos() < 120_000_000_000 {
            pod = 2;
        }
        per_pod[pod].push(line.clone());
    }
    let mut files: Vec<PathBuf> = (0..pods)
        .map(|i| dir.path().join(format!("ingress-{i:02}.log")))
        .collect();
    for (i, path) in files.iter().enumerate() {
        write(path, &per_pod[i], i % 7 == 3);
    }
    for _ in 0..files.len() {
        let a = (lcg(&mut seed) % files.len() as u64) as usize;
        let b = (lcg(&mut seed) % files.len() as u64) as usize;
        files.swap(a, b);
    }
    let lagging = dir.path().join("ingress-01.log");
    let lagging_lines = per_pod[1].clone();
    for threads in ["1", "2"] {
        // Pod 1's log arrives through a pipe whose writer starts late and writes slowly.
        std::fs::remove_file(&lagging).unwrap();
        let made = Command::new("mkfifo").arg(&lagging).status().unwrap();
        assert!(made.success());
        let (path, text) = (lagging.clone(), lagging_lines.clone());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let mut pipe = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            for line in text {
                pipe.write_all(&line).unwrap();
                pipe.write_all(b"\n").unwrap();
            }
        });
        let out = replay(&files, &["--threads", threads]);
        writer.join().unwrap();
        assert_eq!(
            order_independent(incidents(&out)),
            expected,
            "threads {threads}"
        );
        summary_says(&out, "late 0");
        summary_says(&out, "50 files merged by event time");
    }
}

fn open_of(line: &[u8]) -> usize {
    line.iter().position(|&b| b == b'[').unwrap()
}

/// A live source that goes quiet (a pod with no traffic, its log still open) stops holding
/// the others back after the idle timeout, and its later lines still count, none late.
#[test]
fn a_quiet_live_source_does_not_hold_the_others_back() {
    use gatewatch::pipeline::{self, PipelineSettings, Sink};
    use std::sync::mpsc;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let lines = time_ordered_lines();
    let busy = dir.path().join("busy.log");
    write(&busy, &lines[..20_000], false);
    let quiet = dir.path().join("quiet.log");
    assert!(Command::new("mkfifo")
        .arg(&quiet)
        .status()
        .unwrap()
        .success());
    let busy_len = std::fs::metadata(&busy).unwrap().len();

    let (busy_done, busy_seen) = mpsc::channel::<()>();
    let (early, late) = (lines[..10].to_vec(), lines[20_000..20_010].to_vec());
    let fifo = quiet.clone();
    let writer = std::thread::spawn(move || {
        let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
        for line in &early {
            pipe.write_all(&[&line[..], b"\n"].concat()).unwrap();
        }
        pipe.flush().unwrap();
        // Quiet, with the log still open, until the busy file is through the engine.
        let waited = busy_seen.recv_timeout(Duration::from_secs(60)).is_ok();
        for line in &late {
            pipe.write_all(&[&line[..], b"\n"].concat()).unwrap();
        }
        waited
    });

    let settings = PipelineSettings {
        idle_timeout: Some(Duration::from_millis(100)),
        threads: 2,
        ..PipelineSettings::default()
    };
    let read = pipeline::read_spec(
        pipeline::preset_format("combined"),
        Default::default(),
        64 << 10,
        1 << 16,
    );
    let names = vec![
        quiet.to_string_lossy().into_owned(),
        busy.to_string_lossy().into_owned(),
    ];
    let inputs = names
        .iter()
        .map(|n| gatewatch::input::open(n).unwrap())
        .collect();
    let streams = pipeline::sources(inputs, &read, &settings);
    let defs = gatewatch::detectors_dir::load(None).unwrap();
    let mut engine = gatewatch::detect::Engine::new(&defs, Default::default());
    let mut told = false;
    let merge = pipeline::run(
        names,
        streams,
        &mut engine,
        &mut Vec::<&mut dyn Sink>::new(),
        &settings,
        &mut |merge| {
            if !told && merge.reports()[1].processed_offset == busy_len {
                told = true;
                let _ = busy_done.send(());
            }
        },
    )
    .unwrap();
    assert!(
        writer.join().unwrap(),
        "the busy file waited for the quiet source"
    );
    let reports = merge.reports();
    assert_eq!(reports[0].parsed + reports[1].parsed, 20_020);
    assert_eq!(reports[0].late + reports[1].late, 0, "{reports:?}");
    assert_eq!(engine.stats().accepted, 20_020);
}
