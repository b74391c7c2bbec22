//! The normalized request record every parser produces and every detector reads.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};

/// Event time: nanoseconds since the Unix epoch, UTC. Taken from the log line, never a clock.
/// Saved detector state holds it as its integer nanoseconds.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

impl Timestamp {
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs * NANOS_PER_SEC)
    }

    /// `None` outside the range nanoseconds in an `i64` can hold (years 1677 to 2262).
    pub fn checked_from_secs(secs: i64) -> Option<Self> {
        secs.checked_mul(NANOS_PER_SEC).map(Timestamp)
    }

    pub fn checked_add_nanos(self, nanos: i64) -> Option<Self> {
        self.0.checked_add(nanos).map(Timestamp)
    }

    pub const fn nanos(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }

    /// RFC 3339 in UTC with as many fraction digits as the value needs (0, 3, 6 or 9).
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// RFC 3339 in UTC with exactly milliseconds, the incident contract's shape.
    pub fn to_rfc3339_millis(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Parses RFC 3339 / ISO 8601 with an offset (`2025-03-10T14:02:11+00:00`, `…Z`).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let parsed = DateTime::parse_from_rfc3339(text).ok()?;
        parsed.timestamp_nanos_opt().map(Timestamp)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A field borrowed from the line, or owned when the format had to un-escape it (JSON).
/// Bytes, not `str`: logs carry raw and escaped non-UTF-8 bytes.
pub type Text<'a> = Cow<'a, [u8]>;

/// One access-log record. A field the line did not have (or logged as `-`) is `None`,
/// never a made-up value. Text is kept as logged (nginx `\xHH` escapes are not decoded).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request<'a> {
    /// Event time from the line (or the container wrapper as a fallback).
    pub ts: Option<Timestamp>,
    /// The client address (the peer, until trusted-proxy resolution picks another).
    pub client_ip: Option<IpAddr>,
    pub method: Option<Text<'a>>,
    /// Request target without the query string.
    pub path: Option<Text<'a>>,
    pub query: Option<Text<'a>>,
    /// The raw request line when the format logs one (`$request`).
    pub request_line: Option<Text<'a>>,
    /// Protocol version without `HTTP/` (`1.1`, `2.0`).
    pub http_version: Option<Text<'a>>,
    pub status: Option<u16>,
    pub bytes_sent: Option<u64>,
    /// Total request duration in nanoseconds (Traefik logs ns; nginx ms).
    pub duration_ns: Option<u64>,
    /// Remote user or token as logged; detectors fingerprint it before storing.
    pub user: Option<Text<'a>>,
    pub user_agent: Option<Text<'a>>,
    pub referer: Option<Text<'a>>,
    pub host: Option<Text<'a>>,
    /// Upstream / router / route name when the format has one.
    pub route: Option<Text<'a>>,
    /// Upstream address(es) as logged.
    pub upstream: Option<Text<'a>>,
    pub x_forwarded_for: Option<Text<'a>>,
    pub request_id: Option<Text<'a>>,
    /// Which input this came from (file path or `-`).
    pub source: Option<&'a str>,
    /// Variables the format has that gatewatch does not interpret, by name.
    pub extra: Vec<(&'static str, Text<'a>)>,
}

/// What a detector keys its statistics by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    Ip,
    Subnet,
    Token,
    Route,
    Global,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Ip => "ip",
            EntityKind::Subnet => "subnet",
            EntityKind::Token => "token",
            EntityKind::Route => "route",
            EntityKind::Global => "global",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            EntityKind::Ip,
            EntityKind::Subnet,
            EntityKind::Token,
            EntityKind::Route,
            EntityKind::Global,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Canonical form of a client address: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Parses `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443` into a canonical IP.
pub fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    // Most clients are plain IPv4: skip UTF-8 validation and the generic parser for them.
    if let Some(v4) = parse_ipv4(text) {
        return Some(IpAddr::V4(v4));
    }
    // Then plain hex IPv6 (the usual non-IPv4 client); std's parser costs ~10x more.
    if let Some(v6) = parse_ipv6_hex(text) {
        return Some(canonical_ip(IpAddr::V6(v6)));
    }
    let text = std::str::from_utf8(text).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse::<IpAddr>().ok().map(canonical_ip);
    }
    // IPv4 with a port; a bare IPv6 address would have parsed above.
    let (host, port) = text.rsplit_once(':')?;
    if port.bytes().all(|b| b.is_ascii_digit()) && !host.contains(':') {
        return host.parse::<IpAddr>().ok().map(canonical_ip);
    }
    None
}

