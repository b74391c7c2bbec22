//! `gatewatch.toml`, the daemon's config: raw serde structs (unknown keys are errors), then
//! a validation pass that collects every problem with its file and key, then the checked
//! form `run` uses. Secrets (a database password, the API token) come only from environment
//! variables or files, never from the config text.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod alerts;
pub use alerts::{AlertChannel, ChannelKind, ChannelUrl, GroupBy};
mod cluster;
pub use cluster::{ClusterConfig, NatsAuth, Role};

use crate::input::DEFAULT_MAX_LINE;
use crate::parse::{JsonFields, TrustedProxies, PRESET_NAMES};

/// Where `run` listens when `[api] listen` is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9400";
/// The store when `[store]` is not set.
pub const DEFAULT_STORE: &str = "sqlite://gatewatch.db";

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Our own proxies: the client is the right-most X-Forwarded-For address outside them.
    #[serde(default)]
    trusted_proxies: Vec<String>,
    /// Detector definitions that add to or override the built-ins by id.
    detectors_dir: Option<PathBuf>,
    /// Event time from the first line during which baselines only learn.
    warmup: Option<String>,
    /// How far behind its own file's newest time a line may be and still count.
    late_tolerance: Option<String>,
    /// A time jumping further than this from its file's recent lines is set aside unless
    /// the lines after it agree; so is a time this far after the wall clock.
    max_time_jump: Option<String>,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    tail: RawTail,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    alerts: Vec<alerts::RawAlert>,
    #[serde(default)]
    tokens: RawTokens,
    /// Requests no detector sees: `cidrs`, `user_agents`, `paths`.
    #[serde(default)]
    ignore: crate::detect::ignore::RawIgnore,
    /// Cluster mode (absent: standalone).
    cluster: Option<cluster::RawCluster>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    /// The key of token fingerprints (`fp_` + HMAC-SHA256); a secret, so a file.
    key_file: Option<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawSource {
    /// Label in metrics and checkpoints; keep it stable across restarts.
    name: Option<String>,
    /// Globs of files to follow.
    #[serde(default)]
    paths: Vec<String>,
    /// `auto` or a preset name.
    format: Option<String>,
    /// An nginx `log_format` string; overrides `format`.
    log_format: Option<String>,
    /// `field=key,…` for JSON logs with their own keys; overrides `format`.
    json_fields: Option<String>,
    /// Overrides the top-level list for this source.
    trusted_proxies: Option<Vec<String>>,
    /// Files already there at the very first start: `beginning` or `end`.
    start_at: Option<String>,
    /// Longer lines are cut here and counted.
    max_line_bytes: Option<usize>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawTail {
    /// `auto` (inotify, polling as fallback) or `poll`.
    watch: Option<String>,
    poll_interval: Option<String>,
    discover_interval: Option<String>,
    idle_timeout: Option<String>,
    checkpoint_interval: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    /// Longest wait for a request's whole header (a duration such as "10s").
    header_timeout: Option<String>,
    /// How long a kept-alive connection may wait for its next request.
    idle_timeout: Option<String>,
    /// Open connections at most.
    max_connections: Option<usize>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    /// `text` or `json`.
    format: Option<String>,
    /// A tracing filter such as `info` or `info,gatewatch=debug`.
    level: Option<String>,
}

/// Where files never seen before are read from at the very first start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

/// How new files and new lines are noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify through `notify`, polling when it cannot be set up.
    Auto,
    Poll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One `[[sources]]` group, checked.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub name: String,
    pub paths: Vec<String>,
    pub format: String,
    pub log_format: Option<String>,
    pub json_fields: Option<JsonFields>,
    pub trusted_proxies: TrustedProxies,
    pub start_at: StartAt,
    pub max_line_bytes: usize,
}

#[derive(Clone, Debug)]
pub struct TailConfig {
    pub watch: WatchMode,
    pub poll_interval: Duration,
    pub discover_interval: Duration,
    pub idle_timeout: Duration,
    pub checkpoint_interval: Duration,
}

