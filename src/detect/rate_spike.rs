//! `rate_spike`: a key's request count in a sliding window against its own EWMA baseline
//! *and* the population of all keys, with a Poisson tail p-value and count/ratio guards.

use super::key::EntityKey;

use serde::{Deserialize, Serialize};
use statrs::distribution::{DiscreteCDF, Poisson};

use super::definition::{DetectorDef, RateSpikeParams};
use super::episodes::{EpisodeSettings, Episodes, Opening};
use super::incident::{IncidentEvent, Score, Severity};
use super::state::{self, RestoreReport, Shape, StateRow};
use super::{Context, Detector, DetectorStats};
use crate::event::{Request, Timestamp};
use crate::window::{Ewma, KeyTable, PopulationHistogram, RateWindow};

/// Fewest population samples before the population reference is trusted.
const MIN_POPULATION_SAMPLES: u64 = 200;

#[derive(Deserialize)]
#[serde(from = "LoadedKeyState")]
struct KeyState {
    window: RateWindow,
    baseline: Ewma,
    first_bucket: i64,
    /// The key's recent user agents (with `shared_address_agents`).
    agents: Agents,
    /// Distinct sources per bucket (with `min_sources`).
    spread: Option<Box<Spread>>,
    /// What few keys have (a past burst, credentials): boxed, so a table full of
    /// one-request clients does not pay 48 bytes a key for it.
    rare: Option<Box<Rare>>,
    /// Share of the key's recent requests that a page fetched (with
    /// `discount_referred_assets`), in 255ths.
    page_fetches: PageFetches,
}

/// An exponentially weighted share of a key's requests (weight 1/16 each, so about its
/// last sixteen) that were static assets asked for with a Referer: what a page the client
/// opened fetched by itself, not what the client chose to ask for.
#[derive(Clone, Copy, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct PageFetches(u8);

impl PageFetches {
    fn see(&mut self, page_fetch: bool) {
        let target = if page_fetch { 255 } else { 0 };
        self.0 = (i16::from(self.0) + (target - i16::from(self.0)) / 16) as u8;
    }

    /// The part of `count` the client asked for itself.
    fn own(self, count: f64) -> f64 {
        count * (1.0 - f64::from(self.0) / 255.0)
    }

    fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

#[derive(Default)]
struct Rare {
    /// Peak window count of the key's last closed incident and when it ended: a key that
    /// bursts to the same level again (a cron job) is not a new anomaly.
    last_burst: Option<(f32, Timestamp)>,
    /// When the key first made an authenticated, successful request (a known client).
    known_since: Option<Timestamp>,
    /// Its authenticated, successful requests in the window (kept from the first one on:
    /// anonymous clients pay nothing).
    authenticated: Option<RateWindow>,
}

impl KeyState {
    fn last_burst(&self) -> Option<(f32, Timestamp)> {
        self.rare.as_ref().and_then(|rare| rare.last_burst)
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }
}

/// A key's state as saved: flat, the rare fields left out when absent.
#[derive(Serialize)]
struct SavedKeyState<'a> {
    window: &'a RateWindow,
    baseline: &'a Ewma,
    first_bucket: i64,
    #[serde(with = "saved_burst", skip_serializing_if = "Option::is_none")]
    last_burst: Option<(f32, Timestamp)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    known_since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authenticated: Option<&'a RateWindow>,
    #[serde(skip_serializing_if = "no_agents")]
    agents: &'a Agents,
    #[serde(skip_serializing_if = "Option::is_none")]
    spread: Option<&'a Spread>,
    #[serde(skip_serializing_if = "PageFetches::is_zero")]
    page_fetches: PageFetches,
}

fn no_agents(agents: &&Agents) -> bool {
    agents.is_empty()
}

/// `SavedKeyState` read back.
#[derive(Deserialize)]
struct LoadedKeyState {
    window: RateWindow,
    baseline: Ewma,
    first_bucket: i64,
    #[serde(with = "saved_burst", default)]
    last_burst: Option<(f32, Timestamp)>,
    #[serde(default)]
    known_since: Option<Timestamp>,
    #[serde(default)]
    authenticated: Option<RateWindow>,
    #[serde(default)]
    agents: Agents,
    #[serde(default)]
    spread: Option<Box<Spread>>,
    #[serde(default)]
    page_fetches: PageFetches,
}

