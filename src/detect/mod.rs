//! Detector kinds, the engine that runs every detector instance, and incident lifecycle.

mod bad_agent;
pub mod definition;
mod engine;
mod episodes;
mod error_spike;
pub mod ignore;
mod incident;
pub mod key;
mod new_source;
mod path_match;
mod profile;
mod rate_spike;
mod related;
mod route_rule;
mod rule_text;
mod signal_count;
mod state;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;
pub mod token_sources;
mod unexpected_source;

pub use definition::{DefinitionErrors, DetectorDef, KindParams};
pub use engine::{family, Engine, EngineSettings, EngineStats, Observed};
pub use incident::{
    incident_id, Evidence, Explain, Incident, IncidentEvent, Score, Severity, Status, Tally,
};
pub use path_match::PathMatch;
pub use rule_text::duration_words;
pub use state::{RestoreReport, StateRow, ENGINE_ROW, STATE_VERSION};

use std::fmt::Display;
use std::hash::Hash;

use crate::event::{Request, Timestamp};
use crate::window::KeyTable;
use episodes::Episodes;

/// What every detector sees besides the request.
#[derive(Clone, Copy, Debug)]
pub struct Context<'r> {
    /// The newest event time seen (the watermark).
    pub now: Timestamp,
    /// Still inside the warm-up: baselines learn, baseline-driven detectors stay silent.
    pub learning: bool,
    /// The request's `PathMatch` bits when they were matched ahead of the engine.
    pub path_bits: Option<u32>,
    /// The request's route, built once for every route-keyed detector: `None` when not
    /// built (no such detector), `Some(None)` when the request has no route (an asset).
    pub route: Option<Option<&'r key::RouteKey>>,
}

/// Size and activity of one detector instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorStats {
    pub keys: usize,
    pub evictions: u64,
    pub open_incidents: usize,
    pub incidents: u64,
}

impl DetectorStats {
    fn of<K: Hash + Eq + Clone + Display, S, E: Hash + Eq + Clone + Display>(
        keys: &KeyTable<K, S>,
        episodes: &Episodes<E>,
    ) -> Self {
        DetectorStats {
            keys: keys.len(),
            evictions: keys.evictions(),
            open_incidents: episodes.open_count(),
            incidents: episodes.opened_total(),
        }
    }
}

/// A detector instance: fed every request in event-time order, it opens and updates
/// incidents. No I/O, no clock.
pub trait Detector: Send {
    fn id(&self) -> &str;
    fn observe(
        &mut self,
        req: &Request<'_>,
        line: &[u8],
        ctx: &Context<'_>,
        events: &mut Vec<IncidentEvent>,
    );
    /// Closes incidents that have been quiet for their detector's quiet period.
    fn close_quiet(&mut self, now: Timestamp, events: &mut Vec<IncidentEvent>);
    /// End of input: closes every open incident.
    fn close_all(&mut self, events: &mut Vec<IncidentEvent>);
    fn stats(&self) -> DetectorStats;
    /// Appends what the detector learned as saved-state rows (see `Engine::snapshot`);
    /// `now` is the engine's clock.
    /// By default nothing is saved: the detector relearns after a restart.
    fn snapshot(&self, _now: Timestamp, _rows: &mut Vec<StateRow>) {}
    /// Loads rows saved by `snapshot` (all of them name this detector).
    fn restore(&mut self, rows: Vec<StateRow>) -> RestoreReport {
        RestoreReport {
            restored: 0,
            skipped: rows.len() as u64,
        }
    }
    /// A statistic across keys that a cluster partition shares with the others (JSON), for
    /// detectors that judge a key against the population of keys.
    fn population(&self) -> Option<String> {
        None
    }
    /// The other partitions' `population`s, as last published.
    fn set_populations(&mut self, _others: &[String]) {}
}
