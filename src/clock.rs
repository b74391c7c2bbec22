//! The wall clock, read only at the edges: `--since 2h`-style bounds, pruning and the
//! store's `*_wall_ns` bookkeeping columns. The core runs on event time and reads no clock.

use crate::event::Timestamp;

/// Wall-clock now (saturating at the end of the timestamp range, in 2262).
#[allow(clippy::disallowed_methods)] // the one sanctioned clock read
pub fn wall_clock() -> Timestamp {
    Timestamp(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX))
}