/// Where the API token comes from (read at start, never printed).
#[derive(Clone, Debug)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub token: TokenSource,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// The whole config, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub detectors_dir: Option<PathBuf>,
    pub warmup: Duration,
    pub late_tolerance: Duration,
    pub max_time_jump: Duration,
    pub sources: Vec<SourceConfig>,
    pub tail: TailConfig,
    /// The store URL, resolved from `url`, `url_env` or `url_file` (may hold a password:
    /// show it through `store::redact_url`).
    pub store_url: String,
    pub api: ApiConfig,
    pub log_format: LogFormat,
    pub log_level: String,
    pub alerts: Vec<AlertChannel>,
    /// `[tokens] key_file`: the token fingerprint key's file (read at start).
    pub token_key_file: Option<PathBuf>,
    /// `[ignore]`: requests no detector sees.
    pub ignore: crate::detect::ignore::IgnoreRules,
    /// `[cluster]`: `None` runs standalone.
    pub cluster: Option<ClusterConfig>,
}

/// Every problem found in a config file, one per line: `FILE: KEY: reason`.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems as they are found, each named by file and key.
struct Problems<'a> {
    file: &'a Path,
    list: Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, key: &str, reason: impl fmt::Display) {
        self.list
            .push(format!("{}: {key}: {reason}", self.file.display()));
    }

    fn duration(&mut self, key: &str, text: Option<&str>, default: Duration) -> Duration {
        let Some(text) = text else { return default };
        match humantime::parse_duration(text) {
            Ok(d) => d,
            Err(err) => {
                self.add(
                    key,
                    format!("{text:?} is not a duration like \"5s\" ({err})"),
                );
                default
            }
        }
    }

    fn positive_duration(&mut self, key: &str, text: Option<&str>, default: Duration) -> Duration {
        let d = self.duration(key, text, default);
        if d.is_zero() {
            self.add(key, "must be more than zero");
            return default;
        }
        d
    }

    fn proxies(&mut self, key: &str, list: &[String]) -> TrustedProxies {
        TrustedProxies::parse(&list.join(",")).unwrap_or_else(|err| {
            self.add(key, err);
            TrustedProxies::default()
        })
    }
}

impl Config {
    /// Reads and checks `path`; the error lists every problem found.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            problems: vec![format!("{}: cannot read: {err}", path.display())],
        })?;
        Config::from_text(path, &text, &|name| std::env::var(name).ok())
    }

    /// Checks config `text` as if read from `path`; `env` looks up environment variables.
    pub fn from_text(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| ConfigError {
            problems: vec![format!("{}: {}", path.display(), one_line(&err))],
        })?;
        let mut problems = Problems {
            file: path,
            list: Vec::new(),
        };
        let config = check(raw, path, env, &mut problems);
        if problems.list.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: problems.list,
            })
        }
    }
}

/// toml's errors span several lines (a caret drawing); keep the message and the position.
fn one_line(err: &toml::de::Error) -> String {
    let message = err.message().trim();
    match err.span() {
        Some(span) => format!("at byte {}: {message}", span.start),
        None => message.to_string(),
    }
}

