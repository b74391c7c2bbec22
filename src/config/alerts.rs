//! `[[alerts]]`: the channels incidents are delivered to. URLs may be secrets (a Slack
//! incoming-webhook URL is one), so they come from the config, an environment variable or a
//! file; signing secrets only from an environment variable or a file.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{count_given, Problems};
use crate::alert::signing::Secret;
use crate::detect::Severity;
use crate::store::{EventKind, EventKinds};

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    name: Option<String>,
    /// `webhook` or `slack`.
    kind: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    /// `whsec_…` secrets, several (space-separated) while rotating.
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    min_severity: Option<String>,
    /// Detector ids or globs.
    detectors: Option<Vec<String>>,
    /// Which incident events: opened, escalated, closed.
    events: Option<Vec<String>>,
    /// Webhooks: one digest per group instead of every event.
    digest: Option<bool>,
    /// What makes a group: detector, kind, severity, entity.
    group_by: Option<Vec<String>>,
    group_wait: Option<String>,
    group_interval: Option<String>,
    repeat_interval: Option<String>,
    /// Undeliverable this long after it was queued: dead.
    max_age: Option<String>,
    /// Per attempt, connecting and the whole exchange.
    connect_timeout: Option<String>,
    timeout: Option<String>,
    /// The longest wait between two attempts.
    backoff_max: Option<String>,
    /// Links to incidents (`{public_url}/ui/incidents/{id}`) in messages.
    public_url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    Webhook,
    Slack,
}

/// What groups incidents into one digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Detector,
    Kind,
    Severity,
    Entity,
}

impl GroupBy {
    const NAMES: [(&'static str, GroupBy); 4] = [
        ("detector", GroupBy::Detector),
        ("kind", GroupBy::Kind),
        ("severity", GroupBy::Severity),
        ("entity", GroupBy::Entity),
    ];
}

/// A delivery URL: printed only as its scheme and host.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelUrl(pub String);

impl ChannelUrl {
    /// `https://hooks.slack.com/…`: enough to recognise it, nothing secret.
    pub fn shown(&self) -> String {
        match reqwest::Url::parse(&self.0) {
            Ok(url) => match url.port() {
                Some(port) => format!(
                    "{}://{}:{port}/…",
                    url.scheme(),
                    url.host_str().unwrap_or("")
                ),
                None => format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or("")),
            },
            Err(_) => "(unparsable url)".into(),
        }
    }
}

impl std::fmt::Debug for ChannelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// One `[[alerts]]` channel, checked.
#[derive(Clone, Debug)]
pub struct AlertChannel {
    pub name: String,
    pub kind: ChannelKind,
    pub url: ChannelUrl,
    pub secrets: Vec<Secret>,
    pub min_severity: Severity,
    pub detectors: Vec<glob::Pattern>,
    pub events: EventKinds,
    pub digest: bool,
    pub group_by: Vec<GroupBy>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub max_age: Duration,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub backoff_max: Duration,
    pub public_url: Option<String>,
}

impl AlertChannel {
    /// A channel with the defaults, for tests and `alerts test`.
    pub fn new(name: &str, kind: ChannelKind, url: &str) -> AlertChannel {
        AlertChannel {
            name: name.into(),
            kind,
            url: ChannelUrl(url.into()),
            secrets: Vec::new(),
            min_severity: Severity::Low,
            detectors: vec![glob::Pattern::new("*").expect("a valid glob")],
            events: default_events(kind),
            digest: kind == ChannelKind::Slack,
            group_by: vec![GroupBy::Detector],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            max_age: Duration::from_secs(24 * 3600),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            public_url: None,
        }
    }
}

/// Webhook receivers get every event; people in Slack the ones that need them.
fn default_events(kind: ChannelKind) -> EventKinds {
    match kind {
        ChannelKind::Webhook => EventKind::ALL.into_iter().collect(),
        ChannelKind::Slack => [EventKind::Opened, EventKind::Escalated]
            .into_iter()
            .collect(),
    }
}

