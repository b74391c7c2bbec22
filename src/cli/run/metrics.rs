//! The daemon's Prometheus metrics. Labels are bounded: source *group* names from the
//! config, detector ids and rotation kinds; never a path, an IP or a token.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::detect::Engine;
use crate::event::Timestamp;
use crate::pipeline::{Merge, StoreProbe};
use crate::tail::TailStats;

/// One followed file as the metrics see it.
pub struct FileView<'a> {
    pub group: &'a str,
    pub path: &'a str,
    pub active: bool,
    pub processed: u64,
}

#[derive(Default)]
struct GroupTotals {
    lines: u64,
    parsed: u64,
    unparsed: u64,
    late: u64,
    out_of_range: u64,
    cut: u64,
    lag_bytes: u64,
    files: u64,
}

pub struct Metrics {
    handle: PrometheusHandle,
    checkpoint_errors: Arc<AtomicU64>,
}

impl Metrics {
    /// Installs the process-wide recorder (once: `run` is the only caller).
    pub fn install() -> anyhow::Result<Metrics> {
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|err| anyhow::anyhow!("metrics: {err}"))?;
        describe();
        Ok(Metrics {
            handle,
            checkpoint_errors: Arc::default(),
        })
    }

    pub fn renderer(&self) -> Arc<dyn Fn() -> String + Send + Sync> {
        let handle = self.handle.clone();
        Arc::new(move || handle.render())
    }

    /// Failed checkpoint saves (added to `gatewatch_store_errors_total`).
    pub fn checkpoint_errors(&self) -> Arc<AtomicU64> {
        self.checkpoint_errors.clone()
    }

    /// Totals from the merge and the engine, set as absolute values.
    pub fn pipeline(
        &self,
        merge: &Merge,
        engine: &Engine,
        files: &[FileView<'_>],
        tail: &TailStats,
        wall: Timestamp,
    ) {
        let mut groups: BTreeMap<&str, GroupTotals> = BTreeMap::new();
        for (i, file) in files.iter().enumerate() {
            let report = merge.report(i);
            let totals = groups.entry(file.group).or_default();
            totals.lines += report.lines;
            totals.parsed += report.parsed;
            totals.unparsed += report.unparsed;
            totals.late += report.late;
            totals.out_of_range += report.out_of_range;
            totals.cut += report.cut_lines;
            if file.active {
                totals.files += 1;
                let size = std::fs::metadata(file.path).map_or(0, |m| m.len());
                totals.lag_bytes += size.saturating_sub(file.processed);
            }
        }
        let mut tracked = 0;
        for (group, t) in groups {
            let source = group.to_string();
            counter!("gatewatch_lines_read_total", "source" => source.clone()).absolute(t.lines);
            counter!("gatewatch_lines_parsed_total", "source" => source.clone()).absolute(t.parsed);
            counter!("gatewatch_lines_unparsed_total", "source" => source.clone())
                .absolute(t.unparsed);
            counter!("gatewatch_lines_late_total", "source" => source.clone()).absolute(t.late);
            counter!("gatewatch_lines_out_of_range_total", "source" => source.clone())
                .absolute(t.out_of_range);
            counter!("gatewatch_lines_cut_total", "source" => source.clone()).absolute(t.cut);
            gauge!("gatewatch_source_lag_bytes", "source" => source.clone())
                .set(t.lag_bytes as f64);
            gauge!("gatewatch_files_followed", "source" => source).set(t.files as f64);
            tracked += t.files;
        }
        gauge!("gatewatch_files_tracked").set(tracked as f64);
        if let Some(clock) = engine.clock() {
            let lag = (wall.nanos().saturating_sub(clock.nanos())) as f64 / 1e9;
            gauge!("gatewatch_event_time_lag_seconds").set(lag);
        }
        let mut evictions = 0;
        for (detector, stats) in engine.detector_stats() {
            gauge!("gatewatch_state_keys", "detector" => detector.to_string())
                .set(stats.keys as f64);
            gauge!("gatewatch_open_incidents", "detector" => detector.to_string())
                .set(stats.open_incidents as f64);
            evictions += stats.evictions;
        }
        counter!("gatewatch_state_evictions_total").absolute(evictions);
        for (kind, count) in [
            ("rename", &tail.renamed),
            ("delete", &tail.deleted),
            ("truncate", &tail.truncated),
        ] {
            counter!("gatewatch_rotations_total", "kind" => kind)
                .absolute(count.load(Ordering::Relaxed));
        }
    }

    /// Every detector's incident counter from 0, so `/metrics` names each before its
    /// first incident (a rate() over a series that appears late misses its first step).
    pub fn detectors(&self, engine: &Engine) {
        for (detector, _) in engine.detector_stats() {
            counter!("gatewatch_incidents_opened_total", "detector" => detector.to_string())
                .absolute(0);
        }
    }

    pub fn store(&self, store: &StoreProbe) {
        gauge!("gatewatch_store_queue_depth").set(store.queued() as f64);
        counter!("gatewatch_store_errors_total")
            .absolute(store.errors() + self.checkpoint_errors.load(Ordering::Relaxed));
    }
}

