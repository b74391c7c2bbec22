//! Saved state: a restart in the middle of a log changes no incident.

use std::io::Read;
use std::net::IpAddr;

use super::definition::{parse_definition, with_builtins};
use super::{Engine, EngineSettings, IncidentEvent, RestoreReport, StateRow};
use crate::event::{Request, Timestamp, NANOS_PER_SEC};
use crate::parse::{preset, Decoder};

const ATTACK_LOG: &str = "testdata/nginx-combined-attacks.log.gz";

fn attack_lines() -> Vec<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(ATTACK_LOG);
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    text.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn engine() -> Engine {
    Engine::new(&with_builtins(None).unwrap(), EngineSettings::default())
}

/// Feeds `lines` as the daemon does, collecting every event as it comes.
fn feed(engine: &mut Engine, lines: &[Vec<u8>], events: &mut Vec<IncidentEvent>) {
    let mut decoder = Decoder::new(preset("combined").unwrap());
    for line in lines {
        decoder.decode(line, |record, parsed| {
            if let Ok(req) = parsed {
                engine.observe(&req, record);
            }
        });
        events.extend(engine.drain_events());
    }
}

/// The rows as a store gives them back: each through JSON text, in another order.
fn through_store(rows: Vec<StateRow>) -> Vec<StateRow> {
    let mut stored: Vec<String> = rows
        .into_iter()
        .map(|row| {
            serde_json::json!({
                "detector": row.detector,
                "entity": row.entity,
                "state": row.state,
                "updated_at_ns": row.updated_at.nanos(),
            })
            .to_string()
        })
        .collect();
    stored.reverse();
    stored.sort_by_key(|text| text.len() % 7);
    stored
        .iter()
        .map(|text| {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            StateRow {
                detector: v["detector"].as_str().unwrap().to_owned(),
                entity: v["entity"].as_str().unwrap().to_owned(),
                state: v["state"].as_str().unwrap().to_owned(),
                updated_at: Timestamp(v["updated_at_ns"].as_i64().unwrap()),
            }
        })
        .collect()
}

fn sorted(mut rows: Vec<StateRow>) -> Vec<StateRow> {
    rows.sort_by(|a, b| (&a.detector, &a.entity).cmp(&(&b.detector, &b.entity)));
    rows
}

fn describe(events: &[IncidentEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| {
            let i = event.incident();
            let what = match event {
                IncidentEvent::Opened(_) => "opened",
                IncidentEvent::Escalated(_) => "escalated",
                IncidentEvent::Closed(_) => "closed",
            };
            format!("{what} {} {} {} count {}", i.id, i.kind, i.entity, i.count)
        })
        .collect()
}

/// The key property: engine A reads the whole log; engine B reads it up to line k and is
/// saved; a fresh engine C restores B's rows and reads the rest. B's events then C's are
/// A's, exactly: ids, kinds, counts, scores, evidence, order.
#[test]
fn a_restart_anywhere_in_the_log_changes_no_incident() {
    let lines = attack_lines();
    let mut whole = Vec::new();
    let mut a = engine();
    feed(&mut a, &lines, &mut whole);
    a.finish();
    whole.extend(a.drain_events());
    assert!(
        whole
            .iter()
            .filter(|e| matches!(e, IncidentEvent::Opened(_)))
            .count()
            >= 5,
        "the attack log raises incidents: {:?}",
        describe(&whole)
    );

    let n = lines.len();
    let mut open_at_a_split = 0;
    let mut ongoing_after_a_split = 0;
    for k in [
        1,
        200,
        n / 7,
        2 * n / 7,
        3 * n / 7,
        n / 2,
        4 * n / 7,
        5 * n / 7,
        6 * n / 7,
        n - 1,
    ] {
        let mut events = Vec::new();
        let mut b = engine();
        feed(&mut b, &lines[..k], &mut events);
        let saved = b.snapshot();
        drop(b);
        let open = saved
            .iter()
            .filter(|row| row.state.contains("\"episode\""))
            .count();
        open_at_a_split += open;
        let rows = through_store(saved.clone());
        let row_count = rows.len() as u64;

        let mut c = engine();
        let report = c.restore(rows);
        assert_eq!(
            report,
            RestoreReport {
                restored: row_count,
                skipped: 0
            },
            "k {k}"
        );
        // Everything saved came back: saving again gives the same rows.
        assert!(
            sorted(c.snapshot()) == sorted(saved),
            "k {k}: state differs"
        );
        let before = events.len();
        feed(&mut c, &lines[k..], &mut events);
        c.finish();
        events.extend(c.drain_events());
        if open > 0 {
            // An incident open at the stop goes on under its id after the restart.
            let opened_before: Vec<&str> = events[..before]
                .iter()
                .filter(|e| matches!(e, IncidentEvent::Opened(_)))
                .map(|e| e.incident().id.as_str())
                .collect();
            ongoing_after_a_split += events[before..]
                .iter()
                .filter(|e| opened_before.contains(&e.incident().id.as_str()))
                .count();
        }
        if events != whole {
            assert_eq!(describe(&events), describe(&whole), "k {k}");
            assert_eq!(events, whole, "k {k}");
        }
    }
    assert!(open_at_a_split > 0, "no split fell inside an incident");
    assert!(ongoing_after_a_split > 0);
}

