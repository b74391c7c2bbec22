//! Incident filters as text, as they arrive from `incidents list` flags or an API query
//! string, checked and turned into a store [`IncidentQuery`]. Shared by the CLI and the API
//! so both accept the same forms and report the same errors.

use std::time::Duration;

use crate::detect::Severity;
use crate::event::Timestamp;
use crate::store::{Cursor, EntityFilter, IncidentQuery, StatusFilter, MAX_PAGE};

/// Filters as text, as they arrive from flags or a query string; `to_query` checks them.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryText {
    pub since: Option<String>,
    pub until: Option<String>,
    pub detector: Option<String>,
    pub kind: Option<String>,
    pub entity: Option<String>,
    pub severity: Option<String>,
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// An entity filter; text that starts as an address and has a `/` must be a valid CIDR
/// (`10.0.0.0/33` is a mistake, not an entity no incident has).
fn entity_filter(text: &str) -> Result<EntityFilter, String> {
    if let Some((addr, _)) = text.trim().split_once('/') {
        if addr.parse::<std::net::IpAddr>().is_ok() && text.trim().parse::<ipnet::IpNet>().is_err()
        {
            return Err(format!(
                "entity: {text:?} is not a CIDR (an address and a prefix of at most 32 for \
                 IPv4, 128 for IPv6)"
            ));
        }
    }
    Ok(EntityFilter::parse(text))
}

impl QueryText {
    /// The query, or an error naming the bad field. `now` anchors durations.
    pub fn to_query(&self, now: Timestamp) -> Result<IncidentQuery, String> {
        self.refuse_nul()?;
        let time = |field: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| parse_time_bound(v, now).map_err(|e| format!("{field}: {e}")))
                .transpose()
        };
        let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        Ok(IncidentQuery {
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            detector: non_empty(&self.detector),
            kind: non_empty(&self.kind),
            entity: non_empty(&self.entity)
                .as_deref()
                .map(entity_filter)
                .transpose()?,
            min_severity: self
                .severity
                .as_deref()
                .map(|s| {
                    Severity::parse(s).ok_or_else(|| {
                        format!("severity: {s:?} is not one of low, medium, high, critical")
                    })
                })
                .transpose()?,
            status: self
                .status
                .as_deref()
                .map(|s| {
                    StatusFilter::parse(s).ok_or_else(|| {
                        format!("status: {s:?} is not one of {}", StatusFilter::NAMES)
                    })
                })
                .transpose()?,
            limit: match self.limit {
                Some(0) => return Err("limit: must be at least 1".into()),
                Some(n) if n > MAX_PAGE => {
                    return Err(format!("limit: at most {MAX_PAGE} per page"))
                }
                Some(n) => n,
                None => 50,
            },
            after: self
                .cursor
                .as_deref()
                .map(|c| {
                    Cursor::parse(c).ok_or_else(|| {
                        format!("cursor: {c:?} is not a cursor from a previous page")
                    })
                })
                .transpose()?,
            with_evidence: false,
        })
    }
}

impl QueryText {
    /// A NUL is nobody's filter, and PostgreSQL text cannot hold one: the caller's mistake,
    /// named before any query (on SQLite too, so both backends answer alike).
    fn refuse_nul(&self) -> Result<(), String> {
        let fields = [
            ("since", &self.since),
            ("until", &self.until),
            ("detector", &self.detector),
            ("kind", &self.kind),
            ("entity", &self.entity),
            ("severity", &self.severity),
            ("status", &self.status),
            ("cursor", &self.cursor),
        ];
        for (name, value) in fields {
            if value.as_deref().is_some_and(|v| v.contains('\0')) {
                return Err(format!("{name}: contains a NUL character"));
            }
        }
        Ok(())
    }
}

/// A `--since`/`--until` value: an RFC 3339 timestamp, a date (midnight UTC), or a duration
/// meaning that long before `now` (`90m`, `2h`, `7d`).
pub fn parse_time_bound(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Some(ts) = Timestamp::parse_rfc3339(text) {
        return Ok(ts);
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        if let Some(ns) = midnight.timestamp_nanos_opt() {
            return Ok(Timestamp(ns));
        }
    }
    let ago: Duration = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither a time (2026-11-20T10:00:00Z, 2026-11-20) nor a duration (90m, 2h, 7d)")
    })?;
    Ok(duration_before(now, ago))
}

/// `now` minus `ago`, saturating at the ends of the timestamp range.
pub fn duration_before(now: Timestamp, ago: Duration) -> Timestamp {
    let ago = i64::try_from(ago.as_nanos()).unwrap_or(i64::MAX);
    Timestamp(now.nanos().saturating_sub(ago))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_any_filter_is_named() {
        let now = Timestamp::parse_rfc3339("2026-11-20T12:00:00Z").unwrap();
        let text = QueryText {
            entity: Some("10.0.0.1\0".into()),
            ..QueryText::default()
        };
        assert_eq!(
            text.to_query(now).unwrap_err(),
            "entity: contains a NUL character"
        );
        let text = QueryText {
            cursor: Some("\0".into()),
            ..QueryText::default()
        };
        assert_eq!(
            text.to_query(now).unwrap_err(),
            "cursor: contains a NUL character"
        );
    }

    #[test]
    fn time_bounds() {
        let now = Timestamp::parse_rfc3339("2026-11-20T12:00:00Z").unwrap();
        let at = |t| parse_time_bound(t, now).unwrap().to_rfc3339();
        assert_eq!(at("2h"), "2026-11-20T10:00:00Z");
        assert_eq!(at("1d"), "2026-11-19T12:00:00Z");
        assert_eq!(at("2026-11-01"), "2026-11-01T00:00:00Z");
        assert_eq!(at("2026-11-20T10:03:12.250Z"), "2026-11-20T10:03:12.250Z");
        assert!(parse_time_bound("yesterday-ish", now)
            .unwrap_err()
            .contains("neither"));
    }

    #[test]
    fn bad_fields_are_named() {
        let now = Timestamp::parse_rfc3339("2026-11-20T12:00:00Z").unwrap();
        let error = |text: QueryText| text.to_query(now).unwrap_err();
        let severity = Some("urgent".to_owned());
        assert!(error(QueryText {
            severity,
            ..QueryText::default()
        })
        .starts_with("severity:"));
        let since = Some("soon".to_owned());
        assert!(error(QueryText {
            since,
            ..QueryText::default()
        })
        .starts_with("since:"));
        let cursor = Some("1.zz".to_owned());
        assert!(error(QueryText {
            cursor,
            ..QueryText::default()
        })
        .starts_with("cursor:"));
        assert!(error(QueryText {
            limit: Some(0),
            ..QueryText::default()
        })
        .starts_with("limit:"));
        let query = QueryText {
            since: Some("2h".into()),
            detector: Some(String::new()),
            ..QueryText::default()
        }
        .to_query(now)
        .unwrap();
        assert_eq!(query.since.unwrap().to_rfc3339(), "2026-11-20T10:00:00Z");
        assert_eq!(query.detector, None);
        assert_eq!(query.limit, 50);
    }
}
