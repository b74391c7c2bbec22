//! Compiles an nginx `log_format` string into a zero-copy line parser.
//!
//! nginx adds no structure of its own: the literal text between variables is the only
//! delimiter. So the compiled parser walks the format: a literal must match exactly, a
//! variable runs until the next literal. nom tokenizes the format string once; memchr
//! finds delimiters on the hot path.

use std::borrow::Cow;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till1, take_while1};
use nom::combinator::{all_consuming, map};
use nom::multi::many0;
use nom::sequence::{delimited, preceded};
use nom::Parser as _;

use super::intern::intern;
use super::request_line::{set_target, split_request_line};
use super::time::{digits, parse_epoch_seconds, parse_iso8601, parse_time_local};
use super::{ParseError, Parser};
use crate::event::{parse_ip, Request};

/// The nginx variables gatewatch interprets; anything else is kept as an opaque field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    RemoteAddr,
    /// Envoy's `%DOWNSTREAM_REMOTE_ADDRESS%` (`IP:port`, or `-` when unknown).
    PeerAddress,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    Status,
    BodyBytesSent,
    BytesSent,
    HttpReferer,
    HttpUserAgent,
    HttpXForwardedFor,
    RequestTime,
    /// gatewatch's `$duration_ms` for proxies that log milliseconds (Traefik, Envoy).
    DurationMs,
    Host,
    UpstreamAddr,
    ProxyUpstreamName,
    RequestId,
    /// Known or unknown, stored by name in `Request::extra`.
    Opaque(&'static str),
}

impl Var {
    fn from_name(name: &str) -> Var {
        match name {
            "remote_addr" => Var::RemoteAddr,
            "downstream_remote_address" => Var::PeerAddress,
            "remote_user" => Var::RemoteUser,
            "time_local" => Var::TimeLocal,
            "time_iso8601" => Var::TimeIso8601,
            "msec" => Var::Msec,
            "request" => Var::Request,
            "request_method" => Var::RequestMethod,
            "request_uri" => Var::RequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "status" => Var::Status,
            "body_bytes_sent" => Var::BodyBytesSent,
            "bytes_sent" => Var::BytesSent,
            "http_referer" => Var::HttpReferer,
            "http_user_agent" => Var::HttpUserAgent,
            "http_x_forwarded_for" => Var::HttpXForwardedFor,
            "request_time" => Var::RequestTime,
            "duration_ms" => Var::DurationMs,
            "host" | "http_host" | "server_name" => Var::Host,
            // Traefik's backend URL and router, Envoy's route: gatewatch names for the
            // non-nginx text formats, so one compiler serves them all.
            "upstream_addr" | "service_url" => Var::UpstreamAddr,
            "proxy_upstream_name" | "router_name" | "route_name" => Var::ProxyUpstreamName,
            "req_id" | "request_id" => Var::RequestId,
            // Interned: a `&'static str` label for every parsed line without a per-line
            // allocation, and no new memory when the same format is compiled again.
            other => Var::Opaque(intern(other)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Var::RemoteAddr => "remote_addr",
            Var::PeerAddress => "downstream_remote_address",
            Var::RemoteUser => "remote_user",
            Var::TimeLocal => "time_local",
            Var::TimeIso8601 => "time_iso8601",
            Var::Msec => "msec",
            Var::Request => "request",
            Var::RequestMethod => "request_method",
            Var::RequestUri => "request_uri",
            Var::Uri => "uri",
            Var::Args => "args",
            Var::Status => "status",
            Var::BodyBytesSent => "body_bytes_sent",
            Var::BytesSent => "bytes_sent",
            Var::HttpReferer => "http_referer",
            Var::HttpUserAgent => "http_user_agent",
            Var::HttpXForwardedFor => "http_x_forwarded_for",
            Var::RequestTime => "request_time",
            Var::DurationMs => "duration_ms",
            Var::Host => "host",
            Var::UpstreamAddr => "upstream_addr",
            Var::ProxyUpstreamName => "proxy_upstream_name",
            Var::RequestId => "req_id",
            Var::Opaque(name) => name,
        }
    }

    /// `$upstream_*` values list several attempts joined by `, ` or ` : `.
    fn is_multi_value(self) -> bool {
        matches!(self, Var::UpstreamAddr)
            || matches!(self, Var::Opaque(n) if n.starts_with("upstream_"))
    }
}

#[derive(Clone, Debug)]
enum Step {
    Literal(Box<[u8]>),
    /// A variable; `until` is the literal that ends it, `None` when it ends the line.
    Field {
        var: Var,
        until: Option<Box<[u8]>>,
    },
}

/// How forgiving a compiled format is with lines that do not match it to the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leniency {
    /// Fields after `$status` may be missing (Apache/nginx common log format lines).
    pub missing_tail: bool,
    /// Text after the last field is ignored (nginx `main`'s extra X-Forwarded-For).
    pub extra_tail: bool,
}

