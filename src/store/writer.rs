//! The store task: numbered incident events arrive on a bounded channel, are coalesced by
//! incident id and upserted in batches. While the database is unreachable they wait in a
//! bounded queue and are retried with backoff; when that queue is full the task stops taking
//! from the channel, so producers wait instead of events being lost. After every commit the
//! task publishes a durable watermark: the sequence number up to which everything is stored.

use std::collections::{hash_map, BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::{NewAlert, Router, Store, StoreError};
use crate::detect::{Incident, IncidentEvent};

/// One engine event, numbered by its producer. Sequence numbers start at 1 and strictly
/// increase in the order events are sent (one producer, or several sharing a counter and
/// sending in its order), so "everything up to `seq`" is a meaningful position to resume from.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequenced {
    pub seq: u64,
    pub event: IncidentEvent,
}

/// The kind of an [`IncidentEvent`], without the incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Opened,
    Escalated,
    Closed,
}

impl EventKind {
    /// In lifecycle order.
    pub const ALL: [EventKind; 3] = [EventKind::Opened, EventKind::Escalated, EventKind::Closed];

    pub fn of(event: &IncidentEvent) -> EventKind {
        match event {
            IncidentEvent::Opened(_) => EventKind::Opened,
            IncidentEvent::Escalated(_) => EventKind::Escalated,
            IncidentEvent::Closed(_) => EventKind::Closed,
        }
    }

    /// The name used in the database (`alert_outbox.event`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::Escalated => "escalated",
            EventKind::Closed => "closed",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of event kinds: what happened to a queued incident since it was queued. Coalescing
/// versions of an incident keeps the newest version but must keep every kind, because each
/// kind may need its own alert.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EventKinds(u8);

impl EventKinds {
    pub const EMPTY: EventKinds = EventKinds(0);

    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn insert(&mut self, kind: EventKind) {
        self.0 |= kind.bit();
    }

    pub fn union(self, other: EventKinds) -> EventKinds {
        EventKinds(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The kinds present, in lifecycle order.
    pub fn iter(self) -> impl Iterator<Item = EventKind> {
        EventKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl From<EventKind> for EventKinds {
    fn from(kind: EventKind) -> EventKinds {
        EventKinds(kind.bit())
    }
}

impl FromIterator<EventKind> for EventKinds {
    fn from_iter<I: IntoIterator<Item = EventKind>>(kinds: I) -> EventKinds {
        let mut set = EventKinds::EMPTY;
        kinds.into_iter().for_each(|k| set.insert(k));
        set
    }
}

impl fmt::Debug for EventKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[derive(Clone, Debug)]
pub struct WriterSettings {
    /// Events in flight between the engine and the store task.
    pub channel_capacity: usize,
    /// Distinct incidents held while the database is down; when reached, producers wait.
    pub queue_capacity: usize,
    /// Incidents per transaction.
    pub batch_size: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// After the channel closes, how long to keep retrying what is still queued.
    pub shutdown_grace: Duration,
    /// Where incident events are alerted: their outbox rows go in with them.
    pub alerts: Option<Router>,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            channel_capacity: 1024,
            queue_capacity: 100_000,
            batch_size: 256,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            alerts: None,
        }
    }
}

/// What the store task did, reported when it ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterReport {
    /// Events received from the engine.
    pub received: u64,
    /// Upserts committed (coalesced events of one incident count once).
    pub written: u64,
    /// Failed batch attempts that were retried.
    pub retries: u64,
    /// Incidents the database refused for good (not an outage), logged one by one.
    pub rejected: u64,
    /// Incidents still queued when the shutdown grace ran out.
    pub unstored: u64,
    /// The final durable watermark: every event with a sequence number up to this was
    /// stored (or rejected for good, see `rejected`).
    pub durable: u64,
    pub last_error: Option<String>,
}

impl WriterReport {
    /// True when every event received is in the database.
    pub fn complete(&self) -> bool {
        self.rejected == 0 && self.unstored == 0
    }
}

pub struct StoreWriter {
    sender: mpsc::Sender<Sequenced>,
    durable: watch::Receiver<u64>,
    task: JoinHandle<WriterReport>,
    errors: Arc<AtomicU64>,
}

impl StoreWriter {
    /// Starts the store task on the current tokio runtime.
    pub fn spawn(store: Store, settings: WriterSettings) -> StoreWriter {
        let (sender, receiver) = mpsc::channel(settings.channel_capacity.max(1));
        let (durable_tx, durable) = watch::channel(0);
        let errors = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(
            Task {
                store,
                settings,
                receiver,
                pending: Pending::default(),
                durable: durable_tx,
                report: WriterReport::default(),
                errors: errors.clone(),
            }
            .run(),
        );
        StoreWriter {
            sender,
            durable,
            task,
            errors,
        }
    }

