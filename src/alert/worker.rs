//! The delivery worker: per channel, flushes due digest groups, claims due rows from the
//! outbox and sends them one at a time (Slack at most one message per second), recording
//! every attempt. Several workers (instances) can share one outbox: claims are exclusive
//! and lapse if their worker dies, so a pending delivery is never lost and never sent twice
//! while its worker lives.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::digest;
use super::notice::Notice;
use super::send::{judge, webhook_id, Sender};
use super::slack;
use super::timing;
use crate::clock::wall_clock;
use crate::config::{AlertChannel, ChannelKind};
use crate::store::{alert_state, Attempt, Delivery, NewAlert, Store};

/// The event of a reminder about an incident still open after `repeat_interval`.
pub const ONGOING: &str = "ongoing";

/// How the worker paces itself.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// How often an idle channel looks for due rows.
    pub poll: Duration,
    /// Rows claimed at once.
    pub batch: i64,
    /// The most members one digest carries (the rest go in the next).
    pub max_digest: i64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            poll: Duration::from_millis(500),
            batch: 16,
            max_digest: 1000,
        }
    }
}

/// The longest gap between two looks for incidents due a reminder.
const REMINDER_CHECK_MAX: Duration = Duration::from_secs(10);

/// Slack's incoming webhooks accept about one message per second.
const SLACK_SPACING: Duration = Duration::from_secs(1);

/// Who holds a claim: unique per process start.
pub fn claimer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}/{}/{:08x}", std::process::id(), fastrand::u32(..))
}

/// Delivers from the outbox until `stop` turns true.
pub struct Alerter {
    store: Store,
    channels: Vec<AlertChannel>,
    settings: WorkerSettings,
    claimer: String,
}

impl Alerter {
    pub fn new(store: Store, channels: Vec<AlertChannel>, settings: WorkerSettings) -> Alerter {
        Alerter {
            store,
            channels,
            settings,
            claimer: claimer_name(),
        }
    }

    /// Runs one task per channel; returns when `stop` is set. Sends under way are cut off:
    /// their claims are released, so the rows go out again (same `webhook-id`) soon after.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut tasks = JoinSet::new();
        let channels_names: Vec<String> = self.channels.iter().map(|c| c.name.clone()).collect();
        for channel in self.channels {
            let worker = ChannelWorker {
                store: self.store.clone(),
                sender: Sender::new(channel)?,
                settings: self.settings.clone(),
                claimer: self.claimer.clone(),
                last_send: None,
                last_reminders: None,
                last_error: None,
            };
            tasks.spawn(worker.run());
        }
        tasks.spawn(report_outbox(self.store.clone(), channels_names));
        let _ = stop.wait_for(|s| *s).await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        if let Err(err) = self.store.release_claims(&self.claimer).await {
            tracing::warn!(error = %err, "could not release alert claims; they lapse on their own");
        }
        Ok(())
    }
}

/// How often the outbox's per-state counts are refreshed for /metrics.
const OUTBOX_REPORT_EVERY: Duration = Duration::from_secs(5);

/// Keeps `gatewatch_alert_outbox{channel,state}` current (zero for states a channel has no
/// rows in, so a drained queue reads 0 rather than its last value).
async fn report_outbox(store: Store, channels: Vec<String>) {
    loop {
        if let Ok(counts) = store.alert_counts().await {
            for channel in &channels {
                for state in alert_state::ALL {
                    let n = counts
                        .iter()
                        .find(|(c, s, _)| c == channel && s == state)
                        .map_or(0, |(_, _, n)| *n);
                    metrics::gauge!("gatewatch_alert_outbox", "channel" => channel.clone(), "state" => state)
                        .set(n as f64);
                }
            }
        }
        tokio::time::sleep(OUTBOX_REPORT_EVERY).await;
    }
}

struct ChannelWorker {
    store: Store,
    sender: Sender,
    settings: WorkerSettings,
    claimer: String,
    last_send: Option<tokio::time::Instant>,
    last_reminders: Option<tokio::time::Instant>,
    last_error: Option<String>,
}

impl ChannelWorker {
    fn channel(&self) -> &AlertChannel {
        self.sender.channel()
    }

