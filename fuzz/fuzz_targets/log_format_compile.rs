//! `LogFormat::compile` then `parse`. The first byte picks a format: one of a set of
//! realistic formats, or (past the end of the set) the input's first line is the format
//! string itself. The second byte picks the leniency; the rest are lines to parse.
//! Compiling never panics; a realistic format always compiles; whatever parses keeps the
//! invariants of `check_request`.
#![no_main]

use gatewatch::parse::{Leniency, LogFormat, Parser};
use gatewatch_fuzz::check_request;
use libfuzzer_sys::fuzz_target;

const FORMATS: &[&str] = &[
    r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#,
    r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id"#,
    r#"$time_iso8601 $remote_addr "$request_method $request_uri" $status $request_time $http_x_api_key"#,
    r#"$msec $remote_addr $request_method $uri?$args $status $bytes_sent $request_time"#,
    r#"${host} ${remote_addr} [${time_local}] "${request}" ${status} ${body_bytes_sent} ${bytes_sent}"#,
    r#"$remote_addr|$http_x_forwarded_for|$time_iso8601|$request|$status|$upstream_addr|$upstream_status|$request_id"#,
    r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#,
    r#"time=$time_iso8601 client=$remote_addr method=$request_method uri=$request_uri status=$status rt=$request_time ua="$http_user_agent""#,
];

fuzz_target!(|data: &[u8]| {
    let [choice, leniency, rest @ ..] = data else {
        return;
    };
    let leniency = Leniency {
        missing_tail: leniency & 1 != 0,
        extra_tail: leniency & 2 != 0,
    };
    let (format, lines) = match FORMATS.get(usize::from(*choice)) {
        Some(format) => {
            let compiled = LogFormat::compile("fuzz", format, leniency);
            (compiled.expect("a realistic format compiles"), rest)
        }
        None => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let Ok(format) = std::str::from_utf8(&rest[..end]) else {
                return;
            };
            let Ok(compiled) = LogFormat::compile("fuzz", format, leniency) else {
                return;
            };
            (compiled, rest.get(end + 1..).unwrap_or_default())
        }
    };
    assert_eq!(format.name(), "fuzz");
    let _ = format.variables().count();
    for line in lines.split(|&b| b == b'\n') {
        if let Ok(req) = format.parse(line) {
            check_request(line, &req, false);
        }
    }
});