/// Reads a secret value from an environment variable or a file, naming the key on failure.
fn secret_text(
    key: &str,
    env_name: Option<&String>,
    file: Option<&PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<String> {
    if let Some(name) = env_name {
        return match env(name) {
            Some(value) if !value.trim().is_empty() => Some(value.trim().to_string()),
            _ => {
                problems.add(
                    &format!("{key}_env"),
                    format!("environment variable {name} is not set"),
                );
                None
            }
        };
    }
    let path = file?;
    match std::fs::read_to_string(path) {
        Ok(value) if !value.trim().is_empty() => Some(value.trim().to_string()),
        Ok(_) => {
            problems.add(
                &format!("{key}_file"),
                format!("{} is empty", path.display()),
            );
            None
        }
        Err(err) => {
            problems.add(
                &format!("{key}_file"),
                format!("cannot read {}: {err}", path.display()),
            );
            None
        }
    }
}

pub(super) fn check_alerts(
    raw: Vec<RawAlert>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Vec<AlertChannel> {
    let channels: Vec<AlertChannel> = raw
        .into_iter()
        .enumerate()
        .map(|(i, raw)| check_alert(i, raw, env, problems))
        .collect();
    let mut names = std::collections::HashSet::new();
    for channel in &channels {
        if !names.insert(channel.name.as_str()) {
            problems.add(
                "alerts.name",
                format!("{:?} names two channels", channel.name),
            );
        }
    }
    channels
}

fn check_alert(
    index: usize,
    raw: RawAlert,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> AlertChannel {
    let key = |field: &str| format!("alerts[{index}].{field}");
    let name = raw.name.unwrap_or_else(|| format!("alerts-{}", index + 1));
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
        problems.add(&key("name"), "must be 1 to 64 printable characters");
    }
    let kind = match raw.kind.as_deref() {
        Some("webhook") => ChannelKind::Webhook,
        Some("slack") => ChannelKind::Slack,
        Some(other) => {
            problems.add(
                &key("kind"),
                format!("{other:?}: expected \"webhook\" or \"slack\""),
            );
            ChannelKind::Webhook
        }
        None => {
            problems.add(&key("kind"), "missing: \"webhook\" or \"slack\"");
            ChannelKind::Webhook
        }
    };
    let mut channel = AlertChannel::new(&name, kind, "");

    let given = count_given(&[
        raw.url.is_some(),
        raw.url_env.is_some(),
        raw.url_file.is_some(),
    ]);
    if given != 1 {
        problems.add(&key("url"), "give exactly one of url, url_env and url_file");
    }
    let url = raw.url.clone().or_else(|| {
        secret_text(
            &key("url"),
            raw.url_env.as_ref(),
            raw.url_file.as_ref(),
            env,
            problems,
        )
    });
    if let Some(url) = url {
        match reqwest::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            Ok(parsed) => problems.add(
                &key("url"),
                format!("scheme {:?}: expected http or https", parsed.scheme()),
            ),
            Err(err) => problems.add(&key("url"), format!("not a URL: {err}")),
        }
        if kind == ChannelKind::Slack && raw.url.is_some() {
            problems.add(
                &key("url"),
                "a Slack webhook URL is a secret: give it through url_env or url_file",
            );
        }
        channel.url = ChannelUrl(url);
    }

    if raw.secret_env.is_some() && raw.secret_file.is_some() {
        problems.add(
            &key("secret_env"),
            "give secret_env or secret_file, not both",
        );
    }
    if let Some(text) = secret_text(
        &key("secret"),
        raw.secret_env.as_ref(),
        raw.secret_file.as_ref(),
        env,
        problems,
    ) {
        for (n, word) in text.split_whitespace().enumerate() {
            match Secret::parse(word) {
                Ok(secret) => channel.secrets.push(secret),
                Err(err) => problems.add(&key("secret"), format!("secret {}: {err}", n + 1)),
            }
        }
    }
    if kind == ChannelKind::Slack && !channel.secrets.is_empty() {
        problems.add(
            &key("secret_env"),
            "Slack does not verify signatures; the secret is its URL",
        );
    }

    if let Some(text) = &raw.min_severity {
        match Severity::parse(text) {
            Some(severity) => channel.min_severity = severity,
            None => problems.add(
                &key("min_severity"),
                format!("{text:?}: expected low, medium, high or critical"),
            ),
        }
    }
    if let Some(list) = &raw.detectors {
        if list.is_empty() {
            problems.add(&key("detectors"), "empty: use [\"*\"] for every detector");
        }
        channel.detectors = list
            .iter()
            .filter_map(|text| match glob::Pattern::new(text) {
                Ok(pattern) => Some(pattern),
                Err(err) => {
                    problems.add(&key("detectors"), format!("{text:?}: {err}"));
                    None
                }
            })
            .collect();
    }
    if let Some(list) = &raw.events {
        let mut events = EventKinds::EMPTY;
        for text in list {
            match EventKind::ALL.into_iter().find(|k| k.as_str() == text) {
                Some(kind) => events.insert(kind),
                None => problems.add(
                    &key("events"),
                    format!("{text:?}: expected opened, escalated or closed"),
                ),
            }
        }
        if events.is_empty() {
            problems.add(&key("events"), "empty: name at least one event");
        }
        channel.events = events;
    }
    if let Some(digest) = raw.digest {
        channel.digest = digest;
    }
    if let Some(list) = &raw.group_by {
        channel.group_by = list
            .iter()
            .filter_map(|text| {
                let found = GroupBy::NAMES.iter().find(|(n, _)| n == text);
                if found.is_none() {
                    problems.add(
                        &key("group_by"),
                        format!("{text:?}: expected detector, kind, severity or entity"),
                    );
                }
                found.map(|(_, g)| *g)
            })
            .collect();
    }
    let mut duration = |field: &str, text: &Option<String>, default: Duration| {
        problems.positive_duration(&key(field), text.as_deref(), default)
    };
    channel.group_wait = duration("group_wait", &raw.group_wait, channel.group_wait);
    channel.group_interval = duration(
        "group_interval",
        &raw.group_interval,
        channel.group_interval,
    );
    channel.repeat_interval = duration(
        "repeat_interval",
        &raw.repeat_interval,
        channel.repeat_interval,
    );
    channel.max_age = duration("max_age", &raw.max_age, channel.max_age);
    channel.connect_timeout = duration(
        "connect_timeout",
        &raw.connect_timeout,
        channel.connect_timeout,
    );
    channel.timeout = duration("timeout", &raw.timeout, channel.timeout);
    channel.backoff_max = duration("backoff_max", &raw.backoff_max, channel.backoff_max);
    if let Some(url) = &raw.public_url {
        match reqwest::Url::parse(url) {
            Ok(_) => channel.public_url = Some(url.clone()),
            Err(err) => problems.add(&key("public_url"), format!("not a URL: {err}")),
        }
    }
    channel
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    const SOURCES: &str = "[[sources]]\npaths = [\"/var/log/*.log\"]\n";

    fn load(alerts: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_text(
            Path::new("gw.toml"),
            &format!("{SOURCES}{alerts}"),
            &|name| {
                match name {
                "SLACK_URL" => Some("https://hooks.slack.com/services/T0/B0/secret".into()),
                // Two secrets during a rotation.
                "GW_SECRET" => Some(
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1yaWdodC1vbmU="
                        .into(),
                ),
                _ => None,
            }
            },
        )
    }

    #[test]
    fn channels_get_their_keys_and_defaults() {
        let config = load(
            "[[alerts]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"https://soar.example/hooks/gw\"\n\
             secret_env = \"GW_SECRET\"\nmin_severity = \"medium\"\ndetectors = [\"scanner-*\"]\n\
             [[alerts]]\nname = \"chat\"\nkind = \"slack\"\nurl_env = \"SLACK_URL\"\ngroup_wait = \"10s\"\n",
        )
        .unwrap();
        let soc = &config.alerts[0];
        assert_eq!(soc.kind, ChannelKind::Webhook);
        assert_eq!(soc.secrets.len(), 2);
        assert_eq!(soc.min_severity, Severity::Medium);
        assert!(soc.detectors[0].matches("scanner-ip"));
        assert!(!soc.digest, "webhooks get every event by default");
        assert_eq!(soc.events, EventKind::ALL.into_iter().collect());
        assert_eq!(soc.max_age, Duration::from_secs(24 * 3600));
        let chat = &config.alerts[1];
        assert!(chat.digest);
        assert!(!chat.events.contains(EventKind::Closed));
        assert_eq!(chat.group_wait, Duration::from_secs(10));
        assert_eq!(chat.group_interval, Duration::from_secs(300));
        assert_eq!(chat.group_by, [GroupBy::Detector]);
        // The URL is a secret: Debug shows the host only.
        let shown = format!("{chat:?}");
        assert!(!shown.contains("/services/"), "{shown}");
        assert!(shown.contains("hooks.slack.com"), "{shown}");
    }

    #[test]
    fn every_bad_key_is_named() {
        let err = load(
            "[[alerts]]\nname = \"a\"\nkind = \"pager\"\nurl = \"ftp://x\"\nmin_severity = \"urgent\"\n\
             group_wait = \"later\"\nevents = [\"opened\", \"reopened\"]\n\
             [[alerts]]\nname = \"a\"\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/x\"\n\
             secret_env = \"MISSING\"\ngroup_by = [\"colour\"]\n",
        )
        .unwrap_err();
        let text = err.to_string();
        for key in [
            "alerts[0].kind",
            "alerts[0].url",
            "alerts[0].min_severity",
            "alerts[0].group_wait",
            "alerts[0].events",
            "alerts[1].url: a Slack webhook URL is a secret",
            "alerts[1].secret_env: environment variable MISSING is not set",
            "alerts[1].group_by",
            "alerts.name",
        ] {
            assert!(
                text.contains(&format!("gw.toml: {key}")),
                "{key} in:\n{text}"
            );
        }
        assert!(
            !text.contains("services/x"),
            "the secret URL is not echoed: {text}"
        );
    }

    #[test]
    fn unknown_alert_keys_and_bad_secrets_are_errors() {
        let err =
            load("[[alerts]]\nkind = \"webhook\"\nurl = \"https://a.example\"\nretries = 3\n")
                .unwrap_err();
        assert!(err.to_string().contains("retries"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "not-a-secret\n").unwrap();
        let err = load(&format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"https://a.example\"\nsecret_file = {:?}\n",
            file.display().to_string()
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("alerts[0].secret: secret 1: a webhook secret must start with whsec_"),
            "{text}"
        );
        assert!(!text.contains("not-a-secret"), "{text}");
    }
}
