//! What agents send analyzers: one message per partition and flush, a header then events,
//! each in postcard's compact binary form. An event holds only what detectors read, its
//! token as a fingerprint and its line with the token masked: no raw token leaves an agent.
//! Decoding borrows every text field from the message (no copy per field).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::event::{Request, Timestamp};

/// Bumped when the layout changes; analyzers refuse messages of another version.
pub const WIRE_VERSION: u8 = 1;

/// Who sent a message and where its view of time stands.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Header<'a> {
    pub v: u8,
    pub agent: &'a str,
    /// The agent's first line's time: the cluster's warm-up counts from the earliest.
    pub first: Option<i64>,
    /// The agent's newest merged time when it sent this.
    pub watermark: i64,
    /// Source ids (the agent's files' fingerprints) the events' `source` indexes.
    pub sources: Vec<&'a str>,
}

/// One request, as much of it as detectors read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WireEvent<'a> {
    /// Which detector families (`detect::family`) this partition runs on it.
    pub families: u8,
    /// Index into the header's `sources`.
    pub source: u16,
    /// The record's offset in its source (`Record::offset`): repeats are dropped by it.
    pub offset: u64,
    pub ts: i64,
    pub ip: Option<IpAddr>,
    #[serde(borrow)]
    pub method: Option<&'a [u8]>,
    #[serde(borrow)]
    pub path: Option<&'a [u8]>,
    #[serde(borrow)]
    pub query: Option<&'a [u8]>,
    #[serde(borrow)]
    pub request_line: Option<&'a [u8]>,
    #[serde(borrow)]
    pub http_version: Option<&'a [u8]>,
    pub status: Option<u16>,
    pub bytes_sent: Option<u64>,
    pub duration_ns: Option<u64>,
    /// The token's fingerprint (`fp_…`), never the token.
    #[serde(borrow)]
    pub token: Option<&'a [u8]>,
    #[serde(borrow)]
    pub user_agent: Option<&'a [u8]>,
    #[serde(borrow)]
    pub referer: Option<&'a [u8]>,
    #[serde(borrow)]
    pub host: Option<&'a [u8]>,
    #[serde(borrow)]
    pub route: Option<&'a [u8]>,
    #[serde(borrow)]
    pub upstream: Option<&'a [u8]>,
    /// The line as evidence, its token replaced by the fingerprint.
    #[serde(borrow)]
    pub line: &'a [u8],
}

impl<'a> WireEvent<'a> {
    /// The event of `req` (which has a time), its token already fingerprinted as `token`
    /// and its line masked as `line`.
    pub fn of(
        req: &'a Request<'_>,
        token: Option<&'a [u8]>,
        line: &'a [u8],
        source: u16,
        offset: u64,
    ) -> WireEvent<'a> {
        WireEvent {
            families: 0,
            source,
            offset,
            ts: req.ts.unwrap_or_default().nanos(),
            ip: req.client_ip,
            method: req.method.as_deref(),
            path: req.path.as_deref(),
            query: req.query.as_deref(),
            request_line: req.request_line.as_deref(),
            http_version: req.http_version.as_deref(),
            status: req.status,
            bytes_sent: req.bytes_sent,
            duration_ns: req.duration_ns,
            token,
            user_agent: req.user_agent.as_deref(),
            referer: req.referer.as_deref(),
            host: req.host.as_deref(),
            route: req.route.as_deref(),
            upstream: req.upstream.as_deref(),
            line,
        }
    }

    /// The request detectors read (its `user` is the fingerprint).
    pub fn request(&self, source: &'a str) -> Request<'a> {
        let text = |field: Option<&'a [u8]>| field.map(std::borrow::Cow::Borrowed);
        Request {
            ts: Some(Timestamp(self.ts)),
            client_ip: self.ip,
            method: text(self.method),
            path: text(self.path),
            query: text(self.query),
            request_line: text(self.request_line),
            http_version: text(self.http_version),
            status: self.status,
            bytes_sent: self.bytes_sent,
            duration_ns: self.duration_ns,
            user: text(self.token),
            user_agent: text(self.user_agent),
            referer: text(self.referer),
            host: text(self.host),
            route: text(self.route),
            upstream: text(self.upstream),
            source: Some(source),
            ..Request::default()
        }
    }
}

