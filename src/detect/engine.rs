//! Feeds each request to every detector instance and collects the incident events they
//! produce. The engine's clock only moves forward: to the newest request time, or when its
//! driver says no older line can still come (`advance_to`). Which lines are late is decided
//! per source before the engine (see `pipeline`).

use super::definition::{DetectorDef, KindParams};
use std::net::IpAddr;

use super::bad_agent::BadAgent;
use super::error_spike::ErrorSpike;
use super::ignore::{Ignore, IgnoreRules};
use super::incident::IncidentEvent;
use super::key::{EntityKey, GlobalKey, RouteKey, RouteScratch, SubnetKey};
use super::new_source::NewSource;
use super::path_match::PathMatch;
use super::rate_spike::RateSpike;
use super::related::{Related, SavedRelated};
use super::signal_count::{SignalCount, SignalKind};
use super::state::{self, RestoreReport, StateRow, ENGINE_ROW, STATE_VERSION};
use super::token_sources::{IpManyTokens, TokenHasher, TokenMask, TokenNewSource, TokenSources};
use super::unexpected_source::UnexpectedSource;
use super::{Context, Detector, DetectorStats};
use crate::event::{EntityKind, Request, Timestamp, NANOS_PER_SEC};

/// Engine-wide settings (per-detector ones live in the definitions).
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Event time from the first line during which baselines learn and rate
    /// detectors do not fire.
    pub warmup_nanos: i64,
    /// The key of token fingerprints (`fp_` + HMAC-SHA256); empty: fingerprints are plain
    /// hashes, stable but guessable from a known token.
    pub token_key: std::sync::Arc<[u8]>,
    /// Requests no detector sees (one's own monitors and scanners).
    pub ignore: IgnoreRules,
    /// Requests carry token fingerprints already, not tokens (a cluster analyzer's events:
    /// the agent fingerprinted them with the same key).
    pub tokens_fingerprinted: bool,
    /// One in how many keys of a partitioned family this engine sees (a cluster partition
    /// of `partitions`; 1 standalone). Population statistics are weighted by it.
    pub key_share: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            warmup_nanos: 5 * 60 * NANOS_PER_SEC,
            token_key: std::sync::Arc::from(&[][..]),
            ignore: IgnoreRules::default(),
            tokens_fingerprinted: false,
            key_share: 1,
        }
    }
}

/// The kinds of key a detector's statistics are over, as bits: cluster mode sends each
/// request to one partition per family, chosen by that family's key, and each partition
/// runs only that family's detectors on it.
pub mod family {
    use crate::event::EntityKind;

    /// Client addresses and their prefixes (an address and its /24 or /64 together).
    pub const ADDRESS: u8 = 1;
    pub const TOKEN: u8 = 2;
    pub const ROUTE: u8 = 4;
    pub const GLOBAL: u8 = 8;
    pub const ALL: u8 = ADDRESS | TOKEN | ROUTE | GLOBAL;

    pub fn of(entity: EntityKind) -> u8 {
        match entity {
            EntityKind::Ip | EntityKind::Subnet => ADDRESS,
            EntityKind::Token => TOKEN,
            EntityKind::Route => ROUTE,
            EntityKind::Global => GLOBAL,
        }
    }
}

/// What became of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    Accepted,
    /// The record carried no timestamp.
    NoTimestamp,
    /// The ignore list matched it: it moved the clock, no detector saw it.
    Ignored,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub accepted: u64,
    pub no_timestamp: u64,
    /// Accepted requests the ignore list kept from the detectors.
    pub ignored: u64,
}

pub struct Engine {
    detectors: Vec<Box<dyn Detector>>,
    /// Each detector's `family` bit.
    families: Vec<u8>,
    /// With route-keyed detectors: builds each request's route once for all of them.
    routes: Option<RouteScratch>,
    ignore: Ignore,
    path_match: std::sync::Arc<PathMatch>,
    settings: EngineSettings,
    first: Option<Timestamp>,
    watermark: Timestamp,
    next_tick: i64,
    stats: EngineStats,
    events: Vec<IncidentEvent>,
    related: Related,
    /// Raw tokens out of the lines detectors keep (`None`: they arrive as fingerprints).
    mask: Option<TokenMask>,
}

