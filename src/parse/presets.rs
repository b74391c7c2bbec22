//! Built-in formats and `--format auto`.

use super::json::{EnvoyJson, TraefikJson};
use super::nginx::{Leniency, LogFormat};
use super::{ParseError, Parser};
use crate::event::Request;

/// nginx's predefined `combined` format.
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// The ingress-nginx controller's default `log-format-upstream` (`upstreaminfo`).
pub const INGRESS_NGINX: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id"#;

/// `combined` with a virtual host before the client (`log_format vhost_combined`).
const VHOST_COMBINED: &str = r#"$host $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// `combined` written by tools that drop the ident column (`ip - [time] …`).
const COMBINED_NO_IDENT: &str = r#"$remote_addr - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// Preset names, most specific first: auto-detection prefers the earlier one on a tie
/// (the lenient `combined` also reads ingress-nginx lines, minus their extra fields).
pub const PRESET_NAMES: &[&str] = &["ingress-nginx", "combined", "traefik-json", "envoy-json"];

/// The `combined` preset reads the variants real servers write: the common log format
/// (no referer/UA), extra trailing fields (nginx `main`), a vhost prefix, no ident column.
/// The strict layout is tried first, so the variants cost nothing on ordinary lines.
struct Combined {
    variants: Vec<LogFormat>,
}

impl Combined {
    fn new() -> Self {
        let lenient = Leniency {
            missing_tail: true,
            extra_tail: true,
        };
        let compile = |format| LogFormat::compile("combined", format, lenient).expect("preset");
        Combined {
            variants: vec![
                compile(COMBINED),
                compile(VHOST_COMBINED),
                compile(COMBINED_NO_IDENT),
            ],
        }
    }
}

impl Parser for Combined {
    fn name(&self) -> &str {
        "combined"
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Request<'a>, ParseError> {
        let first_error = match self.variants[0].parse(line) {
            Ok(req) => return Ok(req),
            Err(err) => err,
        };
        self.variants[1..]
            .iter()
            .find_map(|variant| variant.parse(line).ok())
            .ok_or(first_error)
    }
}

/// A built-in parser by name.
pub fn preset(name: &str) -> Option<Box<dyn Parser>> {
    match name {
        "combined" => Some(Box::new(Combined::new())),
        "ingress-nginx" => {
            let leniency = Leniency {
                missing_tail: false,
                extra_tail: true,
            };
            Some(Box::new(
                LogFormat::compile("ingress-nginx", INGRESS_NGINX, leniency).expect("preset"),
            ))
        }
        "traefik-json" => Some(Box::new(TraefikJson)),
        "envoy-json" => Some(Box::new(EnvoyJson)),
        _ => None,
    }
}

/// The outcome of `--format auto` on a sample of lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub format: &'static str,
    pub parsed: usize,
    pub sampled: usize,
}

