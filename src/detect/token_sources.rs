//! `token_many_sources`: one credential (a token, an API key, a user) used from unusually many
//! addresses at once: a leaked key shared around, a credential-stuffing list replayed from a
//! proxy pool. Tokens are fingerprinted with a keyed hash (`fp_` + 16 hex digits of
//! HMAC-SHA256) the moment they are first seen: the raw token is never kept, and evidence
//! lines carry the fingerprint in its place.

use std::net::IpAddr;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::definition::{
    DetectorDef, IpManyTokensParams, TokenNewSourceParams, TokenSourcesParams,
};
use super::episodes::{EpisodeSettings, Episodes, Opening};
use super::incident::{IncidentEvent, Score, Severity};
use super::state::{self, RestoreReport, Shape, StateRow, TableKey};
use super::{Context, Detector, DetectorStats};
use crate::event::{Request, Timestamp};
use crate::window::{Ewma, KeyTable, WindowSpec};

/// `fp_` + the first 16 hex digits of HMAC-SHA256(key, token): the contract the scorer and
/// the analysts' tools read.
pub fn fingerprint(key: &[u8], token: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(token);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("fp_{hex}")
}

/// The request's credential, if it carries one.
pub fn token_of<'r>(req: &'r Request<'_>) -> Option<&'r [u8]> {
    req.user
        .as_deref()
        .filter(|user| !user.is_empty() && *user != b"-")
}

/// Addresses remembered per token (the stalest is forgotten first).
const MAX_ADDRESSES: usize = 64;

#[derive(Serialize, Deserialize)]
struct TokenState {
    /// Saved as its row's entity.
    #[serde(skip)]
    fingerprint: Arc<str>,
    first_seen: Timestamp,
    /// (address, bucket first seen, bucket last seen).
    addresses: Vec<(IpAddr, i64, i64)>,
    /// The usual number of distinct addresses per window, learned bucket by bucket.
    usual: Ewma,
    learned_bucket: i64,
}

impl TokenState {
    fn see(&mut self, ip: IpAddr, bucket: i64) {
        if let Some(slot) = self.addresses.iter_mut().find(|(a, _, _)| *a == ip) {
            slot.2 = bucket;
        } else if self.addresses.len() < MAX_ADDRESSES {
            self.addresses.push((ip, bucket, bucket));
        } else if let Some(stalest) = self.addresses.iter_mut().min_by_key(|(_, _, b)| *b) {
            *stalest = (ip, bucket, bucket);
        }
    }

    fn distinct_since(&self, first_bucket: i64) -> usize {
        self.addresses
            .iter()
            .filter(|(_, _, b)| *b >= first_bucket)
            .count()
    }

    /// When the addresses new in this window began to appear: the episode's start.
    fn new_since(&self, first_bucket: i64) -> Option<i64> {
        self.addresses
            .iter()
            .filter(|(_, first, _)| *first >= first_bucket)
            .map(|(_, first, _)| *first)
            .min()
    }
}

pub struct TokenSources {
    id: String,
    severity: Severity,
    params: TokenSourcesParams,
    tokens_hash: TokenHasher,
    alpha: f64,
    /// By a keyed 64-bit hash of the token (the table never holds the token itself).
    tokens: KeyTable<u64, TokenState>,
    episodes: Episodes<Arc<str>>,
}

impl TokenSources {
    pub fn new(def: &DetectorDef, params: &TokenSourcesParams, tokens: TokenHasher) -> Self {
        TokenSources {
            id: def.id.clone(),
            severity: def.severity,
            alpha: Ewma::alpha_for_half_life(params.half_life_buckets),
            tokens: KeyTable::new(params.capacity),
            episodes: Episodes::new(EpisodeSettings::of(def, params.quiet_nanos)),
            params: params.clone(),
            tokens_hash: tokens,
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            kind: "token_many_sources",
            window: self.params.window,
        }
    }
}

