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
    /// The raw request line (`GET /?author=2 HTTP/1.1`) of a request with a query string,
    /// when the format logs one (requests without a query are not searched: most are).
    QueryRequestLine,
    UserAgent,
}

/// Every detector's pattern set, in bit order.
#[derive(Clone)]
pub struct PathMatch {
    sets: Vec<Set>,
    /// Each set's patterns (none for user-agent sets), for the combined automata.
    patterns: Vec<Vec<String>>,
    /// Every path, query and request-line set in one automaton per field, built by
    /// `finish`: a request's path is scanned once, however many sets there are.
    combined: Option<Arc<Combined>>,
    /// Tells this instance's entries in the per-thread user-agent cache from others'.
    id: u64,
    hasher: foldhash::fast::RandomState,
}

impl Default for PathMatch {
    fn default() -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        PathMatch {
            sets: Vec::new(),
            patterns: Vec::new(),
            combined: None,
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
    /// `set` is built from `patterns` (case-insensitive substrings).
    pub(super) fn register(
        &mut self,
        set: Arc<AhoCorasick>,
        patterns: &[String],
        gate: StatusGate,
    ) -> Option<u8> {
        self.register_on(set, patterns, gate, MatchField::Target)
    }

    /// `register` for a set matched against `field`.
    pub(super) fn register_on(
        &mut self,
        set: Arc<AhoCorasick>,
        patterns: &[String],
        gate: StatusGate,
        field: MatchField,
    ) -> Option<u8> {
        if self.sets.len() >= MAX_SETS {
            return None;
        }
        self.sets.push((set, gate, field));
        self.patterns.push(patterns.to_vec());
        self.combined = None;
        Some((self.sets.len() - 1) as u8)
    }

    /// Builds the combined automata: call once every set is registered.
    pub(super) fn finish(&mut self) {
        self.combined = Some(Arc::new(Combined::new(&self.sets, &self.patterns)));
    }

    /// Bit `i` is set when the request matches set `i` (and passes its gate).
    pub fn bits(&self, req: &Request<'_>) -> u32 {
        let mut bits = match &self.combined {
            Some(combined) => combined.bits(req),
            None => self.one_by_one(req),
        };
        if self.has_agent_sets() {
            bits |= self.agent_bits(req);
        }
        for (i, (_, gate, _)) in self.sets.iter().enumerate() {
            if let Some(statuses) = gate {
                let passes = (req.status)
                    .is_some_and(|s| statuses.get(s as usize).copied().unwrap_or(false));
                if !passes {
                    bits &= !(1 << i);
                }
            }
        }
        bits
    }

    /// Path, query and request-line bits, set by set (before `finish`).
    fn one_by_one(&self, req: &Request<'_>) -> u32 {
        (self.sets.iter().enumerate())
            .filter(|(_, (set, _, field))| {
                *field != MatchField::UserAgent && matches_field(set, req, *field)
            })
            .fold(0, |bits, (i, _)| bits | 1 << i)
    }

    fn has_agent_sets(&self) -> bool {
        (self.sets.iter()).any(|(_, _, field)| *field == MatchField::UserAgent)
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

/// One automaton over the patterns of every set matched against a field, each pattern
/// (deduplicated, case-insensitively) mapped to the bits of the sets that have it.
struct FieldAutomaton {
    automaton: AhoCorasick,
    bits: Vec<u32>,
}

impl FieldAutomaton {
    fn new(entries: Vec<(String, u32)>) -> Option<Self> {
        let mut patterns: Vec<String> = Vec::new();
        let mut bits: Vec<u32> = Vec::new();
        for (pattern, bit) in entries {
            let lower = pattern.to_ascii_lowercase();
            match patterns.iter().position(|p| *p == lower) {
                Some(known) => bits[known] |= bit,
                None => {
                    patterns.push(lower);
                    bits.push(bit);
                }
            }
        }
        if patterns.is_empty() {
            return None;
        }
        let automaton = target_automaton(&patterns).expect("each set's patterns built alone");
        Some(FieldAutomaton { automaton, bits })
    }

    /// The bits of every set with a pattern in `text`.
    fn scan(&self, text: &[u8]) -> u32 {
        // Most requests match nothing: the plain search is a tighter loop than the
        // overlapping one that finds every set's pattern.
        if !self.automaton.is_match(text) {
            return 0;
        }
        (self.automaton.find_overlapping_iter(text)).fold(0, |bits, found| {
            bits | self.bits[found.pattern().as_usize()]
        })
    }
}

/// Every set's automaton folded into one per field.
struct Combined {
    /// Target and Path sets, over the path.
    path: Option<FieldAutomaton>,
    /// Target sets, over the query.
    query: Option<FieldAutomaton>,
    /// Target sets (for a request line that could not be split) and QueryRequestLine sets
    /// (for a request with a query), over the raw request line.
    line: Option<FieldAutomaton>,
    target_sets: u32,
    query_line_sets: u32,
}

type Set = (Arc<AhoCorasick>, StatusGate, MatchField);

impl Combined {
    fn new(sets: &[Set], patterns: &[Vec<String>]) -> Self {
        let (mut path, mut query, mut line) = (Vec::new(), Vec::new(), Vec::new());
        let (mut target_sets, mut query_line_sets) = (0, 0);
        for (i, ((_, _, field), patterns)) in sets.iter().zip(patterns).enumerate() {
            let bit = 1u32 << i;
            let each = |list: &mut Vec<(String, u32)>| {
                list.extend(patterns.iter().map(|p| (p.clone(), bit)));
            };
            match field {
                MatchField::Target => {
                    target_sets |= bit;
                    each(&mut path);
                    each(&mut query);
                    each(&mut line);
                }
                MatchField::Path => each(&mut path),
                MatchField::QueryRequestLine => {
                    query_line_sets |= bit;
                    each(&mut line);
                }
                MatchField::UserAgent => {}
            }
        }
        Combined {
            path: FieldAutomaton::new(path),
            query: FieldAutomaton::new(query),
            line: FieldAutomaton::new(line),
            target_sets,
            query_line_sets,
        }
    }

    fn bits(&self, req: &Request<'_>) -> u32 {
        let mut bits = 0;
        if let (Some(automaton), Some(path)) = (&self.path, req.path.as_deref()) {
            bits |= automaton.scan(path);
        }
        if let (Some(automaton), Some(query)) = (&self.query, req.query.as_deref()) {
            bits |= automaton.scan(query);
        }
        if let (Some(automaton), Some(line)) = (&self.line, req.request_line.as_deref()) {
            let mut wanted = 0;
            if req.path.is_none() {
                wanted |= self.target_sets;
            }
            if req.query.is_some() {
                wanted |= self.query_line_sets;
            }
            if wanted != 0 {
                bits |= automaton.scan(line) & wanted;
            }
        }
        bits
    }
}

/// The automaton for path / query / request-line patterns: case-insensitive, a DFA (the
/// sets are small and every request is searched), and no start-byte prefilter: most
/// patterns start with `/`, which every path is full of, and a prefilter restarting at each
/// one costs more than the plain scan.
pub(super) fn target_automaton(
    patterns: &[String],
) -> Result<AhoCorasick, aho_corasick::BuildError> {
    aho_corasick::AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .prefilter(false)
        .build(patterns)
}

/// `set` matches the request's `field` (the path or the query; `Target` as `matches`).
pub(super) fn matches_field(set: &AhoCorasick, req: &Request<'_>, field: MatchField) -> bool {
    match field {
        MatchField::Path => req.path.as_deref().is_some_and(|p| set.is_match(p)),
        MatchField::QueryRequestLine => {
            req.query.is_some() && (req.request_line.as_deref()).is_some_and(|l| set.is_match(l))
        }
        MatchField::Target => matches(set, req),
        MatchField::UserAgent => req.user_agent.as_deref().is_some_and(|a| set.is_match(a)),
    }
}

/// The path, the query, or (when the request line could not be split) the raw request
/// line contains one of the set's patterns.
pub(super) fn matches(set: &AhoCorasick, req: &Request<'_>) -> bool {
    req.path.as_deref().is_some_and(|p| set.is_match(p))
        || req.query.as_deref().is_some_and(|q| set.is_match(q))
        || (req.path.is_none() && req.request_line.as_deref().is_some_and(|l| set.is_match(l)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn set(patterns: &[&str]) -> (Arc<AhoCorasick>, Vec<String>) {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        let built = aho_corasick::AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(&patterns)
            .unwrap();
        (Arc::new(built), patterns)
    }

    fn request(
        path: Option<&'static str>,
        query: Option<&'static str>,
        line: &'static str,
        status: u16,
    ) -> Request<'static> {
        Request {
            path: path.map(|p| Cow::Borrowed(p.as_bytes())),
            query: query.map(|q| Cow::Borrowed(q.as_bytes())),
            request_line: Some(Cow::Borrowed(line.as_bytes())),
            status: Some(status),
            ..Request::default()
        }
    }

    #[test]
    fn the_combined_automata_give_every_sets_own_answer() {
        let mut sets = PathMatch::default();
        let mut statuses = [false; 600];
        statuses[401] = true;
        let (sensitive, sp) = set(&["/.env", "/wp-login", "union select"]);
        let (auth, ap) = set(&["login", "/.ENV"]);
        let (exploit, ep) = set(&["%3f"]);
        let (author, qp) = set(&[" /?author="]);
        sets.register(sensitive, &sp, None);
        sets.register(auth, &ap, Some(Arc::new(statuses)));
        sets.register_on(exploit, &ep, None, MatchField::Path);
        sets.register_on(author, &qp, None, MatchField::QueryRequestLine);
        let requests = [
            request(Some("/.env"), None, "GET /.env HTTP/1.1", 404),
            request(Some("/.Env"), None, "GET /.Env HTTP/1.1", 401),
            request(
                Some("/wp-login.php"),
                None,
                "POST /wp-login.php HTTP/1.1",
                401,
            ),
            request(
                Some("/a"),
                Some("q=union select 1"),
                "GET /a?q=union select 1 HTTP/1.1",
                200,
            ),
            request(Some("/x%3F"), None, "GET /x%3F HTTP/1.1", 404),
            request(
                Some("/x"),
                Some("next=%3f"),
                "GET /x?next=%3f HTTP/1.1",
                404,
            ),
            request(Some("/"), Some("author=2"), "GET /?author=2 HTTP/1.1", 200),
            request(Some("/"), None, "GET /?author=2 HTTP/1.1", 200),
            request(None, None, "\\x16\\x03 /.env login", 401),
        ];
        let one_by_one: Vec<u32> = requests.iter().map(|r| sets.bits(r)).collect();
        sets.finish();
        let combined: Vec<u32> = requests.iter().map(|r| sets.bits(r)).collect();
        assert_eq!(combined, one_by_one);
        assert_eq!(
            combined,
            [0b0001, 0b0011, 0b0011, 0b0001, 0b0100, 0, 0b1000, 0, 0b0011]
        );
    }
}