/// Picks the preset that parses the most sample lines (ties go to the more specific one).
/// `None` when no preset parses any line.
pub fn detect_format<'a>(sample: impl IntoIterator<Item = &'a [u8]> + Clone) -> Option<Detected> {
    let mut best: Option<Detected> = None;
    for &name in PRESET_NAMES {
        let parser = preset(name).expect("listed presets exist");
        let mut parsed = 0;
        let mut sampled = 0;
        for line in sample.clone() {
            sampled += 1;
            parsed += usize::from(parser.parse(line).is_ok());
        }
        if parsed > 0 && best.as_ref().is_none_or(|b| parsed > b.parsed) {
            best = Some(Detected {
                format: name,
                parsed,
                sampled,
            });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMBINED_LINE: &[u8] = br#"203.0.113.45 - - [10/Mar/2025:14:02:11 +0000] "GET /api/v1/items?page=3 HTTP/1.1" 200 1843 "https://shop.example.com/cart" "Mozilla/5.0 (X11; Linux x86_64) Firefox/124.0""#;
    const INGRESS_LINE: &[u8] = br#"198.51.100.77 - - [10/Mar/2025:14:05:43 +0000] "POST /graphql HTTP/1.1" 502 150 "-" "Mozilla/5.0" 1290 0.031 [shop-gql-80] [] 10.42.3.30:80, 10.42.3.31:80 0, 150 0.010, 0.020 502, 502 9a8b7c6d5e4f30211f2e3d4c5b6a7988"#;

    #[test]
    fn combined_fields() {
        let req = preset("combined").unwrap().parse(COMBINED_LINE).unwrap();
        assert_eq!(req.client_ip, Some("203.0.113.45".parse().unwrap()));
        assert_eq!(req.user, None);
        assert_eq!(req.ts.unwrap().to_rfc3339(), "2025-03-10T14:02:11Z");
        assert_eq!(req.status, Some(200));
        assert_eq!(req.bytes_sent, Some(1843));
        assert_eq!(
            req.referer.as_deref(),
            Some(&b"https://shop.example.com/cart"[..])
        );
    }

    #[test]
    fn ingress_multi_value_upstreams() {
        let req = preset("ingress-nginx")
            .unwrap()
            .parse(INGRESS_LINE)
            .unwrap();
        assert_eq!(req.route.as_deref(), Some(&b"shop-gql-80"[..]));
        assert_eq!(
            req.upstream.as_deref(),
            Some(&b"10.42.3.30:80, 10.42.3.31:80"[..])
        );
        assert_eq!(req.duration_ns, Some(31_000_000));
        assert_eq!(
            req.request_id.as_deref(),
            Some(&b"9a8b7c6d5e4f30211f2e3d4c5b6a7988"[..])
        );
        let upstream_status = req.extra.iter().find(|(k, _)| *k == "upstream_status");
        assert_eq!(upstream_status.unwrap().1.as_ref(), b"502, 502");
    }

    #[test]
    fn escaped_quotes_stay_inside_fields() {
        let line = br#"192.0.2.11 - - [10/Mar/2025:14:03:01 +0000] "GET /a\x22b HTTP/1.1" 404 153 "-" "curl/8.5.0 \"quoted\"""#;
        let req = preset("combined").unwrap().parse(line).unwrap();
        assert_eq!(req.path.as_deref(), Some(&br"/a\x22b"[..]));
        assert_eq!(
            req.user_agent.as_deref(),
            Some(&br#"curl/8.5.0 \"quoted\""#[..])
        );
    }

    #[test]
    fn combined_variants() {
        let parser = preset("combined").unwrap();
        let clf = parser
            .parse(br#"1.2.3.4 - - [05/Mar/2021:09:01:38 +0100] "POST /x HTTP/1.0" 200 1513"#)
            .unwrap();
        assert_eq!(clf.bytes_sent, Some(1513));
        assert_eq!(clf.user_agent, None);
        let vhost = parser
            .parse(br#"www.example.net 1.2.3.4 - - [08/Jun/2020:08:04:43 +0000] "GET / HTTP/1.1" 500 803 "-" "-""#)
            .unwrap();
        assert_eq!(vhost.host.as_deref(), Some(&b"www.example.net"[..]));
        assert_eq!(vhost.client_ip, Some("1.2.3.4".parse().unwrap()));
        let no_ident = parser
            .parse(br#"192.168.1.1 - [08/Jun/2020:08:04:43 +0000] "GET /api/test HTTP/1.1" 200 100 "-" "curl/7.68.0""#)
            .unwrap();
        assert_eq!(no_ident.status, Some(200));
        let syslog = br#"Sep 15 16:13:46 host nginx[2869]: 81.150.104.130 - - [15/Sep/2021:16:13:46 +0000] "POST /wp-login.php HTTP/1.1" 200 5364 "-" "-""#;
        assert!(parser.parse(syslog).is_err());
    }

    #[test]
    fn auto_detection_prefers_the_specific_preset() {
        let ingress = detect_format([INGRESS_LINE, INGRESS_LINE]).unwrap();
        assert_eq!(ingress.format, "ingress-nginx");
        let combined = detect_format([COMBINED_LINE, INGRESS_LINE]).unwrap();
        assert_eq!(combined.format, "combined");
        assert_eq!(detect_format([&b"not a log"[..]]), None);
    }
}
