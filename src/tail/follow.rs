//! Follows one open file as a `Read`: at its end it waits for more, and notices when the
//! file was renamed away or deleted (drained, then ended), or truncated in place
//! (copytruncate: ended; the new content is a new file to the discovery).

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::fingerprint::{self, DevIno, Fingerprint};
use crate::input::Stopped;

/// Rotations seen, by kind (the `gatewatch_rotations_total{kind}` counters).
#[derive(Debug, Default)]
pub struct TailStats {
    /// The path now names another file (rename rotation, kubelet rotation).
    pub renamed: AtomicU64,
    /// The path is gone (deleted, or renamed to a name no glob matches... and no file yet).
    pub deleted: AtomicU64,
    /// The file shrank under us (copytruncate): read again from its start.
    pub truncated: AtomicU64,
}

/// What the discovery and the follower share about one file.
#[derive(Debug, Default)]
pub struct Tracked {
    /// Still being followed.
    pub active: AtomicBool,
    /// Where following ended (once `active` is false).
    pub end: AtomicU64,
}

impl Tracked {
    /// A file being read from `offset`.
    pub fn started(offset: u64) -> Arc<Tracked> {
        Arc::new(Tracked {
            active: AtomicBool::new(true),
            end: AtomicU64::new(offset),
        })
    }

    /// Reading it ended at `position`.
    pub fn finish(&self, position: u64) {
        self.end.store(position, Ordering::SeqCst);
        self.active.store(false, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy, Debug)]
pub struct FollowSettings {
    /// How often a file at its end is checked for new lines, rotation and truncation.
    pub poll: Duration,
    /// After the file was renamed away or deleted, how many quiet polls until it is let go
    /// (a writer may still be finishing its last lines into the old file).
    pub drain_polls: u32,
}

/// How the file's path stands compared with the file we hold.
enum PathState {
    Same,
    Moved,
    Gone,
}

pub struct Follow {
    file: File,
    fingerprint: Fingerprint,
    path: PathBuf,
    id: DevIno,
    position: u64,
    /// Just past the last newline read.
    line_end: u64,
    stop: Arc<AtomicBool>,
    settings: FollowSettings,
    stats: Arc<TailStats>,
    tracked: Arc<Tracked>,
    /// Data was returned since the reader last heard "caught up".
    fresh: bool,
    /// Quiet polls since the path stopped naming this file.
    quiet_after_move: Option<u32>,
}

impl Follow {
    /// Follows `file` (named `fingerprint`, found at `path`), whose cursor is at `position`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        file: File,
        fingerprint: Fingerprint,
        path: PathBuf,
        id: DevIno,
        position: u64,
        stop: Arc<AtomicBool>,
        settings: FollowSettings,
        stats: Arc<TailStats>,
        tracked: Arc<Tracked>,
    ) -> Follow {
        Follow {
            file,
            fingerprint,
            path,
            id,
            position,
            line_end: position,
            stop,
            settings,
            stats,
            tracked,
            fresh: false,
            quiet_after_move: None,
        }
    }

    fn path_state(&self) -> PathState {
        match std::fs::metadata(&self.path) {
            Ok(meta) if DevIno::of(&meta) == self.id => PathState::Same,
            Ok(_) => PathState::Moved,
            Err(_) => PathState::Gone,
        }
    }

    /// Shrunk (copytruncate), or cut and rewritten: the first line is not ours any more.
    fn content_replaced(&self) -> io::Result<bool> {
        Ok(self.file.metadata()?.len() < self.position
            || fingerprint::of_file(&self.file)?.is_some_and(|f| f != self.fingerprint))
    }

    fn end(&mut self) -> io::Result<usize> {
        tracing::debug!(path = %self.path.display(), fingerprint = %self.fingerprint, position = self.position, "file ended");
        self.tracked.finish(self.position);
        Ok(0)
    }
}

impl Read for Follow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                self.tracked.finish(self.position);
                return Err(io::Error::other(Stopped));
            }
            // Checked before every read, not only at the end: a reader held back by the
            // merge may find the file cut and already rewritten past its position.
            if self.content_replaced()? {
                self.stats.truncated.fetch_add(1, Ordering::Relaxed);
                tracing::info!(path = %self.path.display(), "file truncated; following its new content as a new file");
                // A line we saw only the start of is not handed on as a line: ends at the
                // last whole line, where a copy of the file (copytruncate) resumes.
                self.position = self.line_end;
                self.end()?;
                return Err(io::Error::other(Stopped));
            }
            let n = self.file.read(buf)?;
            if n > 0 {
                if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
                    self.line_end = self.position + i as u64 + 1;
                }
                self.position += n as u64;
                self.fresh = true;
                if self.quiet_after_move.is_some() {
                    self.quiet_after_move = Some(0);
                }
                return Ok(n);
            }
            if std::mem::take(&mut self.fresh) {
                // Caught up: let the reader hand on the lines it has before we wait.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match (self.path_state(), self.quiet_after_move) {
                (PathState::Same, _) => self.quiet_after_move = None,
                (state, None) => {
                    let counter = match state {
                        PathState::Gone => &self.stats.deleted,
                        _ => &self.stats.renamed,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    self.quiet_after_move = Some(0);
                }
                (_, Some(polls)) if polls >= self.settings.drain_polls => return self.end(),
                (_, Some(polls)) => self.quiet_after_move = Some(polls + 1),
            }
            std::thread::sleep(self.settings.poll);
        }
    }
}
