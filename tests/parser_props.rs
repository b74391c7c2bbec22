//! Property tests for the log parsers.
//!
//! 1. Nothing a log file can contain panics a parser: arbitrary bytes, valid lines with random
//!    damage, arbitrary `log_format` strings and the lines they describe.
//! 2. Round trips: structured records rendered as `combined` / `ingress-nginx` lines (bare,
//!    CRI- or Docker-wrapped, split into CRI `P` fragments) parse back to exactly the fields
//!    they were rendered from. Expected timestamps come from the generated UTC seconds; the
//!    calendar work of rendering is chrono's, so the parser's own date math is checked
//!    against an independent implementation.
//!
//! No test reads a clock: every timestamp is generated.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use gatewatch::event::{Request, Timestamp, NANOS_PER_SEC};
use gatewatch::parse::{
    detect_format, preset, unwrap_line, Decoder, Joiner, Leniency, LogFormat, Parser, Stream,
    Unwrapped, Wrapper, PRESET_NAMES,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

/// Failures are reported with the shrunk input, not written to `proptest-regressions/` in
/// the source tree.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

// Compiled once: the presets are immutable and `Send + Sync`.

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

/// Text as nginx writes it with `escape=default`: printable characters of `class` (a
/// one-character regex) and any byte as `\xHH`. Never a raw `"` or `\` unless `class` has one.
fn nginx_text(class: &str, len: Range<usize>) -> BoxedStrategy<String> {
    let plain = prop::string::string_regex(class).expect("valid character class");
    let escape = any::<u8>().prop_map(|b| format!("\\x{b:02X}"));
    vec(prop_oneof![6 => plain, 1 => escape], len)
        .prop_map(|parts| parts.concat())
        .boxed()
}

/// Printable ASCII without `"` and `\` (nginx escapes both).
const HEADER_CHARS: &str = r"[ !#-\[\]-~]";
const PATH_CHARS: &str = r"[A-Za-z0-9._~%!$&'()*+,;=:@/-]";
const QUERY_CHARS: &str = r"[A-Za-z0-9._~%!$&'()*+,;=:@/?-]";
const TOKEN_CHARS: &str = r"[A-Za-z0-9._@:-]";

/// A value nginx may log as `-` (absent): `Some` is never `-` or empty.
fn optional(value: BoxedStrategy<String>) -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        value.prop_filter("`-` is how nginx logs an absent value", |v| {
            v != "-" && !v.is_empty()
        }),
    )
}

fn client_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
        // Short forms (`::1`, `2001:db8::7`) and IPv4-mapped addresses, which canonicalize.
        (any::<u16>(), any::<u16>())
            .prop_map(|(a, b)| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, a, b))),
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
    ]
}

/// The documented contract: an IPv4-mapped IPv6 client is reported as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

const SECS_2000: i64 = 946_684_800;
const SECS_2100: i64 = 4_102_444_800;
/// 1677-09-23 and 2262-04-10 UTC: inside what `Timestamp` (i64 nanoseconds) can hold.
const SECS_MIN: i64 = -9_223_200_000;
const SECS_MAX: i64 = 9_223_200_000;
/// 0001-01-02 and 9999-12-30 UTC: any offset keeps the local year at four digits.
const SECS_YEAR_1: i64 = -62_135_510_400;
const SECS_YEAR_9999: i64 = 253_402_128_000;

/// Mostly this century, sometimes anywhere a `Timestamp` reaches.
fn utc_seconds() -> impl Strategy<Value = i64> {
    prop_oneof![3 => SECS_2000..SECS_2100, 1 => SECS_MIN..SECS_MAX]
}

/// Four-digit years a `Timestamp` cannot hold (before 1677-09-23, after 2262-04-10).
fn unrepresentable_seconds() -> impl Strategy<Value = i64> {
    prop_oneof![
        SECS_YEAR_1..SECS_MIN - 2 * 86_400,
        SECS_MAX + 2 * 86_400..SECS_YEAR_9999
    ]
}

/// Seconds east of UTC: the usual zones plus any whole minute within ±14:00.
fn utc_offset() -> impl Strategy<Value = i32> {
    prop_oneof![
        select(vec![
            0,
            -4 * 3600,
            5 * 3600 + 1800,
            5 * 3600 + 45 * 60,
            -(9 * 3600 + 30 * 60),
            14 * 3600,
            -12 * 3600,
        ]),
        (-14 * 60..=14 * 60).prop_map(|minutes: i32| minutes * 60),
    ]
}

