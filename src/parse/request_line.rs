//! Splitting an HTTP request line (`METHOD target HTTP/x.y`) and a target into path and query.

use crate::event::{Request, Text};
use std::borrow::Cow;

/// Fills method, path, query and http_version from a request line. A line that is not
/// `METHOD target [HTTP/x.y]` (TLS bytes on a plain port, a truncated line) only keeps
/// `request_line`, which the caller has set.
pub fn split_request_line<'a>(line: &'a [u8], req: &mut Request<'a>) {
    let Some(first_space) = memchr::memchr(b' ', line) else {
        return;
    };
    let method = &line[..first_space];
    if !is_method(method) {
        return;
    }
    let rest = &line[first_space + 1..];
    let (target, version) = match memchr::memrchr(b' ', rest) {
        Some(last_space) => {
            let protocol = &rest[last_space + 1..];
            match protocol.strip_prefix(b"HTTP/") {
                Some(version) if is_version(version) => (&rest[..last_space], Some(version)),
                _ => return,
            }
        }
        // HTTP/0.9 style `GET /`: no protocol.
        None => (rest, None),
    };
    // A target may hold spaces when a protocol follows (clients do send them); it is
    // everything between the method and the protocol.
    if target.is_empty() {
        return;
    }
    req.method = Some(Cow::Borrowed(method));
    req.http_version = version.map(Cow::Borrowed);
    set_target(Cow::Borrowed(target), req);
}

/// Splits a request target at the first `?` into path and query (an empty query is absent).
pub fn set_target<'a>(target: Text<'a>, req: &mut Request<'a>) {
    match target {
        Cow::Borrowed(bytes) => match memchr::memchr(b'?', bytes) {
            Some(q) => {
                req.path = Some(Cow::Borrowed(&bytes[..q]));
                req.query = non_empty(&bytes[q + 1..]).map(Cow::Borrowed);
            }
            None => req.path = Some(Cow::Borrowed(bytes)),
        },
        Cow::Owned(bytes) => match memchr::memchr(b'?', &bytes) {
            Some(q) => {
                req.query = non_empty(&bytes[q + 1..]).map(|b| Cow::Owned(b.to_vec()));
                req.path = Some(Cow::Owned(bytes[..q].to_vec()));
            }
            None => req.path = Some(Cow::Owned(bytes)),
        },
    }
}

fn non_empty(bytes: &[u8]) -> Option<&[u8]> {
    (!bytes.is_empty()).then_some(bytes)
}

fn is_method(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= 24
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_')
}

fn is_version(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_digit() || *b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &[u8]) -> Request<'_> {
        let mut req = Request::default();
        split_request_line(line, &mut req);
        req
    }

    #[test]
    fn well_formed_line() {
        let req = split(b"GET /api/v1/items?page=3 HTTP/1.1");
        assert_eq!(req.method.as_deref(), Some(&b"GET"[..]));
        assert_eq!(req.path.as_deref(), Some(&b"/api/v1/items"[..]));
        assert_eq!(req.query.as_deref(), Some(&b"page=3"[..]));
        assert_eq!(req.http_version.as_deref(), Some(&b"1.1"[..]));
    }

    #[test]
    fn malformed_lines_keep_only_the_raw_line() {
        for line in [
            &b"\\x16\\x03\\x01\\x01 \\x02"[..],
            b"GET /a?cmd=ls -al&x=y??",
            b"",
            b"get / HTTP/1.1",
            b"GET  HTTP/1.1",
        ] {
            let req = split(line);
            assert_eq!(req.method, None, "{:?}", String::from_utf8_lossy(line));
            assert_eq!(req.path, None);
        }
    }

    #[test]
    fn a_target_with_spaces_runs_up_to_the_protocol() {
        let req = split(b"GET /a b?x=1  HTTP/2.0");
        assert_eq!(req.path.as_deref(), Some(&b"/a b"[..]));
        assert_eq!(req.query.as_deref(), Some(&b"x=1 "[..]));
    }

    #[test]
    fn http09_has_no_version() {
        let req = split(b"GET /");
        assert_eq!(req.path.as_deref(), Some(&b"/"[..]));
        assert_eq!(req.http_version, None);
    }
}
