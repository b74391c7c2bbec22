//! The analyzer's side. Leases decide which partitions this process runs; each owned
//! partition has a worker thread with an engine of its own, fed by a JetStream consumer.
//!
//! What makes it exact:
//! - Messages are split by agent into one source each, and the sources are merged in event
//!   time by the same `Merge` as files are: lines are late only against their own agent.
//! - A partition's learned state is saved (as rows `pN/DETECTOR`) with, in the same
//!   transaction, two kinds of checkpoint: the stream sequence up to which every message is
//!   processed (`_floor`), and per agent file the offset of the last record applied. A new
//!   owner restores the state, reads from the floor on and drops the records it has applied
//!   already (they may come again: messages above the floor, an agent's re-publish after a
//!   crash under other message boundaries). So every record counts once in the state.
//! - Messages are acknowledged up to the floor only once that save is committed, and the
//!   save waits until the incident events before it are stored.
//! - Incident ids depend on detector, entity and start: two owners of one partition in a
//!   handover write the same incidents, not copies.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy};
use futures_util::StreamExt as _;

use super::lease::Leases;
use super::nats::Cluster;
use super::wire;
use crate::detect::{family, DetectorDef, Engine, EngineSettings, StateRow};
use crate::event::Timestamp;
use crate::pipeline::{
    Batch, BatchStream, ClockSettings, Counts, Flow, IdleClock, Merge, Record, SavedState, Sink,
    SourceEvent, StoreSink, Tap,
};
use crate::store::{Checkpoint, Store, WriterSettings};

/// Checkpoint names of a partition's own rows (agent file ids never start with `_`).
const FLOOR: &str = "_floor";
const ANALYSED: &str = "_analysed";

#[derive(Clone)]
pub struct AnalyzerSettings {
    pub defs: Vec<DetectorDef>,
    pub engine: EngineSettings,
    pub clock: ClockSettings,
    /// An agent with nothing new for this long stops holding the others back.
    pub idle_timeout: Duration,
    pub checkpoint_interval: Duration,
    pub writer: WriterSettings,
}

/// Counters for the analyzer's metrics and tests.
#[derive(Default)]
pub struct AnalyzerStats {
    pub messages: AtomicU64,
    pub redelivered: AtomicU64,
    /// Records dropped as already applied.
    pub duplicates: AtomicU64,
    pub acknowledged: AtomicU64,
    pub owned: AtomicU64,
    /// Messages not yet delivered, per owned partition (from the consumer's info).
    pub lag: Mutex<Vec<(u32, u64)>>,
}

impl AnalyzerStats {
    fn note_lag(&self, partition: u32, pending: u64) {
        let mut lag = self.lag.lock().expect("not poisoned");
        match lag.iter_mut().find(|(p, _)| *p == partition) {
            Some(slot) => slot.1 = pending,
            None => lag.push((partition, pending)),
        }
    }
}

