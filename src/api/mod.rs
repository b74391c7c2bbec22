//! The HTTP API over the store: `/healthz`, `/readyz`, and `/api/v1/incidents` behind a
//! bearer token; `server` is the hardened accept loop `serve` and `run` share.

mod auth;
mod connection;
mod console;
mod incidents;
mod server;
mod throttle;

pub use auth::{ApiToken, MIN_TOKEN_CHARS};
pub use server::{raise_open_file_limit, serve, ServeSettings, REQUEST_TIMEOUT};

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::store::Store;

/// The API described (OpenAPI 3), served at `/api/v1/openapi.json`; `tests/api.rs` keeps it
/// true to the routes and the incident contract.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The largest request body taken (triage notes are the only bodies).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
struct AppState {
    store: Store,
    /// The daemon's "every source is open" flag (`/readyz` waits for it).
    sources_open: Option<Arc<AtomicBool>>,
}

/// What the daemon adds to the API.
#[derive(Clone, Default)]
pub struct Daemon {
    pub sources_open: Option<Arc<AtomicBool>>,
    /// Renders `/metrics` in the Prometheus text format.
    pub metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

/// The whole API; the caller binds it to a listener.
pub fn router(store: Store, token: ApiToken) -> Router {
    router_for(store, token, Daemon::default())
}

/// The API with the daemon's readiness and `/metrics` (unauthenticated, as Prometheus
/// scrapes it; its labels carry no log content).
pub fn router_for(store: Store, token: ApiToken, daemon: Daemon) -> Router {
    let auth = auth::Auth::new(token);
    let console = console::router(store.clone(), auth.clone());
    let state = AppState {
        store,
        sources_open: daemon.sources_open,
    };
    let api = Router::new()
        .route("/api/v1/incidents", get(incidents::list))
        .route("/api/v1/incidents/{id}", get(incidents::show))
        .route("/api/v1/incidents/{id}/ack", post(incidents::ack))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route_layer(middleware::from_fn_with_state(
            auth.clone(),
            auth::require_bearer,
        ));
    let mut root = Router::new();
    if let Some(render) = daemon.metrics {
        root = root.route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        render(),
                    )
                }
            }),
        );
    }
    root.route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/readyz", get(incidents::ready))
        .merge(api)
        .with_state(state)
        .merge(console)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_large_bodies))
        .layer(middleware::map_response(protective_headers_layer))
}

/// A body announced larger than the limit is refused before any of it is read (a chunked
/// one is cut by `DefaultBodyLimit` as the handler reads it, also with 413).
async fn refuse_large_bodies(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(length) if length > MAX_BODY_BYTES as u64 => incidents::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body of {length} bytes; at most {MAX_BODY_BYTES} are accepted"),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Incidents carry attackers' text and analysts' notes: no cache keeps them, and no browser
/// guesses a type for them other than the one sent.
async fn protective_headers_layer(response: Response) -> Response {
    protective_headers(response)
}

fn protective_headers(mut response: Response) -> Response {
    use axum::http::header::{HeaderValue, CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
