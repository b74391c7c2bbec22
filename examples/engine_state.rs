//! Time and memory of saving and restoring detector state. Reads a `combined` access log
//! into an engine with the built-in detectors, then times `Engine::snapshot` (rows with
//! their state as JSON text) and `Engine::restore` of those rows into a fresh engine, and
//! prints the process's resident memory after each step.
//!
//! ```text
//! python3 scripts/build_distinct_ips_log.py /tmp/ips.log --ips 200000
//! cargo build --release --example engine_state
//! /usr/bin/time -v target/release/examples/engine_state /tmp/ips.log
//! /usr/bin/time -v target/release/examples/engine_state /tmp/ips.log --build-only
//! ```
//!
//! `--build-only` stops after reading the log: the difference in peak memory between the
//! two runs is what saving and restoring cost.

// The clock measures this tool's own run time, not event time.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::time::Instant;

use gatewatch::detect::{Engine, EngineSettings};
use gatewatch::parse::{preset, Decoder};

/// `VmRSS` and `VmHWM` (peak) of this process, in MiB.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix(" kB"))
            .and_then(|kb| kb.trim().parse::<f64>().ok())
            .map_or("?".to_owned(), |kb| format!("{:.1} MiB", kb / 1024.0))
    };
    format!("rss {}, peak {}", field("VmRSS:"), field("VmHWM:"))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: engine_state LOG [--build-only]"))?;
    let build_only = args.next().as_deref() == Some("--build-only");
    let defs = gatewatch::detectors_dir::load(None)?;

    let started = Instant::now();
    let mut engine = Engine::new(&defs, EngineSettings::default());
    let mut decoder = Decoder::new(preset("combined").expect("combined preset"));
    let mut lines = 0u64;
    for line in BufReader::new(std::fs::File::open(&path)?).split(b'\n') {
        let line = line?;
        decoder.decode(&line, |record, parsed| {
            if let Ok(req) = parsed {
                engine.observe(&req, record);
            }
        });
        engine.drain_events().for_each(drop);
        lines += 1;
    }
    let keys: Vec<String> = engine
        .detector_stats()
        .map(|(id, stats)| format!("{id} {}", stats.keys))
        .collect();
    println!(
        "read {lines} lines in {:.2?} (keys: {}); {}",
        started.elapsed(),
        keys.join(", "),
        memory()
    );
    if build_only {
        return Ok(());
    }

    let started = Instant::now();
    let rows = engine.snapshot();
    let snapshot_time = started.elapsed();
    let bytes: usize = rows
        .iter()
        .map(|row| row.detector.len() + row.entity.len() + row.state.len() + 8)
        .sum();
    println!(
        "snapshot: {} rows, {:.1} MiB of text, in {snapshot_time:.2?}; {}",
        rows.len(),
        bytes as f64 / (1024.0 * 1024.0),
        memory()
    );
    drop(engine);

    let started = Instant::now();
    let mut restored = Engine::new(&defs, EngineSettings::default());
    let report = restored.restore(rows);
    let restore_time = started.elapsed();
    let keys: Vec<String> = restored
        .detector_stats()
        .map(|(id, stats)| format!("{id} {}", stats.keys))
        .collect();
    println!(
        "restore: {report:?} in {restore_time:.2?} (keys: {}); {}",
        keys.join(", "),
        memory()
    );
    Ok(())
}
