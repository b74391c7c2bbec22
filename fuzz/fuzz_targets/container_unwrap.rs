//! CRI / Docker json-file unwrapping and fragment joining over the input's lines:
//! `unwrap_line` payloads are the line's tail (CRI) or its `log` value minus the final
//! newline (Docker); a `Joiner` matches a per-stream model (records are the concatenation
//! of their fragments, cut at the cap, each cut record counted once); a `Decoder` passes
//! bare lines through unchanged and never yields a record without a timestamp.
#![no_main]

use gatewatch::parse::{preset, unwrap_line, Decoder, Joiner, Stream};
use gatewatch_fuzz::{check_request, check_unwrapped};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cap, text)) = data.split_first() else {
        return;
    };
    let cap = usize::from(cap % 64) + 1;
    let mut joiner = Joiner::new(cap);
    // Per stream: the open record's bytes so far, uncapped.
    let mut open: [Vec<u8>; 2] = Default::default();
    let mut records_cut = 0u64;
    let mut counted = [false; 2];
    let mut decoder = Decoder::new(preset("combined").expect("preset"));

    for line in text.split(|&b| b == b'\n') {
        let wrapped = unwrap_line(line);
        if let Some(Ok(unwrapped)) = &wrapped {
            check_unwrapped(line, unwrapped);
            let slot = match unwrapped.stream {
                Stream::Stdout => 0,
                Stream::Stderr => 1,
            };
            let partial = unwrapped.partial;
            let inner = unwrapped.inner.clone().into_owned();
            let got = joiner.push(unwrapped.clone());
            let acc = &mut open[slot];
            let alone = acc.is_empty();
            acc.extend_from_slice(&inner);
            // A final fragment with nothing before it is a record on its own, never cut.
            let on_its_own = alone && !partial;
            if acc.len() > cap && !on_its_own && !counted[slot] {
                records_cut += 1;
                counted[slot] = true;
            }
            if partial {
                assert_eq!(got, None, "a partial fragment completed a record");
            } else {
                let expected = if alone {
                    &acc[..]
                } else {
                    &acc[..acc.len().min(cap)]
                };
                assert_eq!(got.as_deref(), Some(expected), "joined record");
                *acc = Vec::new();
                counted[slot] = false;
            }
        }

        let decoded = decoder.decode(line, |record, parsed| {
            if wrapped.is_none() {
                assert_eq!(record, line, "a bare line is its own record");
            }
            if let Ok(req) = parsed {
                check_request(record, &req, true);
            }
        });
        if matches!(&wrapped, Some(Ok(u)) if u.partial) {
            assert!(decoded.is_none(), "a partial fragment reached the parser");
        }
    }
    assert_eq!(
        joiner.truncated, records_cut,
        "each cut record is counted once"
    );
});