/// `$time_local` (`10/Mar/2025:14:02:11 +0000`), rendered by chrono.
fn time_local(utc_secs: i64, offset: i32) -> String {
    let zone = FixedOffset::east_opt(offset).expect("offset within a day");
    DateTime::from_timestamp(utc_secs, 0)
        .expect("in chrono's range")
        .with_timezone(&zone)
        .format("%d/%b/%Y:%H:%M:%S %z")
        .to_string()
}

/// A container runtime's receive time, as nanoseconds since the epoch.
fn runtime_nanos() -> impl Strategy<Value = i64> {
    SECS_2000 * NANOS_PER_SEC..SECS_2100 * NANOS_PER_SEC
}

/// Go's `time.RFC3339Nano` as CRI writes it: UTC, trailing fraction zeros dropped.
fn rfc3339_nano(nanos: i64) -> String {
    let full = DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::Nanos, true);
    let (seconds, fraction) = full
        .trim_end_matches('Z')
        .split_once('.')
        .expect("nanos format");
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{seconds}Z")
    } else {
        format!("{seconds}.{fraction}Z")
    }
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec!["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "PROPFIND"])
            .prop_map(str::to_owned),
        1 => "[A-Z][A-Z_-]{0,15}",
    ]
}

/// `None` is an HTTP/0.9 request line (`GET /`), which has no protocol.
fn http_version() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => select(vec!["1.0", "1.1", "2.0", "2", "3"]).prop_map(|v| Some(v.to_owned())),
        1 => Just(None),
    ]
}

/// Byte counts: small ones mostly, anything up to nginx's `off_t` maximum sometimes.
fn byte_count() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0..100_000u64, 1 => 0..=i64::MAX as u64]
}

/// Fields shared by `combined` and `ingress-nginx`.
#[derive(Clone, Debug)]
struct Record {
    client_ip: IpAddr,
    user: Option<String>,
    utc_secs: i64,
    offset: i32,
    method: String,
    path: String,
    query: Option<String>,
    http_version: Option<String>,
    status: u16,
    bytes_sent: u64,
    referer: Option<String>,
    user_agent: Option<String>,
}

prop_compose! {
    fn record()(
        client_ip in client_ip(),
        user in optional(nginx_text(TOKEN_CHARS, 1..16)),
        (utc_secs, offset) in (utc_seconds(), utc_offset()),
        method in method(),
        (path, query) in (
            nginx_text(PATH_CHARS, 0..24).prop_map(|p| format!("/{p}")),
            optional(nginx_text(QUERY_CHARS, 1..24)),
        ),
        http_version in http_version(),
        status in 100u16..=599,
        bytes_sent in byte_count(),
        referer in optional(nginx_text(HEADER_CHARS, 1..40)),
        user_agent in optional(nginx_text(HEADER_CHARS, 1..60)),
    ) -> Record {
        Record {
            client_ip, user, utc_secs, offset, method, path, query, http_version, status,
            bytes_sent, referer, user_agent,
        }
    }
}

fn dash(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

fn owned(text: &str) -> Cow<'static, [u8]> {
    Cow::Owned(text.as_bytes().to_vec())
}

impl Record {
    fn request_line(&self) -> String {
        let target = match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        };
        match &self.http_version {
            Some(version) => format!("{} {target} HTTP/{version}", self.method),
            None => format!("{} {target}", self.method),
        }
    }

    fn combined(&self) -> String {
        format!(
            r#"{} - {} [{}] "{}" {} {} "{}" "{}""#,
            self.client_ip,
            dash(&self.user),
            time_local(self.utc_secs, self.offset),
            self.request_line(),
            self.status,
            self.bytes_sent,
            dash(&self.referer),
            dash(&self.user_agent),
        )
    }

    /// Every field the `combined` preset must produce, and nothing else.
    fn expected(&self) -> Request<'static> {
        Request {
            ts: Some(Timestamp(self.utc_secs * NANOS_PER_SEC)),
            client_ip: Some(canonical(self.client_ip)),
            method: Some(owned(&self.method)),
            path: Some(owned(&self.path)),
            query: self.query.as_deref().map(owned),
            request_line: Some(owned(&self.request_line())),
            http_version: self.http_version.as_deref().map(owned),
            status: Some(self.status),
            bytes_sent: Some(self.bytes_sent),
            user: self.user.as_deref().map(owned),
            referer: self.referer.as_deref().map(owned),
            user_agent: self.user_agent.as_deref().map(owned),
            ..Request::default()
        }
    }
}

