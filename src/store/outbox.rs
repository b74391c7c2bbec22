//! The alert outbox: messages to channels, written in the incidents' transaction, claimed by
//! alerters (several instances share one outbox without sending a row twice), and the record
//! of every attempt. Digest channels' rows wait as `held` until their group is flushed into
//! one digest row.

use std::sync::Arc;

use sqlx::{any::AnyRow, Any, Row, Transaction};

use super::{Backend, Store, StoreError};
use crate::detect::Incident;
use crate::store::EventKind;

/// Decides which channels an incident event goes to; the alerter implements it, the store
/// writer calls it for every event it stores, inside the incident's transaction.
pub trait AlertRouter: Send + Sync {
    fn route(&self, incident: &Incident, kind: EventKind) -> Vec<NewAlert>;
}

/// A shared router, as the writer's settings carry it.
#[derive(Clone)]
pub struct Router(pub Arc<dyn AlertRouter>);

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Router")
    }
}

/// An outbox row to insert.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert {
    pub channel: String,
    /// Unique per channel: a second copy of the same alert (a retried batch, another
    /// instance) is dropped by the database.
    pub dedup_key: String,
    pub incident_id: Option<String>,
    pub event: String,
    pub severity: String,
    pub group_key: String,
    pub payload: String,
    /// Waits for its group's digest instead of being sent on its own.
    pub held: bool,
}

/// The states a row goes through.
pub mod state {
    pub const HELD: &str = "held";
    pub const PENDING: &str = "pending";
    pub const SENT: &str = "sent";
    pub const FAILED: &str = "failed";
    pub const DEAD: &str = "dead";
    pub const DIGESTED: &str = "digested";
    pub const ALL: [&str; 6] = [HELD, PENDING, SENT, FAILED, DEAD, DIGESTED];
}

/// A claimed row, to be sent.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub dedup_key: String,
    pub event: String,
    pub payload: String,
    /// Including the one under way.
    pub attempts: i64,
    pub created_at_wall_ns: i64,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    Sent {
        status: u16,
        response: String,
    },
    /// Try again at `at` (wall ns).
    Retry {
        status: Option<u16>,
        error: String,
        response: Option<String>,
        at: i64,
    },
    /// The receiver refused it for good (a 4xx other than 408 and 429).
    Failed {
        status: u16,
        response: String,
    },
    /// Retried until `max_age`.
    Dead {
        status: Option<u16>,
        error: String,
        response: Option<String>,
    },
}

/// A held row, as a digest is built from it.
#[derive(Clone, Debug)]
pub struct HeldAlert {
    pub id: i64,
    pub event: String,
    pub severity: String,
    pub payload: String,
}

/// A channel's group with held rows.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldGroup {
    pub group_key: String,
    pub held: i64,
    pub oldest_created_wall_ns: i64,
    /// When the group's last message went out.
    pub last_sent_wall_ns: Option<i64>,
}

/// The digest that replaces a group's held rows.
#[derive(Clone, Debug)]
pub struct Digest {
    pub payload: String,
    pub severity: String,
}

/// One row, as `alerts list` and `alerts show` present it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AlertRecord {
    pub id: i64,
    pub channel: String,
    pub dedup_key: String,
    pub incident_id: Option<String>,
    pub event: String,
    pub severity: String,
    pub group_key: String,
    pub state: String,
    pub members: i64,
    pub digest_id: Option<i64>,
    pub attempts: i64,
    pub next_attempt_wall_ns: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub response: Option<String>,
    pub created_at_wall_ns: i64,
    pub sent_at_wall_ns: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// Filters for `alerts list`.
#[derive(Clone, Debug, Default)]
pub struct AlertQuery {
    pub state: Option<String>,
    pub channel: Option<String>,
    pub limit: i64,
}

