//! `scanner` and `brute_force`: count a key's "signal" requests in a sliding window.
//! A scanner's signal is an error status *or* a sensitive path; a brute force's is a
//! failed-auth status *and* an auth route.

use std::net::IpAddr;
use std::sync::Arc;

use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};

use super::definition::{DetectorDef, SignalParams};
use super::episodes::{EpisodeSettings, Episodes, Opening};
use super::incident::{IncidentEvent, Score, Severity};
use super::path_match::{matches, matches_field, target_automaton, MatchField, PathMatch};
use super::state::{self, RestoreReport, Shape, StateRow};
use super::{Context, Detector, DetectorStats};
use crate::event::{Request, Timestamp};
use crate::window::{Doorkeeper, KeyTable, RateWindow};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    Scanner,
    BruteForce,
}

impl SignalKind {
    fn name(self) -> &'static str {
        match self {
            SignalKind::Scanner => "scanner",
            SignalKind::BruteForce => "brute_force",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            SignalKind::Scanner => "probe points (an exploit or sensitive path 2, another miss 1)",
            SignalKind::BruteForce => "failed logins",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KeyState {
    signals: RateWindow,
    total: RateWindow,
    first_signal: Timestamp,
    /// Hashes of the key's latest signal paths (with `distinct`).
    #[serde(default)]
    recent: RecentPaths,
    /// The key's current run of identical refusals (brute_force with `burst_count`).
    #[serde(default)]
    refusals: RefusalRun,
}

/// Identical refusals in a row: the same target answered the same way, again and again.
#[derive(Clone, Default, Serialize, Deserialize)]
struct RefusalRun {
    /// Hash of (target, status, size) of the run's answers; 0: no run.
    answer: u32,
    count: u32,
    started: Timestamp,
}

impl RefusalRun {
    /// Adds one refusal; the run's length after it. A different answer, or one after
    /// `within` of the run's start, starts a new run.
    fn push(&mut self, answer: u32, ts: Timestamp, within: i64) -> u32 {
        if answer == self.answer && ts.nanos().saturating_sub(self.started.nanos()) <= within {
            self.count += 1;
        } else {
            *self = RefusalRun {
                answer,
                count: 1,
                started: ts,
            };
        }
        self.count
    }
}

/// The last few signal paths of a key, as hashes: a path seen among them is not counted
/// again. Small and fixed, so a key costs the same whatever it sends.
#[derive(Clone, Default, Serialize, Deserialize)]
struct RecentPaths {
    hashes: [u32; RECENT_PATHS],
    next: u8,
}

const RECENT_PATHS: usize = 16;

impl RecentPaths {
    /// True when `hash` is new (and remembers it).
    fn insert(&mut self, hash: u32) -> bool {
        if self.hashes.contains(&hash) {
            return false;
        }
        self.hashes[self.next as usize] = hash;
        self.next = ((self.next as usize + 1) % RECENT_PATHS) as u8;
        true
    }
}

/// A request target's hash for `RecentPaths` (path and query: an exploit varies its
/// parameters, a retry does not); 0 is reserved for "empty slot".
fn path_hash(req: &Request<'_>) -> u32 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = foldhash::fast::FixedState::with_seed(0x5ca1_ab1e).build_hasher();
    match &req.path {
        Some(path) => {
            path.hash(&mut hasher);
            req.query.hash(&mut hasher);
        }
        None => req.request_line.hash(&mut hasher),
    }
    (hasher.finish() as u32).max(1)
}

/// A refusal's answer for `RefusalRun`: target, status and size; never 0.
fn answer_hash(req: &Request<'_>) -> u32 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = foldhash::fast::FixedState::with_seed(0x0401_0401).build_hasher();
    req.path.hash(&mut hasher);
    req.status.hash(&mut hasher);
    req.bytes_sent.hash(&mut hasher);
    (hasher.finish() as u32).max(1)
}

/// What a request tells a scanner detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    None,
    /// An error status (on a probe-like request).
    Error,
    /// A sensitive path or an attack pattern (for a brute force: a failed login).
    Path,
    /// A known exploit's request: counts on every repeat.
    Exploit,
}

impl Signal {
    /// A scanner's points: asking for a known-sensitive path or sending an attack pattern
    /// says more than a miss (four such probes weigh as much as eight misses).
    fn weight(self, kind: SignalKind) -> u32 {
        match (self, kind) {
            (Signal::None, _) => 0,
            (Signal::Path | Signal::Exploit, SignalKind::Scanner) => 2,
            _ => 1,
        }
    }
}

pub struct SignalCount {
    id: String,
    kind: SignalKind,
    severity: Severity,
    params: SignalParams,
    /// Status → counts as a signal, indexed by status code.
    statuses: Arc<[bool; 600]>,
    /// Status → a refusal on any route (brute_force bursts), indexed by status code.
    refused: [bool; 600],
    paths: Option<Arc<AhoCorasick>>,
    /// This detector's bit in the engine's `PathMatch`, when it has one.
    path_bit: Option<u8>,
    /// Exploit pattern sets (path, query), each with its field and bit.
    exploits: [Option<ExploitSet>; 2],
    keys: KeyTable<IpAddr, KeyState>,
    episodes: Episodes<IpAddr>,
    doorkeeper: Doorkeeper,
}

fn ip_hash(ip: IpAddr) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0xd00e).hash_one(ip)
}