impl Serialize for KeyState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rare = self.rare.as_deref();
        SavedKeyState {
            window: &self.window,
            baseline: &self.baseline,
            first_bucket: self.first_bucket,
            last_burst: rare.and_then(|rare| rare.last_burst),
            known_since: rare.and_then(|rare| rare.known_since),
            authenticated: rare.and_then(|rare| rare.authenticated.as_ref()),
            agents: &self.agents,
            spread: self.spread.as_deref(),
            page_fetches: self.page_fetches,
        }
        .serialize(serializer)
    }
}

impl From<LoadedKeyState> for KeyState {
    fn from(saved: LoadedKeyState) -> Self {
        let rare = Rare {
            last_burst: saved.last_burst,
            known_since: saved.known_since,
            authenticated: saved.authenticated,
        };
        let any =
            rare.last_burst.is_some() || rare.known_since.is_some() || rare.authenticated.is_some();
        KeyState {
            window: saved.window,
            baseline: saved.baseline,
            first_bucket: saved.first_bucket,
            agents: saved.agents,
            spread: saved.spread,
            rare: any.then(|| Box::new(rare)),
            page_fetches: saved.page_fetches,
        }
    }
}

/// Bits per bucket of a `Spread` sketch: distinct counts up to a few thousand.
const SPREAD_WORDS: usize = 8;
const SPREAD_BITS: f64 = (SPREAD_WORDS * 64) as f64;

/// Distinct sources seen per bucket, as linear-counting bitmaps of 64 bytes: how many
/// clients a key's traffic comes from, whatever the traffic. Only buckets of the window that
/// had a source have a bitmap: most keys of a flood of one-off addresses have one.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Spread {
    slots: Vec<(i64, Bits)>,
    /// The usual number of distinct sources per window, learned while no incident is open.
    usual: Ewma,
}

/// Set bits a bucket's bitmap keeps as a list before it is stored whole: with the tag, they
/// fill the 16 bytes the boxed bitmap takes anyway.
const FEW_BITS: usize = 7;
/// An unused entry of a bit list (bits are below `SPREAD_BITS`).
const NO_BIT: u16 = u16::MAX;

/// One bucket's bitmap: its set bits as a list while there are few (most buckets of most
/// keys have one source: 16 bytes instead of 64), then the bitmap itself. Saved as the
/// bitmap's words either way.
#[derive(Clone, Serialize, Deserialize)]
#[serde(into = "[u64; SPREAD_WORDS]", from = "[u64; SPREAD_WORDS]")]
enum Bits {
    /// Filled from the front; `NO_BIT` after the last.
    Few([u16; FEW_BITS]),
    Bitmap(Box<[u64; SPREAD_WORDS]>),
}

impl Bits {
    const EMPTY: Bits = Bits::Few([NO_BIT; FEW_BITS]);

    fn set(&mut self, bit: u16) {
        match self {
            Bits::Few(few) => {
                // The bit's entry, or the first free one if it is not there.
                if let Some(entry) = few.iter_mut().find(|b| **b == bit || **b == NO_BIT) {
                    *entry = bit;
                    return;
                }
                let mut words = [0u64; SPREAD_WORDS];
                for b in few.iter().chain([&bit]) {
                    words[*b as usize / 64] |= 1 << (b % 64);
                }
                *self = Bits::Bitmap(Box::new(words));
            }
            Bits::Bitmap(words) => words[bit as usize / 64] |= 1 << (bit % 64),
        }
    }

    fn or_into(&self, union: &mut [u64; SPREAD_WORDS]) {
        match self {
            Bits::Few(few) => {
                for &b in few.iter().take_while(|&&b| b != NO_BIT) {
                    union[b as usize / 64] |= 1 << (b % 64);
                }
            }
            Bits::Bitmap(words) => union
                .iter_mut()
                .zip(words.iter())
                .for_each(|(u, w)| *u |= w),
        }
    }
}

impl From<Bits> for [u64; SPREAD_WORDS] {
    fn from(bits: Bits) -> Self {
        let mut words = [0; SPREAD_WORDS];
        bits.or_into(&mut words);
        words
    }
}

