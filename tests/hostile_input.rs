//! Broken and hostile input, each case found by trying to break replay: the analysis goes on,
//! every odd line is counted, and what matters is named.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const ATTACK_LOG: &str = "testdata/nginx-combined-attacks.log.gz";

fn gatewatch(args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(args)
        .arg("--no-progress")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&stdin.unwrap_or_default());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (detector, entity, started_at, detected_at) of each incident, sorted.
fn incident_keys(out: &Output) -> Vec<(String, String, String, String)> {
    let mut keys: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_owned();
            (
                s("detector"),
                s("entity"),
                s("started_at"),
                s("detected_at"),
            )
        })
        .collect();
    keys.sort();
    keys
}

fn attack_lines() -> Vec<Vec<u8>> {
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(
        std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join(ATTACK_LOG)).unwrap(),
    )
    .read_to_end(&mut text)
    .unwrap();
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.to_vec())
        .collect()
}

fn joined(lines: &[Vec<u8>]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| [&l[..], b"\n"].concat())
        .collect()
}

/// The attacks log's first line with its time replaced.
fn stamped(line: &[u8], time_local: &str) -> Vec<u8> {
    let open = line.iter().position(|&b| b == b'[').unwrap();
    [&line[..=open], time_local.as_bytes(), &line[open + 27..]].concat()
}

#[test]
fn far_future_and_1970_lines_leave_the_incidents_unchanged() {
    let baseline = gatewatch(&["replay", ATTACK_LOG], None);
    let expected = incident_keys(&baseline);
    assert_eq!(expected.len(), 5, "{}", stderr(&baseline));

    let lines = attack_lines();
    let mut hostile = vec![stamped(&lines[0], "01/Jan/1970:00:00:00 +0000")];
    hostile.extend_from_slice(&lines[..1000]);
    hostile.push(stamped(&lines[1000], "01/Jan/2262:00:00:00 +0000"));
    hostile.extend_from_slice(&lines[1000..30000]);
    hostile.push(stamped(&lines[30000], "31/Dec/2199:23:59:59 +0000"));
    hostile.extend_from_slice(&lines[30000..]);
    let out = gatewatch(&["replay", "-"], Some(joined(&hostile)));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(incident_keys(&out), expected, "{}", stderr(&out));
    assert!(stderr(&out).contains("out of range 3"), "{}", stderr(&out));
}

#[test]
fn impossible_dates_are_unparsed_not_moved() {
    let lines = attack_lines();
    let bad = [
        stamped(&lines[0], "30/Feb/2026:09:00:00 +0000"),
        stamped(&lines[0], "20/Nov/2026:09:00:00 +9999"),
    ];
    let mut input = lines[..100].to_vec();
    input.extend(bad);
    let out = gatewatch(&["replay", "-"], Some(joined(&input)));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("parsed 100, unparsed 2"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn one_huge_line_through_a_pipe_is_cut_counted_and_streamed_past() {
    let lines = attack_lines();
    let mut input = joined(&lines[..10]);
    input.extend(std::iter::repeat_n(b'A', 50 << 20));
    input.push(b'\n');
    input.extend(joined(&lines[10..20]));
    let out = gatewatch(&["replay", "-", "--max-line-bytes", "4096"], Some(input));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("parsed 20, unparsed 1"), "{text}");
    assert!(text.contains("1 lines cut at --max-line-bytes"), "{text}");
}

fn temp_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn an_empty_first_file_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let empty = temp_file(dir.path(), "empty.log", b"");
    let lines = attack_lines();
    let full = temp_file(dir.path(), "full.log", &joined(&lines[..500]));
    let out = gatewatch(
        &["replay", empty.to_str().unwrap(), full.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("parsed 500, unparsed 0"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_truncated_gz_is_named_and_what_it_held_is_still_analysed() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(ATTACK_LOG)).unwrap();
    let cut = temp_file(dir.path(), "cut.log.gz", &whole[..whole.len() * 3 / 4]);
    let out = gatewatch(&["replay", cut.to_str().unwrap()], None);
    let text = stderr(&out);
    assert!(
        !out.status.success(),
        "a broken input fails the run: {text}"
    );
    assert!(text.contains("cut.log.gz"), "{text}");
    assert!(
        text.contains("incidents "),
        "the summary is printed: {text}"
    );
    assert!(
        !incident_keys(&out).is_empty(),
        "incidents found before the cut are printed: {text}"
    );
}

#[test]
fn a_byte_order_mark_does_not_spoil_line_one() {
    let lines = attack_lines();
    let input = [b"\xEF\xBB\xBF".to_vec(), joined(&lines[..50])].concat();
    let out = gatewatch(&["replay", "-"], Some(input));
    assert!(
        stderr(&out).contains("parsed 50, unparsed 0"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_partial_container_line_at_the_end_is_counted() {
    let lines = attack_lines();
    let mut input = Vec::new();
    for line in &lines[..20] {
        input.extend_from_slice(b"2026-11-20T09:00:00.5Z stdout F ");
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    input.extend_from_slice(
        b"2026-11-20T09:00:01.5Z stdout P 203.0.113.5 - - [20/Nov/2026:09:00:01 +0000] \"GET /a\n",
    );
    let out = gatewatch(&["replay", "-"], Some(input));
    let text = stderr(&out);
    assert!(text.contains("parsed 20, unparsed 1"), "{text}");
    assert!(
        text.contains("1 container records without their last fragment"),
        "{text}"
    );
}