/// Quiet incidents are closed once per second of event time.
const TICK_NANOS: i64 = NANOS_PER_SEC;

/// The engine's own saved row: its clock, so a restart neither re-applies the warm-up nor
/// runs the clock backwards.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedEngine {
    v: u32,
    /// The first line's time (`None`: no line yet).
    first: Option<Timestamp>,
    watermark: Timestamp,
    next_tick: i64,
    /// Incidents still linkable (absent in rows saved before links existed).
    #[serde(default)]
    related: SavedRelated,
}

impl Engine {
    pub fn new(defs: &[DetectorDef], settings: EngineSettings) -> Self {
        let mut path_match = PathMatch::default();
        let detectors = defs
            .iter()
            .map(|def| build(def, &mut path_match, &settings))
            .collect();
        let families = defs.iter().map(|def| family::of(def.entity)).collect();
        let ignore = Ignore::new(settings.ignore.clone(), &mut path_match);
        path_match.finish();
        let routes = defs
            .iter()
            .any(|def| def.enabled && def.entity == EntityKind::Route)
            .then(RouteScratch::default);
        Engine {
            detectors,
            families,
            routes,
            ignore,
            path_match: std::sync::Arc::new(path_match),
            first: None,
            watermark: Timestamp(i64::MIN),
            next_tick: i64::MIN,
            stats: EngineStats::default(),
            events: Vec::new(),
            related: Related::default(),
            mask: (!settings.tokens_fingerprinted)
                .then(|| TokenMask::new(TokenHasher::new(settings.token_key.clone(), false))),
            settings,
        }
    }

    /// Analyses one request. `line` is kept as evidence if the request joins an incident.
    /// A request older than the clock still counts (windows place it in its own bucket).
    pub fn observe(&mut self, req: &Request<'_>, line: &[u8]) -> Observed {
        self.observe_matched(req, line, None)
    }

    /// The detectors' path pattern sets, for matching requests before they reach
    /// `observe_matched` (on other threads).
    pub fn path_match(&self) -> std::sync::Arc<PathMatch> {
        self.path_match.clone()
    }

    /// `observe` with the request's `path_match()` bits computed already.
    pub fn observe_matched(
        &mut self,
        req: &Request<'_>,
        line: &[u8],
        path_bits: Option<u32>,
    ) -> Observed {
        self.observe_families(req, line, path_bits, family::ALL)
    }

    /// `observe_matched` by only the detectors of the `families` bits (cluster mode: the
    /// partition holds this request's keys of those families only).
    pub fn observe_families(
        &mut self,
        req: &Request<'_>,
        line: &[u8],
        path_bits: Option<u32>,
        families: u8,
    ) -> Observed {
        let Some(ts) = req.ts else {
            self.stats.no_timestamp += 1;
            return Observed::NoTimestamp;
        };
        let first = *self.first.get_or_insert(ts);
        self.advance_to(ts);
        self.stats.accepted += 1;
        let mut ctx = Context {
            now: self.watermark,
            learning: self.watermark.nanos() - first.nanos() < self.settings.warmup_nanos,
            path_bits,
            route: None,
        };
        if !self.ignore.is_empty() && self.ignore.ignores(req, &ctx) {
            self.stats.ignored += 1;
            return Observed::Ignored;
        }
        let route = self
            .routes
            .as_mut()
            .map(|scratch| RouteKey::of_with(req, scratch));
        ctx.route = route.as_ref().map(Option::as_ref);
        let line = match &mut self.mask {
            Some(mask) => mask.mask(req, line),
            None => line,
        };
        for (detector, family) in self.detectors.iter_mut().zip(&self.families) {
            if family & families != 0 {
                detector.observe(req, line, &ctx, &mut self.events);
            }
        }
        Observed::Accepted
    }