impl From<[u64; SPREAD_WORDS]> for Bits {
    fn from(words: [u64; SPREAD_WORDS]) -> Self {
        let ones = words.iter().map(|w| w.count_ones()).sum::<u32>();
        if ones as usize > FEW_BITS {
            return Bits::Bitmap(Box::new(words));
        }
        let mut bits = Bits::EMPTY;
        for (i, word) in words.iter().enumerate() {
            for b in 0..64 {
                if word & (1 << b) != 0 {
                    bits.set((i * 64 + b) as u16);
                }
            }
        }
        bits
    }
}

impl Spread {
    /// Records a source; when a new bucket starts, the window that just ended teaches the
    /// usual spread (unless `learning` is off: an open incident is not usual).
    fn see(&mut self, bucket: i64, buckets: usize, hash: u64, alpha: f64, learning: bool) {
        let index = match self.slots.iter().position(|(b, _)| *b == bucket) {
            Some(index) => index,
            None => {
                if learning {
                    let ended = self.estimate(bucket - 1, buckets);
                    self.usual.update(ended, alpha);
                }
                // Buckets that left the window count no more (a saved dense array's unused
                // slots, `i64::MIN`, go too).
                self.slots.retain(|(b, _)| *b > bucket - buckets as i64);
                // One bitmap at a time: a Vec's first growth would reserve four.
                self.slots.reserve_exact(1);
                self.slots.push((bucket, Bits::EMPTY));
                self.slots.len() - 1
            }
        };
        self.slots[index].1.set((hash % SPREAD_BITS as u64) as u16);
    }

    /// Estimated distinct sources in the window ending at bucket `newest`.
    fn estimate(&self, newest: i64, buckets: usize) -> f64 {
        let mut union = [0u64; SPREAD_WORDS];
        for (bucket, bits) in &self.slots {
            if *bucket <= newest && *bucket > newest - buckets as i64 {
                bits.or_into(&mut union);
            }
        }
        let zeros = SPREAD_BITS - union.iter().map(|w| w.count_ones()).sum::<u32>() as f64;
        if zeros == 0.0 {
            return SPREAD_BITS * SPREAD_BITS.ln();
        }
        -SPREAD_BITS * (zeros / SPREAD_BITS).ln()
    }
}

/// What counts as one source of a key's traffic: the client's network, or, for a key that
/// is itself a network, the client's address.
fn source_hash<K: EntityKey>(req: &Request<'_>) -> Option<u64> {
    use std::hash::BuildHasher;
    let ip = req.client_ip?;
    let state = foldhash::fast::FixedState::with_seed(0x5a7e);
    Some(if K::KIND == crate::event::EntityKind::Subnet {
        state.hash_one(ip)
    } else {
        state.hash_one(super::key::SubnetKey::of_ip(ip).net())
    })
}

/// Slots for recent user agents per key: enough to tell one client from many.
const AGENT_SLOTS: usize = 8;

/// A key's recent distinct user agents, as (hash, bucket last seen), in the order first
/// seen; the stalest is replaced when full. Most keys have one agent: it is kept inline
/// (16 bytes), and only a key with a second one allocates room for all.
#[derive(Clone, Default)]
enum Agents {
    #[default]
    None,
    One(u32, i64),
    Many(u8, Box<[(u32, i64); AGENT_SLOTS]>),
}

impl Agents {
    fn is_empty(&self) -> bool {
        matches!(self, Agents::None)
    }

    fn see(&mut self, hash: u32, bucket: i64) {
        match self {
            Agents::None => *self = Agents::One(hash, bucket),
            Agents::One(h, b) if *h == hash => *b = bucket,
            Agents::One(h, b) => {
                let mut all = Box::new([(0, 0); AGENT_SLOTS]);
                all[..2].copy_from_slice(&[(*h, *b), (hash, bucket)]);
                *self = Agents::Many(2, all);
            }
            Agents::Many(len, all) => {
                let used = *len as usize;
                if let Some(slot) = all[..used].iter_mut().find(|(h, _)| *h == hash) {
                    slot.1 = bucket;
                } else if used < AGENT_SLOTS {
                    all[used] = (hash, bucket);
                    *len += 1;
                } else if let Some(stalest) = all.iter_mut().min_by_key(|(_, b)| *b) {
                    *stalest = (hash, bucket);
                }
            }
        }
    }

