//! Pattern sets (a scanner's sensitive paths, a brute force's auth routes, attack tools'
//! user agents) that can be matched ahead of the engine: the pipeline's decode threads match
//! every request once and hand the engine one bit per set, so the single engine thread does
//! no string searching.

use std::sync::Arc;

use aho_corasick::AhoCorasick;

use crate::event::Request;

/// Sets beyond this many are matched by their detector, on the engine thread.
pub const MAX_SETS: usize = 32;

/// Statuses for which a set matters (a brute force looks at the path of failed logins
/// only); `None`: every request.
pub type StatusGate = Option<Arc<[bool; 600]>>;

/// What of a request a set is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchField {
    /// The path, the query, or an unsplit request line (see `matches`).
    Target,
    UserAgent,
}

/// Every detector's pattern set, in bit order.
#[derive(Clone, Default)]
pub struct PathMatch {
    sets: Vec<(Arc<AhoCorasick>, StatusGate, MatchField)>,
}

impl PathMatch {
    /// Registers a set of path patterns; its bit, or `None` when every bit is taken. With a
    /// gate, the bit is only computed for requests whose status passes it (clear otherwise).
    pub(super) fn register(&mut self, set: Arc<AhoCorasick>, gate: StatusGate) -> Option<u8> {
        self.register_on(set, gate, MatchField::Target)
    }

    /// `register` for a set matched against `field`.
    pub(super) fn register_on(
        &mut self,
        set: Arc<AhoCorasick>,
        gate: StatusGate,
        field: MatchField,
    ) -> Option<u8> {
        if self.sets.len() >= MAX_SETS {
            return None;
        }
        self.sets.push((set, gate, field));
        Some((self.sets.len() - 1) as u8)
    }

    /// Bit `i` is set when the request matches set `i` (and passes its gate).
    pub fn bits(&self, req: &Request<'_>) -> u32 {
        let passes = |gate: &StatusGate| match gate {
            None => true,
            Some(statuses) => req
                .status
                .is_some_and(|s| statuses.get(s as usize).copied().unwrap_or(false)),
        };
        self.sets
            .iter()
            .enumerate()
            .filter(|(_, (set, gate, field))| {
                passes(gate)
                    && match field {
                        MatchField::Target => matches(set, req),
                        MatchField::UserAgent => {
                            req.user_agent.as_deref().is_some_and(|a| set.is_match(a))
                        }
                    }
            })
            .fold(0, |bits, (i, _)| bits | 1 << i)
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

/// The path, the query, or (when the request line could not be split) the raw request
/// line contains one of the set's patterns.
pub(super) fn matches(set: &AhoCorasick, req: &Request<'_>) -> bool {
    req.path.as_deref().is_some_and(|p| set.is_match(p))
        || req.query.as_deref().is_some_and(|q| set.is_match(q))
        || (req.path.is_none() && req.request_line.as_deref().is_some_and(|l| set.is_match(l)))
}
