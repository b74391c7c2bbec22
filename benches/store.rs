//! Store query latency: 100,000 incidents in a SQLite file (WAL, on disk, as deployed) and,
//! when GATEWATCH_TEST_POSTGRES_URL is set, in a fresh PostgreSQL database on that server;
//! then the analysts' typical questions — a time range plus an entity (IP or CIDR) — timed.
//!
//! Also prints the bulk upsert rate while filling each store, and the rate of the same
//! incidents sent as events through the batching `StoreWriter` into a second, empty store.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use gatewatch::detect::{incident_id, Evidence, Incident, IncidentEvent, Score, Severity, Status};
use gatewatch::event::{EntityKind, Timestamp};
use gatewatch::store::{
    EntityFilter, IncidentQuery, Sequenced, Store, StoreWriter, WriterSettings,
};

use common::SplitMix64;

const INCIDENTS: u32 = 100_000;
const SEC: i64 = 1_000_000_000;
/// 2026-11-01T00:00:00Z; incidents spread over the 30 days after it.
const T0: i64 = 1_793_491_200 * SEC;
const DETECTORS: [(&str, &str); 3] = [
    ("rate-spike-ip", "rate_spike"),
    ("scanner-ip", "scanner"),
    ("brute-force-ip", "brute_force"),
];

fn generate() -> Vec<Incident> {
    let mut rng = SplitMix64::new(42);
    (0..INCIDENTS)
        .map(|_| {
            // 20,000 addresses in 10.0.0.0/8, about five incidents each.
            let host = rng.below(20_000) as u32;
            let entity = format!("10.{}.{}.{}", host >> 16 & 0xff, host >> 8 & 0xff, host & 0xff);
            let (detector, kind) = DETECTORS[rng.below(3) as usize];
            let start = Timestamp(T0 + (rng.below(30 * 86_400)) as i64 * SEC);
            let last_seen = Timestamp(start.nanos() + rng.below(3600) as i64 * SEC);
            Incident {
                id: incident_id(detector, &entity, start),
                detector: detector.into(),
                kind: kind.into(),
                severity: Severity::ALL[rng.below(4) as usize],
                entity_kind: EntityKind::Ip,
                summary: format!("{entity} sent 412 requests in 60s, 130x its baseline"),
                entity,
                started_at: start,
                detected_at: start,
                last_seen,
                count: rng.below(10_000),
                score: Score { observed: 412.0, expected: 3.1, p_value: Some(1e-12) },
                status: Status::Closed,
                evidence: vec![Evidence::new(
                    start,
                    b"10.1.2.3 - - [20/Nov/2026:10:03:12 +0000] \"GET /api/v1/cart HTTP/1.1\" 200 512 \"-\" \"curl/8.5\"",
                )],
                explain: Default::default(),
                related: Vec::new(),
            }
        })
        .collect()
}

/// A fresh database on the PostgreSQL test server, if there is one: (url, admin url, name).
fn postgres_database(
    runtime: &tokio::runtime::Runtime,
    purpose: &str,
) -> Option<(String, String, String)> {
    use sqlx::{Connection, Executor};
    let admin = std::env::var("GATEWATCH_TEST_POSTGRES_URL").ok()?;
    let name = format!("gatewatch_bench_{purpose}_{}", std::process::id());
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        conn.execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
            .await
            .unwrap();
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
    });
    let base = admin.rsplit_once('/').expect("URL with a database").0;
    Some((format!("{base}/{name}"), admin, name))
}

fn drop_postgres_database(runtime: &tokio::runtime::Runtime, admin: &str, name: &str) {
    use sqlx::{Connection, Executor};
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
        conn.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
    });
}

fn store_queries(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let incidents = generate();
    let sqlite = format!("sqlite://{}/bench.db", dir.path().display());
    bench_backend(c, &runtime, "sqlite", &sqlite, &incidents);
    let sqlite_writer = format!("sqlite://{}/writer.db", dir.path().display());
    writer_rate(&runtime, "sqlite", &sqlite_writer, &incidents);
    match postgres_database(&runtime, "query") {
        Some((url, admin, name)) => {
            bench_backend(c, &runtime, "postgres", &url, &incidents);
            drop_postgres_database(&runtime, &admin, &name);
            let (url, admin, name) = postgres_database(&runtime, "writer").expect("as above");
            writer_rate(&runtime, "postgres", &url, &incidents);
            drop_postgres_database(&runtime, &admin, &name);
        }
        None => eprintln!("store: GATEWATCH_TEST_POSTGRES_URL is not set; PostgreSQL not measured"),
    }
}

