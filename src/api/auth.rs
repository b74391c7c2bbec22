//! Bearer-token check for `/api/v1`: constant-time, so response timing tells nothing about
//! how much of a guess was right.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::throttle::Throttled;

/// Shorter tokens are refused at start: a guessable token is no token.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Refused requests are logged at most this often (with a count of the rest).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The expected token, kept only as its SHA-256 so comparisons have a fixed length.
#[derive(Clone)]
pub struct ApiToken {
    digest: [u8; 32],
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(…)")
    }
}

impl ApiToken {
    /// Surrounding whitespace is ignored (token files usually end in a newline); an empty
    /// or short token is refused, since it would let anyone (who guesses) in.
    pub fn new(token: &str) -> Result<ApiToken, String> {
        let token = token.trim();
        let chars = token.chars().count();
        if chars == 0 {
            return Err("no API token (the API refuses to serve incidents without one)".into());
        }
        if chars < MIN_TOKEN_CHARS {
            return Err(format!(
                "the API token is {chars} characters long; at least {MIN_TOKEN_CHARS} are \
                 required (e.g. `head -c 24 /dev/urandom | base64`)"
            ));
        }
        Ok(ApiToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    pub(super) fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// The token and the throttled log of refusals.
#[derive(Clone)]
pub(super) struct Auth {
    token: ApiToken,
    refused: Arc<Mutex<Throttled>>,
}

impl Auth {
    pub fn new(token: ApiToken) -> Auth {
        Auth {
            token,
            refused: Arc::new(Mutex::new(Throttled::new(REFUSAL_LOG_INTERVAL))),
        }
    }

    pub(super) fn token(&self) -> &ApiToken {
        &self.token
    }

    /// Logs a refusal (never the token presented), at most once per interval.
    pub(super) fn log_refusal(&self, request: &Request, reason: &str) {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.to_string())
            .unwrap_or_else(|| "unknown".into());
        self.log_refused(
            &peer,
            request.method().as_str(),
            request.uri().path(),
            reason,
        );
    }

    /// `log_refusal` from what a handler kept of its request.
    pub(super) fn log_refused(&self, peer: &str, method: &str, path: &str, reason: &str) {
        let report = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hit(tokio::time::Instant::now());
        let Some(more) = report else { return };
        tracing::warn!(
            %peer,
            method,
            path,
            refused_since_last_report = more,
            "API request refused: {reason}"
        );
    }
}

/// The token of an `Authorization: Bearer …` header, if the request has one.
pub(super) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    (headers.get(header::AUTHORIZATION))
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
}

pub(super) async fn require_bearer(
    State(auth): State<Auth>,
    request: Request,
    next: Next,
) -> Response {
    let header = request.headers().get(header::AUTHORIZATION);
    let presented = bearer(request.headers());
    let reason = match presented {
        Some(presented) if auth.token.matches(presented.trim()) => None,
        Some(_) => Some("wrong bearer token"),
        None if header.is_some() => Some("not a bearer token"),
        None => Some("no Authorization header"),
    };
    let Some(reason) = reason else {
        return next.run(request).await;
    };
    auth.log_refusal(&request, reason);
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({"error": "missing or wrong bearer token"})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly() {
        let token = ApiToken::new("s3cret-s3cret-s3cret\n").unwrap();
        assert!(token.matches("s3cret-s3cret-s3cret"));
        assert!(!token.matches("s3cret-s3cret-s3cre"));
        assert!(!token.matches("s3cret-s3cret-s3cret2"));
        assert!(ApiToken::new("  \n").unwrap_err().contains("no API token"));
        let short = ApiToken::new("x").unwrap_err();
        assert!(short.contains("1 characters long; at least 16"), "{short}");
        assert!(ApiToken::new("0123456789abcdef").is_ok());
    }
}
