//! A database outage delays incidents, never drops them: the store task writes through a TCP
//! proxy to the real PostgreSQL server, and the test cuts and restores the proxy.

mod common;

use std::sync::Arc;
use std::time::Duration;

use gatewatch::detect::{Incident, Status};
use gatewatch::event::{EntityKind, Timestamp};
use gatewatch::store::{IncidentQuery, Store, StoreWriter, WriterSettings};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use common::TestDb;

/// Forwards connections to the database while up; when cut, it kills open connections and
/// hangs up on new ones, as a crashed or unreachable server would.
struct Proxy {
    url: String,
    up: Arc<watch::Sender<bool>>,
}

impl Proxy {
    async fn start(db_url: &str) -> Proxy {
        let (scheme_user, rest) = db_url.split_once('@').expect("URL with user@host");
        let (target, path) = rest.split_once('/').expect("URL with a database");
        let target = target.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("{scheme_user}@{}/{path}", listener.local_addr().unwrap());
        let up = Arc::new(watch::channel(true).0);
        let state = up.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                if !*state.borrow() {
                    continue; // dropped: the client sees the connection close
                }
                let mut down = state.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { url, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// Incident `n`, as the engine would send its `version`th update.
fn incident(n: u32, version: u64) -> Incident {
    let start = Timestamp(1_795_000_000_000_000_000 + i64::from(n) * 1_000_000_000);
    let entity = format!("198.18.{}.{}", n / 256, n % 256);
    let mut incident = common::incident("rate-spike-ip", EntityKind::Ip, &entity, start, 0);
    incident.last_seen = Timestamp(start.nanos() + version as i64);
    incident.count = version;
    incident.status = Status::Open;
    incident
}

async fn stored(store: &Store) -> Vec<Incident> {
    let query = IncidentQuery {
        limit: 1000,
        ..Default::default()
    };
    let page = store.list_incidents(&query).await.unwrap();
    page.incidents.into_iter().map(|s| s.incident).collect()
}

fn fast_retries() -> WriterSettings {
    WriterSettings {
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(60),
        ..WriterSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_wait_out_a_database_outage_and_are_all_stored() {
    let Some(db) =
        TestDb::postgres("store_outage::incidents_wait_out_a_database_outage_and_are_all_stored")
    else {
        return;
    };
    let direct = Store::open(&db.url).await.unwrap();
    let proxy = Proxy::start(&db.url).await;
    let writer = StoreWriter::spawn(Store::open(&proxy.url).await.unwrap(), fast_retries());
    let sender = writer.sender();
    for n in 0..50 {
        sender.send(incident(n, 1)).await.unwrap();
    }
    while stored(&direct).await.len() < 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    proxy.set_up(false);
    // Updates to stored incidents and new ones, all while the database is unreachable.
    for n in 0..100 {
        sender.send(incident(n, 2)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = stored(&direct).await;
    assert_eq!(during.len(), 50, "nothing got through the cut proxy");
    assert!(during.iter().all(|i| i.count == 1));

    proxy.set_up(true);
    drop(sender);
    let report = writer.finish().await;
    assert!(report.complete(), "{report:?}");
    assert!(report.retries > 0, "the outage was noticed: {report:?}");
    assert_eq!(report.received, 150);
    let after = stored(&direct).await;
    assert_eq!(after.len(), 100);
    assert!(after.iter().all(|i| i.count == 2), "every update landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_counted_not_silent() {
    let Some(db) = TestDb::postgres("store_outage::a_full_queue_is_counted_not_silent") else {
        return;
    };
    let proxy = Proxy::start(&db.url).await;
    let store = Store::open(&proxy.url).await.unwrap();
    proxy.set_up(false);
    let settings = WriterSettings {
        queue_capacity: 10,
        shutdown_grace: Duration::from_millis(300),
        ..fast_retries()
    };
    let writer = StoreWriter::spawn(store, settings);
    let sender = writer.sender();
    for n in 0..30 {
        sender.send(incident(n, 1)).await.unwrap();
    }
    // A newer version of a queued incident replaces it instead of taking a slot.
    sender.send(incident(0, 2)).await.unwrap();
    drop(sender);
    let report = writer.finish().await;
    assert!(!report.complete());
    assert_eq!(report.received, 31);
    assert_eq!(report.dropped_queue_full, 20, "{report:?}");
    assert_eq!(
        report.unstored, 10,
        "still queued when the grace ran out: {report:?}"
    );
    assert!(report.last_error.is_some());
}
