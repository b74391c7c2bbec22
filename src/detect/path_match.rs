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
    /// The path only (an exploit's mark in the path, not in a query parameter's value).
    Path,
    /// The raw request line (`GET /?author=2 HTTP/1.1`), when the format logs one.
    RequestLine,
    UserAgent,
}

/// Every detector's pattern set, in bit order.
#[derive(Clone)]
pub struct PathMatch {
    sets: Vec<(Arc<AhoCorasick>, StatusGate, MatchField)>,
    /// Tells this instance's entries in the per-thread user-agent cache from others'.
    id: u64,
    hasher: foldhash::fast::RandomState,
}

impl Default for PathMatch {
    fn default() -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        PathMatch {
            sets: Vec::new(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

/// Slots of the per-thread cache of user-agent results (direct-mapped, 96 KiB).
const AGENT_SLOTS: usize = 4096;

thread_local! {
    /// (instance id, user agent hash, its user-agent bits): a site has a few thousand user
    /// agents, each searched once instead of on every request (the search of a 120-byte
    /// agent through a case-insensitive automaton costs more than parsing the whole line).
    static AGENT_CACHE: std::cell::RefCell<Vec<(u64, u64, u32)>> =
        std::cell::RefCell::new(vec![(0, 0, 0); AGENT_SLOTS]);
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
        let mut agent_bits = None;
        self.sets
            .iter()
            .enumerate()
            .filter(|(i, (set, gate, field))| {
                passes(gate)
                    && match field {
                        MatchField::Target => matches(set, req),
                        MatchField::Path | MatchField::RequestLine => {
                            matches_field(set, req, *field)
                        }
                        MatchField::UserAgent => {
                            let bits = *agent_bits.get_or_insert_with(|| self.agent_bits(req));
                            bits & (1 << i) != 0
                        }
                    }
            })
            .fold(0, |bits, (i, _)| bits | 1 << i)
    }

    /// The bits of every user-agent set for the request's agent, from the cache.
    fn agent_bits(&self, req: &Request<'_>) -> u32 {
        use std::hash::BuildHasher;
        let Some(agent) = req.user_agent.as_deref() else {
            return 0;
        };
        let hash = self.hasher.hash_one(agent);
        let slot = (hash as usize) % AGENT_SLOTS;
        let cached = AGENT_CACHE.with(|cache| {
            let (id, seen, bits) = cache.borrow()[slot];
            (id == self.id && seen == hash).then_some(bits)
        });
        if let Some(bits) = cached {
            return bits;
        }
        let bits = self
            .sets
            .iter()
            .enumerate()
            .filter(|(_, (set, _, field))| *field == MatchField::UserAgent && set.is_match(agent))
            .fold(0, |bits, (i, _)| bits | 1 << i);
        AGENT_CACHE.with(|cache| cache.borrow_mut()[slot] = (self.id, hash, bits));
        bits
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

/// The path, the query, or (when the request line could not be split) the raw request
/// line contains one of the set's patterns.
/// `set` matches the request's `field` (the path or the query; `Target` as `matches`).
pub(super) fn matches_field(set: &AhoCorasick, req: &Request<'_>, field: MatchField) -> bool {
    match field {
        MatchField::Path => req.path.as_deref().is_some_and(|p| set.is_match(p)),
        MatchField::RequestLine => (req.request_line.as_deref()).is_some_and(|l| set.is_match(l)),
        MatchField::Target => matches(set, req),
        MatchField::UserAgent => req.user_agent.as_deref().is_some_and(|a| set.is_match(a)),
    }
}

pub(super) fn matches(set: &AhoCorasick, req: &Request<'_>) -> bool {
    req.path.as_deref().is_some_and(|p| set.is_match(p))
        || req.query.as_deref().is_some_and(|q| set.is_match(q))
        || (req.path.is_none() && req.request_line.as_deref().is_some_and(|l| set.is_match(l)))
}