    /// Moves the clock to `ts` (never backwards) and closes incidents that have been quiet
    /// long enough: the driver calls this when time passes without lines.
    pub fn advance_to(&mut self, ts: Timestamp) {
        if ts <= self.watermark {
            return;
        }
        self.watermark = ts;
        if ts.nanos() >= self.next_tick {
            self.next_tick = ts.nanos() - ts.nanos().rem_euclid(TICK_NANOS) + TICK_NANOS;
            for detector in &mut self.detectors {
                detector.close_quiet(ts, &mut self.events);
            }
        }
    }

    /// Another view of the same traffic began at `first` (a cluster's other agents): the
    /// warm-up counts from the earliest line of all of them.
    pub fn note_first(&mut self, first: Timestamp) {
        self.first = Some(self.first.map_or(first, |own| own.min(first)));
    }

    /// Each detector's statistic across keys to share with the other partitions of a
    /// cluster: (detector id, JSON).
    pub fn populations(&self) -> Vec<(String, String)> {
        self.detectors
            .iter()
            .filter_map(|d| Some((d.id().to_owned(), d.population()?)))
            .collect()
    }

    /// The other partitions' statistics of detector `id` (see `populations`).
    pub fn set_populations(&mut self, id: &str, others: &[String]) {
        if let Some(detector) = self.detectors.iter_mut().find(|d| d.id() == id) {
            detector.set_populations(others);
        }
    }

    /// The engine's event-time clock (`None` before the first request).
    pub fn clock(&self) -> Option<Timestamp> {
        self.first.map(|_| self.watermark)
    }

    /// End of input: closes every open incident.
    pub fn finish(&mut self) {
        for detector in &mut self.detectors {
            detector.close_all(&mut self.events);
        }
    }

    /// Incident events produced since the last call, in the order they happened, each
    /// listing the incidents related to it so far.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, IncidentEvent> {
        self.related.link(&mut self.events);
        self.events.drain(..)
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    pub fn detector_stats(&self) -> impl Iterator<Item = (&str, DetectorStats)> {
        self.detectors.iter().map(|d| (d.id(), d.stats()))
    }

    /// Everything learned, as rows: per detector and key, its baselines / rate windows /
    /// burst memories / signal counts and its open episode (so an incident open at a stop
    /// goes on after the restart with the same id instead of re-opening), plus per-detector
    /// population state, plus one engine row (detector `_engine`, entity `""`) with the
    /// engine's first-line time, watermark and tick (so warm-up is not re-applied after a
    /// restart). Every state JSON carries a format version: `{"v":1, ...}`.
    ///
    /// Events not yet drained are not part of it: drain them (and make them durable) first.
    /// Nothing here runs per observed line; the cost is all in this call.
    pub fn snapshot(&self) -> Vec<StateRow> {
        let now = self.clock().unwrap_or(Timestamp(0));
        let engine = SavedEngine {
            v: STATE_VERSION,
            first: self.first,
            watermark: self.watermark,
            next_tick: self.next_tick,
            related: self.related.saved(),
        };
        let mut rows = vec![StateRow {
            detector: ENGINE_ROW.to_owned(),
            entity: String::new(),
            state: state::to_json(&engine),
            updated_at: now,
        }];
        for detector in &self.detectors {
            detector.snapshot(now, &mut rows);
        }
        rows
    }