    fn as_slice(&self) -> &[(u32, i64)] {
        match self {
            Agents::None | Agents::One(..) => &[],
            Agents::Many(len, all) => &all[..*len as usize],
        }
    }

    /// Distinct agents seen in buckets from `first` on.
    fn since(&self, first: i64) -> usize {
        match self {
            Agents::One(_, b) => usize::from(*b >= first),
            _ => self.as_slice().iter().filter(|(_, b)| *b >= first).count(),
        }
    }
}

/// Saved as a list of `[hash, bucket]`.
impl Serialize for Agents {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Agents::One(h, b) => [(*h, *b)].serialize(serializer),
            _ => self.as_slice().serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Agents {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let saved = Vec::<(u32, i64)>::deserialize(deserializer)?;
        Ok(match saved[..] {
            [] => Agents::None,
            [(h, b)] => Agents::One(h, b),
            _ if saved.len() > AGENT_SLOTS => {
                return Err(serde::de::Error::custom(format!(
                    "{} user agents, at most {AGENT_SLOTS}",
                    saved.len()
                )))
            }
            _ => {
                let mut all = Box::new([(0, 0); AGENT_SLOTS]);
                all[..saved.len()].copy_from_slice(&saved);
                Agents::Many(saved.len() as u8, all)
            }
        })
    }
}

fn agent_hash(req: &Request<'_>) -> u32 {
    use std::hash::BuildHasher;
    let agent = req.user_agent.as_deref().unwrap_or(b"");
    foldhash::fast::FixedState::with_seed(0xa6e7).hash_one(agent) as u32
}

/// An authenticated request the server accepted: a client that holds valid credentials.
fn authenticated_ok(req: &Request<'_>) -> bool {
    req.user
        .as_deref()
        .is_some_and(|user| !user.is_empty() && user != b"-")
        && req.status.is_some_and(|status| status < 400)
}

/// `last_burst` as `{"peak":..,"seen":..}`, the peak bit for bit.
mod saved_burst {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::event::Timestamp;

    #[derive(Serialize, Deserialize)]
    struct Burst {
        #[serde(with = "crate::window::exact")]
        peak: f32,
        seen: Timestamp,
    }

    pub fn serialize<S: Serializer>(
        burst: &Option<(f32, Timestamp)>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        burst
            .map(|(peak, seen)| Burst { peak, seen })
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<(f32, Timestamp)>, D::Error> {
        Ok(Option::<Burst>::deserialize(deserializer)?.map(|b| (b.peak, b.seen)))
    }
}

/// What a rate-spike detector learned across keys: the population of window counts.
#[derive(Serialize, Deserialize)]
struct SavedPopulation<P> {
    population: P,
    /// The population reference; `None` while it is not trusted (infinite).
    #[serde(with = "crate::window::exact::option")]
    reference: Option<f64>,
    refreshed_bucket: i64,
}

/// Share of a burst that must be the known client's authenticated, accepted requests.
const KNOWN_JOB_SHARE: f64 = 0.9;

/// A scheduled job's burst: nearly every request in the window authenticated and accepted,
/// from a client that authenticated `min_history` before the window began. (A stolen
/// credential used from elsewhere is the token detectors' business, not this one's.)
/// What was observed against what was expected: `203.0.113.7 sent 900 requests in 60s,
/// 130x its baseline of 6.9`.
fn summary(
    entity: &impl std::fmt::Display,
    count: f64,
    expected: f64,
    window_secs: i64,
    trusted: bool,
) -> String {
    let ratio = count / expected.max(f64::MIN_POSITIVE);
    let against = if trusted {
        "its baseline"
    } else {
        "the busiest clients' rate"
    };
    format!(
        "{entity} sent {count} requests in {window_secs}s, {ratio:.0}x {against} of {expected:.1}"
    )
}

fn is_known_job(
    state: &KeyState,
    count: f64,
    window_start: Timestamp,
    params: &RateSpikeParams,
) -> bool {
    let Some(Rare {
        known_since: Some(since),
        authenticated: Some(authenticated),
        ..
    }) = state.rare.as_deref()
    else {
        return false;
    };
    let history = params
        .min_history_buckets
        .saturating_mul(params.window.bucket_nanos());
    since.nanos() <= window_start.nanos().saturating_sub(history)
        && authenticated.sum() as f64 >= KNOWN_JOB_SHARE * count
}

pub struct RateSpike<K: EntityKey> {
    id: String,
    severity: Severity,
    params: RateSpikeParams,
    alpha: f64,
    keys: KeyTable<K, KeyState>,
    scratch: K::Scratch,
    population: PopulationHistogram,
    /// One in how many keys this detector sees (see `seeing_one_in`).
    key_share: u32,
    /// The other partitions' populations, as they last published them (cluster mode).
    others: Vec<PopulationHistogram>,
    /// Population quantile of window counts, refreshed once per bucket.
    population_reference: f64,
    refreshed_bucket: i64,
    burst_half_life_buckets: f64,
    episodes: Episodes<K>,
}

impl<K: EntityKey> RateSpike<K> {
    pub fn new(def: &DetectorDef, params: &RateSpikeParams) -> Self {
        RateSpike {
            id: def.id.clone(),
            severity: def.severity,
            alpha: Ewma::alpha_for_half_life(params.half_life_buckets),
            keys: KeyTable::new(params.capacity),
            scratch: K::Scratch::default(),
            // Two epochs of 5 windows each: the population of the last 5 to 10 minutes.
            population: PopulationHistogram::new(params.window.window_nanos() * 5),
            population_reference: f64::INFINITY,
            refreshed_bucket: i64::MIN,
            burst_half_life_buckets: params.burst_memory_nanos as f64
                / params.window.bucket_nanos() as f64,
            episodes: Episodes::new(EpisodeSettings::of(def, params.quiet_nanos)),
            params: params.clone(),
            key_share: 1,
            others: Vec::new(),
        }
    }

