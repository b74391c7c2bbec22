//! `bad_user_agent`: a client whose user agent names a known attack tool (Nikto, sqlmap,
//! zgrab, …) and that is engaging the site: the site answered some of its requests (a
//! tool that got content is mapping a live application), or it keeps going. One to three
//! stray requests from a tool that found nothing are internet background noise: counted
//! per client, not an incident.

use std::net::IpAddr;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind};
use serde::{Deserialize, Serialize};

use super::definition::{BadAgentParams, DetectorDef};
use super::episodes::{EpisodeSettings, Episodes, Opening};
use super::incident::{IncidentEvent, Score, Severity};
use super::path_match::{MatchField, PathMatch};
use super::state::{self, RestoreReport, Shape, StateRow};
use super::{Context, Detector, DetectorStats};
use crate::event::{Request, Timestamp};
use crate::window::{KeyTable, RateWindow};

#[derive(Serialize, Deserialize)]
struct ToolState {
    /// Requests with a tool's user agent in the window.
    requests: RateWindow,
    /// Those the site answered (1xx–3xx).
    answered: RateWindow,
    first_seen: Timestamp,
}

pub struct BadAgent {
    id: String,
    severity: Severity,
    params: BadAgentParams,
    agents: Arc<AhoCorasick>,
    /// This detector's bit in the engine's `PathMatch`, when it has one.
    agent_bit: Option<u8>,
    keys: KeyTable<IpAddr, ToolState>,
    episodes: Episodes<IpAddr>,
}

impl BadAgent {
    pub fn new(def: &DetectorDef, params: &BadAgentParams, path_match: &mut PathMatch) -> Self {
        let agents = Arc::new(
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&params.agents)
                .expect("definition checked the patterns"),
        );
        let agent_bit = path_match.register_on(agents.clone(), &[], None, MatchField::UserAgent);
        BadAgent {
            id: def.id.clone(),
            severity: def.severity,
            agents,
            agent_bit,
            keys: KeyTable::new(params.capacity),
            episodes: Episodes::new(EpisodeSettings::of(def, params.quiet_nanos)),
            params: params.clone(),
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            kind: "bad_user_agent",
            window: self.params.window,
        }
    }

    fn is_tool(&self, req: &Request<'_>, ctx: &Context<'_>) -> bool {
        match (ctx.path_bits, self.agent_bit) {
            // Matched already, on a decode thread.
            (Some(bits), Some(bit)) => bits & (1 << bit) != 0,
            _ => req
                .user_agent
                .as_deref()
                .is_some_and(|agent| self.agents.is_match(agent)),
        }
    }
}

/// The first of the tool names found in a user agent, for the summary.
fn tool_name<'a>(agents: &AhoCorasick, patterns: &'a [String], agent: &[u8]) -> &'a str {
    agents.find(agent).map_or("an attack tool", |m| {
        patterns[m.pattern().as_usize()].as_str()
    })
}

impl Detector for BadAgent {
    fn id(&self) -> &str {
        &self.id
    }

    fn observe(
        &mut self,
        req: &Request<'_>,
        line: &[u8],
        ctx: &Context<'_>,
        events: &mut Vec<IncidentEvent>,
    ) {
        let (Some(ip), Some(ts)) = (req.client_ip, req.ts) else {
            return;
        };
        if !self.is_tool(req, ctx) {
            return;
        }
        let spec = self.params.window;
        let bucket = spec.bucket_of(ts);
        let answered = req.status.is_some_and(|s| (100..400).contains(&s));
        let state = self.keys.get_or_insert(ip, || ToolState {
            requests: RateWindow::new(bucket),
            answered: RateWindow::new(bucket),
            first_seen: ts,
        });
        state.requests.record(&spec, bucket, |_, _| {});
        state.answered.advance(&spec, bucket, |_, _| {});
        if answered {
            state.answered.add(&spec, bucket, 1);
        }
        let (count, answers) = (state.requests.sum(), state.answered.sum());
        let first_seen = state.first_seen;
        if self.episodes.is_open(&ip) {
            self.episodes.touch(&ip, req, ts, line, count as f64, true);
            return;
        }
        let engaged = count >= self.params.min_requests && answers >= self.params.min_answered;
        if !engaged && count < self.params.min_unanswered {
            return;
        }
        let agent = req.user_agent.as_deref().unwrap_or_default();
        let tool = tool_name(&self.agents, &self.params.agents, agent);
        let window_secs = spec.window_nanos() / 1_000_000_000;
        let window_start = spec.bucket_start(bucket + 1 - spec.buckets() as i64);
        self.episodes.open(
            ip,
            Opening {
                started_at: window_start.max(first_seen),
                detected_at: ts,
                severity: self.severity,
                score: Score {
                    observed: count as f64,
                    expected: f64::from(if engaged {
                        self.params.min_requests
                    } else {
                        self.params.min_unanswered
                    }),
                    p_value: None,
                },
                summary: format!(
                    "{ip} sent {count} requests as {tool:?} in {window_secs}s, {answers} of them answered"
                ),
                line,
                req,
            },
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
        DetectorStats::of(&self.keys, &self.episodes)
    }

    /// Only per-key rows: a tool's requests so far count after a restart too.
    fn snapshot(&self, _now: Timestamp, rows: &mut Vec<StateRow>) {
        let (id, shape) = (&self.id, &self.shape());
        state::snapshot_windowed(id, shape, &self.keys, &self.episodes, rows);
    }

    fn restore(&mut self, rows: Vec<StateRow>) -> RestoreReport {
        state::restore_windowed(&self.shape(), &mut self.keys, &mut self.episodes, rows)
    }
}

impl state::Windowed for ToolState {
    fn windows(&self) -> [&RateWindow; 2] {
        [&self.requests, &self.answered]
    }
}
