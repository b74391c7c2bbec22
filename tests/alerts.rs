//! Alert delivery against real HTTP receivers on 127.0.0.1: outages, server errors,
//! `Retry-After`, hanging receivers, refusals, `max_age`, Slack escaping and digests, and two
//! alerters sharing one PostgreSQL outbox. Every incident goes in through the store exactly
//! as the daemon writes it: with its outbox rows, in one transaction.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::receiver::{eventually, free_port, python_verifies_all, Receiver, Reply};
use common::{incident, TestDb};
use gatewatch::alert::{Alerter, Routes, WorkerSettings};
use gatewatch::config::{AlertChannel, ChannelKind};
use gatewatch::detect::{Evidence, Incident, IncidentEvent, Severity, Status};
use gatewatch::event::{EntityKind, Timestamp};
use gatewatch::store::{
    AlertQuery, AlertRecord, AlertRouter, EventKind, Router, Sequenced, Store, StoreWriter,
    WriterSettings,
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WRONG_SECRET: &str = "whsec_c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1yaWdodC1vbmU=";
const PATIENCE: Duration = Duration::from_secs(60);

/// A channel with test-sized timings: attempts time out after 1 s, retries wait at most 1 s.
fn channel(name: &str, kind: ChannelKind, url: &str) -> AlertChannel {
    let mut channel = AlertChannel::new(name, kind, url);
    channel.timeout = Duration::from_secs(1);
    channel.connect_timeout = Duration::from_millis(500);
    channel.backoff_max = Duration::from_secs(1);
    channel.group_wait = Duration::from_millis(300);
    channel.group_interval = Duration::from_secs(2);
    if kind == ChannelKind::Webhook {
        channel.secrets = vec![gatewatch::alert::signing::Secret::parse(SECRET).unwrap()];
    }
    channel
}

/// An alerter over a store, on a runtime of its own.
struct Running {
    runtime: tokio::runtime::Runtime,
    store: Store,
    routes: Routes,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    fn start(url: &str, channels: Vec<AlertChannel>) -> Running {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = runtime.block_on(Store::open(url)).unwrap();
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let settings = WorkerSettings {
            poll: Duration::from_millis(50),
            ..WorkerSettings::default()
        };
        let alerter = Alerter::new(store.clone(), channels.clone(), settings);
        let task = runtime.spawn(alerter.run(stopping));
        Running {
            runtime,
            store,
            routes: Routes::new(channels),
            stop,
            task: Some(task),
        }
    }

    /// Stores incidents with their outbox rows for `kind`, as the store writer does.
    fn queue(&self, incidents: &[Incident], kind: EventKind) {
        let alerts: Vec<_> = incidents
            .iter()
            .flat_map(|i| self.routes.route(i, kind))
            .collect();
        self.runtime
            .block_on(self.store.write_incidents(incidents, &alerts))
            .unwrap();
    }

    fn records(&self, channel: &str) -> Vec<AlertRecord> {
        self.runtime
            .block_on(self.store.list_alerts(&AlertQuery {
                channel: Some(channel.into()),
                limit: 10_000,
                ..AlertQuery::default()
            }))
            .unwrap()
    }

    fn count(&self, channel: &str, state: &str) -> usize {
        self.records(channel)
            .iter()
            .filter(|r| r.state == state)
            .count()
    }

    fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            self.runtime.block_on(task).unwrap().unwrap();
        }
    }
}

fn incidents(n: usize, detector: &str) -> Vec<Incident> {
    (0..n)
        .map(|i| {
            let mut incident = incident(
                detector,
                EntityKind::Ip,
                &format!("198.51.100.{i}"),
                Timestamp(1_764_590_400_000_000_000 + i as i64 * 1_000_000_000),
                30,
            );
            incident.status = Status::Open;
            incident
        })
        .collect()
}

/// How often each webhook-id was answered 2xx.
fn delivered_ids(receiver: &Receiver) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for r in receiver.delivered() {
        *ids.entry(r.id).or_insert(0) += 1;
    }
    ids
}