/// Appends `header` to an empty message.
pub fn start_message(header: &Header<'_>, out: &mut Vec<u8>) {
    debug_assert!(out.is_empty());
    // Infallible into a Vec (postcard fails only on a full fixed buffer).
    *out = postcard::to_extend(header, std::mem::take(out)).expect("encodes into a Vec");
}

/// Appends one event to a message.
pub fn push_event(event: &WireEvent<'_>, out: &mut Vec<u8>) {
    *out = postcard::to_extend(event, std::mem::take(out)).expect("encodes into a Vec");
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not a gatewatch cluster message: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("message version {0}, this analyzer reads version {WIRE_VERSION}")]
    Version(u8),
}

/// A message's header and the bytes of its events.
pub fn read_header(message: &[u8]) -> Result<(Header<'_>, &[u8]), WireError> {
    let (header, rest): (Header<'_>, &[u8]) = postcard::take_from_bytes(message)?;
    if header.v != WIRE_VERSION {
        return Err(WireError::Version(header.v));
    }
    Ok((header, rest))
}

/// The events after a header, in order.
pub fn events(mut rest: &[u8]) -> impl Iterator<Item = Result<WireEvent<'_>, WireError>> {
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match postcard::take_from_bytes::<WireEvent<'_>>(rest) {
            Ok((event, tail)) => {
                rest = tail;
                Some(Ok(event))
            }
            Err(err) => {
                rest = &[];
                Some(Err(err.into()))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::preset;

    #[test]
    fn an_event_round_trips_to_the_request_detectors_read() {
        let line = b"203.0.113.9 - fp_0011223344556677 [10/Mar/2025:14:02:11 +0000] \"GET /a?b=1 HTTP/1.1\" 404 12 \"https://x/\" \"curl/8\"";
        let req = preset("combined").unwrap().parse(line).unwrap();
        let event = WireEvent {
            families: 3,
            ..WireEvent::of(&req, req.user.as_deref(), line, 1, 4096)
        };
        let header = Header {
            v: WIRE_VERSION,
            agent: "node-a",
            first: Some(7),
            watermark: 9,
            sources: vec!["f0", "f1"],
        };
        let mut message = Vec::new();
        start_message(&header, &mut message);
        push_event(&event, &mut message);
        push_event(&event, &mut message);
        let (read, rest) = read_header(&message).unwrap();
        assert_eq!(read, header);
        let decoded: Vec<WireEvent> = events(rest).map(Result::unwrap).collect();
        assert_eq!(decoded, vec![event.clone(), event]);
        let back = decoded[0].request("f1");
        assert_eq!(back.path, req.path);
        assert_eq!(back.query, req.query);
        assert_eq!(back.status, Some(404));
        assert_eq!(back.user_agent, req.user_agent);
        assert_eq!(back.referer, req.referer);
        assert_eq!(back.user.as_deref(), Some(&b"fp_0011223344556677"[..]));
        assert_eq!(back.ts, req.ts);
        assert_eq!((decoded[0].source, decoded[0].offset), (1, 4096));
        let at = message.as_ptr_range();
        assert!(
            at.contains(&decoded[0].line.as_ptr()),
            "text is borrowed from the message"
        );
    }

    #[test]
    fn garbage_and_other_versions_are_errors_not_panics() {
        assert!(read_header(b"").is_err());
        assert!(read_header(&[0xff; 40]).is_err());
        let mut message = Vec::new();
        start_message(
            &Header {
                v: WIRE_VERSION + 1,
                agent: "a",
                first: None,
                watermark: 0,
                sources: vec![],
            },
            &mut message,
        );
        assert!(matches!(
            read_header(&message),
            Err(WireError::Version(v)) if v == WIRE_VERSION + 1
        ));
        let mut ok = Vec::new();
        start_message(
            &Header {
                v: WIRE_VERSION,
                agent: "a",
                first: None,
                watermark: 0,
                sources: vec![],
            },
            &mut ok,
        );
        ok.extend_from_slice(&[0x80; 9]);
        let (_, rest) = read_header(&ok).unwrap();
        let all: Vec<_> = events(rest).collect();
        assert_eq!(all.len(), 1);
        assert!(all[0].is_err());
    }
}