    /// This detector sees one in `share` of the keys (a cluster partition): its count of
    /// keys stands for `share` times as many (the false-alarm budget is split as with all of
    /// them), and its population reference is taken over the other partitions' populations
    /// too (`set_populations`), or, until they are known, trusted as soon as all keys'
    /// would be.
    pub fn seeing_one_in(mut self, share: u32) -> Self {
        self.key_share = share.max(1);
        self
    }

    /// The count a window must reach before the key's own baseline is even consulted.
    fn entry_threshold(&self) -> f64 {
        (self.params.min_count as f64).max(self.params.population_ratio * self.population_reference)
    }

    fn shape(&self) -> Shape {
        Shape {
            kind: "rate_spike",
            window: self.params.window,
        }
    }

    fn refresh_population(&mut self, bucket: i64, now: Timestamp) {
        if bucket <= self.refreshed_bucket {
            return;
        }
        self.refreshed_bucket = bucket;
        // Without a population guard (one key: the whole site) only the key's own
        // baseline counts.
        if self.params.population_ratio == 0.0 {
            self.population_reference = 0.0;
            return;
        }
        self.population.advance_to(now.nanos());
        let q = self.params.population_quantile;
        self.population_reference = if self.others.is_empty() {
            // One in `key_share` of the keys: trusted as soon as all of them would be.
            self.population.quantile(
                q,
                MIN_POPULATION_SAMPLES.div_ceil(u64::from(self.key_share)),
            )
        } else {
            self.population
                .quantile_with(&self.others, q, MIN_POPULATION_SAMPLES)
        }
        .map_or(f64::INFINITY, |q| q as f64);
    }
}

/// A static asset asked for with a Referer: a page's own fetch, not the client's choice.
fn is_referred_asset(req: &Request<'_>) -> bool {
    let referred = (req.referer.as_deref()).is_some_and(|r| !r.is_empty() && r != b"-");
    referred && req.path.as_deref().is_some_and(super::key::is_asset)
}

impl<K: EntityKey> Detector for RateSpike<K> {
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
        let (Some(ts), Some(ip)) = (req.ts, K::of_request(req, ctx, &mut self.scratch)) else {
            return;
        };
        let spec = self.params.window;
        let bucket = spec.bucket_of(ts);
        self.refresh_population(spec.bucket_of(ctx.now), ctx.now);
        let entry = self.entry_threshold();
        let open = self.episodes.is_open(&ip);
        let alpha = self.alpha;
        let tracked = self.keys.len().max(1) * self.key_share as usize;
        let state = self.keys.get_or_insert(ip.clone(), || KeyState {
            window: RateWindow::new(bucket),
            baseline: Ewma::default(),
            first_bucket: bucket,
            agents: Agents::default(),
            spread: None,
            rare: None,
            page_fetches: PageFetches::default(),
        });
        if self.params.discount_referred_assets {
            state.page_fetches.see(is_referred_asset(req));
        }
        if self.params.min_sources > 0 {
            if let Some(hash) = source_hash::<K>(req) {
                // Learned like the count's baseline: once the key has `min_history` (a key
                // that appears with its attack has no usual sources, so all are new).
                let full = bucket - state.first_bucket >= self.params.min_history_buckets;
                state.spread.get_or_insert_with(Box::default).see(
                    bucket,
                    spec.buckets(),
                    hash,
                    alpha,
                    full && !open,
                );
            }
        }
        if self.params.shared_address_agents > 0 {
            state.agents.see(agent_hash(req), bucket);
        }
        if self.params.trust_known_clients {
            let ok = authenticated_ok(req);
            let seen = state
                .rare
                .as_ref()
                .is_some_and(|r| r.authenticated.is_some());
            if ok || seen {
                let rare = state.rare();
                if ok {
                    rare.known_since.get_or_insert(ts);
                }
                let window = rare
                    .authenticated
                    .get_or_insert_with(|| RateWindow::new(bucket));
                window.advance(&spec, bucket, |_, _| {});
                if ok {
                    window.add(&spec, bucket, 1);
                }
            }
        }
        let before = state.window.sum();
        // One population sample per key per window period, so busy keys do not
        // outweigh the many quiet ones.
        let periods = spec.buckets() as i64;
        let new_period = bucket.div_euclid(periods) != state.window.head().div_euclid(periods);
        let population = &mut self.population;
        let baseline = &mut state.baseline;
        state.window.record(&spec, bucket, |count, empty| {
            if new_period {
                population.record(before);
            }
            // An anomaly must not become the baseline it is judged against.
            if !open {
                baseline.update(count as f64, alpha);
                baseline.update_zeros(empty, alpha);
            }
        });
        let count = state.window.sum() as f64;
        let buckets = spec.buckets() as f64;
        let trusted = bucket - state.first_bucket >= self.params.min_history_buckets;
        let own_expected = if trusted {
            state.baseline.mean() * buckets
        } else {
            0.0
        };
        let recurring = state.last_burst().map_or(0.0, |(peak, ended)| {
            let age_buckets =
                (ts.nanos() - ended.nanos()).max(0) as f64 / spec.bucket_nanos() as f64;
            peak as f64 * 0.5f64.powf(age_buckets / self.burst_half_life_buckets)
        });
        // A key with no trusted history is judged against the busy end of the population.
        let expected = own_expected.max(self.population_reference).max(1.0);
        let ratio = count / expected;
        let severity = if ratio >= self.params.critical_ratio {
            Severity::Critical
        } else {
            self.severity
        };
        let window_secs = spec.window_nanos() / 1_000_000_000;
        if open {
            let peak_rose = self.episodes.touch(
                &ip,
                req,
                ts,
                line,
                count,
                count >= self.params.sustain * entry,
            );
            if peak_rose {
                // The summary quotes the peak, not the count when the incident opened.
                self.episodes.resummarize(&ip, |incident| {
                    summary(&ip, count, incident.score.expected, window_secs, trusted)
                });
            }
            if severity > self.severity {
                let score = Score {
                    observed: count,
                    expected,
                    p_value: None,
                };
                self.episodes.escalate(&ip, severity, score, events);
            }
            return;
        }
        if ctx.learning || count < entry || count < self.params.own_ratio * own_expected {
            return;
        }
        // A browser's page loads fan out into assets; what the client asked for itself
        // must clear the bar on its own (a single-page app's navigations are not a spike).
        if self.params.discount_referred_assets && state.page_fetches.own(count) < entry {
            return;
        }
        let window_start = spec.bucket_start(bucket + 1 - spec.buckets() as i64);
        if self.params.trust_known_clients && is_known_job(state, count, window_start, &self.params)
        {
            return;
        }
        if self.params.min_sources > 0 {
            let (sources, usual) = state.spread.as_ref().map_or((0.0, 0.0), |spread| {
                (spread.estimate(bucket, spec.buckets()), spread.usual.mean())
            });
            // A spike that brought many new sources: one client hammering a busy route (its
            // usual visitors still there) is that client's story, not the route's.
            let min_sources = f64::from(self.params.min_sources);
            let new_sources = (sources - usual).max(0.0);
            let excess = count - own_expected;
            if new_sources < min_sources
                || new_sources * self.params.max_excess_per_new_source < excess
            {
                return;
            }
        }
        let shared = self.params.shared_address_agents > 0
            && state.agents.since(bucket + 1 - spec.buckets() as i64)
                >= self.params.shared_address_agents as usize;
        if shared && ratio < self.params.critical_ratio {
            return;
        }
        if count < self.params.recurring_ratio * recurring {
            // The known burst is back: refresh when it was last seen (not its level, or a
            // rising burst would ratchet its own bar up and never fire).
            if let Some(Rare {
                last_burst: Some((_, seen)),
                ..
            }) = state.rare.as_deref_mut()
            {
                *seen = ts;
            }
            return;
        }
        let p_value = Poisson::new(expected)
            .map(|poisson| poisson.sf(count as u64 - 1))
            .unwrap_or(0.0);
        // Many keys are tested every window: the per-key threshold shrinks with their
        // number so the whole table keeps to its false-alarm budget.
        let threshold = self
            .params
            .p_value
            .min(self.params.false_alarm_budget / tracked as f64);
        if p_value >= threshold {
            return;
        }
        let first_seen = spec.bucket_start(state.first_bucket);
        let summary = summary(&ip, count, expected, window_secs, trusted);
        self.episodes.open(
            ip,
            Opening {
                started_at: window_start.max(first_seen),
                detected_at: ts,
                severity,
                score: Score {
                    observed: count,
                    expected,
                    p_value: Some(p_value),
                },
                summary,
                line,
                req,
            },
            events,
        );
    }

