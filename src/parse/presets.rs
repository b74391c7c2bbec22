//! Built-in formats and `--format auto`.

use super::json::{EnvoyJson, TraefikJson};
use super::nginx::{Leniency, LogFormat};
use super::{ParseError, Parser};
use crate::event::Request;

/// nginx's predefined `combined` format.
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// The ingress-nginx controller's default `log-format-upstream` (`upstreaminfo`).
pub const INGRESS_NGINX: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id"#;

/// Traefik's common log format ("CLF"): combined plus request count, router, backend URL
/// and duration in milliseconds.
pub const TRAEFIK: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_count "$router_name" "$service_url" ${duration_ms}ms"#;

/// Envoy's default text format (also Envoy Gateway's). It has no peer address: the
/// client comes from X-Forwarded-For.
pub const ENVOY: &str = r#"[$time_iso8601] "$request" $status $response_flags $bytes_received $bytes_sent $duration_ms $upstream_service_time "$http_x_forwarded_for" "$http_user_agent" "$req_id" "$host" "$upstream_addr""#;

/// Istio's default text format: Envoy's with response details, upstream cluster and
/// addresses, the downstream peer, SNI and route name.
const ISTIO: &str = r#"[$time_iso8601] "$request" $status $response_flags $response_code_details $connection_termination_details "$upstream_transport_failure_reason" $bytes_received $bytes_sent $duration_ms $upstream_service_time "$http_x_forwarded_for" "$http_user_agent" "$req_id" "$host" "$upstream_addr" $upstream_cluster $upstream_local_address $downstream_local_address $downstream_remote_address $requested_server_name $route_name"#;

/// `combined` with a virtual host before the client (`log_format vhost_combined`).
const VHOST_COMBINED: &str = r#"$host $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// `combined` written by tools that drop the ident column (`ip - [time] …`).
/// nginx's stock `main` format: combined plus the forwarded-for chain (which trusted-proxy
/// resolution needs; `combined` would read the line and drop it).
pub const NGINX_MAIN: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;

const COMBINED_NO_IDENT: &str = r#"$remote_addr - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// Preset names, most specific first: auto-detection prefers the earlier one on a tie
/// (the lenient `combined` also reads ingress-nginx lines, minus their extra fields).
pub const PRESET_NAMES: &[&str] = &[
    "ingress-nginx",
    "traefik",
    "nginx-main",
    "combined",
    "envoy",
    "traefik-json",
    "envoy-json",
];

/// A preset that reads several layouts of one format. The first (the common one) is tried
/// first, so the variants cost nothing on ordinary lines.
struct Variants {
    name: &'static str,
    variants: Vec<LogFormat>,
}

impl Variants {
    fn new(name: &'static str, formats: &[&str], leniency: Leniency) -> Self {
        let variants = formats
            .iter()
            .map(|format| LogFormat::compile(name, format, leniency).expect("preset"))
            .collect();
        Variants { name, variants }
    }
}

impl Parser for Variants {
    fn name(&self) -> &str {
        self.name
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Request<'a>, ParseError> {
        let mut req = Request::default();
        self.parse_into(line, &mut req)?;
        Ok(req)
    }

    fn parse_into<'a>(&self, line: &'a [u8], out: &mut Request<'a>) -> Result<(), ParseError> {
        let first_error = match self.variants[0].parse_into(line, out) {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        for variant in &self.variants[1..] {
            *out = Request::default();
            if variant.parse_into(line, out).is_ok() {
                return Ok(());
            }
        }
        Err(first_error)
    }
}

/// Newer releases may append fields; missing ones are not allowed (that is another format).
const TRAILING_FIELDS_ONLY: Leniency = Leniency {
    missing_tail: false,
    extra_tail: true,
};

