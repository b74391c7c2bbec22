//! Detector definitions: TOML text (built-in files embedded, `--detectors DIR` adds or
//! overrides by id) → raw serde structs → checked and compiled parameters. Every problem is
//! collected with its file and key, so one run reports them all. Reading the directory is
//! I/O and lives at the edge, in `crate::detectors_dir`.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

use super::incident::Severity;
use super::route_rule::RouteRule;
use crate::event::EntityKind;
use crate::window::WindowSpec;

/// Built-in definitions, embedded in the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "rate-spike-ip.toml",
        include_str!("../../detectors/rate-spike-ip.toml"),
    ),
    (
        "scanner-ip.toml",
        include_str!("../../detectors/scanner-ip.toml"),
    ),
    (
        "brute-force-ip.toml",
        include_str!("../../detectors/brute-force-ip.toml"),
    ),
    (
        "rate-spike-subnet.toml",
        include_str!("../../detectors/rate-spike-subnet.toml"),
    ),
    (
        "rate-spike-route.toml",
        include_str!("../../detectors/rate-spike-route.toml"),
    ),
    (
        "rate-spike-global.toml",
        include_str!("../../detectors/rate-spike-global.toml"),
    ),
    (
        "token-many-sources.toml",
        include_str!("../../detectors/token-many-sources.toml"),
    ),
    (
        "token-new-source.toml",
        include_str!("../../detectors/token-new-source.toml"),
    ),
    (
        "ip-many-tokens.toml",
        include_str!("../../detectors/ip-many-tokens.toml"),
    ),
    (
        "bad-user-agent.toml",
        include_str!("../../detectors/bad-user-agent.toml"),
    ),
    (
        "error-spike-route.toml",
        include_str!("../../detectors/error-spike-route.toml"),
    ),
    (
        "new-source-sensitive-route.toml",
        include_str!("../../detectors/new-source-sensitive-route.toml"),
    ),
];

/// A checked, compiled detector definition.
#[derive(Clone, Debug)]
pub struct DetectorDef {
    pub id: String,
    pub entity: EntityKind,
    pub severity: Severity,
    pub description: String,
    pub params: KindParams,
    /// Where it was defined (`built-in:<file>` or a path).
    pub origin: String,
    /// `enabled = false` in a directory switches a built-in off by id.
    pub enabled: bool,
}

#[derive(Clone, Debug)]
pub enum KindParams {
    RateSpike(RateSpikeParams),
    Scanner(SignalParams),
    BruteForce(SignalParams),
    TokenManySources(TokenSourcesParams),
    TokenNewSource(TokenNewSourceParams),
    IpManyTokens(IpManyTokensParams),
    BadAgent(BadAgentParams),
    UnexpectedSource(UnexpectedSourceParams),
    NewSource(NewSourceParams),
    ErrorSpike(ErrorSpikeParams),
}

#[derive(Clone, Debug)]
pub struct IpManyTokensParams {
    pub window: WindowSpec,
    pub min_tokens: u32,
    pub min_refused: u32,
    pub quiet_nanos: i64,
    pub capacity: NonZeroUsize,
}

