//! The store against real databases: every test runs on a SQLite file and on the PostgreSQL
//! server named by GATEWATCH_TEST_POSTGRES_URL.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use gatewatch::detect::{Evidence, Incident, IncidentEvent, Severity, Status};
use gatewatch::event::{EntityKind, Timestamp};
use gatewatch::store::{
    EntityFilter, IncidentQuery, Sequenced, StatusFilter, Store, StoreError, StoreWriter,
    TriageState, WriterSettings,
};
use tokio::sync::watch;

use common::TestDb;

const T0: i64 = 1_795_000_000_000_000_000; // 2026-11-18T…Z, in ns

fn at(secs: i64) -> Timestamp {
    Timestamp(T0 + secs * 1_000_000_000)
}

fn incident(detector: &str, kind: EntityKind, entity: &str, start: i64, end: i64) -> Incident {
    common::incident(detector, kind, entity, at(start), end - start)
}

fn ip(entity: &str, start: i64, end: i64) -> Incident {
    incident("rate-spike-ip", EntityKind::Ip, entity, start, end)
}

async fn ids(store: &Store, query: IncidentQuery) -> Vec<String> {
    let query = IncidentQuery {
        limit: 1000,
        ..query
    };
    let page = store.list_incidents(&query).await.unwrap();
    page.incidents
        .into_iter()
        .map(|s| s.incident.entity)
        .collect()
}

/// Runs each scenario as two tests, `sqlite::name` and `postgres::name`.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let db = super::TestDb::sqlite();
                super::$name(&db).await;
            })+
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let Some(db) = super::TestDb::postgres(concat!("store::postgres::", stringify!($name))) else {
                    return;
                };
                super::$name(&db).await;
            })+
        }
    };
}

on_both_backends!(
    migrations_create_every_table_once,
    upserts_merge_monotonically_and_never_duplicate,
    filters_select_exactly_the_matching_incidents,
    pages_walk_every_incident_once_newest_first,
    triage_and_id_prefixes,
    prune_removes_old_incidents_with_their_evidence,
    writer_coalesces_versions_and_stores_everything,
    writer_counts_a_rejected_incident_and_moves_on,
    hostile_text_round_trips_without_nul,
    wide_and_narrow_address_ranges_match_a_model,
    learned_state_and_checkpoints_are_saved_together_and_replaced,
    a_missing_p_value_first_does_not_break_later_writes,
    explanations_related_ids_and_newer_evidence_are_kept,
    the_token_key_is_generated_once_and_shared,
);

/// Regression: the first incident written on a connection had no p-value, and every later
/// write of one with a p-value failed on PostgreSQL ("incorrect binary data format in bind
/// parameter 16"): sqlx's Any driver binds a NULL f64 as float4 and the statement is cached.
async fn a_missing_p_value_first_does_not_break_later_writes(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    // Whichever pooled connection runs the first write, alternating reaches one that saw a
    // missing p-value before a present one.
    for n in 0..20 {
        let mut incident = ip(&format!("192.0.2.{}", 20 + n), 0, 60);
        incident.score.p_value = (n % 2 == 1).then_some(1e-9);
        // Concurrent writes spread over the pool's connections.
        let other = [ip(&format!("198.51.100.{n}"), 0, 60)];
        let (a, b) = tokio::join!(
            store.upsert_incidents(std::slice::from_ref(&incident)),
            store.upsert_incidents(&other),
        );
        a.unwrap();
        b.unwrap();
        let stored = store.get_incident(&incident.id).await.unwrap();
        assert_eq!(stored.incident.score.p_value, incident.score.p_value);
    }
    store.close().await;
}