type ExploitSet = (Arc<AhoCorasick>, MatchField, Option<u8>);

/// Status → listed, indexed by status code (the definition checked they are below 600).
fn status_table(list: &[u16]) -> [bool; 600] {
    let mut table = [false; 600];
    for &status in list {
        table[status as usize] = true;
    }
    table
}

fn pattern_set(patterns: &[String]) -> Option<Arc<AhoCorasick>> {
    (!patterns.is_empty())
        .then(|| Arc::new(target_automaton(patterns).expect("definition checked the patterns")))
}

impl SignalCount {
    pub fn new(
        def: &DetectorDef,
        kind: SignalKind,
        params: &SignalParams,
        path_match: &mut PathMatch,
    ) -> Self {
        let statuses = status_table(&params.statuses);
        let refused = status_table(&params.refused_statuses);
        let paths = pattern_set(&params.paths);
        // A brute force only asks about the path of a failed login (and, counting bursts,
        // of a 2xx answer: a form login re-rendered): match no other.
        let gate = (kind == SignalKind::BruteForce).then(|| {
            let mut gate = statuses;
            if params.burst_count > 0 {
                gate[200..300].fill(true);
            }
            Arc::new(gate)
        });
        let statuses = Arc::new(statuses);
        let path_bit = paths
            .clone()
            .and_then(|set| path_match.register(set, &params.paths, gate));
        let exploits = [
            (&params.exploit_paths, MatchField::Path),
            (&params.exploit_queries, MatchField::QueryRequestLine),
        ]
        .map(|(patterns, field)| {
            pattern_set(patterns).map(|set| {
                let bit = path_match.register_on(set.clone(), patterns, None, field);
                (set, field, bit)
            })
        });
        SignalCount {
            id: def.id.clone(),
            kind,
            severity: def.severity,
            statuses,
            refused,
            paths,
            path_bit,
            exploits,
            keys: KeyTable::new(params.capacity),
            doorkeeper: Doorkeeper::default(),
            episodes: Episodes::new(EpisodeSettings::of(def, params.quiet_nanos)),
            params: params.clone(),
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            kind: self.kind.name(),
            window: self.params.window,
        }
    }

    /// Whether the request's target matches the detector's paths.
    fn path_matches(&self, req: &Request<'_>, ctx: &Context<'_>) -> bool {
        match (ctx.path_bits, self.path_bit) {
            // Matched already, on a decode thread.
            (Some(bits), Some(bit)) => bits & (1 << bit) != 0,
            _ => self.paths.as_ref().is_some_and(|set| matches(set, req)),
        }
    }

    /// A brute force's refusal, as its answer's hash: a `refused_statuses` answer on any
    /// route, or a 2xx answer to a POST on an auth route. `None` when not counting bursts.
    fn refusal(&self, req: &Request<'_>, ctx: &Context<'_>) -> Option<u32> {
        if self.params.burst_count == 0 {
            return None;
        }
        let status = req.status? as usize;
        let refused = self.refused.get(status).copied().unwrap_or(false)
            || ((200..300).contains(&status)
                && req.method.as_deref() == Some(b"POST".as_slice())
                && self.path_matches(req, ctx));
        refused.then(|| answer_hash(req))
    }

    fn signal(&self, req: &Request<'_>, ctx: &Context<'_>) -> Signal {
        let status = req
            .status
            .is_some_and(|s| self.statuses.get(s as usize).copied().unwrap_or(false));
        let path = || self.path_matches(req, ctx);
        let exploit = || {
            (self.exploits.iter().flatten()).any(|(set, field, bit)| match (ctx.path_bits, bit) {
                (Some(bits), Some(bit)) => bits & (1 << bit) != 0,
                _ => matches_field(set, req, *field),
            })
        };
        match self.kind {
            SignalKind::Scanner if exploit() => Signal::Exploit,
            SignalKind::Scanner if path() => Signal::Path,
            SignalKind::Scanner if status && self.probe_like(req) => Signal::Error,
            SignalKind::BruteForce if status && path() => Signal::Path,
            _ => Signal::None,
        }
    }