/// Why a `log_format` string cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("log_format is empty")]
    Empty,
    #[error("log_format has a `$` that starts no variable near {0:?}")]
    BadVariable(String),
    #[error("variables ${0} and ${1} have no literal text between them, so lines cannot be split")]
    AdjacentVariables(String, String),
}

#[derive(Clone, Debug, PartialEq)]
enum Token<'f> {
    Literal(&'f str),
    Var(&'f str),
}

fn is_var_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn tokenize(format: &str) -> Result<Vec<Token<'_>>, FormatError> {
    let braced = delimited(tag("${"), take_while1(is_var_char), tag("}"));
    let plain = preceded(tag("$"), take_while1(is_var_char));
    let var = map(alt((braced, plain)), Token::Var);
    let literal = map(take_till1(|c| c == '$'), Token::Literal);
    let result: nom::IResult<&str, Vec<Token<'_>>> =
        all_consuming(many0(alt((var, literal)))).parse(format);
    match result {
        Ok((_, tokens)) => Ok(tokens),
        Err(_) => {
            let at = format.find('$').unwrap_or(0);
            let near: String = format[at..].chars().take(16).collect();
            Err(FormatError::BadVariable(near))
        }
    }
}

/// A compiled `log_format`.
#[derive(Clone, Debug)]
pub struct LogFormat {
    name: String,
    steps: Vec<Step>,
    leniency: Leniency,
    /// Steps before this index must match for a `missing_tail` line to count.
    required_steps: usize,
    /// `$bytes_sent` only fills `bytes_sent` when the format has no `$body_bytes_sent`.
    has_body_bytes: bool,
}

impl LogFormat {
    pub fn compile(name: &str, format: &str, leniency: Leniency) -> Result<Self, FormatError> {
        let tokens = tokenize(format.trim_end_matches('\n'))?;
        if tokens.is_empty() {
            return Err(FormatError::Empty);
        }
        let mut steps = Vec::with_capacity(tokens.len());
        for (i, token) in tokens.iter().enumerate() {
            match token {
                Token::Literal(text) => steps.push(Step::Literal(text.as_bytes().into())),
                Token::Var(name) => {
                    let until = match tokens.get(i + 1) {
                        Some(Token::Literal(text)) => Some(text.as_bytes().into()),
                        Some(Token::Var(next)) => {
                            return Err(FormatError::AdjacentVariables(
                                name.to_string(),
                                next.to_string(),
                            ))
                        }
                        None => None,
                    };
                    steps.push(Step::Field {
                        var: Var::from_name(name),
                        until,
                    });
                }
            }
        }
        let status_step = steps.iter().position(|s| {
            matches!(
                s,
                Step::Field {
                    var: Var::Status,
                    ..
                }
            )
        });
        let has_body_bytes = steps.iter().any(|s| {
            matches!(
                s,
                Step::Field {
                    var: Var::BodyBytesSent,
                    ..
                }
            )
        });
        let leniency = Leniency {
            missing_tail: leniency.missing_tail && status_step.is_some(),
            ..leniency
        };
        Ok(LogFormat {
            name: name.to_string(),
            required_steps: status_step.map_or(steps.len(), |s| s + 1),
            steps,
            leniency,
            has_body_bytes,
        })
    }

