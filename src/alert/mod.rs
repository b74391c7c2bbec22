//! Alerting: what goes to webhooks and Slack. So far the pure parts: Standard Webhooks
//! signatures and Slack's Block Kit messages with log text escaped. (The outbox, delivery
//! worker, grouping and the `alerts` CLI are issue 10's remaining work.)

pub mod signing;
pub mod slack;
