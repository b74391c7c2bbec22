//! The agent's side: every record the daemon's merge passes is turned into a wire event
//! and queued for its partitions; `flush` (called between batches, before checkpoints are
//! taken) publishes the queued messages and waits for JetStream's acknowledgements, so a
//! checkpoint never covers a line that is not in the stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::HeaderMap;

use super::nats::Cluster;
use super::partition;
use super::wire::{self, Header, WireEvent, WIRE_VERSION};
use crate::detect::key::{EntityKey, RouteKey, RouteScratch};
use crate::detect::token_sources::{fingerprint, masked, token_of};
use crate::event::Timestamp;
use crate::pipeline::{Record, Tap};

/// A partition's message is sent once it holds this much.
const MESSAGE_BYTES: usize = 256 << 10;
/// A partition that had no events for this long hears from the agent anyway (its clock).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Counters for the agent's metrics.
#[derive(Default)]
pub struct AgentStats {
    pub events: AtomicU64,
    pub messages: AtomicU64,
    pub acknowledged: AtomicU64,
    pub publish_errors: AtomicU64,
}

/// A partition's message being filled.
#[derive(Default)]
struct Open {
    events: Vec<u8>,
    count: usize,
    /// Merge source indexes, by the events' `source` numbers.
    sources: Vec<usize>,
    /// (source, first offset, last offset) for the message id.
    span: Option<(usize, u64, u64)>,
    last_sent: Option<Instant>,
}

pub struct Publisher {
    cluster: Arc<Cluster>,
    handle: tokio::runtime::Handle,
    token_key: Arc<[u8]>,
    /// Source ids (file fingerprints) by merge index.
    sources: Vec<String>,
    open: Vec<Open>,
    first: Option<Timestamp>,
    watermark: Timestamp,
    routes: RouteScratch,
    /// Messages sent and not yet acknowledged: (partition, id, payload, ack).
    inflight: Vec<(u32, Option<String>, bytes::Bytes, PublishAckFuture)>,
    pub stats: Arc<AgentStats>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Events were given up on at a stop: no checkpoint may pass them.
    abandoned: bool,
}

