//! The HTTP API over real HTTP, on a SQLite file and on the real PostgreSQL server.

mod common;

use gatewatch::api::{router, ApiToken};
use gatewatch::detect::{incident_id, Incident, Severity};
use gatewatch::event::{EntityKind, Timestamp};
use gatewatch::store::Store;
use reqwest::StatusCode;
use serde_json::{json, Value};

use common::TestDb;

const TOKEN: &str = "test-token-4f9d";
/// 2026-11-18T11:06:40Z in ns; incident i starts i minutes later.
const T0: i64 = 1_795_000_000_000_000_000;

fn incident(entity: &str, start_s: i64, severity: Severity) -> Incident {
    let start = Timestamp(T0 + start_s * 1_000_000_000);
    Incident {
        severity,
        ..common::incident("rate-spike-ip", EntityKind::Ip, entity, start, 0)
    }
}

/// The entities of a page, in order.
fn entities(body: &Value) -> Vec<&str> {
    body["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["entity"].as_str().unwrap())
        .collect()
}

struct Server {
    base: String,
    client: reqwest::Client,
}

impl Server {
    async fn start(db: &TestDb) -> Server {
        let store = Store::open(&db.url).await.unwrap();
        let mut incidents: Vec<Incident> = (0..9)
            .map(|i| incident(&format!("192.0.2.{i}"), i * 60, Severity::Medium))
            .collect();
        incidents.push(incident("198.51.100.1", 1000, Severity::Critical));
        store.upsert_incidents(&incidents).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router(store, ApiToken::new(TOKEN).unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server {
            base,
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }
}

macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let db = super::TestDb::sqlite();
                super::$name(super::Server::start(&db).await).await;
            })+
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let Some(db) = super::TestDb::postgres(concat!("api::postgres::", stringify!($name))) else {
                    return;
                };
                super::$name(super::Server::start(&db).await).await;
            })+
        }
    };
}

on_both_backends!(
    health_is_open_and_incidents_need_the_token,
    filters_and_cursor_pages,
    one_incident_and_triage,
);

async fn health_is_open_and_incidents_need_the_token(server: Server) {
    assert_eq!(server.get("/healthz", None).await.0, StatusCode::OK);
    assert_eq!(server.get("/readyz", None).await.0, StatusCode::OK);
    let (status, body) = server.get("/api/v1/incidents", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing or wrong bearer token");
    for wrong in ["", "test-token-4f9", "test-token-4f9dx", "TEST-TOKEN-4F9D"] {
        assert_eq!(
            server.get("/api/v1/incidents", Some(wrong)).await.0,
            StatusCode::UNAUTHORIZED,
            "{wrong:?}"
        );
    }
    let response = server
        .client
        .get(format!("{}/api/v1/incidents/00", server.base))
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        server.get("/api/v1/incidents", Some(TOKEN)).await.0,
        StatusCode::OK
    );
    // Every answer, refused, failed or served: no cache keeps it, no browser sniffs it.
    for (path, token) in [
        ("/healthz", None),
        ("/api/v1/incidents", None),
        ("/api/v1/incidents", Some(TOKEN)),
        ("/api/v1/incidents/ffffffff", Some(TOKEN)),
        ("/api/v1/incidents?limit=0", Some(TOKEN)),
    ] {
        let mut request = server.client.get(format!("{}{path}", server.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
}

async fn filters_and_cursor_pages(server: Server) {
    let (status, body) = server.get("/api/v1/incidents?limit=100", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["incidents"].as_array().unwrap().len(), 10);
    assert!(body.get("next_cursor").is_none());

    let (_, body) = server
        .get(
            "/api/v1/incidents?entity=192.0.2.0/29&severity=medium",
            Some(TOKEN),
        )
        .await;
    assert_eq!(
        entities(&body),
        [
            "192.0.2.7",
            "192.0.2.6",
            "192.0.2.5",
            "192.0.2.4",
            "192.0.2.3",
            "192.0.2.2",
            "192.0.2.1",
            "192.0.2.0"
        ]
    );
    let (_, body) = server
        .get("/api/v1/incidents?severity=critical", Some(TOKEN))
        .await;
    assert_eq!(body["incidents"][0]["entity"], "198.51.100.1");
    assert_eq!(body["incidents"].as_array().unwrap().len(), 1);
    let (_, body) = server
        .get(
            "/api/v1/incidents?since=2026-11-18T11:09:40Z&until=2026-11-18T11:12:40Z",
            Some(TOKEN),
        )
        .await;
    assert_eq!(
        entities(&body),
        ["192.0.2.6", "192.0.2.5", "192.0.2.4", "192.0.2.3"]
    );

    // Pages of three walk all ten once, newest first.
    let mut seen = Vec::new();
    let mut path = "/api/v1/incidents?limit=3".to_owned();
    loop {
        let (status, body) = server.get(&path, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for incident in body["incidents"].as_array().unwrap() {
            seen.push(incident["entity"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/incidents?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..9).rev().map(|i| format!("192.0.2.{i}")).collect();
    expected.insert(0, "198.51.100.1".into());
    assert_eq!(seen, expected);

    // Bad parameters: 400 naming the parameter.
    for (query, needle) in [
        ("severity=extreme", "severity"),
        ("since=last-tuesday", "since"),
        ("cursor=nope", "cursor"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = server
            .get(&format!("/api/v1/incidents?{query}"), Some(TOKEN))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
}

async fn one_incident_and_triage(server: Server) {
    let id = incident_id(
        "rate-spike-ip",
        "198.51.100.1",
        Timestamp(T0 + 1000 * 1_000_000_000),
    );
    let (status, body) = server
        .get(&format!("/api/v1/incidents/{id}"), Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["entity"], "198.51.100.1");
    assert_eq!(body["evidence"][0]["line"], "sample line");
    assert_eq!(body["triage"]["state"], "new");
    let (status, body) = server
        .get("/api/v1/incidents/0123456789abcdef", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("no incident"));

    let (status, body) = server
        .post(
            &format!("/api/v1/incidents/{id}/ack"),
            Some(json!({"note": "paging on-call"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["triage"]["state"], "acknowledged");
    assert_eq!(body["triage"]["note"], "paging on-call");
    // An empty POST acks without touching the note; resolve works by prefix.
    let (status, body) = server
        .post(&format!("/api/v1/incidents/{id}/ack"), None)
        .await;
    assert_eq!(
        (status, &body["triage"]["note"]),
        (StatusCode::OK, &json!("paging on-call"))
    );
    let (status, body) = server
        .post(&format!("/api/v1/incidents/{}/resolve", &id[..8]), None)
        .await;
    assert_eq!(
        (status, &body["triage"]["state"]),
        (StatusCode::OK, &json!("resolved"))
    );
    let (_, listed) = server
        .get("/api/v1/incidents?status=resolved", Some(TOKEN))
        .await;
    assert_eq!(listed["incidents"].as_array().unwrap().len(), 1);
    let (status, _) = server
        .post("/api/v1/incidents/0123456789abcdef/ack", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = server
        .post(
            &format!("/api/v1/incidents/{id}/ack"),
            Some(json!({"nope": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
