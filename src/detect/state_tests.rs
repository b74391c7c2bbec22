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

/// Restores `saved` (through a store) into a fresh `engine`: every row is restored, and
/// saving again gives the same rows.
fn restore_all(engine: &mut Engine, saved: &[StateRow], k: usize) {
    let rows = through_store(saved.to_vec());
    let row_count = rows.len() as u64;
    let report = engine.restore(rows);
    assert_eq!(
        report,
        RestoreReport {
            restored: row_count,
            skipped: 0
        },
        "k {k}"
    );
    assert!(
        sorted(engine.snapshot()) == sorted(saved.to_vec()),
        "k {k}: state differs"
    );
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
        let mut c = engine();
        restore_all(&mut c, &saved, k);
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

/// Raw credentials of the synthetic traffic: none may reach saved state.
const LEAKED: &str = "tok_leaked5e1f0a9c";
const STOLEN: &str = "tok_stolen77b2c4d1";
const ROTATED: [&str; 16] = [
    "tok_rot00",
    "tok_rot01",
    "tok_rot02",
    "tok_rot03",
    "tok_rot04",
    "tok_rot05",
    "tok_rot06",
    "tok_rot07",
    "tok_rot08",
    "tok_rot09",
    "tok_rot10",
    "tok_rot11",
    "tok_rot12",
    "tok_rot13",
    "tok_rot14",
    "tok_rot15",
];
const SQLMAP: &str = "sqlmap/1.7#stable (https://sqlmap.org)";
const NIKTO: &str = "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000417)";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux) Firefox/131";
const HOOKS: &str = "id = \"hooks-from-git\"\nkind = \"unexpected_source\"\nentity = \"ip\"\nseverity = \"high\"\n[params]\nhosts = [\"ci.example.com\"]\npaths = [\"/hooks/*\"]\nallow = [\"140.82.112.0/20\"]\n";

/// One request of the synthetic traffic.
#[derive(Clone)]
struct Hit {
    at_millis: i64,
    ip: IpAddr,
    status: u16,
    path: &'static str,
    user: Option<&'static str>,
    agent: &'static str,
}

impl Hit {
    fn request(&self) -> Request<'_> {
        use std::borrow::Cow;
        Request {
            ts: Some(Timestamp(self.at_millis * 1_000_000)),
            client_ip: Some(self.ip),
            method: Some(Cow::Borrowed(b"GET")),
            path: Some(Cow::Borrowed(self.path.as_bytes())),
            status: Some(self.status),
            user: self.user.map(|u| Cow::Borrowed(u.as_bytes())),
            user_agent: Some(Cow::Borrowed(self.agent.as_bytes())),
            host: Some(Cow::Borrowed(b"ci.example.com")),
            ..Request::default()
        }
    }

    /// The log line, credential and all (token detectors mask it in their evidence).
    fn line(&self) -> Vec<u8> {
        format!(
            "{} - {} [{}] \"GET {} HTTP/1.1\" {} 0 \"-\" \"{}\"",
            self.ip,
            self.user.unwrap_or("-"),
            self.at_millis,
            self.path,
            self.status,
            self.agent
        )
        .into_bytes()
    }
}

/// Who sends requests: an address, its credential and its user agent.
#[derive(Clone, Copy)]
struct Client {
    ip: IpAddr,
    user: Option<&'static str>,
    agent: &'static str,
}

impl Client {
    fn browser(ip: IpAddr) -> Client {
        Client {
            ip,
            user: None,
            agent: BROWSER,
        }
    }

    fn with_token(self, token: &'static str) -> Client {
        Client {
            user: Some(token),
            ..self
        }
    }

    fn tool(ip: IpAddr, agent: &'static str) -> Client {
        Client {
            ip,
            user: None,
            agent,
        }
    }
}

/// Requests of the synthetic traffic, built up by the scenarios below.
#[derive(Default)]
struct Traffic(Vec<Hit>);

const T0: i64 = 1_763_600_000;

fn net(a: u32, b: u32, host: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(10, a as u8, b as u8, host as u8))
}

impl Traffic {
    /// `count` requests evenly spread over `[from_s, to_s)`.
    fn steady(
        &mut self,
        client: Client,
        (from_s, to_s): (i64, i64),
        count: i64,
        status: u16,
        path: &'static str,
    ) {
        let span_ms = (to_s - from_s) * 1000;
        self.0.extend((0..count).map(|i| Hit {
            at_millis: (T0 + from_s) * 1000 + i * span_ms / count,
            ip: client.ip,
            status,
            path,
            user: client.user,
            agent: client.agent,
        }));
    }

