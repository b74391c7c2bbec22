//! `new_source_sensitive_route`: the first request that an address (or network) never seen
//! there before gets answered on an admin or deploy route, once the detector has learned
//! who normally reaches it. Failed probes (404s of scanners, redirects to a login) are not
//! reaching it; a known admin on a new network once is one incident, then known.

use serde::{Deserialize, Serialize};

use super::definition::{DetectorDef, NewSourceParams};
use super::episodes::{EpisodeSettings, Episodes, Opening};
use super::incident::{IncidentEvent, Severity};
use super::key::EntityKey;
use super::state::{self, Shape};
use super::unexpected_source::short_text;
use super::{Context, Detector, DetectorStats, RestoreReport, StateRow};
use crate::event::{Request, Timestamp};
use crate::window::{KeyTable, WindowSpec};

/// A source that reached the routes.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct Known {
    first_seen: Timestamp,
    last_seen: Timestamp,
}

pub struct NewSource<K: EntityKey> {
    id: String,
    severity: Severity,
    params: NewSourceParams,
    scratch: K::Scratch,
    known: KeyTable<K, Known>,
    /// The first answered request on the routes: learning lasts `min_history` from it.
    first: Option<Timestamp>,
    episodes: Episodes<K>,
}

impl<K: EntityKey> NewSource<K> {
    pub fn new(def: &DetectorDef, params: &NewSourceParams) -> Self {
        NewSource {
            id: def.id.clone(),
            severity: def.severity,
            scratch: K::Scratch::default(),
            known: KeyTable::new(params.capacity),
            first: None,
            episodes: Episodes::new(EpisodeSettings::of(def, params.quiet_nanos)),
            params: params.clone(),
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            kind: "new_source_sensitive_route",
            // One bucket as long as the memory: saved state is only valid for the same one.
            window: WindowSpec::new(self.params.forget_nanos, self.params.forget_nanos)
                .expect("definition checked forget"),
        }
    }
}

impl<K: EntityKey> Detector for NewSource<K> {
    fn id(&self) -> &str {
        &self.id
    }

    fn observe(
        &mut self,
        req: &Request<'_>,
        line: &[u8],
        ctx: &Context<'_>,
        events: &mut Vec<IncidentEvent>,
    ) {
        let Some(ts) = req.ts else { return };
        // Reached: the route answered with content (a redirect to a login page is not).
        let answered = req
            .status
            .is_some_and(|s| (200..300).contains(&s) || s == 304);
        if !answered || !self.params.rule.matches(req) {
            return;
        }
        let Some(key) = K::of_with(req, &mut self.scratch) else {
            return;
        };
        let first = *self.first.get_or_insert(ts);
        let forget = self.params.forget_nanos;
        let mut new = false;
        let known = self.known.get_or_insert(key.clone(), || {
            new = true;
            Known {
                first_seen: ts,
                last_seen: ts,
            }
        });
        // A source gone for longer than the memory is new again.
        new |= ts.nanos().saturating_sub(known.last_seen.nanos()) > forget;
        if new {
            known.first_seen = ts;
        }
        known.last_seen = known.last_seen.max(ts);
        if self.episodes.is_open(&key) {
            self.episodes.touch(&key, req, ts, line, 1.0, new);
            return;
        }
        let learning = ctx.learning || ts.nanos() - first.nanos() < self.params.min_history_nanos;
        if !new || learning {
            return;
        }
        let text = |bytes: Option<&[u8]>| short_text(bytes.unwrap_or(b"-"));
        let summary = format!(
            "{key} reached {} {} (status {}), never reached from there before",
            text(req.method.as_deref()),
            text(req.path.as_deref()),
            req.status.unwrap_or(0)
        );
        self.episodes.open(
            key,
            Opening::single(ts, self.severity, summary, line, req),
            events,
        );
    }

    fn close_quiet(&mut self, now: Timestamp, events: &mut Vec<IncidentEvent>) {
        self.episodes.close_quiet(now, events);
    }

    fn close_all(&mut self, events: &mut Vec<IncidentEvent>) {
        self.episodes.close_all(events);
    }

    fn stats(&self) -> DetectorStats {
        DetectorStats::of(&self.known, &self.episodes)
    }

    /// The known sources survive a restart: without them every admin would be new again.
    fn snapshot(&self, _now: Timestamp, rows: &mut Vec<StateRow>) {
        state::snapshot_keys(
            &self.id,
            &self.shape(),
            &self.known,
            &self.episodes,
            |known: &Known| known.last_seen,
            rows,
        );
        if let Some(first) = self.first {
            rows.push(state::detector_row(&self.id, &self.shape(), first, &first));
        }
    }

    fn restore(&mut self, rows: Vec<StateRow>) -> RestoreReport {
        let shape = self.shape();
        let (own, keyed): (Vec<StateRow>, Vec<StateRow>) =
            rows.into_iter().partition(|row| row.entity.is_empty());
        let mut report =
            state::restore_keys(&shape, &mut self.known, &mut self.episodes, keyed, |_| true);
        for row in own {
            match state::parse_detector_row::<Timestamp>(&shape, &row) {
                Some(first) => {
                    self.first = Some(self.first.map_or(first, |own| own.min(first)));
                    report.restored += 1;
                }
                None => report.skipped += 1,
            }
        }
        report
    }
}
