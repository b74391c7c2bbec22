//! The one message a flushed group becomes: for Slack the full incident message when the
//! group holds one event, otherwise a digest listing them ("37 new incidents from
//! scanner-ip: …"); for digest webhooks a JSON object carrying every event.

use serde_json::{json, Value};

use super::notice::Notice;
use super::slack::{self, escape, truncate, MAX_SECTION_CHARS};
use crate::config::{AlertChannel, ChannelKind};
use crate::detect::Severity;
use crate::store::{Digest, HeldAlert};

/// Members listed by name in a Slack digest; the rest are counted.
const LISTED: usize = 20;

fn severity_rank(name: &str) -> Option<Severity> {
    Severity::parse(name)
}

/// The highest severity among the held alerts.
fn highest(held: &[HeldAlert]) -> String {
    held.iter()
        .filter_map(|h| severity_rank(&h.severity))
        .max()
        .unwrap_or(Severity::Low)
        .as_str()
        .into()
}

/// "37 new incidents, 2 escalated from scanner-ip".
fn headline(notices: &[Notice], group_key: &str) -> String {
    let count = |event: &str| notices.iter().filter(|n| n.event == event).count();
    let mut parts = Vec::new();
    for (event, word) in [
        ("opened", "new"),
        ("escalated", "escalated"),
        ("closed", "closed"),
        (super::worker::ONGOING, "still open"),
    ] {
        let n = count(event);
        if n > 0 {
            let noun = if parts.is_empty() {
                if n == 1 {
                    " incident"
                } else {
                    " incidents"
                }
            } else {
                ""
            };
            parts.push(format!("{n} {word}{noun}"));
        }
    }
    let first = notices
        .iter()
        .map(|n| n.detected_at.as_str())
        .min()
        .unwrap_or("");
    let last = notices
        .iter()
        .map(|n| n.detected_at.as_str())
        .max()
        .unwrap_or("");
    format!(
        "{} from {} (detected {first} to {last})",
        parts.join(", "),
        escape(group_key)
    )
}

fn slack_digest(notices: &[Notice], group_key: &str, public_url: Option<&str>) -> Value {
    let title = headline(notices, group_key);
    let mut lines = Vec::new();
    for notice in notices.iter().take(LISTED) {
        let id = match public_url {
            Some(base) => slack::incident_link(base, &notice.id, &notice.id),
            None => format!("`{}`", escape(&notice.id)),
        };
        let line = format!(
            "• *{}* {} {} {} {} — {}",
            escape(&notice.severity.to_uppercase()),
            escape(&notice.event),
            id,
            escape(&notice.entity_kind),
            escape(&truncate(&notice.entity, 100)),
            escape(&truncate(&notice.summary, 140)),
        );
        lines.push(line);
    }
    let more = notices.len().saturating_sub(LISTED);
    let mut list = lines.join("\n");
    if more > 0 {
        list.push_str(&format!("\n…and {more} more"));
    }
    json!({
        "text": slack::fallback(&title),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&format!("*{title}*"), MAX_SECTION_CHARS)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&list, MAX_SECTION_CHARS)}},
        ]
    })
}

/// The message for a group's held alerts on `channel`.
pub fn build(channel: &AlertChannel, group_key: &str, held: &[HeldAlert]) -> Digest {
    let notices: Vec<Notice> = held
        .iter()
        .filter_map(|h| match Notice::from_payload(&h.payload) {
            Ok(notice) => Some(notice),
            Err(err) => {
                tracing::warn!(alert = h.id, error = %err, "unreadable outbox payload left out of a digest");
                None
            }
        })
        .collect();
    let public_url = channel.public_url.as_deref();
    let payload = match channel.kind {
        ChannelKind::Slack if notices.len() == 1 => slack::message(&notices[0], public_url),
        ChannelKind::Slack => slack_digest(&notices, group_key, public_url),
        ChannelKind::Webhook => json!({
            "event": "digest",
            "channel": channel.name,
            "group": group_key,
            "count": notices.len(),
            "incidents": notices,
        }),
    };
    Digest {
        payload: payload.to_string(),
        severity: highest(held),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::notice::payload;
    use crate::detect::{incident_id, Incident, Score, Status};
    use crate::event::{EntityKind, Timestamp};
    use crate::store::EventKind;

    fn held(n: u32, severity: Severity) -> HeldAlert {
        let start = Timestamp(1_700_000_000_000_000_000 + i64::from(n) * 1_000_000_000);
        let entity = format!("203.0.113.{n}");
        let incident = Incident {
            id: incident_id("scanner-ip", &entity, start),
            detector: "scanner-ip".into(),
            kind: "scanner".into(),
            severity,
            entity_kind: EntityKind::Ip,
            entity,
            started_at: start,
            detected_at: start,
            last_seen: start,
            count: 30,
            score: Score {
                observed: 30.0,
                expected: 1.0,
                p_value: None,
            },
            summary: "asked for /<!channel>".into(),
            status: Status::Open,
            evidence: Vec::new(),
            explain: Default::default(),
            related: Vec::new(),
        };
        HeldAlert {
            id: i64::from(n),
            event: "opened".into(),
            severity: severity.as_str().into(),
            payload: payload(&incident, EventKind::Opened),
        }
    }

    #[test]
    fn a_burst_becomes_one_slack_digest_within_limits() {
        let channel = AlertChannel::new("chat", ChannelKind::Slack, "http://127.0.0.1:1/");
        let burst: Vec<HeldAlert> = (0..37)
            .map(|n| {
                held(
                    n,
                    if n == 5 {
                        Severity::High
                    } else {
                        Severity::Medium
                    },
                )
            })
            .collect();
        let digest = build(&channel, "scanner-ip", &burst);
        assert_eq!(digest.severity, "high");
        let message: Value = serde_json::from_str(&digest.payload).unwrap();
        let title = message["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            title.starts_with("*37 new incidents from scanner-ip"),
            "{title}"
        );
        let list = message["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(list.lines().count(), LISTED + 1);
        assert!(list.ends_with("…and 17 more"), "{list}");
        assert!(!list.contains("<!channel>"), "{list}");
        assert!(list.chars().count() <= MAX_SECTION_CHARS);
    }

    #[test]
    fn a_single_event_gets_the_full_message_and_webhooks_get_every_event() {
        let slack = AlertChannel::new("chat", ChannelKind::Slack, "http://127.0.0.1:1/");
        let one = [held(1, Severity::Medium)];
        let message: Value =
            serde_json::from_str(&build(&slack, "scanner-ip", &one).payload).unwrap();
        assert!(
            message["blocks"].as_array().unwrap().len() >= 3,
            "{message}"
        );

        let webhook = AlertChannel::new("soc", ChannelKind::Webhook, "http://127.0.0.1:1/");
        let burst: Vec<HeldAlert> = (0..3).map(|n| held(n, Severity::Low)).collect();
        let body: Value =
            serde_json::from_str(&build(&webhook, "scanner-ip", &burst).payload).unwrap();
        assert_eq!(body["event"], "digest");
        assert_eq!(body["count"], 3);
        assert_eq!(body["incidents"][2]["entity"], "203.0.113.2");
        assert_eq!(body["incidents"][0]["event"], "opened");
    }
}