    fn close_quiet(&mut self, now: Timestamp, events: &mut Vec<IncidentEvent>) {
        let first_new = events.len();
        self.episodes.close_quiet(now, events);
        for event in &events[first_new..] {
            let IncidentEvent::Closed(incident) = event else {
                continue;
            };
            let Ok(ip) = incident.entity.parse::<K>() else {
                continue;
            };
            if let Some(state) = self.keys.peek_mut(&ip) {
                state.rare().last_burst =
                    Some((incident.score.observed as f32, incident.last_seen));
            }
        }
    }

    fn close_all(&mut self, events: &mut Vec<IncidentEvent>) {
        self.episodes.close_all(events);
    }

    fn stats(&self) -> DetectorStats {
        DetectorStats::of(&self.keys, &self.episodes)
    }

    fn population(&self) -> Option<String> {
        (self.key_share > 1 && self.params.population_ratio > 0.0)
            .then(|| serde_json::to_string(&self.population).ok())
            .flatten()
    }

    fn set_populations(&mut self, others: &[String]) {
        let epoch = self.population.epoch_nanos();
        self.others = others
            .iter()
            .filter_map(|text| serde_json::from_str::<PopulationHistogram>(text).ok())
            .filter(|other| other.epoch_nanos() == epoch)
            .collect();
    }

