//! Databases for the storage tests: a real SQLite file in a temporary directory, and a fresh
//! database on the real PostgreSQL server named by GATEWATCH_TEST_POSTGRES_URL (skipped, loudly,
//! when that is unset).

#![allow(dead_code)] // each test file uses a different part

use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use gatewatch::detect::{incident_id, Evidence, Incident, Score, Severity, Status};
use gatewatch::event::{EntityKind, Timestamp};
use sqlx::Connection as _;

pub mod receiver;

pub const POSTGRES_ENV: &str = "GATEWATCH_TEST_POSTGRES_URL";

pub struct TestDb {
    pub url: String,
    kind: Kind,
}

enum Kind {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

/// A closed, medium incident with one evidence line, lasting `duration_s` from `start`; tests
/// change the fields they are about.
pub fn incident(
    detector: &str,
    entity_kind: EntityKind,
    entity: &str,
    start: Timestamp,
    duration_s: i64,
) -> Incident {
    let last_seen = Timestamp(start.nanos() + duration_s * 1_000_000_000);
    Incident {
        id: incident_id(detector, entity, start),
        detector: detector.to_owned(),
        kind: detector.trim_end_matches("-ip").replace('-', "_"),
        severity: Severity::Medium,
        entity_kind,
        entity: entity.to_owned(),
        started_at: start,
        detected_at: start,
        last_seen,
        count: 100,
        score: Score {
            observed: 120.0,
            expected: 3.5,
            p_value: Some(1e-12),
        },
        summary: format!("{entity} did something"),
        status: Status::Closed,
        evidence: vec![Evidence::new(start, b"sample line")],
        explain: Default::default(),
        related: Vec::new(),
    }
}

/// Straight to stderr, past libtest's capture, so a skip shows in every run.
pub fn say_skipped(what: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {what}: {POSTGRES_ENV} is not set, so the PostgreSQL tests did not run"
    );
}

/// For tests that read ../shared, absent from a fresh clone.
pub fn say_missing(path: &std::path::Path) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {} not found (a fresh clone has no ../shared)",
        path.display()
    );
}

fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    // A thread of its own, so this also works from inside an async test.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(future)
            })
            .join()
            .unwrap()
    })
}

/// `postgres://…/test?x` with the database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..authority_end])
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/gatewatch.db", dir.path().display());
        TestDb {
            url,
            kind: Kind::Sqlite(dir),
        }
    }

    /// A new, empty database on the test server, dropped when this goes out of scope.
    pub fn postgres(test: &str) -> Option<TestDb> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            say_skipped(test);
            return None;
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        #[allow(clippy::disallowed_methods)] // a unique name, not a detection clock
        let name = format!(
            "gatewatch_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        block_on(async {
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={admin_url}: {e}"));
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.unwrap();
        });
        Some(TestDb {
            url: with_database(&admin_url, &name),
            kind: Kind::Postgres { admin_url, name },
        })
    }

    /// Drops the PostgreSQL database under whoever is connected (an outage that does not
    /// heal); false for SQLite.
    pub fn drop_postgres_database_now(&self) -> bool {
        let Kind::Postgres { admin_url, name } = &self.kind else {
            return false;
        };
        block_on(async {
            let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
            let _ = admin.close().await;
        });
        true
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Kind::Postgres { admin_url, name } = &self.kind {
            block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        }
    }
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
