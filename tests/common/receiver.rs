//! A real HTTP receiver for alert tests: it answers from a script (statuses, `Retry-After`,
//! hanging), then 200, and records every request with its headers and when it came. It runs
//! on a runtime of its own, so sync and async tests can use it alike.

// When requests arrive is what these tests measure (Retry-After, rate limits).
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    /// The status with a `Retry-After: seconds` header.
    RetryAfter(u16, u64),
    /// Say nothing for this long, then 200.
    Hang(Duration),
    /// A status with this body.
    Body(u16, String),
}

#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: Option<String>,
    pub body: String,
    pub at: Instant,
    /// The status this request was answered with (a hung request that the sender gave up
    /// on is recorded too).
    pub status: u16,
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    received: Vec<Received>,
}

pub struct Receiver {
    pub port: u16,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn answer(state: Arc<Mutex<State>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let reply = state.lock().unwrap().script.pop_front();
    let (status, response) = match reply {
        None => (200, StatusCode::OK.into_response()),
        Some(Reply::Status(s)) => (s, StatusCode::from_u16(s).unwrap().into_response()),
        Some(Reply::Body(s, text)) => (s, (StatusCode::from_u16(s).unwrap(), text).into_response()),
        Some(Reply::RetryAfter(s, secs)) => (
            s,
            (
                StatusCode::from_u16(s).unwrap(),
                [("retry-after", secs.to_string())],
            )
                .into_response(),
        ),
        Some(Reply::Hang(time)) => {
            let record = Received {
                id: header("webhook-id").unwrap_or_default(),
                timestamp: header("webhook-timestamp").unwrap_or_default(),
                signature: header("webhook-signature"),
                body: String::from_utf8_lossy(&body).into_owned(),
                at: Instant::now(),
                status: 0,
            };
            state.lock().unwrap().received.push(record);
            tokio::time::sleep(time).await;
            return StatusCode::OK.into_response();
        }
    };
    state.lock().unwrap().received.push(Received {
        id: header("webhook-id").unwrap_or_default(),
        timestamp: header("webhook-timestamp").unwrap_or_default(),
        signature: header("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
        status,
    });
    response
}

impl Receiver {
    pub fn start(script: Vec<Reply>) -> Receiver {
        Receiver::start_on(0, script)
    }

    /// Listens on `port` (0: any free one).
    pub fn start_on(port: u16, script: Vec<Reply>) -> Receiver {
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            received: Vec::new(),
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = state.clone();
        let app = axum::Router::new()
            .fallback(move |headers: HeaderMap, body: Bytes| answer(shared.clone(), headers, body));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            port,
            state,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Replaces what is left of the script.
    pub fn script(&self, script: Vec<Reply>) {
        self.state.lock().unwrap().script = script.into();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Waits for `done`, polling; panics with `what` after `patience`.
pub fn eventually(what: &str, patience: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < patience,
            "{what}: not within {patience:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every signature checked by Python's standard library, as a receiver would: true when all
/// verify with `secret`; None without python3.
pub fn python_verifies_all(secret: &str, received: &[Received]) -> Option<bool> {
    use std::io::Write as _;
    const VERIFY: &str = r#"
import base64, hashlib, hmac, json, sys
key = base64.b64decode(sys.argv[1].removeprefix("whsec_"))
ok = True
for line in sys.stdin:
    r = json.loads(line)
    expected = base64.b64encode(hmac.new(key, f"{r['id']}.{r['ts']}.".encode() + r['body'].encode(), hashlib.sha256).digest()).decode()
    ok = ok and any(hmac.compare_digest(p.removeprefix("v1,"), expected) for p in (r['sig'] or "").split(" ") if p.startswith("v1,"))
sys.exit(0 if ok else 1)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", VERIFY, secret])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take().unwrap();
    for r in received {
        let line =
            serde_json::json!({"id": r.id, "ts": r.timestamp, "sig": r.signature, "body": r.body});
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    Some(child.wait().unwrap().success())
}
