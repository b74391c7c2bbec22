//! Links incidents of one actor in one episode across detectors (a scanner that then brute
//! forces the login is one story): same address, token or network, or an address inside a
//! network, open at the same time or within `GAP` of each other.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::incident::{Incident, IncidentEvent};
use crate::event::{EntityKind, Timestamp, NANOS_PER_SEC};

/// How long after one incident's last request another still belongs to its episode.
const GAP_NANOS: i64 = 10 * 60 * NANOS_PER_SEC;
/// Incidents remembered for linking at most (open ones and those closed within `GAP`).
const MAX_REMEMBERED: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Actor {
    Address(IpAddr),
    Network(IpNet),
    Token(String),
}

impl Actor {
    /// Routes and the whole site are many actors' doing: they link to nothing.
    fn of(incident: &Incident) -> Option<Actor> {
        Actor::parse(incident.entity_kind, &incident.entity)
    }

    fn parse(kind: EntityKind, entity: &str) -> Option<Actor> {
        match kind {
            EntityKind::Ip => entity.parse().ok().map(Actor::Address),
            EntityKind::Subnet => entity.parse().ok().map(Actor::Network),
            EntityKind::Token => Some(Actor::Token(entity.to_owned())),
            EntityKind::Route | EntityKind::Global => None,
        }
    }

    fn same_as(&self, other: &Actor) -> bool {
        match (self, other) {
            (Actor::Address(ip), Actor::Network(net))
            | (Actor::Network(net), Actor::Address(ip)) => net.contains(ip),
            _ => self == other,
        }
    }
}

struct Remembered {
    id: String,
    detector: String,
    entity_kind: EntityKind,
    entity: String,
    actor: Actor,
    open: bool,
    last_seen: Timestamp,
}

#[derive(Default)]
pub struct Related {
    remembered: Vec<Remembered>,
    links: HashMap<String, Vec<String>>,
}

/// `Related` as saved with the engine, so a restart links as an uninterrupted run does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedRelated {
    /// `(id, detector, entity kind, entity, open, last seen)` in order.
    remembered: Vec<(String, String, EntityKind, String, bool, Timestamp)>,
    links: Vec<(String, Vec<String>)>,
}

impl Related {
    /// Fills `related` in each event's incident, in event order.
    pub fn link(&mut self, events: &mut [IncidentEvent]) {
        for event in events {
            match event {
                IncidentEvent::Opened(incident) => {
                    self.opened(incident);
                    self.fill(incident);
                }
                IncidentEvent::Escalated(incident) => self.fill(incident),
                IncidentEvent::Closed(incident) => {
                    self.fill(incident);
                    self.closed(incident);
                }
            }
        }
    }

    fn opened(&mut self, incident: &Incident) {
        let Some(actor) = Actor::of(incident) else {
            return;
        };
        let since = incident.started_at.nanos().saturating_sub(GAP_NANOS);
        self.remembered
            .retain(|r| r.open || r.last_seen.nanos() >= since);
        for other in &self.remembered {
            if other.detector != incident.detector && other.actor.same_as(&actor) {
                push_unique(
                    self.links.entry(other.id.clone()).or_default(),
                    &incident.id,
                );
                push_unique(
                    self.links.entry(incident.id.clone()).or_default(),
                    &other.id,
                );
            }
        }
        if self.remembered.len() >= MAX_REMEMBERED {
            if let Some(oldest) = self.remembered.iter().position(|r| !r.open) {
                self.remembered.remove(oldest);
            }
        }
        self.remembered.push(Remembered {
            id: incident.id.clone(),
            detector: incident.detector.clone(),
            entity_kind: incident.entity_kind,
            entity: incident.entity.clone(),
            actor,
            open: true,
            last_seen: incident.last_seen,
        });
    }

    pub fn saved(&self) -> SavedRelated {
        let mut links: Vec<(String, Vec<String>)> = self
            .links
            .iter()
            .map(|(id, ids)| (id.clone(), ids.clone()))
            .collect();
        links.sort();
        SavedRelated {
            remembered: (self.remembered.iter())
                .map(|r| {
                    let (id, detector, entity) =
                        (r.id.clone(), r.detector.clone(), r.entity.clone());
                    (id, detector, r.entity_kind, entity, r.open, r.last_seen)
                })
                .collect(),
            links,
        }
    }

