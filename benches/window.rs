//! Window layer throughput (elements/s): sliding windows, EWMA baselines, the LRU key
//! table and the population histogram.
//!
//! Inputs are generated once with a fixed seed, before any timing.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroUsize;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use gatewatch::event::Timestamp;
use gatewatch::window::{Ewma, KeyTable, PopulationHistogram, RateWindow, WindowSpec};

use common::SplitMix64;

const SEC: i64 = 1_000_000_000;
/// Events per iteration for the per-event benches.
const EVENTS: usize = 100_000;

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sampling_mode(SamplingMode::Flat);
}

/// The built-in detectors' geometry: a 60 s window of 10 s buckets.
fn spec() -> WindowSpec {
    WindowSpec::new(60 * SEC, 10 * SEC).expect("valid spec")
}

/// `EVENTS` timestamps about 20 ms apart (≈ 33 minutes), each pulled back by up to
/// `max_lateness` (0: in order).
fn timestamps(seed: u64, max_lateness: i64) -> Vec<Timestamp> {
    let mut rng = SplitMix64::new(seed);
    let mut now = 1_795_000_000 * SEC;
    (0..EVENTS)
        .map(|_| {
            now += rng.below(40_000_000) as i64;
            let late = if max_lateness > 0 {
                rng.below(max_lateness as u64) as i64
            } else {
                0
            };
            Timestamp(now - late)
        })
        .collect()
}

fn rate_window(c: &mut Criterion) {
    let spec = spec();
    let mut group = c.benchmark_group("window/rate_window_record");
    configure(&mut group);
    group.throughput(Throughput::Elements(EVENTS as u64));
    // Out of order: up to 5 s late, like lines from several pods merged by a collector.
    for (id, ts) in [
        ("in-order", timestamps(1, 0)),
        ("out-of-order-5s", timestamps(2, 5 * SEC)),
    ] {
        group.bench_function(id, |b| {
            b.iter(|| {
                let mut window = RateWindow::new(spec.bucket_of(ts[0]));
                let mut completed = 0u64;
                for &t in &ts {
                    let added = window.record(&spec, spec.bucket_of(black_box(t)), |n, gap| {
                        completed += u64::from(n) + gap;
                    });
                    black_box(added);
                }
                black_box((window.sum(), completed))
            })
        });
    }
    group.finish();
}

fn ewma(c: &mut Criterion) {
    let mut rng = SplitMix64::new(3);
    let values: Vec<f64> = (0..EVENTS).map(|_| rng.below(40) as f64).collect();
    // The built-in rate-spike baseline: 15 min half-life over 10 s buckets.
    let alpha = Ewma::alpha_for_half_life(90.0);
    let mut group = c.benchmark_group("window/ewma");
    configure(&mut group);
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("update", |b| {
        b.iter(|| {
            let mut ewma = Ewma::default();
            for &v in &values {
                ewma.update(black_box(v), alpha);
            }
            black_box((ewma.mean(), ewma.variance()))
        })
    });
    group.finish();
}

/// Per-key state shaped like the rate-spike detector's.
struct KeyState {
    window: RateWindow,
    baseline: Ewma,
    first_bucket: i64,
}

fn new_state() -> KeyState {
    KeyState {
        window: RateWindow::new(0),
        baseline: Ewma::default(),
        first_bucket: 0,
    }
}

/// `count` distinct IPv4 keys (an odd multiplier is a bijection on u32).
fn distinct_ips(count: u32) -> Vec<IpAddr> {
    (0..count)
        .map(|i| IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(0x9e37_79b1) ^ 0x0a00_0000)))
        .collect()
}

fn key_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("window/key_table");
    configure(&mut group);

    // Hits: 10k keys already in a 100k table, looked up in random order.
    let keys = distinct_ips(10_000);
    let mut rng = SplitMix64::new(4);
    let lookups: Vec<IpAddr> = (0..EVENTS)
        .map(|_| keys[rng.below(keys.len() as u64) as usize])
        .collect();
    let mut table = KeyTable::new(NonZeroUsize::new(100_000).unwrap());
    for &ip in &keys {
        table.get_or_insert(ip, new_state);
    }
    group.throughput(Throughput::Elements(lookups.len() as u64));
    group.bench_function("hit-10k-keys", |b| {
        b.iter(|| {
            for &ip in &lookups {
                let state = table.get_or_insert(black_box(ip), new_state);
                state.first_bucket += 1;
                black_box(state.window.sum());
            }
        })
    });
    assert_eq!(table.len(), keys.len());
    assert_eq!(table.evictions(), 0);

    // Evictions: 1M distinct keys cycling through a 100k table, so every access misses
    // and evicts the least recent key. One untimed pass fills the table first.
    let keys = distinct_ips(1_000_000);
    let mut table = KeyTable::new(NonZeroUsize::new(100_000).unwrap());
    for &ip in &keys {
        table.get_or_insert(ip, new_state);
    }
    let before = table.evictions();
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("evict-1m-keys-100k-cap", |b| {
        b.iter(|| {
            for &ip in &keys {
                let state = table.get_or_insert(black_box(ip), new_state);
                state.baseline.update(1.0, 0.1);
            }
        })
    });
    let evicted = table.evictions() - before;
    assert_eq!(evicted % keys.len() as u64, 0, "every timed access evicts");
    group.finish();
}

fn population(c: &mut Criterion) {
    // Per-key window counts: mostly small, a long tail of busy keys.
    let mut rng = SplitMix64::new(5);
    let counts: Vec<u32> = (0..EVENTS)
        .map(|_| match rng.below(1000) {
            0 => 1_000 + rng.below(50_000) as u32,
            1..=50 => 50 + rng.below(500) as u32,
            _ => 1 + rng.below(30) as u32,
        })
        .collect();
    let epoch = 5 * 60 * SEC;
    let mut group = c.benchmark_group("window/population");
    configure(&mut group);

    group.throughput(Throughput::Elements(counts.len() as u64));
    group.bench_function("record", |b| {
        b.iter_batched_ref(
            || {
                let mut pop = PopulationHistogram::new(epoch);
                pop.advance_to(0);
                pop
            },
            |pop| {
                for &n in &counts {
                    pop.record(black_box(n));
                }
            },
            BatchSize::LargeInput,
        )
    });

    // Quantile over two populated epochs (it merges them on each call).
    let mut pop = PopulationHistogram::new(epoch);
    pop.advance_to(0);
    let (previous, current) = counts.split_at(counts.len() / 2);
    previous.iter().for_each(|&n| pop.record(n));
    pop.advance_to(epoch);
    current.iter().for_each(|&n| pop.record(n));
    assert_eq!(pop.samples(), counts.len() as u64);
    group.throughput(Throughput::Elements(1));
    group.bench_function("quantile-p90", |b| {
        b.iter(|| black_box(pop.quantile(black_box(0.9), 200)))
    });
    group.finish();
}

criterion_group!(benches, rate_window, ewma, key_table, population);
criterion_main!(benches);