#[test]
fn rows_that_cannot_be_read_are_skipped_and_counted() {
    let lines = attack_lines();
    let mut b = engine();
    feed(&mut b, &lines[..lines.len() / 2], &mut Vec::new());
    let saved = b.snapshot();
    let good = saved
        .iter()
        .find(|row| row.detector == "rate-spike-ip" && !row.entity.is_empty())
        .unwrap()
        .clone();
    let with = |detector: &str, entity: &str, state: String| StateRow {
        detector: detector.to_owned(),
        entity: entity.to_owned(),
        state,
        updated_at: good.updated_at,
    };
    let bad = vec![
        with("no-such-detector", &good.entity, good.state.clone()),
        with(&good.detector, &good.entity, "{\"v\":1,".into()),
        with(&good.detector, &good.entity, "not json".into()),
        with(
            &good.detector,
            &good.entity,
            good.state.replace("\"v\":1", "\"v\":99"),
        ),
        with(&good.detector, &good.entity, "{\"v\":99}".into()),
        with(&good.detector, "not-an-ip", good.state.clone()),
        // Another kind, or another window, under the same id.
        with(
            &good.detector,
            &good.entity,
            good.state.replace("rate_spike", "scanner"),
        ),
        with(
            &good.detector,
            &good.entity,
            good.state.replace("[10000000000,6]", "[10000000000,3]"),
        ),
        with("scanner-ip", &good.entity, good.state.clone()),
        with(
            &good.detector,
            "",
            "{\"v\":1,\"kind\":\"rate_spike\"}".into(),
        ),
        with(
            super::ENGINE_ROW,
            "",
            "{\"v\":99,\"first\":1,\"watermark\":1,\"next_tick\":1}".into(),
        ),
        with(super::ENGINE_ROW, "", "[]".into()),
        // A float that is not one.
        with(
            &good.detector,
            &good.entity,
            good.state.replace("\"mean\":", "\"mean\":\"x\",\"_\":"),
        ),
    ];
    assert!(good.state.contains("[10000000000,6]") && good.state.contains("\"mean\":"));
    let bad_count = bad.len() as u64;
    let mut c = engine();
    let report = c.restore(bad.into_iter().chain([good.clone()]));
    assert_eq!(
        report,
        RestoreReport {
            restored: 1,
            skipped: bad_count
        }
    );
    let rows = c.snapshot();
    assert!(rows.iter().any(|row| row.entity == good.entity));
    assert_eq!(c.clock(), None, "no engine row was read");
}

fn request(ip: &str, at_secs: i64) -> Request<'static> {
    Request {
        ts: Some(Timestamp(at_secs * NANOS_PER_SEC)),
        client_ip: Some(ip.parse::<IpAddr>().unwrap()),
        status: Some(200),
        ..Request::default()
    }
}

fn rate_spike_engine(capacity: usize) -> Engine {
    let text = format!(
        "id = \"rs\"\nkind = \"rate_spike\"\nentity = \"ip\"\nseverity = \"high\"\n[params]\ncapacity = {capacity}\n"
    );
    Engine::new(
        &[parse_definition("rs.toml", &text).unwrap()],
        EngineSettings::default(),
    )
}