#[test]
fn a_receiver_refusing_connections_for_20_seconds_gets_every_event_once() {
    let db = TestDb::sqlite();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let running = Running::start(&db.url, vec![channel("soc", ChannelKind::Webhook, &url)]);
    let found = incidents(10, "scanner-ip");
    running.queue(&found, EventKind::Opened);
    running.queue(&found, EventKind::Closed);
    std::thread::sleep(Duration::from_secs(20));
    let waiting = running.records("soc");
    assert_eq!(waiting.len(), 20);
    assert!(waiting.iter().all(|r| r.state == "pending"), "{waiting:?}");
    assert!(
        waiting.iter().all(|r| r.attempts >= 2),
        "retried while refused"
    );
    assert!(waiting
        .iter()
        .all(|r| r.last_error.as_deref().unwrap_or("").contains("connect")));

    let receiver = Receiver::start_on(port, Vec::new());
    eventually("every event delivered", PATIENCE, || {
        running.count("soc", "sent") == 20
    });
    running.stop();
    let ids = delivered_ids(&receiver);
    assert_eq!(ids.len(), 20, "one webhook-id per incident event");
    assert!(
        ids.values().all(|n| *n == 1),
        "no webhook-id answered 2xx twice: {ids:?}"
    );
    let delivered = receiver.delivered();
    let events: Vec<String> = delivered
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["event"].to_string())
        .collect();
    assert_eq!(events.iter().filter(|e| *e == "\"opened\"").count(), 10);
    assert_eq!(events.iter().filter(|e| *e == "\"closed\"").count(), 10);
    match python_verifies_all(SECRET, &delivered) {
        Some(ok) => {
            assert!(ok, "Python's hmac rejects a signature");
            assert_eq!(python_verifies_all(WRONG_SECRET, &delivered), Some(false));
        }
        None => common::say_skipped("signature check by python3 (not installed)"),
    }
}

#[test]
fn errors_rate_limits_hangs_refusals_and_max_age_each_end_as_they_should() {
    let db = TestDb::sqlite();
    let errors = Receiver::start(vec![
        Reply::Status(500),
        Reply::Status(502),
        Reply::Status(503),
    ]);
    let limited = Receiver::start(vec![Reply::RetryAfter(429, 3)]);
    let hanging = Receiver::start(vec![Reply::Hang(Duration::from_secs(5))]);
    let refusing = Receiver::start(vec![Reply::Body(404, "no such hook".into())]);
    let down = Receiver::start(vec![Reply::Status(503); 100]);
    let mut dying = channel("dying", ChannelKind::Webhook, &down.url());
    dying.max_age = Duration::from_secs(2);
    let running = Running::start(
        &db.url,
        vec![
            channel("errors", ChannelKind::Webhook, &errors.url()),
            channel("limited", ChannelKind::Webhook, &limited.url()),
            channel("hanging", ChannelKind::Webhook, &hanging.url()),
            channel("refusing", ChannelKind::Webhook, &refusing.url()),
            dying,
        ],
    );
    running.queue(&incidents(1, "scanner-ip"), EventKind::Opened);

    eventually("all settled", PATIENCE, || {
        ["errors", "limited", "hanging"]
            .iter()
            .all(|c| running.count(c, "sent") == 1)
            && running.count("refusing", "failed") == 1
            && running.count("dying", "dead") == 1
    });

    let statuses: Vec<u16> = errors.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 502, 503, 200]);
    assert_eq!(running.records("errors")[0].attempts, 4);

    let tries = limited.received();
    assert_eq!(tries.len(), 2);
    let waited = tries[1].at - tries[0].at;
    assert!(waited >= Duration::from_secs(3), "retried after {waited:?}");

    let record = &running.records("hanging")[0];
    assert_eq!(record.attempts, 2, "{record:?}");
    assert_eq!(hanging.received().len(), 2);

    let refused = &running.records("refusing")[0];
    assert_eq!(refused.last_status, Some(404));
    assert_eq!(refused.response.as_deref(), Some("no such hook"));
    assert_eq!(refused.attempts, 1, "a 404 is not retried");
    let retried = running
        .runtime
        .block_on(running.store.retry_alerts(Some(refused.id), 0))
        .unwrap();
    assert_eq!(retried, 1);
    eventually("sent after `alerts retry`", PATIENCE, || {
        running.count("refusing", "sent") == 1
    });

    let dead = &running.records("dying")[0];
    assert_eq!(dead.last_status, Some(503));
    assert!(dead.last_error.as_deref().unwrap().contains("max_age"));
    assert!(down.received().len() >= 2);
    running.stop();
}