    /// Loads rows saved by `snapshot` (any order), into an engine that has seen no line
    /// yet. Rows of unknown detectors, unknown or newer versions, or JSON that does not
    /// parse are skipped and counted, never a panic or an error. Bounded by the same
    /// capacities as live state (a table full of keys keeps the most recently updated ones,
    /// by `updated_at`).
    pub fn restore(&mut self, rows: impl IntoIterator<Item = StateRow>) -> RestoreReport {
        let mut report = RestoreReport::default();
        let mut per_detector: Vec<Vec<StateRow>> =
            self.detectors.iter().map(|_| Vec::new()).collect();
        for row in rows {
            if row.detector == ENGINE_ROW {
                if row.entity.is_empty() && self.restore_clock(&row.state) {
                    report.restored += 1;
                } else {
                    report.skipped += 1;
                }
                continue;
            }
            match self.detectors.iter().position(|d| d.id() == row.detector) {
                Some(i) => per_detector[i].push(row),
                None => report.skipped += 1,
            }
        }
        for (detector, rows) in self.detectors.iter_mut().zip(per_detector) {
            if !rows.is_empty() {
                report.add(detector.restore(rows));
            }
        }
        report
    }

    /// The clock from the engine's row. Into an engine that has seen lines already, the
    /// clock only moves forward.
    fn restore_clock(&mut self, text: &str) -> bool {
        let Ok(saved) = serde_json::from_str::<SavedEngine>(text) else {
            return false;
        };
        if saved.v != STATE_VERSION {
            return false;
        }
        if let Some(first) = saved.first {
            self.first = Some(self.first.map_or(first, |own| own.min(first)));
            self.watermark = self.watermark.max(saved.watermark);
            self.next_tick = self.next_tick.max(saved.next_tick);
            self.related = Related::restored(saved.related);
        }
        true
    }
}

fn build(
    def: &DetectorDef,
    path_match: &mut PathMatch,
    settings: &EngineSettings,
) -> Box<dyn Detector> {
    let tokens = super::token_sources::TokenHasher::new(
        settings.token_key.clone(),
        settings.tokens_fingerprinted,
    );
    match &def.params {
        KindParams::RateSpike(params) => match def.entity {
            EntityKind::Ip => {
                Box::new(RateSpike::<IpAddr>::new(def, params).seeing_one_in(settings.key_share))
            }
            EntityKind::Subnet => {
                Box::new(RateSpike::<SubnetKey>::new(def, params).seeing_one_in(settings.key_share))
            }
            EntityKind::Route => {
                Box::new(RateSpike::<RouteKey>::new(def, params).seeing_one_in(settings.key_share))
            }
            // The whole site is one key, seen whole by one partition.
            EntityKind::Global => Box::new(RateSpike::<GlobalKey>::new(def, params)),
            // The definition check refuses other keys for rate_spike.
            EntityKind::Token => unreachable!("rate_spike by token is refused by the check"),
        },
        KindParams::Scanner(params) => Box::new(SignalCount::new(
            def,
            SignalKind::Scanner,
            params,
            path_match,
        )),
        KindParams::TokenManySources(params) => Box::new(TokenSources::new(def, params, tokens)),
        KindParams::TokenNewSource(params) => Box::new(TokenNewSource::new(def, params, tokens)),
        KindParams::IpManyTokens(params) => Box::new(IpManyTokens::new(def, params, tokens)),
        KindParams::BadAgent(params) => Box::new(BadAgent::new(def, params, path_match)),
        KindParams::UnexpectedSource(params) => Box::new(UnexpectedSource::new(def, params)),
        KindParams::ErrorSpike(params) => match def.entity {
            EntityKind::Global => Box::new(ErrorSpike::<GlobalKey>::new(def, params)),
            // The definition check allows route and global only.
            _ => Box::new(ErrorSpike::<RouteKey>::new(def, params)),
        },
        KindParams::NewSource(params) => match def.entity {
            EntityKind::Subnet => Box::new(NewSource::<SubnetKey>::new(def, params)),
            // The definition check allows ip and subnet only.
            _ => Box::new(NewSource::<IpAddr>::new(def, params)),
        },
        KindParams::BruteForce(params) => Box::new(SignalCount::new(
            def,
            SignalKind::BruteForce,
            params,
            path_match,
        )),
    }
}
