//! Which requests a rule is about: hosts and paths, as users write them in a definition
//! (`ci.example.com`, `*.example.com`; `/hooks/deploy`, `/admin/*`).

use crate::event::Request;

#[derive(Clone, Debug, Default)]
pub struct RouteRule {
    /// Lower-cased exact hosts; empty with no suffixes: any host.
    hosts: Vec<Vec<u8>>,
    /// Lower-cased `.example.com` of `*.example.com`.
    host_suffixes: Vec<Vec<u8>>,
    exact_paths: Vec<Vec<u8>>,
    path_prefixes: Vec<Vec<u8>>,
}

impl RouteRule {
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
                rule.path_prefixes.push(prefix.as_bytes().to_vec());
            } else {
                rule.exact_paths.push(path.as_bytes().to_vec());
            }
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
        let on_path = self.exact_paths.iter().any(|p| p.as_slice() == path)
            || self.path_prefixes.iter().any(|p| path.starts_with(p));
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
}
