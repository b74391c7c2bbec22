//! Incident lifecycle: one incident per (detector, entity) episode, updated while the
//! anomaly lasts, closed after a quiet period of event time.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;

use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};

use super::definition::DetectorDef;
use super::incident::{
    incident_id, Evidence, Explain, Incident, IncidentEvent, Score, Severity, Status,
};
use super::profile::{Profile, SavedProfile};
use crate::event::{EntityKind, Request, Timestamp};

/// Evidence lines kept per incident.
pub const MAX_EVIDENCE: usize = 5;

/// Who opens incidents and what they say, shared by every episode of one detector.
#[derive(Clone, Debug)]
pub struct EpisodeSettings {
    pub detector: String,
    pub kind: &'static str,
    pub entity_kind: EntityKind,
    pub quiet_nanos: i64,
    /// The rule in words, for every incident's explanation.
    pub rule: String,
}

impl EpisodeSettings {
    pub fn of(def: &DetectorDef, quiet_nanos: i64) -> Self {
        EpisodeSettings {
            detector: def.id.clone(),
            kind: def.params.kind(),
            entity_kind: def.entity,
            quiet_nanos,
            rule: def.params.rule(),
        }
    }
}

/// What a detector knows when it decides to open an incident.
pub struct Opening<'l> {
    pub started_at: Timestamp,
    pub detected_at: Timestamp,
    pub severity: Severity,
    pub score: Score,
    pub summary: String,
    pub line: &'l [u8],
    /// The request that decided it (first of the episode's profile).
    pub req: &'l Request<'l>,
}

impl<'l> Opening<'l> {
    /// An incident one request decides (a rule broken, a first sighting): it starts and is
    /// detected at that request, observed once against an expectation of none.
    pub fn single(
        ts: Timestamp,
        severity: Severity,
        summary: String,
        line: &'l [u8],
        req: &'l Request<'l>,
    ) -> Self {
        Opening {
            started_at: ts,
            detected_at: ts,
            severity,
            score: Score {
                observed: 1.0,
                expected: 0.0,
                p_value: None,
            },
            summary,
            line,
            req,
        }
    }
}

struct Open {
    /// Everything but `explain`, which `profile` gives when the incident is emitted.
    incident: Incident,
    last_anomalous: Timestamp,
    profile: Profile,
    /// Per evidence line: did it come from an anomalous request (those are kept first).
    anomalous: Vec<bool>,
}

impl Open {
    fn emit(&self, rule: &str) -> Incident {
        let mut incident = self.incident.clone();
        incident.explain = self.profile.explain(rule);
        incident
    }

    /// Keeps the episode's anomalous requests as evidence: a later anomalous line replaces
    /// the oldest ordinary one once the list is full (the opening line always stays).
    fn keep_evidence(&mut self, ts: Timestamp, line: &[u8], anomalous: bool) {
        let evidence = &mut self.incident.evidence;
        if evidence.len() < MAX_EVIDENCE {
            evidence.push(Evidence::new(ts, line));
            self.anomalous.push(anomalous);
            return;
        }
        if !anomalous {
            return;
        }
        if let Some(ordinary) = (1..self.anomalous.len()).find(|&i| !self.anomalous[i]) {
            evidence.remove(ordinary);
            self.anomalous.remove(ordinary);
            evidence.push(Evidence::new(ts, line));
            self.anomalous.push(true);
        }
    }
}

/// An open episode as saved: its incident less what the detector and key give back (id,
/// detector, kind, entity, status), with time in nanoseconds and floats bit for bit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedEpisode {
    severity: Severity,
    started_at: Timestamp,
    detected_at: Timestamp,
    last_seen: Timestamp,
    last_anomalous: Timestamp,
    count: u64,
    #[serde(with = "crate::window::exact")]
    observed: f64,
    #[serde(with = "crate::window::exact")]
    expected: f64,
    #[serde(
        with = "crate::window::exact::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    p_value: Option<f64>,
    summary: String,
    /// `(time, line)` of each evidence line.
    evidence: Vec<(Timestamp, String)>,
    /// Per evidence line, whether it came from an anomalous request (absent: all did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    anomalous: Vec<bool>,
    /// The episode's profile so far.
    #[serde(default)]
    profile: SavedProfile,
}

impl SavedEpisode {
    /// The newest request the episode counted.
    pub fn last_seen(&self) -> Timestamp {
        self.last_seen
    }
}

pub struct Episodes<K> {
    settings: EpisodeSettings,
    open: HashMap<K, Open, RandomState>,
    opened_total: u64,
}

