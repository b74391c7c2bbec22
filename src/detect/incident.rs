//! The Incident contract: one per (detector, entity) episode, printed, stored and alerted.

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::event::{EntityKind, Timestamp};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What the detector measured when it decided.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Score {
    pub observed: f64,
    pub expected: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
}

/// A sample line kept with the incident (length-capped, lossily decoded, NUL-free: PostgreSQL
/// text cannot hold NUL, and the stored copy must equal the printed one).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    #[serde(serialize_with = "rfc3339_millis")]
    pub ts: Timestamp,
    pub line: String,
}

/// Longest evidence line kept, in bytes.
pub const MAX_EVIDENCE_LINE: usize = 2048;

impl Evidence {
    pub fn new(ts: Timestamp, line: &[u8]) -> Self {
        let cut = &line[..line.len().min(MAX_EVIDENCE_LINE)];
        let line = String::from_utf8_lossy(cut);
        let line = if line.contains('\0') {
            line.replace('\0', "\u{FFFD}")
        } else {
            line.into_owned()
        };
        Evidence { ts, line }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Status::Open, Status::Closed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incident {
    pub id: String,
    pub detector: String,
    pub kind: String,
    pub severity: Severity,
    pub entity_kind: EntityKind,
    pub entity: String,
    #[serde(serialize_with = "rfc3339_millis")]
    pub started_at: Timestamp,
    #[serde(serialize_with = "rfc3339_millis")]
    pub detected_at: Timestamp,
    #[serde(serialize_with = "rfc3339_millis")]
    pub last_seen: Timestamp,
    /// Requests from the entity during the episode.
    pub count: u64,
    pub score: Score,
    pub summary: String,
    pub status: Status,
    pub evidence: Vec<Evidence>,
    /// Why it fired and what the entity did during the episode.
    pub explain: Explain,
    /// Ids of incidents of the same actor in the same episode from other detectors.
    pub related: Vec<String>,
}

/// One value and how often it was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Tally {
    pub value: String,
    pub count: u64,
}

/// What an analyst asks first: which rule fired, and what the entity was doing.
/// The tallies cover the episode's requests, from detection to `last_seen` (most frequent
/// first; approximate beyond `MAX_TALLIES` distinct values).
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Explain {
    /// The detector's rule with its thresholds, in words.
    pub rule: String,
    pub top_paths: Vec<Tally>,
    pub statuses: Vec<Tally>,
    pub user_agents: Vec<Tally>,
    /// Upstream service / router (or upstream address when the format has no name).
    pub upstreams: Vec<Tally>,
    /// The episode's requests per minute, `[minute start (Unix seconds), count]`, oldest
    /// first (at most `MAX_TIMELINE_MINUTES`, the newest kept).
    pub timeline: Vec<(i64, u64)>,
}

/// Minutes of an incident's timeline kept.
pub const MAX_TIMELINE_MINUTES: usize = 240;

/// Values kept per tally list.
pub const MAX_TALLIES: usize = 5;

/// Stable across runs and instances, so two writers of one episode agree on its key.
pub fn incident_id(detector: &str, entity: &str, started_at: Timestamp) -> String {
    let mut hasher = Sha256::new();
    hasher.update(detector.as_bytes());
    hasher.update([0]);
    hasher.update(entity.as_bytes());
    hasher.update([0]);
    hasher.update(started_at.nanos().to_be_bytes());
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339_millis<S: Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&ts.to_rfc3339_millis())
}

/// A change in an incident's life, in event-time order.
#[derive(Clone, Debug, PartialEq)]
pub enum IncidentEvent {
    Opened(Incident),
    /// Severity escalated while open.
    Escalated(Incident),
    Closed(Incident),
}

impl IncidentEvent {
    pub fn incident(&self) -> &Incident {
        match self {
            IncidentEvent::Opened(i) | IncidentEvent::Escalated(i) | IncidentEvent::Closed(i) => i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = incident_id("rate-spike-ip", "203.0.113.7", Timestamp(1));
        assert_eq!(a, incident_id("rate-spike-ip", "203.0.113.7", Timestamp(1)));
        assert_ne!(a, incident_id("rate-spike-ip", "203.0.113.7", Timestamp(2)));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn evidence_is_capped_and_lossy() {
        let line = vec![0xFFu8; MAX_EVIDENCE_LINE + 10];
        let evidence = Evidence::new(Timestamp(0), &line);
        assert_eq!(evidence.line.chars().count(), MAX_EVIDENCE_LINE);
    }

    #[test]
    fn evidence_has_no_nul() {
        let evidence = Evidence::new(Timestamp(0), b"GET /a\0b");
        assert_eq!(evidence.line, "GET /a\u{FFFD}b");
    }
}
