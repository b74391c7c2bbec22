//! gatewatch: an access-log anomaly detector for ingress controllers.
//!
//! Data flows one way: lines → [`parse`] → [`event::Request`] → [`window`]/[`detect`] →
//! [`detect::Incident`]. The core (`parse`, `window`, `detect`) does no I/O and reads no
//! clock: it is driven by the logs' own timestamps, so replaying a file and tailing it live
//! give the same incidents.

pub mod alert;
pub mod api;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod detect;
pub mod detectors_dir;
pub mod event;
pub mod input;
pub mod parse;
pub mod pipeline;
pub mod query_text;
pub mod store;
pub mod tail;
pub mod window;
