//! Which channels an incident event goes to, and as which outbox rows: the channel's
//! severity, detector and event filters, the deduplication key (one row per incident, event
//! and channel — per severity for escalations) and the digest group.

use crate::config::{AlertChannel, GroupBy};
use crate::detect::Incident;
use crate::store::{AlertRouter, EventKind, NewAlert};

use super::notice::payload;

/// Routes incident events to the configured channels.
pub struct Routes {
    channels: Vec<AlertChannel>,
}

impl Routes {
    pub fn new(channels: Vec<AlertChannel>) -> Routes {
        Routes { channels }
    }
}

/// Unique per channel: what a second copy of the same alert collides on.
pub fn dedup_key(incident: &Incident, kind: EventKind) -> String {
    match kind {
        // A second escalation is news; a repeat of the same one is not.
        EventKind::Escalated => format!("{}/escalated/{}", incident.id, incident.severity.as_str()),
        _ => format!("{}/{}", incident.id, kind.as_str()),
    }
}

/// The group an incident belongs to on a channel: its values of the channel's `group_by`.
pub fn group_key(channel: &AlertChannel, incident: &Incident) -> String {
    let parts: Vec<&str> = channel
        .group_by
        .iter()
        .map(|by| match by {
            GroupBy::Detector => incident.detector.as_str(),
            GroupBy::Kind => incident.kind.as_str(),
            GroupBy::Severity => incident.severity.as_str(),
            GroupBy::Entity => incident.entity.as_str(),
        })
        .collect();
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join("/")
    }
}

/// Whether a channel wants this event of this incident.
pub fn wants(channel: &AlertChannel, incident: &Incident, kind: EventKind) -> bool {
    channel.events.contains(kind)
        && incident.severity >= channel.min_severity
        && channel
            .detectors
            .iter()
            .any(|pattern| pattern.matches(&incident.detector))
}

impl AlertRouter for Routes {
    fn route(&self, incident: &Incident, kind: EventKind) -> Vec<NewAlert> {
        let mut body: Option<String> = None;
        self.channels
            .iter()
            .filter(|channel| wants(channel, incident, kind))
            .map(|channel| NewAlert {
                channel: channel.name.clone(),
                dedup_key: dedup_key(incident, kind),
                incident_id: Some(incident.id.clone()),
                event: kind.as_str().into(),
                severity: incident.severity.as_str().into(),
                group_key: group_key(channel, incident),
                payload: body.get_or_insert_with(|| payload(incident, kind)).clone(),
                held: channel.digest,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChannelKind;
    use crate::detect::{incident_id, Score, Severity, Status};
    use crate::event::{EntityKind, Timestamp};

    fn incident(detector: &str, severity: Severity) -> Incident {
        let start = Timestamp(1_700_000_000_000_000_000);
        Incident {
            id: incident_id(detector, "198.51.100.7", start),
            detector: detector.into(),
            kind: "scanner".into(),
            severity,
            entity_kind: EntityKind::Ip,
            entity: "198.51.100.7".into(),
            started_at: start,
            detected_at: start,
            last_seen: start,
            count: 40,
            score: Score {
                observed: 40.0,
                expected: 2.0,
                p_value: None,
            },
            summary: "40 requests".into(),
            status: Status::Open,
            evidence: Vec::new(),
            explain: Default::default(),
            related: Vec::new(),
        }
    }

    #[test]
    fn channels_filter_by_severity_detector_and_event() {
        let mut soc = AlertChannel::new("soc", ChannelKind::Webhook, "http://127.0.0.1:1/");
        soc.min_severity = Severity::Medium;
        soc.detectors = vec![glob::Pattern::new("scanner-*").unwrap()];
        let slack = AlertChannel::new("chat", ChannelKind::Slack, "http://127.0.0.1:2/");
        let routes = Routes::new(vec![soc, slack]);

        let low = incident("scanner-ip", Severity::Low);
        let rows = routes.route(&low, EventKind::Opened);
        assert_eq!(rows.len(), 1, "below the webhook's minimum");
        assert_eq!(rows[0].channel, "chat");
        assert!(rows[0].held, "Slack gets digests");

        let high = incident("scanner-ip", Severity::High);
        let rows = routes.route(&high, EventKind::Closed);
        assert_eq!(rows.len(), 1, "Slack does not get closes by default");
        assert_eq!(rows[0].channel, "soc");
        assert!(!rows[0].held);
        assert_eq!(rows[0].dedup_key, format!("{}/closed", high.id));
        let body: serde_json::Value = serde_json::from_str(&rows[0].payload).unwrap();
        assert_eq!(body["event"], "closed");
        assert_eq!(body["id"], high.id.as_str());

        let other = incident("rate-spike-ip", Severity::Critical);
        let rows = routes.route(&other, EventKind::Opened);
        assert_eq!(
            rows.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>(),
            ["chat"]
        );
        assert_eq!(rows[0].group_key, "rate-spike-ip");
    }

    #[test]
    fn each_escalation_level_is_its_own_alert() {
        let medium = incident("scanner-ip", Severity::Medium);
        let high = incident("scanner-ip", Severity::High);
        assert_ne!(
            dedup_key(&medium, EventKind::Escalated),
            dedup_key(&high, EventKind::Escalated)
        );
        assert_eq!(
            dedup_key(&medium, EventKind::Opened),
            dedup_key(&high, EventKind::Opened),
            "a coalesced open at another severity is the same alert"
        );
    }
}
