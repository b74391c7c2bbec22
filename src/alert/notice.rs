//! What a channel receives about one incident event: the incident contract plus `event`.
//! Serialized into the outbox with the incident, read back to build Slack messages and
//! digests, so a message says what was stored even if the incident changed since.

use serde::{Deserialize, Serialize};

use crate::detect::Incident;
use crate::store::EventKind;

/// The webhook body for one event: the incident's JSON with `event` added.
pub fn payload(incident: &Incident, kind: EventKind) -> String {
    let mut value = serde_json::to_value(incident).expect("an incident serializes");
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("event".into(), kind.as_str().into());
    }
    value.to_string()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NoticeScore {
    pub observed: f64,
    pub expected: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NoticeEvidence {
    pub ts: String,
    pub line: String,
}

/// An incident event read back from a payload (times stay as their RFC 3339 text).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub event: String,
    pub id: String,
    pub detector: String,
    pub kind: String,
    pub severity: String,
    pub entity_kind: String,
    pub entity: String,
    pub started_at: String,
    pub detected_at: String,
    pub last_seen: String,
    pub count: u64,
    pub score: NoticeScore,
    pub summary: String,
    pub status: String,
    #[serde(default)]
    pub evidence: Vec<NoticeEvidence>,
}

impl Notice {
    pub fn from_payload(payload: &str) -> Result<Notice, serde_json::Error> {
        serde_json::from_str(payload)
    }

    pub fn of(incident: &Incident, kind: EventKind) -> Notice {
        Notice::from_payload(&payload(incident, kind)).expect("a payload reads back")
    }
}