/// A cluster agent's publishing.
pub fn agent(stats: &crate::cluster::AgentStats) {
    counter!("gatewatch_cluster_published_events_total")
        .absolute(stats.events.load(Ordering::Relaxed));
    counter!("gatewatch_cluster_published_messages_total")
        .absolute(stats.messages.load(Ordering::Relaxed));
    counter!("gatewatch_cluster_acknowledged_messages_total")
        .absolute(stats.acknowledged.load(Ordering::Relaxed));
    counter!("gatewatch_cluster_publish_errors_total")
        .absolute(stats.publish_errors.load(Ordering::Relaxed));
}

/// A cluster analyzer's consuming.
pub fn analyzer(stats: &crate::cluster::AnalyzerStats) {
    counter!("gatewatch_cluster_consumed_messages_total")
        .absolute(stats.messages.load(Ordering::Relaxed));
    counter!("gatewatch_cluster_redelivered_messages_total")
        .absolute(stats.redelivered.load(Ordering::Relaxed));
    counter!("gatewatch_cluster_duplicate_events_total")
        .absolute(stats.duplicates.load(Ordering::Relaxed));
    gauge!("gatewatch_cluster_partitions_owned").set(stats.owned.load(Ordering::Relaxed) as f64);
    let lags = stats.lag.lock().expect("not poisoned").clone();
    for (partition, lag) in lags {
        gauge!("gatewatch_cluster_consumer_lag_messages", "partition" => partition.to_string())
            .set(lag as f64);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "gatewatch_cluster_published_events_total",
        "Cluster agent: events published to JetStream (one per partition a line goes to)."
    );
    describe_counter!(
        "gatewatch_cluster_published_messages_total",
        "Cluster agent: messages published to JetStream."
    );
    describe_counter!(
        "gatewatch_cluster_acknowledged_messages_total",
        "Cluster agent: published messages JetStream acknowledged."
    );
    describe_counter!(
        "gatewatch_cluster_publish_errors_total",
        "Cluster agent: publishes that failed or were not acknowledged (retried)."
    );
    describe_counter!(
        "gatewatch_cluster_consumed_messages_total",
        "Cluster analyzer: messages received from JetStream."
    );
    describe_counter!(
        "gatewatch_cluster_redelivered_messages_total",
        "Cluster analyzer: messages received more than once."
    );
    describe_counter!(
        "gatewatch_cluster_duplicate_events_total",
        "Cluster analyzer: events dropped as already applied."
    );
    describe_gauge!(
        "gatewatch_cluster_partitions_owned",
        "Cluster analyzer: partitions this analyzer holds the lease of."
    );
    describe_gauge!(
        "gatewatch_cluster_consumer_lag_messages",
        "Cluster analyzer: messages of a partition not yet delivered to its owner."
    );
    describe_counter!(
        "gatewatch_lines_read_total",
        "Lines read from followed files, by source group."
    );
    describe_counter!(
        "gatewatch_lines_parsed_total",
        "Lines parsed into requests."
    );
    describe_counter!(
        "gatewatch_lines_unparsed_total",
        "Lines no parser could read (counted and sampled, never fatal)."
    );
    describe_counter!(
        "gatewatch_lines_late_total",
        "Lines too far behind their own file's newest event time."
    );
    describe_counter!(
        "gatewatch_lines_out_of_range_total",
        "Lines whose time jumped far from their file's others, set aside."
    );
    describe_counter!(
        "gatewatch_lines_cut_total",
        "Lines longer than max_line_bytes, cut there."
    );
    describe_gauge!(
        "gatewatch_source_lag_bytes",
        "Bytes written to followed files and not yet processed."
    );
    describe_gauge!(
        "gatewatch_files_followed",
        "Files followed now, by source group."
    );
    describe_gauge!("gatewatch_files_tracked", "Files followed now.");
    describe_gauge!(
        "gatewatch_event_time_lag_seconds",
        "Wall clock minus the engine's event time."
    );
    describe_gauge!(
        "gatewatch_state_keys",
        "Keys held in a detector's state table."
    );
    describe_gauge!(
        "gatewatch_open_incidents",
        "Incidents open now, by detector."
    );
    describe_counter!(
        "gatewatch_state_evictions_total",
        "Keys evicted from full state tables."
    );
    describe_counter!(
        "gatewatch_rotations_total",
        "File rotations seen: rename, delete, truncate (copytruncate)."
    );
    describe_counter!(
        "gatewatch_incidents_opened_total",
        "Incidents opened, by detector."
    );
    describe_counter!(
        "gatewatch_alert_attempts_total",
        "Alert delivery attempts, by channel and result (sent, retry, failed, dead)."
    );
    describe_gauge!(
        "gatewatch_alert_outbox",
        "Alert outbox rows by channel and state (held, pending, sent, failed, dead, digested)."
    );
    describe_gauge!(
        "gatewatch_store_queue_depth",
        "Incident events sent to the store and not yet stored."
    );
    describe_counter!(
        "gatewatch_store_errors_total",
        "Failed store writes (incidents and checkpoints), each retried."
    );
}