/// Runs until `stop`: renews leases and runs a worker per owned partition.
pub fn run(
    cluster: Arc<Cluster>,
    handle: tokio::runtime::Handle,
    store: Store,
    shown_url: String,
    settings: AnalyzerSettings,
    stop: Arc<AtomicBool>,
    stats: Arc<AnalyzerStats>,
) -> anyhow::Result<()> {
    let kv = handle.block_on(cluster.leases())?;
    let mut leases = Leases::new(kv, cluster.config.name.clone(), cluster.config.partitions);
    let mut workers: HashMap<u32, Worker> = HashMap::new();
    // Told to stop (over our share) or to end without saving (lease lost): reaped once
    // their threads end. Joining them in this loop would hold up the renewal of every
    // other lease, which could then lapse in turn.
    let mut stopping: HashMap<u32, Worker> = HashMap::new();
    let mut abandoned: HashMap<u32, Worker> = HashMap::new();
    let context = Context {
        cluster: cluster.clone(),
        handle: handle.clone(),
        store,
        shown_url,
        settings,
        stats: stats.clone(),
    };
    let round_every = super::nats::LEASE_TTL / 4;
    while !stop.load(Ordering::SeqCst) {
        let started = super::now();
        match handle.block_on(leases.round()) {
            Ok(round) => {
                for p in round.lost {
                    if let Some(worker) = workers.remove(&p) {
                        worker.signal.store(ABANDON, Ordering::SeqCst);
                        abandoned.insert(p, worker);
                    }
                }
                for p in round.surplus {
                    if let Some(worker) = workers.remove(&p) {
                        worker.signal.store(STOP, Ordering::SeqCst);
                        stopping.insert(p, worker);
                    }
                }
                for p in round.gained {
                    // A partition lost and taken back: its old worker must be gone before
                    // a new one reads the partition's consumer and state.
                    if let Some(old) = abandoned.remove(&p) {
                        log_failure(p, old.join());
                    }
                    tracing::info!(partition = p, "partition taken");
                    workers.insert(p, Worker::start(p, context.clone()));
                }
            }
            Err(err) => tracing::warn!(error = %err, "renewing partition leases failed"),
        }
        for p in take_finished(&mut stopping) {
            handle.block_on(leases.release(p));
            tracing::info!(
                partition = p,
                "partition handed back (over this analyzer's share)"
            );
        }
        // A worker that failed gives its partition back to be taken again.
        for p in take_finished(&mut workers) {
            handle.block_on(leases.release(p));
        }
        // Their leases are someone else's now: nothing to hand back.
        take_finished(&mut abandoned);
        stats.owned.store(workers.len() as u64, Ordering::Relaxed);
        let left = round_every.saturating_sub(started.elapsed());
        let until = super::now() + left;
        while super::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Every worker is told first, then waited for: each one's last save and store flush
    // run side by side instead of one after another.
    for worker in workers.values() {
        worker.signal.store(STOP, Ordering::SeqCst);
    }
    let ending = workers
        .drain()
        .chain(stopping.drain())
        .chain(abandoned.drain());
    for (p, worker) in ending {
        log_failure(p, worker.join());
    }
    handle.block_on(leases.leave());
    Ok(())
}

/// Joins the workers of `map` whose threads have ended; their partitions.
fn take_finished(map: &mut HashMap<u32, Worker>) -> Vec<u32> {
    let finished: Vec<u32> = (map.iter())
        .filter(|(_, w)| w.thread.is_finished())
        .map(|(&p, _)| p)
        .collect();
    for &p in &finished {
        if let Some(worker) = map.remove(&p) {
            log_failure(p, worker.join());
        }
    }
    finished
}

fn log_failure(partition: u32, result: anyhow::Result<()>) {
    if let Err(err) = result {
        tracing::error!(partition, error = %format!("{err:#}"), "partition worker failed");
    }
}

/// How a worker is told to end.
const RUN: u8 = 0;
/// Finish, save, acknowledge.
const STOP: u8 = 1;
/// Someone else owns the partition: end without saving (our state would be older).
const ABANDON: u8 = 2;

/// What every partition worker of an analyzer shares.
#[derive(Clone)]
struct Context {
    cluster: Arc<Cluster>,
    handle: tokio::runtime::Handle,
    store: Store,
    shown_url: String,
    settings: AnalyzerSettings,
    stats: Arc<AnalyzerStats>,
}

struct Worker {
    signal: Arc<std::sync::atomic::AtomicU8>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    fn start(partition: u32, context: Context) -> Worker {
        let signal = Arc::new(std::sync::atomic::AtomicU8::new(RUN));
        let thread = {
            let signal = signal.clone();
            std::thread::Builder::new()
                .name(format!("partition-{partition}"))
                .spawn(move || run_partition(partition, context, signal))
                .expect("spawning a partition worker")
        };
        Worker { signal, thread }
    }

    fn join(self) -> anyhow::Result<()> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("partition worker panicked"))?
    }
}

/// A message handed from the consumer to its agent's source.
struct Incoming {
    seq: u64,
    payload: bytes::Bytes,
}

