//! The HTTP API over real HTTP, on a SQLite file and on the real PostgreSQL server.

mod common;

use std::time::Duration;

use gatewatch::api::{router, serve, ApiToken, ServeSettings};
use gatewatch::detect::{incident_id, Incident, Severity};
use gatewatch::event::{EntityKind, Timestamp};
use gatewatch::store::Store;
use reqwest::StatusCode;
use serde_json::{json, Value};

use common::TestDb;

const TOKEN: &str = "test-token-4f9d-7c21";
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
    id: String,
    url: String,
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
        // The hardened server `serve` and `run` use.
        let settings = ServeSettings::default();
        tokio::spawn(async move {
            serve(listener, app, settings, std::future::pending())
                .await
                .unwrap()
        });
        Server {
            base,
            client: reqwest::Client::new(),
            id: incidents[9].id.clone(),
            url: db.url.clone(),
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

    /// As if the schema had never been migrated (a database recreated under the server).
    async fn forget_migrations(&self) {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.unwrap();
        sqlx::query("DROP TABLE _sqlx_migrations")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
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
    a_nul_anywhere_is_a_bad_request,
    bodies_over_64_kib_are_413,
    readyz_is_503_while_the_schema_is_missing,
);

async fn a_nul_anywhere_is_a_bad_request(server: Server) {
    for (path, field) in [
        ("/api/v1/incidents?entity=%00", "entity"),
        ("/api/v1/incidents?detector=scanner%00-ip", "detector"),
        ("/api/v1/incidents?kind=a%00", "kind"),
        ("/api/v1/incidents?since=%002h", "since"),
        ("/api/v1/incidents/abcd%00ef", "id"),
    ] {
        let (status, body) = server.get(path, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(
            body["error"],
            format!("{field}: contains a NUL character"),
            "{path}"
        );
    }
    let (status, body) = server
        .post(
            &format!("/api/v1/incidents/{}/ack", server.id),
            Some(json!({"note": "a\u{0}b"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "note: contains a NUL character");
    // Nothing was written.
    let (_, shown) = server
        .get(&format!("/api/v1/incidents/{}", server.id), Some(TOKEN))
        .await;
    assert_eq!(shown["triage"]["state"], "new");
}

/// Sends `head` and then up to `body` bytes on a raw connection; returns the answer's status
/// line and body.
async fn raw_exchange(base: &str, head: String, body: Vec<u8>) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The server may answer before reading it all: write on the side, read the answer.
    let writing = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&body).await?;
        Ok::<_, std::io::Error>(writer)
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut answer)).await;
    writing.abort();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

async fn bodies_over_64_kib_are_413(server: Server) {
    let path = format!("/api/v1/incidents/{}/ack", server.id);
    // 100 MB announced: refused before a byte of it is read.
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 104857600\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw_exchange(&server.base, head, vec![b' '; 1 << 20]).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}: {body}");
    assert!(body.contains("at most 65536"), "{body}");
    // Chunked, so no length up front: cut at the limit as it is read.
    let mut chunked = format!("{:x}\r\n", 100_000).into_bytes();
    chunked.extend(format!("{{\"note\":\"{}\"}}", "x".repeat(100_000 - 11)).into_bytes());
    chunked.extend(b"\r\n0\r\n\r\n");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw_exchange(&server.base, head, chunked).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}: {body}");
    // A note under the limit is fine.
    let (status, _) = server
        .post(&path, Some(json!({"note": "x".repeat(60_000)})))
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn readyz_is_503_while_the_schema_is_missing(server: Server) {
    assert_eq!(
        server.get("/readyz", None).await,
        (StatusCode::OK, json!("ready\n"))
    );
    server.forget_migrations().await;
    let (status, body) = server.get("/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "store schema not migrated (gatewatch migrate)\n");
}

/// The store's PostgreSQL database goes away under the server: /readyz says 503 and a
/// short reason to anyone, and keeps the database's words for the log.
#[tokio::test]
async fn readyz_is_503_without_the_database_error_when_the_store_is_unreachable() {
    let Some(db) = TestDb::postgres("api::readyz_is_503_when_the_store_is_unreachable") else {
        return;
    };
    let server = Server::start(&db).await;
    assert_eq!(server.get("/readyz", None).await.0, StatusCode::OK);
    assert!(db.drop_postgres_database_now());
    let (status, body) = server.get("/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "store unreachable\n");
    // An authenticated request fails too, without the database's words.
    let (status, body) = server.get("/api/v1/incidents", Some(TOKEN)).await;
    assert!(status.is_server_error(), "{status} {body}");
    assert!(
        [
            "the store is unavailable; try again",
            "internal error (logged)"
        ]
        .contains(&body["error"].as_str().unwrap()),
        "{body}"
    );
}

async fn health_is_open_and_incidents_need_the_token(server: Server) {
    assert_eq!(server.get("/healthz", None).await.0, StatusCode::OK);
    assert_eq!(server.get("/readyz", None).await.0, StatusCode::OK);
    let (status, body) = server.get("/api/v1/incidents", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing or wrong bearer token");
    for wrong in [
        "",
        "test-token-4f9d-7c2",
        "test-token-4f9d-7c21x",
        "TEST-TOKEN-4F9D-7C21",
    ] {
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

/// The OpenAPI document is served without a token, every documented route answers with a
/// documented status, and an incident's fields are exactly the documented ones.
#[tokio::test]
async fn the_openapi_document_is_served_and_true() {
    let db = TestDb::sqlite();
    let server = Server::start(&db).await;
    let (status, served) = server.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let document: Value = serde_json::from_str(gatewatch::api::OPENAPI).unwrap();
    assert_eq!(served, document);
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let documented: Vec<&str> = (operation["responses"].as_object().unwrap().keys())
                .map(String::as_str)
                .collect();
            let url = path.replace("{id}", &server.id);
            let status = match method.as_str() {
                "get" => server.get(&url, Some(TOKEN)).await.0,
                "post" => server.post(&url, None).await.0,
                other => panic!("{path}: undocumented method {other}"),
            };
            assert!(
                documented.contains(&status.as_str()),
                "{method} {path} answered {status}, documented {documented:?}"
            );
            assert!(status.is_success(), "{method} {path}: {status}");
        }
    }
    // The incident contract: every field served is documented, every required one served.
    let (_, incident) = server
        .get(&format!("/api/v1/incidents/{}", server.id), Some(TOKEN))
        .await;
    let schemas = &document["components"]["schemas"];
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let mut documented = keys(&schemas["Incident"]["properties"]);
    documented.push("triage".into());
    for key in keys(&incident) {
        assert!(
            documented.contains(&key),
            "{key} is served but not documented"
        );
    }
    for required in schemas["Incident"]["required"].as_array().unwrap() {
        assert!(
            incident.get(required.as_str().unwrap()).is_some(),
            "{required} missing"
        );
    }
    let mut explain = keys(&incident["explain"]);
    explain.sort();
    let mut explain_documented = keys(&schemas["Explain"]["properties"]);
    explain_documented.sort();
    assert_eq!(explain, explain_documented);
}