    /// A handle for producers; sending waits while the channel is full, which lasts as long
    /// as the database is unreachable and the queue is full.
    pub fn sender(&self) -> mpsc::Sender<Sequenced> {
        self.sender.clone()
    }

    /// The durable watermark, republished after every commit: every event received with
    /// `seq <= *durable.borrow()` is stored (or was rejected for good). Starts at 0.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    /// Failed write attempts so far (each retried or, for bad data, rejected), live.
    pub fn errors(&self) -> Arc<AtomicU64> {
        self.errors.clone()
    }

    /// Closes this handle's side of the channel and waits for the task to flush. The task
    /// ends once every other sender is dropped too.
    pub async fn finish(self) -> WriterReport {
        drop(self.sender);
        let durable = *self.durable.borrow();
        self.task.await.unwrap_or_else(|err| WriterReport {
            durable,
            last_error: Some(format!("store task failed: {err}")),
            ..WriterReport::default()
        })
    }
}

/// What is known about an incident's unstored events, all coalesced into one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    kinds: EventKinds,
    /// The oldest unstored event's sequence number: the watermark cannot pass it.
    first_seq: u64,
    /// The newest event's: its incident is the version to store.
    last_seq: u64,
}

impl Meta {
    fn of(sequenced: &Sequenced) -> Meta {
        Meta {
            kinds: EventKind::of(&sequenced.event).into(),
            first_seq: sequenced.seq,
            last_seq: sequenced.seq,
        }
    }
}

/// Folds another entry of the same incident into `slot`: the newest version, every kind,
/// the oldest seq.
fn merge_into(slot: &mut (Incident, Meta), incident: Incident, meta: Meta) {
    if meta.last_seq >= slot.1.last_seq {
        slot.0 = incident;
    }
    slot.1 = Meta {
        kinds: slot.1.kinds.union(meta.kinds),
        first_seq: slot.1.first_seq.min(meta.first_seq),
        last_seq: slot.1.last_seq.max(meta.last_seq),
    };
}

/// Entries taken for one transaction; parallel vectors so the incidents go to the store
/// without copying.
#[derive(Debug, Default)]
struct Batch {
    incidents: Vec<Incident>,
    meta: Vec<Meta>,
}

impl Batch {
    fn len(&self) -> usize {
        self.incidents.len()
    }
}

/// Unstored events: queued entries by incident id, plus the entries of the batch being
/// written. Keyed by `first_seq` too, so the oldest are written first (the watermark moves
/// steadily) and the watermark is the smallest key, not a scan.
#[derive(Default)]
struct Pending {
    queued: HashMap<String, (Incident, Meta)>,
    /// `first_seq` → id of every queued entry.
    order: BTreeMap<u64, String>,
    /// `first_seq` of every entry taken and neither stored nor rejected yet.
    in_flight: BTreeSet<u64>,
    last_received: u64,
}

impl Pending {
    fn queued(&self) -> usize {
        self.queued.len()
    }

    fn receive(&mut self, sequenced: Sequenced) {
        debug_assert!(
            sequenced.seq > self.last_received,
            "sequence numbers must increase: {} after {}",
            sequenced.seq,
            self.last_received
        );
        self.last_received = self.last_received.max(sequenced.seq);
        let meta = Meta::of(&sequenced);
        let incident = match sequenced.event {
            IncidentEvent::Opened(i) | IncidentEvent::Escalated(i) | IncidentEvent::Closed(i) => i,
        };
        self.enqueue(incident, meta);
    }

    /// Queues an entry, merging it with a queued one of the same incident.
    fn enqueue(&mut self, incident: Incident, meta: Meta) {
        match self.queued.entry(incident.id.clone()) {
            hash_map::Entry::Occupied(mut queued) => {
                let was_first = queued.get().1.first_seq;
                merge_into(queued.get_mut(), incident, meta);
                // Only a restored (older) entry moves the queued one's place in line.
                let first_seq = queued.get().1.first_seq;
                if first_seq != was_first {
                    self.order.remove(&was_first);
                    self.order.insert(first_seq, queued.key().clone());
                }
            }
            hash_map::Entry::Vacant(slot) => {
                self.order.insert(meta.first_seq, slot.key().clone());
                slot.insert((incident, meta));
            }
        }
    }