    fn snapshot(&self, now: Timestamp, rows: &mut Vec<StateRow>) {
        let shape = self.shape();
        let population = SavedPopulation {
            population: &self.population,
            reference: Some(self.population_reference).filter(|r| r.is_finite()),
            refreshed_bucket: self.refreshed_bucket,
        };
        rows.push(state::detector_row(&self.id, &shape, now, &population));
        let spec = self.params.window;
        state::snapshot_keys(
            &self.id,
            &shape,
            &self.keys,
            &self.episodes,
            |key: &KeyState| spec.bucket_start(key.window.head()),
            rows,
        );
    }

    fn restore(&mut self, rows: Vec<StateRow>) -> RestoreReport {
        let shape = self.shape();
        let spec = self.params.window;
        let mut report = RestoreReport::default();
        let (own, keyed): (Vec<StateRow>, Vec<StateRow>) =
            rows.into_iter().partition(|row| row.entity.is_empty());
        for row in &own {
            let saved =
                state::parse_detector_row::<SavedPopulation<PopulationHistogram>>(&shape, row)
                    .filter(|saved| {
                        saved.population.epoch_nanos() == self.population.epoch_nanos()
                            && saved.reference.is_none_or(|r| r >= 0.0)
                    });
            let Some(saved) = saved else {
                report.skipped += 1;
                continue;
            };
            self.population = saved.population;
            self.population_reference = saved.reference.unwrap_or(f64::INFINITY);
            self.refreshed_bucket = saved.refreshed_bucket;
            report.restored += 1;
        }
        report.add(state::restore_keys(
            &shape,
            &mut self.keys,
            &mut self.episodes,
            keyed,
            |key: &KeyState| {
                let authenticated = key.rare.as_ref().and_then(|r| r.authenticated.as_ref());
                key.window.fits(&spec) && authenticated.is_none_or(|w| w.fits(&spec))
            },
        ));
        report
    }
}