async fn learned_state_and_checkpoints_are_saved_together_and_replaced(db: &TestDb) {
    use gatewatch::detect::StateRow;
    use gatewatch::store::Checkpoint;
    let store = Store::open(&db.url).await.unwrap();
    let row = |n: usize| StateRow {
        detector: "rate-spike-ip".into(),
        entity: format!("198.18.{}.{}", n / 250, n % 250),
        state: format!("{{\"v\":1,\"n\":{n},\"text\":\"it's \\\"quoted\\\"\"}}"),
        updated_at: Timestamp(n as i64 * 1_000_000_007),
    };
    let checkpoint = |offset: u64| Checkpoint {
        source: "web".into(),
        fingerprint: "00112233aabbccdd".into(),
        path: "/var/log/pods/x/0.log".into(),
        offset,
    };
    // More rows than one INSERT carries.
    let rows: Vec<StateRow> = (0..2500).map(row).collect();
    store.save_state(&rows, &[checkpoint(4096)]).await.unwrap();
    let mut loaded = store.load_state().await.unwrap();
    loaded.sort_by_key(|r| r.updated_at);
    assert_eq!(loaded, rows);
    assert_eq!(store.load_checkpoints().await.unwrap(), [checkpoint(4096)]);

    // A later save replaces the state; an offset never moves back.
    store
        .save_state(&rows[..10], &[checkpoint(100)])
        .await
        .unwrap();
    let mut loaded = store.load_state().await.unwrap();
    loaded.sort_by_key(|r| r.updated_at);
    assert_eq!(loaded, rows[..10]);
    assert_eq!(store.load_checkpoints().await.unwrap()[0].offset, 4096);
}

async fn migrations_create_every_table_once(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(
        store.migrate().await.unwrap(),
        0,
        "second run applies nothing"
    );
    let reopened = Store::open(&db.url).await.unwrap();
    reopened.close().await;
    // The tables later issues fill exist now, with their keys.
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let url = if db.is_postgres() {
        db.url.clone()
    } else {
        format!("{}?mode=ro", db.url)
    };
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    for table in [
        "incidents",
        "incident_evidence",
        "checkpoints",
        "alert_outbox",
        "baselines",
        "settings",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(n, 0, "{table}");
    }
    store.close().await;
}

async fn upserts_merge_monotonically_and_never_duplicate(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let mut opened = ip("203.0.113.7", 0, 10);
    opened.status = Status::Open;
    opened.count = 10;
    let mut escalated = opened.clone();
    escalated.severity = Severity::High;
    escalated.count = 400;
    escalated.last_seen = at(60);
    escalated.score.observed = 400.0;
    escalated.summary = "peak".into();
    escalated
        .evidence
        .push(Evidence::new(at(50), b"second line"));
    let mut closed = escalated.clone();
    closed.status = Status::Closed;

    store.upsert_incidents(&[opened.clone()]).await.unwrap();
    store.upsert_incidents(&[escalated.clone()]).await.unwrap();
    // A stale copy (another instance that is behind, or a retried batch) changes nothing.
    store.upsert_incidents(&[opened.clone()]).await.unwrap();
    let stored = store.get_incident(&opened.id).await.unwrap();
    assert_eq!(stored.incident, escalated);
    // Closing at the same last_seen wins over open.
    store
        .upsert_incidents(&[closed.clone(), opened])
        .await
        .unwrap();
    let stored = store.get_incident(&closed.id).await.unwrap();
    assert_eq!(stored.incident, closed);
    assert_eq!(stored.triage.state, TriageState::New);

    let page = store
        .list_incidents(&IncidentQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.incidents.len(), 1);
    store.close().await;
}