    /// Up to `n` queued entries, oldest first; they count as pending until settled or put back.
    fn take(&mut self, n: usize) -> Batch {
        let mut batch = Batch::default();
        while batch.len() < n {
            let Some((first_seq, id)) = self.order.pop_first() else {
                break;
            };
            let (incident, meta) = self.queued.remove(&id).expect("ordered entries are queued");
            self.in_flight.insert(first_seq);
            batch.incidents.push(incident);
            batch.meta.push(meta);
        }
        batch
    }

    /// A taken entry is stored, or rejected for good: it no longer holds the watermark back.
    fn settle(&mut self, meta: &Meta) {
        self.in_flight.remove(&meta.first_seq);
    }

    /// Puts a taken entry back after a failed write, merged with any newer one queued meanwhile.
    fn restore(&mut self, incident: Incident, meta: Meta) {
        self.in_flight.remove(&meta.first_seq);
        self.enqueue(incident, meta);
    }

    /// The largest `d` such that every event received with `seq <= d` is settled.
    fn durable(&self) -> u64 {
        let oldest = [
            self.order.first_key_value().map(|(s, _)| *s),
            self.in_flight.first().copied(),
        ]
        .into_iter()
        .flatten()
        .min();
        match oldest {
            Some(seq) => seq.saturating_sub(1),
            None => self.last_received,
        }
    }
}

struct Task {
    store: Store,
    settings: WriterSettings,
    receiver: mpsc::Receiver<Sequenced>,
    pending: Pending,
    durable: watch::Sender<u64>,
    report: WriterReport,
    errors: Arc<AtomicU64>,
}

impl Task {
    async fn run(mut self) -> WriterReport {
        let mut backoff = self.settings.retry_min;
        let mut deadline: Option<Instant> = None;
        loop {
            if self.pending.queued() == 0 {
                match self.receiver.recv().await {
                    Some(sequenced) => self.accept(sequenced),
                    None => break, // closed and drained, nothing queued: all stored
                }
            }
            self.receive_ready();
            let batch = self.pending.take(self.settings.batch_size.max(1));
            let alerts = self.alerts_for(&batch.incidents, &batch.meta);
            match self.store.write_incidents(&batch.incidents, &alerts).await {
                Ok(()) => {
                    self.report.written += batch.len() as u64;
                    batch.meta.iter().for_each(|m| self.pending.settle(m));
                    self.publish_durable();
                    backoff = self.settings.retry_min;
                }
                Err(err) if err.is_transient() => {
                    self.report.retries += 1;
                    self.note_error(&err, batch.len());
                    self.restore(batch);
                    let wake = Instant::now() + backoff;
                    backoff = (backoff * 2).min(self.settings.retry_max);
                    // A full queue stops us receiving, so closure is checked here rather
                    // than waiting for `recv` to return None.
                    if self.receiver.is_closed() {
                        let deadline = *deadline
                            .get_or_insert_with(|| Instant::now() + self.settings.shutdown_grace);
                        if Instant::now() >= deadline {
                            break;
                        }
                        sleep_until(wake.min(deadline)).await;
                        continue;
                    }
                    self.wait_accepting(wake).await;
                }
                Err(_) => self.write_one_by_one(batch).await,
            }
        }
        // Whatever the producers sent and we never took is unstored too.
        while let Ok(sequenced) = self.receiver.try_recv() {
            self.accept(sequenced);
        }
        self.report.unstored = self.pending.queued() as u64;
        self.report.durable = self.pending.durable();
        if self.report.unstored > 0 {
            tracing::error!(
                unstored = self.report.unstored,
                durable = self.report.durable,
                "database still unreachable at shutdown; incidents not stored"
            );
        }
        self.report
    }

    /// The outbox rows for every kind of event each incident went through while queued
    /// (coalesced versions share the newest incident's content).
    fn alerts_for(&self, incidents: &[Incident], meta: &[Meta]) -> Vec<NewAlert> {
        let Some(router) = &self.settings.alerts else {
            return Vec::new();
        };
        incidents
            .iter()
            .zip(meta)
            .flat_map(|(incident, meta)| {
                meta.kinds
                    .iter()
                    .flat_map(|kind| router.0.route(incident, kind))
            })
            .collect()
    }

