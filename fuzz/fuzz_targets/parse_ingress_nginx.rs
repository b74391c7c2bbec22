//! The `ingress-nginx` preset on one arbitrary line: no panic, the invariants of
//! `check_request`, and the lenient `combined` preset reads any line ingress-nginx reads,
//! with the same leading fields (that is what lets `--format auto` fall back to it).
#![no_main]

use gatewatch_fuzz::{check_request, COMBINED, INGRESS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let Ok(req) = INGRESS.parse(line) else {
        return;
    };
    check_request(line, &req, true);
    let combined = COMBINED
        .parse(line)
        .expect("combined reads what ingress-nginx reads");
    assert_eq!(combined.client_ip, req.client_ip);
    assert_eq!(combined.user, req.user);
    assert_eq!(combined.ts, req.ts);
    assert_eq!(combined.request_line, req.request_line);
    assert_eq!(combined.status, req.status);
    assert_eq!(combined.bytes_sent, req.bytes_sent);
    assert_eq!(combined.referer, req.referer);
});
