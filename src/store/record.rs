//! Rows ↔ incidents: the columns selected and how a row becomes a `StoredIncident`.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::StoreError;
use crate::detect::{Evidence, Incident, Score, Severity, Status};
use crate::event::{EntityKind, Timestamp};

/// The analyst's view of an incident, separate from the detector's open/closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TriageState {
    New,
    Acknowledged,
    Resolved,
}

impl TriageState {
    pub fn as_str(self) -> &'static str {
        match self {
            TriageState::New => "new",
            TriageState::Acknowledged => "acknowledged",
            TriageState::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            TriageState::New,
            TriageState::Acknowledged,
            TriageState::Resolved,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Triage {
    pub state: TriageState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Wall-clock time of the last ack/resolve (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// An incident as stored: the contract fields plus triage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredIncident {
    #[serde(flatten)]
    pub incident: Incident,
    pub triage: Triage,
}

pub(super) const INCIDENT_COLUMNS: &str = "id, detector, kind, severity, entity_kind, entity, \
     started_at_ns, detected_at_ns, last_seen_ns, count, score_observed, score_expected, \
     score_p_value, summary, status, triage, triage_note, triaged_at_wall_ns, explain, related";

fn bad(column: &str, value: &str) -> StoreError {
    StoreError::BadRow(format!("{column} = {value:?}"))
}

pub(super) fn incident_from_row(row: &AnyRow) -> Result<StoredIncident, StoreError> {
    let text = |column: &str| row.try_get::<String, _>(column);
    let severity = text("severity")?;
    let entity_kind = text("entity_kind")?;
    let status = text("status")?;
    let triage = text("triage")?;
    let count: i64 = row.try_get("count")?;
    let incident = Incident {
        id: text("id")?,
        detector: text("detector")?,
        kind: text("kind")?,
        severity: Severity::parse(&severity).ok_or_else(|| bad("severity", &severity))?,
        entity_kind: EntityKind::parse(&entity_kind)
            .ok_or_else(|| bad("entity_kind", &entity_kind))?,
        entity: text("entity")?,
        started_at: Timestamp(row.try_get("started_at_ns")?),
        detected_at: Timestamp(row.try_get("detected_at_ns")?),
        last_seen: Timestamp(row.try_get("last_seen_ns")?),
        count: u64::try_from(count).map_err(|_| bad("count", &count.to_string()))?,
        score: Score {
            observed: row.try_get("score_observed")?,
            expected: row.try_get("score_expected")?,
            p_value: row.try_get("score_p_value")?,
        },
        summary: text("summary")?,
        status: Status::parse(&status).ok_or_else(|| bad("status", &status))?,
        evidence: Vec::new(),
        // Rows from before the explanation (`{}`) read as an empty one.
        explain: serde_json::from_str(&text("explain")?).unwrap_or_default(),
        related: serde_json::from_str(&text("related")?).unwrap_or_default(),
    };
    let triaged_at: Option<i64> = row.try_get("triaged_at_wall_ns")?;
    Ok(StoredIncident {
        incident,
        triage: Triage {
            state: TriageState::parse(&triage).ok_or_else(|| bad("triage", &triage))?,
            note: row.try_get("triage_note")?,
            at: triaged_at.map(|ns| Timestamp(ns).to_rfc3339_millis()),
        },
    })
}

pub(super) fn evidence_from_row(row: &AnyRow) -> Result<(String, Evidence), StoreError> {
    Ok((
        row.try_get("incident_id")?,
        Evidence {
            ts: Timestamp(row.try_get("ts_ns")?),
            line: row.try_get("line")?,
        },
    ))
}
