//! The `combined` preset on one arbitrary line: no panic, and a successful parse keeps the
//! invariants of `gatewatch_fuzz::check_request` and is deterministic.
#![no_main]

use gatewatch_fuzz::{check_request, COMBINED};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let Ok(req) = COMBINED.parse(line) else {
        return;
    };
    check_request(line, &req, true);
    assert_eq!(
        COMBINED.parse(line).as_ref(),
        Ok(&req),
        "parse is deterministic"
    );
});
