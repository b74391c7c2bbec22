//! The store as a pipeline sink: incident events go to the batching store task; what it has
//! committed is what is durable.

use tokio::sync::mpsc;

use crate::detect::{Incident, IncidentEvent};
use crate::pipeline::Sink;
use crate::store::{redact_url, Store, StoreWriter, WriterReport, WriterSettings};

/// `--db`: a runtime running the batching store task.
pub struct StoreSink {
    runtime: tokio::runtime::Runtime,
    writer: StoreWriter,
    sender: mpsc::Sender<Incident>,
    shown_url: String,
    accepted: u64,
}

impl StoreSink {
    pub fn open(url: &str) -> anyhow::Result<StoreSink> {
        let runtime = super::db::runtime()?;
        let writer = runtime.block_on(async {
            let store = Store::open(url).await?;
            anyhow::Ok(StoreWriter::spawn(store, WriterSettings::default()))
        })?;
        Ok(StoreSink {
            sender: writer.sender(),
            runtime,
            writer,
            shown_url: redact_url(url),
            accepted: 0,
        })
    }

    /// Waits until everything sent is stored (or the shutdown grace ends).
    pub fn finish(self) -> (WriterReport, String) {
        drop(self.sender);
        let report = self.runtime.block_on(self.writer.finish());
        (report, self.shown_url)
    }
}

impl Sink for StoreSink {
    fn accept(&mut self, seq: u64, event: &IncidentEvent) -> anyhow::Result<()> {
        // Waits while the store task's channel is full: the pipeline runs at the store's
        // pace rather than losing incidents.
        self.sender
            .blocking_send(event.incident().clone())
            .map_err(|_| anyhow::anyhow!("{}: the store task stopped", self.shown_url))?;
        self.accepted = seq;
        Ok(())
    }

    fn durable(&mut self) -> u64 {
        self.accepted
    }
}
