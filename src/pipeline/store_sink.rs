//! The store as a sink: incident events go to the batching store task, numbered; what the
//! task has committed is what is durable, which is what lets offsets be checkpointed.

use tokio::sync::{mpsc, watch};

use super::Sink;
use crate::detect::IncidentEvent;
use crate::store::{redact_url, Sequenced, Store, StoreWriter, WriterReport, WriterSettings};

/// A store task on a runtime of its own, fed from the (synchronous) pipeline thread.
pub struct StoreSink {
    runtime: tokio::runtime::Runtime,
    writer: StoreWriter,
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
        let writer = runtime.block_on(async {
            let store = Store::open(url).await?;
            anyhow::Ok(StoreWriter::spawn(store, settings))
        })?;
        Ok(StoreSink {
            sender: writer.sender(),
            durable: writer.durable(),
            runtime,
            writer,
            shown_url: redact_url(url),
        })
    }

    /// The URL with any password masked.
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// Waits until everything sent is stored (or the writer's shutdown grace ends).
    pub fn finish(self) -> WriterReport {
        drop(self.sender);
        self.runtime.block_on(self.writer.finish())
    }
}

impl Sink for StoreSink {
    fn accept(&mut self, seq: u64, event: &IncidentEvent) -> anyhow::Result<()> {
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