fn entities(engine: &Engine) -> Vec<String> {
    let mut keys: Vec<String> = engine
        .snapshot()
        .into_iter()
        .filter(|row| row.detector == "rs" && !row.entity.is_empty())
        .map(|row| row.entity)
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_key_entering_or_leaving_the_table_changes_no_other_key_row() {
    let t0 = 1_763_600_000;
    let mut engine = rate_spike_engine(4);
    for (ip, at) in [
        ("192.0.2.1", t0),
        ("192.0.2.2", t0 + 20),
        ("192.0.2.3", t0 + 20),
        ("192.0.2.4", t0 + 40),
    ] {
        engine.observe(&request(ip, at), b"");
    }
    let before = engine.snapshot();
    // A new key evicts .1: only .1 goes, .5 comes, and the detector's own row changes.
    engine.observe(&request("192.0.2.5", t0 + 41), b"");
    let after = engine.snapshot();
    let keyed = |rows: &[StateRow], entity: &str| {
        rows.iter()
            .find(|r| r.entity == entity)
            .map(|r| (r.state.clone(), r.updated_at))
    };
    for ip in ["192.0.2.2", "192.0.2.3", "192.0.2.4"] {
        assert_eq!(keyed(&before, ip), keyed(&after, ip), "{ip}");
    }
    assert!(keyed(&after, "192.0.2.1").is_none());
}

#[test]
fn a_smaller_table_keeps_the_most_recently_seen_keys() {
    let t0 = 1_763_600_000;
    let mut big = rate_spike_engine(10);
    // Seen in this order; .5 arrives late (an older time) but is still seen after .4, and
    // .6 to .9 share one bucket: only the saved rank orders them.
    for (ip, at) in [
        ("192.0.2.1", t0),
        ("192.0.2.2", t0 + 20),
        ("192.0.2.3", t0 + 40),
        ("192.0.2.4", t0 + 100),
        ("192.0.2.5", t0 + 30),
        ("192.0.2.9", t0 + 101),
        ("192.0.2.8", t0 + 102),
        ("192.0.2.7", t0 + 103),
        ("192.0.2.6", t0 + 104),
    ] {
        big.observe(&request(ip, at), b"");
    }
    let rows = through_store(big.snapshot());
    let row_count = rows.len() as u64;
    let mut small = rate_spike_engine(4);
    let report = small.restore(rows.clone());
    assert_eq!(
        report,
        RestoreReport {
            restored: row_count - 5,
            skipped: 5
        }
    );
    assert_eq!(
        entities(&small),
        ["192.0.2.6", "192.0.2.7", "192.0.2.8", "192.0.2.9"]
    );
    let mut five = rate_spike_engine(5);
    five.restore(rows.clone());
    assert!(entities(&five).contains(&"192.0.2.5".to_owned()));
    // The restored table goes on evicting in the saved order: .5 is the next to go.
    small.observe(&request("192.0.2.10", t0 + 105), b"");
    five.observe(&request("192.0.2.10", t0 + 105), b"");
    assert!(!entities(&five).contains(&"192.0.2.5".to_owned()));
    assert!(entities(&five).contains(&"192.0.2.9".to_owned()));

    // Rows left over from an older save (a key since forgotten) are older still.
    let mut stale = rows
        .iter()
        .find(|row| row.entity == "192.0.2.1")
        .unwrap()
        .clone();
    stale.entity = "198.51.100.1".into();
    let mut again = rate_spike_engine(4);
    again.restore(rows.into_iter().chain([stale]));
    assert!(!entities(&again).contains(&"198.51.100.1".to_owned()));
}

#[test]
fn the_warm_up_is_not_applied_again_after_a_restore() {
    let lines = attack_lines();
    let mut b = engine();
    feed(&mut b, &lines[..lines.len() / 2], &mut Vec::new());
    let clock = b.clock();
    let rows = b.snapshot();
    assert!(rows
        .iter()
        .any(|row| row.detector == super::ENGINE_ROW && row.state.starts_with("{\"v\":1,")));
    assert!(rows.iter().all(|row| row.state.starts_with("{\"v\":1,")));
    let mut c = engine();
    c.restore(rows);
    assert_eq!(c.clock(), clock);
    // An empty engine saves and restores to an empty engine.
    let mut empty = engine();
    let report = empty.restore(engine().snapshot());
    assert_eq!(
        report,
        RestoreReport {
            restored: 5,
            skipped: 0
        },
        "the engine's and each rate detector's own row (ip, subnet, route, global)"
    );
    assert_eq!(empty.clock(), None);
}
