//! Parsers against `../shared/conformance/parsers.jsonl`: real lines from another project's
//! test suite with the fields they must parse to. Skipped (loudly) when `../shared` is absent.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use gatewatch::event::Timestamp;
use gatewatch::parse::{detect_format, preset, unwrap_line, Decoder, RequestJson, TrustedProxies};
use serde_json::Value;

/// Formats this build parses; lines of other formats are counted as not yet covered.
const FORMATS: &[&str] = &[
    "combined",
    "ingress-nginx",
    "traefik",
    "traefik-json",
    "envoy",
    "envoy-json",
];

fn conformance_file() -> Option<PathBuf> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/parsers.jsonl");
    if path.exists() {
        Some(path)
    } else {
        // Straight to stderr, past libtest's capture, so the skip shows in every run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {} not found (a fresh clone has no ../shared); conformance not checked",
            path.display()
        );
        None
    }
}

fn records() -> Option<Vec<Value>> {
    let text = std::fs::read_to_string(conformance_file()?).expect("readable");
    Some(
        text.lines()
            .map(|line| serde_json::from_str(line).expect("valid JSON record"))
            .collect(),
    )
}

fn same_value(field: &str, expected: &Value, actual: Option<&Value>) -> bool {
    match (expected, actual) {
        (Value::Null, None) => true,
        (Value::Null, Some(_)) | (_, None) => false,
        (Value::String(e), Some(Value::String(a))) if field == "ts" => {
            Timestamp::parse_rfc3339(e) == Timestamp::parse_rfc3339(a)
        }
        (Value::Number(e), Some(Value::Number(a))) => {
            (e.as_f64().unwrap() - a.as_f64().unwrap()).abs() < 1e-6
        }
        (e, Some(a)) => e == a,
    }
}

/// The differences between a record's `expect` and what gatewatch parsed.
fn mismatches(record: &Value, parsed: &Value) -> Vec<String> {
    let expect = record["expect"].as_object().expect("expect is an object");
    expect
        .iter()
        .filter(|(field, expected)| !same_value(field, expected, parsed.get(field.as_str())))
        .map(|(field, expected)| {
            format!(
                "{field}: expected {expected}, got {:?}",
                parsed.get(field.as_str())
            )
        })
        .collect()
}

#[test]
fn every_parsed_line_matches_its_expected_fields() {
    let Some(records) = records() else { return };
    let mut checked = 0;
    let mut failures = Vec::new();
    for record in &records {
        let format = record["format"].as_str().unwrap();
        if !FORMATS.contains(&format) {
            continue;
        }
        let line = record["line"].as_str().unwrap().as_bytes();
        // Where the peer's client rule differs from ours, the record names the proxies
        // that make ours give its answer.
        let trusted = record["trusted_proxies"]
            .as_array()
            .map(|nets| {
                nets.iter()
                    .map(|n| n.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let mut decoder = Decoder::new(preset(format).unwrap())
            .with_trusted_proxies(TrustedProxies::parse(&trusted).unwrap());
        // A CRI `P` fragment waits for the rest of its record; only its wrapper is checked.
        let Some(result) = decoder.decode(line, |_, parsed| {
            parsed.map(|req| serde_json::to_value(RequestJson::from(&req)).unwrap())
        }) else {
            assert_eq!(unwrap_line(line).unwrap().map(|u| u.partial), Ok(true));
            continue;
        };
        checked += 1;
        let case = record["case"].as_str().unwrap();
        match (record["parsed"].as_bool().unwrap(), result) {
            (true, Ok(parsed)) => {
                let diffs = mismatches(record, &parsed);
                if !diffs.is_empty() {
                    failures.push(format!("{case}: {} | {}", diffs.join("; "), record["line"]));
                }
            }
            (true, Err(err)) => {
                failures.push(format!("{case}: not parsed ({err}) | {}", record["line"]))
            }
            (false, Ok(_)) => failures.push(format!(
                "{case}: parsed a line that is not a record | {}",
                record["line"]
            )),
            (false, Err(_)) => {}
        }
    }
    eprintln!("conformance: {checked} records checked");
    assert!(checked > 1000, "too few records in scope: {checked}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn wrappers_unwrap_to_the_expected_inner_line() {
    let Some(records) = records() else { return };
    let mut checked = 0;
    for record in records.iter().filter(|r| r["wrapper"].is_string()) {
        let expect = &record["wrapper_expect"];
        let line = record["line"].as_str().unwrap().as_bytes();
        let unwrapped = unwrap_line(line)
            .unwrap_or_else(|| panic!("not detected as wrapped: {}", record["line"]))
            .unwrap_or_else(|e| panic!("{e}: {}", record["line"]));
        // Only what the peer asserted is compared; Docker cases assert the inner line only.
        if let Some(inner) = expect["inner"].as_str() {
            assert_eq!(unwrapped.inner.as_ref(), inner.as_bytes());
        }
        if let Some(stream) = expect["stream"].as_str() {
            assert_eq!(unwrapped.stream.as_str(), stream);
        }
        if let Some(partial) = expect["partial"].as_bool() {
            assert_eq!(unwrapped.partial, partial);
        }
        if let Some(ts) = expect["ts"].as_str() {
            assert_eq!(Some(unwrapped.ts), Timestamp::parse_rfc3339(ts));
        }
        checked += 1;
    }
    eprintln!("conformance: {checked} wrapped lines checked");
    assert!(checked > 0);
}

#[test]
fn auto_detection_picks_each_cases_format() {
    let Some(records) = records() else { return };
    let mut cases: BTreeMap<(&str, &str), Vec<Vec<u8>>> = BTreeMap::new();
    for record in &records {
        let format = record["format"].as_str().unwrap();
        if !FORMATS.contains(&format) || record["parsed"] != Value::Bool(true) {
            continue;
        }
        let line = record["line"].as_str().unwrap().as_bytes();
        let inner = match unwrap_line(line) {
            None => line.to_vec(),
            Some(unwrapped) => unwrapped.unwrap().inner.into_owned(),
        };
        cases
            .entry((record["case"].as_str().unwrap(), format))
            .or_default()
            .push(inner);
    }
    for ((case, format), lines) in &cases {
        let detected = detect_format(lines.iter().map(Vec::as_slice)).expect("some format parses");
        if *format == "combined" && detected.format == "nginx-main" {
            // nginx's `main` (combined plus the forwarded chain), which the cases call
            // combined with a trailing field: the more specific preset, reading the same
            // fields and the chain besides.
            let (main, combined) = (preset("nginx-main").unwrap(), preset("combined").unwrap());
            for line in lines {
                // (`-`, no chain, reads as none.)
                let mut with_chain = main.parse(line).unwrap();
                with_chain.x_forwarded_for = None;
                assert_eq!(with_chain, combined.parse(line).unwrap(), "case {case}");
            }
            continue;
        }
        assert_eq!(detected.format, *format, "case {case}");
    }
    eprintln!(
        "conformance: format auto-detected for {} cases",
        cases.len()
    );
}
