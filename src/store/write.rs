//! Writes: incident upserts (idempotent across instances), triage, pruning.

use sqlx::{Any, Transaction};

use super::ip_key::entity_range;
use super::outbox::{insert_alerts, NewAlert};
use super::record::TriageState;
use super::{Store, StoreError};
use crate::clock::wall_clock;
use crate::detect::Incident;
use crate::event::Timestamp;

/// Every column merges monotonically, so two instances writing one episode in any order
/// (or one instance replaying a batch after a retry) converge on the same row: the highest
/// count, severity and peak score, the widest time span, and the status of the newest view.
const UPSERT_INCIDENT: &str = "\
INSERT INTO incidents (id, detector, kind, severity, severity_rank, entity_kind, entity, ip_lo,
    ip_hi, started_at_ns, detected_at_ns, last_seen_ns, count, score_observed, score_expected,
    score_p_value, summary, status, stored_at_wall_ns, updated_at_wall_ns, explain, related)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
    CASE WHEN $20 = 1 THEN $16 ELSE NULL END, $17, $18, $19, $19, $21, $22)
ON CONFLICT (id) DO UPDATE SET
    severity = CASE WHEN excluded.severity_rank > incidents.severity_rank
        THEN excluded.severity ELSE incidents.severity END,
    severity_rank = CASE WHEN excluded.severity_rank > incidents.severity_rank
        THEN excluded.severity_rank ELSE incidents.severity_rank END,
    detected_at_ns = CASE WHEN excluded.detected_at_ns < incidents.detected_at_ns
        THEN excluded.detected_at_ns ELSE incidents.detected_at_ns END,
    last_seen_ns = CASE WHEN excluded.last_seen_ns > incidents.last_seen_ns
        THEN excluded.last_seen_ns ELSE incidents.last_seen_ns END,
    count = CASE WHEN excluded.count > incidents.count
        THEN excluded.count ELSE incidents.count END,
    score_observed = CASE WHEN excluded.score_observed >= incidents.score_observed
        THEN excluded.score_observed ELSE incidents.score_observed END,
    score_expected = CASE WHEN excluded.score_observed >= incidents.score_observed
        THEN excluded.score_expected ELSE incidents.score_expected END,
    score_p_value = CASE WHEN excluded.score_observed >= incidents.score_observed
        THEN excluded.score_p_value ELSE incidents.score_p_value END,
    summary = CASE WHEN excluded.score_observed >= incidents.score_observed
        THEN excluded.summary ELSE incidents.summary END,
    status = CASE
        WHEN excluded.last_seen_ns > incidents.last_seen_ns THEN excluded.status
        WHEN excluded.last_seen_ns = incidents.last_seen_ns AND excluded.status = 'closed'
            THEN excluded.status
        ELSE incidents.status END,
    explain = CASE WHEN excluded.last_seen_ns >= incidents.last_seen_ns
        THEN excluded.explain ELSE incidents.explain END,
    related = CASE WHEN excluded.last_seen_ns >= incidents.last_seen_ns
        THEN excluded.related ELSE incidents.related END,
    updated_at_wall_ns = excluded.updated_at_wall_ns";

/// Evidence of the newest view wins (later anomalous lines replace ordinary ones); `$5` is
/// that view's `last_seen_ns`, compared after its incident row was merged.
const UPSERT_EVIDENCE: &str = "\
INSERT INTO incident_evidence (incident_id, seq, ts_ns, line) VALUES ($1, $2, $3, $4)
ON CONFLICT (incident_id, seq) DO UPDATE SET ts_ns = excluded.ts_ns, line = excluded.line
WHERE $5 >= (SELECT last_seen_ns FROM incidents WHERE id = $1)";

/// PostgreSQL text cannot hold NUL; the engine already avoids it in evidence, this keeps any
/// other attacker-supplied text (route names, summaries) from failing a whole batch.
fn sql_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn rank(incident: &Incident) -> i64 {
    incident.severity as i64 + 1
}