fn hostile(n: usize, evidence_lines: usize) -> Vec<Incident> {
    let line = r#"203.0.113.7 - - [01/Dec/2026:10:00:00 +0000] "GET /<!channel>/<@U123>/<https://evil.example|click> HTTP/1.1" 404 0 "-" "curl ```x``` & more""#;
    incidents(n, "scanner-ip")
        .into_iter()
        .map(|mut incident| {
            incident.summary = "asked for /<!channel> with agent ```".into();
            incident.evidence = (0..evidence_lines)
                .map(|_| Evidence::new(incident.started_at, line.as_bytes()))
                .collect();
            incident
        })
        .collect()
}

fn texts(message: &serde_json::Value) -> Vec<String> {
    let mut out = vec![message["text"].as_str().unwrap_or("").to_owned()];
    for block in message["blocks"].as_array().unwrap() {
        out.extend(block["text"]["text"].as_str().map(str::to_owned));
        for part in ["fields", "elements"] {
            for item in block[part].as_array().into_iter().flatten() {
                out.extend(item["text"].as_str().map(str::to_owned));
            }
        }
    }
    out
}

#[test]
fn slack_gets_escaped_digests_within_block_kit_limits_at_most_one_per_second() {
    let db = TestDb::sqlite();
    let slack = Receiver::start(Vec::new());
    let running = Running::start(
        &db.url,
        vec![channel("chat", ChannelKind::Slack, &slack.url())],
    );
    // A burst of 37 from one detector, and one incident with 1,000 hostile evidence lines
    // from another.
    running.queue(&hostile(37, 1), EventKind::Opened);
    let mut big = hostile(1, 1000);
    big[0].detector = "rate-spike-ip".into();
    big[0].id = gatewatch::detect::incident_id("rate-spike-ip", &big[0].entity, big[0].started_at);
    big[0].severity = Severity::High;
    running.queue(&big, EventKind::Opened);
    eventually("two messages", PATIENCE, || slack.delivered().len() == 2);
    // More of the first group soon after: they wait for its group_interval.
    running.queue(&hostile(45, 1)[37..], EventKind::Opened);
    eventually("the group's next digest", PATIENCE, || {
        slack.delivered().len() == 3
    });
    running.stop();

    let messages = slack.delivered();
    assert!(
        messages[1].at - messages[0].at >= Duration::from_millis(990),
        "Slack got two messages within a second"
    );
    let bodies: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    let digest = bodies
        .iter()
        .find(|b| {
            b["text"]
                .as_str()
                .unwrap()
                .starts_with("37 new incidents from scanner-ip")
        })
        .expect("one digest for the burst");
    assert!(texts(digest).join("\n").contains("…and 17 more"));
    let last = &bodies[2];
    assert!(
        last["text"]
            .as_str()
            .unwrap()
            .starts_with("8 new incidents from scanner-ip"),
        "{last}"
    );
    assert!(
        messages[2].at - messages[0].at >= Duration::from_secs(2),
        "group_interval"
    );
    assert_eq!(
        running_records_digested(&db.url),
        46,
        "every held event went out in one of the three messages"
    );
    // Pruning everything takes the digests too: they belong to no incident. (A store write
    // the stopped alerter had under way may still land just after it stopped: prune again.)
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(Store::open(&db.url)).unwrap();
    eventually("every alert record pruned", PATIENCE, || {
        runtime.block_on(async {
            store.prune(Timestamp(i64::MAX), true).await.unwrap();
            let left = store
                .list_alerts(&AlertQuery {
                    limit: 10_000,
                    ..AlertQuery::default()
                })
                .await
                .unwrap();
            left.is_empty()
        })
    });

    for body in &bodies {
        assert!(body["blocks"].as_array().unwrap().len() <= 50);
        for text in texts(body) {
            assert!(
                text.chars().count() <= 3000,
                "{} chars",
                text.chars().count()
            );
            assert!(!text.contains("<!channel>"), "{text}");
            assert!(!text.contains("<@U123>"), "{text}");
            assert!(!text.contains("<https://evil"), "{text}");
        }
    }
    let single = bodies
        .iter()
        .find(|b| b["text"].as_str().unwrap().contains("rate-spike-ip"))
        .expect("the lone incident's full message");
    let evidence = texts(single)
        .into_iter()
        .find(|t| t.starts_with("```"))
        .expect("evidence in a code block");
    assert_eq!(
        evidence.matches("```").count(),
        2,
        "the agent cannot close the block"
    );
    assert!(evidence.contains("&lt;!channel&gt;"));
    assert!(evidence.contains("more lines"));
}