    /// Whether an error response looks like a probe rather than a browser's missing asset:
    /// no Referer (a page of the site did not ask for it) and not a static-asset path.
    fn probe_like(&self, req: &Request<'_>) -> bool {
        let referred = req
            .referer
            .as_deref()
            .is_some_and(|r| !r.is_empty() && r != b"-");
        if self.params.ignore_referred && referred {
            return false;
        }
        let Some(path) = req.path.as_deref() else {
            return true;
        };
        !self.params.ignore_suffixes.iter().any(|suffix| {
            path.len() >= suffix.len()
                && path[path.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
        })
    }
}

impl Detector for SignalCount {
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
        let (Some(ip), Some(ts)) = (req.client_ip, req.ts) else {
            return;
        };
        let spec = self.params.window;
        let bucket = spec.bucket_of(ts);
        let kind_of_signal = self.signal(req, ctx);
        let weight = kind_of_signal.weight(self.kind);
        let signal = weight > 0;
        let distinct = self.params.distinct;
        // A weak signal (a miss, not a sensitive path) from an unknown key only passes the
        // doorkeeper: one-off misses from a flood of addresses never churn the table.
        if kind_of_signal == Signal::Error
            && !self.keys.contains(&ip)
            && !self.doorkeeper.seen_before(ip_hash(ip))
        {
            return;
        }
        let refusal = self.refusal(req, ctx);
        // Keys are tracked from their first signal on; other keys cost one lookup.
        let state = if signal || refusal.is_some() {
            self.keys.get_or_insert(ip, || KeyState {
                signals: RateWindow::new(bucket),
                total: RateWindow::new(bucket),
                first_signal: ts,
                recent: RecentPaths::default(),
                refusals: RefusalRun::default(),
            })
        } else {
            match self.keys.peek_mut(&ip) {
                Some(state) => state,
                None => return,
            }
        };
        state.total.record(&spec, bucket, |_, _| {});
        state.signals.advance(&spec, bucket, |_, _| {});
        // With `distinct`, a path repeated among the key's recent signals adds nothing
        // (an exploit's repeats still count: retrying a payload is the attack).
        let signal = signal
            && (!distinct
                || kind_of_signal == Signal::Exploit
                || state.recent.insert(path_hash(req)));
        if signal {
            state.signals.add(&spec, bucket, weight);
        }
        let run = refusal.map_or(0, |answer| {
            (state.refusals).push(answer, ts, self.params.burst_within_nanos)
        });
        let count = state.signals.sum();
        let total = state.total.sum();
        let min_count = self.params.min_count as f64;
        let burst = self.params.burst_count;
        if self.episodes.is_open(&ip) {
            let anomalous = (signal && count as f64 >= self.params.sustain * min_count)
                || (burst > 0 && run >= burst);
            self.episodes
                .touch(&ip, req, ts, line, count.max(run) as f64, anomalous);
            return;
        }
        let share = |n: u32| n as f64 / total.max(1) as f64 >= self.params.min_fraction;
        let by_count = signal && count >= self.params.min_count && share(count);
        let by_burst = burst > 0 && run >= burst && share(run);
        if !(by_count || by_burst) {
            return;
        }
        let window_secs = spec.window_nanos() / 1_000_000_000;
        let window_start = spec.bucket_start(bucket + 1 - spec.buckets() as i64);
        let (started_at, observed, expected, summary) = if by_count {
            (
                window_start.max(state.first_signal),
                count,
                min_count,
                format!(
                    "{ip} scored {count} {} over {total} requests in {window_secs}s",
                    self.kind.describe(),
                ),
            )
        } else {
            let within = self.params.burst_within_nanos as f64 / 1e9;
            (
                state.refusals.started,
                run,
                burst as f64,
                format!(
                    "{ip} was refused {run} times in a row, one target answered alike, \
                     within {within}s ({total} requests in {window_secs}s)",
                ),
            )
        };
        self.episodes.open(
            ip,
            Opening {
                started_at,
                detected_at: ts,
                severity: self.severity,
                score: Score {
                    observed: observed as f64,
                    expected,
                    p_value: None,
                },
                summary,
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

    /// Only per-key rows: a signal count learns nothing across keys.
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
        [&self.total, &self.signals]
    }
}