/// Messages received and not yet processed, per agent, and where to acknowledge them.
#[derive(Default)]
struct Pending {
    per_agent: HashMap<Arc<str>, VecDeque<u64>>,
    /// (sequence, reply subject) of messages not yet acknowledged, oldest first.
    replies: VecDeque<(u64, String)>,
    max_received: u64,
}

impl Pending {
    /// Every message up to the result is processed: the oldest one still pending, less one.
    fn floor(&self) -> u64 {
        self.per_agent
            .values()
            .filter_map(|q| q.front())
            .map(|seq| seq - 1)
            .min()
            .unwrap_or(self.max_received)
    }
}

/// What the partition's consumer thread shares with its worker.
struct Shared {
    pending: Mutex<Pending>,
    /// Agents heard from, in order, with their message channels (taken by the worker).
    new_agents: Mutex<Vec<(Arc<str>, Receiver<Incoming>)>>,
    /// The earliest first-line time any agent reported.
    first: AtomicI64,
    stop: AtomicBool,
}

fn run_partition(
    partition: u32,
    context: Context,
    signal: Arc<std::sync::atomic::AtomicU8>,
) -> anyhow::Result<()> {
    let Context {
        cluster,
        handle,
        store,
        shown_url,
        settings,
        stats,
    } = context;
    let name = format!("p{partition}");
    let prefix = format!("{name}/");
    // What was saved for this partition: state, floor, offsets applied per agent file.
    let (rows, checkpoints) = handle.block_on(async {
        let rows = store.load_state().await?;
        let checkpoints = store.load_checkpoints().await?;
        anyhow::Ok((rows, checkpoints))
    })?;
    let rows: Vec<StateRow> = rows
        .into_iter()
        .filter_map(|mut row| {
            row.detector = row.detector.strip_prefix(&prefix)?.to_owned();
            Some(row)
        })
        .collect();
    let mut floor = 0;
    let mut analysed = [0u64; 4];
    let mut applied: HashMap<String, u64> = HashMap::new();
    for c in checkpoints.into_iter().filter(|c| c.source == name) {
        match c.fingerprint.as_str() {
            FLOOR => floor = c.offset,
            other if other.starts_with(ANALYSED) => {
                if let Some(i) = FAMILY_NAMES.iter().position(|f| other.ends_with(f)) {
                    analysed[i] = c.offset;
                }
            }
            _ => {
                applied.insert(c.fingerprint, c.offset);
            }
        }
    }
    let mut engine = Engine::new(
        &settings.defs,
        EngineSettings {
            tokens_fingerprinted: true,
            key_share: cluster.config.partitions,
            ..settings.engine.clone()
        },
    );
    let mut saved_state = SavedState::of(
        &rows
            .iter()
            .map(|r| StateRow {
                detector: format!("{prefix}{}", r.detector),
                ..r.clone()
            })
            .collect::<Vec<_>>(),
    );
    if !rows.is_empty() {
        let report = engine.restore(rows);
        tracing::info!(
            partition,
            restored = report.restored,
            skipped = report.skipped,
            floor,
            "partition state restored"
        );
    }
    let shared = Arc::new(Shared {
        pending: Mutex::default(),
        new_agents: Mutex::default(),
        first: AtomicI64::new(i64::MAX),
        stop: AtomicBool::new(false),
    });
    let consumer = handle.block_on(open_consumer(&cluster, partition, floor))?;
    let pull = {
        let shared = shared.clone();
        let handle = handle.clone();
        let stats = stats.clone();
        std::thread::Builder::new()
            .name(format!("partition-{partition}-pull"))
            .spawn(move || pull_messages(partition, consumer, handle, shared, stats))?
    };
    let applied = Arc::new(Mutex::new(applied));
    // The agents' first messages arrive one after another: once one is heard, wait one
    // idle timeout for the others, so that the merge starts with all of them instead of
    // running ahead on the first.
    while shared.new_agents.lock().expect("not poisoned").is_empty()
        && signal.load(Ordering::SeqCst) == RUN
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let gather = super::now();
    while gather.elapsed() < settings.idle_timeout && signal.load(Ordering::SeqCst) == RUN {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut agents: Vec<Arc<str>> = Vec::new();
    let mut names = Vec::new();
    let mut streams: Vec<Box<dyn BatchStream>> = Vec::new();
    for (agent, rx) in shared.new_agents.lock().expect("not poisoned").drain(..) {
        names.push(agent.to_string());
        streams.push(Box::new(AgentSource::new(
            agent.clone(),
            rx,
            applied.clone(),
            shared.clone(),
            stats.clone(),
        )));
        agents.push(agent);
    }
    let mut merge = Merge::new(names, streams, settings.clock);
    merge.set_tap(Box::new(Recorder {
        applied: applied.clone(),
        analysed,
    }));
    let mut sink = StoreSink::attached(
        store.clone(),
        handle.clone(),
        &shown_url,
        settings.writer.clone(),
    );
    let probe = sink.probe();
    let mut idle = IdleClock::default();
    let populations = handle.block_on(cluster.leases())?;
    let mut last_share = super::now();
    let mut last_save = super::now();
    let mut save =
        |merge: &mut Merge, engine: &Engine, agents: &[Arc<str>]| -> anyhow::Result<()> {
            // Processed messages leave the pending lists; the floor follows.
            let floor = {
                let mut pending = shared.pending.lock().expect("not poisoned");
                for (i, agent) in agents.iter().enumerate() {
                    let done = merge.processed_offset(i);
                    if let Some(queue) = pending.per_agent.get_mut(agent) {
                        while queue.front().is_some_and(|&seq| seq <= done) {
                            queue.pop_front();
                        }
                    }
                }
                pending.floor()
            };
            let analysed = merge
                .tap()
                .and_then(|tap| tap.as_any().downcast_mut::<Recorder>())
                .map_or([0; 4], |r| r.analysed);
            let rows: Vec<StateRow> = engine
                .snapshot()
                .into_iter()
                .map(|row| StateRow {
                    detector: format!("{prefix}{}", row.detector),
                    ..row
                })
                .collect();
            let changes = saved_state.changes(rows);
            let mut checkpoints = vec![checkpoint(&name, FLOOR, floor)];
            for (i, family) in FAMILY_NAMES.iter().enumerate() {
                checkpoints.push(checkpoint(
                    &name,
                    &format!("{ANALYSED}_{family}"),
                    analysed[i],
                ));
            }
            for (file, &offset) in applied.lock().expect("not poisoned").iter() {
                checkpoints.push(checkpoint(&name, file, offset));
            }
            let events = merge.events();
            handle.block_on(async {
                // Bounded: a store that is down delays the save (retried next round),
                // never the partition's hand-over.
                tokio::time::timeout(Duration::from_secs(10), probe.stored(events))
                    .await
                    .map_err(|_| anyhow::anyhow!("incident events not yet stored"))?;
                store
                    .save_state_changes(&changes.changed, &changes.gone, &checkpoints)
                    .await?;
                anyhow::Ok(())
            })?;
            saved_state.apply(&changes);
            // Committed: what the floor covers may be acknowledged (all up to it at once).
            let reply = {
                let mut pending = shared.pending.lock().expect("not poisoned");
                let mut last = None;
                while pending
                    .replies
                    .front()
                    .is_some_and(|(seq, _)| *seq <= floor)
                {
                    last = pending.replies.pop_front();
                }
                last
            };
            if let Some((_, reply)) = reply {
                let client = cluster.client.clone();
                handle.block_on(async move {
                    let _ = client
                        .publish(reply, bytes::Bytes::from_static(b"+ACK"))
                        .await;
                    let _ = client.flush().await;
                });
                stats.acknowledged.store(floor, Ordering::Relaxed);
            }
            Ok(())
        };
    let result = {
        let mut sinks: Vec<&mut dyn Sink> = vec![&mut sink];
        let mut hook = |merge: &mut Merge, engine: &mut Engine| {
            for (agent, rx) in shared.new_agents.lock().expect("not poisoned").drain(..) {
                let index = merge.add(
                    agent.to_string(),
                    Box::new(AgentSource::new(
                        agent.clone(),
                        rx,
                        applied.clone(),
                        shared.clone(),
                        stats.clone(),
                    )),
                );
                debug_assert_eq!(index, agents.len());
                agents.push(agent);
            }
            let first = shared.first.load(Ordering::SeqCst);
            if first != i64::MAX {
                engine.note_first(Timestamp(first));
            }
            idle.tick(engine, super::now());
            if last_share.elapsed() >= POPULATION_EVERY {
                last_share = super::now();
                share_populations(&handle, &populations, partition, engine);
            }
            let signalled = signal.load(Ordering::SeqCst);
            if signalled == ABANDON {
                shared.stop.store(true, Ordering::SeqCst);
                return Flow::Stop;
            }
            // Any moment is consistent: the applied offsets are per record, exactly what the
            // engine has seen.
            if last_save.elapsed() >= settings.checkpoint_interval {
                last_save = super::now();
                if let Err(err) = save(merge, engine, &agents) {
                    tracing::warn!(partition, error = %format!("{err:#}"), "saving partition state failed; will retry");
                }
            }
            if signalled == STOP {
                shared.stop.store(true, Ordering::SeqCst);
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        merge.run_live(&mut engine, &mut sinks, settings.idle_timeout, &mut hook)
    };
    shared.stop.store(true, Ordering::SeqCst);
    let abandoned = signal.load(Ordering::SeqCst) == ABANDON;
    if result.is_ok() && !abandoned {
        sink.wait_stored(Duration::from_secs(5));
        {
            let mut sinks: Vec<&mut dyn Sink> = vec![&mut sink];
            merge.refresh_durable(&mut sinks);
        }
        if let Err(err) = save(&mut merge, &engine, &agents) {
            tracing::warn!(partition, error = %format!("{err:#}"), "the last save of a partition failed; its new owner re-reads from the previous one");
        }
    }
    let _ = pull.join();
    let report = sink.finish();
    if !report.complete() {
        tracing::error!(
            partition,
            unstored = report.unstored,
            "partition stopped with incident events not stored"
        );
    }
    result
}

const FAMILY_NAMES: [&str; 4] = ["address", "token", "route", "global"];

/// How often a partition publishes its detectors' populations and reads the others'.
const POPULATION_EVERY: Duration = Duration::from_secs(1);

/// Publishes this partition's populations (`Engine::populations`) to the leases bucket,
/// where they lapse with the lease TTL unless renewed, and hands the engine the other
/// partitions' latest: a population reference is then taken over every partition's keys,
/// as standalone, not over this partition's share alone.
fn share_populations(
    handle: &tokio::runtime::Handle,
    kv: &async_nats::jetstream::kv::Store,
    partition: u32,
    engine: &mut Engine,
) {
    let own = engine.populations();
    if own.is_empty() {
        return;
    }
    let others = handle.block_on(async {
        for (id, json) in &own {
            let _ = kv
                .put(format!("pop.{id}.p{partition}"), json.clone().into())
                .await;
        }
        let mut others: HashMap<String, Vec<String>> = HashMap::new();
        let Ok(mut keys) = kv.keys().await else {
            return others;
        };
        let own_suffix = format!(".p{partition}");
        let mut wanted = Vec::new();
        while let Some(Ok(key)) = keys.next().await {
            if let Some(rest) = key.strip_prefix("pop.") {
                if !key.ends_with(&own_suffix) {
                    if let Some((id, _)) = rest.rsplit_once(".p") {
                        wanted.push((id.to_owned(), key.clone()));
                    }
                }
            }
        }
        for (id, key) in wanted {
            if let Ok(Some(value)) = kv.get(&key).await {
                others
                    .entry(id)
                    .or_default()
                    .push(String::from_utf8_lossy(&value).into_owned());
            }
        }
        others
    });
    for (id, _) in &own {
        engine.set_populations(id, others.get(id).map_or(&[][..], Vec::as_slice));
    }
}

fn checkpoint(partition: &str, name: &str, offset: u64) -> Checkpoint {
    Checkpoint {
        source: partition.to_owned(),
        fingerprint: name.to_owned(),
        path: String::new(),
        offset,
    }
}

/// The partition's durable consumer, (re)created to start right after the saved floor:
/// what an earlier owner left unacknowledged comes again at once, not after its ack wait.
async fn open_consumer(
    cluster: &Cluster,
    partition: u32,
    floor: u64,
) -> anyhow::Result<consumer::Consumer<pull::Config>> {
    let stream = cluster.events_stream().await?;
    let durable = format!("p{partition}");
    let _ = stream.delete_consumer(&durable).await;
    let deliver_policy = if floor == 0 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: floor + 1,
        }
    };
    stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: cluster.subject(partition),
            deliver_policy,
            ack_policy: AckPolicy::All,
            // Acknowledged only after a save: allow for saves far apart.
            ack_wait: Duration::from_secs(300),
            max_ack_pending: 1_000_000,
            ..Default::default()
        })
        .await
        .with_context(|| format!("JetStream consumer {durable}"))
}

