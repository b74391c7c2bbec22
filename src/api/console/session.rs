//! Console sessions: the API token, entered once on the login page, becomes a random
//! session id in an HttpOnly, SameSite=Strict cookie; each session has its own CSRF token
//! that every form posts back. Sessions live in memory (a restart logs analysts out).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "gatewatch_session";
/// How long a session lasts without use.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first): a login loop cannot exhaust memory.
const MAX_SESSIONS: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub csrf: String,
}

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, (Session, Instant)>>,
}

/// 32 random bytes as hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// A new session: its id (for the cookie) and its CSRF token.
    #[allow(clippy::disallowed_methods)] // session expiry is wall-clock by nature
    pub fn open(&self) -> (String, Session) {
        let id = random_hex();
        let session = Session { csrf: random_hex() };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        live.retain(|_, (_, used)| now.duration_since(*used) < IDLE);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = (live.iter())
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), (session.clone(), now));
        (id, session)
    }

    /// The session of a cookie's id, refreshed; `None` when unknown or expired.
    #[allow(clippy::disallowed_methods)]
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (session, used) = live.get_mut(id)?;
        if now.duration_since(*used) >= IDLE {
            live.remove(id);
            return None;
        }
        *used = now;
        Some(session.clone())
    }

    pub fn close(&self, id: &str) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(id);
    }
}

impl Session {
    /// Whether a form's CSRF field is this session's (constant-time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        self.csrf.len() == presented.len()
            && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_id(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a session: HttpOnly, SameSite=Strict, scoped to the console, and
/// Secure when the request came over TLS (a TLS-terminating proxy says so).
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=43200{secure}")
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_only_until_closed() {
        let sessions = Sessions::default();
        let (id, session) = sessions.open();
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.get(&id), Some(session.clone()));
        assert_eq!(sessions.get("0000"), None);
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(&session.csrf[1..]));
        assert!(!session.csrf_matches(""));
        sessions.close(&id);
        assert_eq!(sessions.get(&id), None);
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_strictly() {
        assert_eq!(cookie_id("a=1; gatewatch_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie_id("gatewatch_sessionx=abc"), None);
        let set = set_cookie("abc", true);
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/ui"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
    }
}