fn check(
    raw: RawConfig,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Config {
    let trusted = problems.proxies("trusted_proxies", &raw.trusted_proxies);
    let warmup = problems.duration("warmup", raw.warmup.as_deref(), Duration::from_secs(300));
    let late_tolerance = problems.duration(
        "late_tolerance",
        raw.late_tolerance.as_deref(),
        Duration::from_secs(5),
    );
    let max_time_jump = problems.positive_duration(
        "max_time_jump",
        raw.max_time_jump.as_deref(),
        Duration::from_secs(600),
    );
    let cluster = cluster::check_cluster(raw.cluster, env, problems);
    let analyzer_only = cluster.as_ref().is_some_and(|c| !c.role.tails());
    if analyzer_only && !raw.sources.is_empty() {
        problems.add(
            "sources",
            "an analyzer (cluster.role = \"analyzer\") reads no files: remove [[sources]] or use role = \"both\"",
        );
    }
    if raw.sources.is_empty() && !analyzer_only {
        problems.add(
            "sources",
            "no [[sources]]: name at least one group of log files to follow",
        );
    }
    let mut names = std::collections::HashSet::new();
    let sources: Vec<SourceConfig> = raw
        .sources
        .into_iter()
        .enumerate()
        .map(|(i, source)| check_source(i, source, &trusted, problems))
        .collect();
    for source in &sources {
        if !names.insert(source.name.clone()) {
            problems.add(
                "sources.name",
                format!(
                    "{:?} names two sources (checkpoints are kept per name)",
                    source.name
                ),
            );
        }
    }
    let tail = check_tail(&raw.tail, problems);
    let store_url = check_store(&raw.store, env, problems);
    let api = check_api(&raw.api, problems);
    let log_format = match raw.log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.add(
                "log.format",
                format!("{other:?}: expected \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    let alerts = alerts::check_alerts(raw.alerts, env, problems);
    if let Some(path) = &raw.tokens.key_file {
        match std::fs::read(path) {
            Ok(bytes) if !bytes.trim_ascii().is_empty() => {}
            Ok(_) => problems.add("tokens.key_file", format!("{} is empty", path.display())),
            Err(err) => problems.add(
                "tokens.key_file",
                format!("cannot read {}: {err}", path.display()),
            ),
        }
    }
    let ignore = crate::detect::ignore::IgnoreRules::check(&raw.ignore).unwrap_or_else(|errors| {
        for (key, reason) in errors {
            problems.add(&format!("ignore.{key}"), reason);
        }
        Default::default()
    });
    let log_level = raw.log.level.unwrap_or_else(|| "info".into());
    if let Err(err) = tracing_subscriber::EnvFilter::try_new(&log_level) {
        problems.add("log.level", format!("{log_level:?}: {err}"));
    }
    Config {
        path: path.to_path_buf(),
        detectors_dir: raw.detectors_dir,
        warmup,
        late_tolerance,
        max_time_jump,
        sources,
        tail,
        store_url,
        api,
        log_format,
        log_level,
        alerts,
        token_key_file: raw.tokens.key_file,
        ignore,
        cluster,
    }
}

fn check_source(
    index: usize,
    raw: RawSource,
    trusted: &TrustedProxies,
    problems: &mut Problems,
) -> SourceConfig {
    let key = |field: &str| format!("sources[{index}].{field}");
    let name = raw.name.unwrap_or_else(|| format!("source-{}", index + 1));
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
        problems.add(&key("name"), "must be 1 to 64 printable characters");
    }
    if raw.paths.is_empty() {
        problems.add(&key("paths"), "empty: give at least one path or glob");
    }
    for path in &raw.paths {
        if let Err(err) = glob::Pattern::new(path) {
            problems.add(&key("paths"), format!("{path:?} is not a glob: {err}"));
        }
    }
    let format = raw.format.unwrap_or_else(|| "auto".into());
    if format != "auto" && !PRESET_NAMES.contains(&format.as_str()) {
        problems.add(
            &key("format"),
            format!(
                "{format:?} is not a format; known: auto, {}",
                PRESET_NAMES.join(", ")
            ),
        );
    }
    if raw.log_format.is_some() && raw.json_fields.is_some() {
        problems.add(
            &key("json_fields"),
            "give log_format or json_fields, not both",
        );
    }
    if let Some(format) = &raw.log_format {
        if let Err(err) = crate::parse::LogFormat::compile(
            "log_format",
            format,
            crate::parse::Leniency::default(),
        ) {
            problems.add(&key("log_format"), err);
        }
    }
    let json_fields = raw
        .json_fields
        .as_deref()
        .and_then(|spec| match JsonFields::parse(spec) {
            Ok(fields) => Some(fields),
            Err(err) => {
                problems.add(&key("json_fields"), err);
                None
            }
        });
    let trusted_proxies = match &raw.trusted_proxies {
        Some(list) => problems.proxies(&key("trusted_proxies"), list),
        None => trusted.clone(),
    };
    let start_at = match raw.start_at.as_deref() {
        None | Some("beginning") => StartAt::Beginning,
        Some("end") => StartAt::End,
        Some(other) => {
            problems.add(
                &key("start_at"),
                format!("{other:?}: expected \"beginning\" or \"end\""),
            );
            StartAt::Beginning
        }
    };
    let max_line_bytes = raw.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE);
    if !(256..=(16 << 20)).contains(&max_line_bytes) {
        problems.add(
            &key("max_line_bytes"),
            format!("{max_line_bytes}: must be between 256 and 16777216"),
        );
    }
    SourceConfig {
        name,
        paths: raw.paths,
        format,
        log_format: raw.log_format,
        json_fields,
        trusted_proxies,
        start_at,
        max_line_bytes: max_line_bytes.clamp(256, 16 << 20),
    }
}

fn check_tail(raw: &RawTail, problems: &mut Problems) -> TailConfig {
    let watch = match raw.watch.as_deref() {
        None | Some("auto") => WatchMode::Auto,
        Some("poll") => WatchMode::Poll,
        Some(other) => {
            problems.add(
                "tail.watch",
                format!("{other:?}: expected \"auto\" or \"poll\""),
            );
            WatchMode::Auto
        }
    };
    TailConfig {
        watch,
        poll_interval: problems.positive_duration(
            "tail.poll_interval",
            raw.poll_interval.as_deref(),
            Duration::from_millis(250),
        ),
        discover_interval: problems.positive_duration(
            "tail.discover_interval",
            raw.discover_interval.as_deref(),
            Duration::from_secs(2),
        ),
        idle_timeout: problems.positive_duration(
            "tail.idle_timeout",
            raw.idle_timeout.as_deref(),
            Duration::from_secs(5),
        ),
        checkpoint_interval: problems.positive_duration(
            "tail.checkpoint_interval",
            raw.checkpoint_interval.as_deref(),
            Duration::from_secs(10),
        ),
    }
}

/// How many of a value's alternative keys (`url`, `url_env`, `url_file`) were given.
fn count_given(given: &[bool]) -> usize {
    given.iter().filter(|g| **g).count()
}

/// True when a URL carries a password (`scheme://user:password@host`).
fn has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn check_store(
    raw: &RawStore,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> String {
    let given = count_given(&[
        raw.url.is_some(),
        raw.url_env.is_some(),
        raw.url_file.is_some(),
    ]);
    if given > 1 {
        problems.add("store", "give one of url, url_env and url_file");
    }
    if let Some(url) = &raw.url {
        if has_password(url) {
            problems.add(
                "store.url",
                "holds a password; secrets come from url_env or url_file, never the config",
            );
        }
        return url.clone();
    }
    if let Some(name) = &raw.url_env {
        return match env(name) {
            Some(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => {
                problems.add(
                    "store.url_env",
                    format!("environment variable {name} is not set"),
                );
                String::new()
            }
        };
    }
    if let Some(file) = &raw.url_file {
        return match std::fs::read_to_string(file) {
            Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
            Ok(_) => {
                problems.add("store.url_file", format!("{} is empty", file.display()));
                String::new()
            }
            Err(err) => {
                problems.add("store.url_file", format!("{}: {err}", file.display()));
                String::new()
            }
        };
    }
    DEFAULT_STORE.to_string()
}

fn check_api(raw: &RawApi, problems: &mut Problems) -> ApiConfig {
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().unwrap_or_else(|err| {
        problems.add(
            "api.listen",
            format!("{listen_text:?} is not an address like \"0.0.0.0:9400\" ({err})"),
        );
        DEFAULT_LISTEN.parse().expect("a valid default")
    });
    if raw.token_env.is_some() && raw.token_file.is_some() {
        problems.add("api", "give token_env or token_file, not both");
    }
    let token = match (&raw.token_file, &raw.token_env) {
        (Some(file), _) => TokenSource::File(file.clone()),
        (None, Some(name)) => TokenSource::Env(name.clone()),
        (None, None) => TokenSource::Env("GATEWATCH_API_TOKEN".into()),
    };
    let defaults = crate::api::ServeSettings::default();
    let max_connections = raw.max_connections.unwrap_or(defaults.max_connections);
    if max_connections == 0 {
        problems.add("api.max_connections", "must be at least 1");
    }
    ApiConfig {
        listen,
        token,
        header_timeout: problems.positive_duration(
            "api.header_timeout",
            raw.header_timeout.as_deref(),
            defaults.header_timeout,
        ),
        idle_timeout: problems.positive_duration(
            "api.idle_timeout",
            raw.idle_timeout.as_deref(),
            defaults.idle_timeout,
        ),
        max_connections: max_connections.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_text(Path::new("gw.toml"), text, &|name| {
            (name == "DB_URL").then(|| "postgres://u:secret@db/gw".to_string())
        })
    }

    #[test]
    fn a_minimal_config_gets_the_documented_defaults() {
        let config = load("[[sources]]\npaths = [\"/var/log/*.log\"]\n").unwrap();
        let source = &config.sources[0];
        assert_eq!(source.name, "source-1");
        assert_eq!(source.format, "auto");
        assert_eq!(source.start_at, StartAt::Beginning);
        assert_eq!(source.max_line_bytes, DEFAULT_MAX_LINE);
        assert_eq!(config.store_url, DEFAULT_STORE);
        assert_eq!(config.api.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.tail.idle_timeout, Duration::from_secs(5));
        assert_eq!(config.warmup, Duration::from_secs(300));
    }

    #[test]
    fn unknown_keys_name_the_file_and_the_key() {
        let err = load("[[sources]]\npaths = [\"a\"]\npathz = 1\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("gw.toml: "), "{text}");
        assert!(text.contains("pathz"), "{text}");
    }

    #[test]
    fn api_limits_are_read_and_checked() {
        let config = load(
            "[[sources]]\npaths = [\"/l/*.log\"]\n[api]\nheader_timeout = \"2s\"\n\
             idle_timeout = \"5m\"\nmax_connections = 100\n",
        )
        .unwrap();
        assert_eq!(config.api.header_timeout, Duration::from_secs(2));
        assert_eq!(config.api.idle_timeout, Duration::from_secs(300));
        assert_eq!(config.api.max_connections, 100);
        let err = load(
            "[[sources]]\npaths = [\"/l/*.log\"]\n[api]\nheader_timeout = \"0s\"\n\
             idle_timeout = \"soon\"\nmax_connections = 0\n",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "api.header_timeout",
            "api.idle_timeout",
            "api.max_connections",
        ] {
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let err = load(
            "warmup = \"soon\"\n[[sources]]\npaths = []\nformat = \"apache\"\nstart_at = \"middle\"\n\
             [store]\nurl = \"postgres://u:pw@h/db\"\n[api]\nlisten = \"nowhere\"\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = err
            .problems
            .iter()
            .map(|p| p.split(": ").nth(1).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "warmup",
                "sources[0].paths",
                "sources[0].format",
                "sources[0].start_at",
                "store.url",
                "api.listen"
            ],
            "{err}"
        );
        assert!(
            !err.to_string().contains("pw@"),
            "the password is not echoed"
        );
    }

    #[test]
    fn secrets_come_from_the_environment_or_files() {
        let config = load("[[sources]]\npaths = [\"a\"]\n[store]\nurl_env = \"DB_URL\"\n").unwrap();
        assert_eq!(config.store_url, "postgres://u:secret@db/gw");
        let err = load("[[sources]]\npaths = [\"a\"]\n[store]\nurl_env = \"NOPE\"\n").unwrap_err();
        assert!(err.to_string().contains("store.url_env"), "{err}");
        assert!(has_password("postgres://u:p@h/db"));
        assert!(!has_password("postgres://u@h/db"));
        assert!(!has_password("sqlite:///var/lib/x.db"));
    }

    #[test]
    fn two_sources_cannot_share_a_name() {
        let err = load(
            "[[sources]]\nname = \"a\"\npaths = [\"x\"]\n[[sources]]\nname = \"a\"\npaths = [\"y\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("sources.name"), "{err}");
    }
}