fn running_records_digested(url: &str) -> usize {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(url).await.unwrap();
        store
            .list_alerts(&AlertQuery {
                state: Some("digested".into()),
                channel: None,
                limit: 10_000,
            })
            .await
            .unwrap()
            .len()
    })
}

#[test]
fn the_store_writer_queues_each_event_kind_with_its_incident() {
    let db = TestDb::sqlite();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut soc = channel("soc", ChannelKind::Webhook, "http://127.0.0.1:9/");
    soc.min_severity = Severity::Medium;
    let chat = channel("chat", ChannelKind::Slack, "http://127.0.0.1:9/");
    let router = Router(std::sync::Arc::new(Routes::new(vec![soc, chat])));
    let store = runtime.block_on(Store::open(&db.url)).unwrap();
    let writer = runtime.block_on(async {
        StoreWriter::spawn(
            store.clone(),
            WriterSettings {
                alerts: Some(router),
                ..WriterSettings::default()
            },
        )
    });
    let mut found = incidents(2, "scanner-ip");
    found[1].severity = Severity::Low;
    let mut escalated = found[0].clone();
    escalated.severity = Severity::High;
    let mut closed = escalated.clone();
    closed.status = Status::Closed;
    let events = [
        IncidentEvent::Opened(found[0].clone()),
        IncidentEvent::Opened(found[1].clone()),
        IncidentEvent::Escalated(escalated),
        IncidentEvent::Closed(closed),
    ];
    let sender = writer.sender();
    runtime.block_on(async {
        for (i, event) in events.into_iter().enumerate() {
            sender
                .send(Sequenced {
                    seq: i as u64 + 1,
                    event,
                })
                .await
                .unwrap();
        }
    });
    drop(sender);
    let report = runtime.block_on(writer.finish());
    assert!(report.complete(), "{report:?}");
    let rows = runtime
        .block_on(store.list_alerts(&AlertQuery {
            limit: 100,
            ..AlertQuery::default()
        }))
        .unwrap();
    let mut seen: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.channel.clone(),
                r.incident_id.clone().unwrap(),
                r.event.clone(),
                r.state.clone(),
            )
        })
        .collect();
    seen.sort();
    let (a, b) = (found[0].id.clone(), found[1].id.clone());
    let row = |c: &str, id: &str, e: &str, s: &str| (c.into(), id.into(), e.into(), s.into());
    let mut expected = vec![
        row("chat", &a, "opened", "held"),
        row("chat", &a, "escalated", "held"),
        row("chat", &b, "opened", "held"),
        row("soc", &a, "opened", "pending"),
        row("soc", &a, "escalated", "pending"),
        row("soc", &a, "closed", "pending"),
    ];
    expected.sort();
    assert_eq!(
        seen, expected,
        "the low incident is below the webhook's minimum"
    );
    let stored = runtime
        .block_on(store.list_alerts(&AlertQuery {
            channel: Some("soc".into()),
            limit: 100,
            ..AlertQuery::default()
        }))
        .unwrap();
    let escalation = stored.iter().find(|r| r.event == "escalated").unwrap();
    assert_eq!(escalation.severity, "high");
}