/// One upstream attempt of an ingress-nginx request; `None` is logged as `-`.
#[derive(Clone, Debug)]
struct Attempt {
    addr: String,
    length: Option<u64>,
    time_ms: Option<u64>,
    status: Option<u16>,
}

fn seconds_ms(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn attempt() -> impl Strategy<Value = Attempt> {
    let addr = prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("{}:{port}", Ipv4Addr::from(ip))),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("[{}]:{port}", Ipv6Addr::from(ip))),
    ];
    (
        addr,
        prop::option::weighted(0.9, 0..1_000_000u64),
        prop::option::weighted(0.9, 0..120_000u64),
        prop::option::weighted(0.9, 100u16..=599),
    )
        .prop_map(|(addr, length, time_ms, status)| Attempt {
            addr,
            length,
            time_ms,
            status,
        })
}

#[derive(Clone, Debug)]
struct Ingress {
    base: Record,
    request_length: u64,
    request_time_ms: u64,
    route: String,
    alternative: Option<String>,
    attempts: Vec<Attempt>,
    /// ingress-nginx joins retries with `, ` and internal redirects with ` : `.
    separator: &'static str,
    req_id: String,
}

prop_compose! {
    fn ingress()(
        base in record(),
        request_length in 0..100_000u64,
        request_time_ms in prop_oneof![3 => 0..10_000u64, 1 => 0..=u64::from(u32::MAX)],
        route in "[a-z0-9]{1,10}-[a-z0-9-]{1,16}-[0-9]{1,5}",
        alternative in prop::option::weighted(0.2, "[a-z0-9]{1,10}-[a-z0-9]{1,10}-[0-9]{1,5}"),
        attempts in vec(attempt(), 1..=3),
        separator in prop_oneof![4 => Just(", "), 1 => Just(" : ")],
        req_id in "[0-9a-f]{32}",
    ) -> Ingress {
        Ingress {
            base, request_length, request_time_ms, route, alternative, attempts, separator,
            req_id,
        }
    }
}

impl Ingress {
    fn join<T>(&self, field: impl Fn(&Attempt) -> Option<T>) -> String
    where
        T: ToString,
    {
        let values: Vec<String> = self
            .attempts
            .iter()
            .map(|a| field(a).map_or_else(|| "-".to_owned(), |v| v.to_string()))
            .collect();
        values.join(self.separator)
    }

    fn upstream_addr(&self) -> String {
        self.join(|a| Some(a.addr.clone()))
    }
    fn upstream_length(&self) -> String {
        self.join(|a| a.length)
    }
    fn upstream_time(&self) -> String {
        self.join(|a| a.time_ms.map(seconds_ms))
    }
    fn upstream_status(&self) -> String {
        self.join(|a| a.status)
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} [{}] [{}] {} {} {} {} {}",
            self.base.combined(),
            self.request_length,
            seconds_ms(self.request_time_ms),
            self.route,
            self.alternative.as_deref().unwrap_or(""),
            self.upstream_addr(),
            self.upstream_length(),
            self.upstream_time(),
            self.upstream_status(),
            self.req_id,
        )
    }

    fn expected(&self) -> Request<'static> {
        // Uninterpreted variables, in format order; `-` and empty values are not kept.
        let extra = [
            ("request_length", Some(self.request_length.to_string())),
            ("proxy_alternative_upstream_name", self.alternative.clone()),
            ("upstream_response_length", Some(self.upstream_length())),
            ("upstream_response_time", Some(self.upstream_time())),
            ("upstream_status", Some(self.upstream_status())),
        ]
        .into_iter()
        .filter_map(|(name, value)| match value {
            Some(v) if v != "-" => Some((name, owned(&v))),
            _ => None,
        })
        .collect();
        Request {
            duration_ns: Some(self.request_time_ms * 1_000_000),
            route: Some(owned(&self.route)),
            upstream: Some(owned(&self.upstream_addr())),
            request_id: Some(owned(&self.req_id)),
            extra,
            ..self.base.expected()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Container wrappers
// ---------------------------------------------------------------------------------------

fn stream_name(stderr: bool) -> &'static str {
    if stderr {
        "stderr"
    } else {
        "stdout"
    }
}

fn cri(nanos: i64, stderr: bool, tag: &str, payload: &[u8]) -> Vec<u8> {
    let mut line = format!("{} {} {tag} ", rfc3339_nano(nanos), stream_name(stderr)).into_bytes();
    line.extend_from_slice(payload);
    line
}