    fn has_room(&self) -> bool {
        self.pending.queued() < self.settings.queue_capacity.max(1)
    }

    fn accept(&mut self, sequenced: Sequenced) {
        self.report.received += 1;
        self.pending.receive(sequenced);
    }

    /// Takes what is already on the channel, as long as the queue has room.
    fn receive_ready(&mut self) {
        while self.has_room() {
            match self.receiver.try_recv() {
                Ok(sequenced) => self.accept(sequenced),
                Err(_) => break,
            }
        }
    }

    /// Sleeps until `wake`, taking events off the channel while the queue has room; once it
    /// is full, producers wait on the channel instead.
    async fn wait_accepting(&mut self, wake: Instant) {
        loop {
            let room = self.has_room();
            tokio::select! {
                _ = sleep_until(wake) => return,
                received = self.receiver.recv(), if room => match received {
                    Some(sequenced) => self.accept(sequenced),
                    None => {
                        // Closed: back off anyway; the caller then starts the shutdown grace.
                        sleep_until(wake).await;
                        return;
                    }
                },
            }
        }
    }

    fn restore(&mut self, batch: Batch) {
        for (incident, meta) in batch.incidents.into_iter().zip(batch.meta) {
            self.pending.restore(incident, meta);
        }
    }

    /// A batch failed on bad data, not an outage: store what can be stored, log the rest.
    async fn write_one_by_one(&mut self, batch: Batch) {
        for (incident, meta) in batch.incidents.into_iter().zip(batch.meta) {
            let alerts = self.alerts_for(std::slice::from_ref(&incident), &[meta]);
            match self
                .store
                .write_incidents(std::slice::from_ref(&incident), &alerts)
                .await
            {
                Ok(()) => {
                    self.report.written += 1;
                    self.pending.settle(&meta);
                }
                Err(err) if err.is_transient() => {
                    self.note_error(&err, 1);
                    self.pending.restore(incident, meta);
                }
                Err(err) => {
                    // Retrying would fail again; counted and logged so it cannot hold the
                    // watermark back forever.
                    self.report.rejected += 1;
                    tracing::error!(incident = %incident.id, error = %err, "database rejected incident");
                    self.report.last_error = Some(err.to_string());
                    self.pending.settle(&meta);
                }
            }
        }
        self.publish_durable();
    }

    fn publish_durable(&self) {
        let durable = self.pending.durable();
        self.durable.send_if_modified(|d| {
            let changed = *d != durable;
            *d = durable;
            changed
        });
    }

