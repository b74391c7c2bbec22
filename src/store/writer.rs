//! The store task: incidents arrive on a bounded channel, are coalesced by id and upserted in
//! batches. While the database is unreachable they wait in a bounded queue and are retried
//! with backoff; what cannot be kept is logged and counted, never dropped silently.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::{Store, StoreError};
use crate::detect::Incident;

#[derive(Clone, Debug)]
pub struct WriterSettings {
    /// Incidents in flight between the engine and the store task.
    pub channel_capacity: usize,
    /// Distinct incidents held while the database is down.
    pub queue_capacity: usize,
    /// Incidents per transaction.
    pub batch_size: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// After the channel closes, how long to keep retrying what is still queued.
    pub shutdown_grace: Duration,
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
        }
    }
}

/// What the store task did, reported when it ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterReport {
    /// Incident versions received from the engine.
    pub received: u64,
    /// Upserts committed (coalesced versions of one incident count once).
    pub written: u64,
    /// Failed batch attempts that were retried.
    pub retries: u64,
    /// Versions of incidents not yet queued that arrived while the queue was full.
    pub dropped_queue_full: u64,
    /// Incidents the database refused for good (not an outage), logged one by one.
    pub rejected: u64,
    /// Incidents still queued when the shutdown grace ran out.
    pub unstored: u64,
    pub last_error: Option<String>,
}

impl WriterReport {
    /// True when every incident received is in the database.
    pub fn complete(&self) -> bool {
        self.dropped_queue_full == 0 && self.rejected == 0 && self.unstored == 0
    }
}

pub struct StoreWriter {
    sender: mpsc::Sender<Incident>,
    task: JoinHandle<WriterReport>,
}

impl StoreWriter {
    /// Starts the store task on the current tokio runtime.
    pub fn spawn(store: Store, settings: WriterSettings) -> StoreWriter {
        let (sender, receiver) = mpsc::channel(settings.channel_capacity.max(1));
        let task = tokio::spawn(
            Task {
                store,
                settings,
                receiver,
                queue: Queue::default(),
                report: WriterReport::default(),
            }
            .run(),
        );
        StoreWriter { sender, task }
    }

    /// A handle for producers; sending waits while the channel is full.
    pub fn sender(&self) -> mpsc::Sender<Incident> {
        self.sender.clone()
    }

    /// Closes this handle's side of the channel and waits for the task to flush. The task
    /// ends once every other sender is dropped too.
    pub async fn finish(self) -> WriterReport {
        drop(self.sender);
        self.task.await.unwrap_or_else(|err| WriterReport {
            last_error: Some(format!("store task failed: {err}")),
            ..WriterReport::default()
        })
    }
}

/// Pending incidents by id; a newer version of a queued incident replaces the older one.
#[derive(Default)]
struct Queue {
    by_id: HashMap<String, Incident>,
}

impl Queue {
    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn take(&mut self, n: usize) -> Vec<Incident> {
        let ids: Vec<String> = self.by_id.keys().take(n).cloned().collect();
        ids.iter().filter_map(|id| self.by_id.remove(id)).collect()
    }

    /// Puts a failed batch back without overwriting newer versions that arrived meanwhile.
    fn restore(&mut self, batch: Vec<Incident>) {
        for incident in batch {
            self.by_id.entry(incident.id.clone()).or_insert(incident);
        }
    }
}

struct Task {
    store: Store,
    settings: WriterSettings,
    receiver: mpsc::Receiver<Incident>,
    queue: Queue,
    report: WriterReport,
}

impl Task {
    async fn run(mut self) -> WriterReport {
        let mut backoff = self.settings.retry_min;
        let mut open = true;
        let mut deadline: Option<Instant> = None;
        loop {
            if open && self.queue.is_empty() {
                match self.receiver.recv().await {
                    Some(incident) => self.accept(incident),
                    None => open = false,
                }
            }
            while let Ok(incident) = self.receiver.try_recv() {
                self.accept(incident);
            }
            if self.queue.is_empty() {
                if open {
                    continue;
                }
                break;
            }
            let batch = self.queue.take(self.settings.batch_size);
            match self.store.upsert_incidents(&batch).await {
                Ok(()) => {
                    self.report.written += batch.len() as u64;
                    backoff = self.settings.retry_min;
                }
                Err(err) if err.is_transient() => {
                    self.report.retries += 1;
                    self.note_error(&err, batch.len());
                    self.queue.restore(batch);
                    let wake = Instant::now() + backoff;
                    backoff = (backoff * 2).min(self.settings.retry_max);
                    if !open {
                        let deadline = *deadline
                            .get_or_insert_with(|| Instant::now() + self.settings.shutdown_grace);
                        if Instant::now() >= deadline {
                            break;
                        }
                        sleep_until(wake.min(deadline)).await;
                        continue;
                    }
                    open = self.wait_accepting(wake).await;
                }
                Err(_) => self.write_one_by_one(batch).await,
            }
        }
        self.report.unstored = self.queue.len() as u64;
        if self.report.unstored > 0 {
            tracing::error!(
                unstored = self.report.unstored,
                "database still unreachable at shutdown; incidents not stored"
            );
        }
        self.report
    }

    fn accept(&mut self, incident: Incident) {
        self.report.received += 1;
        let full = self.queue.len() >= self.settings.queue_capacity;
        if full && !self.queue.by_id.contains_key(&incident.id) {
            self.report.dropped_queue_full += 1;
            let dropped = self.report.dropped_queue_full;
            // Log the first and then every thousandth, so an outage cannot flood the log.
            if dropped == 1 || dropped % 1000 == 0 {
                tracing::error!(
                    dropped,
                    capacity = self.settings.queue_capacity,
                    incident = %incident.id,
                    "store queue full while the database is unreachable; incident dropped"
                );
            }
            return;
        }
        self.queue.by_id.insert(incident.id.clone(), incident);
    }

    /// Sleeps until `wake`, still taking incidents off the channel so producers keep going.
    /// Returns false when the channel closed meanwhile.
    async fn wait_accepting(&mut self, wake: Instant) -> bool {
        loop {
            tokio::select! {
                _ = sleep_until(wake) => return true,
                received = self.receiver.recv() => match received {
                    Some(incident) => self.accept(incident),
                    None => return false,
                },
            }
        }
    }

    /// A batch failed on bad data, not an outage: store what can be stored, log the rest.
    async fn write_one_by_one(&mut self, batch: Vec<Incident>) {
        for incident in batch {
            match self
                .store
                .upsert_incidents(std::slice::from_ref(&incident))
                .await
            {
                Ok(()) => self.report.written += 1,
                Err(err) if err.is_transient() => {
                    self.note_error(&err, 1);
                    self.queue.restore(vec![incident]);
                }
                Err(err) => {
                    self.report.rejected += 1;
                    tracing::error!(incident = %incident.id, error = %err, "database rejected incident");
                    self.report.last_error = Some(err.to_string());
                }
            }
        }
    }

    fn note_error(&mut self, err: &StoreError, batch: usize) {
        let message = err.to_string();
        if self.report.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(
                error = %message,
                batch,
                queued = self.queue.len() + batch,
                "store write failed; will retry"
            );
        }
        self.report.last_error = Some(message);
    }
}