/// IPv6 written in hex groups only (no embedded IPv4, no brackets or port), exactly as
/// `Ipv6Addr::from_str` accepts it; `None` sends anything else to the generic parser.
fn parse_ipv6_hex(text: &[u8]) -> Option<std::net::Ipv6Addr> {
    if text.len() < 2 || text.len() > 39 {
        return None;
    }
    let mut groups = [0u16; 8];
    match text.windows(2).position(|pair| pair == b"::") {
        None => (read_groups(text, &mut groups)? == 8).then_some(())?,
        Some(at) => {
            // `::` stands for at least one zero group.
            let (mut head, mut tail) = ([0u16; 7], [0u16; 7]);
            let head_len = read_groups(&text[..at], &mut head)?;
            let tail_len = read_groups(&text[at + 2..], &mut tail)?;
            if head_len + tail_len > 7 {
                return None;
            }
            groups[..head_len].copy_from_slice(&head[..head_len]);
            groups[8 - tail_len..].copy_from_slice(&tail[..tail_len]);
        }
    }
    Some(std::net::Ipv6Addr::from(groups))
}

/// `1:2:abcd` into `out`; how many groups (an empty text has none).
fn read_groups(text: &[u8], out: &mut [u16]) -> Option<usize> {
    if text.is_empty() {
        return Some(0);
    }
    let mut count = 0;
    for group in text.split(|&b| b == b':') {
        if group.is_empty() || group.len() > 4 || count == out.len() {
            return None;
        }
        let mut value = 0u16;
        for &b in group {
            value = value << 4 | (b as char).to_digit(16)? as u16;
        }
        out[count] = value;
        count += 1;
    }
    Some(count)
}

/// Dotted-quad IPv4 exactly as `Ipv4Addr::from_str` accepts it (no leading zeros).
fn parse_ipv4(text: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut value = 0u16;
        for &b in part {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            value = value * 10 + d as u16;
        }
        *octet = u8::try_from(value).ok()?;
    }
    parts
        .next()
        .is_none()
        .then_some(std::net::Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The IPv4 fast path accepts exactly what the standard parser accepts.
        #[test]
        fn ipv4_fast_path_agrees_with_std(text in "[0-9.]{0,18}") {
            prop_assert_eq!(parse_ipv4(text.as_bytes()), text.parse::<std::net::Ipv4Addr>().ok());
        }

        /// What the IPv6 fast path accepts, std accepts alike; dotted forms go to std.
        #[test]
        fn ipv6_fast_path_agrees_with_std(text in "[0-9a-fA-F:.]{0,41}") {
            let fast = parse_ipv6_hex(text.as_bytes());
            let std = text.parse::<std::net::Ipv6Addr>().ok();
            if text.contains('.') {
                prop_assert_eq!(fast, None);
            } else {
                prop_assert_eq!(fast, std);
            }
        }

        /// Every address, as std prints it (compressed) and in full, takes the fast path.
        #[test]
        fn ipv6_fast_path_reads_printed_addresses(bits in any::<u128>(), zeros in 0u32..8) {
            // Runs of zero groups, so `::` appears in many places.
            let mask = !0u128 >> (16 * zeros) << (16 * (zeros / 2));
            let addr = std::net::Ipv6Addr::from(bits & mask);
            let full = addr.segments().map(|g| format!("{g:x}")).join(":");
            if addr.to_ipv4_mapped().is_none() && addr.to_ipv4().is_none() {
                prop_assert_eq!(parse_ipv6_hex(addr.to_string().as_bytes()), Some(addr));
            }
            prop_assert_eq!(parse_ipv6_hex(full.as_bytes()), Some(addr));
        }
    }

    #[test]
    fn parse_ip_normalises_ports_brackets_and_mapped_v4() {
        assert_eq!(parse_ip(b"1.2.3.4"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(parse_ip(b"1.2.3.4:80"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(
            parse_ip(b"[2001:db8::1]:443"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_ip(b"::ffff:10.0.0.1"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_ip(b"2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_ip(b"unix:"), None);
        assert_eq!(parse_ip(b"-"), None);
    }

    #[test]
    fn timestamps_format_as_utc_rfc3339() {
        let ts = Timestamp::parse_rfc3339("2025-03-10T14:02:11.250+01:00").unwrap();
        assert_eq!(ts.to_rfc3339_millis(), "2025-03-10T13:02:11.250Z");
        assert_eq!(Timestamp::from_secs(0).to_rfc3339(), "1970-01-01T00:00:00Z");
    }
}