fn bench_backend(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    backend: &str,
    url: &str,
    incidents: &[Incident],
) {
    let store = runtime.block_on(Store::open(url)).unwrap();
    #[allow(clippy::disallowed_methods)] // timing the fill, an edge
    let started = Instant::now();
    for chunk in incidents.chunks(1000) {
        runtime.block_on(store.upsert_incidents(chunk)).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "store {backend}: upserted {INCIDENTS} incidents (with evidence) in {secs:.2} s: {:.0}/s",
        f64::from(INCIDENTS) / secs
    );
    if backend == "postgres" {
        // As autovacuum would soon after a bulk load: fresh statistics for the planner.
        runtime.block_on(async {
            use sqlx::{Connection, Executor};
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            conn.execute("ANALYZE").await.unwrap();
        });
    }

    let day = 86_400 * SEC;
    let window = |from_day: i64, days: i64| IncidentQuery {
        since: Some(Timestamp(T0 + from_day * day)),
        until: Some(Timestamp(T0 + (from_day + days) * day)),
        limit: 50,
        ..IncidentQuery::default()
    };
    let queries = [
        (
            "range 7d + ip",
            IncidentQuery {
                entity: Some(EntityFilter::parse("10.0.12.34")),
                ..window(10, 7)
            },
        ),
        (
            "range 7d + cidr /24",
            IncidentQuery {
                entity: Some(EntityFilter::parse("10.0.12.0/24")),
                ..window(10, 7)
            },
        ),
        (
            "range 1d + cidr /8",
            IncidentQuery {
                entity: Some(EntityFilter::parse("10.0.0.0/8")),
                ..window(20, 1)
            },
        ),
        ("range 1d", window(20, 1)),
        (
            "range 7d + ip + evidence",
            IncidentQuery {
                entity: Some(EntityFilter::parse("10.0.12.34")),
                with_evidence: true,
                ..window(10, 7)
            },
        ),
        (
            "range 30d + severity critical, 1000 rows",
            IncidentQuery {
                min_severity: Some(Severity::Critical),
                limit: 1000,
                ..window(0, 30)
            },
        ),
    ];
    let mut group = c.benchmark_group(format!("store_{backend}_100k"));
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (name, query) in &queries {
        let rows = runtime
            .block_on(store.list_incidents(query))
            .unwrap()
            .incidents
            .len();
        eprintln!("store {backend}: {name}: {rows} rows");
        group.bench_function(*name, |b| {
            b.iter(|| runtime.block_on(store.list_incidents(query)).unwrap())
        });
    }
    group.finish();
    runtime.block_on(store.close());
}

/// The incidents as numbered Opened events through the store task (default settings), timed
/// from the first send until the task has stored everything.
fn writer_rate(
    runtime: &tokio::runtime::Runtime,
    backend: &str,
    url: &str,
    incidents: &[Incident],
) {
    let store = runtime.block_on(Store::open(url)).unwrap();
    #[allow(clippy::disallowed_methods)] // timing the fill, an edge
    let started = Instant::now();
    let report = runtime.block_on(async {
        let writer = StoreWriter::spawn(store.clone(), WriterSettings::default());
        let sender = writer.sender();
        for (seq, incident) in (1..).zip(incidents) {
            let event = IncidentEvent::Opened(incident.clone());
            sender.send(Sequenced { seq, event }).await.unwrap();
        }
        drop(sender);
        writer.finish().await
    });
    let secs = started.elapsed().as_secs_f64();
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.durable, incidents.len() as u64, "{report:?}");
    eprintln!(
        "store {backend}: StoreWriter stored {} events ({} upserts) in {secs:.2} s: {:.0}/s",
        report.received,
        report.written,
        report.received as f64 / secs
    );
    runtime.block_on(store.close());
}

criterion_group!(benches, store_queries);
criterion_main!(benches);
