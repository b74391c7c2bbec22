//! Incident persistence over sqlx: SQLite (the embedded default) or PostgreSQL, chosen by URL.
//!
//! `Store` is a cheap handle (a pool); `writer` batches incident upserts off the hot path and
//! holds them through database outages; `query` answers the CLI and the HTTP API.

mod checkpoints;
mod connect;
mod error;
mod ip_key;
mod outbox;
mod query;
mod record;
mod settings;
mod write;
mod writer;

pub use checkpoints::Checkpoint;
pub use connect::{redact_url, Backend};
pub use error::StoreError;
pub use ip_key::EntityFilter;
pub use outbox::{
    state as alert_state, AlertQuery, AlertRecord, AlertRouter, Attempt, Delivery, Digest,
    HeldAlert, HeldGroup, NewAlert, Router,
};
pub use query::{Cursor, IncidentQuery, Page, StatusFilter, MAX_PAGE};
pub use record::{StoredIncident, Triage, TriageState};
pub use writer::{EventKind, EventKinds, Sequenced, StoreWriter, WriterReport, WriterSettings};

use sqlx::AnyPool;

/// A connection pool to one gatewatch database, migrated to the current schema.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A round trip to the database (readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Waits for checked-out connections and closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