/// A detector's view of tokens: their fingerprints and their keys in its table (a 64-bit
/// hash seeded from the fingerprint key, so the table holds nothing that reveals a token
/// without the key either). The seed is derived once, not per request.
pub struct TokenHasher {
    key: Arc<[u8]>,
    table: foldhash::fast::FixedState,
    /// Tokens arrive as fingerprints already (cluster mode).
    fingerprinted: bool,
}

impl TokenHasher {
    pub fn new(key: Arc<[u8]>, fingerprinted: bool) -> TokenHasher {
        let seed = key
            .iter()
            .fold(0x70c3_u64, |h, b| h.rotate_left(5) ^ u64::from(*b));
        TokenHasher {
            key,
            table: foldhash::fast::FixedState::with_seed(seed),
            fingerprinted,
        }
    }

    fn table_key(&self, token: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.table.hash_one(token)
    }

    fn fingerprint(&self, token: &[u8]) -> String {
        if self.fingerprinted {
            return String::from_utf8_lossy(token).into_owned();
        }
        fingerprint(&self.key, token)
    }
}

/// A token's state in a table keyed by the token's hash. Saved, it is the row of its
/// fingerprint (its episodes' key), the hash as the row's `"key"`: the hash cannot be
/// recomputed without the token, and the fingerprint not from the hash.
trait Fingerprinted {
    fn fingerprint(&self) -> &Arc<str>;
    fn set_fingerprint(&mut self, fingerprint: Arc<str>);
}

impl<S: Fingerprinted> TableKey<S> for u64 {
    type Entity = Arc<str>;

    fn entity(&self, state: &S) -> Arc<str> {
        state.fingerprint().clone()
    }

    fn saved(&self) -> Option<u64> {
        Some(*self)
    }

    fn parse_entity(text: &str) -> Option<Arc<str>> {
        (!text.is_empty()).then(|| text.into())
    }

    fn restored(entity: &Arc<str>, saved: Option<u64>, state: &mut S) -> Option<u64> {
        state.set_fingerprint(entity.clone());
        saved
    }
}

impl Fingerprinted for TokenState {
    fn fingerprint(&self) -> &Arc<str> {
        &self.fingerprint
    }

    fn set_fingerprint(&mut self, fingerprint: Arc<str>) {
        self.fingerprint = fingerprint;
    }
}

impl Fingerprinted for Provenance {
    fn fingerprint(&self) -> &Arc<str> {
        &self.fingerprint
    }

    fn set_fingerprint(&mut self, fingerprint: Arc<str>) {
        self.fingerprint = fingerprint;
    }
}

/// Puts a request's fingerprint in place of its raw token in the line every detector may
/// keep as evidence, once per line for all of them. Recent tokens' fingerprints are cached:
/// an HMAC per line would cost more than parsing it.
pub struct TokenMask {
    tokens: TokenHasher,
    /// Direct-mapped by the token's table key.
    cache: Vec<(u64, Option<Arc<str>>)>,
    line: Vec<u8>,
}

const MASK_SLOTS: usize = 1024;

impl TokenMask {
    pub fn new(tokens: TokenHasher) -> TokenMask {
        TokenMask {
            tokens,
            cache: vec![(0, None); MASK_SLOTS],
            line: Vec::new(),
        }
    }

    /// `line` with `req`'s token replaced by its fingerprint: where the parser found it
    /// when the token is a slice of the line, else wherever it occurs.
    pub fn mask<'a>(&'a mut self, req: &Request<'_>, line: &'a [u8]) -> &'a [u8] {
        let Some(token) = token_of(req) else {
            return line;
        };
        let key = self.tokens.table_key(token);
        let slot = &mut self.cache[key as usize % MASK_SLOTS];
        if slot.0 != key || slot.1.is_none() {
            *slot = (key, Some(self.tokens.fingerprint(token).into()));
        }
        let fingerprint = slot.1.as_deref().expect("filled above");
        self.line.clear();
        let start = (token.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
        if start <= line.len() && line.len() - start >= token.len() {
            self.line.extend_from_slice(&line[..start]);
            self.line.extend_from_slice(fingerprint.as_bytes());
            self.line.extend_from_slice(&line[start + token.len()..]);
        } else {
            self.line = masked(line, token, fingerprint);
        }
        &self.line
    }
}

