//! The `traefik-json` and `envoy-json` presets and a `--json-fields` map on one line: no panic, and a
//! successful parse has a timestamp, a path without its query, and no `-`/empty values
//! (JSON strings may be copied when they had escapes, so borrowing is not required).
#![no_main]

use gatewatch::parse::{preset, JsonFields, MappedJson};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static PARSERS: LazyLock<[Box<dyn gatewatch::parse::Parser>; 3]> = LazyLock::new(|| {
    let every_field = "ts=time,client_ip=ip,method=m,path=p,query=q,protocol=v,status=s,\
        bytes_sent=b,duration_ms=d,user=u,user_agent=ua,referer=r,host=h,route=rt,\
        upstream=up,x_forwarded_for=x,request_id=id";
    [
        preset("traefik-json").expect("preset"),
        preset("envoy-json").expect("preset"),
        Box::new(MappedJson::new(
            JsonFields::parse(every_field).expect("valid map"),
        )),
    ]
});

fuzz_target!(|line: &[u8]| {
    for parser in PARSERS.iter() {
        let Ok(req) = parser.parse(line) else {
            continue;
        };
        assert!(
            req.ts.is_some(),
            "{} parsed without a timestamp",
            parser.name()
        );
        assert!(
            !req.path.as_ref().is_some_and(|p| p.contains(&b'?')),
            "path still holds the query"
        );
        for (name, text) in [
            ("method", &req.method),
            ("user", &req.user),
            ("user_agent", &req.user_agent),
            ("host", &req.host),
            ("route", &req.route),
            ("upstream", &req.upstream),
            ("x_forwarded_for", &req.x_forwarded_for),
        ] {
            if let Some(text) = text {
                assert!(
                    !text.is_empty() && text.as_ref() != b"-",
                    "{name} is {text:?} instead of None"
                );
            }
        }
        assert_eq!(
            parser.parse(line).as_ref(),
            Ok(&req),
            "parse is deterministic"
        );
    }
});
