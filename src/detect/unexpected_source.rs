//! `unexpected_source`: routes that only known networks may call (a CI/CD webhook that only
//! the Git host sends, an admin path only the office reaches). A request on such a route
//! from any other address is an incident for that address. A rule, not a baseline: it
//! holds from the first line, warm-up or not.

use std::net::IpAddr;

use ipnet::IpNet;

use super::definition::{DetectorDef, UnexpectedSourceParams};
use super::episodes::{EpisodeSettings, Episodes, Opening};
use super::incident::{IncidentEvent, Severity};
use super::state::{self, RestoreReport, Shape, StateRow};
use super::{Context, Detector, DetectorStats};
use crate::event::{Request, Timestamp};
use crate::window::WindowSpec;

pub struct UnexpectedSource {
    id: String,
    severity: Severity,
    params: UnexpectedSourceParams,
    episodes: Episodes<IpAddr>,
}

impl UnexpectedSource {
    pub fn new(def: &DetectorDef, params: &UnexpectedSourceParams) -> Self {
        UnexpectedSource {
            id: def.id.clone(),
            severity: def.severity,
            episodes: Episodes::new(EpisodeSettings::of(def, params.quiet_nanos)),
            params: params.clone(),
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            kind: "unexpected_source",
            // No window: one bucket as long as the quiet period that closes an incident.
            window: WindowSpec::new(self.params.quiet_nanos, self.params.quiet_nanos)
                .expect("definition checked quiet"),
        }
    }
}

/// Log text for a summary: lossy, and cut (a path may be kilobytes long).
pub(super) fn short_text(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        text + "…"
    } else {
        text
    }
}

/// The allowed networks as a short list for a summary.
fn allowed_text(allow: &[IpNet]) -> String {
    let shown: Vec<String> = allow.iter().take(3).map(IpNet::to_string).collect();
    match allow.len() {
        0 => "no network".to_string(),
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

impl Detector for UnexpectedSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn observe(
        &mut self,
        req: &Request<'_>,
        line: &[u8],
        _ctx: &Context<'_>,
        events: &mut Vec<IncidentEvent>,
    ) {
        let (Some(ip), Some(ts)) = (req.client_ip, req.ts) else {
            return;
        };
        if !self.params.rule.matches(req) || self.params.allow.iter().any(|n| n.contains(&ip)) {
            return;
        }
        if self.episodes.is_open(&ip) {
            self.episodes.touch(&ip, req, ts, line, 1.0, true);
            return;
        }
        let text = |bytes: Option<&[u8]>| short_text(bytes.unwrap_or(b"-"));
        let summary = format!(
            "{ip} called {} {} on {}, which only {} may reach",
            text(req.method.as_deref()),
            text(req.path.as_deref()),
            text(req.host.as_deref()),
            allowed_text(&self.params.allow)
        );
        self.episodes.open(
            ip,
            Opening::single(ts, self.severity, summary, line, req),
            events,
        );
    }

    fn close_quiet(&mut self, now: Timestamp, events: &mut Vec<IncidentEvent>) {
        self.episodes.close_quiet(now, events);
    }

    fn close_all(&mut self, events: &mut Vec<IncidentEvent>) {
        self.episodes.close_all(events);
    }

    fn stats(&self) -> DetectorStats {
        DetectorStats {
            keys: 0,
            evictions: 0,
            open_incidents: self.episodes.open_count(),
            incidents: self.episodes.opened_total(),
        }
    }

    /// A rule learns nothing: only its open incidents are saved, so that a caller still
    /// calling after a restart goes on under the same incident.
    fn snapshot(&self, _now: Timestamp, rows: &mut Vec<StateRow>) {
        state::snapshot_episodes(&self.id, &self.shape(), &self.episodes, rows);
    }

    fn restore(&mut self, rows: Vec<StateRow>) -> RestoreReport {
        state::restore_episodes(&self.shape(), &mut self.episodes, rows)
    }
}