#[cfg(test)]
mod spread_tests {
    use super::*;

    #[test]
    fn a_spread_keeps_bitmaps_only_for_the_windows_buckets_with_sources() {
        let mut spread = Spread::default();
        spread.see(100, 6, 1, 0.1, true);
        assert_eq!(spread.slots.len(), 1, "one source, one bitmap");
        assert_eq!(spread.slots.capacity(), 1);
        assert!(
            matches!(spread.slots[0].1, Bits::Few(_)),
            "one source: a list"
        );
        for bucket in 101..120 {
            for source in 0..10u64 {
                spread.see(bucket, 6, source * 7919 + bucket as u64, 0.1, true);
            }
        }
        assert_eq!(
            spread.slots.len(),
            6,
            "never more than the window's buckets"
        );
        let estimate = spread.estimate(119, 6);
        assert!((55.0..=65.0).contains(&estimate), "{estimate}");
        assert!(
            matches!(spread.slots[0].1, Bits::Bitmap(_)),
            "ten sources: a bitmap"
        );
        // A gap longer than the window leaves only the new bucket.
        spread.see(200, 6, 3, 0.1, true);
        assert_eq!(spread.slots.len(), 1);
        assert!(spread.estimate(200, 6) < 1.5);
    }

    #[test]
    fn a_bucket_kept_as_a_list_holds_the_bits_its_bitmap_would() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for sources in [0, 1, 6, 7, 8, 30] {
            let mut bits = Bits::EMPTY;
            let mut words = [0u64; SPREAD_WORDS];
            for _ in 0..sources {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let bit = (rng % SPREAD_BITS as u64) as u16;
                bits.set(bit);
                bits.set(bit);
                words[bit as usize / 64] |= 1 << (bit % 64);
            }
            assert_eq!(<[u64; SPREAD_WORDS]>::from(bits.clone()), words);
            let text = serde_json::to_string(&bits).unwrap();
            assert_eq!(text, serde_json::to_string(&words).unwrap());
            let back: Bits = serde_json::from_str(&text).unwrap();
            assert_eq!(<[u64; SPREAD_WORDS]>::from(back), words);
        }
    }
}

#[cfg(test)]
mod agent_tests {
    use super::*;

    #[test]
    fn agents_keep_their_order_and_replace_the_stalest_when_full() {
        let mut agents = Agents::default();
        agents.see(7, 1);
        agents.see(7, 2);
        assert!(
            matches!(agents, Agents::One(7, 2)),
            "one agent stays inline"
        );
        for hash in 1..AGENT_SLOTS as u32 {
            agents.see(hash * 10, 2 + i64::from(hash));
        }
        assert_eq!(agents.since(0), AGENT_SLOTS);
        assert_eq!(agents.since(4), AGENT_SLOTS - 2);
        // The stalest (7, seen at bucket 2) gives way.
        agents.see(99, 20);
        let text = serde_json::to_string(&agents).unwrap();
        assert_eq!(
            text,
            "[[99,20],[10,3],[20,4],[30,5],[40,6],[50,7],[60,8],[70,9]]"
        );
        let back: Agents = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        let one: Agents = serde_json::from_str("[[5,6]]").unwrap();
        assert!(matches!(one, Agents::One(5, 6)));
        assert_eq!(serde_json::to_string(&one).unwrap(), "[[5,6]]");
        let too_many = serde_json::to_string(&vec![(1u32, 1i64); AGENT_SLOTS + 1]).unwrap();
        assert!(serde_json::from_str::<Agents>(&too_many).is_err());
    }
}
