//! Cluster mode on NATS JetStream: agents tail and decode as the standalone daemon does and
//! publish compact events to one subject per partition, chosen by each detector family's
//! key (`partition`); analyzers share the partitions through leases (`lease`), each running
//! the engine on its partitions' events merged in event time, and store incidents in one
//! shared database. See the module docs of `agent` and `analyzer` for what makes it exact.

pub mod agent;
pub mod analyzer;
pub mod lease;
pub mod nats;
pub mod partition;
pub mod wire;

pub use agent::{AgentStats, Publisher};
pub use analyzer::{AnalyzerSettings, AnalyzerStats};
pub use nats::Cluster;

/// The wall clock, for the cluster's timers (heartbeats, leases, saves): I/O at the edge,
/// never event time.
#[allow(clippy::disallowed_methods)] // timers are wall-clock by nature
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}
