//! The web console at `/ui/`: the incident list with the CLI's filters, an incident page
//! (explanation, evidence, related incidents, a per-minute timeline) and triage. Pages are
//! server-rendered; the API token entered once on `/ui/login` becomes a session cookie, and
//! the `Authorization: Bearer` header works too (for scripts and checks). Every page carries
//! a Content-Security-Policy that allows no script and no inline style.

mod pages;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{middleware, Form, Router};
use maud::Markup;
use serde::Deserialize;

use self::session::{Session, Sessions};
use super::auth::Auth;
use crate::clock::wall_clock;
use crate::query_text::QueryText;
use crate::store::{Store, StoreError, TriageState};

pub use pages::Filters;

#[derive(Clone)]
struct Console {
    store: Store,
    auth: Auth,
    sessions: Arc<Sessions>,
}

/// No script, no inline style, no framing, no form posting elsewhere.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub(super) fn router(store: Store, auth: Auth) -> Router {
    let console = Console {
        store,
        auth,
        sessions: Arc::new(Sessions::default()),
    };
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(list))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/incidents/{id}", get(incident))
        .route("/ui/incidents/{id}/triage", post(triage))
        .route("/ui/static/console.css", get(style))
        .with_state(console)
        .layer(middleware::map_response(page_headers))
}

async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// How a request proved it may see the console.
enum Access {
    /// A logged-in browser: its session (whose CSRF token forms must carry).
    Session(Session),
    /// `Authorization: Bearer` with the API token: a script, which CSRF cannot forge.
    Bearer,
}

impl Console {
    fn access(&self, headers: &HeaderMap) -> Option<Access> {
        if let Some(presented) = super::auth::bearer(headers) {
            return self
                .auth
                .token()
                .matches(presented.trim())
                .then_some(Access::Bearer);
        }
        let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
        let id = session::cookie_id(cookies)?;
        self.sessions.get(id).map(Access::Session)
    }
}

fn html(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

fn to_login() -> Response {
    Redirect::to("/ui/login").into_response()
}

fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    (status, html(pages::problem(title, message))).into_response()
}

fn store_problem(err: StoreError) -> Response {
    match err {
        StoreError::NotFound(_) => problem(StatusCode::NOT_FOUND, "Not found", &err.to_string()),
        StoreError::Ambiguous(_) | StoreError::ShortId(_) => {
            problem(StatusCode::BAD_REQUEST, "Bad request", &err.to_string())
        }
        err => {
            tracing::warn!(error = %err, "console request failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Store unavailable",
                "the store did not answer; try again",
            )
        }
    }
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::STYLE,
    )
        .into_response()
}

async fn login_page(State(console): State<Console>, headers: HeaderMap) -> Response {
    if console.access(&headers).is_some() {
        return Redirect::to("/ui/").into_response();
    }
    html(pages::login(None))
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

async fn login(State(console): State<Console>, request: Request) -> Response {
    // Behind a TLS-terminating proxy the cookie must only travel over TLS.
    let secure = (request.headers().get("x-forwarded-proto"))
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    let peer = (request.extensions().get::<ConnectInfo<SocketAddr>>())
        .map(|ConnectInfo(peer)| peer.to_string())
        .unwrap_or_else(|| "unknown".into());
    let Ok(Form(login)) = Form::<Login>::from_request(request, &()).await else {
        return (
            StatusCode::BAD_REQUEST,
            html(pages::login(Some("no token was sent"))),
        )
            .into_response();
    };
    if !console.auth.token().matches(login.token.trim()) {
        console
            .auth
            .log_refused(&peer, "POST", "/ui/login", "wrong console login");
        return (
            StatusCode::UNAUTHORIZED,
            html(pages::login(Some("That is not the API token."))),
        )
            .into_response();
    }
    let (id, _) = console.sessions.open();
    (
        [(header::SET_COOKIE, session::set_cookie(&id, secure))],
        Redirect::to("/ui/"),
    )
        .into_response()
}

async fn logout(State(console): State<Console>, headers: HeaderMap) -> Response {
    let id = (headers.get(header::COOKIE))
        .and_then(|v| v.to_str().ok())
        .and_then(session::cookie_id);
    if let Some(id) = id {
        console.sessions.close(id);
    }
    (
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

fn query_text(filters: &Filters) -> QueryText {
    let some = |text: &str| (!text.trim().is_empty()).then(|| text.trim().to_owned());
    QueryText {
        since: some(&filters.since),
        until: some(&filters.until),
        detector: some(&filters.detector),
        kind: some(&filters.kind),
        entity: some(&filters.entity),
        severity: some(&filters.severity),
        status: some(&filters.status),
        limit: None,
        cursor: some(&filters.cursor),
    }
}

async fn list(
    State(console): State<Console>,
    headers: HeaderMap,
    filters: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if console.access(&headers).is_none() {
        return to_login();
    }
    let filters = filters.map(|Query(f)| f).unwrap_or_default();
    let query = match query_text(&filters).to_query(wall_clock()) {
        Ok(query) => query,
        Err(message) => {
            let page = pages::list(&filters, &[], None, Some(&message));
            return (StatusCode::BAD_REQUEST, html(page)).into_response();
        }
    };
    match console.store.list_incidents(&query).await {
        Ok(page) => html(pages::list(
            &filters,
            &page.incidents,
            page.next.map(|c| c.to_string()),
            None,
        )),
        Err(err) => store_problem(err),
    }
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

async fn incident(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(access) = console.access(&headers) else {
        return to_login();
    };
    let stored = match console.store.get_incident(&id).await {
        Ok(stored) => stored,
        Err(err) => return store_problem(err),
    };
    let mut related = Vec::new();
    for other in &stored.incident.related {
        if let Ok(found) = console.store.get_incident(other).await {
            related.push(found);
        }
    }
    let csrf = match &access {
        Access::Session(session) => Some(session.csrf.as_str()),
        Access::Bearer => None,
    };
    let notice = (done.ok())
        .and_then(|Query(done)| done.done)
        .and_then(|state| TriageState::parse(&state))
        .map(|state| format!("Marked {}.", state.as_str()));
    html(pages::incident(&stored, &related, csrf, notice.as_deref()))
}

#[derive(Deserialize)]
struct TriageForm {
    #[serde(default)]
    csrf: String,
    action: String,
    #[serde(default)]
    note: String,
}

async fn triage(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<TriageForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(access) = console.access(&headers) else {
        return problem(StatusCode::UNAUTHORIZED, "Not logged in", "log in first");
    };
    let Ok(Form(form)) = form else {
        return problem(StatusCode::BAD_REQUEST, "Bad request", "not a triage form");
    };
    if let Access::Session(session) = &access {
        if !session.csrf_matches(&form.csrf) {
            return problem(
                StatusCode::FORBIDDEN,
                "Refused",
                "the form's CSRF token is not this session's: reload the page",
            );
        }
    }
    let state = match form.action.as_str() {
        "acknowledge" => TriageState::Acknowledged,
        "resolve" => TriageState::Resolved,
        other => {
            let message = format!("{other:?} is not acknowledge or resolve");
            return problem(StatusCode::BAD_REQUEST, "Bad request", &message);
        }
    };
    let note = Some(form.note.trim()).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.contains('\0')) {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "note: contains a NUL character",
        );
    }
    let id = match console.store.resolve_id(&id).await {
        Ok(id) => id,
        Err(err) => return store_problem(err),
    };
    if let Err(err) = console.store.set_triage(&id, state, note).await {
        return store_problem(err);
    }
    Redirect::to(&format!("/ui/incidents/{id}?done={}", state.as_str())).into_response()
}
