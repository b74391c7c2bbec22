//! Detection end to end (lines/s) over the 25-minute attack log, with the built-in
//! detectors and default engine settings:
//!
//! - `parse+detect`: `Decoder` + `Engine::observe` for every line, as `gatewatch` runs;
//! - `parse-only`: the same `Decoder` work without the engine;
//! - `detect-only`: `Engine::observe` over requests parsed before timing.
//!
//! Each iteration builds a fresh `Engine` (detector state starts empty, as on a new run)
//! and ends with `finish()`, draining every incident event.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use gatewatch::detect::{DetectorDef, Engine, EngineSettings, Observed};
use gatewatch::detectors_dir;
use gatewatch::event::Request;
use gatewatch::parse::{preset, Decoder};

use common::combined_lines;

/// Drains the engine's events, returning how many there were.
fn drain(engine: &mut Engine) -> usize {
    engine.drain_events().map(black_box).count()
}

fn parse_and_detect(defs: &[DetectorDef], lines: &[Vec<u8>]) -> (usize, usize) {
    let mut decoder = Decoder::new(preset("combined").expect("combined preset"));
    let mut engine = Engine::new(defs, EngineSettings::default());
    let mut events = 0;
    let mut accepted = 0;
    for line in lines {
        decoder.decode(line, |record, parsed| {
            if let Ok(req) = parsed {
                accepted += usize::from(engine.observe(&req, record) == Observed::Accepted);
            }
        });
        events += drain(&mut engine);
    }
    engine.finish();
    events += drain(&mut engine);
    (accepted, events)
}

fn detect_only(defs: &[DetectorDef], requests: &[(Request<'_>, &[u8])]) -> (usize, usize) {
    let mut engine = Engine::new(defs, EngineSettings::default());
    let mut events = 0;
    let mut accepted = 0;
    for (req, line) in requests {
        accepted += usize::from(engine.observe(req, line) == Observed::Accepted);
        events += drain(&mut engine);
    }
    engine.finish();
    events += drain(&mut engine);
    (accepted, events)
}

fn engine(c: &mut Criterion) {
    let lines = combined_lines(None);
    let defs = detectors_dir::load(None).expect("built-in detectors load");
    // Pre-parsed for `detect-only`: the requests borrow from `lines`.
    let parser = preset("combined").expect("combined preset");
    let requests: Vec<(Request<'_>, &[u8])> = lines
        .iter()
        .filter_map(|line| Some((parser.parse(line).ok()?, line.as_slice())))
        .collect();

    // Untimed sanity run: both paths see the same requests and raise the same incidents.
    let full = parse_and_detect(&defs, &lines);
    assert_eq!(full, detect_only(&defs, &requests));
    assert_eq!(requests.len(), lines.len(), "every test line parses");
    assert!(full.1 > 0, "the attack log raises incidents");
    eprintln!(
        "detect bench: {} lines, {} accepted, {} incident events, {} detectors",
        lines.len(),
        full.0,
        full.1,
        defs.len()
    );

    let mut group = c.benchmark_group("detect");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse+detect", |b| {
        b.iter(|| black_box(parse_and_detect(&defs, black_box(&lines))))
    });
    group.bench_function("parse-only", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new(preset("combined").expect("combined preset"));
            let mut ok = 0usize;
            for line in &lines {
                decoder.decode(black_box(line), |record, parsed| {
                    ok += usize::from(black_box((record, &parsed)).1.is_ok());
                });
            }
            black_box(ok)
        })
    });
    group.bench_function("detect-only", |b| {
        b.iter(|| black_box(detect_only(&defs, black_box(&requests))))
    });
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