async fn filters_select_exactly_the_matching_incidents(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let mut scanner = incident("scanner-ip", EntityKind::Ip, "198.51.100.9", 100, 200);
    scanner.severity = Severity::Low;
    scanner.status = Status::Open;
    let mut critical = ip("10.1.2.3", 500, 900);
    critical.severity = Severity::Critical;
    let all = vec![
        ip("203.0.113.7", 0, 60),
        ip("203.0.113.200", 1000, 1100),
        ip("2001:db8::7", 300, 400),
        critical,
        scanner,
        incident(
            "spread-subnet",
            EntityKind::Subnet,
            "203.0.113.0/24",
            50,
            700,
        ),
        incident("token-new-ip", EntityKind::Token, "tok_3f2a9c81", 10, 20),
    ];
    store.upsert_incidents(&all).await.unwrap();
    let q = IncidentQuery::default;
    let set = |v: Vec<String>| v.into_iter().collect::<HashSet<_>>();
    let expect = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<_>>();

    // Newest start first.
    assert_eq!(
        ids(&store, q()).await,
        [
            "203.0.113.200",
            "10.1.2.3",
            "2001:db8::7",
            "198.51.100.9",
            "203.0.113.0/24",
            "tok_3f2a9c81",
            "203.0.113.7"
        ]
    );
    // Time: active at or after since (last seen), started at or before until.
    let window = IncidentQuery {
        since: Some(at(150)),
        until: Some(at(450)),
        ..q()
    };
    assert_eq!(
        set(ids(&store, window).await),
        expect(&["198.51.100.9", "2001:db8::7", "203.0.113.0/24"])
    );
    // An IP matches its own incidents and subnets holding it.
    let one = IncidentQuery {
        entity: Some(EntityFilter::parse("203.0.113.7")),
        ..q()
    };
    assert_eq!(
        set(ids(&store, one).await),
        expect(&["203.0.113.7", "203.0.113.0/24"])
    );
    // A CIDR matches addresses inside it and overlapping subnets.
    let net = IncidentQuery {
        entity: Some(EntityFilter::parse("203.0.113.128/25")),
        ..q()
    };
    assert_eq!(
        set(ids(&store, net).await),
        expect(&["203.0.113.200", "203.0.113.0/24"])
    );
    let wide = IncidentQuery {
        entity: Some(EntityFilter::parse("0.0.0.0/0")),
        ..q()
    };
    assert_eq!(
        ids(&store, wide).await.len(),
        5,
        "every IPv4 entity, not IPv6 or tokens"
    );
    let v6 = IncidentQuery {
        entity: Some(EntityFilter::parse("2001:db8::/32")),
        ..q()
    };
    assert_eq!(set(ids(&store, v6).await), expect(&["2001:db8::7"]));
    let token = IncidentQuery {
        entity: Some(EntityFilter::parse("tok_3f2a9c81")),
        ..q()
    };
    assert_eq!(set(ids(&store, token).await), expect(&["tok_3f2a9c81"]));
    // Detector, kind, severity (at least), status.
    let detector = IncidentQuery {
        detector: Some("scanner-ip".into()),
        ..q()
    };
    assert_eq!(set(ids(&store, detector).await), expect(&["198.51.100.9"]));
    let kind = IncidentQuery {
        kind: Some("rate_spike".into()),
        ..q()
    };
    assert_eq!(ids(&store, kind).await.len(), 4);
    let severe = IncidentQuery {
        min_severity: Some(Severity::High),
        ..q()
    };
    assert_eq!(set(ids(&store, severe).await), expect(&["10.1.2.3"]));
    let open = IncidentQuery {
        status: Some(StatusFilter::Open),
        ..q()
    };
    assert_eq!(set(ids(&store, open).await), expect(&["198.51.100.9"]));
    // Filters combine.
    let combined = IncidentQuery {
        since: Some(at(0)),
        entity: Some(EntityFilter::parse("203.0.113.0/24")),
        min_severity: Some(Severity::Medium),
        ..q()
    };
    assert_eq!(
        set(ids(&store, combined).await),
        expect(&["203.0.113.7", "203.0.113.200", "203.0.113.0/24"])
    );
    store.close().await;
}

