//! Engine-level behaviour of the built-in detectors on synthetic event-time streams.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use super::definition::with_builtins;
use super::{Engine, EngineSettings, Incident, IncidentEvent, Observed, Severity};
use crate::event::{Request, Timestamp, NANOS_PER_SEC};

const T0: i64 = 1_763_600_000; // 2025-11-20, seconds

/// What scanners ask for: most match the built-in sensitive paths, some are plain misses.
const PROBES: [&str; 24] = [
    "/.env",
    "/.git/config",
    "/wp-login.php",
    "/admin.php",
    "/phpinfo.php",
    "/config.json",
    "/backup.sql",
    "/.aws/credentials",
    "/server-status",
    "/actuator/env",
    "/xmlrpc.php",
    "/.svn/entries",
    "/vendor/phpunit/x",
    "/cgi-bin/test",
    "/solr/admin",
    "/console",
    "/manager/html",
    "/db.sql",
    "/old/",
    "/test.php",
    "/shell.php",
    "/.htpasswd",
    "/debug",
    "/api/swagger.json",
];

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn background_ip(n: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + n))
}

fn request(client: IpAddr, at_millis: i64, status: u16, path: &'static str) -> Request<'static> {
    Request {
        ts: Some(Timestamp(at_millis * 1_000_000)),
        client_ip: Some(client),
        method: Some(Cow::Borrowed(b"GET")),
        path: Some(Cow::Borrowed(path.as_bytes())),
        status: Some(status),
        ..Request::default()
    }
}

/// A stream of requests in time order, built up by the scenario functions below.
#[derive(Default)]
struct Traffic(Vec<(IpAddr, i64, u16, &'static str)>, HashMap<IpAddr, Who>);

/// Who is behind an address: its credentials and how many browsers (user agents) share it.
#[derive(Clone, Copy)]
struct Who {
    user: Option<&'static str>,
    agents: u32,
    /// More than 1: the address rotates through this many of `TOKENS` instead of `user`.
    tokens: u32,
    /// One user agent for every request instead of `AGENTS` (an attack tool's).
    agent: Option<&'static str>,
}

const TOKENS: [&str; 16] = [
    "tok_a0", "tok_a1", "tok_a2", "tok_a3", "tok_a4", "tok_a5", "tok_a6", "tok_a7", "tok_a8",
    "tok_a9", "tok_b0", "tok_b1", "tok_b2", "tok_b3", "tok_b4", "tok_b5",
];

const AGENTS: [&str; 12] = [
    "Mozilla/5.0 (Windows NT 10.0) Chrome/129",
    "Mozilla/5.0 (Macintosh) Safari/17",
    "Mozilla/5.0 (X11; Linux) Firefox/131",
    "Mozilla/5.0 (iPhone) Mobile Safari/17",
    "Mozilla/5.0 (Android 14) Chrome/128",
    "Mozilla/5.0 (Windows NT 10.0) Edge/129",
    "Mozilla/5.0 (Windows NT 10.0) Firefox/130",
    "Mozilla/5.0 (iPad) Safari/16",
    "Mozilla/5.0 (Macintosh) Chrome/127",
    "Mozilla/5.0 (Android 13) Firefox/129",
    "Mozilla/5.0 (X11; Linux) Chrome/126",
    "Mozilla/5.0 (Windows NT 11.0) Opera/114",
];

/// Gives a request its address's credentials and one of its user agents.
fn dress(req: &mut Request<'static>, who: Option<&Who>, at_millis: i64) {
    let Some(who) = who else { return };
    req.user = if who.tokens > 1 {
        let token = TOKENS[(at_millis / 1000).rem_euclid(i64::from(who.tokens)) as usize];
        Some(Cow::Borrowed(token.as_bytes()))
    } else {
        who.user.map(|u| Cow::Borrowed(u.as_bytes()))
    };
    let agent = who.agent.unwrap_or_else(|| {
        AGENTS[(at_millis / 7).rem_euclid(i64::from(who.agents.max(1))) as usize]
    });
    req.user_agent = Some(Cow::Borrowed(agent.as_bytes()));
}

impl Traffic {
    /// `count` requests evenly spread over `[from_s, to_s)`.
    fn steady(
        &mut self,
        client: IpAddr,
        from_s: i64,
        to_s: i64,
        count: i64,
        status: u16,
        path: &'static str,
    ) {
        let span_ms = (to_s - from_s) * 1000;
        for i in 0..count {
            self.0.push((
                client,
                (T0 + from_s) * 1000 + i * span_ms / count,
                status,
                path,
            ));
        }
    }

    /// `count` probes of distinct paths (cycling through `PROBES`) evenly over the span.
    fn probes(&mut self, client: IpAddr, from_s: i64, to_s: i64, count: i64, status: u16) {
        let span_ms = (to_s - from_s) * 1000;
        for i in 0..count {
            let path = PROBES[i as usize % PROBES.len()];
            self.0.push((
                client,
                (T0 + from_s) * 1000 + i * span_ms / count,
                status,
                path,
            ));
        }
    }

    /// Says who is behind `client` (requests default to anonymous, without a user agent).
    fn who(&mut self, client: IpAddr, user: Option<&'static str>, agents: u32) {
        self.1.insert(
            client,
            Who {
                user,
                agents,
                tokens: 1,
                agent: None,
            },
        );
    }

    /// Every request of `client` carries `agent`.
    fn agent(&mut self, client: IpAddr, agent: &'static str) {
        self.1.insert(
            client,
            Who {
                user: None,
                agents: 1,
                tokens: 1,
                agent: Some(agent),
            },
        );
    }

    /// `client` rotates through `tokens` different credentials, one per second.
    fn rotating_tokens(&mut self, client: IpAddr, tokens: u32) {
        self.1.insert(
            client,
            Who {
                user: None,
                agents: 1,
                tokens,
                agent: None,
            },
        );
    }

    /// 300 ordinary clients at ~0.15 req/s each for the whole duration.
    fn background(&mut self, to_s: i64) {
        for n in 0..300 {
            let offset = (n as i64 * 37) % 7;
            self.steady(
                background_ip(n),
                offset,
                to_s,
                to_s * 15 / 100,
                200,
                "/products/1",
            );
        }
    }

    /// The requests in time order.
    fn requests(mut self) -> Vec<(IpAddr, i64, u16, &'static str)> {
        self.0.sort_by_key(|(_, at, _, _)| *at);
        self.0
    }

    fn run(self) -> Vec<Incident> {
        self.run_matching(false)
    }

    /// With the built-ins and `extra` definitions (TOML texts).
    fn run_with(mut self, extra: &[&str]) -> Vec<Incident> {
        let defs: Vec<_> = extra
            .iter()
            .map(|text| super::definition::parse_definition("test.toml", text).unwrap())
            .collect();
        let mut engine = Engine::new(
            &with_builtins(Some(Ok(defs))).unwrap(),
            EngineSettings::default(),
        );
        let mut closed = Vec::new();
        let who = std::mem::take(&mut self.1);
        for (client, at, status, path) in self.requests() {
            let mut req = request(client, at, status, path);
            dress(&mut req, who.get(&client), at);
            req.host = Some(Cow::Borrowed(b"ci.example.com"));
            engine.observe(&req, b"line");
            closed.extend(engine.drain_events().filter_map(closed_incident));
        }
        engine.finish();
        closed.extend(engine.drain_events().filter_map(closed_incident));
        closed
    }

    /// With `prematch`, path patterns are matched ahead of the engine, as the pipeline's
    /// decode threads do.
    fn run_matching(mut self, prematch: bool) -> Vec<Incident> {
        let mut engine = Engine::new(&with_builtins(None).unwrap(), EngineSettings::default());
        let path_match = engine.path_match();
        let mut closed = Vec::new();
        let who = std::mem::take(&mut self.1);
        for (client, at, status, path) in self.requests() {
            let mut req = request(client, at, status, path);
            dress(&mut req, who.get(&client), at);
            let bits = prematch.then(|| path_match.bits(&req));
            engine.observe_matched(&req, b"line", bits);
            closed.extend(engine.drain_events().filter_map(closed_incident));
        }
        engine.finish();
        closed.extend(engine.drain_events().filter_map(closed_incident));
        closed
    }
}

fn closed_incident(event: IncidentEvent) -> Option<Incident> {
    match event {
        IncidentEvent::Closed(incident) => Some(incident),
        _ => None,
    }
}

/// Entities flagged by one kind (2 req/s of probes is also a rate spike, rightly).
fn of_kind<'i>(incidents: &'i [Incident], kind: &str) -> Vec<&'i str> {
    incidents
        .iter()
        .filter(|i| i.kind == kind)
        .map(|i| i.entity.as_str())
        .collect()
}

fn secs(incident_ts: Timestamp) -> i64 {
    incident_ts.nanos() / NANOS_PER_SEC - T0
}

#[test]
fn a_new_client_at_sixty_times_the_typical_rate_is_one_incident() {
    let mut traffic = Traffic::default();
    traffic.background(1200);
    let attacker = ip("203.0.113.7");
    traffic.steady(attacker, 600, 720, 1080, 200, "/products/2");
    let incidents = traffic.run();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let incident = &incidents[0];
    assert_eq!(
        (incident.kind.as_str(), incident.entity.as_str()),
        ("rate_spike", "203.0.113.7")
    );
    assert!(
        (540..=620).contains(&secs(incident.started_at)),
        "{incident:?}"
    );
    assert!(
        secs(incident.detected_at) < 640,
        "detected late: {incident:?}"
    );
    assert!(secs(incident.last_seen) >= 719);
    assert!(
        incident.count > 900,
        "the episode counts its requests: {}",
        incident.count
    );
    assert!(incident.score.p_value.unwrap() < 1e-6);
}

#[test]
fn a_busy_client_present_from_the_start_is_its_own_baseline() {
    let mut traffic = Traffic::default();
    traffic.background(1200);
    traffic.steady(ip("198.51.100.1"), 0, 1200, 12_000, 200, "/");
    assert_eq!(traffic.run(), vec![]);
}

#[test]
fn nothing_fires_during_warmup() {
    let mut traffic = Traffic::default();
    traffic.background(600);
    traffic.steady(ip("203.0.113.8"), 60, 120, 900, 200, "/");
    assert_eq!(traffic.run(), vec![]);
}

#[test]
fn a_recurring_burst_alerts_once_and_a_stronger_one_again() {
    let mut traffic = Traffic::default();
    traffic.background(3600);
    let cron = ip("192.0.2.50");
    for start in [600, 1500, 2400] {
        traffic.steady(cron, start, start + 30, 400, 200, "/api/sync");
    }
    traffic.steady(cron, 3300, 3330, 2000, 200, "/api/sync");
    let incidents = traffic.run();
    let starts: Vec<i64> = incidents.iter().map(|i| secs(i.detected_at)).collect();
    assert_eq!(incidents.len(), 2, "{starts:?}");
    assert!(starts[0] < 700 && starts[1] >= 3300, "{starts:?}");
}

#[test]
fn older_lines_still_count_and_the_clock_only_moves_forward() {
    let mut engine = Engine::new(&with_builtins(None).unwrap(), EngineSettings::default());
    let client = ip("192.0.2.1");
    let at = T0 * 1000;
    assert_eq!(engine.clock(), None);
    assert_eq!(
        engine.observe(&request(client, at + 10_000, 200, "/"), b""),
        Observed::Accepted
    );
    assert_eq!(
        engine.observe(&request(client, at + 4_999, 200, "/"), b""),
        Observed::Accepted
    );
    assert_eq!(engine.clock(), request(client, at + 10_000, 200, "/").ts);
    engine.advance_to(request(client, at, 200, "/").ts.unwrap());
    assert_eq!(engine.clock(), request(client, at + 10_000, 200, "/").ts);
    let mut no_ts = request(client, at, 200, "/");
    no_ts.ts = None;
    assert_eq!(engine.observe(&no_ts, b""), Observed::NoTimestamp);
    assert_eq!(engine.stats().accepted, 2);
}

#[test]
fn advancing_the_clock_closes_quiet_incidents_without_new_lines() {
    let mut traffic = Traffic::default();
    traffic.background(460);
    traffic.probes(ip("203.0.113.9"), 400, 460, 120, 404);
    let mut engine = Engine::new(&with_builtins(None).unwrap(), EngineSettings::default());
    for (client, at, status, path) in traffic.requests() {
        engine.observe(&request(client, at, status, path), b"line");
    }
    let before: Vec<IncidentEvent> = engine.drain_events().collect();
    assert!(before.iter().any(|e| matches!(e, IncidentEvent::Opened(_))));
    assert!(!before.iter().any(|e| matches!(e, IncidentEvent::Closed(_))));
    let last = engine.clock().unwrap();
    engine.advance_to(Timestamp(last.nanos() + 3600 * NANOS_PER_SEC));
    let closed: Vec<IncidentEvent> = engine.drain_events().collect();
    assert!(
        closed
            .iter()
            .any(|e| matches!(e, IncidentEvent::Closed(i) if i.entity == "203.0.113.9")),
        "{closed:?}"
    );
}

#[test]
fn scanners_need_many_distinct_probes_making_up_most_of_their_requests() {
    let mut traffic = Traffic::default();
    traffic.background(900);
    traffic.probes(ip("203.0.113.9"), 400, 460, 120, 404);
    // A handful of stray probes, and a busy client whose few 404s are a small share.
    traffic.steady(ip("203.0.113.10"), 300, 302, 3, 404, "/.env");
    traffic.steady(ip("198.51.100.2"), 0, 900, 9000, 200, "/");
    traffic.steady(ip("198.51.100.2"), 500, 560, 15, 404, "/missing.png");
    // A client retrying one missing endpoint is broken, not scanning.
    traffic.steady(
        ip("198.51.100.3"),
        300,
        600,
        150,
        404,
        "/api/v1/old-endpoint",
    );
    // A page whose images are missing: every 404 is a static asset.
    let gallery = ip("198.51.100.4");
    traffic.steady(gallery, 300, 330, 3, 200, "/gallery/autumn");
    for (n, path) in [
        "/img/1.jpg",
        "/img/2.jpg",
        "/img/3.png",
        "/img/4.webp",
        "/img/5.jpg",
    ]
    .into_iter()
    .enumerate()
    {
        traffic.steady(gallery, 300 + n as i64, 330, 3, 404, path);
    }
    let incidents = traffic.run();
    assert_eq!(of_kind(&incidents, "scanner"), vec!["203.0.113.9"]);
}

#[test]
fn a_slow_scanner_is_caught_within_a_few_minutes() {
    let mut traffic = Traffic::default();
    traffic.background(1800);
    // One probe every 15 s for 20 minutes.
    traffic.probes(ip("203.0.113.20"), 600, 1800, 80, 404);
    let incidents = traffic.run();
    let scanner: Vec<&Incident> = incidents.iter().filter(|i| i.kind == "scanner").collect();
    assert_eq!(scanner.len(), 1, "{incidents:#?}");
    let latency = secs(scanner[0].detected_at) - 600;
    assert!(latency <= 180, "caught after {latency} s");
}

#[test]
fn paths_matched_ahead_of_the_engine_give_the_same_incidents() {
    let scenario = || {
        let mut traffic = Traffic::default();
        traffic.background(900);
        traffic.probes(ip("203.0.113.9"), 400, 460, 120, 200);
        traffic.steady(ip("203.0.113.11"), 300, 420, 240, 401, "/api/v1/auth/login");
        traffic.steady(ip("203.0.113.12"), 300, 420, 240, 200, "/api/v1/auth/login");
        traffic
    };
    let direct = scenario().run_matching(false);
    assert_eq!(of_kind(&direct, "scanner"), vec!["203.0.113.9"]);
    assert_eq!(of_kind(&direct, "brute_force"), vec!["203.0.113.11"]);
    assert_eq!(scenario().run_matching(true), direct);
}

#[test]
fn brute_force_needs_failures_on_auth_routes() {
    let mut traffic = Traffic::default();
    traffic.background(900);
    traffic.steady(ip("203.0.113.11"), 400, 520, 240, 401, "/api/v1/auth/login");
    // A page whose session expired: every 15 s its API calls (a different route each,
    // the same route no more than twice within 20 s) are refused.
    const API: [&str; 8] = [
        "/api/v1/items",
        "/api/v1/cart",
        "/api/v1/users/me",
        "/api/v1/orders",
        "/api/v1/prices",
        "/api/v1/search",
        "/api/v1/events",
        "/api/v1/products",
    ];
    for navigation in 0..8 {
        for (n, path) in API.iter().enumerate() {
            let at = 400 * 1000 + navigation * 15_000 + n as i64 * 100;
            traffic
                .0
                .push((ip("203.0.113.12"), (T0 * 1000) + at, 401, path));
        }
    }
    let incidents = traffic.run();
    assert_eq!(of_kind(&incidents, "brute_force"), vec!["203.0.113.11"]);
    let severity = incidents
        .iter()
        .find(|i| i.kind == "brute_force")
        .unwrap()
        .severity;
    assert_eq!(severity, Severity::High);
}

/// One request of a refusal-burst scenario: `(client, second, method, path, status, size)`.
type Answered = (&'static str, f64, &'static str, &'static str, u16, u64);

/// The incidents `extra` requests raise over the usual background (300 clients).
fn with_background(extra: Vec<(i64, Request<'static>)>) -> Vec<Incident> {
    let mut engine = Engine::new(&with_builtins(None).unwrap(), EngineSettings::default());
    let mut traffic = Traffic::default();
    traffic.background(900);
    let mut all: Vec<(i64, Request<'static>)> = traffic
        .requests()
        .into_iter()
        .map(|(client, at, status, path)| (at, request(client, at, status, path)))
        .chain(extra)
        .collect();
    all.sort_by_key(|(at, _)| *at);
    let mut closed = Vec::new();
    for (_, req) in &all {
        engine.observe(req, b"line");
        closed.extend(engine.drain_events().filter_map(closed_incident));
    }
    engine.finish();
    closed.extend(engine.drain_events().filter_map(closed_incident));
    closed
}

/// The brute-force incidents' entities for `requests` over background.
fn brute_forced(requests: &[Answered]) -> Vec<String> {
    let extra = (requests.iter())
        .map(|&(client, second, method, path, status, size)| {
            let at = (T0 * 1000) + (second * 1000.0) as i64;
            let mut req = request(ip(client), at, status, path);
            req.method = Some(Cow::Borrowed(method.as_bytes()));
            req.bytes_sent = Some(size);
            (at, req)
        })
        .collect();
    of_kind(&with_background(extra), "brute_force")
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Tools retry one target at machine speed: six identical refusals within 20 s are a brute
/// force on any route (HTTP Basic auth refused: 401), and on a form login that answers a
/// failure with itself (200, same size). People retyping a password, and logins that
/// succeed, are not.
#[test]
fn a_target_refused_over_and_over_at_machine_speed_is_a_brute_force() {
    // `(status, size)` answers to `client`'s `method path`, one every `every` seconds from
    // second 500.
    let answered = |client, every: f64, method, path, answers: &[(u16, u64)]| -> Vec<Answered> {
        (answers.iter().enumerate())
            .map(|(n, &(status, size))| {
                (client, 500.0 + n as f64 * every, method, path, status, size)
            })
            .collect()
    };
    let refused = |n| vec![(401, 141); n];
    let requests: Vec<Answered> = [
        // Basic auth guessed on a plain route, six times in a second and a half.
        answered("198.51.100.20", 0.25, "POST", "/client", &refused(6)),
        // A form login re-rendering itself, seven times in three seconds.
        answered(
            "198.51.100.21",
            0.5,
            "POST",
            "/apps/login",
            &[(200, 1950); 7],
        ),
        // A person: three mistyped passwords, then in (a redirect).
        answered(
            "198.51.100.22",
            6.0,
            "POST",
            "/apps/login",
            &[(200, 1950), (200, 1950), (200, 1950), (302, 1950)],
        ),
        // Five identical refusals in a row are not yet six; six spread over a minute are
        // not machine speed.
        answered("198.51.100.23", 1.0, "GET", "/admin", &refused(5)),
        answered("198.51.100.24", 12.0, "GET", "/admin", &refused(6)),
        // A login API that answers success with 200 and a token, size varying, at a human
        // pace behind one office address.
        answered(
            "198.51.100.25",
            2.0,
            "POST",
            "/api/v1/auth/login",
            &[
                (200, 412),
                (200, 415),
                (200, 409),
                (200, 412),
                (200, 420),
                (200, 411),
            ],
        ),
    ]
    .concat();
    let mut flagged = brute_forced(&requests);
    flagged.sort();
    assert_eq!(flagged, vec!["198.51.100.20", "198.51.100.21"]);
}

#[test]
fn a_known_clients_scheduled_burst_is_not_a_spike_but_a_strangers_is() {
    let scenario = |user: Option<&'static str>, status: u16| {
        let mut traffic = Traffic::default();
        traffic.background(1500);
        let job = ip("198.51.100.50");
        traffic.who(job, user, 1);
        // A heartbeat every minute, then 600 requests in 40 s.
        traffic.steady(job, 0, 1500, 25, 200, "/api/v1/users/me");
        traffic.steady(job, 900, 940, 600, status, "/api/v1/inventory");
        of_kind(&traffic.run(), "rate_spike")
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(scenario(Some("tok_job"), 204).is_empty(), "a known job");
    assert_eq!(scenario(None, 204), ["198.51.100.50"], "anonymous: a spike");
    assert_eq!(
        scenario(Some("tok_job"), 401),
        ["198.51.100.50"],
        "refused requests are not a job's"
    );
}

#[test]
fn many_browsers_behind_one_address_growing_are_not_one_clients_spike() {
    let scenario = |agents: u32| {
        let mut traffic = Traffic::default();
        traffic.background(1500);
        let office = ip("198.51.100.60");
        traffic.who(office, None, agents);
        // 0.2 req/s while people arrive, then 2 req/s for the rest of the day.
        traffic.steady(office, 0, 600, 120, 200, "/products/3");
        traffic.steady(office, 600, 1500, 1800, 200, "/products/4");
        of_kind(&traffic.run(), "rate_spike")
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(scenario(12).is_empty(), "an office NAT");
    assert_eq!(
        scenario(1),
        ["198.51.100.60"],
        "one client ten times faster"
    );
}

const PAGES: [&str; 26] = [
    "/c/a", "/c/b", "/c/c", "/c/d", "/c/e", "/c/f", "/c/g", "/c/h", "/c/i", "/c/j", "/c/k", "/c/l",
    "/c/m", "/c/n", "/c/o", "/c/p", "/c/q", "/c/r", "/c/s", "/c/t", "/c/u", "/c/v", "/c/w", "/c/x",
    "/c/y", "/c/z",
];

/// Client `n` of network `net` (one /24 per `net`).
fn networked(net: u32, n: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + (net << 8) + n))
}

impl Traffic {
    /// 300 ordinary clients, each in its own /24, at ~0.15 req/s on 26 pages.
    fn background_networks(&mut self, to_s: i64) {
        for n in 0..300u32 {
            let page = PAGES[n as usize % PAGES.len()];
            self.steady(
                networked(n, 1),
                (n % 7) as i64,
                to_s,
                to_s * 15 / 100,
                200,
                page,
            );
        }
    }
}

fn entities_of<'i>(incidents: &'i [Incident], detector: &str) -> Vec<&'i str> {
    incidents
        .iter()
        .filter(|i| i.detector == detector)
        .map(|i| i.entity.as_str())
        .collect()
}

#[test]
fn a_flood_on_one_route_from_many_networks_is_a_route_spike_and_one_scraper_is_not() {
    let flood = |networks: u32| {
        let mut traffic = Traffic::default();
        traffic.background_networks(1500);
        // The route's usual traffic: 1 req/s from clients everywhere.
        for n in 0..60u32 {
            traffic.steady(networked(1000 + n, 2), 0, 1500, 25, 200, "/api/v1/search");
        }
        // 4,000 extra requests in three minutes, from `networks` networks.
        for n in 0..networks {
            let per_client = 4000 / i64::from(networks);
            traffic.steady(
                networked(2000 + n, 3),
                900,
                1080,
                per_client,
                200,
                "/api/v1/search",
            );
        }
        traffic.run()
    };
    let spread = flood(400);
    assert_eq!(
        entities_of(&spread, "rate-spike-route"),
        ["GET /api/v1/search"]
    );
    assert!(
        entities_of(&spread, "rate-spike-ip").is_empty(),
        "no client stands out"
    );
    let one = flood(1);
    assert!(
        entities_of(&one, "rate-spike-route").is_empty(),
        "one client's scrape is its own story"
    );
    assert_eq!(entities_of(&one, "rate-spike-ip"), ["10.7.208.3"]);
}

#[test]
fn the_whole_site_at_several_times_its_rate_is_a_global_spike() {
    let mut traffic = Traffic::default();
    traffic.background_networks(1500);
    for n in 0..1000u32 {
        let page = PAGES[n as usize % PAGES.len()];
        traffic.steady(networked(3000 + n, 4), 900, 960, 10, 200, page);
    }
    let incidents = traffic.run();
    assert_eq!(entities_of(&incidents, "rate-spike-global"), ["*"]);
    assert!(entities_of(&incidents, "rate-spike-ip").is_empty());
}

#[test]
fn many_quiet_addresses_of_one_network_together_are_a_subnet_spike() {
    let spread = |addresses: u32| {
        let mut traffic = Traffic::default();
        traffic.background_networks(1500);
        // 1,200 requests a minute for five minutes from one /24.
        for n in 0..addresses {
            let per_address = 6000 / i64::from(addresses);
            traffic.steady(networked(4000, n + 1), 900, 1200, per_address, 200, "/c/a");
        }
        traffic.run()
    };
    let incidents = spread(40);
    assert_eq!(
        entities_of(&incidents, "rate-spike-subnet"),
        ["10.15.160.0/24"]
    );
    assert!(
        entities_of(&incidents, "rate-spike-ip").is_empty(),
        "each address stays under the per-IP bars"
    );
    // The same volume from two addresses: the per-IP detector's, not a network's.
    let pair = spread(2);
    assert!(entities_of(&pair, "rate-spike-subnet").is_empty());
    assert_eq!(entities_of(&pair, "rate-spike-ip").len(), 2);
}

#[test]
fn a_flash_crowd_landing_on_a_new_page_is_no_incident() {
    let mut traffic = Traffic::default();
    traffic.background_networks(1800);
    // 900 new visitors in ten minutes, each reading the page and one more.
    for n in 0..900u32 {
        let at = 900 + i64::from(n) * 600 / 900;
        traffic.steady(
            networked(5000 + n, 9),
            at,
            at + 30,
            1,
            200,
            "/blog/launch-week",
        );
        traffic.steady(networked(5000 + n, 9), at + 30, at + 60, 1, 200, "/c/b");
    }
    let incidents = traffic.run();
    assert!(incidents.is_empty(), "{incidents:#?}");
}

#[test]
fn a_token_used_from_thirty_addresses_at_once_is_flagged_and_a_move_is_not() {
    let scenario = |addresses: u32| {
        let mut traffic = Traffic::default();
        traffic.background_networks(1500);
        let owner = networked(6000, 1);
        traffic.who(owner, Some("tok_0123456789abcdef"), 1);
        traffic.steady(owner, 0, 1500, 50, 200, "/api/v1/orders");
        // From t = 900: `addresses` new addresses with the same token, five requests each.
        for n in 0..addresses {
            let ip = networked(7000 + n, 2);
            traffic.who(ip, Some("tok_0123456789abcdef"), 1);
            traffic.steady(ip, 900 + i64::from(n) * 4, 1140, 5, 200, "/api/v1/orders");
        }
        traffic.run()
    };
    let leaked = scenario(30);
    let flagged: Vec<&Incident> = leaked
        .iter()
        .filter(|i| i.kind == "token_many_sources")
        .collect();
    assert_eq!(flagged.len(), 1, "{leaked:#?}");
    let fingerprint = super::token_sources::fingerprint(b"", b"tok_0123456789abcdef");
    assert_eq!(flagged[0].entity, fingerprint);
    // Started with the first new address (to the 30 s bucket), not the owner's first use.
    assert!(secs(flagged[0].started_at) >= 870, "{:?}", flagged[0]);
    assert!(secs(flagged[0].detected_at) <= 960, "within a minute");
    for incident in &leaked {
        assert!(
            !incident.summary.contains("tok_0123"),
            "{}",
            incident.summary
        );
    }
    // The client moving to another network once is the same single user.
    assert!(of_kind(&scenario(1), "token_many_sources").is_empty());
}

#[test]
fn a_token_used_from_a_new_network_while_its_owner_is_active_is_flagged_and_a_move_is_not() {
    let scenario = |owner_stays: bool| {
        let mut traffic = Traffic::default();
        traffic.background_networks(1500);
        let owner = networked(8000, 1);
        let thief = networked(8100, 1);
        for ip in [owner, thief] {
            traffic.who(ip, Some("tok_feedfacecafebeef"), 1);
        }
        let owner_until = if owner_stays { 1500 } else { 900 };
        traffic.steady(
            owner,
            0,
            owner_until,
            owner_until / 20,
            200,
            "/api/v1/orders",
        );
        traffic.steady(thief, 900, 1200, 20, 200, "/api/v1/orders");
        traffic.run()
    };
    let stolen = scenario(true);
    let flagged: Vec<&Incident> = stolen
        .iter()
        .filter(|i| i.kind == "token_new_source")
        .collect();
    assert_eq!(flagged.len(), 1, "{stolen:#?}");
    assert_eq!(
        flagged[0].entity,
        super::token_sources::fingerprint(b"", b"tok_feedfacecafebeef")
    );
    assert_eq!(secs(flagged[0].started_at), 900);
    assert!(secs(flagged[0].detected_at) <= 1000);
    assert!(
        flagged[0].summary.contains("10.31.164.1"),
        "{}",
        flagged[0].summary
    );
    let moved = scenario(false);
    assert!(of_kind(&moved, "token_new_source").is_empty(), "{moved:#?}");
}

#[test]
fn a_flood_of_one_off_misses_cannot_evict_a_slow_scanner() {
    // The built-in scanner with a small table, so the flood is 5x its capacity per probe.
    let text = include_str!("../../detectors/scanner-ip.toml")
        .replace("capacity = 100000", "capacity = 1000");
    let def = super::definition::parse_definition("scanner-ip.toml", &text).unwrap();
    let mut engine = Engine::new(&[def], EngineSettings::default());
    let scanner = ip("203.0.113.50");
    let mut opened = Vec::new();
    for k in 0..30i64 {
        let at = (T0 + 600 + k * 4) * 1000;
        let probe = PROBES[k as usize % PROBES.len()];
        engine.observe(&request(scanner, at, 404, probe), b"probe");
        // Between two probes, 5,000 addresses ask once for something missing.
        for n in 0..5000i64 {
            let one_off = IpAddr::V6(std::net::Ipv6Addr::from(
                0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + (k * 5000 + n) as u128,
            ));
            engine.observe(&request(one_off, at + 1 + n % 3000, 404, "/missing"), b"x");
        }
        opened.extend(engine.drain_events().filter_map(|event| match event {
            IncidentEvent::Opened(incident) => Some(incident.entity),
            _ => None,
        }));
    }
    assert_eq!(
        opened,
        ["203.0.113.50"],
        "the scanner, and no one-off address"
    );
}

#[test]
fn an_address_presenting_many_or_refused_credentials_is_flagged_and_a_pair_is_not() {
    let scenario = |tokens: u32, status: u16| {
        let mut traffic = Traffic::default();
        traffic.background_networks(1200);
        let client = networked(9000, 1);
        traffic.rotating_tokens(client, tokens);
        traffic.steady(client, 900, 1020, 120, status, "/api/v1/session");
        of_kind(&traffic.run(), "ip_many_tokens")
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        scenario(16, 200),
        ["10.35.40.1"],
        "sixteen accepted credentials"
    );
    assert_eq!(scenario(5, 401), ["10.35.40.1"], "five refused credentials");
    assert!(scenario(2, 200).is_empty(), "two apps on one machine");
    assert!(scenario(3, 401).is_empty(), "a user mistyping a key");
}

const NIKTO: &str = "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000417)";

#[test]
fn an_attack_tool_the_site_answers_or_that_keeps_going_is_flagged_and_stray_probes_are_not() {
    let scenario = || {
        let mut traffic = Traffic::default();
        traffic.background(900);
        // Two requests of a tool that got pages back: it is mapping a live site.
        let answered = ip("203.0.113.30");
        traffic.agent(answered, NIKTO);
        traffic.steady(answered, 400, 402, 2, 200, "/");
        // A tool that keeps going, answered or not.
        let persistent = ip("203.0.113.31");
        traffic.agent(
            persistent,
            "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
        );
        traffic.steady(persistent, 300, 600, 9, 404, "/nothing-here");
        // Internet background noise: three stray probes that found nothing.
        let stray = ip("203.0.113.32");
        traffic.agent(stray, NIKTO);
        traffic.steady(stray, 500, 503, 3, 404, "/wp-login.php");
        // One answered request alone, and a browser: nothing.
        let once = ip("203.0.113.33");
        traffic.agent(once, "sqlmap/1.8#stable (https://sqlmap.org)");
        traffic.steady(once, 500, 501, 1, 200, "/search");
        let browser = ip("203.0.113.34");
        traffic.agent(browser, "Mozilla/5.0 (X11; Linux) Firefox/131");
        traffic.steady(browser, 300, 600, 40, 200, "/");
        traffic
    };
    let incidents = scenario().run();
    let mut flagged = of_kind(&incidents, "bad_user_agent");
    flagged.sort();
    assert_eq!(
        flagged,
        vec!["203.0.113.30", "203.0.113.31"],
        "{incidents:#?}"
    );
    let persistent = incidents
        .iter()
        .find(|i| i.entity == "203.0.113.31" && i.kind == "bad_user_agent")
        .unwrap();
    assert!(
        persistent.summary.contains("nmap scripting engine")
            && persistent.summary.contains("0 of them answered"),
        "{}",
        persistent.summary
    );
    // The user-agent bit matched on a decode thread gives the same incidents.
    assert_eq!(scenario().run_matching(true), incidents);
}

const GIT_HOOKS: &str = "id = \"hooks-from-git\"\nkind = \"unexpected_source\"\nentity = \"ip\"\nseverity = \"high\"\n[params]\nhosts = [\"ci.example.com\"]\npaths = [\"/hooks/*\"]\nallow = [\"140.82.112.0/20\", \"2001:db8:9::/48\"]\n";

#[test]
fn a_webhook_called_from_outside_its_allowlist_is_flagged_from_the_first_request() {
    let mut traffic = Traffic::default();
    traffic.background(900);
    // The Git host delivers all day, from its networks; one outsider calls once, in the
    // warm-up even; another calls a path that is not a hook.
    traffic.steady(ip("140.82.115.4"), 0, 900, 90, 200, "/hooks/deploy");
    traffic.steady(ip("2001:db8:9:1::7"), 0, 900, 30, 200, "/hooks/deploy");
    traffic.steady(ip("198.51.100.66"), 60, 61, 1, 401, "/hooks/deploy");
    traffic.steady(ip("198.51.100.67"), 300, 301, 1, 200, "/hooks");
    let incidents = traffic.run_with(&[GIT_HOOKS]);
    let flagged = of_kind(&incidents, "unexpected_source");
    assert_eq!(flagged, vec!["198.51.100.66"], "{incidents:#?}");
    let incident = incidents
        .iter()
        .find(|i| i.kind == "unexpected_source")
        .unwrap();
    assert_eq!(secs(incident.detected_at), 60);
    assert!(
        incident.summary.contains("/hooks/deploy") && incident.summary.contains("140.82.112.0/20"),
        "{}",
        incident.summary
    );
}

#[test]
fn a_new_address_reaching_an_admin_route_after_learning_is_flagged_and_known_ones_are_not() {
    let mut traffic = Traffic::default();
    traffic.background(4200);
    // Two admins use the console all along; a probe gets 404s; later a newcomer gets in.
    traffic.steady(ip("192.0.2.10"), 0, 4200, 400, 200, "/admin/users");
    traffic.steady(ip("192.0.2.11"), 100, 4200, 200, 200, "/admin/settings");
    traffic.steady(ip("203.0.113.50"), 2500, 2510, 5, 404, "/admin/login");
    traffic.steady(ip("203.0.113.51"), 3000, 3300, 20, 200, "/admin/users");
    // During learning a newcomer is only learned.
    traffic.steady(ip("192.0.2.12"), 600, 660, 5, 200, "/admin/users");
    let incidents = traffic.run();
    let flagged = of_kind(&incidents, "new_source_sensitive_route");
    assert_eq!(flagged, vec!["203.0.113.51"], "{incidents:#?}");
    let incident = incidents
        .iter()
        .find(|i| i.kind == "new_source_sensitive_route")
        .unwrap();
    assert_eq!(secs(incident.started_at), 3000);
}

#[test]
fn a_route_failing_far_more_than_usual_is_an_error_spike_and_its_usual_failures_are_not() {
    let mut traffic = Traffic::default();
    traffic.background(1800);
    // A search route at 4 req/s for 30 minutes, failing 1 in 50 as usual...
    for n in 0..20u32 {
        let client = networked(7, n);
        traffic.steady(client, 0, 1800, 360, 200, "/api/v1/search");
        traffic.steady(client, 5, 1800, 7, 503, "/api/v1/search");
    }
    // ...until its backend fails for two minutes: most requests answer 502.
    for n in 0..20u32 {
        traffic.steady(networked(7, n), 1200, 1320, 12, 502, "/api/v1/search");
    }
    // A quiet route whose three requests all fail, and a route that always fails a fifth.
    traffic.steady(ip("192.0.2.60"), 900, 905, 3, 500, "/api/v1/export");
    for n in 0..10u32 {
        let client = networked(8, n);
        traffic.steady(client, 0, 1800, 400, 200, "/api/v1/flaky");
        traffic.steady(client, 0, 1800, 100, 500, "/api/v1/flaky");
    }
    let incidents = traffic.run();
    let spikes: Vec<&Incident> = incidents
        .iter()
        .filter(|i| i.kind == "error_spike")
        .collect();
    assert_eq!(
        spikes.iter().map(|i| i.entity.as_str()).collect::<Vec<_>>(),
        vec!["GET /api/v1/search"],
        "{incidents:#?}"
    );
    let detected = secs(spikes[0].detected_at);
    assert!((1200..1260).contains(&detected), "detected at {detected} s");
    assert!(spikes[0].score.p_value.is_some_and(|p| p < 1e-6));
}

#[test]
fn a_scanner_turning_to_brute_force_is_one_story_that_explains_itself() {
    let mut traffic = Traffic::default();
    traffic.background(1200);
    let attacker = ip("203.0.113.77");
    traffic.probes(attacker, 400, 460, 120, 404);
    traffic.steady(attacker, 500, 620, 240, 401, "/api/v1/auth/login");
    // Another address brute-forcing at the same time is another story.
    traffic.steady(
        ip("198.51.100.99"),
        500,
        620,
        240,
        401,
        "/api/v1/auth/login",
    );
    let incidents = traffic.run();
    let scanner = incidents.iter().find(|i| i.kind == "scanner").unwrap();
    let brute = (incidents.iter())
        .find(|i| i.kind == "brute_force" && i.entity == "203.0.113.77")
        .unwrap();
    let other = (incidents.iter())
        .find(|i| i.kind == "brute_force" && i.entity == "198.51.100.99")
        .unwrap();
    assert!(scanner.related.contains(&brute.id), "{:?}", scanner.related);
    assert!(brute.related.contains(&scanner.id), "{:?}", brute.related);
    assert!(!other.related.contains(&scanner.id), "{:?}", other.related);

    // The scanner's explanation: its rule, what it probed and how it was answered.
    assert!(
        scanner.explain.rule.contains("probe points"),
        "{}",
        scanner.explain.rule
    );
    let probed: Vec<&str> = (scanner.explain.top_paths.iter())
        .map(|t| t.value.as_str())
        .collect();
    assert!(
        probed
            .iter()
            .all(|p| PROBES.contains(p) || *p == "/api/v1/auth/login"),
        "{probed:?}"
    );
    // Its episode lasted into the brute force: both answers show, the probes' 404s included.
    let statuses: Vec<&str> = (scanner.explain.statuses.iter())
        .map(|t| t.value.as_str())
        .collect();
    assert!(
        statuses.contains(&"404") && statuses.contains(&"401"),
        "{statuses:?}"
    );
    // The brute force: one route, refused.
    assert_eq!(brute.explain.top_paths[0].value, "/api/v1/auth/login");
    assert_eq!(brute.explain.statuses[0].value, "401");
    assert_eq!(brute.explain.statuses[0].count, brute.count);
}

#[test]
fn a_rate_spike_summary_quotes_its_peak_and_what_it_was_held_against() {
    let mut traffic = Traffic::default();
    traffic.background(1200);
    // Ramps up: 60 requests in its first minute, then 900 a minute.
    traffic.steady(ip("203.0.113.88"), 600, 660, 120, 200, "/products");
    traffic.steady(ip("203.0.113.88"), 660, 780, 1800, 200, "/products");
    let incidents = traffic.run();
    let spike = (incidents.iter())
        .find(|i| i.detector == "rate-spike-ip" && i.entity == "203.0.113.88")
        .unwrap();
    let peak = spike.score.observed;
    assert!(peak >= 800.0, "peak {peak}");
    assert!(
        spike
            .summary
            .starts_with(&format!("203.0.113.88 sent {peak} requests in 60s")),
        "{}",
        spike.summary
    );
    assert!(
        spike
            .summary
            .contains(&format!("of {:.1}", spike.score.expected)),
        "{}",
        spike.summary
    );
}

#[test]
fn a_known_exploit_retried_four_times_is_a_scanner_and_once_is_background_noise() {
    let mut traffic = Traffic::default();
    traffic.background(1200);
    // The same CVE-2024-38475 payload (an encoded "?" in the path), retried.
    traffic.steady(
        ip("203.0.113.60"),
        600,
        640,
        4,
        404,
        "/html/usr/share/x.html%3f",
    );
    // Three tries, and the same mark one address away, are the internet's background.
    traffic.steady(
        ip("203.0.113.61"),
        600,
        640,
        3,
        404,
        "/html/usr/share/x.html%3F",
    );
    traffic.steady(ip("203.0.113.62"), 700, 701, 1, 404, "/etc/passwd%3f");
    let incidents = traffic.run();
    assert_eq!(of_kind(&incidents, "scanner"), ["203.0.113.60"]);
    let scanner = incidents.iter().find(|i| i.kind == "scanner").unwrap();
    assert!(
        scanner.summary.contains("8 probe points"),
        "{}",
        scanner.summary
    );
    assert!(
        scanner.summary.contains("over 4 requests"),
        "{}",
        scanner.summary
    );
}

#[test]
fn a_network_flooding_new_addresses_is_itself_an_incident_and_hides_no_scanner() {
    let mut traffic = Traffic::default();
    traffic.background_networks(1200);
    let scanner = ip("203.0.113.50");
    for k in 0..30i64 {
        let at = (T0 + 600 + k * 4) * 1000;
        traffic
            .0
            .push((scanner, at, 404, PROBES[k as usize % PROBES.len()]));
        // Between two probes, 2,000 new addresses of one /64 ask once for something missing.
        for n in 0..2000i64 {
            let one_off = IpAddr::V6(std::net::Ipv6Addr::from(
                0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + (k * 2000 + n) as u128,
            ));
            traffic
                .0
                .push((one_off, at + 1 + n % 3000, 404, "/missing"));
        }
    }
    let incidents = traffic.run();
    assert_eq!(of_kind(&incidents, "scanner"), ["203.0.113.50"]);
    assert!(
        entities_of(&incidents, "rate-spike-subnet").contains(&"2001:db8::/64"),
        "the flooding network: {:?}",
        (incidents.iter())
            .map(|i| (&i.detector, &i.entity))
            .collect::<Vec<_>>()
    );
    assert!(
        !(incidents.iter())
            .any(|i| i.entity.starts_with("2001:db8::")
                && i.entity_kind == crate::event::EntityKind::Ip),
        "no one-off address is an incident of its own"
    );
}

#[test]
fn the_false_alarm_budget_tightens_the_threshold_with_the_keys_tested() {
    let scenario = |budget: f64| {
        let mut traffic = Traffic::default();
        traffic.background(1200);
        traffic.steady(ip("203.0.113.7"), 600, 720, 1080, 200, "/products/2");
        let text = include_str!("../../detectors/rate-spike-ip.toml").replace(
            "[params]",
            &format!("[params]\nfalse_alarm_budget = {budget:e}"),
        );
        let incidents = traffic.run_with(&[&text]);
        (incidents.into_iter())
            .filter(|i| i.detector == "rate-spike-ip")
            .collect::<Vec<_>>()
    };
    let default = scenario(1e-4);
    assert_eq!(default.len(), 1, "{default:?}");
    // A budget under the spike's first p-value times the ~300 keys tested: it still fires
    // (the spike grows), but only once its p-value is under budget / keys.
    let budget = default[0].score.p_value.unwrap() * 300.0 / 1e6;
    let strict = scenario(budget);
    assert_eq!(strict.len(), 1, "{strict:?}");
    assert!(strict[0].score.p_value.unwrap() < budget / 300.0);
    assert!(strict[0].detected_at > default[0].detected_at);
}

/// Whatever detector keeps a line as evidence, the line names the request's token by its
/// fingerprint only: a client flooding with its API key is a rate spike by address, and
/// its key must not reach the incident (nor a store, an alert or a console after it).
#[test]
fn no_incident_keeps_a_raw_token_in_its_evidence() {
    const SECRET: &str = "sk_live_0123456789abcdef";
    let mut traffic = Traffic::default();
    traffic.background(1200);
    let flooder = ip("203.0.113.7");
    traffic.steady(flooder, 600, 720, 1080, 200, "/api/v1/products");
    let lines: Vec<String> = (traffic.requests().into_iter())
        .map(|(client, at, status, path)| {
            let user = if client == flooder { SECRET } else { "-" };
            let time = chrono::DateTime::from_timestamp_millis(at).unwrap();
            format!(
                "{client} - {user} [{}] \"GET {path} HTTP/1.1\" {status} 512 \"-\" \"curl/8\"",
                time.format("%d/%b/%Y:%H:%M:%S +0000")
            )
        })
        .collect();
    let parser = crate::parse::preset("combined").unwrap();
    let mut engine = Engine::new(&with_builtins(None).unwrap(), EngineSettings::default());
    let mut events = Vec::new();
    for line in &lines {
        let req = parser.parse(line.as_bytes()).unwrap();
        engine.observe(&req, line.as_bytes());
        events.extend(engine.drain_events());
    }
    engine.finish();
    events.extend(engine.drain_events());
    let flood = (events.iter().map(IncidentEvent::incident))
        .find(|i| i.kind == "rate_spike" && i.entity == "203.0.113.7")
        .expect("the flood is a rate spike");
    assert!(!flood.evidence.is_empty());
    for event in &events {
        let text = serde_json::to_string(event.incident()).unwrap();
        assert!(!text.contains(SECRET), "a raw token in {text}");
    }
    let line = &flood.evidence[0].line;
    assert!(
        line.starts_with("203.0.113.7 - fp_") && line.contains("GET /api/v1/products"),
        "{line}"
    );
}

/// A single-page app's navigations fetch dozens of scripts in seconds, each asked for by
/// the page (a Referer): the client asked for the page and its API calls, not for them. A
/// scraper asking for as many pages itself, at the same rate, is a spike.
#[test]
fn a_single_page_apps_chunks_are_not_its_users_spike_but_a_scraper_at_that_rate_is() {
    const CHUNKS: [&str; 8] = [
        "/static/js/chunk-a1.js",
        "/static/js/chunk-b2.js",
        "/static/js/chunk-c3.js",
        "/static/js/chunk-d4.js",
        "/static/js/chunk-e5.js",
        "/static/js/chunk-f6.js",
        "/static/css/app.css",
        "/static/img/logo.svg",
    ];
    let mut extra = Vec::new();
    for second in (400..700).step_by(10) {
        // Every 10 s a navigation: the route's API call, then 60 chunks in three seconds.
        let at = (T0 + second) * 1000;
        let mut page = request(ip("198.51.100.30"), at, 200, "/api/v1/reports");
        page.referer = Some(Cow::Borrowed(b"https://shop.example.com/app/reports"));
        extra.push((at, page));
        for n in 0..60 {
            let at = at + 50 + n * 50;
            let mut chunk = request(ip("198.51.100.30"), at, 200, CHUNKS[n as usize % 8]);
            chunk.referer = Some(Cow::Borrowed(b"https://shop.example.com/app/reports"));
            extra.push((at, chunk));
        }
        // A scraper asking for 61 pages itself in the same 10 s.
        for n in 0..61 {
            extra.push((
                at + n * 160,
                request(ip("198.51.100.31"), at + n * 160, 200, "/products/7"),
            ));
        }
    }
    let incidents = with_background(extra);
    assert_eq!(
        entities_of(&incidents, "rate-spike-ip"),
        vec!["198.51.100.31"]
    );
}