/// A built-in parser by name.
pub fn preset(name: &str) -> Option<Box<dyn Parser>> {
    match name {
        // `combined` reads what real servers write: the common log format (no referer/UA),
        // extra trailing fields (nginx `main`), a vhost prefix, no ident column.
        "combined" => Some(Box::new(Variants::new(
            "combined",
            &[COMBINED, VHOST_COMBINED, COMBINED_NO_IDENT],
            Leniency {
                missing_tail: true,
                extra_tail: true,
            },
        ))),
        "nginx-main" => Some(Box::new(Variants::new(
            "nginx-main",
            &[NGINX_MAIN],
            TRAILING_FIELDS_ONLY,
        ))),
        "ingress-nginx" => Some(Box::new(Variants::new(
            "ingress-nginx",
            &[INGRESS_NGINX],
            TRAILING_FIELDS_ONLY,
        ))),
        "traefik" => Some(Box::new(Variants::new(
            "traefik",
            &[TRAEFIK],
            TRAILING_FIELDS_ONLY,
        ))),
        "envoy" => Some(Box::new(Variants::new(
            "envoy",
            &[ENVOY, ISTIO],
            TRAILING_FIELDS_ONLY,
        ))),
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
    fn traefik_clf_fields() {
        let line = br#"172.17.1.2 - - [24/Nov/2024:13:38:04 +0000] "GET /birthday HTTP/2" 200 352 "-" "Nikto" 244 "test@docker -> leaf@docker" "http://172.17.0.3:80" 42ms"#;
        let req = preset("traefik").unwrap().parse(line).unwrap();
        assert_eq!(req.duration_ns, Some(42_000_000));
        assert_eq!(
            req.route.as_deref(),
            Some(&b"test@docker -> leaf@docker"[..])
        );
        assert_eq!(req.upstream.as_deref(), Some(&b"http://172.17.0.3:80"[..]));
        let detected = detect_format([&line[..]]).unwrap();
        assert_eq!(detected.format, "traefik", "not the lenient combined");
    }

    #[test]
    fn envoy_and_istio_text() {
        let envoy = br#"[2025-03-10T14:08:01.007Z] "POST /login HTTP/2" 503 UH 87 19 0 - "198.51.100.23,10.0.0.4" "python-requests/2.31.0" "0d9e8f7a" "auth.example.com" "-""#;
        let req = preset("envoy").unwrap().parse(envoy).unwrap();
        assert_eq!(req.client_ip, None, "the default format has no peer");
        assert_eq!(req.status, Some(503));
        assert_eq!(req.bytes_sent, Some(19));
        assert_eq!(req.upstream, None);
        let istio = br#"[2025-03-10T14:09:10.551Z] "GET /productpage HTTP/1.1" 200 - via_upstream - "-" 0 5293 27 26 "203.0.113.45" "Mozilla/5.0" "a1b2" "bookinfo.example.com" "10.42.4.12:9080" outbound|9080||productpage.default.svc.cluster.local 10.42.1.5:48210 10.42.1.5:8080 203.0.113.45:53311 - default"#;
        let req = preset("envoy").unwrap().parse(istio).unwrap();
        assert_eq!(req.client_ip, Some("203.0.113.45".parse().unwrap()));
        assert_eq!(req.bytes_sent, Some(5293));
        assert_eq!(req.duration_ns, Some(27_000_000));
        assert_eq!(req.route.as_deref(), Some(&b"default"[..]));
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

#[cfg(test)]
mod nginx_main_tests {
    use super::*;

    const MAIN_LINE: &[u8] = br#"10.0.0.5 - - [10/Mar/2025:14:02:11 +0000] "GET /login HTTP/1.1" 401 12 "-" "curl/8.5" "203.0.113.9, 10.0.0.7""#;

    #[test]
    fn nginx_main_is_detected_and_keeps_the_forwarded_chain() {
        let detected = detect_format([MAIN_LINE; 8].iter().copied()).unwrap();
        assert_eq!(detected.format, "nginx-main");
        let req = preset("nginx-main").unwrap().parse(MAIN_LINE).unwrap();
        assert_eq!(
            req.x_forwarded_for.as_deref(),
            Some(&b"203.0.113.9, 10.0.0.7"[..])
        );
        assert_eq!(req.status, Some(401));
        // A combined line is not main (no chain), and stays combined.
        let combined = br#"203.0.113.45 - - [10/Mar/2025:14:02:11 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8.5""#;
        assert!(preset("nginx-main").unwrap().parse(combined).is_err());
        assert_eq!(
            detect_format([&combined[..]; 4].iter().copied())
                .unwrap()
                .format,
            "combined"
        );
    }
}
