//! The `traefik` (CLF) and `envoy` (Envoy and Istio text) presets on one arbitrary line:
//! no panic, and a successful parse keeps `check_request`'s invariants (Envoy's default
//! format has no peer address, so it is checked like a custom format).
#![no_main]

use std::sync::LazyLock;

use gatewatch::parse::{preset, Parser};
use gatewatch_fuzz::check_request;
use libfuzzer_sys::fuzz_target;

static TRAEFIK: LazyLock<Box<dyn Parser>> = LazyLock::new(|| preset("traefik").expect("preset"));
static ENVOY: LazyLock<Box<dyn Parser>> = LazyLock::new(|| preset("envoy").expect("preset"));

fuzz_target!(|line: &[u8]| {
    if let Ok(req) = TRAEFIK.parse(line) {
        check_request(line, &req, true);
    }
    if let Ok(req) = ENVOY.parse(line) {
        check_request(line, &req, false);
        assert!(req.ts.is_some(), "envoy parsed without a timestamp");
    }
});
