//! Detectors against `../shared/conformance/scenarios.jsonl`: CrowdSec's own scenario test
//! cases (a few real lines each) and which source they must flag, by which kind. Each
//! case's log is replayed by the binary. Skipped (loudly) when `../shared` is absent.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn conformance_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance");
    if dir.join("scenarios.jsonl").exists() {
        return Some(dir);
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {} not found (a fresh clone has no ../shared); scenarios not checked",
        dir.display()
    );
    None
}

/// (kind, entity) of every incident a replay of `log` in `format` gives.
fn flagged(log: &PathBuf, format: &str) -> BTreeSet<(String, String)> {
    let output = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args([
            "replay",
            "--no-progress",
            "--output",
            "jsonl",
            "--format",
            format,
        ])
        .arg(log)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}: {}",
        log.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let incident: Value = serde_json::from_str(line).unwrap();
            (
                incident["kind"].as_str().unwrap().to_owned(),
                incident["entity"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Scanner cases of four events or more, flagged for their source by a scanner; and the
/// one-request cases (a single exploit attempt: background noise) flagged by nothing.
#[test]
fn crowdsec_scanner_cases_are_flagged_and_single_probes_are_not() {
    let Some(dir) = conformance_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("scenarios.jsonl")).unwrap();
    let cases: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut replays: BTreeMap<(String, String), BTreeSet<(String, String)>> = BTreeMap::new();
    let (mut hits, mut misses, mut quiet_singles, mut noisy_singles) =
        (Vec::new(), Vec::new(), 0, Vec::new());
    for case in &cases {
        if case["our_kind"] != "scanner" {
            continue;
        }
        let log = case["log_file"].as_str().unwrap().to_owned();
        let format = case["format"].as_str().unwrap().to_owned();
        let flagged = replays
            .entry((log.clone(), format.clone()))
            .or_insert_with(|| flagged(&dir.join(&log), &format));
        let source = case["source_ip"].as_str().unwrap();
        let name = case["case"].as_str().unwrap().to_owned();
        let events = case["events_count"].as_u64().unwrap();
        let lines = std::fs::read_to_string(dir.join(&log))
            .unwrap()
            .lines()
            .count();
        let by_scanner = flagged.contains(&("scanner".into(), source.into()));
        if events >= 4 {
            if by_scanner {
                hits.push(name);
            } else {
                misses.push(name);
            }
        } else if lines == 1 {
            if flagged.iter().any(|(_, entity)| entity == source) {
                noisy_singles.push(name);
            } else {
                quiet_singles += 1;
            }
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "scanner cases with >= 4 events: {} flagged, {} missed {misses:?}; one-line cases: {quiet_singles} quiet",
        hits.len(),
        misses.len()
    );
    assert!(
        noisy_singles.is_empty(),
        "one probe is not an incident: {noisy_singles:?}"
    );
    assert!(quiet_singles > 0);
    assert!(hits.len() >= 17, "cases flagged: {hits:?}");
    assert!(
        misses.is_empty(),
        "every scanner case with >= 4 events is flagged; missed: {misses:?}"
    );
}

/// Every case of `kind` flagged for its source by a detector of that kind.
fn every_case_of_kind_is_flagged(kind: &str, at_least: usize) {
    let Some(dir) = conformance_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("scenarios.jsonl")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        if case["our_kind"] != kind {
            continue;
        }
        let log = dir.join(case["log_file"].as_str().unwrap());
        let flagged = flagged(&log, case["format"].as_str().unwrap());
        let source = case["source_ip"].as_str().unwrap();
        // Sources are compared as addresses: the case writes IPv6 uncompressed.
        let source: std::net::IpAddr = source.parse().unwrap();
        assert!(
            flagged
                .iter()
                .any(|(flagged_kind, entity)| flagged_kind == kind
                    && entity.parse::<std::net::IpAddr>().ok() == Some(source)),
            "{}: {source} not flagged by {kind}: {flagged:?}",
            case["case"]
        );
        checked += 1;
    }
    assert!(checked >= at_least, "only {checked} {kind} cases found");
}

/// Every `bad_user_agent` case (one to eighty requests of Nikto or zgrab) flagged for its
/// source by the bad_user_agent detector.
#[test]
fn crowdsec_bad_user_agent_cases_are_flagged_by_kind() {
    every_case_of_kind_is_flagged("bad_user_agent", 4);
}

/// Every `brute_force` case flagged for its source: a form login answered 200 seven times
/// in three seconds (apiscp), and six 401s to one POST target in a second beside an nginx
/// error log in the same file (the error lines are counted as unparsed, not fatal).
#[test]
fn crowdsec_brute_force_cases_are_flagged_by_kind() {
    every_case_of_kind_is_flagged("brute_force", 2);
}