#[derive(serde::Serialize)]
struct DockerLine<'a> {
    log: &'a str,
    stream: &'a str,
    time: &'a str,
}

/// A Docker json-file line; `complete` adds the newline Docker keeps on a finished line.
fn docker(nanos: i64, stderr: bool, payload: &str, complete: bool) -> Vec<u8> {
    let log = if complete {
        format!("{payload}\n")
    } else {
        payload.to_owned()
    };
    let time = DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::Nanos, true);
    serde_json::to_vec(&DockerLine {
        log: &log,
        stream: stream_name(stderr),
        time: &time,
    })
    .expect("serializable")
}

/// A parse detached from the buffer it borrowed from, so it can leave a `Decoder` callback.
fn detach(req: Request<'_>) -> Request<'static> {
    fn own(text: Option<Cow<'_, [u8]>>) -> Option<Cow<'static, [u8]>> {
        text.map(|t| Cow::Owned(t.into_owned()))
    }
    Request {
        ts: req.ts,
        client_ip: req.client_ip,
        method: own(req.method),
        path: own(req.path),
        query: own(req.query),
        request_line: own(req.request_line),
        http_version: own(req.http_version),
        status: req.status,
        bytes_sent: req.bytes_sent,
        duration_ns: req.duration_ns,
        user: own(req.user),
        user_agent: own(req.user_agent),
        referer: own(req.referer),
        host: own(req.host),
        route: own(req.route),
        upstream: own(req.upstream),
        x_forwarded_for: own(req.x_forwarded_for),
        request_id: own(req.request_id),
        source: None,
        extra: req
            .extra
            .into_iter()
            .map(|(name, value)| (name, Cow::Owned(value.into_owned())))
            .collect(),
    }
}

type Decoded = (Vec<u8>, Result<Request<'static>, String>);

/// Decodes one physical line; `None` while a partial record waits for more fragments.
fn decode(decoder: &mut Decoder, line: &[u8]) -> Option<Decoded> {
    decoder.decode(line, |record, parsed| {
        (
            record.to_vec(),
            parsed.map(detach).map_err(|e| e.to_string()),
        )
    })
}

// ---------------------------------------------------------------------------------------
// Invariants every successful parse keeps
// ---------------------------------------------------------------------------------------

// The invariants are the fuzz targets' own (one definition for both); a violation
// panics, which proptest reports and shrinks like a failed assertion.
#[path = "../fuzz/src/lib.rs"]
mod invariants;
use invariants::{check_request, check_unwrapped, COMBINED, INGRESS};

/// Presets built on the nginx compiler with `$remote_addr` and `$time_local`: every field
/// borrows from the line and a parse has a client and a time (`check_request`'s preset
/// invariants). The JSON presets copy escaped strings; Envoy's text has no peer.
const ZERO_COPY_PRESETS: &[&str] = &["ingress-nginx", "traefik", "combined"];

/// Runs a line through every entry point, checking the invariants of whatever parses.
fn exercise(line: &[u8]) -> Result<(), TestCaseError> {
    for parser in [&**COMBINED, &**INGRESS] {
        if let Ok(req) = parser.parse(line) {
            check_request(line, &req, true);
        }
    }
    if let Some(Ok(unwrapped)) = unwrap_line(line) {
        check_unwrapped(line, &unwrapped);
    }
    for name in ZERO_COPY_PRESETS {
        let mut decoder = Decoder::new(preset(name).expect("preset"));
        let checked = decoder.decode(line, |record, parsed| match parsed {
            Ok(req) => {
                check_request(record, &req, true);
                req.ts
                    .map(|_| ())
                    .ok_or_else(|| "Decoder returned a record without a timestamp".to_string())
            }
            Err(_) => Ok(()),
        });
        checked.unwrap_or(Ok(())).map_err(TestCaseError::fail)?;
    }
    if let Some(detected) = detect_format([line]) {
        prop_assert!(PRESET_NAMES.contains(&detected.format));
        prop_assert_eq!((detected.parsed, detected.sampled), (1, 1));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Damage to valid lines
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(Index),
    Overwrite(Index, u8),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    /// A long digit run: numbers that overflow the field's type.
    Digits(Index, usize),
    /// A copy of one part of the line elsewhere (duplicated delimiters, fields).
    Duplicate(Index, Index, usize),
}

/// Bytes the parsers treat specially, plus anything at all.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        select(b" \"[]-,:?\\x.0123456789{}/\n\r\t".to_vec()),
        any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), interesting_byte()).prop_map(|(at, b)| Mutation::Overwrite(at, b)),
        (any::<Index>(), 1..8usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<Index>(), vec(interesting_byte(), 1..6)).prop_map(|(at, b)| Mutation::Insert(at, b)),
        (any::<Index>(), 1..26usize).prop_map(|(at, n)| Mutation::Digits(at, n)),
        (any::<Index>(), any::<Index>(), 1..16usize)
            .prop_map(|(from, to, n)| Mutation::Duplicate(from, to, n)),
    ]
}