/// The consumer's thread: hands each message to its agent's channel (waiting while it is
/// full: a slow engine slows the pull, never drops).
fn pull_messages(
    partition: u32,
    consumer: consumer::Consumer<pull::Config>,
    handle: tokio::runtime::Handle,
    shared: Arc<Shared>,
    stats: Arc<AnalyzerStats>,
) {
    let mut channels: HashMap<Arc<str>, SyncSender<Incoming>> = HashMap::new();
    handle.block_on(async {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(err) => {
                tracing::error!(error = %err, "JetStream consumer failed");
                return;
            }
        };
        while !shared.stop.load(Ordering::SeqCst) {
            let next = tokio::time::timeout(Duration::from_millis(200), messages.next()).await;
            let message = match next {
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(Err(err))) => {
                    tracing::warn!(error = %err, "JetStream consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Ok(Some(Ok(message))) => message,
            };
            let Ok(info) = message.info() else { continue };
            let seq = info.stream_sequence;
            stats.note_lag(partition, info.pending);
            if info.delivered > 1 {
                stats.redelivered.fetch_add(1, Ordering::Relaxed);
            }
            stats.messages.fetch_add(1, Ordering::Relaxed);
            let reply = message.reply.as_ref().map(|r| r.to_string());
            let agent: Arc<str> = match wire::read_header(&message.payload) {
                Ok((header, _)) => {
                    if let Some(first) = header.first {
                        shared.first.fetch_min(first, Ordering::SeqCst);
                    }
                    Arc::from(header.agent)
                }
                Err(err) => {
                    tracing::warn!(seq, error = %err, "a message that is not an event batch, skipped");
                    Arc::from("_unreadable")
                }
            };
            let sender = channels.entry(agent.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::sync_channel(256);
                shared
                    .new_agents
                    .lock()
                    .expect("not poisoned")
                    .push((agent.clone(), rx));
                tx
            });
            {
                let mut pending = shared.pending.lock().expect("not poisoned");
                pending.per_agent.entry(agent.clone()).or_default().push_back(seq);
                if let Some(reply) = reply {
                    pending.replies.push_back((seq, reply));
                }
                pending.max_received = pending.max_received.max(seq);
            }
            let mut incoming = Incoming {
                seq,
                payload: message.payload.clone(),
            };
            // Blocking send, but stop-aware: the worker may be gone.
            loop {
                match sender.try_send(incoming) {
                    Ok(()) => break,
                    Err(mpsc::TrySendError::Full(back)) => {
                        if shared.stop.load(Ordering::SeqCst) {
                            return;
                        }
                        incoming = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => return,
                }
            }
        }
    });
}