const INSERT_ALERT: &str = "\
INSERT INTO alert_outbox (channel, dedup_key, incident_id, event, severity, group_key, payload,
    state, next_attempt_wall_ns, created_at_wall_ns)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
ON CONFLICT (channel, dedup_key) DO NOTHING";

/// Inserts outbox rows inside a caller's transaction (the incidents' one).
pub(super) async fn insert_alerts(
    tx: &mut Transaction<'static, Any>,
    alerts: &[NewAlert],
    now: i64,
) -> Result<(), StoreError> {
    for alert in alerts {
        sqlx::query(INSERT_ALERT)
            .bind(alert.channel.as_str())
            .bind(alert.dedup_key.as_str())
            .bind(alert.incident_id.as_deref())
            .bind(alert.event.as_str())
            .bind(alert.severity.as_str())
            .bind(alert.group_key.as_str())
            .bind(alert.payload.replace('\0', "\u{FFFD}"))
            .bind(if alert.held {
                state::HELD
            } else {
                state::PENDING
            })
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

const RECORD_COLUMNS: &str = "id, channel, dedup_key, incident_id, event, severity, group_key, \
    state, members, digest_id, attempts, next_attempt_wall_ns, last_status, last_error, \
    response, created_at_wall_ns, sent_at_wall_ns";

fn record(row: &AnyRow, with_payload: bool) -> Result<AlertRecord, sqlx::Error> {
    Ok(AlertRecord {
        id: row.try_get("id")?,
        channel: row.try_get("channel")?,
        dedup_key: row.try_get("dedup_key")?,
        incident_id: row.try_get("incident_id")?,
        event: row.try_get("event")?,
        severity: row.try_get("severity")?,
        group_key: row.try_get("group_key")?,
        state: row.try_get("state")?,
        members: row.try_get("members")?,
        digest_id: row.try_get("digest_id")?,
        attempts: row.try_get("attempts")?,
        next_attempt_wall_ns: row.try_get("next_attempt_wall_ns")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        response: row.try_get("response")?,
        created_at_wall_ns: row.try_get("created_at_wall_ns")?,
        sent_at_wall_ns: row.try_get("sent_at_wall_ns")?,
        payload: if with_payload {
            Some(row.try_get("payload")?)
        } else {
            None
        },
    })
}

impl Store {
    /// Inserts outbox rows on their own (`alerts test`, tests); incident events' rows go in
    /// with their incidents through `upsert_incidents`.
    pub async fn insert_alerts(&self, alerts: &[NewAlert], now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_alerts(&mut tx, alerts, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Claims up to `limit` of a channel's due pending rows for `claimer` until `lease_until`
    /// (after which, if never settled — the claimer died — they are due again). On PostgreSQL
    /// rows another instance is claiming are skipped, not waited for.
    pub async fn claim_alerts(
        &self,
        channel: &str,
        claimer: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            // One writer at a time: the statement is atomic on its own.
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE alert_outbox SET claimed_by = $1, next_attempt_wall_ns = $2, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM alert_outbox WHERE channel = $3 AND state = 'pending' \
             AND next_attempt_wall_ns <= $4 ORDER BY id LIMIT $5{lock}) \
             RETURNING id, channel, dedup_key, event, payload, attempts, created_at_wall_ns"
        );
        let rows = sqlx::query(&sql)
            .bind(claimer)
            .bind(lease_until)
            .bind(channel)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(Delivery {
                    id: row.try_get("id")?,
                    channel: row.try_get("channel")?,
                    dedup_key: row.try_get("dedup_key")?,
                    event: row.try_get("event")?,
                    payload: row.try_get("payload")?,
                    attempts: row.try_get("attempts")?,
                    created_at_wall_ns: row.try_get("created_at_wall_ns")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    /// Records how an attempt on a claimed row ended. A claim that lapsed and was taken over
    /// meanwhile is not overwritten (returns false).
    pub async fn record_attempt(
        &self,
        id: i64,
        claimer: &str,
        attempt: &Attempt,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (state_name, status, error, response, next, sent) = match attempt {
            Attempt::Sent { status, response } => (
                state::SENT,
                Some(*status),
                None,
                Some(response.as_str()),
                now,
                Some(now),
            ),
            Attempt::Retry {
                status,
                error,
                response,
                at,
            } => (
                state::PENDING,
                *status,
                Some(error.as_str()),
                response.as_deref(),
                *at,
                None,
            ),
            Attempt::Failed { status, response } => (
                state::FAILED,
                Some(*status),
                Some("refused by the receiver"),
                Some(response.as_str()),
                now,
                None,
            ),
            Attempt::Dead {
                status,
                error,
                response,
            } => (
                state::DEAD,
                *status,
                Some(error.as_str()),
                response.as_deref(),
                now,
                None,
            ),
        };
        let done = sqlx::query(
            "UPDATE alert_outbox SET state = $1, last_status = $2, last_error = $3, \
             response = $4, next_attempt_wall_ns = $5, sent_at_wall_ns = $6, claimed_by = NULL \
             WHERE id = $7 AND claimed_by = $8",
        )
        .bind(state_name)
        .bind(status.map(i64::from))
        .bind(error.map(|e| e.replace('\0', "\u{FFFD}")))
        .bind(response.map(|r| r.replace('\0', "\u{FFFD}")))
        .bind(next)
        .bind(sent)
        .bind(id)
        .bind(claimer)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Incidents still open whose newest message on `channel` went out before `before`
    /// (the repeat interval's start): that message, to be repeated.
    pub async fn due_reminders(
        &self,
        channel: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS}, payload FROM alert_outbox o \
             WHERE o.channel = $1 AND o.state IN ('sent', 'digested') \
             AND o.created_at_wall_ns < $2 \
             AND EXISTS (SELECT 1 FROM incidents i WHERE i.id = o.incident_id AND i.status = 'open') \
             AND NOT EXISTS (SELECT 1 FROM alert_outbox n WHERE n.channel = o.channel \
                 AND n.incident_id = o.incident_id AND n.created_at_wall_ns > o.created_at_wall_ns) \
             ORDER BY o.id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(channel)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| record(row, true))
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    /// Gives back a stopping worker's claims: its rows are due again now.
    pub async fn release_claims(&self, claimer: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE alert_outbox SET claimed_by = NULL, next_attempt_wall_ns = $1 \
             WHERE claimed_by = $2 AND state = 'pending'",
        )
        .bind(crate::clock::wall_clock().nanos())
        .bind(claimer)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A channel's groups with held rows, and when each last sent.
    pub async fn held_groups(&self, channel: &str) -> Result<Vec<HeldGroup>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.group_key AS group_key, COUNT(*) AS held, \
             MIN(o.created_at_wall_ns) AS oldest, MAX(g.last_sent_wall_ns) AS last_sent \
             FROM alert_outbox o LEFT JOIN alert_groups g \
             ON g.channel = o.channel AND g.group_key = o.group_key \
             WHERE o.channel = $1 AND o.state = 'held' GROUP BY o.group_key",
        )
        .bind(channel)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(HeldGroup {
                    group_key: row.try_get("group_key")?,
                    held: row.try_get("held")?,
                    oldest_created_wall_ns: row.try_get("oldest")?,
                    last_sent_wall_ns: row.try_get("last_sent")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    /// Turns up to `max_members` of a group's held rows into one pending digest row built by
    /// `build`, if the group's last send is still `expected_last_sent` (another instance did
    /// not flush it meanwhile). Returns the digest's id and how many rows it carries.
    pub async fn flush_group(
        &self,
        channel: &str,
        group_key: &str,
        expected_last_sent: Option<i64>,
        now: i64,
        max_members: i64,
        build: impl FnOnce(&[HeldAlert]) -> Digest,
    ) -> Result<Option<(i64, usize)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Taking the group row's lock first makes concurrent flushes of one group queue up
        // (on SQLite this first write takes the database's write lock).
        sqlx::query(
            "INSERT INTO alert_groups (channel, group_key, last_sent_wall_ns) VALUES ($1, $2, 0) \
             ON CONFLICT (channel, group_key) DO NOTHING",
        )
        .bind(channel)
        .bind(group_key)
        .execute(&mut *tx)
        .await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let last_sent: i64 = sqlx::query_scalar(&format!(
            "SELECT last_sent_wall_ns FROM alert_groups WHERE channel = $1 AND group_key = $2{lock}"
        ))
        .bind(channel)
        .bind(group_key)
        .fetch_one(&mut *tx)
        .await?;
        if last_sent != expected_last_sent.unwrap_or(0) {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT id, event, severity, payload FROM alert_outbox \
             WHERE channel = $1 AND group_key = $2 AND state = 'held' ORDER BY id LIMIT $3",
        )
        .bind(channel)
        .bind(group_key)
        .bind(max_members)
        .fetch_all(&mut *tx)
        .await?;
        let held = rows
            .iter()
            .map(|row| {
                Ok(HeldAlert {
                    id: row.try_get("id")?,
                    event: row.try_get("event")?,
                    severity: row.try_get("severity")?,
                    payload: row.try_get("payload")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        if held.is_empty() {
            return Ok(None);
        }
        let digest = build(&held);
        let digest_id: i64 = sqlx::query_scalar(
            "INSERT INTO alert_outbox (channel, dedup_key, incident_id, event, severity, \
             group_key, payload, state, members, next_attempt_wall_ns, created_at_wall_ns) \
             VALUES ($1, $2, NULL, 'digest', $3, $4, $5, 'pending', $6, $7, $7) RETURNING id",
        )
        .bind(channel)
        .bind(format!("digest/{group_key}/{}", held[0].id))
        .bind(digest.severity.as_str())
        .bind(group_key)
        .bind(digest.payload.replace('\0', "\u{FFFD}"))
        .bind(held.len() as i64)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        for chunk in held.chunks(500) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "UPDATE alert_outbox SET state = 'digested', digest_id = $1 WHERE id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(digest_id);
            for member in chunk {
                query = query.bind(member.id);
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE alert_groups SET last_sent_wall_ns = $1 WHERE channel = $2 AND group_key = $3",
        )
        .bind(now)
        .bind(channel)
        .bind(group_key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some((digest_id, held.len())))
    }

    /// Outbox rows, newest first.
    pub async fn list_alerts(&self, query: &AlertQuery) -> Result<Vec<AlertRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM alert_outbox \
             WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR channel = $2) \
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(query.state.as_deref())
            .bind(query.channel.as_deref())
            .bind(query.limit.max(1))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| record(row, false))
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    /// One row with its payload.
    pub async fn alert(&self, id: i64) -> Result<Option<AlertRecord>, StoreError> {
        let sql = format!("SELECT {RECORD_COLUMNS}, payload FROM alert_outbox WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| record(&row, true)).transpose()?)
    }

    /// Makes failed or dead rows pending again, due now, with a fresh `max_age` (their
    /// creation time restarts); `id` picks one, otherwise every dead row. Returns how many.
    pub async fn retry_alerts(&self, id: Option<i64>, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE alert_outbox SET state = 'pending', next_attempt_wall_ns = $1, \
             created_at_wall_ns = $1, claimed_by = NULL \
             WHERE ($2 IS NULL AND state = 'dead') \
             OR (id = $2 AND state IN ('failed', 'dead'))",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// How many rows are in each state (for metrics and `alerts list`'s summary).
    pub async fn alert_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, state, COUNT(*) AS n FROM alert_outbox GROUP BY channel, state \
             ORDER BY channel, state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get("channel")?,
                    row.try_get("state")?,
                    row.try_get("n")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }
}