#[test]
fn two_alerters_sharing_one_postgres_outbox_send_each_alert_once() {
    let Some(db) = TestDb::postgres("two_alerters_sharing_one_postgres_outbox") else {
        return;
    };
    let receiver = Receiver::start(Vec::new());
    let channels = vec![channel("soc", ChannelKind::Webhook, &receiver.url())];
    let first = Running::start(&db.url, channels.clone());
    let second = Running::start(&db.url, channels);
    // Both instances saw the same incidents (say, both read the same logs): their rows
    // collide on the deduplication key, so each alert is queued once.
    let found = incidents(150, "scanner-ip");
    first.queue(&found, EventKind::Opened);
    second.queue(&found, EventKind::Opened);
    first.queue(&found[..75], EventKind::Closed);
    second.queue(&found[..75], EventKind::Closed);
    eventually("all delivered", PATIENCE, || {
        first.count("soc", "sent") == 225
    });
    std::thread::sleep(Duration::from_millis(500));
    first.stop();
    second.stop();
    let ids = delivered_ids(&receiver);
    assert_eq!(ids.len(), 225);
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert_eq!(receiver.received().len(), 225, "no request was repeated");
}

#[test]
fn an_incident_still_open_after_repeat_interval_is_mentioned_again_until_it_closes() {
    let db = TestDb::sqlite();
    let slack = Receiver::start(Vec::new());
    let mut chat = channel("chat", ChannelKind::Slack, &slack.url());
    chat.repeat_interval = Duration::from_secs(1);
    chat.group_interval = Duration::from_millis(500);
    let running = Running::start(&db.url, vec![chat]);
    let mut found = incidents(1, "scanner-ip");
    running.queue(&found, EventKind::Opened);
    eventually("a reminder", PATIENCE, || slack.delivered().len() >= 2);
    let reminder: serde_json::Value = serde_json::from_str(&slack.delivered()[1].body).unwrap();
    assert!(
        reminder["text"].as_str().unwrap().contains("ongoing"),
        "{reminder}"
    );
    // Closed: no more reminders.
    found[0].status = Status::Closed;
    running
        .runtime
        .block_on(running.store.upsert_incidents(&found))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let settled = slack.delivered().len();
    std::thread::sleep(Duration::from_secs(3));
    running.stop();
    assert!(
        slack.delivered().len() <= settled + 1,
        "reminders went on after the close"
    );
    let gaps: Vec<Duration> = slack
        .delivered()
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(990)),
        "{gaps:?}"
    );
}

#[test]
fn slack_without_digests_gets_one_block_kit_message_per_event() {
    let db = TestDb::sqlite();
    let slack = Receiver::start(Vec::new());
    let mut chat = channel("chat", ChannelKind::Slack, &slack.url());
    chat.digest = false;
    let running = Running::start(&db.url, vec![chat]);
    running.queue(&hostile(2, 3), EventKind::Opened);
    eventually("two messages", PATIENCE, || slack.delivered().len() == 2);
    running.stop();
    for message in slack.delivered() {
        let body: serde_json::Value = serde_json::from_str(&message.body).unwrap();
        assert!(body["blocks"].as_array().unwrap().len() >= 3, "{body}");
        assert!(body["text"].as_str().unwrap().contains("opened"), "{body}");
        assert!(!message.body.contains("<!channel>"));
        assert!(message.signature.is_none(), "Slack is not signed");
    }
}