    async fn run(mut self) {
        loop {
            match self.round().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => {
                    let text = err.to_string();
                    if self.last_error.as_deref() != Some(&text) {
                        tracing::warn!(channel = %self.channel().name, error = %text, "alert outbox unreachable; will retry");
                        self.last_error = Some(text);
                    }
                }
            }
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    /// One pass; true when it sent something (so look again at once).
    async fn round(&mut self) -> anyhow::Result<bool> {
        if self.channel().digest {
            let every = (self.channel().repeat_interval / 4).min(REMINDER_CHECK_MAX);
            if self.last_reminders.is_none_or(|at| at.elapsed() >= every) {
                self.queue_reminders().await?;
                self.last_reminders = Some(tokio::time::Instant::now());
            }
            self.flush_due_groups().await?;
        }
        let now = wall_clock().nanos();
        let lease = timing::nanos(self.channel().timeout + self.channel().connect_timeout)
            + timing::nanos(Duration::from_secs(5));
        let claimed = self
            .store
            .claim_alerts(
                &self.channel().name,
                &self.claimer,
                now,
                now.saturating_add(lease),
                self.settings.batch,
            )
            .await?;
        self.last_error = None;
        let any = !claimed.is_empty();
        for delivery in claimed {
            self.deliver(delivery).await?;
        }
        Ok(any)
    }

    /// Alertmanager's `repeat_interval`: an incident still open that long after its last
    /// message is mentioned again ("still open") in its group's next digest. Digest channels
    /// only: a webhook receiver that takes every event keeps the state itself.
    async fn queue_reminders(&mut self) -> anyhow::Result<()> {
        let channel = self.channel();
        let now = wall_clock().nanos();
        let before = now.saturating_sub(timing::nanos(channel.repeat_interval));
        let due = self.store.due_reminders(&channel.name, before, 100).await?;
        let reminders: Vec<NewAlert> = due
            .into_iter()
            .filter_map(|last| {
                let mut payload: serde_json::Value =
                    serde_json::from_str(last.payload.as_deref()?).ok()?;
                payload["event"] = ONGOING.into();
                Some(NewAlert {
                    channel: last.channel,
                    // Keyed to the message it repeats: instances sharing the outbox queue
                    // one reminder, and the reminder is the next one's starting point.
                    dedup_key: format!("{}/{ONGOING}/{}", last.incident_id.as_deref()?, last.id),
                    incident_id: last.incident_id,
                    event: ONGOING.into(),
                    severity: last.severity,
                    group_key: last.group_key,
                    payload: payload.to_string(),
                    held: true,
                })
            })
            .collect();
        if !reminders.is_empty() {
            self.store.insert_alerts(&reminders, now).await?;
        }
        Ok(())
    }

    async fn flush_due_groups(&mut self) -> anyhow::Result<()> {
        let channel = self.channel().clone();
        for group in self.store.held_groups(&channel.name).await? {
            let now = wall_clock().nanos();
            let due = timing::flush_at(
                group.oldest_created_wall_ns,
                group.last_sent_wall_ns.filter(|t| *t > 0),
                channel.group_wait,
                channel.group_interval,
            );
            if due > now {
                continue;
            }
            let key = group.group_key.clone();
            let flushed = self
                .store
                .flush_group(
                    &channel.name,
                    &key,
                    group.last_sent_wall_ns,
                    now,
                    self.settings.max_digest,
                    |held| digest::build(&channel, &key, held),
                )
                .await?;
            if let Some((id, members)) = flushed {
                tracing::debug!(channel = %channel.name, group = %key, digest = id, members, "group flushed");
            }
        }
        Ok(())
    }

    /// What goes on the wire: digests are built ready to send; a single event to Slack (a
    /// channel with `digest = false`) becomes its Block Kit message here.
    fn body(&self, delivery: &Delivery) -> String {
        let channel = self.channel();
        if channel.kind != ChannelKind::Slack || delivery.event == "digest" {
            return delivery.payload.clone();
        }
        match Notice::from_payload(&delivery.payload) {
            Ok(notice) => slack::message(&notice, channel.public_url.as_deref()).to_string(),
            Err(_) => delivery.payload.clone(),
        }
    }

    async fn deliver(&mut self, delivery: Delivery) -> anyhow::Result<()> {
        if self.channel().kind == ChannelKind::Slack {
            if let Some(last) = self.last_send {
                tokio::time::sleep_until(last + SLACK_SPACING).await;
            }
        }
        let body = self.body(&delivery);
        let id = webhook_id(&delivery.channel, &delivery.dedup_key);
        let sent_at = wall_clock();
        self.last_send = Some(tokio::time::Instant::now());
        let answer = self
            .sender
            .post(&id, &body, sent_at.nanos() / 1_000_000_000, sent_at.nanos())
            .await;
        let now = wall_clock().nanos();
        let attempt = judge(
            answer,
            delivery.attempts,
            delivery.created_at_wall_ns,
            now,
            self.channel(),
            fastrand::f64(),
        );
        let channel = self.channel().name.clone();
        let result = match &attempt {
            Attempt::Sent { .. } => "sent",
            Attempt::Retry { .. } => "retry",
            Attempt::Failed { .. } => "failed",
            Attempt::Dead { .. } => "dead",
        };
        metrics::counter!("gatewatch_alert_attempts_total", "channel" => channel.clone(), "result" => result)
            .increment(1);
        match &attempt {
            Attempt::Sent { .. } => {
                tracing::debug!(channel = %channel, alert = delivery.id, event = %delivery.event, "alert delivered")
            }
            Attempt::Retry { error, at, .. } => tracing::info!(
                channel = %channel,
                alert = delivery.id,
                attempts = delivery.attempts,
                error = %error,
                retry_in_ms = (at - now) / 1_000_000,
                "alert not delivered; will retry"
            ),
            Attempt::Failed { status, .. } => tracing::warn!(
                channel = %channel,
                alert = delivery.id,
                status,
                "receiver refused the alert; kept as failed (alerts retry ID sends it again)"
            ),
            Attempt::Dead { error, .. } => tracing::error!(
                channel = %channel,
                alert = delivery.id,
                error = %error,
                "alert undeliverable for max_age; kept as dead (alerts retry --dead)"
            ),
        }
        let recorded = self
            .store
            .record_attempt(delivery.id, &self.claimer, &attempt, now)
            .await?;
        if !recorded {
            tracing::warn!(channel = %channel, alert = delivery.id, "claim lapsed before the attempt was recorded");
        }
        Ok(())
    }
}
