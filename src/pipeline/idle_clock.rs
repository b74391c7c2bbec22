//! Moves a live engine's clock on while its inputs are quiet, so quiet incidents close on
//! time with no new line.

use std::time::{Duration, Instant};

use crate::detect::Engine;
use crate::event::Timestamp;

/// Moves event time on while every log is quiet, so quiet incidents close without new
/// lines: by the wall time elapsed since the last line, never past where the logs would
/// be had they gone on (a replayed or delayed log stays consistent).
#[derive(Default)]
pub struct IdleClock {
    /// The engine's clock when lines last moved it, and when that was.
    base: Option<(Timestamp, Instant)>,
    /// Where we moved it ourselves.
    moved_to: Option<Timestamp>,
}

impl IdleClock {
    pub fn tick(&mut self, engine: &mut Engine, at: Instant) {
        let Some(clock) = engine.clock() else { return };
        let lines_moved_it = match (self.base, self.moved_to) {
            (None, _) => true,
            (Some(_), Some(ours)) => clock > ours,
            (Some((base, _)), None) => clock > base,
        };
        if lines_moved_it {
            self.base = Some((clock, at));
            self.moved_to = None;
            return;
        }
        let (base, since) = self.base.expect("set above");
        let quiet = at.saturating_duration_since(since);
        if quiet >= Duration::from_secs(1) {
            let to = Timestamp(
                base.nanos()
                    .saturating_add(quiet.as_nanos().min(i64::MAX as u128) as i64),
            );
            engine.advance_to(to);
            self.moved_to = Some(to);
        }
    }
}