fn mutate(mut line: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = line.len();
        match mutation {
            Mutation::Truncate(at) => line.truncate(at.index(len + 1)),
            Mutation::Overwrite(at, byte) if len > 0 => line[at.index(len)] = *byte,
            Mutation::Overwrite(..) => {}
            Mutation::Delete(at, n) => {
                let start = at.index(len + 1);
                line.drain(start..(start + n).min(len));
            }
            Mutation::Insert(at, bytes) => {
                let at = at.index(len + 1);
                line.splice(at..at, bytes.iter().copied());
            }
            Mutation::Digits(at, n) => {
                let at = at.index(len + 1);
                line.splice(at..at, std::iter::repeat_n(b'9', *n));
            }
            Mutation::Duplicate(from, to, n) => {
                let start = from.index(len + 1);
                let copy = line[start..(start + n).min(len)].to_vec();
                let to = to.index(len + 1);
                line.splice(to..to, copy);
            }
        }
    }
    line
}

/// A valid line in any of the shapes gatewatch reads.
fn valid_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        record().prop_map(|r| r.combined().into_bytes()),
        ingress().prop_map(|i| i.line().into_bytes()),
        (
            record(),
            runtime_nanos(),
            any::<bool>(),
            select(vec!["F", "P"])
        )
            .prop_map(|(r, t, stderr, tag)| cri(t, stderr, tag, r.combined().as_bytes())),
        (ingress(), runtime_nanos(), any::<bool>(), any::<bool>())
            .prop_map(|(i, t, stderr, complete)| docker(t, stderr, &i.line(), complete)),
    ]
}

// ---------------------------------------------------------------------------------------
// Arbitrary log_format strings
// ---------------------------------------------------------------------------------------

const VARIABLES: &[&str] = &[
    "remote_addr",
    "remote_user",
    "time_local",
    "time_iso8601",
    "msec",
    "request",
    "request_method",
    "request_uri",
    "uri",
    "args",
    "status",
    "body_bytes_sent",
    "bytes_sent",
    "http_referer",
    "http_user_agent",
    "http_x_forwarded_for",
    "request_time",
    "host",
    "upstream_addr",
    "upstream_status",
    "proxy_upstream_name",
    "req_id",
    "request_length",
];

/// One piece of a format string and, for a variable, the text a line puts in its place.
fn format_piece() -> impl Strategy<Value = (String, String)> {
    let variable = (select(VARIABLES), any::<bool>()).prop_map(|(name, braced)| {
        if braced {
            format!("${{{name}}}")
        } else {
            format!("${name}")
        }
    });
    let literal = prop_oneof![
        select(vec![
            " ", " - ", " \"", "\" ", "\"", " [", "] ", "]", "|", ", ", "\t"
        ])
        .prop_map(str::to_owned),
        "[ -~]{1,3}",
    ];
    let value = prop_oneof![
        Just("-".to_owned()),
        "[0-9]{1,25}",
        "[0-9]{1,20}\\.[0-9]{0,10}",
        (utc_seconds(), utc_offset()).prop_map(|(s, o)| time_local(s, o)),
        runtime_nanos().prop_map(rfc3339_nano),
        client_ip().prop_map(|ip| ip.to_string()),
        record().prop_map(|r| r.request_line()),
        "[0-9]{1,4}(, [0-9]{1,4}){0,2}",
        "[ -~]{0,12}",
    ];
    prop_oneof![
        3 => (variable, value),
        3 => literal.prop_map(|l| (l.clone(), l)),
        // Broken syntax: a lone `$`, unbalanced braces, a variable glued to the next one.
        1 => select(vec!["$", "${", "}", "${}", "$$", "${status"])
            .prop_map(|s| (s.to_owned(), s.to_owned())),
    ]
}

/// Numeric variables and the exact value a digit string stands for, when it has one.
const NUMERIC: &[&str] = &[
    "status",
    "body_bytes_sent",
    "bytes_sent",
    "request_time",
    "msec",
];