async fn pages_walk_every_incident_once_newest_first(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    // Pairs share a start time, so the id tie-break matters.
    let all: Vec<Incident> = (0..25)
        .map(|i| ip(&format!("192.0.2.{i}"), (i / 2) * 10, 1000))
        .collect();
    store.upsert_incidents(&all).await.unwrap();
    let mut seen = Vec::new();
    let mut query = IncidentQuery {
        limit: 7,
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = store.list_incidents(&query).await.unwrap();
        pages += 1;
        assert!(page.incidents.len() <= 7);
        seen.extend(page.incidents.into_iter().map(|s| s.incident));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(seen.len(), 25);
    let unique: HashSet<_> = seen.iter().map(|i| i.id.clone()).collect();
    assert_eq!(unique.len(), 25);
    assert!(seen
        .windows(2)
        .all(|w| (w[0].started_at, &w[0].id) > (w[1].started_at, &w[1].id)));
    store.close().await;
}

async fn triage_and_id_prefixes(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let target = ip("203.0.113.7", 0, 60);
    store
        .upsert_incidents(std::slice::from_ref(&target))
        .await
        .unwrap();
    let prefix = &target.id[..6];
    let id = store.resolve_id(prefix).await.unwrap();
    assert_eq!(id, target.id);
    let other = format!(
        "{}{}",
        &target.id[..15],
        if target.id.ends_with('0') { '1' } else { '0' }
    );
    assert!(matches!(
        store.resolve_id(&other).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        matches!(
            store.resolve_id(&target.id[..2]).await,
            Err(StoreError::ShortId(_))
        ),
        "too short a prefix says so"
    );
    assert!(matches!(
        store.resolve_id("'; DROP TABLE incidents; --").await,
        Err(StoreError::NotFound(_))
    ));

    store
        .set_triage(&id, TriageState::Acknowledged, Some("looking"))
        .await
        .unwrap();
    let acked = store.get_incident(&id).await.unwrap();
    assert_eq!(acked.triage.state, TriageState::Acknowledged);
    assert_eq!(acked.triage.note.as_deref(), Some("looking"));
    assert!(acked.triage.at.is_some());
    // Resolving without a note keeps the earlier one; a later upsert keeps the triage.
    store
        .set_triage(&id, TriageState::Resolved, None)
        .await
        .unwrap();
    store
        .upsert_incidents(std::slice::from_ref(&target))
        .await
        .unwrap();
    let resolved = store.get_incident(&id).await.unwrap();
    assert_eq!(resolved.triage.state, TriageState::Resolved);
    assert_eq!(resolved.triage.note.as_deref(), Some("looking"));
    let filter = IncidentQuery {
        status: Some(StatusFilter::Resolved),
        ..Default::default()
    };
    assert_eq!(ids(&store, filter).await, ["203.0.113.7"]);
    assert!(matches!(
        store
            .set_triage("0000000000000000", TriageState::Acknowledged, None)
            .await,
        Err(StoreError::NotFound(_))
    ));
    store.close().await;
}

async fn prune_removes_old_incidents_with_their_evidence(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let old = ip("203.0.113.1", 0, 100);
    let recent = ip("203.0.113.2", 0, 5000);
    store
        .upsert_incidents(&[old.clone(), recent.clone()])
        .await
        .unwrap();
    assert_eq!(store.prunable(at(1000), false).await.unwrap(), (1, 0));
    assert_eq!(store.prune(at(1000), false).await.unwrap(), 1);
    assert!(matches!(
        store.get_incident(&old.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .get_incident(&recent.id)
            .await
            .unwrap()
            .incident
            .evidence
            .len(),
        1
    );
    // Re-inserting the pruned one finds no orphaned evidence to collide with.
    store
        .upsert_incidents(std::slice::from_ref(&old))
        .await
        .unwrap();
    assert_eq!(store.get_incident(&old.id).await.unwrap().incident, old);
    assert_eq!(store.prune(at(0), true).await.unwrap(), 0);
    // An analyst's triage is kept unless asked for.
    store
        .set_triage(&old.id, TriageState::Resolved, Some("false positive"))
        .await
        .unwrap();
    assert_eq!(store.prunable(at(1000), false).await.unwrap(), (0, 1));
    assert_eq!(store.prune(at(1000), false).await.unwrap(), 0);
    assert!(store.get_incident(&old.id).await.is_ok());
    assert_eq!(store.prunable(at(1000), true).await.unwrap(), (1, 0));
    assert_eq!(store.prune(at(1000), true).await.unwrap(), 1);
    store.close().await;
}

async fn writer_coalesces_versions_and_stores_everything(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let settings = WriterSettings {
        channel_capacity: 16,
        batch_size: 32,
        ..WriterSettings::default()
    };
    let writer = StoreWriter::spawn(store.clone(), settings);
    let sender = writer.sender();
    // Checks, each time the watermark moves, that what it covers really is in the database.
    let sent: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let checker = tokio::spawn(watermark_is_stored(
        store.clone(),
        writer.durable(),
        sent.clone(),
    ));
    let mut finals = Vec::new();
    let mut seq = 0;
    for n in 0..100 {
        let mut incident = ip(&format!("198.18.0.{n}"), n, n + 10);
        for version in 1..=5u64 {
            incident.count = version * 10;
            incident.last_seen = at(n + 10 * version as i64);
            incident.status = if version == 5 {
                Status::Closed
            } else {
                Status::Open
            };
            let event = match version {
                1 => IncidentEvent::Opened(incident.clone()),
                5 => IncidentEvent::Closed(incident.clone()),
                _ => IncidentEvent::Escalated(incident.clone()),
            };
            seq += 1;
            sent.lock()
                .unwrap()
                .push((incident.id.clone(), incident.count));
            sender.send(Sequenced { seq, event }).await.unwrap();
        }
        finals.push(incident);
    }
    drop(sender);
    let report = writer.finish().await;
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.received, 500);
    assert_eq!(report.durable, 500);
    assert!(report.written >= 100 && report.written <= 500, "{report:?}");
    let checks = checker.await.unwrap();
    assert!(checks > 0, "the watermark moved");
    for incident in &finals {
        assert_eq!(
            &store.get_incident(&incident.id).await.unwrap().incident,
            incident
        );
    }
    store.close().await;
}

/// Until the writer ends: every event (id, count) with `seq <= durable` is stored, at least
/// at that count (the upsert keeps the highest). Returns how many watermarks it checked.
async fn watermark_is_stored(
    store: Store,
    mut durable: watch::Receiver<u64>,
    sent: Arc<Mutex<Vec<(String, u64)>>>,
) -> usize {
    let mut checks = 0;
    while durable.changed().await.is_ok() {
        let d = *durable.borrow_and_update();
        let covered: Vec<(String, u64)> = sent.lock().unwrap()[..d as usize].to_vec();
        for (id, count) in covered {
            let stored = store.get_incident(&id).await.unwrap().incident;
            assert!(stored.count >= count, "{id} at seq <= {d}: {stored:?}");
        }
        checks += 1;
    }
    checks
}

/// A row the database refuses for good is counted and logged, and does not hold the durable
/// watermark back.
async fn writer_counts_a_rejected_incident_and_moves_on(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let writer = StoreWriter::spawn(store.clone(), WriterSettings::default());
    let sender = writer.sender();
    let first = ip("198.18.1.1", 0, 10);
    // Another id for the same (detector, entity, start): the table's unique key refuses it.
    let mut clash = first.clone();
    clash.id = "ffffffffffffffff".into();
    let after = ip("198.18.1.2", 0, 10);
    for (seq, incident) in [&first, &clash, &after].into_iter().enumerate() {
        let event = IncidentEvent::Opened(incident.clone());
        let seq = seq as u64 + 1;
        sender.send(Sequenced { seq, event }).await.unwrap();
    }
    drop(sender);
    let report = writer.finish().await;
    assert_eq!(report.rejected, 1, "{report:?}");
    assert!(!report.complete());
    assert_eq!(report.unstored, 0);
    assert_eq!(report.durable, 3, "{report:?}");
    assert!(report.last_error.is_some());
    assert_eq!(store.get_incident(&first.id).await.unwrap().incident, first);
    assert_eq!(store.get_incident(&after.id).await.unwrap().incident, after);
    assert!(matches!(
        store.get_incident(&clash.id).await,
        Err(StoreError::NotFound(_))
    ));
    store.close().await;
}

async fn hostile_text_round_trips_without_nul(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let mut hostile = incident("probe-route", EntityKind::Route, "/a\0b\u{1b}[2J", 0, 1);
    hostile.summary = "ua \u{1b}]0;pwned\u{7} and a NUL \0".into();
    hostile.evidence = vec![Evidence::new(at(0), b"GET /\0\x1b[31m \xff")];
    store.upsert_incidents(&[hostile.clone()]).await.unwrap();
    let stored = store.get_incident(&hostile.id).await.unwrap().incident;
    assert_eq!(stored.entity, "/a\u{FFFD}b\u{1b}[2J");
    assert_eq!(stored.summary, "ua \u{1b}]0;pwned\u{7} and a NUL \u{FFFD}");
    assert_eq!(stored.evidence, hostile.evidence);
    store.close().await;
}

#[tokio::test]
async fn a_bad_url_is_named_without_its_password() {
    let err = Store::open("mysql://u:hunter2@h/db").await.unwrap_err();
    assert!(err.to_string().contains("mysql://u:***@h/db"), "{err}");
    let err = Store::open("postgres://u:hunter2@127.0.0.1:1/db")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("postgres://u:***@127.0.0.1:1/db") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(
        err.is_transient(),
        "a refused connection is worth retrying: {err:?}"
    );
}

/// More incidents in one range than the planner's probe counts, so wide ranges walk the time
/// index and narrow ones the address index; both must return what a plain filter would.
async fn wide_and_narrow_address_ranges_match_a_model(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let mut all: Vec<Incident> = (0..6000)
        .map(|i| {
            ip(
                &format!("10.0.{}.{}", i / 250, i % 250),
                (i * 7919) % 86_400,
                0,
            )
        })
        .map(|mut incident| {
            incident.last_seen = Timestamp(incident.started_at.nanos() + 600 * 1_000_000_000);
            incident
        })
        .collect();
    all.push(incident(
        "spread-subnet",
        EntityKind::Subnet,
        "10.0.0.0/16",
        40_000,
        50_000,
    ));
    for chunk in all.chunks(1000) {
        store.upsert_incidents(chunk).await.unwrap();
    }
    let (since, until) = (at(30_000), at(60_000));
    for (cidr, lo, hi) in [
        ("10.0.0.0/8", [10, 0, 0, 0], [10, 255, 255, 255]),
        ("10.0.7.0/24", [10, 0, 7, 0], [10, 0, 7, 255]),
        ("10.0.7.9", [10, 0, 7, 9], [10, 0, 7, 9]),
    ] {
        let (lo, hi) = (std::net::Ipv4Addr::from(lo), std::net::Ipv4Addr::from(hi));
        let mut expected: Vec<&Incident> = all
            .iter()
            .filter(|i| i.last_seen >= since && i.started_at <= until)
            .filter(|i| match i.entity_kind {
                EntityKind::Ip => {
                    (lo..=hi).contains(&i.entity.parse::<std::net::Ipv4Addr>().unwrap())
                }
                _ => true, // the /16 overlaps every range here
            })
            .collect();
        expected.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
        let mut query = IncidentQuery {
            since: Some(since),
            until: Some(until),
            entity: Some(EntityFilter::parse(cidr)),
            limit: 500,
            ..IncidentQuery::default()
        };
        let mut got = Vec::new();
        loop {
            let page = store.list_incidents(&query).await.unwrap();
            got.extend(page.incidents.into_iter().map(|s| s.incident.id));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = expected.iter().map(|i| i.id.clone()).collect();
        assert!(!expected.is_empty());
        assert_eq!(got, expected, "{cidr}");
    }
    store.close().await;
}

/// The explanation and related ids come back as written; the newest view's evidence replaces
/// an older view's (anomalous lines displace ordinary ones), and a stale view changes nothing.
async fn explanations_related_ids_and_newer_evidence_are_kept(db: &TestDb) {
    use gatewatch::detect::{Explain, Tally};
    let store = Store::open(&db.url).await.unwrap();
    let mut opened = ip("203.0.113.8", 0, 10);
    opened.status = Status::Open;
    opened.explain = Explain {
        rule: "≥ 8 probe points in 10m".into(),
        top_paths: vec![Tally {
            value: "/.env".into(),
            count: 1,
        }],
        ..Explain::default()
    };
    opened.evidence = vec![
        Evidence::new(at(0), b"probe"),
        Evidence::new(at(1), b"ordinary"),
    ];
    let mut closed = opened.clone();
    closed.status = Status::Closed;
    closed.last_seen = at(90);
    closed.explain.top_paths = vec![
        Tally {
            value: "/.git/config".into(),
            count: 7,
        },
        Tally {
            value: "/.env\u{202e}<b>".into(),
            count: 2,
        },
    ];
    closed.explain.user_agents = vec![Tally {
        value: "curl/8.5".into(),
        count: 9,
    }];
    closed.related = vec!["00112233aabbccdd".into()];
    closed.evidence = vec![
        Evidence::new(at(0), b"probe"),
        Evidence::new(at(60), b"later probe"),
    ];
    store.upsert_incidents(&[opened.clone()]).await.unwrap();
    store.upsert_incidents(&[closed.clone()]).await.unwrap();
    store.upsert_incidents(&[opened.clone()]).await.unwrap();
    let stored = store.get_incident(&closed.id).await.unwrap();
    assert_eq!(stored.incident, closed);
    let json = serde_json::to_value(&stored).unwrap();
    assert_eq!(json["explain"]["top_paths"][0]["value"], "/.git/config");
    assert_eq!(json["related"][0], "00112233aabbccdd");
    store.close().await;
}

/// Without a key file, fingerprints use the store's key: made by the first caller, then the
/// same for every later one and every other handle on the database.
async fn the_token_key_is_generated_once_and_shared(db: &TestDb) {
    let first = Store::open(&db.url).await.unwrap();
    let other = Store::open(&db.url).await.unwrap();
    let (a, b) = tokio::join!(first.token_key(), other.token_key());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "concurrent first callers agree");
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    first.close().await;
    let again = Store::open(&db.url).await.unwrap();
    assert_eq!(again.token_key().await.unwrap(), a, "kept across opens");
    let elsewhere = TestDb::sqlite();
    let another = Store::open(&elsewhere.url).await.unwrap();
    assert_ne!(
        another.token_key().await.unwrap(),
        a,
        "each database has its own"
    );
    another.close().await;
    again.close().await;
    other.close().await;
}