    /// The variables of the format, in order.
    pub fn variables(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.steps.iter().filter_map(|s| match s {
            Step::Field { var, .. } => Some(var.name()),
            Step::Literal(_) => None,
        })
    }

    fn may_stop_at(&self, step: usize) -> bool {
        self.leniency.missing_tail && step >= self.required_steps
    }

    fn run<'a>(&self, line: &'a [u8], req: &mut Request<'a>) -> Result<(), ParseError> {
        let mut pos = 0;
        for (index, step) in self.steps.iter().enumerate() {
            match step {
                Step::Literal(literal) => {
                    if starts_with(&line[pos..], literal) {
                        pos += literal.len();
                    } else if pos == line.len() && self.may_stop_at(index) {
                        return Ok(());
                    } else {
                        return Err(ParseError::Mismatch {
                            at: pos,
                            expected: String::from_utf8_lossy(literal).into_owned(),
                        });
                    }
                }
                Step::Field { var, until } => {
                    let end = match until {
                        None => line.len(),
                        Some(literal) => match find_end(line, pos, literal, var.is_multi_value()) {
                            Some(end) => end,
                            None if self.may_stop_at(index) => {
                                self.assign(*var, &line[pos..], req, pos)?;
                                return Ok(());
                            }
                            None => return Err(ParseError::Truncated { field: var.name() }),
                        },
                    };
                    self.assign(*var, &line[pos..end], req, pos)?;
                    pos = end;
                }
            }
        }
        if pos != line.len() && !self.leniency.extra_tail {
            return Err(ParseError::TrailingData { at: pos });
        }
        Ok(())
    }

    fn assign<'a>(
        &self,
        var: Var,
        value: &'a [u8],
        req: &mut Request<'a>,
        at: usize,
    ) -> Result<(), ParseError> {
        let invalid = || ParseError::InvalidField {
            field: var.name(),
            at,
        };
        match var {
            Var::RemoteAddr => req.client_ip = Some(parse_ip(value).ok_or_else(invalid)?),
            Var::PeerAddress if value == b"-" => {}
            Var::PeerAddress => req.client_ip = Some(parse_ip(value).ok_or_else(invalid)?),
            Var::RemoteUser => req.user = text(value),
            Var::TimeLocal => req.ts = Some(parse_time_local(value).ok_or_else(invalid)?),
            Var::TimeIso8601 => req.ts = Some(parse_iso8601(value).ok_or_else(invalid)?),
            Var::Msec => req.ts = Some(parse_epoch_seconds(value).ok_or_else(invalid)?),
            Var::Request => {
                req.request_line = text(value);
                if req.request_line.is_some() {
                    split_request_line(value, req);
                }
            }
            Var::RequestMethod => req.method = text(value),
            Var::RequestUri => {
                if let Some(target) = text(value) {
                    set_target(target, req);
                }
            }
            Var::Uri => {
                if req.path.is_none() {
                    req.path = text(value);
                }
            }
            Var::Args => req.query = text(value),
            Var::Status => req.status = number(value).ok_or_else(invalid)?,
            Var::BodyBytesSent => req.bytes_sent = number(value).ok_or_else(invalid)?,
            Var::BytesSent => {
                let bytes = number(value).ok_or_else(invalid)?;
                if !self.has_body_bytes {
                    req.bytes_sent = bytes;
                }
            }
            Var::HttpReferer => req.referer = text(value),
            Var::HttpUserAgent => req.user_agent = text(value),
            Var::HttpXForwardedFor => req.x_forwarded_for = text(value),
            Var::RequestTime => req.duration_ns = seconds_as_nanos(value).ok_or_else(invalid)?,
            Var::DurationMs => {
                req.duration_ns = seconds_as_nanos(value)
                    .ok_or_else(invalid)?
                    .map(|ns| ns / 1000)
            }
            Var::Host => req.host = text(strip_port(value)),
            Var::UpstreamAddr => req.upstream = text(value),
            Var::ProxyUpstreamName => req.route = text(value),
            Var::RequestId => req.request_id = text(value),
            Var::Opaque(name) => {
                if let Some(value) = text(value) {
                    req.extra.push((name, value));
                }
            }
        }
        Ok(())
    }
}