/// `whole.fraction` scaled to `10^scale` units, exactly (u128 cannot overflow here).
fn scaled(whole: &str, fraction: &str, scale: u32) -> Option<u128> {
    if fraction.len() > scale as usize {
        return None;
    }
    let padding = scale - fraction.len() as u32;
    let whole: u128 = whole.parse().ok()?;
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    Some(whole * 10u128.pow(scale) + fraction * 10u128.pow(padding))
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes never panic any entry point.
    #[test]
    fn arbitrary_bytes_never_panic(line in vec(any::<u8>(), 0..400)) {
        exercise(&line)?;
    }

    /// Valid lines with random damage (the inputs most likely to reach deep parser states)
    /// never panic, and whatever still parses keeps the invariants.
    #[test]
    fn damaged_lines_never_panic(
        line in valid_line(),
        mutations in vec(mutation(), 1..5),
    ) {
        exercise(&mutate(line, &mutations))?;
    }

    /// A stream of wrapped and bare lines, damaged, through one `Decoder` each (so the
    /// joiner carries partial state from line to line).
    #[test]
    fn decoder_streams_never_panic(
        lines in vec((valid_line(), vec(mutation(), 0..3)), 1..8),
    ) {
        let lines: Vec<Vec<u8>> = lines.into_iter().map(|(l, m)| mutate(l, &m)).collect();
        for name in ZERO_COPY_PRESETS {
            let mut decoder = Decoder::new(preset(name).expect("preset"));
            for line in &lines {
                decoder.decode(line, |record, parsed| {
                    if let Ok(req) = parsed {
                        check_request(record, &req, true);
                    }
                });
            }
        }
        let detected = detect_format(lines.iter().map(Vec::as_slice));
        if let Some(detected) = detected {
            prop_assert_eq!(detected.sampled, lines.len());
            let parser = preset(detected.format).expect("a preset");
            let parsed = lines.iter().filter(|l| parser.parse(l).is_ok()).count();
            prop_assert_eq!(detected.parsed, parsed);
        }
    }

    /// Any format string compiles or is rejected, and a compiled format parses arbitrary
    /// lines and lines shaped like it without panicking.
    #[test]
    fn arbitrary_formats_never_panic(
        format in ".{0,40}",
        pieces in vec(format_piece(), 1..8),
        line in vec(any::<u8>(), 0..200),
        missing_tail in any::<bool>(),
        extra_tail in any::<bool>(),
    ) {
        let leniency = Leniency { missing_tail, extra_tail };
        let shaped_format: String = pieces.iter().map(|(f, _)| f.as_str()).collect();
        let shaped_line: String = pieces.iter().map(|(_, v)| v.as_str()).collect();
        for format in [format.as_str(), shaped_format.as_str()] {
            let Ok(compiled) = LogFormat::compile("prop", format, leniency) else {
                continue;
            };
            prop_assert_eq!(compiled.name(), "prop");
            for line in [&line[..], shaped_line.as_bytes()] {
                if let Ok(req) = compiled.parse(line) {
                    check_request(line, &req, false);
                }
            }
        }
    }

    /// Digit strings in numeric variables parse to their exact value or are rejected:
    /// never a panic, never a silently wrapped number.
    #[test]
    fn numeric_fields_are_exact_or_rejected(
        var in select(NUMERIC),
        (whole, fraction) in ("[0-9]{1,25}", prop::option::of("[0-9]{0,10}")),
    ) {
        let value = match &fraction {
            Some(fraction) => format!("{whole}.{fraction}"),
            None => whole.clone(),
        };
        let fraction = fraction.unwrap_or_default();
        let format = LogFormat::compile("num", &format!("${var} end"), Leniency::default())
            .expect("compiles");
        let line = format!("{value} end");
        let Ok(req) = format.parse(line.as_bytes()) else {
            return Ok(());
        };
        let (got, exact) = match var {
            "status" => (req.status.map(u128::from), scaled(&whole, &fraction, 0)),
            "body_bytes_sent" | "bytes_sent" => {
                (req.bytes_sent.map(u128::from), scaled(&whole, &fraction, 0))
            }
            "request_time" => (req.duration_ns.map(u128::from), scaled(&whole, &fraction, 9)),
            "msec" => (
                req.ts.map(|t| t.nanos() as u128),
                scaled(&whole, &fraction, 9),
            ),
            other => unreachable!("{other}"),
        };
        prop_assert_eq!(got, exact, "${} = {:?}", var, value);
    }

    /// `detect_format` counts what the presets parse and picks a listed preset.
    #[test]
    fn detect_format_counts_parsed_lines(
        lines in vec(prop_oneof![valid_line(), vec(any::<u8>(), 0..80)], 0..6),
    ) {
        match detect_format(lines.iter().map(Vec::as_slice)) {
            None => {
                for name in PRESET_NAMES {
                    let parser = preset(name).expect("preset");
                    prop_assert!(lines.iter().all(|l| parser.parse(l).is_err()));
                }
            }
            Some(detected) => {
                prop_assert!(PRESET_NAMES.contains(&detected.format));
                prop_assert_eq!(detected.sampled, lines.len());
                prop_assert!(detected.parsed >= 1);
                for name in PRESET_NAMES {
                    let parser = preset(name).expect("preset");
                    let parsed = lines.iter().filter(|l| parser.parse(l).is_ok()).count();
                    prop_assert!(parsed <= detected.parsed, "{} parses more", name);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Every field of a `combined` line comes back as rendered.
    #[test]
    fn combined_round_trip(record in record()) {
        let line = record.combined();
        let parsed = COMBINED.parse(line.as_bytes());
        prop_assert_eq!(parsed, Ok(record.expected()), "{}", line);
        // The strict ingress-nginx format must not claim a plain combined line.
        prop_assert!(INGRESS.parse(line.as_bytes()).is_err(), "{}", line);
        prop_assert_eq!(detect_format([line.as_bytes()]).map(|d| d.format), Some("combined"));
    }

    /// Every field of an `ingress-nginx` line comes back as rendered, multi-attempt
    /// upstream values included; `combined` reads the same line minus the extra fields.
    #[test]
    fn ingress_round_trip(ingress in ingress()) {
        let line = ingress.line();
        let parsed = INGRESS.parse(line.as_bytes());
        prop_assert_eq!(parsed, Ok(ingress.expected()), "{}", line);
        prop_assert_eq!(COMBINED.parse(line.as_bytes()), Ok(ingress.base.expected()), "{}", line);
        prop_assert_eq!(
            detect_format([line.as_bytes()]).map(|d| d.format),
            Some("ingress-nginx")
        );
    }

    /// Times a `Timestamp` cannot hold (four-digit years outside 1677-2262), in the line or
    /// in a wrapper, are rejected: never a panic, never a wrapped-around instant.
    #[test]
    fn unrepresentable_times_are_rejected(
        record in record(),
        utc_secs in unrepresentable_seconds(),
        offset in utc_offset(),
    ) {
        let line = Record { utc_secs, offset, ..record }.combined();
        prop_assert!(COMBINED.parse(line.as_bytes()).is_err(), "{}", line);
        let time = DateTime::from_timestamp(utc_secs, 0)
            .expect("in chrono's range")
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        let wrapped = format!("{time} stdout F {line}");
        prop_assert!(matches!(unwrap_line(wrapped.as_bytes()), Some(Err(_))), "{}", wrapped);
    }

    /// CRI `F` and Docker json-file wrappers give back the exact line, which then parses
    /// as it does bare; the line's own time wins over the runtime's.
    #[test]
    fn wrapped_round_trip(
        ingress in ingress(),
        runtime in runtime_nanos(),
        stderr in any::<bool>(),
        as_docker in any::<bool>(),
    ) {
        let line = ingress.line();
        let wrapped = if as_docker {
            docker(runtime, stderr, &line, true)
        } else {
            cri(runtime, stderr, "F", line.as_bytes())
        };
        let unwrapped = unwrap_line(&wrapped).expect("recognized").expect("valid wrapper");
        prop_assert_eq!(unwrapped.wrapper, if as_docker { Wrapper::Docker } else { Wrapper::Cri });
        prop_assert_eq!(unwrapped.inner.as_ref(), line.as_bytes());
        prop_assert_eq!(unwrapped.ts, Timestamp(runtime));
        prop_assert_eq!(unwrapped.stream, if stderr { Stream::Stderr } else { Stream::Stdout });
        prop_assert!(!unwrapped.partial);

        let mut decoder = Decoder::new(preset("ingress-nginx").expect("preset"));
        let (record, parsed) = decode(&mut decoder, &wrapped).expect("a complete record");
        prop_assert_eq!(&record, line.as_bytes());
        prop_assert_eq!(parsed, Ok(ingress.expected()));
    }

    /// A format without a time variable takes the runtime's time from the wrapper.
    #[test]
    fn wrapper_time_is_the_fallback(
        ip in client_ip(),
        status in 100u16..=599,
        runtime in runtime_nanos(),
        as_docker in any::<bool>(),
    ) {
        let format = LogFormat::compile("no-time", "$remote_addr $status", Leniency::default())
            .expect("compiles");
        let line = format!("{ip} {status}");
        let wrapped = if as_docker {
            docker(runtime, false, &line, true)
        } else {
            cri(runtime, false, "F", line.as_bytes())
        };
        let mut decoder = Decoder::new(Box::new(format));
        let (_, parsed) = decode(&mut decoder, &wrapped).expect("a complete record");
        let req = parsed.map_err(TestCaseError::fail)?;
        prop_assert_eq!(req.ts, Some(Timestamp(runtime)));
        prop_assert_eq!(req.client_ip, Some(canonical(ip)));
        prop_assert_eq!(req.status, Some(status));
    }

    /// A line split into CRI `P` fragments at arbitrary points (empty fragments included)
    /// and closed by an `F` fragment joins back to the original, even with complete lines
    /// of the other stream interleaved.
    #[test]
    fn partial_fragments_join_back(
        record in record(),
        cuts in vec(any::<Index>(), 0..6),
        runtime in runtime_nanos(),
        stderr in any::<bool>(),
        as_docker in any::<bool>(),
        interleave in any::<bool>(),
    ) {
        let line = record.combined();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(line.len() + 1)).collect();
        points.sort_unstable();
        points.push(line.len());
        let mut decoder = Decoder::new(preset("combined").expect("preset"));
        let mut start = 0;
        for (i, &end) in points.iter().enumerate() {
            // The line is ASCII, so any byte index is a char boundary.
            let piece = &line[start..end];
            start = end;
            let last = i + 1 == points.len();
            let wrapped = match (as_docker, last) {
                (true, _) => docker(runtime, stderr, piece, last),
                (false, true) => cri(runtime, stderr, "F", piece.as_bytes()),
                (false, false) => cri(runtime, stderr, "P", piece.as_bytes()),
            };
            let decoded = decode(&mut decoder, &wrapped);
            if !last {
                prop_assert!(decoded.is_none(), "fragment {} produced a record", i);
                if interleave {
                    let other = cri(runtime, !stderr, "F", b"other stream");
                    let (other_record, _) = decode(&mut decoder, &other).expect("complete");
                    prop_assert_eq!(other_record, b"other stream".to_vec());
                }
                continue;
            }
            let (joined, parsed) = decoded.expect("the F fragment completes the record");
            prop_assert_eq!(&joined, line.as_bytes());
            prop_assert_eq!(parsed, Ok(record.expected()));
        }
        prop_assert_eq!(decoder.truncated(), 0);
    }

    /// The joiner against a model: per stream, a record is the concatenation of its
    /// fragments, cut at the cap, and each cut record is counted once.
    #[test]
    fn joiner_matches_model(
        cap in 1usize..16,
        fragments in vec((any::<bool>(), any::<bool>(), vec(any::<u8>(), 0..12)), 0..32),
    ) {
        let mut joiner = Joiner::new(cap);
        // Per stream: the open record's bytes so far (uncapped) and whether it was counted.
        let mut open: [(Vec<u8>, bool); 2] = Default::default();
        let mut records_cut = 0u64;
        for (stderr, partial, bytes) in &fragments {
            let stream = if *stderr { Stream::Stderr } else { Stream::Stdout };
            let got = joiner.push(Unwrapped {
                wrapper: Wrapper::Cri,
                inner: Cow::Borrowed(bytes),
                ts: Timestamp(0),
                stream,
                partial: *partial,
            });
            let (acc, counted) = &mut open[usize::from(*stderr)];
            let alone = acc.is_empty();
            acc.extend_from_slice(bytes);
            // A final fragment with nothing before it is a record on its own, never cut.
            let on_its_own = alone && !*partial;
            if acc.len() > cap && !on_its_own && !*counted {
                records_cut += 1;
                *counted = true;
            }
            if *partial {
                prop_assert_eq!(got, None);
            } else {
                let expected = if alone { &acc[..] } else { &acc[..acc.len().min(cap)] };
                prop_assert_eq!(got.as_deref(), Some(expected));
                *acc = Vec::new();
                *counted = false;
            }
        }
        prop_assert_eq!(joiner.truncated, records_cut, "cut records counted once each");
    }
}
