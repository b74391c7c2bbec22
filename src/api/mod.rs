//! The HTTP API over the store: `/healthz`, `/readyz`, and `/api/v1/incidents` behind a
//! bearer token.

mod auth;
mod incidents;

pub use auth::ApiToken;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::store::Store;

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
    let state = AppState {
        store,
        sources_open: daemon.sources_open,
    };
    let api = Router::new()
        .route("/api/v1/incidents", get(incidents::list))
        .route("/api/v1/incidents/{id}", get(incidents::show))
        .route("/api/v1/incidents/{id}/ack", post(incidents::ack))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route_layer(middleware::from_fn_with_state(token, auth::require_bearer));
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
        .route("/readyz", get(incidents::ready))
        .merge(api)
        .with_state(state)
        .layer(middleware::map_response(protective_headers))
}

/// Incidents carry attackers' text and analysts' notes: no cache keeps them, and no browser
/// guesses a type for them other than the one sent.
async fn protective_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::header::{HeaderValue, CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
