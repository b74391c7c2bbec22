//! `/api/v1/incidents` handlers: the same filters as `gatewatch incidents list`, as query
//! parameters, with cursor pagination.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::clock::wall_clock;
use crate::query_text::QueryText;
use crate::store::{StoreError, StoredIncident, TriageState};

#[derive(Serialize)]
pub(super) struct PageBody {
    incidents: Vec<StoredIncident>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct TriageBody {
    note: Option<String>,
}

pub(super) struct ApiError(StatusCode, String);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(status, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let status = match &err {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Ambiguous(_) | StoreError::ShortId(_) => StatusCode::BAD_REQUEST,
            err if err.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // The database's own words stay in the log: they describe our schema and server.
        let message = match status {
            StatusCode::SERVICE_UNAVAILABLE => "the store is unavailable; try again".to_owned(),
            StatusCode::INTERNAL_SERVER_ERROR => "internal error (logged)".to_owned(),
            _ => err.to_string(),
        };
        if status.is_server_error() {
            tracing::warn!(error = %err, "API request failed");
        }
        ApiError(status, message)
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// PostgreSQL text cannot hold NUL: refuse it as the caller's mistake, before any query.
fn no_nul(what: &str, text: &str) -> Result<(), ApiError> {
    if text.contains('\0') {
        return Err(bad_request(format!("{what}: contains a NUL character")));
    }
    Ok(())
}

pub(super) async fn list(
    State(state): State<AppState>,
    query: Result<Query<QueryText>, QueryRejection>,
) -> Result<Json<PageBody>, ApiError> {
    let Query(text) = query.map_err(|e| bad_request(e.body_text()))?;
    let mut query = text.to_query(wall_clock()).map_err(bad_request)?;
    query.with_evidence = true;
    let page = state.store.list_incidents(&query).await?;
    Ok(Json(PageBody {
        incidents: page.incidents,
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

pub(super) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StoredIncident>, ApiError> {
    no_nul("id", &id)?;
    Ok(Json(state.store.get_incident(&id).await?))
}

async fn set_triage(
    state: AppState,
    id: String,
    body: Result<Json<TriageBody>, JsonRejection>,
    triage: TriageState,
) -> Result<Json<StoredIncident>, ApiError> {
    let body = match body {
        Ok(Json(body)) => body,
        // An empty POST is a plain ack without a note.
        Err(JsonRejection::MissingJsonContentType(_)) => TriageBody::default(),
        // 413 for a body over the limit; every other mistake in it is 400.
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError(rejection.status(), rejection.body_text()))
        }
        Err(rejection) => return Err(bad_request(rejection.body_text())),
    };
    no_nul("id", &id)?;
    if let Some(note) = &body.note {
        no_nul("note", note)?;
    }
    let id = state.store.resolve_id(&id).await?;
    state
        .store
        .set_triage(&id, triage, body.note.as_deref())
        .await?;
    Ok(Json(state.store.get_incident(&id).await?))
}

pub(super) async fn ack(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<TriageBody>, JsonRejection>,
) -> Result<Json<StoredIncident>, ApiError> {
    set_triage(state, id, body, TriageState::Acknowledged).await
}

pub(super) async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<TriageBody>, JsonRejection>,
) -> Result<Json<StoredIncident>, ApiError> {
    set_triage(state, id, body, TriageState::Resolved).await
}

/// Ready when the store answers with the schema this binary needs and (in the daemon) the
/// sources are open. Unauthenticated: the reason is short, the database's error is logged.
pub(super) async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if let Some(open) = &state.sources_open {
        if !open.load(std::sync::atomic::Ordering::Relaxed) {
            return (StatusCode::SERVICE_UNAVAILABLE, "sources not open yet\n");
        }
    }
    if let Err(err) = state.store.ping().await {
        tracing::warn!(error = %err, "readiness: the store does not answer");
        return (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n");
    }
    match state.store.pending_migrations().await {
        Ok(0) => (StatusCode::OK, "ready\n"),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store schema not migrated (gatewatch migrate)\n",
        ),
        Err(err) => {
            tracing::warn!(error = %err, "readiness: cannot read the store's schema version");
            (StatusCode::SERVICE_UNAVAILABLE, "store schema unknown\n")
        }
    }
}