/// One agent's messages as a source of the partition's merge.
struct AgentSource {
    agent: Arc<str>,
    rx: Receiver<Incoming>,
    /// Highest offset applied per agent file (shared with the recorder that raises it).
    applied: Arc<Mutex<HashMap<String, u64>>>,
    /// Highest offset handed on per file by this source (records not yet merged count).
    handed: HashMap<String, u64>,
    shared: Arc<Shared>,
    stats: Arc<AnalyzerStats>,
    announced: bool,
}

impl AgentSource {
    fn new(
        agent: Arc<str>,
        rx: Receiver<Incoming>,
        applied: Arc<Mutex<HashMap<String, u64>>>,
        shared: Arc<Shared>,
        stats: Arc<AnalyzerStats>,
    ) -> AgentSource {
        AgentSource {
            agent,
            rx,
            applied,
            handed: HashMap::new(),
            shared,
            stats,
            announced: false,
        }
    }

    fn batch(&mut self, incoming: Incoming) -> Batch {
        let counts = Counts {
            end_offset: incoming.seq,
            bytes: incoming.payload.len() as u64,
            ..Counts::default()
        };
        let applied = self.applied.lock().expect("not poisoned").clone();
        let handed = &mut self.handed;
        let mut duplicates = 0u64;
        let mut unreadable = 0u64;
        let mut batch = Batch::from_bytes(
            incoming.payload.to_vec(),
            self.agent.clone(),
            counts,
            |data, _agent| {
                let mut records = Vec::new();
                let Ok((header, rest)) = wire::read_header(data) else {
                    unreadable += 1;
                    return records;
                };
                for event in wire::events(rest) {
                    let Ok(event) = event else {
                        unreadable += 1;
                        break;
                    };
                    let Some(&file) = header.sources.get(event.source as usize) else {
                        unreadable += 1;
                        continue;
                    };
                    let seen = handed.get(file).or_else(|| applied.get(file)).copied();
                    if seen.is_some_and(|seen| event.offset <= seen) {
                        duplicates += 1;
                        continue;
                    }
                    handed.insert(file.to_owned(), event.offset);
                    records.push(Record {
                        request: event.request(file),
                        line: event.line,
                        path_bits: None,
                        offset: event.offset,
                        families: event.families,
                    });
                }
                records
            },
        );
        self.stats
            .duplicates
            .fetch_add(duplicates, Ordering::Relaxed);
        batch.counts.lines = batch.records().len() as u64 + duplicates + unreadable;
        batch.counts.unparsed = unreadable;
        batch
    }
}

