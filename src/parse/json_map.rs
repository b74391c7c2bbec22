//! Generic JSON access logs: the operator names which key holds which field
//! (`--json-fields ts=time,client_ip=remote_addr,…`), as ingress-nginx `escape=json`
//! templates and other hand-written JSON formats need.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::json::{http_version, last_address, Str};
use super::request_line::set_target;
use super::time::{parse_epoch_seconds, parse_iso8601, parse_time_local};
use super::{ParseError, Parser};
use crate::event::{Request, Text};

/// Request fields a JSON key can be mapped to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Ts,
    ClientIp,
    Method,
    /// The request target: path with an optional `?query`.
    Path,
    Query,
    Protocol,
    Status,
    BytesSent,
    DurationS,
    DurationMs,
    DurationNs,
    User,
    UserAgent,
    Referer,
    Host,
    Route,
    Upstream,
    XForwardedFor,
    RequestId,
}

const FIELDS: &[(&str, Field)] = &[
    ("ts", Field::Ts),
    ("client_ip", Field::ClientIp),
    ("method", Field::Method),
    ("path", Field::Path),
    ("query", Field::Query),
    ("protocol", Field::Protocol),
    ("status", Field::Status),
    ("bytes_sent", Field::BytesSent),
    ("duration_s", Field::DurationS),
    ("duration_ms", Field::DurationMs),
    ("duration_ns", Field::DurationNs),
    ("user", Field::User),
    ("user_agent", Field::UserAgent),
    ("referer", Field::Referer),
    ("host", Field::Host),
    ("route", Field::Route),
    ("upstream", Field::Upstream),
    ("x_forwarded_for", Field::XForwardedFor),
    ("request_id", Field::RequestId),
];

/// Which JSON key fills which field. `ts` is required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonFields {
    keys: Vec<(String, Field)>,
}

impl JsonFields {
    /// Parses `field=key,field=key,…`; every problem is reported with the field it is about.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((field, key)) = pair.split_once('=') else {
                errors.push(format!("{pair:?} is not field=key"));
                continue;
            };
            match FIELDS.iter().find(|(name, _)| *name == field.trim()) {
                Some((_, field)) => keys.push((key.trim().to_string(), *field)),
                None => errors.push(format!(
                    "unknown field {:?} (known: {})",
                    field.trim(),
                    FIELDS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        if !keys.iter().any(|(_, f)| *f == Field::Ts) {
            errors.push("ts=<key> is required: detection runs on the log's own time".into());
        }
        if errors.is_empty() {
            Ok(JsonFields { keys })
        } else {
            Err(errors.join("; "))
        }
    }

    fn field_of(&self, key: &str) -> Option<Field> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, f)| *f)
    }
}

/// A JSON access log read through a `JsonFields` map.
pub struct MappedJson {
    fields: JsonFields,
}

impl MappedJson {
    pub fn new(fields: JsonFields) -> Self {
        MappedJson { fields }
    }
}

impl Parser for MappedJson {
    fn name(&self) -> &str {
        "json"
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Request<'a>, ParseError> {
        if line.first() != Some(&b'{') {
            return Err(ParseError::Mismatch {
                at: 0,
                expected: "{".into(),
            });
        }
        let mut de = serde_json::Deserializer::from_slice(line);
        let values = RecordSeed(&self.fields)
            .deserialize(&mut de)
            .and_then(|values| de.end().map(|()| values))
            .map_err(|e| ParseError::Json(e.to_string()))?;
        let mut req = Request::default();
        let mut target = None;
        for (field, value) in values {
            fill(&mut req, field, value, &mut target)?;
        }
        if let Some(target) = target {
            let query = req.query.take();
            set_target(target, &mut req);
            req.query = req.query.take().or(query);
        }
        if req.ts.is_none() {
            return Err(ParseError::NoTimestamp);
        }
        Ok(req)
    }
}

fn text(value: Str<'_>) -> Option<Text<'_>> {
    super::json::text(value)
}

fn invalid(field: Field) -> ParseError {
    let name = FIELDS
        .iter()
        .find(|(_, f)| *f == field)
        .map_or("?", |(n, _)| n);
    ParseError::InvalidField { field: name, at: 0 }
}

fn number(value: &[u8], field: Field) -> Result<f64, ParseError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| invalid(field))
}