    /// Browsers on the shop, and a search route failing 1 in 90 until its backend fails
    /// for two minutes at t = 1200 s (error_spike).
    fn shop_and_failing_search(&mut self) {
        for n in 0..30 {
            let client = Client::browser(net(1, n, 1));
            self.steady(client, (i64::from(n) % 7, 1800), 150, 200, "/products/1");
        }
        let search = "/api/v1/search";
        for n in 0..10 {
            let client = Client::browser(net(7, n, 1));
            self.steady(client, (0, 1800), 360, 200, search);
            self.steady(client, (5, 1800), 4, 503, search);
            self.steady(client, (1200, 1320), 12, 502, search);
        }
    }

    /// A token leaked to 30 addresses at t = 900 s (token_many_sources); a token stolen and
    /// used from a new network while its owner stays active (token_new_source); one
    /// address presenting sixteen credentials (ip_many_tokens).
    fn credentials(&mut self) {
        let orders = "/api/v1/orders";
        let leaked = |ip| Client::browser(ip).with_token(LEAKED);
        self.steady(leaked(net(60, 0, 1)), (0, 1500), 50, 200, orders);
        for n in 0..30 {
            let from = 900 + i64::from(n) * 4;
            self.steady(leaked(net(70, n, 2)), (from, 1140), 5, 200, orders);
        }
        let stolen = |ip| Client::browser(ip).with_token(STOLEN);
        self.steady(stolen(net(80, 0, 1)), (0, 1500), 75, 200, orders);
        self.steady(stolen(net(81, 0, 1)), (900, 1200), 20, 200, orders);
        let stuffer = Client::browser(net(90, 0, 1));
        for (i, token) in (0..).zip(ROTATED) {
            let from = 900 + i;
            let client = stuffer.with_token(token);
            self.steady(client, (from, from + 120), 8, 200, "/api/v1/session");
        }
    }

    /// Attack tools (bad_user_agent) and a webhook called from outside its allowlist
    /// (unexpected_source).
    fn tools_and_hooks(&mut self) {
        let sqlmap = Client::tool(ip("203.0.113.30"), SQLMAP);
        self.steady(sqlmap, (400, 700), 30, 200, "/search");
        let nikto = Client::tool(ip("203.0.113.31"), NIKTO);
        self.steady(nikto, (1000, 1100), 20, 404, "/nothing-here");
        let git = Client::tool(ip("140.82.115.4"), "GitHub-Hookshot/1");
        self.steady(git, (0, 1800), 60, 200, "/hooks/deploy");
        let outsider = Client::tool(ip("198.51.100.66"), "curl/8");
        self.steady(outsider, (600, 900), 5, 401, "/hooks/deploy");
    }

