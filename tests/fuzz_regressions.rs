//! Inputs the fuzz targets (`fuzz/`) and the property tests (`tests/parser_props.rs`) found,
//! minimized, each with the documented behavior it broke. All were fixed in 38d25f1; before
//! that, debug builds panicked on an arithmetic overflow and release builds silently wrapped
//! to a wrong value.

use std::borrow::Cow;

use gatewatch::event::{Timestamp, NANOS_PER_SEC};
use gatewatch::parse::{
    preset, unwrap_line, Joiner, Leniency, LogFormat, Parser, Stream, Unwrapped, Wrapper,
};

fn combined(line: &[u8]) -> Result<gatewatch::event::Request<'_>, gatewatch::parse::ParseError> {
    preset("combined").expect("preset").parse(line)
}

fn format(text: &str) -> LogFormat {
    LogFormat::compile("regression", text, Leniency::default()).expect("compiles")
}

/// `Timestamp` is i64 nanoseconds (1677-09-21 .. 2262-04-11). `parse_time_local` multiplied
/// seconds by 10^9 unchecked (`Timestamp::from_secs`), so a four-digit year outside that
/// range overflowed. Found by `parse_combined`, `parse_ingress_nginx`, `log_format_compile`.
#[test]
fn time_local_outside_timestamp_range_is_rejected() {
    // Minimized fuzz input (the no-ident `combined` variant reaches `$time_local` first).
    assert!(combined(b"8.9.1.9 - [20/Nov/7026:00:21:12 +0000] \"").is_err());
    for line in [
        &br#"1.2.3.4 - - [01/Jan/2263:00:00:00 +0000] "GET / HTTP/1.1" 200 0 "-" "-""#[..],
        br#"1.2.3.4 - - [20/Sep/1677:00:00:00 +0000] "GET / HTTP/1.1" 200 0 "-" "-""#,
        br#"1.2.3.4 - - [31/Dec/9999:23:59:59 +0000] "GET / HTTP/1.1" 200 0 "-" "-""#,
    ] {
        let parsed = combined(line);
        assert!(
            parsed.is_err(),
            "{} parsed to {:?}",
            String::from_utf8_lossy(line),
            parsed.map(|r| r.ts)
        );
    }
}

/// Same overflow in the ISO 8601 fast path (`(local - offset) * NANOS_PER_SEC`), which the
/// CRI and Docker wrappers use: a line that merely started like a CRI timestamp panicked
/// `unwrap_line`. Found by `container_unwrap` and `log_format_compile`.
#[test]
fn iso8601_outside_timestamp_range_is_rejected() {
    assert!(matches!(
        unwrap_line(b"2263-01-01T00:00:00Z stdout F hello"),
        Some(Err(_))
    ));
    assert!(matches!(
        unwrap_line(br#"{"log":"x\n","stream":"stdout","time":"2263-01-01T00:00:00Z"}"#),
        Some(Err(_))
    ));
    assert!(format("$time_iso8601")
        .parse(b"2425-03-10T14:02:11+00:00")
        .is_err());
}

/// `$msec` accepts up to 12 integer digits but accumulated them in a `u32`
/// (`time::digits`), so seconds >= 2^32 (year 2106) overflowed. Found by `log_format_compile`.
#[test]
fn msec_beyond_u32_seconds_is_exact_or_rejected() {
    let msec = format("$msec");
    let req = msec
        .parse(b"4294967296.5")
        .expect("year 2106 fits a Timestamp");
    assert_eq!(
        req.ts,
        Some(Timestamp(4_294_967_296 * NANOS_PER_SEC + 500_000_000))
    );
    // 99999999999 s is past 2262: not representable, so rejected.
    assert!(msec.parse(b"99999999999").is_err());
}

/// `seconds_as_nanos` (then `_micros`) computed `whole * 1_000_000` unchecked: a `$request_time` of
/// 18446744073710 s or more overflowed. Found by `numeric_fields_are_exact_or_rejected`.
#[test]
fn huge_request_time_is_rejected() {
    let line = br#"1.2.3.4 - - [10/Mar/2025:14:02:11 +0000] "GET / HTTP/1.1" 200 0 "-" "-" 100 20000000000000 [ns-svc-80] [] 10.0.0.1:80 0 0.001 200 0123456789abcdef0123456789abcdef"#;
    let parsed = preset("ingress-nginx").expect("preset").parse(line);
    assert!(
        !parsed.as_ref().is_ok_and(|r| r.duration_ns.is_some()),
        "request_time 2e13 s became {:?}",
        parsed.map(|r| r.duration_ns)
    );
}

/// `Decoder::truncated` documents "records cut at the joiner's size cap", but a record cut
/// on a partial fragment was counted again when its (non-empty) final fragment arrived.
/// Found by `joiner_matches_model`.
#[test]
fn joiner_counts_a_cut_record_once() {
    let fragment = |text: &'static [u8], partial| Unwrapped {
        wrapper: Wrapper::Cri,
        inner: Cow::Borrowed(text),
        ts: Timestamp(0),
        stream: Stream::Stdout,
        partial,
    };
    let mut joiner = Joiner::new(1);
    assert_eq!(joiner.push(fragment(b"ab", true)), None);
    assert_eq!(
        joiner.push(fragment(b"c", false)).as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(joiner.truncated, 1);
}

/// `Request` documents a field logged as `-` as `None`, and the other text fields treat an
/// empty value the same way; `$request` was stored as is. nginx logs `""` for a connection
/// closed before a request line arrived (a common 400 line). Found by `parse_combined` and
/// `log_format_compile`.
#[test]
fn empty_or_dash_request_line_is_absent() {
    for line in [
        &br#"100.121.15.211 - - [20/Nov/2026:09:00:20 +0000] "" 400 0 "-" "-""#[..],
        br#"100.121.15.211 - - [20/Nov/2026:09:00:20 +0000] "-" 400 0 "-" "-""#,
    ] {
        let req = combined(line).expect("a valid combined line");
        assert_eq!(req.request_line, None, "{}", String::from_utf8_lossy(line));
    }
}
