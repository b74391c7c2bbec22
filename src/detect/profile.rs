//! What an entity did during an episode: its most frequent paths, statuses, user agents and
//! upstreams, counted in fixed space per open incident. The space-saving algorithm: a value
//! not tracked replaces the least frequent one and inherits its count, so a value seen more
//! often than 1/`TRACKED` of the time is never lost. Counts shown are the guaranteed ones
//! (less what a value inherited), so a scraper's thousand distinct paths read as 1 each, not
//! as the inherited totals.

use serde::{Deserialize, Serialize};

use super::incident::{Explain, Tally, MAX_TALLIES, MAX_TIMELINE_MINUTES};
use crate::event::Request;

/// Values tracked per field (twice what is shown, so the shown ones are nearly exact).
const TRACKED: usize = 2 * MAX_TALLIES;
/// Longest value kept, in bytes (attacker-chosen paths and agents can be huge).
const MAX_VALUE_BYTES: usize = 160;

#[derive(Clone, Debug, Default)]
struct TopValues {
    /// (value, count, inherited part of the count), in insertion order (which decides ties).
    entries: Vec<(Box<[u8]>, u64, u64)>,
}

impl TopValues {
    fn add(&mut self, value: &[u8]) {
        let value = &value[..value.len().min(MAX_VALUE_BYTES)];
        if let Some(entry) = self.entries.iter_mut().find(|(v, ..)| **v == *value) {
            entry.1 += 1;
            return;
        }
        if self.entries.len() < TRACKED {
            self.entries.push((value.into(), 1, 0));
            return;
        }
        let least = (0..self.entries.len())
            .min_by_key(|&i| self.entries[i].1)
            .unwrap_or(0);
        let inherited = self.entries[least].1;
        self.entries[least] = (value.into(), inherited + 1, inherited);
    }

    fn tallies(&self) -> Vec<Tally> {
        let mut sorted: Vec<(&[u8], u64)> = (self.entries.iter())
            .map(|(value, count, inherited)| (&**value, count - inherited))
            .collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        sorted
            .into_iter()
            .take(MAX_TALLIES)
            .map(|(value, count)| Tally {
                value: text(value),
                count,
            })
            .collect()
    }

    /// Everything tracked, as saved state: `[value, count, inherited]` in order.
    fn saved(&self) -> Vec<(String, u64, u64)> {
        (self.entries.iter())
            .map(|(value, count, inherited)| (text(value), *count, *inherited))
            .collect()
    }

    fn restored(saved: &[(String, u64, u64)]) -> Self {
        TopValues {
            entries: (saved.iter().take(TRACKED))
                .map(|(value, count, inherited)| {
                    (value.as_bytes().into(), *count, (*inherited).min(*count))
                })
                .collect(),
        }
    }
}

/// NUL-free like evidence: PostgreSQL text cannot hold it.
fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).replace('\0', "\u{FFFD}")
}

/// A profile as saved with an open episode, exactly (a restart changes no tally).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedProfile {
    paths: Vec<(String, u64, u64)>,
    statuses: Vec<(String, u64, u64)>,
    agents: Vec<(String, u64, u64)>,
    upstreams: Vec<(String, u64, u64)>,
    timeline: Vec<(i64, u64)>,
}

/// The requests of one open episode, summarised.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    paths: TopValues,
    statuses: TopValues,
    agents: TopValues,
    upstreams: TopValues,
    /// Requests per minute, `(minute start in Unix seconds, count)`, oldest first.
    timeline: std::collections::VecDeque<(i64, u64)>,
}

impl Profile {
    pub fn add(&mut self, req: &Request<'_>) {
        if let Some(path) = &req.path {
            self.paths.add(path);
        }
        if let Some(status) = req.status {
            self.statuses.add(status_digits(status).as_slice());
        }
        if let Some(agent) = &req.user_agent {
            self.agents.add(agent);
        }
        if let Some(upstream) = req.route.as_ref().or(req.upstream.as_ref()) {
            self.upstreams.add(upstream);
        }
        if let Some(ts) = req.ts {
            self.count_minute(ts.nanos().div_euclid(60 * crate::event::NANOS_PER_SEC) * 60);
        }
    }

    /// One more request in the minute starting at `minute` (an older line than the newest
    /// minute joins its own minute if it is still kept).
    fn count_minute(&mut self, minute: i64) {
        match self.timeline.back_mut() {
            Some((newest, count)) if *newest == minute => *count += 1,
            Some((newest, _)) if *newest > minute => {
                if let Some(entry) = self.timeline.iter_mut().find(|(m, _)| *m == minute) {
                    entry.1 += 1;
                }
            }
            _ => {
                self.timeline.push_back((minute, 1));
                if self.timeline.len() > MAX_TIMELINE_MINUTES {
                    self.timeline.pop_front();
                }
            }
        }
    }

    pub fn explain(&self, rule: &str) -> Explain {
        Explain {
            rule: rule.to_owned(),
            top_paths: self.paths.tallies(),
            statuses: self.statuses.tallies(),
            user_agents: self.agents.tallies(),
            upstreams: self.upstreams.tallies(),
            timeline: self.timeline.iter().copied().collect(),
        }
    }