impl<K: Hash + Eq + Clone + Display> Episodes<K> {
    pub fn new(settings: EpisodeSettings) -> Self {
        Episodes {
            settings,
            open: HashMap::default(),
            opened_total: 0,
        }
    }

    pub fn is_open(&self, key: &K) -> bool {
        !self.open.is_empty() && self.open.contains_key(key)
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    pub fn opened_total(&self) -> u64 {
        self.opened_total
    }

    pub fn open(&mut self, key: K, opening: Opening<'_>, events: &mut Vec<IncidentEvent>) {
        let entity = key.to_string();
        let incident = Incident {
            id: incident_id(&self.settings.detector, &entity, opening.started_at),
            detector: self.settings.detector.clone(),
            kind: self.settings.kind.to_owned(),
            severity: opening.severity,
            entity_kind: self.settings.entity_kind,
            entity,
            started_at: opening.started_at,
            detected_at: opening.detected_at,
            last_seen: opening.detected_at,
            count: 1,
            score: opening.score,
            summary: opening.summary,
            status: Status::Open,
            evidence: vec![Evidence::new(opening.detected_at, opening.line)],
            explain: Explain::default(),
            related: Vec::new(),
        };
        let mut profile = Profile::default();
        profile.add(opening.req);
        let open = Open {
            incident,
            last_anomalous: opening.detected_at,
            profile,
            anomalous: vec![true],
        };
        self.opened_total += 1;
        events.push(IncidentEvent::Opened(open.emit(&self.settings.rule)));
        self.open.insert(key, open);
    }

    /// Another request from an entity with an open incident. `anomalous` keeps it open
    /// (and its line ahead of ordinary ones as evidence); `observed` raises the incident's
    /// peak score. True when the peak rose (a summary quoting it is out of date).
    pub fn touch(
        &mut self,
        key: &K,
        req: &Request<'_>,
        ts: Timestamp,
        line: &[u8],
        observed: f64,
        anomalous: bool,
    ) -> bool {
        let Some(open) = self.open.get_mut(key) else {
            return false;
        };
        let incident = &mut open.incident;
        incident.count += 1;
        incident.last_seen = incident.last_seen.max(ts);
        let peak_rose = observed > incident.score.observed;
        if peak_rose {
            incident.score.observed = observed;
        }
        open.profile.add(req);
        open.keep_evidence(ts, line, anomalous);
        if anomalous {
            open.last_anomalous = open.last_anomalous.max(ts);
        }
        peak_rose
    }

    /// Rewrites an open incident's summary from the incident (when what it quotes changed).
    pub fn resummarize(&mut self, key: &K, summary: impl FnOnce(&Incident) -> String) {
        if let Some(open) = self.open.get_mut(key) {
            open.incident.summary = summary(&open.incident);
        }
    }

    /// Raises an open incident's severity (and score); emits `Escalated` when it rose.
    pub fn escalate(
        &mut self,
        key: &K,
        severity: Severity,
        score: Score,
        events: &mut Vec<IncidentEvent>,
    ) {
        if let Some(open) = self.open.get_mut(key) {
            if severity > open.incident.severity {
                open.incident.severity = severity;
                open.incident.score = score;
                events.push(IncidentEvent::Escalated(open.emit(&self.settings.rule)));
            }
        }
    }

    /// The key's open episode, as saved state.
    pub fn saved(&self, key: &K) -> Option<SavedEpisode> {
        if self.open.is_empty() {
            return None;
        }
        let open = self.open.get(key)?;
        let incident = &open.incident;
        Some(SavedEpisode {
            severity: incident.severity,
            started_at: incident.started_at,
            detected_at: incident.detected_at,
            last_seen: incident.last_seen,
            last_anomalous: open.last_anomalous,
            count: incident.count,
            observed: incident.score.observed,
            expected: incident.score.expected,
            p_value: incident.score.p_value,
            summary: incident.summary.clone(),
            evidence: incident
                .evidence
                .iter()
                .map(|e| (e.ts, e.line.clone()))
                .collect(),
            anomalous: open.anomalous.clone(),
            profile: open.profile.saved(),
        })
    }

    /// Keys with an open episode.
    pub fn open_keys(&self) -> impl Iterator<Item = &K> {
        self.open.keys()
    }

    /// Reopens a saved episode as it was: same incident id, no new event (its `Opened`
    /// went out before the state was saved). Replaces an episode open for the key.
    pub fn restore(&mut self, key: K, saved: SavedEpisode) {
        let entity = key.to_string();
        let mut evidence: Vec<Evidence> = saved
            .evidence
            .into_iter()
            .map(|(ts, line)| Evidence { ts, line })
            .collect();
        evidence.truncate(MAX_EVIDENCE);
        let mut anomalous = saved.anomalous;
        anomalous.resize(evidence.len(), true);
        let incident = Incident {
            id: incident_id(&self.settings.detector, &entity, saved.started_at),
            detector: self.settings.detector.clone(),
            kind: self.settings.kind.to_owned(),
            severity: saved.severity,
            entity_kind: self.settings.entity_kind,
            entity,
            started_at: saved.started_at,
            detected_at: saved.detected_at,
            last_seen: saved.last_seen,
            count: saved.count,
            score: Score {
                observed: saved.observed,
                expected: saved.expected,
                p_value: saved.p_value,
            },
            summary: saved.summary,
            status: Status::Open,
            evidence,
            explain: Explain::default(),
            related: Vec::new(),
        };
        self.open.insert(
            key,
            Open {
                incident,
                last_anomalous: saved.last_anomalous,
                profile: Profile::restored(&saved.profile),
                anomalous,
            },
        );
    }

    /// Closes episodes with no anomalous request for the quiet period before `now`.
    pub fn close_quiet(&mut self, now: Timestamp, events: &mut Vec<IncidentEvent>) {
        if self.open.is_empty() {
            return;
        }
        let quiet = self.settings.quiet_nanos;
        let mut closing: Vec<K> = self
            .open
            .iter()
            .filter(|(_, open)| now.nanos() - open.last_anomalous.nanos() >= quiet)
            .map(|(key, _)| key.clone())
            .collect();
        // Deterministic output order, whatever the hash map's.
        closing.sort_by(|a, b| order(&self.open[a].incident, &self.open[b].incident));
        for key in closing {
            if let Some(open) = self.open.remove(&key) {
                events.push(IncidentEvent::Closed(closed(
                    open.emit(&self.settings.rule),
                )));
            }
        }
    }

    pub fn close_all(&mut self, events: &mut Vec<IncidentEvent>) {
        let rule = &self.settings.rule;
        let mut all: Vec<Incident> = self.open.drain().map(|(_, open)| open.emit(rule)).collect();
        all.sort_by(order);
        events.extend(all.into_iter().map(|i| IncidentEvent::Closed(closed(i))));
    }
}

fn order(a: &Incident, b: &Incident) -> std::cmp::Ordering {
    (a.detected_at, &a.entity).cmp(&(b.detected_at, &b.entity))
}

fn closed(mut incident: Incident) -> Incident {
    incident.status = Status::Closed;
    incident
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episodes() -> Episodes<u32> {
        Episodes::new(EpisodeSettings {
            detector: "d".into(),
            kind: "rate_spike",
            entity_kind: EntityKind::Ip,
            quiet_nanos: 100,
            rule: "the rule".into(),
        })
    }

    fn opening<'l>(at: i64, req: &'l Request<'l>) -> Opening<'l> {
        Opening {
            started_at: Timestamp(at - 10),
            detected_at: Timestamp(at),
            severity: Severity::High,
            score: Score {
                observed: 10.0,
                expected: 1.0,
                p_value: None,
            },
            summary: "s".into(),
            line: b"line",
            req,
        }
    }

    #[test]
    fn one_incident_per_episode_closed_after_quiet() {
        let mut eps = episodes();
        let mut events = Vec::new();
        let req = Request::default();
        eps.open(7, opening(1000, &req), &mut events);
        eps.touch(&7, &req, Timestamp(1050), b"x", 30.0, true);
        eps.touch(&7, &req, Timestamp(1120), b"y", 5.0, false);
        eps.close_quiet(Timestamp(1149), &mut events);
        assert_eq!(events.len(), 1, "still open: last anomalous at 1050");
        eps.close_quiet(Timestamp(1150), &mut events);
        let IncidentEvent::Closed(incident) = &events[1] else {
            panic!("expected a close, got {events:?}");
        };
        assert_eq!(incident.count, 3);
        assert_eq!(incident.score.observed, 30.0, "the peak is kept");
        assert_eq!(incident.last_seen, Timestamp(1120));
        assert_eq!(incident.status, Status::Closed);
        assert!(!eps.is_open(&7));
    }

    #[test]
    fn a_saved_episode_reopens_as_it_was() {
        let mut eps = episodes();
        let mut events = Vec::new();
        let req = Request::default();
        eps.open(7, opening(1000, &req), &mut events);
        eps.touch(&7, &req, Timestamp(1050), b"x\"\n", 30.0, true);
        let text = serde_json::to_string(&eps.saved(&7).unwrap()).unwrap();
        assert_eq!(eps.saved(&8), None);
        let mut back = episodes();
        back.restore(7, serde_json::from_str(&text).unwrap());
        assert_eq!(back.open_count(), 1);
        assert_eq!(back.opened_total(), 0, "restoring opens nothing new");
        eps.close_all(&mut events);
        back.close_all(&mut events);
        assert_eq!(events[1], events[2]);
    }

    #[test]
    fn escalation_only_upwards() {
        let mut eps = episodes();
        let mut events = Vec::new();
        let req = Request::default();
        eps.open(1, opening(10, &req), &mut events);
        let score = opening(10, &req).score;
        eps.escalate(&1, Severity::Medium, score, &mut events);
        assert_eq!(events.len(), 1);
        eps.escalate(&1, Severity::Critical, score, &mut events);
        assert!(
            matches!(events[1], IncidentEvent::Escalated(ref i) if i.severity == Severity::Critical)
        );
    }
}

#[cfg(test)]
mod explain_tests {
    use super::*;
    use std::borrow::Cow;

