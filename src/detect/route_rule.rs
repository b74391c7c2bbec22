//! Which requests a rule is about: hosts and paths, as users write them in a definition
//! (`ci.example.com`, `*.example.com`; `/hooks/deploy`, `/admin/*`).

use crate::event::Request;

#[derive(Clone, Debug, Default)]
pub struct RouteRule {
    /// Lower-cased exact hosts; empty with no suffixes: any host.
    hosts: Vec<Vec<u8>>,
    /// Lower-cased `.example.com` of `*.example.com`.
    host_suffixes: Vec<Vec<u8>>,
    all: Paths,
    /// The patterns by their first path segment, when each pattern names its first segment
    /// whole (`/admin/*`, not `/adm*`): a request is checked against its segment's only.
    by_first_segment: Option<hashbrown::HashMap<Vec<u8>, Paths, foldhash::fast::RandomState>>,
}

#[derive(Clone, Debug, Default)]
struct Paths {
    exact: Vec<Vec<u8>>,
    prefixes: Vec<Vec<u8>>,
}

impl Paths {
    fn matches(&self, path: &[u8]) -> bool {
        self.exact.iter().any(|p| p.as_slice() == path)
            || self.prefixes.iter().any(|p| path.starts_with(p))
    }
}

/// `/admin/users` → `admin`; `/` → ``.
fn first_segment(path: &[u8]) -> &[u8] {
    let rest = path.strip_prefix(b"/").unwrap_or(path);
    let end = memchr::memchr(b'/', rest).unwrap_or(rest.len());
    &rest[..end]
}

impl RouteRule {
    /// The routes in words, for explanations: `/admin/*, /deploy on ci.example.com`.
    pub fn describe(&self) -> String {
        const SHOWN: usize = 4;
        let text = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
        let paths: Vec<String> = (self.all.exact.iter().map(text))
            .chain(self.all.prefixes.iter().map(|p| format!("{}*", text(p))))
            .collect();
        let mut out = paths[..paths.len().min(SHOWN)].join(", ");
        if paths.len() > SHOWN {
            out.push_str(&format!(" (+{} more)", paths.len() - SHOWN));
        }
        let hosts: Vec<String> = (self.hosts.iter().map(text))
            .chain(self.host_suffixes.iter().map(|s| format!("*{}", text(s))))
            .collect();
        if !hosts.is_empty() {
            out.push_str(" on ");
            out.push_str(&hosts.join(", "));
        }
        out
    }

    /// Checks the patterns; problems as (key, reason).
    pub fn new(
        hosts: &[String],
        paths: &[String],
    ) -> Result<RouteRule, Vec<(&'static str, String)>> {
        let mut rule = RouteRule::default();
        let mut errors = Vec::new();
        for host in hosts {
            let lower = host.to_ascii_lowercase();
            if let Some(suffix) = lower.strip_prefix('*') {
                if !suffix.starts_with('.') || suffix.len() < 2 {
                    errors.push(("hosts", format!("{host:?}: a wildcard is `*.domain`")));
                }
                rule.host_suffixes.push(suffix.as_bytes().to_vec());
            } else if lower.is_empty() || lower.contains(['/', ' ', '*']) {
                errors.push(("hosts", format!("{host:?} is not a host name")));
            } else {
                rule.hosts.push(lower.into_bytes());
            }
        }
        if paths.is_empty() {
            errors.push(("paths", "at least one path is needed".to_string()));
        }
        for path in paths {
            if !path.starts_with('/') {
                errors.push(("paths", format!("{path:?} must start with `/`")));
            } else if let Some(prefix) = path.strip_suffix('*') {
                rule.all.prefixes.push(prefix.as_bytes().to_vec());
            } else {
                rule.all.exact.push(path.as_bytes().to_vec());
            }
        }
        let whole = rule
            .all
            .prefixes
            .iter()
            .all(|prefix| memchr::memchr(b'/', &prefix[1..]).is_some());
        if whole {
            let mut groups: hashbrown::HashMap<Vec<u8>, Paths, _> = Default::default();
            for exact in &rule.all.exact {
                let group = groups.entry(first_segment(exact).to_vec()).or_default();
                group.exact.push(exact.clone());
            }
            for prefix in &rule.all.prefixes {
                let group = groups.entry(first_segment(prefix).to_vec()).or_default();
                group.prefixes.push(prefix.clone());
            }
            rule.by_first_segment = Some(groups);
        }
        if errors.is_empty() {
            Ok(rule)
        } else {
            Err(errors)
        }
    }

    /// Whether the request is on one of the rule's paths (and hosts, if it names any).
    pub fn matches(&self, req: &Request<'_>) -> bool {
        let Some(path) = req.path.as_deref() else {
            return false;
        };
        let on_path = match &self.by_first_segment {
            Some(groups) => groups
                .get(first_segment(path))
                .is_some_and(|paths| paths.matches(path)),
            None => self.all.matches(path),
        };
        on_path && self.on_host(req)
    }

    fn on_host(&self, req: &Request<'_>) -> bool {
        if self.hosts.is_empty() && self.host_suffixes.is_empty() {
            return true;
        }
        let Some(host) = req.host.as_deref() else {
            return false;
        };
        self.hosts.iter().any(|h| host.eq_ignore_ascii_case(h))
            || self.host_suffixes.iter().any(|suffix| {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn request(host: Option<&'static str>, path: &'static str) -> Request<'static> {
        Request {
            host: host.map(|h| Cow::Borrowed(h.as_bytes())),
            path: Some(Cow::Borrowed(path.as_bytes())),
            ..Request::default()
        }
    }

    #[test]
    fn hosts_and_paths_exact_prefix_and_wildcard() {
        let rule = RouteRule::new(
            &["ci.example.com".into(), "*.deploy.example.com".into()],
            &["/hooks/*".into(), "/api/deploy".into()],
        )
        .unwrap();
        assert!(rule.matches(&request(Some("CI.example.com"), "/hooks/github")));
        assert!(rule.matches(&request(Some("eu.deploy.example.com"), "/api/deploy")));
        assert!(!rule.matches(&request(Some("deploy.example.com"), "/api/deploy")));
        assert!(!rule.matches(&request(Some("ci.example.com"), "/api/deploy/x")));
        assert!(!rule.matches(&request(Some("shop.example.com"), "/hooks/github")));
        assert!(!rule.matches(&request(None, "/hooks/github")));
        let any_host = RouteRule::new(&[], &["/admin/*".into()]).unwrap();
        assert!(any_host.matches(&request(None, "/admin/users")));
        assert!(!any_host.matches(&request(None, "/administrator")));
        let errors = RouteRule::new(&["*example.com".into()], &["admin".into()]).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    proptest::proptest! {
        /// Looking patterns up by first segment gives what checking them all gives.
        #[test]
        fn the_segment_index_agrees_with_every_pattern(path in "(/(admin|api|ad|deploy|x)){0,3}/?") {
            let patterns: Vec<String> = ["/admin", "/admin/*", "/api/admin/*", "/deploy", "/x/*", "/"]
                .map(String::from)
                .to_vec();
            let rule = RouteRule::new(&[], &patterns).unwrap();
            proptest::prop_assert!(rule.by_first_segment.is_some());
            let req = request(None, Box::leak(path.clone().into_boxed_str()));
            proptest::prop_assert_eq!(rule.matches(&req), rule.all.matches(path.as_bytes()));
        }
    }
}