    fn note_error(&mut self, err: &StoreError, batch: usize) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let message = err.to_string();
        if self.report.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(
                error = %message,
                batch,
                queued = self.pending.queued() + batch,
                "store write failed; will retry"
            );
        }
        self.report.last_error = Some(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{incident_id, Score, Severity, Status};
    use crate::event::{EntityKind, Timestamp};

    fn incident(n: u32, version: u64) -> Incident {
        let entity = format!("198.18.0.{n}");
        let start = Timestamp(i64::from(n) * 1_000_000_000);
        Incident {
            id: incident_id("rate-spike-ip", &entity, start),
            detector: "rate-spike-ip".into(),
            kind: "rate_spike".into(),
            severity: Severity::Medium,
            entity_kind: EntityKind::Ip,
            entity,
            started_at: start,
            detected_at: start,
            last_seen: Timestamp(start.nanos() + version as i64),
            count: version,
            score: Score {
                observed: 10.0,
                expected: 1.0,
                p_value: None,
            },
            summary: String::new(),
            status: Status::Open,
            evidence: Vec::new(),
            explain: Default::default(),
            related: Vec::new(),
        }
    }

    fn event(seq: u64, kind: EventKind, incident: Incident) -> Sequenced {
        let event = match kind {
            EventKind::Opened => IncidentEvent::Opened(incident),
            EventKind::Escalated => IncidentEvent::Escalated(incident),
            EventKind::Closed => IncidentEvent::Closed(incident),
        };
        Sequenced { seq, event }
    }

    #[test]
    fn event_kinds_are_a_set_in_lifecycle_order() {
        let mut kinds = EventKinds::from(EventKind::Closed);
        kinds.insert(EventKind::Opened);
        kinds.insert(EventKind::Closed);
        assert_eq!(kinds.len(), 2);
        assert!(!kinds.contains(EventKind::Escalated));
        assert_eq!(
            kinds.iter().collect::<Vec<_>>(),
            [EventKind::Opened, EventKind::Closed]
        );
        let all = kinds.union(EventKind::Escalated.into());
        assert_eq!(all, EventKind::ALL.into_iter().collect());
        assert_eq!(format!("{all:?}"), "{Opened, Escalated, Closed}");
        assert!(EventKinds::EMPTY.is_empty());
        assert_eq!(EventKinds::EMPTY.iter().count(), 0);
    }

    #[test]
    fn coalescing_keeps_the_newest_version_and_every_kind() {
        let mut pending = Pending::default();
        pending.receive(event(1, EventKind::Opened, incident(0, 1)));
        pending.receive(event(2, EventKind::Opened, incident(1, 1)));
        pending.receive(event(3, EventKind::Escalated, incident(0, 2)));
        pending.receive(event(4, EventKind::Closed, incident(0, 3)));
        assert_eq!(pending.queued(), 2);
        let batch = pending.take(10);
        assert_eq!(
            batch.incidents,
            [incident(0, 3), incident(1, 1)],
            "oldest first"
        );
        assert_eq!(
            batch.meta[0],
            Meta {
                kinds: EventKind::ALL.into_iter().collect(),
                first_seq: 1,
                last_seq: 4
            }
        );
        assert_eq!(batch.meta[1].kinds, EventKind::Opened.into());
    }

    #[test]
    fn the_watermark_waits_for_the_oldest_unsettled_event() {
        let mut pending = Pending::default();
        assert_eq!(pending.durable(), 0);
        pending.receive(event(1, EventKind::Opened, incident(0, 1)));
        pending.receive(event(2, EventKind::Opened, incident(1, 1)));
        assert_eq!(pending.durable(), 0);

        // Incident 0 goes out; its escalation and incident 2 arrive while it is in flight.
        let batch = pending.take(1);
        assert_eq!(batch.meta[0].first_seq, 1);
        pending.receive(event(3, EventKind::Escalated, incident(0, 2)));
        pending.receive(event(4, EventKind::Opened, incident(2, 1)));
        assert_eq!(pending.queued(), 3);
        assert_eq!(pending.durable(), 0, "seq 1 is in flight");

        // The write fails: the in-flight version merges with the newer queued one.
        let (incident0, meta) = (batch.incidents[0].clone(), batch.meta[0]);
        pending.restore(incident0, meta);
        assert_eq!(pending.queued(), 3);
        assert_eq!(pending.durable(), 0);
        let batch = pending.take(1);
        assert_eq!(batch.incidents, [incident(0, 2)], "the newer version won");
        assert_eq!(
            batch.meta[0],
            Meta {
                kinds: [EventKind::Opened, EventKind::Escalated]
                    .into_iter()
                    .collect(),
                first_seq: 1,
                last_seq: 3
            }
        );

        // Stored: seq 1 and 3 are done, seq 2 still holds the watermark at 1.
        pending.settle(&batch.meta[0]);
        assert_eq!(pending.durable(), 1);
        let batch = pending.take(2);
        assert_eq!(batch.incidents, [incident(1, 1), incident(2, 1)]);
        pending.settle(&batch.meta[1]);
        assert_eq!(pending.durable(), 1, "seq 2 is still in flight");
        pending.settle(&batch.meta[0]);
        assert_eq!(pending.durable(), 4, "nothing pending: all received");

        pending.receive(event(7, EventKind::Closed, incident(2, 2)));
        assert_eq!(pending.durable(), 6, "seq 5 and 6 were never sent");
    }

    #[test]
    fn a_restored_entry_keeps_newer_versions_that_were_queued_meanwhile() {
        let mut pending = Pending::default();
        pending.receive(event(1, EventKind::Opened, incident(0, 1)));
        let batch = pending.take(1);
        pending.receive(event(2, EventKind::Escalated, incident(0, 2)));
        pending.receive(event(3, EventKind::Closed, incident(0, 3)));
        for (incident, meta) in batch.incidents.into_iter().zip(batch.meta) {
            pending.restore(incident, meta);
        }
        assert_eq!(pending.queued(), 1);
        let batch = pending.take(10);
        assert_eq!(batch.incidents, [incident(0, 3)]);
        assert_eq!(batch.meta[0].kinds, EventKind::ALL.into_iter().collect());
        assert_eq!(batch.meta[0].first_seq, 1);
        assert_eq!(pending.durable(), 0);
        pending.settle(&batch.meta[0]);
        assert_eq!(pending.durable(), 3);
    }
}
