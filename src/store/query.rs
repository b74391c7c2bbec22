//! Reads for analysts: filtered, newest-first pages of incidents with cursor pagination.

use std::collections::HashMap;
use std::fmt;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use super::ip_key::EntityFilter;
use super::record::{evidence_from_row, incident_from_row, StoredIncident, INCIDENT_COLUMNS};
use super::{Backend, Store, StoreError};
use crate::detect::Severity;
use crate::event::Timestamp;

/// Largest page a query returns.
pub const MAX_PAGE: u32 = 1000;

/// Below this many incidents in an address range, pages are found through the address index.
const ADDRESS_PROBE: i64 = 5000;

/// `--status`: the detector's open/closed or the analyst's triage state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    Open,
    Closed,
    New,
    Acknowledged,
    Resolved,
}

impl StatusFilter {
    pub const NAMES: &'static str = "open, closed, new, acknowledged (ack), resolved";

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "open" => StatusFilter::Open,
            "closed" => StatusFilter::Closed,
            "new" => StatusFilter::New,
            "acknowledged" | "ack" | "acked" => StatusFilter::Acknowledged,
            "resolved" => StatusFilter::Resolved,
            _ => return None,
        })
    }

    fn condition(self) -> &'static str {
        match self {
            StatusFilter::Open => "status = 'open'",
            StatusFilter::Closed => "status = 'closed'",
            StatusFilter::New => "triage = 'new'",
            StatusFilter::Acknowledged => "triage = 'acknowledged'",
            StatusFilter::Resolved => "triage = 'resolved'",
        }
    }
}

/// Where the previous page ended: the last incident's start and id (the sort key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    started_at_ns: i64,
    id: String,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.started_at_ns, self.id)
    }
}

impl Cursor {
    pub fn parse(text: &str) -> Option<Cursor> {
        let (ns, id) = text.split_once('.')?;
        if !looks_like_id(id) {
            return None;
        }
        Some(Cursor {
            started_at_ns: ns.parse().ok()?,
            id: id.to_owned(),
        })
    }
}

/// Incident ids are hex digests; anything else (quotes, wildcards, huge input) is no id.
fn looks_like_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Which incidents to list. Times are event time: `since` keeps incidents still active at or
/// after it (last seen), `until` those that started at or before it.
#[derive(Clone, Debug, Default)]
pub struct IncidentQuery {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub detector: Option<String>,
    pub kind: Option<String>,
    pub entity: Option<EntityFilter>,
    /// At least this severe.
    pub min_severity: Option<Severity>,
    pub status: Option<StatusFilter>,
    pub limit: u32,
    pub after: Option<Cursor>,
    /// Also load each incident's evidence lines (one more query per page).
    pub with_evidence: bool,
}

pub struct Page {
    pub incidents: Vec<StoredIncident>,
    /// Present when more incidents match beyond this page.
    pub next: Option<Cursor>,
}

enum Bind {
    Int(i64),
    Text(String),
}

/// Collects WHERE conditions with numbered placeholders (`$n` works on both backends).
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    binds: Vec<Bind>,
}

impl Conditions {
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn push(&mut self, condition: String) {
        self.sql.push(condition);
    }

    fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql.join(" AND "))
        }
    }

    fn apply<'q>(
        &'q self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for bind in &self.binds {
            query = match bind {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(v.as_str()),
            };
        }
        query
    }
}

fn conditions(q: &IncidentQuery) -> Conditions {
    let mut c = Conditions::default();
    if let Some(since) = q.since {
        let p = c.bind(Bind::Int(since.nanos()));
        c.push(format!("last_seen_ns >= {p}"));
    }
    if let Some(until) = q.until {
        let p = c.bind(Bind::Int(until.nanos()));
        c.push(format!("started_at_ns <= {p}"));
    }
    if let Some(detector) = &q.detector {
        let p = c.bind(Bind::Text(detector.clone()));
        c.push(format!("detector = {p}"));
    }
    if let Some(kind) = &q.kind {
        let p = c.bind(Bind::Text(kind.clone()));
        c.push(format!("kind = {p}"));
    }
    match &q.entity {
        Some(EntityFilter::Exact(entity)) => {
            let p = c.bind(Bind::Text(entity.clone()));
            c.push(format!("entity = {p}"));
        }
        // Address ranges depend on the plan: see `Store::list_incidents`.
        Some(EntityFilter::Range { .. }) => {}
        None => {}
    }
    if let Some(severity) = q.min_severity {
        let p = c.bind(Bind::Int(severity as i64 + 1));
        c.push(format!("severity_rank >= {p}"));
    }
    if let Some(status) = q.status {
        c.push(status.condition().to_owned());
    }
    if let Some(after) = &q.after {
        let ts = c.bind(Bind::Int(after.started_at_ns));
        let id = c.bind(Bind::Text(after.id.clone()));
        c.push(format!(
            "(started_at_ns < {ts} OR (started_at_ns = {ts} AND id < {id}))"
        ));
    }
    c
}