impl Parser for LogFormat {
    fn name(&self) -> &str {
        &self.name
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Request<'a>, ParseError> {
        let mut req = Request::default();
        self.parse_into(line, &mut req)?;
        Ok(req)
    }

    fn parse_into<'a>(&self, line: &'a [u8], out: &mut Request<'a>) -> Result<(), ParseError> {
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        self.run(line, out)
    }
}

/// Finds where a field that is followed by `literal` ends. A quote preceded by an odd run of
/// backslashes is part of the value (Apache's `\"`), and inside `$upstream_*` values the
/// `, ` and ` : ` attempt separators do not end the field.
fn find_end(line: &[u8], from: usize, literal: &[u8], multi_value: bool) -> Option<usize> {
    let first = literal[0];
    let mut search = from;
    while let Some(offset) = memchr::memchr(first, &line[search..]) {
        let at = search + offset;
        let matches = starts_with(&line[at..], literal)
            && !(first == b'"' && escaped(line, from, at))
            && !(multi_value && first == b' ' && is_attempt_separator(line, at));
        if matches {
            return Some(at);
        }
        search = at + 1;
    }
    None
}

/// `haystack.starts_with(prefix)` without a `memcmp` call: format literals are a few bytes.
#[inline]
fn starts_with(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack.iter().zip(prefix).all(|(a, b)| a == b)
}

fn escaped(line: &[u8], from: usize, at: usize) -> bool {
    let backslashes = line[from..at]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    backslashes % 2 == 1
}

fn is_attempt_separator(line: &[u8], space: usize) -> bool {
    (space > 0 && line[space - 1] == b',')
        || line[space + 1..].starts_with(b": ")
        || (space >= 2 && &line[space - 2..space] == b" :")
}

/// `example.com:443` → `example.com` (a `$http_host` or vhost prefix may carry a port;
/// bracketed IPv6 keeps its brackets, a bare IPv6 address is left alone).
fn strip_port(host: &[u8]) -> &[u8] {
    match memchr::memrchr(b':', host) {
        Some(colon)
            if colon + 1 < host.len()
                && host[colon + 1..].iter().all(u8::is_ascii_digit)
                && (memchr::memchr(b':', &host[..colon]).is_none()
                    || host[..colon].ends_with(b"]")) =>
        {
            &host[..colon]
        }
        _ => host,
    }
}

/// `-` and the empty string both mean "no value".
fn text(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    match value {
        b"" | b"-" => None,
        _ => Some(Cow::Borrowed(value)),
    }
}

/// A decimal number, or `None` for `-`; `Err` (outer `None`) for anything else.
fn number<T: TryFrom<u64>>(value: &[u8]) -> Option<Option<T>> {
    if value == b"-" {
        return Some(None);
    }
    if value.is_empty() {
        return None;
    }
    T::try_from(digits(value)?).ok().map(Some)
}