#[derive(Clone, Debug)]
pub struct ErrorSpikeParams {
    pub window: WindowSpec,
    pub half_life_buckets: f64,
    pub min_history_buckets: i64,
    pub min_failures: u32,
    pub min_share: f64,
    pub ratio: f64,
    pub usual_floor: f64,
    pub p_value: f64,
    pub false_alarm_budget: f64,
    pub quiet_nanos: i64,
    pub capacity: NonZeroUsize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawErrorSpike {
    window: String,
    bucket: String,
    /// Half-life of the key's usual requests and failures per bucket.
    baseline_half_life: String,
    /// History a key needs before a spike can be judged.
    min_history: String,
    /// Fewest failed (5xx) responses in the window that can be a spike...
    min_failures: u32,
    /// ...making up at least this share of the key's requests in the window...
    min_share: f64,
    /// ...and this many times its usual share...
    ratio: f64,
    /// (the usual share is taken as at least this: a spotless route's first failures are
    /// judged against 1 %, not 0)...
    usual_floor: f64,
    /// ...and as unlikely as this under a binomial at the usual share...
    p_value: f64,
    /// ...and than `false_alarm_budget / N` with N keys tracked (as `rate_spike`'s).
    false_alarm_budget: f64,
    quiet: String,
    capacity: usize,
}

impl Default for RawErrorSpike {
    fn default() -> Self {
        RawErrorSpike {
            window: "60s".into(),
            bucket: "10s".into(),
            baseline_half_life: "30m".into(),
            min_history: "10m".into(),
            min_failures: 20,
            min_share: 0.25,
            ratio: 5.0,
            usual_floor: 0.01,
            p_value: 1e-6,
            false_alarm_budget: DEFAULT_FALSE_ALARM_BUDGET,
            quiet: "2m".into(),
            capacity: 20_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct UnexpectedSourceParams {
    pub rule: RouteRule,
    pub allow: Vec<ipnet::IpNet>,
    pub quiet_nanos: i64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawUnexpectedSource {
    /// Hosts the rule is about (`ci.example.com`, `*.example.com`); none: every host.
    hosts: Vec<String>,
    /// Paths, exact or a prefix ending in `*`.
    paths: Vec<String>,
    /// The networks (CIDRs or addresses) that may call them.
    allow: Vec<String>,
    quiet: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewSourceParams {
    pub rule: RouteRule,
    pub min_history_nanos: i64,
    pub forget_nanos: i64,
    pub quiet_nanos: i64,
    pub capacity: NonZeroUsize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNewSource {
    hosts: Vec<String>,
    paths: Vec<String>,
    /// Event time, from the first answered request on the routes, during which the
    /// sources that reach them are learned and none is an incident.
    min_history: String,
    /// A source not seen on the routes for this long is new again.
    forget: String,
    quiet: String,
    /// Sources remembered at most.
    capacity: usize,
}

impl Default for RawNewSource {
    fn default() -> Self {
        RawNewSource {
            hosts: Vec::new(),
            paths: Vec::new(),
            min_history: "30m".into(),
            forget: "30d".into(),
            quiet: "30m".into(),
            capacity: 10_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BadAgentParams {
    pub window: WindowSpec,
    pub agents: Vec<String>,
    pub min_requests: u32,
    pub min_answered: u32,
    pub min_unanswered: u32,
    pub quiet_nanos: i64,
    pub capacity: NonZeroUsize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBadAgent {
    window: String,
    bucket: String,
    /// Case-insensitive substrings of the user agent that name an attack tool.
    agents: Vec<String>,
    /// A tool's requests in the window that open an incident when...
    min_requests: u32,
    /// ...at least this many of them were answered (1xx–3xx): the tool reached content.
    min_answered: u32,
    /// A tool's requests in the window that open an incident however they were answered.
    min_unanswered: u32,
    quiet: String,
    capacity: usize,
}

impl Default for RawBadAgent {
    fn default() -> Self {
        RawBadAgent {
            window: "10m".into(),
            bucket: "20s".into(),
            agents: Vec::new(),
            min_requests: 2,
            min_answered: 1,
            min_unanswered: 8,
            quiet: "5m".into(),
            capacity: 100_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIpManyTokens {
    window: String,
    bucket: String,
    /// Distinct credentials from one address in the window that open an incident...
    min_tokens: u32,
    /// ...or distinct credentials refused (401/403).
    min_refused: u32,
    quiet: String,
    capacity: usize,
}

impl Default for RawIpManyTokens {
    fn default() -> Self {
        RawIpManyTokens {
            window: "5m".into(),
            bucket: "30s".into(),
            min_tokens: 10,
            min_refused: 4,
            quiet: "5m".into(),
            capacity: 100_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TokenNewSourceParams {
    pub min_history_nanos: i64,
    pub confirm_nanos: i64,
    pub min_requests: u32,
    pub min_known_requests: u32,
    pub quiet_nanos: i64,
    pub capacity: NonZeroUsize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTokenNewSource {
    /// Requests from its known addresses before a token's usual client counts as
    /// established (a light client roaming between networks has none).
    min_known_requests: u32,
    /// A token's first addresses, over this long, are its usual client's.
    min_history: String,
    /// How long a new network is watched for concurrent use before it counts as a move.
    confirm: String,
    /// Requests from the new network *and* from known ones after it appeared.
    min_requests: u32,
    quiet: String,
    capacity: usize,
}

impl Default for RawTokenNewSource {
    fn default() -> Self {
        RawTokenNewSource {
            min_known_requests: 20,
            min_history: "10m".into(),
            confirm: "10m".into(),
            min_requests: 3,
            quiet: "10m".into(),
            capacity: 100_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TokenSourcesParams {
    pub window: WindowSpec,
    pub min_sources: u32,
    pub ratio: f64,
    pub min_history_nanos: i64,
    pub half_life_buckets: f64,
    pub sustain: f64,
    pub quiet_nanos: i64,
    pub capacity: NonZeroUsize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTokenSources {
    /// Window the distinct addresses are counted over.
    window: String,
    bucket: String,
    /// Fewest distinct addresses in the window that open an incident.
    min_sources: u32,
    /// ...and at least this many times the token's usual count (once it has history).
    ratio: f64,
    /// History before a token's usual spread is trusted (before: usual = 1).
    min_history: String,
    /// Half-life of the usual spread.
    baseline_half_life: String,
    /// Fraction of `min_sources` that keeps an open incident going.
    sustain: f64,
    quiet: String,
    /// Tokens tracked at most.
    capacity: usize,
}

impl Default for RawTokenSources {
    fn default() -> Self {
        RawTokenSources {
            window: "5m".into(),
            bucket: "30s".into(),
            min_sources: 10,
            ratio: 4.0,
            min_history: "10m".into(),
            baseline_half_life: "1h".into(),
            sustain: 0.5,
            quiet: "5m".into(),
            capacity: 100_000,
        }
    }
}

impl KindParams {
    pub fn kind(&self) -> &'static str {
        match self {
            KindParams::RateSpike(_) => "rate_spike",
            KindParams::Scanner(_) => "scanner",
            KindParams::BruteForce(_) => "brute_force",
            KindParams::TokenManySources(_) => "token_many_sources",
            KindParams::TokenNewSource(_) => "token_new_source",
            KindParams::IpManyTokens(_) => "ip_many_tokens",
            KindParams::BadAgent(_) => "bad_user_agent",
            KindParams::UnexpectedSource(_) => "unexpected_source",
            KindParams::NewSource(_) => "new_source_sensitive_route",
            KindParams::ErrorSpike(_) => "error_spike",
        }
    }
}

#[derive(Clone, Debug)]
pub struct RateSpikeParams {
    pub window: WindowSpec,
    pub half_life_buckets: f64,
    pub min_history_buckets: i64,
    pub min_count: u32,
    pub own_ratio: f64,
    pub population_quantile: f64,
    pub population_ratio: f64,
    pub p_value: f64,
    /// Expected false alarms per window across every key (see the raw field).
    pub false_alarm_budget: f64,
    pub sustain: f64,
    pub critical_ratio: f64,
    pub recurring_ratio: f64,
    pub burst_memory_nanos: i64,
    pub quiet_nanos: i64,
    pub capacity: NonZeroUsize,
    /// A burst made of authenticated, successful requests from a client known (so
    /// authenticated) for `min_history` is not a spike.
    pub trust_known_clients: bool,
    /// This many distinct user agents in the window make the key a shared address (an
    /// office NAT): it fires only at `critical_ratio`. 0: off.
    pub shared_address_agents: u32,
    /// Distinct sources (client networks; addresses for a subnet key) a spike needs. 0: off.
    pub min_sources: u32,
    /// With `min_sources`: the most extra requests per new source a spike may carry.
    pub max_excess_per_new_source: f64,
    /// A key opens only when the share of its requests it asked for itself (not static
    /// assets with a Referer) clears the entry bar.
    pub discount_referred_assets: bool,
}

#[derive(Clone, Debug)]
pub struct SignalParams {
    pub window: WindowSpec,
    pub min_count: u32,
    pub min_fraction: f64,
    pub statuses: Vec<u16>,
    pub paths: Vec<String>,
    pub sustain: f64,
    pub quiet_nanos: i64,
    pub capacity: NonZeroUsize,
    /// Lower-cased path suffixes whose error responses are not signals.
    pub ignore_suffixes: Vec<String>,
    /// Error responses to requests carrying a Referer are not signals.
    pub ignore_referred: bool,
    /// Each path counts once per key among its recent signals.
    pub distinct: bool,
    /// Path and query substrings of known exploits: each request counts, repeats too.
    pub exploit_paths: Vec<String>,
    pub exploit_queries: Vec<String>,
    /// brute_force: this many identical refusals in a row within `burst_within_nanos`
    /// open an incident on any route (0: off).
    pub burst_count: u32,
    pub burst_within_nanos: i64,
    /// brute_force: statuses that are a refusal on any route (an auth challenge).
    pub refused_statuses: Vec<u16>,
}

/// Every problem found, each naming its file and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionErrors(pub Vec<String>);

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(error)?;
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDef {
    /// Unique id; a file in `--detectors DIR` with a built-in's id replaces it.
    id: String,
    /// Detector kind: rate_spike, scanner, brute_force, token_many_sources,
    /// token_new_source, ip_many_tokens, bad_user_agent, unexpected_source or
    /// new_source_sensitive_route or error_spike.
    kind: String,
    /// What the detector keys its statistics by (ip for now).
    entity: EntityKind,
    /// Severity of a new incident.
    severity: Severity,
    /// One line for humans.
    #[serde(default)]
    description: String,
    /// `false` switches a (built-in) detector off.
    #[serde(default = "yes")]
    enabled: bool,
    /// Kind-specific parameters.
    #[serde(default)]
    params: toml::Table,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRateSpike {
    /// Sliding window the request count is taken over.
    window: String,
    /// Bucket width: the window's resolution in event time.
    bucket: String,
    /// Half-life of the key's EWMA baseline.
    baseline_half_life: String,
    /// History a key needs before its own baseline is trusted.
    min_history: String,
    /// Fewest requests in a window that can be a spike.
    min_count: u32,
    /// The window count must be this many times the key's own expected count.
    own_ratio: f64,
    /// Quantile of all keys' window counts used as the population reference.
    population_quantile: f64,
    /// The window count must be this many times the population reference.
    population_ratio: f64,
    /// Poisson tail probability below which the count is anomalous.
    p_value: f64,
    /// Expected false alarms per window across all keys: with N keys tracked, a key's
    /// p-value must also be below `false_alarm_budget / N` (a Bonferroni bound, so a
    /// table of 200,000 addresses tested every window does not alarm more than one of 20).
    false_alarm_budget: f64,
    /// Fraction of the entry threshold that keeps an open incident going.
    sustain: f64,
    /// Ratio (count / expected) at which the incident becomes critical.
    critical_ratio: f64,
    /// A key whose last incident peaked at P only fires again above this many times P
    /// (decayed by `burst_memory`): periodic jobs alert once, not every period.
    recurring_ratio: f64,
    /// Half-life of the memory of a key's last burst.
    burst_memory: String,
    /// Event time without anomalous requests after which the incident closes.
    quiet: String,
    /// Keys tracked at most (least recently seen are evicted).
    capacity: usize,
    /// A burst of authenticated, successful requests (a scheduled job) from a client that
    /// authenticated at least `min_history` earlier is not a spike, even the first time.
    trust_known_clients: bool,
    /// An address with this many distinct user agents in the window is shared (an office
    /// NAT, a carrier-grade NAT): its many users' growth is not one client's spike, so it
    /// fires only at `critical_ratio`. 0 turns the guard off.
    shared_address_agents: u32,
    /// A spike must come from at least this many distinct sources in the window (estimated):
    /// client networks (/24, /64) for route and global keys, addresses for a subnet key.
    /// Fewer, and it is those clients' story, told by the per-IP and per-subnet detectors.
    /// 0 turns it off.
    min_sources: u32,
    /// With `min_sources`, a spike must bring one new source per this many extra requests
    /// in the window: a botnet's flood does; one scraper riding a crowd of new visitors
    /// (its excess far beyond what they each add) does not.
    max_excess_per_new_source: f64,
    /// The entry bar is held against the part of a key's count it asked for itself: static
    /// assets (`.js`, `.css`, images, fonts…) asked for with a Referer were fetched by a
    /// page the client opened, and a single-page app's navigation fetches dozens in
    /// seconds. Population and baselines still count every request.
    discount_referred_assets: bool,
}

impl Default for RawRateSpike {
    fn default() -> Self {
        RawRateSpike {
            window: "60s".into(),
            bucket: "10s".into(),
            baseline_half_life: "15m".into(),
            min_history: "4m".into(),
            min_count: 60,
            own_ratio: 3.0,
            population_quantile: 0.9,
            population_ratio: 6.0,
            p_value: 1e-6,
            false_alarm_budget: DEFAULT_FALSE_ALARM_BUDGET,
            sustain: 0.5,
            critical_ratio: 100.0,
            recurring_ratio: 1.5,
            burst_memory: "1h".into(),
            quiet: "2m".into(),
            capacity: 200_000,
            trust_known_clients: false,
            discount_referred_assets: false,
            shared_address_agents: 0,
            min_sources: 0,
            max_excess_per_new_source: 100.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSignal {
    /// Sliding window the signal requests are counted over.
    window: String,
    /// Bucket width.
    bucket: String,
    /// Fewest signal requests in a window that open an incident.
    min_count: u32,
    /// Signal requests must be at least this fraction of the key's requests in the window.
    min_fraction: f64,
    /// Response statuses that count (scanner: any of these *or* a path match;
    /// brute_force: one of these *and* a path match).
    statuses: Vec<u16>,
    /// Case-insensitive substrings of the request target.
    paths: Vec<String>,
    /// Fraction of `min_count` that keeps an open incident going.
    sustain: f64,
    /// Event time without signal requests after which the incident closes.
    quiet: String,
    /// Keys tracked at most.
    capacity: usize,
    /// Error responses on paths ending in one of these (static assets a page refers to:
    /// a missing image is the site's bug, not a probe) are not signals. Path patterns
    /// still are.
    ignore_suffixes: Vec<String>,
    /// Error responses to requests with a Referer (a browser following the site's own
    /// links) are not signals. Path patterns still are.
    ignore_referred: bool,
    /// Count each path once among the key's recent signals: a scanner probes many paths,
    /// a retrying client repeats one.
    distinct: bool,
    /// Case-insensitive substrings of the path that mark a known exploit (scanner only).
    /// Each such request counts 2, repeats included: an exploit is retried and sprayed.
    exploit_paths: Vec<String>,
    /// The same, searched in the raw request line (method, target, protocol) of requests
    /// with a query string, in formats that log one: `" /?author="` is an author lookup
    /// on the site root.
    exploit_queries: Vec<String>,
    /// brute_force: this many identical refusals in a row (same target, status and size),
    /// within `burst_within`, open an incident whatever the route (0: off). A refusal is a
    /// `refused_statuses` answer on any route, or a 2xx answer to a POST on an auth route
    /// (a form login re-rendering itself). People do not retype a password six times in
    /// twenty seconds; tools do, and a page's own requests go to many targets, not one.
    burst_count: u32,
    /// The time those refusals must fall within.
    burst_within: String,
    /// Statuses that refuse a credential on any route (401: the server asked for one).
    refused_statuses: Vec<u16>,
}

impl Default for RawSignal {
    fn default() -> Self {
        RawSignal {
            window: "60s".into(),
            bucket: "10s".into(),
            min_count: 10,
            min_fraction: 0.0,
            statuses: Vec::new(),
            paths: Vec::new(),
            sustain: 0.3,
            quiet: "2m".into(),
            capacity: 100_000,
            ignore_suffixes: Vec::new(),
            ignore_referred: false,
            distinct: false,
            exploit_paths: Vec::new(),
            exploit_queries: Vec::new(),
            burst_count: 0,
            burst_within: "20s".into(),
            refused_statuses: Vec::new(),
        }
    }
}

/// Expected false alarms per window, across all of a detector's keys, when a definition
/// does not say.
pub const DEFAULT_FALSE_ALARM_BUDGET: f64 = 1e-4;

/// The most keys one detector may track (its table is allocated at start).
pub const MAX_CAPACITY: usize = 10_000_000;
/// Roughly what one tracked key costs (table slot, state, window).
const BYTES_PER_KEY: usize = 200;

/// Collects errors for one file.
struct Checker<'o> {
    origin: &'o str,
    errors: Vec<String>,
}

impl Checker<'_> {
    fn error(&mut self, key: &str, message: impl fmt::Display) {
        self.errors
            .push(format!("{}: {key}: {message}", self.origin));
    }

    fn duration(&mut self, key: &str, text: &str) -> i64 {
        match humantime::parse_duration(text) {
            Ok(d) if d > Duration::ZERO => d.as_nanos().min(i64::MAX as u128) as i64,
            Ok(_) => {
                self.error(key, "must be longer than zero");
                1
            }
            Err(e) => {
                self.error(key, format!("invalid duration {text:?}: {e}"));
                1
            }
        }
    }

    fn window(&mut self, window: &str, bucket: &str) -> WindowSpec {
        let window_nanos = self.duration("params.window", window);
        let bucket_nanos = self.duration("params.bucket", bucket);
        WindowSpec::new(window_nanos, bucket_nanos).unwrap_or_else(|| {
            self.error(
                "params.window",
                format!(
                    "{window} must be a whole number (1 to {}) of {bucket} buckets",
                    crate::window::MAX_BUCKETS
                ),
            );
            WindowSpec::new(1, 1).expect("1 bucket")
        })
    }

    fn positive(&mut self, key: &str, value: f64) -> f64 {
        if !(value > 0.0 && value.is_finite()) {
            self.error(key, format!("must be a positive number, not {value}"));
        }
        value
    }

    fn fraction(&mut self, key: &str, value: f64, allow_zero: bool) -> f64 {
        let ok = if allow_zero {
            (0.0..=1.0).contains(&value)
        } else {
            value > 0.0 && value < 1.0
        };
        if !ok {
            self.error(key, format!("must be within (0, 1), not {value}"));
        }
        value
    }

    fn capacity(&mut self, value: usize) -> NonZeroUsize {
        if value > MAX_CAPACITY {
            // The key table grows to its capacity under a flood of keys: refuse here, naming
            // the key, rather than abort allocating in the middle of a run.
            self.error(
                "params.capacity",
                format!(
                    "{value} keys would need about {} GB up front; at most {MAX_CAPACITY}",
                    value.saturating_mul(BYTES_PER_KEY) >> 30
                ),
            );
            return NonZeroUsize::MIN;
        }
        NonZeroUsize::new(value).unwrap_or_else(|| {
            self.error("params.capacity", "must be at least 1");
            NonZeroUsize::MIN
        })
    }

    fn params<T: for<'de> Deserialize<'de>>(&mut self, table: toml::Table) -> Option<T> {
        match toml::Value::Table(table).try_into() {
            Ok(params) => Some(params),
            Err(e) => {
                self.error("params", e.to_string().trim());
                None
            }
        }
    }

    fn rate_spike(&mut self, raw: RawRateSpike) -> RateSpikeParams {
        let window = self.window(&raw.window, &raw.bucket);
        let bucket = window.bucket_nanos() as f64;
        let half_life = self.duration("params.baseline_half_life", &raw.baseline_half_life);
        let min_history = self.duration("params.min_history", &raw.min_history);
        if raw.min_count == 0 {
            self.error("params.min_count", "must be at least 1");
        }
        RateSpikeParams {
            window,
            half_life_buckets: half_life as f64 / bucket,
            min_history_buckets: (min_history as f64 / bucket).ceil() as i64,
            min_count: raw.min_count.max(1),
            own_ratio: self.positive("params.own_ratio", raw.own_ratio),
            population_quantile: self.fraction(
                "params.population_quantile",
                raw.population_quantile,
                false,
            ),
            // 0: no population guard (a single key, such as the whole site, has no peers).
            population_ratio: if raw.population_ratio == 0.0 {
                0.0
            } else {
                self.positive("params.population_ratio", raw.population_ratio)
            },
            p_value: self.fraction("params.p_value", raw.p_value, false),
            false_alarm_budget: self.positive("params.false_alarm_budget", raw.false_alarm_budget),
            sustain: self.fraction("params.sustain", raw.sustain, false),
            critical_ratio: self.positive("params.critical_ratio", raw.critical_ratio),
            recurring_ratio: self.positive("params.recurring_ratio", raw.recurring_ratio),
            burst_memory_nanos: self.duration("params.burst_memory", &raw.burst_memory),
            quiet_nanos: self.duration("params.quiet", &raw.quiet),
            capacity: self.capacity(raw.capacity),
            trust_known_clients: raw.trust_known_clients,
            discount_referred_assets: raw.discount_referred_assets,
            shared_address_agents: raw.shared_address_agents,
            min_sources: raw.min_sources,
            max_excess_per_new_source: self.positive(
                "params.max_excess_per_new_source",
                raw.max_excess_per_new_source,
            ),
        }
    }

    fn route_rule(&mut self, hosts: &[String], paths: &[String]) -> RouteRule {
        RouteRule::new(hosts, paths).unwrap_or_else(|errors| {
            for (key, reason) in errors {
                self.error(&format!("params.{key}"), reason);
            }
            RouteRule::default()
        })
    }

    fn unexpected_source(&mut self, raw: RawUnexpectedSource) -> UnexpectedSourceParams {
        let rule = self.route_rule(&raw.hosts, &raw.paths);
        let mut allow = Vec::new();
        for text in &raw.allow {
            match text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            {
                Ok(net) => allow.push(net.trunc()),
                Err(_) => self.error(
                    "params.allow",
                    format!("{text:?} is not a CIDR or an address"),
                ),
            }
        }
        if raw.allow.is_empty() {
            self.error(
                "params.allow",
                "at least one network (a route nobody may call is not a rule)",
            );
        }
        UnexpectedSourceParams {
            rule,
            allow,
            quiet_nanos: self.duration("params.quiet", raw.quiet.as_deref().unwrap_or("10m")),
        }
    }

    fn error_spike(&mut self, raw: RawErrorSpike) -> ErrorSpikeParams {
        let window = self.window(&raw.window, &raw.bucket);
        let bucket = window.bucket_nanos().max(1);
        if raw.min_failures == 0 {
            self.error("params.min_failures", "must be at least 1");
        }
        ErrorSpikeParams {
            window,
            half_life_buckets: self.duration("params.baseline_half_life", &raw.baseline_half_life)
                as f64
                / bucket as f64,
            min_history_buckets: self.duration("params.min_history", &raw.min_history) / bucket,
            min_failures: raw.min_failures.max(1),
            min_share: self.fraction("params.min_share", raw.min_share, false),
            ratio: self.positive("params.ratio", raw.ratio),
            usual_floor: self.fraction("params.usual_floor", raw.usual_floor, false),
            p_value: self.fraction("params.p_value", raw.p_value, false),
            false_alarm_budget: self.positive("params.false_alarm_budget", raw.false_alarm_budget),
            quiet_nanos: self.duration("params.quiet", &raw.quiet),
            capacity: self.capacity(raw.capacity),
        }
    }

    fn new_source(&mut self, raw: RawNewSource) -> NewSourceParams {
        let forget_nanos = self.duration("params.forget", &raw.forget);
        NewSourceParams {
            rule: self.route_rule(&raw.hosts, &raw.paths),
            min_history_nanos: self.duration("params.min_history", &raw.min_history),
            forget_nanos,
            quiet_nanos: self.duration("params.quiet", &raw.quiet),
            capacity: self.capacity(raw.capacity),
        }
    }

    fn bad_agent(&mut self, raw: RawBadAgent) -> BadAgentParams {
        if raw.agents.is_empty() {
            self.error(
                "params.agents",
                "bad_user_agent needs at least one agent pattern",
            );
        }
        if raw.agents.iter().any(|a| a.trim().len() < 3) {
            self.error(
                "params.agents",
                "a pattern under 3 characters would match ordinary browsers",
            );
        }
        if raw.min_requests == 0 || raw.min_unanswered == 0 {
            self.error(
                "params",
                "min_requests and min_unanswered must be at least 1",
            );
        }
        BadAgentParams {
            window: self.window(&raw.window, &raw.bucket),
            agents: raw.agents,
            min_requests: raw.min_requests.max(1),
            min_answered: raw.min_answered,
            min_unanswered: raw.min_unanswered.max(1),
            quiet_nanos: self.duration("params.quiet", &raw.quiet),
            capacity: self.capacity(raw.capacity),
        }
    }

    fn ip_many_tokens(&mut self, raw: RawIpManyTokens) -> IpManyTokensParams {
        if raw.min_tokens < 2 || raw.min_refused < 1 {
            self.error(
                "params",
                "min_tokens must be at least 2 and min_refused at least 1",
            );
        }
        IpManyTokensParams {
            window: self.window(&raw.window, &raw.bucket),
            min_tokens: raw.min_tokens.max(2),
            min_refused: raw.min_refused.max(1),
            quiet_nanos: self.duration("params.quiet", &raw.quiet),
            capacity: self.capacity(raw.capacity),
        }
    }

    fn token_new_source(&mut self, raw: RawTokenNewSource) -> TokenNewSourceParams {
        if raw.min_requests == 0 {
            self.error("params.min_requests", "must be at least 1");
        }
        TokenNewSourceParams {
            min_history_nanos: self.duration("params.min_history", &raw.min_history),
            confirm_nanos: self.duration("params.confirm", &raw.confirm),
            min_requests: raw.min_requests.max(1),
            min_known_requests: raw.min_known_requests,
            quiet_nanos: self.duration("params.quiet", &raw.quiet),
            capacity: self.capacity(raw.capacity),
        }
    }

    fn token_sources(&mut self, raw: RawTokenSources) -> TokenSourcesParams {
        let window = self.window(&raw.window, &raw.bucket);
        if raw.min_sources < 2 {
            self.error("params.min_sources", "must be at least 2");
        }
        let half_life = self.duration("params.baseline_half_life", &raw.baseline_half_life);
        TokenSourcesParams {
            window,
            min_sources: raw.min_sources.max(2),
            ratio: self.positive("params.ratio", raw.ratio),
            min_history_nanos: self.duration("params.min_history", &raw.min_history),
            half_life_buckets: half_life as f64 / window.bucket_nanos() as f64,
            sustain: self.fraction("params.sustain", raw.sustain, false),
            quiet_nanos: self.duration("params.quiet", &raw.quiet),
            capacity: self.capacity(raw.capacity),
        }
    }

    fn signal(&mut self, raw: RawSignal, kind: &str) -> SignalParams {
        let window = self.window(&raw.window, &raw.bucket);
        if raw.min_count == 0 {
            self.error("params.min_count", "must be at least 1");
        }
        if raw.statuses.is_empty() && raw.paths.is_empty() {
            self.error("params", format!("{kind} needs statuses or paths to count"));
        }
        if kind == "brute_force" && (raw.statuses.is_empty() || raw.paths.is_empty()) {
            self.error("params", "brute_force needs both statuses and paths");
        }
        if let Some(bad) = raw.statuses.iter().find(|s| !(100..=599).contains(*s)) {
            self.error("params.statuses", format!("{bad} is not an HTTP status"));
        }
        for (key, list) in [
            ("params.paths", &raw.paths),
            ("params.exploit_paths", &raw.exploit_paths),
            ("params.exploit_queries", &raw.exploit_queries),
        ] {
            if list.iter().any(String::is_empty) {
                self.error(key, "an empty pattern would match every request");
            }
        }
        if kind == "brute_force"
            && !(raw.exploit_paths.is_empty() && raw.exploit_queries.is_empty())
        {
            self.error(
                "params",
                "exploit patterns are a scanner's, not brute_force's",
            );
        }
        if raw.ignore_suffixes.iter().any(String::is_empty) {
            self.error(
                "params.ignore_suffixes",
                "an empty suffix would ignore every error",
            );
        }
        if kind != "brute_force" && (raw.burst_count > 0 || !raw.refused_statuses.is_empty()) {
            self.error(
                "params",
                "burst_count and refused_statuses are brute_force's, not scanner's",
            );
        }
        if let Some(bad) = raw
            .refused_statuses
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            self.error(
                "params.refused_statuses",
                format!("{bad} is not an HTTP status"),
            );
        }
        if raw.burst_count == 1 {
            self.error(
                "params.burst_count",
                "one refusal is not a burst: at least 2, or 0 for off",
            );
        }
        let burst_within_nanos = self.duration("params.burst_within", &raw.burst_within);
        SignalParams {
            window,
            min_count: raw.min_count.max(1),
            min_fraction: self.fraction("params.min_fraction", raw.min_fraction, true),
            statuses: raw.statuses,
            paths: raw.paths,
            sustain: self.fraction("params.sustain", raw.sustain, false),
            quiet_nanos: self.duration("params.quiet", &raw.quiet),
            capacity: self.capacity(raw.capacity),
            ignore_suffixes: raw
                .ignore_suffixes
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            ignore_referred: raw.ignore_referred,
            distinct: raw.distinct,
            exploit_paths: raw.exploit_paths,
            exploit_queries: raw.exploit_queries,
            burst_count: raw.burst_count,
            burst_within_nanos,
            refused_statuses: raw.refused_statuses,
        }
    }
}

/// Parses and checks one definition file.
pub fn parse_definition(origin: &str, text: &str) -> Result<DetectorDef, Vec<String>> {
    let raw: RawDef = toml::from_str(text).map_err(|e| vec![format!("{origin}: {e}")])?;
    let mut checker = Checker {
        origin,
        errors: Vec::new(),
    };
    if raw.id.trim().is_empty() {
        checker.error("id", "must not be empty");
    } else if raw.id.starts_with('_') {
        // Saved state names the engine's own row `_engine` (see `Engine::snapshot`).
        checker.error("id", "must not start with `_` (reserved)");
    }
    let params = match raw.kind.as_str() {
        "rate_spike" => checker
            .params::<RawRateSpike>(raw.params)
            .map(|p| KindParams::RateSpike(checker.rate_spike(p))),
        "scanner" => checker
            .params::<RawSignal>(raw.params)
            .map(|p| KindParams::Scanner(checker.signal(p, "scanner"))),
        "brute_force" => checker
            .params::<RawSignal>(raw.params)
            .map(|p| KindParams::BruteForce(checker.signal(p, "brute_force"))),
        "token_many_sources" => checker
            .params::<RawTokenSources>(raw.params)
            .map(|p| KindParams::TokenManySources(checker.token_sources(p))),
        "token_new_source" => checker
            .params::<RawTokenNewSource>(raw.params)
            .map(|p| KindParams::TokenNewSource(checker.token_new_source(p))),
        "ip_many_tokens" => checker
            .params::<RawIpManyTokens>(raw.params)
            .map(|p| KindParams::IpManyTokens(checker.ip_many_tokens(p))),
        "bad_user_agent" => checker
            .params::<RawBadAgent>(raw.params)
            .map(|p| KindParams::BadAgent(checker.bad_agent(p))),
        "unexpected_source" => checker
            .params::<RawUnexpectedSource>(raw.params)
            .map(|p| KindParams::UnexpectedSource(checker.unexpected_source(p))),
        "error_spike" => checker
            .params::<RawErrorSpike>(raw.params)
            .map(|p| KindParams::ErrorSpike(checker.error_spike(p))),
        "new_source_sensitive_route" => checker
            .params::<RawNewSource>(raw.params)
            .map(|p| KindParams::NewSource(checker.new_source(p))),
        other => {
            checker.error(
                "kind",
                format!(
                    "unknown kind {other:?} (known: rate_spike, scanner, brute_force, \
                     token_many_sources, token_new_source, ip_many_tokens, bad_user_agent, \
                     unexpected_source, new_source_sensitive_route, error_spike)"
                ),
            );
            None
        }
    };
    let supported = match &params {
        Some(KindParams::RateSpike(_)) => raw.entity != EntityKind::Token,
        Some(KindParams::TokenManySources(_) | KindParams::TokenNewSource(_)) => {
            raw.entity == EntityKind::Token
        }
        Some(KindParams::NewSource(_)) => {
            matches!(raw.entity, EntityKind::Ip | EntityKind::Subnet)
        }
        Some(KindParams::ErrorSpike(_)) => {
            matches!(raw.entity, EntityKind::Route | EntityKind::Global)
        }
        _ => raw.entity == EntityKind::Ip,
    };
    if params.is_some() && !supported {
        checker.error(
            "entity",
            format!(
                "{} is not supported for {}: rate_spike keys by ip, subnet, route or global; \
                 token_many_sources and token_new_source by token; error_spike by route or \
                 global; new_source_sensitive_route \
                 by ip or subnet; scanner, brute_force, ip_many_tokens, bad_user_agent and \
                 unexpected_source by ip",
                raw.entity, raw.kind
            ),
        );
    }
    match params {
        Some(params) if checker.errors.is_empty() => Ok(DetectorDef {
            id: raw.id,
            entity: raw.entity,
            severity: raw.severity,
            description: raw.description,
            params,
            origin: origin.to_string(),
            enabled: raw.enabled,
        }),
        _ => Err(checker.errors),
    }
}

/// The enabled built-in definitions, with `overrides` (definitions from a directory, read
/// at the edge by `crate::detectors_dir`) added or replacing them by id.
pub fn with_builtins(
    overrides: Option<Result<Vec<DetectorDef>, DefinitionErrors>>,
) -> Result<Vec<DetectorDef>, DefinitionErrors> {
    let mut errors = Vec::new();
    let mut by_id: BTreeMap<String, DetectorDef> = BTreeMap::new();
    for (file, text) in BUILTIN {
        match parse_definition(&format!("built-in:{file}"), text) {
            Ok(def) => {
                by_id.insert(def.id.clone(), def);
            }
            Err(errs) => errors.extend(errs),
        }
    }
    match overrides {
        Some(Ok(defs)) => {
            for def in defs {
                by_id.insert(def.id.clone(), def);
            }
        }
        Some(Err(errs)) => errors.extend(errs.0),
        None => {}
    }
    let defs = by_id.into_values().filter(|def| def.enabled).collect();
    collect_checked(defs, errors)
}

/// `defs`, or every problem: `errors` plus one per id defined twice.
pub fn collect_checked(
    defs: Vec<DetectorDef>,
    mut errors: Vec<String>,
) -> Result<Vec<DetectorDef>, DefinitionErrors> {
    let mut seen = std::collections::HashSet::new();
    for def in &defs {
        if !seen.insert(def.id.as_str()) {
            errors.push(format!("{}: id: {:?} is defined twice", def.origin, def.id));
        }
    }
    if errors.is_empty() {
        Ok(defs)
    } else {
        Err(DefinitionErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capacity_that_cannot_be_allocated_is_refused_by_the_check() {
        let text = "id = \"x\"\nkind = \"scanner\"\nentity = \"ip\"\nseverity = \"low\"\n[params]\nstatuses = [404]\ncapacity = 1000000000\n";
        let errors = parse_definition("x.toml", text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("x.toml: params.capacity: 1000000000 keys"),
            "{errors:?}"
        );
        assert!(errors[0].contains("GB"), "{errors:?}");
    }

    #[test]
    fn builtins_load() {
        let defs = with_builtins(None).unwrap();
        let ids: Vec<_> = defs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "bad-user-agent",
                "brute-force-ip",
                "error-spike-route",
                "ip-many-tokens",
                "new-source-sensitive-route",
                "rate-spike-global",
                "rate-spike-ip",
                "rate-spike-route",
                "rate-spike-subnet",
                "scanner-ip",
                "token-many-sources",
                "token-new-source"
            ]
        );
    }

    #[test]
    fn errors_name_file_and_key_and_are_all_reported() {
        let text = r#"
            id = "x"
            kind = "rate_spike"
            entity = "ip"
            severity = "high"
            [params]
            window = "61s"
            own_ratio = -1.0
            population_quantile = 1.5
        "#;
        let errors = parse_definition("my.toml", text).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].starts_with("my.toml: params.window:"),
            "{errors:?}"
        );
        assert!(errors
            .iter()
            .any(|e| e.starts_with("my.toml: params.own_ratio:")));
        assert!(errors
            .iter()
            .any(|e| e.contains("params.population_quantile")));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = "id = \"x\"\nkind = \"scanner\"\nentity = \"ip\"\nseverity = \"low\"\n[params]\nmin_cuont = 3\n";
        let errors = parse_definition("s.toml", text).unwrap_err();
        assert!(errors[0].contains("min_cuont"), "{errors:?}");
        let text =
            "id = \"x\"\nkind = \"scanner\"\nentity = \"ip\"\nseverity = \"low\"\ncolour = 1\n";
        let errors = parse_definition("s.toml", text).unwrap_err();
        assert!(errors[0].contains("colour"), "{errors:?}");
    }

    #[test]
    fn refusal_bursts_are_brute_forces_and_checked() {
        let scanner = "id = \"x\"\nkind = \"scanner\"\nentity = \"ip\"\nseverity = \"low\"\n[params]\nstatuses = [404]\nburst_count = 6\n";
        let errors = parse_definition("s.toml", scanner).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("s.toml: params: burst_count")),
            "{errors:?}"
        );
        let brute = "id = \"x\"\nkind = \"brute_force\"\nentity = \"ip\"\nseverity = \"low\"\n[params]\nstatuses = [401]\npaths = [\"/login\"]\nburst_count = 1\nburst_within = \"0s\"\nrefused_statuses = [700]\n";
        let errors = parse_definition("b.toml", brute).unwrap_err();
        for key in [
            "params.burst_count",
            "params.burst_within",
            "params.refused_statuses",
        ] {
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with(&format!("b.toml: {key}:"))),
                "{key}: {errors:?}"
            );
        }
    }

    #[test]
    fn ids_starting_with_an_underscore_are_reserved() {
        let text = "id = \"_engine\"\nkind = \"scanner\"\nentity = \"ip\"\nseverity = \"low\"\n";
        let errors = parse_definition("s.toml", text).unwrap_err();
        assert!(
            errors.contains(&"s.toml: id: must not start with `_` (reserved)".to_owned()),
            "{errors:?}"
        );
    }

    #[test]
    fn overrides_replace_and_disable_builtins_by_id() {
        let scanner_off = parse_definition(
            "scanner.toml",
            "id = \"scanner-ip\"\nkind = \"scanner\"\nentity = \"ip\"\nseverity = \"low\"\nenabled = false\n[params]\nstatuses = [404]\n",
        )
        .unwrap();
        let critical_bf = parse_definition(
            "bf.toml",
            "id = \"brute-force-ip\"\nkind = \"brute_force\"\nentity = \"ip\"\nseverity = \"critical\"\n[params]\nstatuses = [401]\npaths = [\"/login\"]\nmin_count = 3\n",
        )
        .unwrap();
        let defs = with_builtins(Some(Ok(vec![scanner_off, critical_bf]))).unwrap();
        let ids: Vec<_> = defs.iter().map(|d| d.id.as_str()).collect();
        assert!(!ids.contains(&"scanner-ip"), "{ids:?}");
        let bf = defs.iter().find(|d| d.id == "brute-force-ip").unwrap();
        assert_eq!(bf.severity, Severity::Critical);
        assert_eq!(bf.origin, "bf.toml");
    }

    #[test]
    fn override_errors_are_reported() {
        let errors = DefinitionErrors(vec!["x.toml: kind: unknown".into()]);
        assert_eq!(
            with_builtins(Some(Err(errors.clone()))).unwrap_err(),
            errors
        );
    }
}
