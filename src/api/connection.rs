//! One HTTP connection's clock: what it is waiting for and until when. The server closes a
//! connection that overstays (a silent socket, a header sent byte by byte, a kept-alive
//! connection left idle), and evicts the longest-waiting one when it is full.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
// tokio's clock: the one its timers run on (an edge, like every socket timeout).
use tokio::time::Instant;

/// How long a connection may wait in each phase.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    /// No byte of the next request yet; `first` until the connection's first request.
    Waiting { since: Instant, first: bool },
    /// Part of a request header has arrived (for the first request: since the accept).
    Head { since: Instant },
    /// A request is being answered: no timeout but the request's own.
    Busy,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    in_flight: usize,
    evicted: bool,
}

/// Shared by the connection's socket wrapper, its requests and the server's registry.
#[derive(Debug)]
pub(super) struct Tracker {
    state: Mutex<State>,
    changed: Notify,
}

/// Why a connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Closed {
    HeaderTimeout,
    IdleTimeout,
    Evicted,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "no whole request header within header_timeout",
            Closed::IdleTimeout => "idle for idle_timeout",
            Closed::Evicted => "evicted for a new connection (max_connections reached)",
        }
    }
}

impl Tracker {
    pub fn new() -> Arc<Tracker> {
        Arc::new(Tracker {
            state: Mutex::new(State {
                phase: Phase::Waiting {
                    since: Instant::now(),
                    first: true,
                },
                in_flight: 0,
                evicted: false,
            }),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes arrived: a waiting connection is now reading a header, on the header clock.
    fn on_read(&self) {
        let mut state = self.state();
        if let Phase::Waiting { since, first } = state.phase {
            let since = if first { since } else { Instant::now() };
            state.phase = Phase::Head { since };
            drop(state);
            // The header deadline may come before the idle one the watchdog sleeps on.
            self.changed.notify_one();
        }
    }

    /// A request header was read; the returned guard marks its end (also when cancelled).
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        let mut state = self.state();
        state.in_flight += 1;
        state.phase = Phase::Busy;
        RequestGuard(self.clone())
    }

    /// When the connection has waited since, if it is waiting at all (evictable).
    pub fn waiting_since(&self) -> Option<Instant> {
        let state = self.state();
        match state.phase {
            _ if state.evicted => None,
            Phase::Waiting { since, .. } | Phase::Head { since } => Some(since),
            Phase::Busy => None,
        }
    }

    pub fn evict(&self) {
        self.state().evicted = true;
        self.changed.notify_one();
    }

    /// The deadline of the current phase, or why the connection must close now.
    fn deadline(&self, timeouts: Timeouts) -> Result<Option<(Instant, Closed)>, Closed> {
        let state = self.state();
        if state.evicted {
            return Err(Closed::Evicted);
        }
        Ok(match state.phase {
            Phase::Waiting { since, first: true } | Phase::Head { since } => {
                Some((since + timeouts.header, Closed::HeaderTimeout))
            }
            Phase::Waiting {
                since,
                first: false,
            } => Some((since + timeouts.idle, Closed::IdleTimeout)),
            Phase::Busy => None,
        })
    }

    /// Resolves when the connection has overstayed its phase or was evicted.
    pub async fn expired(&self, timeouts: Timeouts) -> Closed {
        loop {
            match self.deadline(timeouts) {
                Err(closed) => return closed,
                Ok(None) => self.changed.notified().await,
                Ok(Some((deadline, closed))) => {
                    if deadline <= Instant::now() {
                        return closed;
                    }
                    // Woken early by a change, or at the deadline: look again either way.
                    tokio::select! {
                        _ = self.changed.notified() => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
            }
        }
    }
}

/// One request in flight on a connection.
pub(super) struct RequestGuard(Arc<Tracker>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.phase = Phase::Waiting {
                since: Instant::now(),
                first: false,
            };
            drop(state);
            self.0.changed.notify_one();
        }
    }
}

/// The socket, telling its tracker when request bytes arrive.
pub(super) struct TrackedIo<T> {
    inner: T,
    tracker: Arc<Tracker>,
}

impl<T> TrackedIo<T> {
    pub fn new(inner: T, tracker: Arc<Tracker>) -> Self {
        TrackedIo { inner, tracker }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tracker.on_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_millis(40),
        idle: Duration::from_millis(120),
    };

    #[tokio::test]
    async fn each_phase_has_its_clock() {
        // A silent new connection: the header clock from the accept.
        let tracker = Tracker::new();
        let start = Instant::now();
        assert_eq!(tracker.expired(T).await, Closed::HeaderTimeout);
        assert!(start.elapsed() >= T.header);

        // A kept-alive connection: the idle clock after a request, the header clock from the
        // first byte of the next one.
        let tracker = Tracker::new();
        drop(tracker.request());
        let start = Instant::now();
        assert_eq!(tracker.expired(T).await, Closed::IdleTimeout);
        assert!(start.elapsed() >= T.idle);

        let tracker = Tracker::new();
        drop(tracker.request());
        tracker.on_read();
        assert_eq!(tracker.expired(T).await, Closed::HeaderTimeout);
    }

    #[tokio::test]
    async fn a_busy_connection_waits_and_an_evicted_one_goes_at_once() {
        let tracker = Tracker::new();
        let request = tracker.request();
        assert!(tracker.waiting_since().is_none(), "busy is not evictable");
        let waited = tokio::time::timeout(T.idle * 3, tracker.expired(T)).await;
        assert!(waited.is_err(), "no timeout while a request is answered");
        drop(request);
        assert!(tracker.waiting_since().is_some());
        tracker.evict();
        assert_eq!(tracker.expired(T).await, Closed::Evicted);
    }
}
