//! JSON access logs: Traefik (v2/v3 field names) and Envoy / Istio / Envoy Gateway.
//! Fields borrow from the line unless JSON escapes forced a copy; numbers may be JSON
//! numbers, strings or null; `-` and empty strings mean "no value".

use std::borrow::Cow;
use std::net::IpAddr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::request_line::set_target;
use super::time::parse_iso8601;
use super::{ParseError, Parser};
use crate::event::{parse_ip, Request, Text};

/// A string field that may be absent, null, `-` or empty (all "no value"). Borrowed from
/// the line unless the JSON string had escapes (serde's own `Option<Cow<str>>` always
/// copies).
#[derive(Debug, Default)]
pub(super) struct Str<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Some(Cow::Owned(v))))
            }
            // Some writers log numbers where others log strings (`upstream_service_time`).
            fn visit_u64<E>(self, v: u64) -> Result<Str<'de>, E> {
                Ok(Str(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Str<'de>, E> {
                Ok(Str(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Str<'de>, E> {
                Ok(Str(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Str<'de>, E> {
                Ok(Str(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E>(self) -> Result<Str<'de>, E> {
                Ok(Str(None))
            }
            fn visit_none<E>(self) -> Result<Str<'de>, E> {
                Ok(Str(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Str<'de>, D::Error> {
                d.deserialize_any(self)
            }
        }
        deserializer.deserialize_any(StrVisitor)
    }
}

/// A number that arrives as a JSON number, a numeric string, `-` or null.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Num(Option<f64>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumVisitor;
        impl<'de> Visitor<'de> for NumVisitor {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, a numeric string or null")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num(Some(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                match v.trim() {
                    "" | "-" => Ok(Num(None)),
                    text => text
                        .parse()
                        .map(|n| Num(Some(n)))
                        .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_unit<E>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_none<E>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Num, D::Error> {
                d.deserialize_any(self)
            }
        }
        deserializer.deserialize_any(NumVisitor)
    }
}

impl Num {
    fn as_u64(self) -> Option<u64> {
        self.0
            .filter(|n| *n >= 0.0 && n.is_finite())
            .map(|n| n as u64)
    }

    fn as_status(self) -> Option<u16> {
        self.as_u64().and_then(|n| u16::try_from(n).ok())
    }
}

pub(super) fn text<'a>(value: Str<'a>) -> Option<Text<'a>> {
    match value.0? {
        Cow::Borrowed("" | "-") => None,
        Cow::Borrowed(s) => Some(Cow::Borrowed(s.as_bytes())),
        Cow::Owned(s) if s.is_empty() || s == "-" => None,
        Cow::Owned(s) => Some(Cow::Owned(s.into_bytes())),
    }
}

/// `HTTP/1.1` → `1.1`.
pub(super) fn http_version(protocol: Option<Text<'_>>) -> Option<Text<'_>> {
    match protocol? {
        Cow::Borrowed(p) => Some(Cow::Borrowed(p.strip_prefix(b"HTTP/").unwrap_or(p))),
        Cow::Owned(p) => Some(Cow::Owned(p.strip_prefix(b"HTTP/").unwrap_or(&p).to_vec())),
    }
}

/// The right-most address of a comma-separated list (the hop nearest the proxy).
pub(super) fn last_address(list: &[u8]) -> Option<IpAddr> {
    list.rsplit(|&b| b == b',').next().and_then(parse_ip)
}

fn timestamp(
    value: &Str<'_>,
    field: &'static str,
) -> Result<Option<crate::event::Timestamp>, ParseError> {
    match value.0.as_deref() {
        None | Some("" | "-") => Ok(None),
        Some(text) => parse_iso8601(text.as_bytes())
            .map(Some)
            .ok_or(ParseError::InvalidField { field, at: 0 }),
    }
}

fn from_json<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, ParseError> {
    if line.first() != Some(&b'{') {
        return Err(ParseError::Mismatch {
            at: 0,
            expected: "{".into(),
        });
    }
    serde_json::from_slice(line).map_err(|e| ParseError::Json(e.to_string()))
}

#[derive(Deserialize)]
struct TraefikRecord<'a> {
    #[serde(rename = "StartUTC", borrow, default)]
    start_utc: Str<'a>,
    #[serde(rename = "StartLocal", borrow, default)]
    start_local: Str<'a>,
    #[serde(borrow, default)]
    time: Str<'a>,
    #[serde(rename = "ClientHost", borrow, default)]
    client_host: Str<'a>,
    #[serde(rename = "ClientUsername", borrow, default)]
    client_username: Str<'a>,
    #[serde(rename = "RequestMethod", borrow, default)]
    method: Str<'a>,
    #[serde(rename = "RequestPath", borrow, default)]
    path: Str<'a>,
    #[serde(rename = "RequestProtocol", borrow, default)]
    protocol: Str<'a>,
    #[serde(rename = "RequestHost", borrow, default)]
    host: Str<'a>,
    // Older v2 releases logged only the origin's status and size.
    #[serde(rename = "DownstreamStatus", default)]
    status: Num,
    #[serde(rename = "OriginStatus", default)]
    origin_status: Num,
    #[serde(rename = "DownstreamContentSize", default)]
    size: Num,
    #[serde(rename = "OriginContentSize", default)]
    origin_size: Num,
    #[serde(rename = "Duration", default)]
    duration_ns: Num,
    #[serde(rename = "RouterName", borrow, default)]
    router: Str<'a>,
    #[serde(rename = "ServiceAddr", borrow, default)]
    service_addr: Str<'a>,
    #[serde(rename = "request_User-Agent", borrow, default)]
    user_agent: Str<'a>,
    #[serde(rename = "request_Referer", borrow, default)]
    referer: Str<'a>,
    #[serde(rename = "request_X-Forwarded-For", borrow, default)]
    x_forwarded_for: Str<'a>,
    #[serde(rename = "request_X-Request-Id", borrow, default)]
    request_id: Str<'a>,
}

/// Traefik's JSON access log (logrus formatter, v2 and v3 field names).
pub struct TraefikJson;

impl Parser for TraefikJson {
    fn name(&self) -> &str {
        "traefik-json"
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Request<'a>, ParseError> {
        let record: TraefikRecord<'a> = from_json(line)?;
        let mut ts = None;
        for (value, field) in [
            (&record.start_utc, "StartUTC"),
            (&record.start_local, "StartLocal"),
            (&record.time, "time"),
        ] {
            ts = timestamp(value, field)?;
            if ts.is_some() {
                break;
            }
        }
        if ts.is_none() {
            return Err(ParseError::NoTimestamp);
        }
        if record
            .method
            .0
            .as_deref()
            .is_none_or(|m| m.is_empty() || m == "-")
        {
            return Err(ParseError::Truncated {
                field: "RequestMethod",
            });
        }
        let mut req = Request {
            ts,
            method: text(record.method),
            http_version: http_version(text(record.protocol)),
            status: record
                .status
                .as_status()
                .or(record.origin_status.as_status()),
            bytes_sent: record.size.as_u64().or(record.origin_size.as_u64()),
            duration_ns: record.duration_ns.as_u64(),
            user: text(record.client_username),
            user_agent: text(record.user_agent),
            referer: text(record.referer),
            host: text(record.host),
            route: text(record.router),
            upstream: text(record.service_addr),
            x_forwarded_for: text(record.x_forwarded_for),
            request_id: text(record.request_id),
            ..Request::default()
        };
        // With an X-Forwarded-For header Traefik copies the whole chain into ClientHost.
        req.client_ip = text(record.client_host).and_then(|hosts| last_address(&hosts));
        if let Some(target) = text(record.path) {
            set_target(target, &mut req);
        }
        Ok(req)
    }
}

#[derive(Deserialize)]
struct EnvoyRecord<'a> {
    #[serde(borrow, default)]
    start_time: Str<'a>,
    #[serde(borrow, default)]
    method: Str<'a>,
    #[serde(rename = "x-envoy-origin-path", borrow, default)]
    original_path: Str<'a>,
    #[serde(borrow, default)]
    path: Str<'a>,
    #[serde(borrow, default)]
    protocol: Str<'a>,
    #[serde(default)]
    response_code: Num,
    #[serde(default)]
    bytes_sent: Num,
    #[serde(default)]
    duration: Num,
    // Envoy Gateway names keys after the headers, Istio with underscores.
    #[serde(rename = "x-forwarded-for", borrow, default)]
    x_forwarded_for_header: Str<'a>,
    #[serde(borrow, default)]
    x_forwarded_for: Str<'a>,
    #[serde(rename = "user-agent", borrow, default)]
    user_agent_header: Str<'a>,
    #[serde(borrow, default)]
    user_agent: Str<'a>,
    #[serde(rename = "x-request-id", borrow, default)]
    request_id_header: Str<'a>,
    #[serde(borrow, default)]
    request_id: Str<'a>,
    #[serde(rename = ":authority", borrow, default)]
    authority_header: Str<'a>,
    #[serde(borrow, default)]
    authority: Str<'a>,
    #[serde(borrow, default)]
    upstream_host: Str<'a>,
    #[serde(borrow, default)]
    downstream_remote_address: Str<'a>,
    #[serde(borrow, default)]
    route_name: Str<'a>,
    #[serde(borrow, default)]
    referer: Str<'a>,
}