/// The line with every occurrence of the token replaced by its fingerprint.
pub fn masked(line: &[u8], token: &[u8], fingerprint: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = memchr::memmem::find(rest, token) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(fingerprint.as_bytes());
        rest = &rest[at + token.len()..];
    }
    out.extend_from_slice(rest);
    out
}

impl Detector for TokenSources {
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
        let (Some(token), Some(ip), Some(ts)) = (token_of(req), req.client_ip, req.ts) else {
            return;
        };
        let spec = self.params.window;
        let bucket = spec.bucket_of(ts);
        let first_bucket = bucket + 1 - spec.buckets() as i64;
        let hasher = &self.tokens_hash;
        let alpha = self.alpha;
        let state = self
            .tokens
            .get_or_insert(hasher.table_key(token), || TokenState {
                fingerprint: hasher.fingerprint(token).into(),
                first_seen: ts,
                addresses: Vec::new(),
                usual: Ewma::default(),
                learned_bucket: bucket,
            });
        let open = self.episodes.is_open(&state.fingerprint);
        if bucket > state.learned_bucket {
            // The window that just ended teaches the usual spread (not while an incident
            // is open: an attack is not usual).
            if !open {
                let ended = state.distinct_since(state.learned_bucket + 1 - spec.buckets() as i64);
                state.usual.update(ended as f64, alpha);
            }
            state.learned_bucket = bucket;
        }
        state.see(ip, bucket);
        let distinct = state.distinct_since(first_bucket) as f64;
        let min_sources = f64::from(self.params.min_sources);
        let fingerprint = state.fingerprint.clone();
        if open {
            self.episodes.touch(
                &fingerprint,
                req,
                ts,
                line,
                distinct,
                distinct >= self.params.sustain * min_sources,
            );
            return;
        }
        let history = ts.nanos() - state.first_seen.nanos();
        let usual = if history >= self.params.min_history_nanos {
            state.usual.mean().max(1.0)
        } else {
            1.0
        };
        if ctx.learning || distinct < min_sources || distinct < self.params.ratio * usual {
            return;
        }
        let window_start = spec.bucket_start(state.new_since(first_bucket).unwrap_or(first_bucket));
        let started_at = window_start.max(state.first_seen);
        let window_secs = spec.window_nanos() / 1_000_000_000;
        self.episodes.open(
            fingerprint.clone(),
            Opening {
                started_at,
                detected_at: ts,
                severity: self.severity,
                score: Score {
                    observed: distinct,
                    expected: usual,
                    p_value: None,
                },
                summary: format!(
                    "token {fingerprint} used from {distinct} addresses in {window_secs}s \
                     (usually {usual:.0})"
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
        DetectorStats::of(&self.tokens, &self.episodes)
    }

    /// A token's addresses and usual spread survive a restart: relearning, every token
    /// would be new and judged against a spread of one.
    fn snapshot(&self, _now: Timestamp, rows: &mut Vec<StateRow>) {
        let spec = self.params.window;
        state::snapshot_keys(
            &self.id,
            &self.shape(),
            &self.tokens,
            &self.episodes,
            |token: &TokenState| spec.bucket_start(token.learned_bucket),
            rows,
        );
    }

    fn restore(&mut self, rows: Vec<StateRow>) -> RestoreReport {
        state::restore_keys(
            &self.shape(),
            &mut self.tokens,
            &mut self.episodes,
            rows,
            |token: &TokenState| token.addresses.len() <= MAX_ADDRESSES,
        )
    }
}

/// `token_new_source`: a token with a history used from a network it was never seen from
/// *while its usual client is still active*: two parties hold one credential. A client that
/// moves to a new network once (its old address falls silent) is the same party and no
/// incident; so is a single request from elsewhere.
pub struct TokenNewSource {
    id: String,
    severity: Severity,
    params: TokenNewSourceParams,
    tokens_hash: TokenHasher,
    tokens: KeyTable<u64, Provenance>,
    episodes: Episodes<Arc<str>>,
}

/// Addresses a token is known from, kept per token.
const MAX_KNOWN: usize = 16;

/// A new address under watch: is the usual client still active while it is used?
#[derive(Serialize, Deserialize)]
struct Candidate {
    ip: IpAddr,
    since: Timestamp,
    /// Requests from the new address, and from known ones, since it appeared.
    new_requests: u32,
    known_requests: u32,
}

#[derive(Serialize, Deserialize)]
struct Provenance {
    /// Saved as its row's entity.
    #[serde(skip)]
    fingerprint: Arc<str>,
    first_seen: Timestamp,
    /// Requests from known addresses: how established the usual client is.
    known_requests: u32,
    /// (address, last seen).
    known: Vec<(IpAddr, Timestamp)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    candidate: Option<Candidate>,
}

impl Provenance {
    /// Known, or in the network (/24, /64) of a known address (address churn within one
    /// network is the same client).
    fn knows(&self, ip: IpAddr) -> bool {
        let network = super::key::SubnetKey::of_ip(ip);
        self.known
            .iter()
            .any(|(a, _)| *a == ip || super::key::SubnetKey::of_ip(*a) == network)
    }

    fn learn(&mut self, ip: IpAddr, ts: Timestamp) {
        if let Some(slot) = self.known.iter_mut().find(|(a, _)| *a == ip) {
            slot.1 = ts;
        } else if self.known.len() < MAX_KNOWN {
            self.known.push((ip, ts));
        } else if let Some(stalest) = self.known.iter_mut().min_by_key(|(_, t)| *t) {
            *stalest = (ip, ts);
        }
    }
}

impl TokenNewSource {
    pub fn new(def: &DetectorDef, params: &TokenNewSourceParams, tokens: TokenHasher) -> Self {
        TokenNewSource {
            id: def.id.clone(),
            severity: def.severity,
            tokens: KeyTable::new(params.capacity),
            episodes: Episodes::new(EpisodeSettings::of(def, params.quiet_nanos)),
            params: params.clone(),
            tokens_hash: tokens,
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            kind: "token_new_source",
            // No window: one bucket as long as a candidate is watched.
            window: WindowSpec::new(self.params.confirm_nanos, self.params.confirm_nanos)
                .expect("definition checked confirm"),
        }
    }
}

/// When a token was last used (as far as its state tells).
fn last_used(token: &Provenance) -> Timestamp {
    let known = token.known.iter().map(|&(_, at)| at);
    let candidate = token.candidate.as_ref().map(|c| c.since);
    known
        .chain(candidate)
        .fold(token.first_seen, Timestamp::max)
}

impl Detector for TokenNewSource {
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
        let (Some(token), Some(ip), Some(ts)) = (token_of(req), req.client_ip, req.ts) else {
            return;
        };
        let hasher = &self.tokens_hash;
        let state = self
            .tokens
            .get_or_insert(hasher.table_key(token), || Provenance {
                fingerprint: hasher.fingerprint(token).into(),
                first_seen: ts,
                known_requests: 0,
                known: Vec::new(),
                candidate: None,
            });
        let fingerprint = state.fingerprint.clone();
        if self.episodes.is_open(&fingerprint) {
            let from_new = state.candidate.as_ref().is_some_and(|c| c.ip == ip);
            self.episodes
                .touch(&fingerprint, req, ts, line, 1.0, from_new);
            if !from_new {
                state.learn(ip, ts);
            }
            return;
        }
        // A usual client is established by time *and* use: a token seen a handful of times
        // from one address has no "usual" to depart from (light clients roam freely).
        let settled = ts.nanos() - state.first_seen.nanos() >= self.params.min_history_nanos
            && state.known_requests >= self.params.min_known_requests;
        // A candidate not confirmed in time was a move (or a stray): its address is known now.
        if let Some(candidate) = &state.candidate {
            if ts.nanos() - candidate.since.nanos() > self.params.confirm_nanos {
                let moved = candidate.ip;
                state.candidate = None;
                state.learn(moved, ts);
            }
        }
        if !settled || state.knows(ip) {
            if let Some(candidate) = &mut state.candidate {
                if candidate.ip != ip {
                    candidate.known_requests += 1;
                }
            }
            state.known_requests = state.known_requests.saturating_add(1);
            state.learn(ip, ts);
        } else {
            match &mut state.candidate {
                Some(candidate) if candidate.ip == ip => candidate.new_requests += 1,
                Some(_) => {} // one new source at a time; many at once is token_many_sources'
                None => {
                    state.candidate = Some(Candidate {
                        ip,
                        since: ts,
                        new_requests: 1,
                        known_requests: 0,
                    })
                }
            }
        }
        let Some(candidate) = &state.candidate else {
            return;
        };
        let min = self.params.min_requests;
        if ctx.learning || candidate.new_requests < min || candidate.known_requests < min {
            return;
        }
        let (new_ip, since) = (candidate.ip, candidate.since);
        self.episodes.open(
            fingerprint.clone(),
            Opening {
                started_at: since,
                detected_at: ts,
                severity: self.severity,
                score: Score {
                    observed: f64::from(candidate.new_requests),
                    expected: 0.0,
                    p_value: None,
                },
                summary: format!(
                    "token {fingerprint} used from {new_ip}, a network it was never seen from, \
                     while its usual client stayed active ({} and {} requests since)",
                    candidate.new_requests, candidate.known_requests
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
        DetectorStats::of(&self.tokens, &self.episodes)
    }

    /// A token's usual client and the address under watch survive a restart: relearning,
    /// a thief active at the restart would become the usual client.
    fn snapshot(&self, _now: Timestamp, rows: &mut Vec<StateRow>) {
        state::snapshot_keys(
            &self.id,
            &self.shape(),
            &self.tokens,
            &self.episodes,
            last_used,
            rows,
        );
    }

    fn restore(&mut self, rows: Vec<StateRow>) -> RestoreReport {
        state::restore_keys(
            &self.shape(),
            &mut self.tokens,
            &mut self.episodes,
            rows,
            |token: &Provenance| token.known.len() <= MAX_KNOWN,
        )
    }
}

/// `ip_many_tokens`: one address presenting many different credentials in a few minutes,
/// or many that are refused: credential stuffing, key guessing, an account takeover tool.
/// Tokens are counted by their keyed hash; none is kept.
pub struct IpManyTokens {
    id: String,
    severity: Severity,
    params: IpManyTokensParams,
    tokens_hash: TokenHasher,
    addresses: KeyTable<IpAddr, Presented>,
    episodes: Episodes<IpAddr>,
}

/// Credentials per address remembered at most (the stalest is forgotten first).
const MAX_TOKENS: usize = 64;

#[derive(Serialize, Deserialize)]
struct Presented {
    /// (token hash, bucket last presented, refused at least once).
    tokens: Vec<(u64, i64, bool)>,
}

impl Presented {
    fn see(&mut self, token: u64, bucket: i64, refused: bool) {
        if let Some(slot) = self.tokens.iter_mut().find(|(t, _, _)| *t == token) {
            slot.1 = bucket;
            slot.2 |= refused;
        } else if self.tokens.len() < MAX_TOKENS {
            self.tokens.push((token, bucket, refused));
        } else if let Some(stalest) = self.tokens.iter_mut().min_by_key(|(_, b, _)| *b) {
            *stalest = (token, bucket, refused);
        }
    }

    /// (distinct tokens, distinct refused tokens) presented since `first_bucket`.
    fn since(&self, first_bucket: i64) -> (u32, u32) {
        self.tokens
            .iter()
            .filter(|(_, b, _)| *b >= first_bucket)
            .fold((0, 0), |(all, refused), (_, _, r)| {
                (all + 1, refused + u32::from(*r))
            })
    }
}

impl IpManyTokens {
    pub fn new(def: &DetectorDef, params: &IpManyTokensParams, tokens: TokenHasher) -> Self {
        IpManyTokens {
            id: def.id.clone(),
            severity: def.severity,
            addresses: KeyTable::new(params.capacity),
            episodes: Episodes::new(EpisodeSettings::of(def, params.quiet_nanos)),
            params: params.clone(),
            tokens_hash: tokens,
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            kind: "ip_many_tokens",
            window: self.params.window,
        }
    }
}

impl Detector for IpManyTokens {
    fn id(&self) -> &str {
        &self.id
    }

    fn observe(
        &mut self,
        req: &Request<'_>,
        line: &[u8],
        _ctx: &Context<'_>,
        events: &mut Vec<IncidentEvent>,
    ) {
        let (Some(token), Some(ip), Some(ts)) = (token_of(req), req.client_ip, req.ts) else {
            return;
        };
        let spec = self.params.window;
        let bucket = spec.bucket_of(ts);
        let first_bucket = bucket + 1 - spec.buckets() as i64;
        let refused = req.status.is_some_and(|s| s == 401 || s == 403);
        let hash = self.tokens_hash.table_key(token);
        let state = self
            .addresses
            .get_or_insert(ip, || Presented { tokens: Vec::new() });
        state.see(hash, bucket, refused);
        let (distinct, refused_tokens) = state.since(first_bucket);
        let anomalous =
            distinct >= self.params.min_tokens || refused_tokens >= self.params.min_refused;
        if self.episodes.is_open(&ip) {
            self.episodes
                .touch(&ip, req, ts, line, f64::from(distinct), anomalous);
            return;
        }
        if !anomalous {
            return;
        }
        let window_secs = spec.window_nanos() / 1_000_000_000;
        self.episodes.open(
            ip,
            Opening {
                started_at: spec.bucket_start(first_bucket),
                detected_at: ts,
                severity: self.severity,
                score: Score {
                    observed: f64::from(distinct),
                    expected: f64::from(self.params.min_tokens),
                    p_value: None,
                },
                summary: format!(
                    "{ip} presented {distinct} different credentials in {window_secs}s, \
                     {refused_tokens} of them refused"
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
        DetectorStats::of(&self.addresses, &self.episodes)
    }

    /// Only per-key rows, the tokens as their keyed hashes.
    fn snapshot(&self, _now: Timestamp, rows: &mut Vec<StateRow>) {
        let spec = self.params.window;
        state::snapshot_keys(
            &self.id,
            &self.shape(),
            &self.addresses,
            &self.episodes,
            |presented: &Presented| {
                let last = presented.tokens.iter().map(|&(_, bucket, _)| bucket).max();
                last.map_or(Timestamp(i64::MIN), |bucket| spec.bucket_start(bucket))
            },
            rows,
        );
    }

    fn restore(&mut self, rows: Vec<StateRow>) -> RestoreReport {
        state::restore_keys(
            &self.shape(),
            &mut self.addresses,
            &mut self.episodes,
            rows,
            |presented: &Presented| presented.tokens.len() <= MAX_TOKENS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_follow_the_contract() {
        let fp = fingerprint(b"secret-key", b"tok_0fecd793831e34b4");
        assert!(fp.starts_with("fp_"));
        assert_eq!(fp.len(), 3 + 16);
        assert_ne!(fp, fingerprint(b"other-key", b"tok_0fecd793831e34b4"));
        // Python: "fp_" + hmac.new(b"k", b"t", hashlib.sha256).hexdigest()[:16]
        assert_eq!(fingerprint(b"k", b"t"), "fp_e7fcbc16f826ad96");
    }

    #[test]
    fn masking_replaces_every_occurrence() {
        let line = b"1.2.3.4 - tok_abc [..] \"GET /?key=tok_abc\" 200";
        let out = masked(line, b"tok_abc", "fp_0011223344556677");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1.2.3.4 - fp_0011223344556677 [..] \"GET /?key=fp_0011223344556677\" 200"
        );
    }
}