/// nginx seconds with millisecond resolution (`0.014`) as nanoseconds; `-` is `None`.
fn seconds_as_nanos(value: &[u8]) -> Option<Option<u64>> {
    if value == b"-" {
        return Some(None);
    }
    // Multi-attempt values (`0.010, 0.020`) are not a request time; take the first.
    let value = value.split(|&b| b == b',').next()?;
    let (whole, fraction) = match memchr::memchr(b'.', value) {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    if whole.is_empty() || fraction.len() > 9 {
        return None;
    }
    let whole: u64 = number::<u64>(whole)??;
    let mut nanos = if fraction.is_empty() {
        0
    } else {
        number::<u64>(fraction)??
    };
    for _ in fraction.len()..9 {
        nanos *= 10;
    }
    whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(nanos))
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_handles_braces_and_literals() {
        let tokens = tokenize("${remote_addr}x [$time_local]").unwrap();
        assert_eq!(
            tokens,
            vec![
                Token::Var("remote_addr"),
                Token::Literal("x ["),
                Token::Var("time_local"),
                Token::Literal("]"),
            ]
        );
        assert!(matches!(
            tokenize("a $ b"),
            Err(FormatError::BadVariable(_))
        ));
    }

    #[test]
    fn adjacent_variables_are_rejected() {
        let err = LogFormat::compile("x", "$remote_addr$status", Leniency::default()).unwrap_err();
        assert_eq!(
            err,
            FormatError::AdjacentVariables("remote_addr".into(), "status".into())
        );
    }

    #[test]
    fn custom_format_with_opaque_and_iso_time() {
        let format = LogFormat::compile(
            "custom",
            r#"$time_iso8601 $remote_addr "$request_method $request_uri" $status $request_time $http_x_api_key"#,
            Leniency::default(),
        )
        .unwrap();
        let req = format
            .parse(br#"2025-03-10T14:02:11+00:00 10.0.0.1 "POST /login?next=/" 401 0.012 key-123"#)
            .unwrap();
        assert_eq!(req.ts.unwrap().to_rfc3339(), "2025-03-10T14:02:11Z");
        assert_eq!(req.method.as_deref(), Some(&b"POST"[..]));
        assert_eq!(req.path.as_deref(), Some(&b"/login"[..]));
        assert_eq!(req.query.as_deref(), Some(&b"next=/"[..]));
        assert_eq!(req.status, Some(401));
        assert_eq!(req.duration_ns, Some(12_000_000));
        assert_eq!(
            req.extra,
            vec![("http_x_api_key", Cow::Borrowed(&b"key-123"[..]))]
        );
    }

    #[test]
    fn recompiling_a_format_interns_its_unknown_variable_once() {
        let format = "$remote_addr $x_recompile_test_var";
        let compile = || {
            let compiled = LogFormat::compile("r", format, Leniency::default()).unwrap();
            compiled.variables().last().unwrap()
        };
        let first = compile();
        let added = crate::parse::intern::added_by_this_thread();
        for _ in 1..10_000 {
            let name = compile();
            assert!(std::ptr::eq(name, first), "a new copy of {name}");
        }
        assert_eq!(crate::parse::intern::added_by_this_thread(), added);
        assert_eq!(first, "x_recompile_test_var");
    }

    #[test]
    fn strict_format_rejects_trailing_and_missing_data() {
        let format = LogFormat::compile("s", "$remote_addr $status", Leniency::default()).unwrap();
        assert!(format.parse(b"10.0.0.1 200").is_ok());
        assert!(matches!(
            format.parse(b"10.0.0.1 200 extra"),
            Err(ParseError::InvalidField {
                field: "status",
                ..
            })
        ));
        assert!(matches!(
            format.parse(b"10.0.0.1"),
            Err(ParseError::Truncated {
                field: "remote_addr"
            })
        ));
    }

    #[test]
    fn host_ports_are_stripped() {
        assert_eq!(strip_port(b"example.com:443"), b"example.com");
        assert_eq!(strip_port(b"[2001:db8::1]:80"), b"[2001:db8::1]");
        assert_eq!(strip_port(b"2001:db8::1"), b"2001:db8::1");
        assert_eq!(strip_port(b"example.com"), b"example.com");
    }

    #[test]
    fn seconds_convert_exactly() {
        assert_eq!(seconds_as_nanos(b"0.014"), Some(Some(14_000_000)));
        assert_eq!(seconds_as_nanos(b"12"), Some(Some(12_000_000_000)));
        assert_eq!(seconds_as_nanos(b"-"), Some(None));
        assert_eq!(seconds_as_nanos(b"x"), None);
    }
}
