//! One HTTP attempt to a channel: signed for webhooks (Standard Webhooks v1), plain JSON for
//! Slack, with connect and total timeouts and no redirects (a receiver cannot bounce an alert
//! somewhere else), and the answer turned into what the outbox records.

use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::signing::signature_header;
use super::timing::{self, Verdict};
use crate::config::{AlertChannel, ChannelKind};
use crate::store::Attempt;

/// Longest part of a receiver's answer kept with the delivery.
const MAX_RESPONSE: usize = 1024;

/// The `webhook-id`: stable per channel and alert (incident, event, severity for
/// escalations), so the receiver can drop a redelivery.
pub fn webhook_id(channel: &str, dedup_key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(channel.as_bytes());
    hasher.update([0]);
    hasher.update(dedup_key.as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// What came back from one attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub body: String,
    /// A transport error (refused, reset, timed out), when there was no status.
    pub error: Option<String>,
}

/// Sends to one channel.
pub struct Sender {
    client: reqwest::Client,
    channel: AlertChannel,
}

impl Sender {
    pub fn new(channel: AlertChannel) -> anyhow::Result<Sender> {
        let client = reqwest::Client::builder()
            .connect_timeout(channel.connect_timeout)
            .timeout(channel.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gatewatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Sender { client, channel })
    }

    pub fn channel(&self) -> &AlertChannel {
        &self.channel
    }

    /// Posts `body` once; `unix_seconds` is the `webhook-timestamp`.
    pub async fn post(&self, id: &str, body: &str, unix_seconds: i64, now_ns: i64) -> Answer {
        let mut request = self
            .client
            .post(&self.channel.url.0)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if self.channel.kind == ChannelKind::Webhook {
            request = request
                .header("webhook-id", id)
                .header("webhook-timestamp", unix_seconds.to_string());
            if !self.channel.secrets.is_empty() {
                request = request.header(
                    "webhook-signature",
                    signature_header(&self.channel.secrets, id, unix_seconds, body.as_bytes()),
                );
            }
        }
        match request.body(body.to_owned()).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| timing::retry_after(v, now_ns));
                // The answer is kept for people; a receiver that stalls its body does not
                // hold the delivery beyond the total timeout.
                let body = response.text().await.unwrap_or_default();
                Answer {
                    status: Some(status),
                    retry_after,
                    body: cut(&body),
                    error: None,
                }
            }
            Err(err) => Answer {
                status: None,
                retry_after: None,
                body: String::new(),
                error: Some(describe(&err)),
            },
        }
    }
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_RESPONSE {
        return text.to_owned();
    }
    let mut end = MAX_RESPONSE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// reqwest's error plus its causes, once each ("connection refused", "operation timed out").
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut causes: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        source = cause.source();
    }
    match causes.last() {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    }
}

/// What to record for an answer: delivered, retry at a time, refused, or dead because it
/// was first queued longer than `max_age` ago. `unit` is the jitter's random draw.
pub fn judge(
    answer: Answer,
    attempts: i64,
    created_at_ns: i64,
    now_ns: i64,
    channel: &AlertChannel,
    unit: f64,
) -> Attempt {
    let verdict = answer.status.map_or(Verdict::Retry, timing::verdict);
    match verdict {
        Verdict::Delivered => Attempt::Sent {
            status: answer.status.unwrap_or(200),
            response: answer.body,
        },
        Verdict::Refused => Attempt::Failed {
            status: answer.status.unwrap_or(0),
            response: answer.body,
        },
        Verdict::Retry => {
            let error = answer
                .error
                .clone()
                .unwrap_or_else(|| format!("HTTP {}", answer.status.unwrap_or_default()));
            let response = answer.status.map(|_| answer.body.clone());
            let wait = timing::backoff(attempts, channel.backoff_max, unit);
            let at = timing::next_attempt(now_ns, wait, answer.retry_after);
            if at > created_at_ns.saturating_add(timing::nanos(channel.max_age)) {
                Attempt::Dead {
                    status: answer.status,
                    error: format!("{error}; given up after max_age"),
                    response,
                }
            } else {
                Attempt::Retry {
                    status: answer.status,
                    error,
                    response,
                    at,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Option<u16>) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: "no".into(),
            error: status.is_none().then(|| "cannot connect: refused".into()),
        }
    }

    #[test]
    fn answers_become_outbox_states() {
        let channel = AlertChannel::new("soc", ChannelKind::Webhook, "http://127.0.0.1:1/");
        let s = 1_000_000_000i64;
        assert!(matches!(
            judge(answer(Some(204)), 1, 0, s, &channel, 0.5),
            Attempt::Sent { status: 204, .. }
        ));
        assert!(matches!(
            judge(answer(Some(404)), 1, 0, s, &channel, 0.5),
            Attempt::Failed { status: 404, .. }
        ));
        match judge(answer(None), 3, 0, s, &channel, 1.0) {
            Attempt::Retry {
                at,
                status: None,
                error,
                ..
            } => {
                assert_eq!(at, 5 * s, "third attempt: up to 4 s");
                assert!(error.contains("refused"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        let mut limited = answer(Some(429));
        limited.retry_after = Some(Duration::from_secs(3));
        match judge(limited, 1, 0, s, &channel, 0.0) {
            Attempt::Retry {
                at,
                status: Some(429),
                ..
            } => assert_eq!(at, 4 * s),
            other => panic!("{other:?}"),
        }
        let day = 24 * 3600 * s;
        assert!(matches!(
            judge(answer(Some(503)), 9, 0, day, &channel, 0.5),
            Attempt::Dead {
                status: Some(503),
                ..
            }
        ));
    }

    #[test]
    fn webhook_ids_are_stable_and_per_channel() {
        assert_eq!(
            webhook_id("soc", "abc/opened"),
            webhook_id("soc", "abc/opened")
        );
        assert_ne!(
            webhook_id("soc", "abc/opened"),
            webhook_id("ops", "abc/opened")
        );
        assert_ne!(
            webhook_id("soc", "abc/opened"),
            webhook_id("soc", "abc/closed")
        );
        assert!(webhook_id("soc", "x").starts_with("msg_"));
    }
}
