//! Following live log files: discovery by glob (on file-system events and on an interval),
//! identity by content fingerprint, rotation (rename, the kubelet's rename + gzip,
//! copytruncate, deletion) and where each file resumes. Lines are counted exactly once:
//! a file is read from where its checkpoint says the pipeline finished with it.

mod discover;
mod fingerprint;
mod follow;
mod watch;

pub use discover::{Checkpoints, Discovery, Found, GroupSpec};
pub use fingerprint::{DevIno, Fingerprint};
pub use follow::{Follow, FollowSettings, TailStats, Tracked};
pub use watch::Wakeup;
