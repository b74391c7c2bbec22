//! Alerting: incident events go to webhooks and Slack through the store's outbox.
//!
//! `route` decides, inside the incident's transaction, which channels get an event;
//! `worker` delivers from the outbox (`send` makes one signed attempt, `timing` says when to
//! try again and when a group's digest is due, `digest` builds it); `slack` and `signing`
//! are the two receivers' formats.

pub mod digest;
pub mod notice;
pub mod route;
pub mod send;
pub mod signing;
pub mod slack;
pub mod timing;
pub mod worker;

pub use route::Routes;
pub use worker::{Alerter, WorkerSettings};