/// Envoy JSON access logs as Envoy Gateway and Istio write them.
pub struct EnvoyJson;

impl Parser for EnvoyJson {
    fn name(&self) -> &str {
        "envoy-json"
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Request<'a>, ParseError> {
        let record: EnvoyRecord<'a> = from_json(line)?;
        let Some(ts) = timestamp(&record.start_time, "start_time")? else {
            return Err(ParseError::NoTimestamp);
        };
        let mut req = Request {
            ts: Some(ts),
            method: text(record.method),
            http_version: http_version(text(record.protocol)),
            status: record.response_code.as_status().filter(|s| *s != 0),
            bytes_sent: record.bytes_sent.as_u64(),
            duration_ns: record
                .duration
                .as_u64()
                .map(|ms| ms.saturating_mul(1_000_000)),
            user_agent: text(record.user_agent_header).or(text(record.user_agent)),
            referer: text(record.referer),
            host: text(record.authority_header).or(text(record.authority)),
            route: text(record.route_name),
            upstream: text(record.upstream_host),
            x_forwarded_for: text(record.x_forwarded_for_header).or(text(record.x_forwarded_for)),
            request_id: text(record.request_id_header).or(text(record.request_id)),
            ..Request::default()
        };
        req.client_ip = text(record.downstream_remote_address).and_then(|peer| parse_ip(&peer));
        if let Some(target) = text(record.original_path).or(text(record.path)) {
            set_target(target, &mut req);
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traefik_fields_and_forwarded_chain() {
        let line = br#"{"ClientHost":"203.0.113.9, 10.0.0.5","ClientUsername":"-","DownstreamContentSize":512,"DownstreamStatus":"200","Duration":4213877,"RequestHost":"api.example.com","RequestMethod":"GET","RequestPath":"/v1/orders?page=2","RequestProtocol":"HTTP/2.0","RouterName":"websecure-orders@kubernetescrd","ServiceAddr":"10.42.1.17:8080","ServiceURL":{"Host":"x"},"StartUTC":"2025-03-10T14:07:21.512300211Z","request_User-Agent":"ok\u0068ttp/4.12.0","time":"2025-03-10T14:07:21Z"}"#;
        let req = TraefikJson.parse(line).unwrap();
        assert_eq!(req.client_ip, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(req.user, None);
        assert_eq!(req.status, Some(200));
        assert_eq!(req.duration_ns, Some(4_213_877));
        assert_eq!(req.path.as_deref(), Some(&b"/v1/orders"[..]));
        assert_eq!(req.query.as_deref(), Some(&b"page=2"[..]));
        assert_eq!(req.http_version.as_deref(), Some(&b"2.0"[..]));
        assert_eq!(req.user_agent.as_deref(), Some(&b"okhttp/4.12.0"[..]));
        assert!(
            matches!(req.route, Some(Cow::Borrowed(_))),
            "unescaped text borrows"
        );
        assert_eq!(
            req.ts.unwrap().to_rfc3339(),
            "2025-03-10T14:07:21.512300211Z"
        );
    }

    #[test]
    fn envoy_numbers_nulls_and_peer_address() {
        let line = br#"{"authority":"api.example.com","bytes_sent":"1532","downstream_remote_address":"[2001:db8::7]:53311","duration":12,"method":"GET","path":"/api?x=1","protocol":"HTTP/1.1","response_code":200,"route_name":"default","start_time":"2025-03-10T14:08:00.123Z","upstream_host":null,"user_agent":"-","x_forwarded_for":"203.0.113.45"}"#;
        let req = EnvoyJson.parse(line).unwrap();
        assert_eq!(req.client_ip, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(req.bytes_sent, Some(1532));
        assert_eq!(req.duration_ns, Some(12_000_000));
        assert_eq!(req.upstream, None);
        assert_eq!(req.user_agent, None);
        assert_eq!(req.host.as_deref(), Some(&b"api.example.com"[..]));
    }

    #[test]
    fn non_json_and_other_json_are_rejected() {
        assert!(TraefikJson.parse(b"DEBUG: plugin says hi").is_err());
        assert!(TraefikJson
            .parse(br#"{"start_time":"2025-03-10T14:08:00Z","method":"GET"}"#)
            .is_err());
        assert!(EnvoyJson
            .parse(br#"{"StartUTC":"2025-03-10T14:08:00Z","RequestMethod":"GET"}"#)
            .is_err());
        assert!(EnvoyJson.parse(br#"{"start_time":"yesterday"}"#).is_err());
        // Found by the parse_json fuzz target: an empty time is no time.
        assert_eq!(
            EnvoyJson.parse(br#"{"start_time":"","method":"GET"}"#),
            Err(ParseError::NoTimestamp)
        );
        assert_eq!(
            TraefikJson.parse(br#"{"StartUTC":"-","RequestMethod":"GET"}"#),
            Err(ParseError::NoTimestamp)
        );
    }
}