async fn upsert_one(
    tx: &mut Transaction<'static, Any>,
    incident: &Incident,
    now: i64,
) -> Result<(), StoreError> {
    let (ip_lo, ip_hi) = entity_range(incident.entity_kind, &incident.entity).unzip();
    let count = i64::try_from(incident.count).unwrap_or(i64::MAX);
    sqlx::query(UPSERT_INCIDENT)
        .bind(incident.id.as_str())
        .bind(sql_text(&incident.detector).into_owned())
        .bind(sql_text(&incident.kind).into_owned())
        .bind(incident.severity.as_str())
        .bind(rank(incident))
        .bind(incident.entity_kind.as_str())
        .bind(sql_text(&incident.entity).into_owned())
        .bind(ip_lo)
        .bind(ip_hi)
        .bind(incident.started_at.nanos())
        .bind(incident.detected_at.nanos())
        .bind(incident.last_seen.nanos())
        .bind(count)
        .bind(incident.score.observed)
        .bind(incident.score.expected)
        // Never a NULL f64 parameter: sqlx 0.8's Any driver sends one as float4, PostgreSQL
        // prepares the statement so, and the cached statement then refuses every float8.
        .bind(incident.score.p_value.unwrap_or(0.0))
        .bind(sql_text(&incident.summary).into_owned())
        .bind(incident.status.as_str())
        .bind(now)
        .bind(i64::from(incident.score.p_value.is_some()))
        .bind(sql_text(&json_text(&incident.explain)).into_owned())
        .bind(json_text(&incident.related))
        .execute(&mut **tx)
        .await?;
    for (seq, evidence) in incident.evidence.iter().enumerate() {
        sqlx::query(UPSERT_EVIDENCE)
            .bind(incident.id.as_str())
            .bind(seq as i64)
            .bind(evidence.ts.nanos())
            .bind(sql_text(&evidence.line).into_owned())
            .bind(incident.last_seen.nanos())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Upserts incidents in one transaction: all of them or none.
    pub async fn upsert_incidents(&self, incidents: &[Incident]) -> Result<(), StoreError> {
        self.write_incidents(incidents, &[]).await
    }

    /// Upserts incidents and queues their alerts in one transaction: no alert for an
    /// incident that was not stored, no stored event without its alerts.
    pub async fn write_incidents(
        &self,
        incidents: &[Incident],
        alerts: &[NewAlert],
    ) -> Result<(), StoreError> {
        // Bookkeeping time for `*_wall_ns`; the incident's own times are event time.
        let now = wall_clock().nanos();
        let mut tx = self.pool.begin().await?;
        for incident in incidents {
            upsert_one(&mut tx, incident, now).await?;
        }
        insert_alerts(&mut tx, alerts, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the analyst's verdict; `note` replaces an earlier one when given.
    pub async fn set_triage(
        &self,
        id: &str,
        state: TriageState,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE incidents SET triage = $1, triage_note = COALESCE($2, triage_note), \
             triaged_at_wall_ns = $3 WHERE id = $4",
        )
        .bind(state.as_str())
        .bind(note.map(|n| sql_text(n).into_owned()))
        .bind(wall_clock().nanos())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    /// How many incidents `prune(before, include_triaged)` would delete, and how many
    /// triaged ones (acknowledged, resolved) last seen before `before` it would keep.
    pub async fn prunable(
        &self,
        before: Timestamp,
        include_triaged: bool,
    ) -> Result<(u64, u64), StoreError> {
        let (all, triaged): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN triage <> 'new' THEN 1 ELSE 0 END), 0) \
             FROM incidents WHERE last_seen_ns < $1",
        )
        .bind(before.nanos())
        .fetch_one(&self.pool)
        .await?;
        let (all, triaged) = (all as u64, triaged as u64);
        Ok(if include_triaged {
            (all, 0)
        } else {
            (all - triaged, triaged)
        })
    }

    /// Deletes incidents (and their evidence and finished deliveries) last seen before
    /// `before` (triaged ones only with `include_triaged`: an analyst's work is kept), and
    /// settled digests queued before it; returns how many incidents went.
    pub async fn prune(&self, before: Timestamp, include_triaged: bool) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let doomed = if include_triaged {
            "last_seen_ns < $1"
        } else {
            "last_seen_ns < $1 AND triage = 'new'"
        };
        let old = format!("SELECT id FROM incidents WHERE {doomed}");
        sqlx::query(&format!(
            "DELETE FROM incident_evidence WHERE incident_id IN ({old})"
        ))
        .bind(before.nanos())
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM alert_outbox WHERE state NOT IN ('pending', 'held') \
             AND incident_id IN ({old})"
        ))
        .bind(before.nanos())
        .execute(&mut *tx)
        .await?;
        // Digests belong to no incident: they go by their own age once settled.
        sqlx::query(
            "DELETE FROM alert_outbox WHERE incident_id IS NULL \
             AND state IN ('sent', 'failed', 'dead') AND created_at_wall_ns < $1",
        )
        .bind(before.nanos())
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(&format!("DELETE FROM incidents WHERE {doomed}"))
            .bind(before.nanos())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
