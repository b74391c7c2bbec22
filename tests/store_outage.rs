//! A database outage delays incidents, never drops them: the store task writes through a TCP
//! proxy to the real PostgreSQL server, and the test cuts and restores the proxy.

mod common;

use std::sync::Arc;
use std::time::Duration;

use gatewatch::detect::{Incident, IncidentEvent, Status};
use gatewatch::event::{EntityKind, Timestamp};
use gatewatch::store::{IncidentQuery, Sequenced, Store, StoreWriter, WriterSettings};
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

    /// Cuts the proxy and waits until `through` (a store connected via it) notices, so no
    /// write already under way slips through.
    async fn cut(&self, through: &Store) {
        self.set_up(false);
        tokio::time::timeout(EVENTUALLY, async {
            while through.ping().await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the cut proxy fails pings");
    }
}

/// A test database, a store connected to it directly, and one connected through a proxy
/// the test can cut. `None` (after saying SKIPPED) without PostgreSQL.
struct Rig {
    /// Bind it (`_db`, not `_`) for as long as the test runs: dropping it drops the database.
    _db: TestDb,
    direct: Store,
    proxy: Proxy,
    through: Store,
}

async fn rig(test: &str) -> Option<Rig> {
    let db = TestDb::postgres(test)?;
    let direct = Store::open(&db.url).await.unwrap();
    let proxy = Proxy::start(&db.url).await;
    let through = Store::open(&proxy.url).await.unwrap();
    Some(Rig {
        _db: db,
        direct,
        proxy,
        through,
    })
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

/// Numbers events as the engine's producer does.
#[derive(Default)]
struct Producer {
    seq: u64,
}

impl Producer {
    fn next(&mut self, event: IncidentEvent) -> Sequenced {
        self.seq += 1;
        Sequenced {
            seq: self.seq,
            event,
        }
    }
}

/// Generous: only a broken writer takes this long.
const EVENTUALLY: Duration = Duration::from_secs(60);

async fn wait_durable(durable: &mut watch::Receiver<u64>, seq: u64) {
    let reached = tokio::time::timeout(EVENTUALLY, async {
        durable.wait_for(|d| *d >= seq).await.map(|_| ())
    })
    .await;
    let Ok(reached) = reached else {
        panic!(
            "durable watermark {} never reached {seq}",
            *durable.borrow()
        );
    };
    reached.expect("the writer is running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_wait_out_a_database_outage_and_are_all_stored() {
    let Some(Rig {
        direct,
        proxy,
        through,
        _db,
    }) = rig("store_outage::incidents_wait_out_a_database_outage_and_are_all_stored").await
    else {
        return;
    };
    let writer = StoreWriter::spawn(through.clone(), fast_retries());
    let mut durable = writer.durable();
    let sender = writer.sender();
    let mut producer = Producer::default();
    for n in 0..50 {
        let event = producer.next(IncidentEvent::Opened(incident(n, 1)));
        sender.send(event).await.unwrap();
    }
    wait_durable(&mut durable, 50).await;
    assert_eq!(stored(&direct).await.len(), 50, "durable means stored");

    proxy.cut(&through).await;
    // Updates to stored incidents and new ones, all while the database is unreachable.
    for n in 0..100 {
        let event = producer.next(IncidentEvent::Escalated(incident(n, 2)));
        sender.send(event).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = stored(&direct).await;
    assert_eq!(during.len(), 50, "nothing got through the cut proxy");
    assert!(during.iter().all(|i| i.count == 1));
    assert_eq!(
        *durable.borrow(),
        50,
        "nothing sent during the outage is durable"
    );

    proxy.set_up(true);
    wait_durable(&mut durable, 150).await;
    drop(sender);
    let report = writer.finish().await;
    assert!(report.complete(), "{report:?}");
    assert!(report.retries > 0, "the outage was noticed: {report:?}");
    assert_eq!(report.received, 150);
    assert_eq!(report.durable, 150);
    let after = stored(&direct).await;
    assert_eq!(after.len(), 100);
    assert!(after.iter().all(|i| i.count == 2), "every update landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_incident_coalesce_during_an_outage() {
    let Some(Rig {
        direct,
        proxy,
        through,
        _db,
    }) = rig("store_outage::events_of_one_incident_coalesce_during_an_outage").await
    else {
        return;
    };
    let writer = StoreWriter::spawn(through.clone(), fast_retries());
    let mut durable = writer.durable();
    let sender = writer.sender();
    proxy.cut(&through).await;
    let mut producer = Producer::default();
    let mut closed = incident(7, 3);
    closed.status = Status::Closed;
    for event in [
        IncidentEvent::Opened(incident(7, 1)),
        IncidentEvent::Escalated(incident(7, 2)),
        IncidentEvent::Closed(closed.clone()),
    ] {
        sender.send(producer.next(event)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*durable.borrow(), 0);

    proxy.set_up(true);
    wait_durable(&mut durable, 3).await;
    drop(sender);
    let report = writer.finish().await;
    assert!(report.complete(), "{report:?}");
    assert!(report.retries > 0, "{report:?}");
    assert_eq!(report.received, 3);
    assert_eq!(report.written, 1, "three events, one upsert: {report:?}");
    assert_eq!(stored(&direct).await.len(), 1);
    let newest = direct.get_incident(&closed.id).await.unwrap().incident;
    assert_eq!(newest, closed, "the newest version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_producers_wait_and_loses_nothing() {
    let Some(Rig {
        direct,
        proxy,
        through: store,
        _db,
    }) = rig("store_outage::a_full_queue_makes_producers_wait_and_loses_nothing").await
    else {
        return;
    };
    proxy.cut(&store).await;
    let settings = WriterSettings {
        queue_capacity: 4,
        channel_capacity: 2,
        batch_size: 2,
        ..fast_retries()
    };
    let writer = StoreWriter::spawn(store, settings);
    let mut durable = writer.durable();
    let sender = writer.sender();
    let mut producer = Producer::default();
    let events: Vec<Sequenced> = (0..50)
        .map(|n| producer.next(IncidentEvent::Opened(incident(n, 1))))
        .collect();
    let mut events = events.into_iter();

    // The queue (4) and the channel (2) fill up; then a send waits instead of failing. A
    // timeout before that only means the writer was slow to take from the channel.
    let mut accepted = 0;
    let fill = async {
        loop {
            let event = events.next().expect("blocks long before 50");
            loop {
                match tokio::time::timeout(Duration::from_millis(300), sender.reserve()).await {
                    Ok(permit) => {
                        permit.expect("the writer is running").send(event);
                        accepted += 1;
                        assert!(accepted <= 6, "took {accepted} events into 4 + 2 slots");
                        break;
                    }
                    Err(_) if accepted == 6 => return event,
                    Err(_) => {}
                }
            }
        }
    };
    let blocked = tokio::time::timeout(EVENTUALLY, fill)
        .await
        .expect("the queue and the channel fill up");
    // Still blocked later: a full queue is not a passing hiccup.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sender.reserve())
            .await
            .is_err(),
        "still waiting"
    );
    assert_eq!(*durable.borrow(), 0, "nothing durable during the outage");

    // The producer goes on (waiting) while the database comes back.
    let producing = tokio::spawn(async move {
        for event in std::iter::once(blocked).chain(events) {
            sender.send(event).await.expect("the writer is running");
        }
    });
    proxy.set_up(true);
    tokio::time::timeout(EVENTUALLY, producing)
        .await
        .expect("the producer got through")
        .unwrap();
    wait_durable(&mut durable, 50).await;
    let report = writer.finish().await;
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.received, 50);
    assert_eq!(report.durable, 50);
    assert!(report.retries > 0, "{report:?}");
    assert_eq!(stored(&direct).await.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_the_database_down_counts_what_is_unstored() {
    let Some(Rig {
        proxy,
        through: store,
        _db,
        ..
    }) = rig("store_outage::shutdown_with_the_database_down_counts_what_is_unstored").await
    else {
        return;
    };
    proxy.cut(&store).await;
    let settings = WriterSettings {
        queue_capacity: 4,
        channel_capacity: 2,
        shutdown_grace: Duration::from_millis(300),
        ..fast_retries()
    };
    let writer = StoreWriter::spawn(store, settings);
    let sender = writer.sender();
    let mut producer = Producer::default();
    // Fills the queue and the channel exactly, so the writer is not receiving when the
    // channel closes.
    for n in 0..6 {
        let event = producer.next(IncidentEvent::Opened(incident(n, 1)));
        sender.send(event).await.unwrap();
    }
    // The writer, full, is not receiving; it must still notice the close and give up after
    // the grace.
    drop(sender);
    let report = tokio::time::timeout(EVENTUALLY, writer.finish())
        .await
        .expect("the shutdown grace ends the writer");
    assert!(!report.complete());
    assert_eq!(report.received, 6, "{report:?}");
    assert_eq!(report.unstored, 6, "{report:?}");
    assert_eq!(report.durable, 0);
    assert!(report.last_error.is_some());
}

/// What the pipeline reported after each batch: (committed offset, processed offset).
type OffsetLog = Arc<std::sync::Mutex<Vec<(u64, u64)>>>;

/// The whole pipeline (the attacks log through the engine into the store) while the database
/// is down: reading stops at the store's pace, the checkpointable offset stays behind what
/// was processed, and once the database is back everything is stored and the offset reaches
/// the end of the input.
#[test]
fn a_replay_through_an_outage_holds_its_offset_back_and_loses_nothing() {
    use gatewatch::pipeline::{self, PipelineSettings, Sink, StoreSink};

    let Some(db) = TestDb::postgres("a_replay_through_an_outage_holds_its_offset_back") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (proxy, through) = runtime.block_on(async {
        let proxy = Proxy::start(&db.url).await;
        let through = Store::open(&proxy.url).await.unwrap();
        (proxy, through)
    });
    let settings = WriterSettings {
        queue_capacity: 2,
        channel_capacity: 1,
        ..fast_retries()
    };
    let mut sink = StoreSink::open(&proxy.url, settings).unwrap();
    runtime.block_on(proxy.cut(&through));

    let log = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/nginx-combined-attacks.log.gz"
    );
    let mut total = 0u64;
    let input = gatewatch::input::open(log).unwrap();
    let mut reader = gatewatch::input::LineReader::new(input.reader, 1 << 16);
    reader
        .for_each_line(|line| total += line.len() as u64 + 1)
        .unwrap();

    let offsets: OffsetLog = Arc::default();
    let seen = offsets.clone();
    let pipeline = std::thread::spawn(move || {
        let settings = PipelineSettings::default();
        let read = pipeline::read_spec(
            pipeline::preset_format("combined"),
            Default::default(),
            64 << 10,
            1 << 16,
        );
        let inputs = vec![gatewatch::input::open(log).unwrap()];
        let streams = pipeline::sources(inputs, &read, &settings);
        let defs = gatewatch::detectors_dir::load(None).unwrap();
        let mut engine = gatewatch::detect::Engine::new(&defs, Default::default());
        let merge = {
            let mut sinks: Vec<&mut dyn Sink> = vec![&mut sink];
            pipeline::run(
                vec![log.to_owned()],
                streams,
                &mut engine,
                &mut sinks,
                &settings,
                &mut |merge| {
                    let report = &merge.reports()[0];
                    seen.lock()
                        .unwrap()
                        .push((report.committed_offset, report.processed_offset));
                },
            )
            .unwrap()
        };
        (merge, sink)
    });

    // With the database down and room for three events, the run cannot end: it waits.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !pipeline.is_finished(),
        "the pipeline went on without its store"
    );
    // The batch that filled the queue may have produced every pending event itself, so its
    // report never came and the last one seen can have nothing pending (committed ==
    // processed); what must hold is that neither reached the end while the store is down.
    let during: Vec<(u64, u64)> = offsets.lock().unwrap().clone();
    let &(committed, processed) = during.last().expect("some batches were processed");
    assert!(
        committed <= processed && processed < total,
        "committed {committed}, processed {processed}, total {total}"
    );
    assert!(
        during.iter().all(|&(c, p)| c <= p),
        "an offset was committed before it was processed: {during:?}"
    );

    proxy.set_up(true);
    let (mut merge, mut sink) = pipeline.join().unwrap();
    let events = merge.events();
    let mut waited = Duration::ZERO;
    while sink.durable() < events {
        assert!(waited < EVENTUALLY, "never durable");
        std::thread::sleep(Duration::from_millis(20));
        waited += Duration::from_millis(20);
    }
    merge.refresh_durable(&mut [&mut sink]);
    assert_eq!(merge.committed_offset(0), total);
    let report = sink.finish();
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.received, events);
    let stored = runtime.block_on(stored(&through));
    let closed = events as usize - stored.len();
    assert!(stored.len() >= 5, "{} stored", stored.len());
    assert!(
        stored.iter().all(|i| i.status == Status::Closed),
        "every incident's last event (closed) is stored; {closed} other events"
    );
}