impl BatchStream for AgentSource {
    fn next(&mut self) -> SourceEvent {
        loop {
            if let Some(event) = self.next_within(Duration::from_millis(200)) {
                return event;
            }
        }
    }

    fn next_within(&mut self, timeout: Duration) -> Option<SourceEvent> {
        if !self.announced {
            self.announced = true;
            return Some(SourceEvent::Format(format!("cluster agent {}", self.agent)));
        }
        if self.shared.stop.load(Ordering::SeqCst) {
            return Some(SourceEvent::End);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(incoming) => Some(SourceEvent::Batch(self.batch(incoming))),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(SourceEvent::End),
        }
    }

    fn recycle(&mut self, _batch: Batch) {}
}

/// The partition merge's tap: notes each record applied (per agent file) and counts it per
/// family, for the checkpoint saved with the state.
struct Recorder {
    applied: Arc<Mutex<HashMap<String, u64>>>,
    analysed: [u64; 4],
}

impl Tap for Recorder {
    fn record(&mut self, _source: usize, record: &Record<'_>) {
        let (offset, families) = (record.offset, record.families);
        if let Some(file) = record.request.source {
            let mut applied = self.applied.lock().expect("not poisoned");
            match applied.get_mut(file) {
                Some(at) => *at = (*at).max(offset),
                None => {
                    applied.insert(file.to_owned(), offset);
                }
            }
        }
        for (i, bit) in [
            family::ADDRESS,
            family::TOKEN,
            family::ROUTE,
            family::GLOBAL,
        ]
        .into_iter()
        .enumerate()
        {
            if families & bit != 0 {
                self.analysed[i] += 1;
            }
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