    pub fn saved(&self) -> SavedProfile {
        SavedProfile {
            paths: self.paths.saved(),
            statuses: self.statuses.saved(),
            agents: self.agents.saved(),
            upstreams: self.upstreams.saved(),
            timeline: self.timeline.iter().copied().collect(),
        }
    }

    pub fn restored(saved: &SavedProfile) -> Self {
        Profile {
            paths: TopValues::restored(&saved.paths),
            statuses: TopValues::restored(&saved.statuses),
            agents: TopValues::restored(&saved.agents),
            upstreams: TopValues::restored(&saved.upstreams),
            timeline: (saved.timeline.iter().copied())
                .take(MAX_TIMELINE_MINUTES)
                .collect(),
        }
    }
}

/// A status code's decimal digits without allocating (it is counted on every request of an
/// open episode).
struct StatusDigits {
    buf: [u8; 5],
    len: usize,
}

impl StatusDigits {
    fn as_slice(&self) -> &[u8] {
        &self.buf[5 - self.len..]
    }
}

fn status_digits(mut status: u16) -> StatusDigits {
    let mut digits = StatusDigits {
        buf: [0; 5],
        len: 0,
    };
    loop {
        digits.len += 1;
        digits.buf[5 - digits.len] = b'0' + (status % 10) as u8;
        status /= 10;
        if status == 0 {
            return digits;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn request(path: &'static str, status: u16) -> Request<'static> {
        Request {
            path: Some(Cow::Borrowed(path.as_bytes())),
            status: Some(status),
            user_agent: Some(Cow::Borrowed(b"curl/8.0")),
            route: Some(Cow::Borrowed(b"api-svc")),
            ..Request::default()
        }
    }

    #[test]
    fn the_most_frequent_values_come_first_with_their_counts() {
        let mut profile = Profile::default();
        for _ in 0..30 {
            profile.add(&request("/wp-login.php", 200));
        }
        for n in 0..100 {
            // A hundred one-off paths cannot push out the one sent thirty times.
            let path: &'static str = Box::leak(format!("/probe/{n}").into_boxed_str());
            profile.add(&request(path, 404));
        }
        let explain = profile.explain("rule");
        assert_eq!(explain.rule, "rule");
        assert_eq!(explain.top_paths[0].value, "/wp-login.php");
        assert_eq!(explain.top_paths[0].count, 30);
        assert!(
            explain.top_paths[1..].iter().all(|t| t.count == 1),
            "one-off paths count once, whatever they inherited: {:?}",
            explain.top_paths
        );
        assert_eq!(explain.top_paths.len(), MAX_TALLIES);
        assert_eq!(
            explain.statuses,
            vec![
                Tally {
                    value: "404".into(),
                    count: 100
                },
                Tally {
                    value: "200".into(),
                    count: 30
                }
            ]
        );
        assert_eq!(explain.user_agents[0].count, 130);
        assert_eq!(explain.upstreams[0].value, "api-svc");
    }

    #[test]
    fn long_values_are_cut_and_nul_is_replaced() {
        let mut profile = Profile::default();
        let long: &'static str = Box::leak("/a\0".repeat(200).into_boxed_str());
        profile.add(&request(long, 7));
        let explain = profile.explain("");
        assert!(explain.top_paths[0].value.len() <= MAX_VALUE_BYTES * 3);
        assert!(!explain.top_paths[0].value.contains('\0'));
        assert_eq!(explain.statuses[0].value, "7");
    }

    #[test]
    fn a_saved_profile_goes_on_exactly_as_before() {
        let mut profile = Profile::default();
        for n in 0..40u16 {
            let path: &'static str = Box::leak(format!("/p/{}", n % 13).into_boxed_str());
            profile.add(&request(path, 200 + n % 3));
        }
        profile.add(&request("/x", 65535));
        let text = serde_json::to_string(&profile.saved()).unwrap();
        let mut back = Profile::restored(&serde_json::from_str(&text).unwrap());
        for n in 0..40u16 {
            let path: &'static str = Box::leak(format!("/q/{}", n % 7).into_boxed_str());
            profile.add(&request(path, 500));
            back.add(&request(path, 500));
        }
        assert_eq!(back.explain("r"), profile.explain("r"));
        assert!(profile
            .explain("r")
            .statuses
            .iter()
            .any(|t| t.value == "65535"));
    }
}

#[cfg(test)]
mod timeline_tests {
    use super::*;
    use crate::event::Timestamp;

    fn at(secs: i64) -> Request<'static> {
        Request {
            ts: Some(Timestamp(secs * 1_000_000_000)),
            ..Request::default()
        }
    }

    #[test]
    fn requests_are_counted_per_minute_and_late_ones_join_their_minute() {
        let mut profile = Profile::default();
        for secs in [0, 10, 59, 60, 61, 185, 30] {
            profile.add(&at(secs));
        }
        assert_eq!(profile.explain("").timeline, [(0, 4), (60, 2), (180, 1)]);
    }

    #[test]
    fn the_timeline_keeps_its_newest_minutes() {
        let mut profile = Profile::default();
        for minute in 0..(MAX_TIMELINE_MINUTES as i64 + 10) {
            profile.add(&at(minute * 60));
        }
        let timeline = profile.explain("").timeline;
        assert_eq!(timeline.len(), MAX_TIMELINE_MINUTES);
        assert_eq!(timeline[0].0, 10 * 60);
    }
}