    pub fn restored(saved: SavedRelated) -> Self {
        let remembered = (saved.remembered.into_iter())
            .filter_map(|(id, detector, entity_kind, entity, open, last_seen)| {
                let actor = Actor::parse(entity_kind, &entity)?;
                Some(Remembered {
                    id,
                    detector,
                    entity_kind,
                    entity,
                    actor,
                    open,
                    last_seen,
                })
            })
            .take(MAX_REMEMBERED)
            .collect();
        Related {
            remembered,
            links: saved.links.into_iter().collect(),
        }
    }

    fn fill(&self, incident: &mut Incident) {
        if let Some(ids) = self.links.get(&incident.id) {
            incident.related.clone_from(ids);
        }
    }

    fn closed(&mut self, incident: &Incident) {
        self.links.remove(&incident.id);
        if let Some(entry) = self.remembered.iter_mut().find(|r| r.id == incident.id) {
            entry.open = false;
            entry.last_seen = incident.last_seen;
        }
    }
}

fn push_unique(ids: &mut Vec<String>, id: &str) {
    if !ids.iter().any(|known| known == id) {
        ids.push(id.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::incident::{Explain, Score, Severity, Status};

    fn incident(detector: &str, kind: EntityKind, entity: &str, at_secs: i64) -> Incident {
        let at = Timestamp(at_secs * NANOS_PER_SEC);
        Incident {
            id: format!("{detector}/{entity}/{at_secs}"),
            detector: detector.into(),
            kind: detector.into(),
            severity: Severity::High,
            entity_kind: kind,
            entity: entity.into(),
            started_at: at,
            detected_at: at,
            last_seen: at,
            count: 1,
            score: Score {
                observed: 1.0,
                expected: 0.0,
                p_value: None,
            },
            summary: String::new(),
            status: Status::Open,
            evidence: Vec::new(),
            explain: Explain::default(),
            related: Vec::new(),
        }
    }

    fn closed(mut incident: Incident, last_seen_secs: i64) -> IncidentEvent {
        incident.status = Status::Closed;
        incident.last_seen = Timestamp(last_seen_secs * NANOS_PER_SEC);
        IncidentEvent::Closed(incident)
    }

    #[test]
    fn one_actors_incidents_from_several_detectors_list_each_other() {
        let scanner = incident("scanner-ip", EntityKind::Ip, "203.0.113.7", 0);
        let brute = incident("brute-force-ip", EntityKind::Ip, "203.0.113.7", 60);
        let subnet = incident(
            "rate-spike-subnet",
            EntityKind::Subnet,
            "203.0.113.0/24",
            90,
        );
        let other = incident("brute-force-ip", EntityKind::Ip, "198.51.100.1", 60);
        let route = incident("rate-spike-route", EntityKind::Route, "GET /login", 60);
        let mut events = vec![
            IncidentEvent::Opened(scanner.clone()),
            IncidentEvent::Opened(brute.clone()),
            IncidentEvent::Opened(other.clone()),
            IncidentEvent::Opened(route),
            IncidentEvent::Opened(subnet.clone()),
            closed(scanner.clone(), 100),
        ];
        let mut related = Related::default();
        related.link(&mut events);
        assert_eq!(events[0].incident().related, Vec::<String>::new());
        assert_eq!(events[1].incident().related, vec![scanner.id.clone()]);
        assert!(events[2].incident().related.is_empty(), "another address");
        assert!(
            events[3].incident().related.is_empty(),
            "a route is no actor"
        );
        assert_eq!(
            events[4].incident().related,
            vec![scanner.id.clone(), brute.id.clone()],
            "an address inside the network"
        );
        assert_eq!(
            events[5].incident().related,
            vec![brute.id.clone(), subnet.id.clone()],
            "the closing view lists those that came later"
        );
    }

    #[test]
    fn episodes_apart_are_not_linked_nor_one_detectors_own() {
        let first = incident("scanner-ip", EntityKind::Ip, "203.0.113.7", 0);
        let again = incident("scanner-ip", EntityKind::Ip, "203.0.113.7", 200);
        let much_later = incident("brute-force-ip", EntityKind::Ip, "203.0.113.7", 2_000);
        let mut events = vec![
            IncidentEvent::Opened(first.clone()),
            closed(first, 100),
            IncidentEvent::Opened(again.clone()),
            closed(again, 300),
            IncidentEvent::Opened(much_later),
        ];
        let mut related = Related::default();
        related.link(&mut events);
        assert!(events[2].incident().related.is_empty(), "same detector");
        assert!(
            events[4].incident().related.is_empty(),
            "over ten minutes apart"
        );
    }
}