impl Store {
    /// One page of matching incidents, newest start first.
    ///
    /// An address filter needs its own plan: walking the time index finds a wide range's
    /// matches at once but scans most of the table for one IP, and the address index is the
    /// reverse. A bounded count on the address index (index-only, at most `ADDRESS_PROBE`
    /// entries) tells which case this is; SQLite is then told which index to use, as its
    /// planner cannot see the bound values. PostgreSQL plans from its own statistics.
    pub async fn list_incidents(&self, q: &IncidentQuery) -> Result<Page, StoreError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let mut c = conditions(q);
        let hint = |index: &str| match self.backend {
            Backend::Sqlite => format!(" INDEXED BY {index}"),
            Backend::Postgres => String::new(),
        };
        let order = format!("ORDER BY started_at_ns DESC, id DESC LIMIT {}", limit + 1);
        let sql = match &q.entity {
            Some(EntityFilter::Range { lo, hi }) => {
                let few = self.address_matches(lo, hi).await? < ADDRESS_PROBE;
                let lo = c.bind(Bind::Text(lo.clone()));
                let hi = c.bind(Bind::Text(hi.clone()));
                // Addresses inside the range, and subnets that start before it but reach in.
                let inside = format!("ip_lo >= {lo} AND ip_lo <= {hi}");
                let reaching = format!("entity_kind = 'subnet' AND ip_lo < {lo} AND ip_hi >= {lo}");
                let rest: String = c.sql.iter().map(|cond| format!(" AND {cond}")).collect();
                if few {
                    format!(
                        "SELECT {INCIDENT_COLUMNS} FROM (\
                         SELECT {INCIDENT_COLUMNS} FROM incidents{} WHERE {inside}{rest} \
                         UNION ALL \
                         SELECT {INCIDENT_COLUMNS} FROM incidents{} WHERE {reaching}{rest}\
                         ) AS matched {order}",
                        hint("incidents_ip"),
                        hint("incidents_kind_ip"),
                    )
                } else {
                    format!(
                        "SELECT {INCIDENT_COLUMNS} FROM incidents{} \
                         WHERE (({inside}) OR ({reaching})){rest} {order}",
                        hint("incidents_started"),
                    )
                }
            }
            _ => format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents{} {order}",
                c.where_clause()
            ),
        };
        let rows = c.apply(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        let mut incidents = rows
            .iter()
            .map(incident_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if incidents.len() > limit as usize {
            incidents.truncate(limit as usize);
            incidents.last().map(|last| Cursor {
                started_at_ns: last.incident.started_at.nanos(),
                id: last.incident.id.clone(),
            })
        } else {
            None
        };
        if q.with_evidence {
            self.attach_evidence(&mut incidents).await?;
        }
        Ok(Page { incidents, next })
    }

    /// How many incidents fall in an address range, counted up to `ADDRESS_PROBE`.
    async fn address_matches(&self, lo: &str, hi: &str) -> Result<i64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM incidents WHERE ip_lo >= $1 AND ip_lo <= $2 \
             LIMIT {ADDRESS_PROBE}) AS probe"
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(lo)
            .bind(hi)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The detector ids that have stored incidents, sorted.
    pub async fn stored_detectors(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT detector FROM incidents ORDER BY detector")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(sqlx::Row::try_get::<String, _>(row, 0)?))
            .collect()
    }

    /// The incident with this id, or with this unique id prefix (at least 4 hex digits).
    pub async fn get_incident(&self, id: &str) -> Result<StoredIncident, StoreError> {
        let id = self.resolve_id(id).await?;
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let mut incidents = vec![incident_from_row(&row)?];
        self.attach_evidence(&mut incidents).await?;
        Ok(incidents.remove(0))
    }

    /// Expands a unique prefix to the full id, as analysts copy short ids from tables.
    pub async fn resolve_id(&self, id: &str) -> Result<String, StoreError> {
        if !looks_like_id(id) {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        let id = id.to_ascii_lowercase();
        // Hex digits have no LIKE wildcards; the range form uses the primary key index.
        let matches: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE id >= $1 AND id < $2 ORDER BY id LIMIT 2",
        )
        .bind(id.as_str())
        .bind(format!("{id}~"))
        .fetch_all(&self.pool)
        .await?;
        if matches.first() == Some(&id) {
            return Ok(id);
        }
        match matches.as_slice() {
            [only] if id.len() >= 4 => Ok(only.clone()),
            [_, _] if id.len() >= 4 => Err(StoreError::Ambiguous(id)),
            [] => Err(StoreError::NotFound(id)),
            _ => Err(StoreError::ShortId(id)),
        }
    }

    async fn attach_evidence(&self, incidents: &mut [StoredIncident]) -> Result<(), StoreError> {
        if incidents.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (1..=incidents.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT incident_id, ts_ns, line FROM incident_evidence \
             WHERE incident_id IN ({}) ORDER BY incident_id, seq",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for stored in incidents.iter() {
            query = query.bind(stored.incident.id.as_str());
        }
        let mut by_id: HashMap<String, Vec<_>> = HashMap::new();
        for row in query.fetch_all(&self.pool).await? {
            let (id, evidence) = evidence_from_row(&row)?;
            by_id.entry(id).or_default().push(evidence);
        }
        for stored in incidents {
            stored.incident.evidence = by_id.remove(&stored.incident.id).unwrap_or_default();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        let cursor = Cursor {
            started_at_ns: 1_700_000_000_123_000_000,
            id: "00ff3a".into(),
        };
        assert_eq!(Cursor::parse(&cursor.to_string()), Some(cursor));
        for junk in ["", "1", "x.00ff", "1.", "1.zz", "1.00ff'--"] {
            assert_eq!(Cursor::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn conditions_number_their_placeholders() {
        let q = IncidentQuery {
            since: Some(Timestamp(1)),
            detector: Some("rate-spike-ip".into()),
            entity: Some(EntityFilter::parse("tok_1")),
            status: Some(StatusFilter::Open),
            ..IncidentQuery::default()
        };
        let c = conditions(&q);
        let sql = c.where_clause();
        assert!(sql.contains("last_seen_ns >= $1"), "{sql}");
        assert!(sql.contains("detector = $2"), "{sql}");
        assert!(sql.contains("entity = $3"), "{sql}");
        assert!(sql.contains("status = 'open'"), "{sql}");
        assert_eq!(c.binds.len(), 3);
    }
}
