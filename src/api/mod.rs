//! The HTTP API over the store: `/healthz`, `/readyz`, and `/api/v1/incidents` behind a
//! bearer token.

mod auth;
mod incidents;

pub use auth::ApiToken;

use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::store::Store;

#[derive(Clone)]
struct AppState {
    store: Store,
}

/// The whole API; the caller binds it to a listener.
pub fn router(store: Store, token: ApiToken) -> Router {
    let state = AppState { store };
    let api = Router::new()
        .route("/api/v1/incidents", get(incidents::list))
        .route("/api/v1/incidents/{id}", get(incidents::show))
        .route("/api/v1/incidents/{id}/ack", post(incidents::ack))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route_layer(middleware::from_fn_with_state(token, auth::require_bearer));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(incidents::ready))
        .merge(api)
        .with_state(state)
}