    fn request(path: &'static str) -> Request<'static> {
        Request {
            path: Some(Cow::Borrowed(path.as_bytes())),
            status: Some(404),
            ..Request::default()
        }
    }

    fn settings() -> EpisodeSettings {
        EpisodeSettings {
            detector: "scanner-ip".into(),
            kind: "scanner",
            entity_kind: EntityKind::Ip,
            quiet_nanos: 1_000,
            rule: "≥ 3 probes".into(),
        }
    }

    fn open_one(eps: &mut Episodes<u32>, events: &mut Vec<IncidentEvent>) {
        let first = request("/.env");
        eps.open(
            1,
            Opening::single(Timestamp(0), Severity::High, "s".into(), b"probe 0", &first),
            events,
        );
    }

    #[test]
    fn incidents_carry_the_rule_and_the_episodes_profile() {
        let mut eps = Episodes::new(settings());
        let mut events = Vec::new();
        open_one(&mut eps, &mut events);
        let IncidentEvent::Opened(opened) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(opened.explain.rule, "≥ 3 probes");
        assert_eq!(opened.explain.top_paths[0].value, "/.env");
        for n in 1..=3 {
            eps.touch(
                &1,
                &request("/.git/config"),
                Timestamp(n),
                b"probe",
                1.0,
                true,
            );
        }
        eps.close_all(&mut events);
        let closed = events[1].incident();
        assert_eq!(closed.explain.top_paths[0].value, "/.git/config");
        assert_eq!(closed.explain.top_paths[0].count, 3);
        assert_eq!(closed.explain.statuses[0].count, 4);
    }

    #[test]
    fn anomalous_requests_displace_ordinary_evidence() {
        let mut eps = Episodes::new(settings());
        let mut events = Vec::new();
        open_one(&mut eps, &mut events);
        let page = request("/index.html");
        for n in 1..=10 {
            eps.touch(&1, &page, Timestamp(n), b"ordinary", 0.0, false);
        }
        for n in 11..=13 {
            let line = format!("probe {n}");
            eps.touch(&1, &page, Timestamp(n), line.as_bytes(), 0.0, true);
        }
        let lines: Vec<String> = eps
            .saved(&1)
            .unwrap()
            .evidence
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(
            lines,
            ["probe 0", "ordinary", "probe 11", "probe 12", "probe 13"],
            "the opening line stays, then the newest anomalous ones in time order"
        );
    }

    #[test]
    fn a_restored_episode_keeps_its_profile_and_evidence_marks() {
        let mut eps = Episodes::new(settings());
        let mut events = Vec::new();
        open_one(&mut eps, &mut events);
        eps.touch(&1, &request("/a"), Timestamp(1), b"ordinary", 0.0, false);
        let text = serde_json::to_string(&eps.saved(&1).unwrap()).unwrap();
        let mut back = Episodes::new(settings());
        back.restore(1, serde_json::from_str(&text).unwrap());
        eps.close_all(&mut events);
        back.close_all(&mut events);
        assert_eq!(events[1], events[2]);
        assert_eq!(events[2].incident().explain.top_paths.len(), 2);
    }

    #[test]
    fn the_peak_rising_is_reported() {
        let mut eps = Episodes::new(settings());
        let mut events = Vec::new();
        open_one(&mut eps, &mut events);
        let req = request("/x");
        assert!(eps.touch(&1, &req, Timestamp(1), b"l", 5.0, true));
        assert!(!eps.touch(&1, &req, Timestamp(2), b"l", 5.0, true));
        assert!(
            !eps.touch(&2, &req, Timestamp(2), b"l", 9.0, true),
            "no episode"
        );
    }
}