impl Publisher {
    pub fn new(
        cluster: Arc<Cluster>,
        handle: tokio::runtime::Handle,
        token_key: Arc<[u8]>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Publisher {
        let partitions = cluster.config.partitions as usize;
        Publisher {
            cluster,
            handle,
            token_key,
            sources: Vec::new(),
            open: (0..partitions).map(|_| Open::default()).collect(),
            first: None,
            watermark: Timestamp(i64::MIN),
            routes: RouteScratch::default(),
            inflight: Vec::new(),
            stats: Arc::default(),
            stop,
            abandoned: false,
        }
    }

    /// Names merge source `index` (its file's fingerprint: ids must survive restarts).
    pub fn name_source(&mut self, index: usize, id: String) {
        if self.sources.len() <= index {
            self.sources.resize(index + 1, String::new());
        }
        self.sources[index] = id;
    }

    fn partitions(&self) -> u32 {
        self.cluster.config.partitions
    }

    /// Sends partition `p`'s message (or a heartbeat when it is empty).
    fn send(&mut self, p: u32) -> anyhow::Result<()> {
        let open = std::mem::take(&mut self.open[p as usize]);
        let header = Header {
            v: WIRE_VERSION,
            agent: &self.cluster.config.name,
            first: self.first.map(Timestamp::nanos),
            watermark: self.watermark.nanos(),
            sources: open
                .sources
                .iter()
                .map(|&i| self.sources.get(i).map_or("", String::as_str))
                .collect(),
        };
        let mut payload = Vec::with_capacity(open.events.len() + 64);
        wire::start_message(&header, &mut payload);
        payload.extend_from_slice(&open.events);
        let id = open.span.map(|(source, from, to)| {
            let source = self.sources.get(source).map_or("", String::as_str);
            format!("{}:{source}:{from}-{to}:p{p}", self.cluster.config.name)
        });
        self.open[p as usize].last_sent = Some(super::now());
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        self.stats
            .events
            .fetch_add(open.count as u64, Ordering::Relaxed);
        self.publish_or_retry(p, id, bytes::Bytes::from(payload));
        Ok(())
    }

    /// Publishes, keeping the acknowledgement to wait for; a failed publish is retried
    /// until it goes out (or the stop gives up on it).
    fn publish_or_retry(&mut self, p: u32, id: Option<String>, payload: bytes::Bytes) {
        match self.publish(p, id.as_deref(), payload.clone()) {
            Ok(ack) => self.inflight.push((p, id, payload, ack)),
            Err(err) => {
                tracing::warn!(error = %err, partition = p, "publishing to JetStream failed; will retry");
                self.retry_later(p, id, payload);
            }
        }
    }

    fn publish(
        &self,
        p: u32,
        id: Option<&str>,
        payload: bytes::Bytes,
    ) -> anyhow::Result<PublishAckFuture> {
        let mut headers = HeaderMap::new();
        if let Some(id) = id {
            headers.insert("Nats-Msg-Id", id);
        }
        let subject = self.cluster.subject(p);
        let js = self.cluster.js.clone();
        Ok(self
            .handle
            .block_on(async move { js.publish_with_headers(subject, headers, payload).await })?)
    }
}

impl Tap for Publisher {
    fn record(&mut self, source: usize, record: &Record<'_>) {
        let req = &record.request;
        let Some(ts) = req.ts else { return };
        self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
        self.watermark = self.watermark.max(ts);
        let token = token_of(req);
        let fp = token.map(|t| fingerprint(&self.token_key, t));
        let line = match (token, &fp) {
            (Some(token), Some(fp)) => std::borrow::Cow::Owned(masked(record.line, token, fp)),
            _ => std::borrow::Cow::Borrowed(record.line),
        };
        let partitions = self.partitions();
        let route = RouteKey::of_with(req, &mut self.routes);
        let targets = partition::targets(
            req.client_ip
                .map(|ip| partition::of_address(ip, partitions)),
            fp.as_deref()
                .map(|fp| partition::of_token(fp.as_bytes(), partitions)),
            route
                .as_ref()
                .map(|r| partition::of_route(r.as_str(), partitions)),
            partition::of_global(partitions),
        );
        for (p, families) in targets {
            let open = &mut self.open[p as usize];
            let local = match open.sources.iter().position(|&s| s == source) {
                Some(i) => i,
                None => {
                    open.sources.push(source);
                    open.sources.len() - 1
                }
            };
            let event = WireEvent {
                families,
                ..WireEvent::of(
                    req,
                    fp.as_deref().map(str::as_bytes),
                    &line,
                    local as u16,
                    record.offset,
                )
            };
            wire::push_event(&event, &mut open.events);
            open.count += 1;
            open.span = Some(match open.span {
                None => (source, record.offset, record.offset),
                Some((s, from, _)) => (s, from, record.offset),
            });
            if open.events.len() >= MESSAGE_BYTES {
                let _ = self.send(p);
            }
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let now = super::now();
        for p in 0..self.partitions() {
            let open = &self.open[p as usize];
            let due = open.count > 0
                || (self.first.is_some()
                    && open
                        .last_sent
                        .is_none_or(|at| now.duration_since(at) >= HEARTBEAT));
            if due {
                self.send(p)?;
            }
        }
        // Every message must be acknowledged before the caller checkpoints; a failed one is
        // published again under the same id (the server drops it if the first one landed).
        let mut backoff = Duration::from_millis(100);
        while !self.inflight.is_empty() || self.abandoned {
            if self.abandoned {
                anyhow::bail!("stopping with events not acknowledged by JetStream (they are read again after the restart)");
            }
            let inflight = std::mem::take(&mut self.inflight);
            let mut failed = Vec::new();
            for (p, id, payload, ack) in inflight {
                match self.handle.block_on(async { ack.await }) {
                    Ok(_) => {
                        self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        self.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %err, partition = p, "JetStream did not acknowledge; publishing again");
                        failed.push((p, id, payload));
                    }
                }
            }
            for (p, id, payload) in failed {
                if self.stop.load(Ordering::SeqCst) {
                    anyhow::bail!("stopping with events not acknowledged by JetStream (they are read again after the restart)");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                self.publish_or_retry(p, id, payload);
            }
        }
        Ok(())
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Publisher {
    /// Publishes until it works, or gives up at a stop (then `flush` fails).
    fn retry_later(&mut self, p: u32, id: Option<String>, payload: bytes::Bytes) {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                self.abandoned = true;
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
            if let Ok(ack) = self.publish(p, id.as_deref(), payload.clone()) {
                self.inflight.push((p, id, payload, ack));
                return;
            }
        }
    }
}
