//! The store as a sink: incident events go to the batching store task, numbered; what the
//! task has committed is what is durable, which is what lets offsets be checkpointed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::Sink;
use crate::detect::IncidentEvent;
use crate::store::{redact_url, Sequenced, Store, StoreWriter, WriterReport, WriterSettings};

/// A store task on a runtime of its own (or a shared one), fed from the (synchronous)
/// pipeline thread.
pub struct StoreSink {
    /// The runtime the sink owns, if it owns one.
    _runtime: Option<tokio::runtime::Runtime>,
    runtime: tokio::runtime::Handle,
    store: Store,
    writer: StoreWriter,
    sent: Arc<AtomicU64>,
    sender: mpsc::Sender<Sequenced>,
    durable: watch::Receiver<u64>,
    shown_url: String,
}

impl StoreSink {
    /// Opens (and migrates) the store at `url` and starts its task.
    pub fn open(url: &str, settings: WriterSettings) -> anyhow::Result<StoreSink> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (store, writer) = runtime.block_on(async {
            let store = Store::open(url).await?;
            anyhow::Ok((store.clone(), StoreWriter::spawn(store, settings)))
        })?;
        Ok(StoreSink {
            store,
            sent: Arc::default(),
            sender: writer.sender(),
            durable: writer.durable(),
            runtime: runtime.handle().clone(),
            _runtime: Some(runtime),
            writer,
            shown_url: redact_url(url),
        })
    }

    /// A sink of its own (numbering, writer task) on an open store, its task on `handle`:
    /// several pipelines (a cluster analyzer's partitions) share one connection pool.
    pub fn attached(
        store: Store,
        handle: tokio::runtime::Handle,
        shown_url: &str,
        settings: WriterSettings,
    ) -> StoreSink {
        let writer = {
            let _entered = handle.enter();
            StoreWriter::spawn(store.clone(), settings)
        };
        StoreSink {
            store,
            sent: Arc::default(),
            sender: writer.sender(),
            durable: writer.durable(),
            runtime: handle,
            _runtime: None,
            writer,
            shown_url: shown_url.to_owned(),
        }
    }

    /// The URL with any password masked.
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// The store the events go to (for checkpoints and the API, on `handle`).
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The runtime the store task runs on.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.clone()
    }

    /// A live view of the store task for metrics, usable from other threads.
    pub fn probe(&self) -> StoreProbe {
        StoreProbe {
            sent: self.sent.clone(),
            durable: self.durable.clone(),
            errors: self.writer.errors(),
        }
    }

    /// Waits up to `timeout` until every event sent is stored; false if it was not.
    pub fn wait_stored(&mut self, timeout: std::time::Duration) -> bool {
        let sent = self.sent.load(Ordering::SeqCst);
        let mut durable = self.durable.clone();
        self.runtime.block_on(async {
            tokio::time::timeout(timeout, durable.wait_for(|d| *d >= sent))
                .await
                .is_ok_and(|r| r.is_ok())
        })
    }

    /// Waits until everything sent is stored (or the writer's shutdown grace ends).
    pub fn finish(self) -> WriterReport {
        drop(self.sender);
        self.runtime.block_on(self.writer.finish())
    }
}

impl Sink for StoreSink {
    fn accept(&mut self, seq: u64, event: &IncidentEvent) -> anyhow::Result<()> {
        self.sent.store(seq, Ordering::SeqCst);
        let sequenced = Sequenced {
            seq,
            event: event.clone(),
        };
        // Waits while the store task's channel is full (the database is down and its queue
        // full): the pipeline, and so reading, runs at the store's pace instead of dropping.
        self.sender
            .blocking_send(sequenced)
            .map_err(|_| anyhow::anyhow!("{}: the store task stopped", self.shown_url))
    }

    fn durable(&mut self) -> u64 {
        *self.durable.borrow()
    }
}

/// The store task seen from outside: its queue and its errors.
#[derive(Clone)]
pub struct StoreProbe {
    sent: Arc<AtomicU64>,
    durable: watch::Receiver<u64>,
    errors: Arc<AtomicU64>,
}

impl StoreProbe {
    /// Events sent and not yet stored.
    pub fn queued(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(*self.durable.borrow())
    }

    /// Waits until every event up to `seq` is stored.
    pub async fn stored(&self, seq: u64) {
        let mut durable = self.durable.clone();
        let _ = durable.wait_for(|d| *d >= seq).await;
    }

    /// Failed write attempts so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}
