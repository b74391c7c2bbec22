//! Invariants the fuzz targets check on whatever parses, beyond "does not crash".
//! A violated invariant panics, which libFuzzer reports as a crash with the input.

use std::borrow::Cow;
use std::sync::LazyLock;

use gatewatch::event::Request;
use gatewatch::parse::{preset, Parser, Unwrapped, Wrapper};

// Compiled once per process: the presets are immutable.
pub static COMBINED: LazyLock<Box<dyn Parser>> =
    LazyLock::new(|| preset("combined").expect("preset"));
pub static INGRESS: LazyLock<Box<dyn Parser>> =
    LazyLock::new(|| preset("ingress-nginx").expect("preset"));

/// True when `text` borrows from `line` (the nginx formats are zero-copy).
#[allow(clippy::ptr_arg, reason = "the Cow variant is what is checked")]
pub fn borrowed_from(line: &[u8], text: &Cow<'_, [u8]>) -> bool {
    let Cow::Borrowed(slice) = text else {
        return false;
    };
    let line_range = line.as_ptr_range();
    let range = slice.as_ptr_range();
    line_range.start <= range.start && range.end <= line_range.end
}

type Field<'r, 'a> = (&'static str, &'r Option<Cow<'a, [u8]>>);

/// The fields that have a value.
fn present<'r, 'a>(
    fields: &'r [Field<'r, 'a>],
) -> impl Iterator<Item = (&'static str, &'r Cow<'a, [u8]>)> + 'r {
    fields
        .iter()
        .filter_map(|(name, text)| text.as_ref().map(|t| (*name, t)))
}

/// Invariants of every successful nginx-format parse of `line`. `preset`: the format takes
/// the path only from `$request`, so the query is always split off.
pub fn check_request(line: &[u8], req: &Request<'_>, preset: bool) {
    // Split out of `$request`: what the client sent, so `-` is a legitimate value here...
    let split = [
        ("method", &req.method),
        ("path", &req.path),
        ("query", &req.query),
        ("http_version", &req.http_version),
    ];
    // ...while a variable logged as `-` or empty is documented as `None`.
    let logged = [
        ("request_line", &req.request_line),
        ("user", &req.user),
        ("user_agent", &req.user_agent),
        ("referer", &req.referer),
        ("host", &req.host),
        ("route", &req.route),
        ("upstream", &req.upstream),
        ("x_forwarded_for", &req.x_forwarded_for),
        ("request_id", &req.request_id),
    ];
    let extra = req.extra.iter().map(|(name, value)| (*name, value));
    for (name, text) in present(&split).chain(present(&logged)).chain(extra.clone()) {
        assert!(
            borrowed_from(line, text),
            "{name} is not a slice of the line"
        );
    }
    for (name, text) in present(&logged).chain(extra) {
        assert!(
            !text.is_empty() && text.as_ref() != b"-",
            "{name} is {text:?} instead of None"
        );
    }
    if let Some(query) = &req.query {
        assert!(!query.is_empty(), "empty query is not None");
    }
    if preset {
        assert!(
            !req.path.as_ref().is_some_and(|p| p.contains(&b'?')),
            "path still holds the query"
        );
        assert_eq!(
            req.method.is_some(),
            req.path.is_some(),
            "method and path come from the request line together"
        );
        if let (Some(request), Some(method)) = (&req.request_line, &req.method) {
            assert!(
                request.starts_with(method),
                "method is not the line's start"
            );
        }
        // `$remote_addr` and `$time_local` come before the required `$status`.
        assert!(req.client_ip.is_some(), "parsed without a client address");
        assert!(req.ts.is_some(), "parsed without a timestamp");
    }
}

/// A wrapped line's payload: the line's tail (CRI), or the `log` value without its final
/// newline (Docker). `partial` is exactly "the runtime split this record".
pub fn check_unwrapped(line: &[u8], unwrapped: &Unwrapped<'_>) {
    match unwrapped.wrapper {
        Wrapper::Cri => {
            // An empty payload (`<time> stdout F` without the space) need not point into
            // the line.
            let inner = &unwrapped.inner;
            assert!(
                inner.is_empty() || (borrowed_from(line, inner) && line.ends_with(inner)),
                "CRI payload is not the tail of the line"
            );
        }
        Wrapper::Docker => {
            #[derive(serde::Deserialize)]
            struct Log {
                log: String,
            }
            let log = serde_json::from_slice::<Log>(line)
                .expect("unwrap_line accepted JSON serde_json rejects")
                .log;
            let rest = log
                .as_bytes()
                .strip_prefix(unwrapped.inner.as_ref())
                .expect("Docker payload is not a prefix of `log`");
            assert!(
                matches!(rest, b"" | b"\n" | b"\r\n"),
                "Docker payload dropped {rest:?}"
            );
            assert_eq!(unwrapped.partial, rest.is_empty(), "partial flag");
        }
    }
}
