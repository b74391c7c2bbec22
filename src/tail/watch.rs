//! What wakes the discovery early: file-system events (inotify through `notify`) under the
//! directories the globs start from. Without them (`watch = "poll"`, or the watcher cannot
//! be set up: no inotify instances left, an unsupported file system) the discovery simply
//! runs on its interval.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

pub struct Wakeup {
    /// Kept alive for its events.
    _watcher: Option<notify::RecommendedWatcher>,
    events: Option<Receiver<()>>,
}

impl Wakeup {
    /// Polling only.
    pub fn poll() -> Wakeup {
        Wakeup {
            _watcher: None,
            events: None,
        }
    }

    /// Watches the directories the `patterns` start from; falls back to polling (logged).
    pub fn watch(patterns: &[String]) -> Wakeup {
        match Self::try_watch(patterns) {
            Ok(wakeup) => wakeup,
            Err(err) => {
                tracing::warn!(error = %err, "file-system events unavailable; polling for new files");
                Wakeup::poll()
            }
        }
    }

    fn try_watch(patterns: &[String]) -> notify::Result<Wakeup> {
        let (send, events) = mpsc::channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Only a file appearing or moving can mean a new file to follow; writes
                // (and our own reads) are not the discovery's business.
                use notify::event::{EventKind, ModifyKind};
                if let Ok(event) = event {
                    if matches!(
                        event.kind,
                        EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_))
                    ) {
                        let _ = send.send(());
                    }
                }
            })?;
        let mut roots: Vec<PathBuf> = patterns.iter().map(|p| static_root(p)).collect();
        roots.sort();
        roots.dedup();
        for root in roots {
            watcher.watch(&root, RecursiveMode::Recursive)?;
        }
        Ok(Wakeup {
            _watcher: Some(watcher),
            events: Some(events),
        })
    }

    /// True when events are what wakes us (not only the interval).
    pub fn is_watching(&self) -> bool {
        self.events.is_some()
    }

    /// Waits up to `timeout` for a file-system event; true if one came. Bursts of events
    /// are taken together.
    pub fn wait(&self, timeout: Duration) -> bool {
        let Some(events) = &self.events else {
            std::thread::sleep(timeout);
            return false;
        };
        match events.recv_timeout(timeout) {
            Ok(()) => {
                while events.try_recv().is_ok() {}
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout);
                false
            }
        }
    }
}

/// The deepest existing directory above a glob's first wildcard.
fn static_root(pattern: &str) -> PathBuf {
    let mut root = PathBuf::new();
    for part in Path::new(pattern).components() {
        let text = part.as_os_str().to_string_lossy();
        if text.contains(['*', '?', '[', '{']) {
            break;
        }
        root.push(part);
    }
    // The last plain component may be the file itself (a pattern without wildcards).
    while !root.is_dir() {
        if !root.pop() || root.as_os_str().is_empty() {
            return PathBuf::from(".");
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_watched_from_their_static_directory() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("pods")).unwrap();
        assert_eq!(
            static_root(&format!("{base}/pods/*ingress*/controller/*.log")),
            dir.path().join("pods")
        );
        assert_eq!(static_root(&format!("{base}/access.log")), dir.path());
        assert_eq!(static_root(&format!("{base}/missing/x/*.log")), dir.path());
    }
}
