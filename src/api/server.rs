//! The accept loop `serve` and `run` share: HTTP/1.1 with header and idle timeouts, a
//! per-request timeout and a connection limit, so idle or slow sockets cannot starve the
//! clients that send requests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower_service::Service as _;

use super::connection::{Timeouts, TrackedIo, Tracker};
use super::throttle::Throttled;

/// A request (headers read, body and answer) gets this long; then 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Descriptors kept free of connections: the store, log files, the listener.
const RESERVED_FDS: u64 = 256;

/// The limits of the HTTP server (`serve` flags, `run`'s `[api]` keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeSettings {
    /// From a connection's accept (or the first byte of a later request) to the end of the
    /// request header.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Open connections at most; when full, the one waiting longest for a request is
    /// closed to make room (a connection with a request in flight never is).
    pub max_connections: usize,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 16_384,
        }
    }
}

/// The open connections, to evict from when full and to wait for when stopping.
#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<u64, Arc<Tracker>>>,
    next: AtomicU64,
    emptied: Notify,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Tracker>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for one more: true when under the limit or a waiting connection was evicted.
    fn make_room(&self, limit: usize) -> bool {
        let open = self.lock();
        if open.len() < limit {
            return true;
        }
        let oldest = open
            .values()
            .filter_map(|t| t.waiting_since().map(|since| (since, t)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, tracker)) => {
                tracker.evict();
                true
            }
            None => false,
        }
    }

    fn add(self: &Arc<Self>, tracker: Arc<Tracker>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, tracker);
        Registered(self.clone(), id)
    }
}

/// Removes its connection from the registry when the connection's task ends.
struct Registered(Arc<Registry>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self.0.lock();
        open.remove(&self.1);
        if open.is_empty() {
            self.0.emptied.notify_waiters();
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit (the soft default, often
/// 1024, is too low for a server) and returns the soft limit now in force.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (idle connections close at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let fds = raise_open_file_limit();
    let budget = fds.saturating_sub(RESERVED_FDS).max(16) as usize;
    let limit = settings.max_connections.min(budget);
    if limit < settings.max_connections {
        tracing::warn!(
            max_connections = settings.max_connections,
            open_file_limit = fds,
            using = limit,
            "max_connections is above what the open-file limit allows; using less"
        );
    }
    let timeouts = Timeouts {
        header: settings.header_timeout,
        idle: settings.idle_timeout,
    };
    let registry = Arc::new(Registry::default());
    let (stop, stopping) = watch::channel(false);
    let mut refused = Throttled::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors or memory: wait a little rather than spin.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !registry.make_room(limit) {
            if let Some(more) = refused.hit(tokio::time::Instant::now()) {
                tracing::warn!(
                    max_connections = limit,
                    refused_since_last_report = more,
                    "connection refused: every connection has a request in flight"
                );
            }
            continue;
        }
        let tracker = Tracker::new();
        let registered = registry.add(tracker.clone());
        let router = router.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let _registered = registered;
            connection(stream, peer, router, tracker, timeouts, stopping).await;
        });
    }
    let _ = stop.send(true);
    // Every connection task ends: idle ones at once, busy ones after their answer.
    loop {
        let emptied = registry.emptied.notified();
        if registry.lock().is_empty() {
            break;
        }
        emptied.await;
    }
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    tracker: Arc<Tracker>,
    timeouts: Timeouts,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(TrackedIo::new(stream, tracker.clone()));
    let requests = tracker.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let guard = requests.request();
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move {
            let _guard = guard;
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, router.call(request)).await;
            Ok::<_, Infallible>(match answer {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => super::protective_headers(
                    super::incidents::ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("the request took longer than {REQUEST_TIMEOUT:?}"),
                    )
                    .into_response(),
                ),
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our tracker keeps the header clock (hyper's would also end kept-alive connections,
    // with no idle timeout of their own); 64 KiB bounds a header's buffer.
    builder.header_read_timeout(None).max_buf_size(64 * 1024);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        }
        closed = tracker.expired(timeouts) => {
            // Dropping the connection closes the socket.
            tracing::debug!(%peer, reason = closed.as_str(), "connection closed");
        }
        _ = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