fn fill<'a>(
    req: &mut Request<'a>,
    field: Field,
    value: Str<'a>,
    target: &mut Option<Text<'a>>,
) -> Result<(), ParseError> {
    let Some(value) = text(value) else {
        return Ok(());
    };
    match field {
        Field::Ts => {
            let ts = parse_iso8601(&value)
                .or_else(|| parse_time_local(&value))
                .or_else(|| parse_epoch_seconds(&value))
                .ok_or_else(|| invalid(field))?;
            req.ts = Some(ts);
        }
        // A forwarded-for style list: the hop nearest the proxy.
        Field::ClientIp => {
            req.client_ip = Some(last_address(&value).ok_or_else(|| invalid(field))?)
        }
        Field::Method => req.method = Some(value),
        Field::Path => *target = Some(value),
        Field::Query => req.query = Some(value),
        Field::Protocol => req.http_version = http_version(Some(value)),
        Field::Status => {
            let status = number(&value, field)?;
            req.status = Some(u16::try_from(status as u64).map_err(|_| invalid(field))?);
        }
        Field::BytesSent => req.bytes_sent = Some(number(&value, field)? as u64),
        Field::DurationS => req.duration_ns = Some((number(&value, field)? * 1e9) as u64),
        Field::DurationMs => req.duration_ns = Some((number(&value, field)? * 1e6) as u64),
        Field::DurationNs => req.duration_ns = Some(number(&value, field)? as u64),
        Field::User => req.user = Some(value),
        Field::UserAgent => req.user_agent = Some(value),
        Field::Referer => req.referer = Some(value),
        Field::Host => req.host = Some(value),
        Field::Route => req.route = Some(value),
        Field::Upstream => req.upstream = Some(value),
        Field::XForwardedFor => req.x_forwarded_for = Some(value),
        Field::RequestId => req.request_id = Some(value),
    }
    Ok(())
}

/// Walks the top-level object once, keeping only mapped keys (borrowed where unescaped).
struct RecordSeed<'m>(&'m JsonFields);

impl<'de, 'm> DeserializeSeed<'de> for RecordSeed<'m> {
    type Value = Vec<(Field, Str<'de>)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, 'm> Visitor<'de> for RecordSeed<'m> {
    type Value = Vec<(Field, Str<'de>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::with_capacity(self.0.keys.len());
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match self.0.field_of(&key) {
                Some(field) => values.push((field, map.next_value::<Str<'de>>()?)),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INGRESS_JSON: &[u8] = br#"{"time":"2025-03-10T14:06:00+00:00","remote_addr":"203.0.113.45","x_forwarded_for":"203.0.113.45","request_id":"0f1e","remote_user":"","bytes_sent":734,"request_time":0.009,"status":200,"host":"api.example.com","method":"GET","uri":"/v1/items?limit=50","upstream":"prod-items-8080","upstream_addr":"10.42.2.8:8080","user_agent":"Go-http-client/2.0","referer":""}"#;

    fn ingress_fields() -> JsonFields {
        JsonFields::parse("ts=time, client_ip=remote_addr, user=remote_user, method=method, path=uri, status=status, bytes_sent=bytes_sent, duration_s=request_time, host=host, route=upstream, upstream=upstream_addr, user_agent=user_agent, referer=referer, request_id=request_id, x_forwarded_for=x_forwarded_for").unwrap()
    }

    #[test]
    fn maps_an_ingress_nginx_json_template() {
        let req = MappedJson::new(ingress_fields())
            .parse(INGRESS_JSON)
            .unwrap();
        assert_eq!(req.ts.unwrap().to_rfc3339(), "2025-03-10T14:06:00Z");
        assert_eq!(req.client_ip, Some("203.0.113.45".parse().unwrap()));
        assert_eq!(req.user, None, "empty string is no value");
        assert_eq!(req.path.as_deref(), Some(&b"/v1/items"[..]));
        assert_eq!(req.query.as_deref(), Some(&b"limit=50"[..]));
        assert_eq!(req.status, Some(200));
        assert_eq!(req.duration_ns, Some(9_000_000));
        assert_eq!(req.route.as_deref(), Some(&b"prod-items-8080"[..]));
        assert!(
            matches!(req.host, Some(Cow::Borrowed(_))),
            "unescaped text borrows"
        );
    }

    #[test]
    fn bad_maps_and_records_are_explained() {
        let err = JsonFields::parse("client_ip=ip,colour=c,oops").unwrap_err();
        assert!(err.contains("\"oops\" is not field=key"), "{err}");
        assert!(err.contains("unknown field \"colour\""), "{err}");
        assert!(err.contains("ts=<key> is required"), "{err}");
        let parser = MappedJson::new(ingress_fields());
        assert_eq!(
            parser.parse(br#"{"status":200}"#),
            Err(ParseError::NoTimestamp)
        );
        assert!(parser
            .parse(br#"{"time":"2025-03-10T14:06:00Z","status":"abc"}"#)
            .is_err());
        assert!(parser.parse(b"not json").is_err());
        assert!(parser
            .parse(br#"{"time":"2025-03-10T14:06:00Z"} trailing"#)
            .is_err());
    }
}