    fn hits(mut self) -> Vec<Hit> {
        self.0.sort_by_key(|hit| hit.at_millis);
        self.0
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn synthetic_hits() -> Vec<Hit> {
    let mut traffic = Traffic::default();
    traffic.shop_and_failing_search();
    traffic.credentials();
    traffic.tools_and_hooks();
    traffic.hits()
}

/// The built-ins and a webhook rule.
fn engine_with_hooks() -> Engine {
    let hooks = parse_definition("hooks.toml", HOOKS).unwrap();
    Engine::new(
        &with_builtins(Some(Ok(vec![hooks]))).unwrap(),
        EngineSettings::default(),
    )
}

fn feed_hits(engine: &mut Engine, hits: &[Hit], events: &mut Vec<IncidentEvent>) {
    for hit in hits {
        engine.observe(&hit.request(), &hit.line());
        events.extend(engine.drain_events());
    }
}

/// The kinds whose state the synthetic traffic exercises.
const SYNTHETIC_KINDS: [&str; 6] = [
    "token_many_sources",
    "token_new_source",
    "ip_many_tokens",
    "bad_user_agent",
    "error_spike",
    "unexpected_source",
];

/// The first line after `at`.
fn line_after(hits: &[Hit], at: Timestamp) -> usize {
    hits.partition_point(|hit| hit.at_millis * 1_000_000 <= at.nanos())
}

/// Splits inside each incident of `SYNTHETIC_KINDS` (just after its opening line, and
/// halfway through it), with the incident each falls in.
fn splits_inside(hits: &[Hit], whole: &[IncidentEvent]) -> Vec<(usize, super::Incident)> {
    let mut splits = Vec::new();
    for event in whole {
        let IncidentEvent::Closed(incident) = event else {
            continue;
        };
        if !SYNTHETIC_KINDS.contains(&incident.kind.as_str()) {
            continue;
        }
        let (detected, last) = (incident.detected_at, incident.last_seen);
        let halfway = Timestamp(detected.nanos() + (last.nanos() - detected.nanos()) / 2);
        for at in [detected, halfway] {
            let k = line_after(hits, at);
            if k < hits.len() && hits[k].at_millis * 1_000_000 <= last.nanos() {
                splits.push((k, incident.clone()));
            }
        }
    }
    splits
}

/// `a_restart_anywhere_in_the_log_changes_no_incident` for the detectors of token,
/// attack-tool, route-failure and webhook incidents, on traffic in which each fires.
#[test]
fn a_restart_inside_any_token_tool_error_or_webhook_incident_changes_none() {
    let hits = synthetic_hits();
    let mut whole = Vec::new();
    let mut a = engine_with_hooks();
    feed_hits(&mut a, &hits, &mut whole);
    a.finish();
    whole.extend(a.drain_events());
    for kind in SYNTHETIC_KINDS {
        assert!(
            whole.iter().any(|e| e.incident().kind == kind),
            "no {kind} incident: {:?}",
            describe(&whole)
        );
    }

    let n = hits.len();
    let inside = splits_inside(&hits, &whole);
    let even = (1..12).map(|i| (i * n / 12, None));
    let splits = inside.into_iter().map(|(k, i)| (k, Some(i))).chain(even);
    for (k, within) in splits {
        let mut events = Vec::new();
        let mut b = engine_with_hooks();
        feed_hits(&mut b, &hits[..k], &mut events);
        let saved = b.snapshot();
        drop(b);
        if let Some(incident) = &within {
            assert!(
                saved.iter().any(|row| row.detector == incident.detector
                    && row.entity == incident.entity
                    && row.state.contains("\"episode\"")),
                "k {k}: {} {} is open at the split and saved",
                incident.kind,
                incident.entity
            );
        }
        for token in ROTATED.iter().chain([&LEAKED, &STOLEN]) {
            assert!(
                saved
                    .iter()
                    .all(|row| !row.state.contains(token) && !row.entity.contains(token)),
                "k {k}: {token} saved"
            );
        }
        let mut c = engine_with_hooks();
        restore_all(&mut c, &saved, k);
        feed_hits(&mut c, &hits[k..], &mut events);
        c.finish();
        events.extend(c.drain_events());
        if events != whole {
            assert_eq!(describe(&events), describe(&whole), "k {k}");
            assert_eq!(events, whole, "k {k}");
        }
    }
}

/// Rows of the detectors above that are not theirs (another version, kind or window, an
/// entity that does not parse, a token row without its table key) are skipped.
#[test]
fn token_tool_error_and_webhook_rows_of_another_shape_are_skipped() {
    let hits = synthetic_hits();
    let mut b = engine_with_hooks();
    // Inside the stolen token's, the stuffer's, the leak's and the spike's incidents.
    let k = line_after(&hits, Timestamp::from_secs(T0 + 1210));
    feed_hits(&mut b, &hits[..k], &mut Vec::new());
    let saved = b.snapshot();
    let detectors = [
        "token-many-sources",
        "token-new-source",
        "ip-many-tokens",
        "bad-user-agent",
        "error-spike-route",
        "hooks-from-git",
    ];
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for detector in detectors {
        let row = saved
            .iter()
            .find(|row| row.detector == detector && !row.entity.is_empty())
            .unwrap_or_else(|| panic!("{detector} saved no row"))
            .clone();
        let with = |entity: &str, state: String| StateRow {
            entity: entity.to_owned(),
            state,
            ..row.clone()
        };
        let kind = &row.state[row.state.find("\"kind\":").unwrap()..];
        let kind = &kind[..kind.find(',').unwrap()];
        bad.extend([
            with(&row.entity, row.state.replace("\"v\":1", "\"v\":99")),
            with(&row.entity, row.state.replace(kind, "\"kind\":\"scanner\"")),
            with(
                &row.entity,
                row.state.replace("\"window\":[", "\"window\":[1"),
            ),
            with("", row.state.clone()),
        ]);
        if detector.starts_with("token") {
            // Without the table key the token's state has no place in the table.
            let key = &row.state[row.state.find("\"key\":").unwrap()..];
            let key = &key[..=key.find(',').unwrap()];
            bad.push(with(&row.entity, row.state.replace(key, "")));
        }
        if detector == "bad-user-agent" {
            bad.push(with("not-an-ip", row.state.clone()));
            // An address row with a table key is not one of an address table.
            bad.push(with(
                &row.entity,
                row.state.replacen(",\"rank\"", ",\"key\":7,\"rank\"", 1),
            ));
        }
        good.push(row);
    }
    for row in &bad {
        assert!(!good
            .iter()
            .any(|g| g.state == row.state && g.entity == row.entity));
    }
    let (bad_count, good_count) = (bad.len() as u64, good.len() as u64);
    let mut c = engine_with_hooks();
    let report = c.restore(bad.into_iter().chain(good.clone()));
    assert_eq!(
        report,
        RestoreReport {
            restored: good_count,
            skipped: bad_count
        }
    );
    let rows = c.snapshot();
    for row in &good {
        assert!(
            rows.iter()
                .any(|r| r.detector == row.detector && r.entity == row.entity),
            "{} {}",
            row.detector,
            row.entity
        );
    }
}
