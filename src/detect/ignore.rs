//! The global ignore list: one's own monitors, scanners and health checks, which no
//! detector should see. A request from an ignored network, with an ignored user agent or on
//! an ignored path is counted and skipped before every detector.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind};
use ipnet::IpNet;
use serde::Deserialize;

use super::path_match::{MatchField, PathMatch};
use super::Context;
use crate::event::Request;

/// `[ignore]` in the daemon's config, or the file of `replay --ignore-file`.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawIgnore {
    /// Client networks (CIDRs or single addresses).
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Case-insensitive substrings of the User-Agent.
    #[serde(default)]
    pub user_agents: Vec<String>,
    /// Paths, exact; one ending in `*` is a prefix (`/static/*`).
    #[serde(default)]
    pub paths: Vec<String>,
}

/// The checked ignore list.
#[derive(Clone, Debug, Default)]
pub struct IgnoreRules {
    cidrs: Vec<IpNet>,
    agents: Vec<String>,
    exact_paths: Vec<Vec<u8>>,
    path_prefixes: Vec<Vec<u8>>,
}

impl IgnoreRules {
    /// Checks `raw`; every problem as (key, reason).
    pub fn check(raw: &RawIgnore) -> Result<IgnoreRules, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        let mut cidrs = Vec::new();
        for text in &raw.cidrs {
            match text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
            {
                Ok(net) => cidrs.push(net.trunc()),
                Err(_) => errors.push(("cidrs", format!("{text:?} is not a CIDR or an address"))),
            }
        }
        if raw.user_agents.iter().any(|a| a.trim().len() < 3) {
            errors.push((
                "user_agents",
                "a pattern under 3 characters would ignore ordinary clients".to_string(),
            ));
        }
        let (mut exact_paths, mut path_prefixes) = (Vec::new(), Vec::new());
        for path in &raw.paths {
            if !path.starts_with('/') {
                errors.push(("paths", format!("{path:?} must start with `/`")));
            } else if let Some(prefix) = path.strip_suffix('*') {
                path_prefixes.push(prefix.as_bytes().to_vec());
            } else {
                exact_paths.push(path.as_bytes().to_vec());
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(IgnoreRules {
            cidrs,
            agents: raw.user_agents.clone(),
            exact_paths,
            path_prefixes,
        })
    }

    /// Parses and checks an ignore file's text.
    pub fn parse(origin: &str, text: &str) -> Result<IgnoreRules, Vec<String>> {
        let raw: RawIgnore = toml::from_str(text).map_err(|e| vec![format!("{origin}: {e}")])?;
        IgnoreRules::check(&raw).map_err(|errors| {
            errors
                .into_iter()
                .map(|(key, reason)| format!("{origin}: {key}: {reason}"))
                .collect()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty()
            && self.agents.is_empty()
            && self.exact_paths.is_empty()
            && self.path_prefixes.is_empty()
    }
}

/// The ignore list as the engine applies it.
pub(super) struct Ignore {
    rules: IgnoreRules,
    agents: Option<Arc<AhoCorasick>>,
    agent_bit: Option<u8>,
}

impl Ignore {
    pub(super) fn new(rules: IgnoreRules, path_match: &mut PathMatch) -> Ignore {
        let agents = (!rules.agents.is_empty()).then(|| {
            Arc::new(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&rules.agents)
                    .expect("plain substrings always build"),
            )
        });
        // The user-agent search runs on the decode threads with the detectors' sets.
        let agent_bit = agents
            .clone()
            .and_then(|set| path_match.register_on(set, &[], None, MatchField::UserAgent));
        Ignore {
            rules,
            agents,
            agent_bit,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(super) fn ignores(&self, req: &Request<'_>, ctx: &Context<'_>) -> bool {
        let rules = &self.rules;
        if let Some(ip) = req.client_ip {
            if rules.cidrs.iter().any(|net| net.contains(&ip)) {
                return true;
            }
        }
        if let Some(path) = req.path.as_deref() {
            if rules.exact_paths.iter().any(|p| p.as_slice() == path)
                || rules.path_prefixes.iter().any(|p| path.starts_with(p))
            {
                return true;
            }
        }
        match (&self.agents, ctx.path_bits, self.agent_bit) {
            (None, _, _) => false,
            (Some(_), Some(bits), Some(bit)) => bits & (1 << bit) != 0,
            (Some(set), _, _) => req.user_agent.as_deref().is_some_and(|a| set.is_match(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse("ignore.toml", text).unwrap()
    }

    fn request(ip: &str, path: &'static str, agent: &'static str) -> Request<'static> {
        Request {
            client_ip: Some(ip.parse().unwrap()),
            path: Some(Cow::Borrowed(path.as_bytes())),
            user_agent: Some(Cow::Borrowed(agent.as_bytes())),
            ..Request::default()
        }
    }

    #[test]
    fn networks_agents_and_paths_are_each_enough() {
        let mut path_match = PathMatch::default();
        let ignore = Ignore::new(
            rules(
                "cidrs = [\"10.1.0.0/16\", \"2001:db8::1\"]\nuser_agents = [\"UptimeRobot\"]\npaths = [\"/healthz\", \"/static/*\"]\n",
            ),
            &mut path_match,
        );
        let ctx = |req: &Request<'_>, prematched: bool| Context {
            now: crate::event::Timestamp(0),
            learning: false,
            path_bits: prematched.then(|| path_match.bits(req)),
            route: None,
        };
        for prematched in [false, true] {
            let yes = [
                request("10.1.2.3", "/", "Firefox"),
                request("2001:db8::1", "/", "Firefox"),
                request(
                    "192.0.2.1",
                    "/",
                    "Mozilla/5.0 (compatible; uptimerobot/2.0)",
                ),
                request("192.0.2.1", "/healthz", "Firefox"),
                request("192.0.2.1", "/static/app.js", "Firefox"),
            ];
            for req in &yes {
                assert!(ignore.ignores(req, &ctx(req, prematched)), "{req:?}");
            }
            let no = [
                request("10.2.0.1", "/", "Firefox"),
                request("2001:db8::2", "/", "Firefox"),
                request("192.0.2.1", "/healthz/deep", "Firefox"),
                request("192.0.2.1", "/statics", "Firefox"),
            ];
            for req in &no {
                assert!(!ignore.ignores(req, &ctx(req, prematched)), "{req:?}");
            }
        }
    }

    #[test]
    fn every_bad_entry_is_named() {
        let errors = IgnoreRules::parse(
            "ignore.toml",
            "cidrs = [\"10.0.0.0/33\", \"nope\"]\nuser_agents = [\"a\"]\npaths = [\"healthz\"]\n",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors.iter().all(|e| e.starts_with("ignore.toml: ")));
        assert!(errors[0].contains("cidrs") && errors[0].contains("10.0.0.0/33"));
        let unknown = IgnoreRules::parse("ignore.toml", "cidr = []\n").unwrap_err();
        assert!(unknown[0].contains("cidr"), "{unknown:?}");
    }
}
