//! `error_spike`: a route's share of failed responses (5xx: the upstream erring, timing out
//! or unreachable) jumps against its own baseline: a backend going down, or an attack
//! finding the request that breaks it. The share, not the count: a busy route's usual
//! failures are not a spike, nor a quiet route's one failure.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, DiscreteCDF};

use super::definition::{DetectorDef, ErrorSpikeParams};
use super::episodes::{EpisodeSettings, Episodes, Opening};
use super::incident::{IncidentEvent, Score, Severity};
use super::key::EntityKey;
use super::state::{self, RestoreReport, Shape, StateRow};
use super::{Context, Detector, DetectorStats};
use crate::event::{Request, Timestamp};
use crate::window::{Ewma, KeyTable, RateWindow};

#[derive(Serialize, Deserialize)]
struct KeyState {
    total: RateWindow,
    failed: RateWindow,
    /// Requests and failures per bucket, learned while no incident is open.
    usual_total: Ewma,
    usual_failed: Ewma,
    first_bucket: i64,
}

impl KeyState {
    /// The key's usual failure share (a floor keeps a spotless route from making one
    /// failure an anomaly).
    fn usual_share(&self, floor: f64) -> f64 {
        let total = self.usual_total.mean();
        if total <= 0.0 {
            return floor;
        }
        (self.usual_failed.mean() / total).max(floor)
    }
}

pub struct ErrorSpike<K: EntityKey> {
    id: String,
    severity: Severity,
    params: ErrorSpikeParams,
    alpha: f64,
    scratch: K::Scratch,
    keys: KeyTable<K, KeyState>,
    episodes: Episodes<K>,
}

impl<K: EntityKey> ErrorSpike<K> {
    pub fn new(def: &DetectorDef, params: &ErrorSpikeParams) -> Self {
        ErrorSpike {
            id: def.id.clone(),
            severity: def.severity,
            alpha: Ewma::alpha_for_half_life(params.half_life_buckets),
            scratch: K::Scratch::default(),
            keys: KeyTable::new(params.capacity),
            episodes: Episodes::new(EpisodeSettings::of(def, params.quiet_nanos)),
            params: params.clone(),
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            kind: "error_spike",
            window: self.params.window,
        }
    }
}

/// Learns a closed bucket's count and the empty buckets after it. Early on the plain mean
/// of the buckets so far (a weight of at least 1/n): an EWMA seeded with its first bucket
/// would let one odd minute at the start set the usual share for hours.
fn learn(usual: &mut Ewma, count: u32, empty: u64, alpha: f64) {
    let weight = |usual: &Ewma| alpha.max(1.0 / (f64::from(usual.observed()) + 1.0));
    usual.update(f64::from(count), weight(usual));
    usual.update_zeros(empty, weight(usual));
}

/// A failed response: the server side failed (5xx), not the client (4xx).
fn failed(req: &Request<'_>) -> bool {
    req.status.is_some_and(|s| (500..600).contains(&s))
}

impl<K: EntityKey> Detector for ErrorSpike<K> {
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
        let (Some(ts), Some(key)) = (req.ts, K::of_request(req, ctx, &mut self.scratch)) else {
            return;
        };
        let spec = self.params.window;
        let bucket = spec.bucket_of(ts);
        let open = self.episodes.is_open(&key);
        let alpha = self.alpha;
        let state = self.keys.get_or_insert(key.clone(), || KeyState {
            total: RateWindow::new(bucket),
            failed: RateWindow::new(bucket),
            usual_total: Ewma::default(),
            usual_failed: Ewma::default(),
            first_bucket: bucket,
        });
        let (usual_total, usual_failed) = (&mut state.usual_total, &mut state.usual_failed);
        // An anomaly must not become the baseline it is judged against.
        state.total.record(&spec, bucket, |count, empty| {
            if !open {
                learn(usual_total, count, empty, alpha);
            }
        });
        state.failed.advance(&spec, bucket, |count, empty| {
            if !open {
                learn(usual_failed, count, empty, alpha);
            }
        });
        let is_failure = failed(req);
        if is_failure {
            state.failed.add(&spec, bucket, 1);
        }
        let (total, failures) = (state.total.sum(), state.failed.sum());
        let share = f64::from(failures) / f64::from(total.max(1));
        let usual = state.usual_share(self.params.usual_floor);
        let anomalous = is_failure
            && failures >= self.params.min_failures
            && share >= self.params.min_share
            && share >= self.params.ratio * usual;
        if open {
            self.episodes
                .touch(&key, req, ts, line, f64::from(failures), anomalous);
            return;
        }
        let trusted = bucket - state.first_bucket >= self.params.min_history_buckets;
        if ctx.learning || !trusted || !anomalous {
            return;
        }
        // How unlikely this many failures are at the usual share.
        let p_value = Binomial::new(usual.min(1.0), u64::from(total))
            .map(|binomial| binomial.sf(u64::from(failures) - 1))
            .unwrap_or(0.0);
        let threshold = self
            .params
            .p_value
            .min(self.params.false_alarm_budget / self.keys.len().max(1) as f64);
        if p_value >= threshold {
            return;
        }
        let window_secs = spec.window_nanos() / 1_000_000_000;
        let window_start = spec.bucket_start(bucket + 1 - spec.buckets() as i64);
        self.episodes.open(
            key.clone(),
            Opening {
                started_at: window_start,
                detected_at: ts,
                severity: self.severity,
                score: Score {
                    observed: share,
                    expected: usual,
                    p_value: Some(p_value),
                },
                summary: format!(
                    "{key} failed {failures} of {total} requests in {window_secs}s ({:.0}%), usually {:.1}%",
                    share * 100.0,
                    usual * 100.0
                ),
                line,
                req,
            },
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
        DetectorStats::of(&self.keys, &self.episodes)
    }

    /// Only per-key rows: a route's usual share is its own. Without them every route
    /// would wait out `min_history` again after a restart.
    fn snapshot(&self, _now: Timestamp, rows: &mut Vec<StateRow>) {
        let (id, shape) = (&self.id, &self.shape());
        state::snapshot_windowed(id, shape, &self.keys, &self.episodes, rows);
    }

    fn restore(&mut self, rows: Vec<StateRow>) -> RestoreReport {
        state::restore_windowed(&self.shape(), &mut self.keys, &mut self.episodes, rows)
    }
}

impl state::Windowed for KeyState {
    fn windows(&self) -> [&RateWindow; 2] {
        [&self.total, &self.failed]
    }
}
