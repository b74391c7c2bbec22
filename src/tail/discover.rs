//! Finds the files of each source group (globs, re-evaluated on file-system events and on
//! an interval), names each by its fingerprint, and decides where to start reading it:
//! at its checkpoint when known, else at its start (or, at the very first start with
//! `start_at = "end"`, at its end). Each file found is handed on as an `Input` once.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use super::fingerprint::{self, DevIno, Fingerprint};
use super::follow::{Follow, FollowSettings, TailStats, Tracked};
use crate::config::StartAt;
use crate::input::Input;

/// One source group's files.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub name: String,
    pub patterns: Vec<String>,
    pub start_at: StartAt,
}

/// A file to read, found by a scan.
pub struct Found {
    /// Index of its group.
    pub group: usize,
    pub fingerprint: Fingerprint,
    pub path: PathBuf,
    /// Reads the file from `input.offset` on (following it, unless it is gzipped).
    pub input: Input,
    pub tracked: Arc<Tracked>,
}

/// Where reading a file resumes: (group name, fingerprint) → offset.
pub type Checkpoints = HashMap<(String, Fingerprint), u64>;

pub struct Discovery {
    groups: Vec<GroupSpec>,
    checkpoints: Checkpoints,
    known: HashMap<(usize, Fingerprint), Arc<Tracked>>,
    /// Files being followed, by where they are on disk: a cheap "seen already".
    following: HashMap<(usize, DevIno), Arc<Tracked>>,
    first_scan: bool,
    warned: HashSet<PathBuf>,
    /// Files the last scan could not start yet (first line incomplete, or unreadable).
    pending: usize,
    stop: Arc<AtomicBool>,
    follow: FollowSettings,
    pub stats: Arc<TailStats>,
}

impl Discovery {
    pub fn new(
        groups: Vec<GroupSpec>,
        checkpoints: Checkpoints,
        stop: Arc<AtomicBool>,
        follow: FollowSettings,
    ) -> Discovery {
        Discovery {
            groups,
            checkpoints,
            known: HashMap::new(),
            following: HashMap::new(),
            first_scan: true,
            warned: HashSet::new(),
            pending: 0,
            stop,
            follow,
            stats: Arc::new(TailStats::default()),
        }
    }

    /// Evaluates every glob once; returns the files to start reading.
    pub fn scan(&mut self) -> Vec<Found> {
        self.following
            .retain(|_, tracked| tracked.active.load(Ordering::Relaxed));
        let mut found = Vec::new();
        self.pending = 0;
        for group in 0..self.groups.len() {
            for path in self.paths(group) {
                match self.consider(group, &path) {
                    Ok(Some(file)) => {
                        self.warned.remove(&path);
                        found.push(file);
                    }
                    Ok(None) => {}
                    Err(err) => {
                        self.pending += 1;
                        // Logged once per path; retried at every scan.
                        if self.warned.insert(path.clone()) {
                            tracing::warn!(path = %path.display(), error = %err, "cannot read file; will retry");
                        }
                    }
                }
            }
        }
        self.first_scan = false;
        found
    }

    /// Whether the last scan left files to look at again soon: one created empty (its
    /// file-system event came before its first line) or one that could not be read.
    pub fn has_pending(&self) -> bool {
        self.pending > 0
    }

    fn paths(&self, group: usize) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for pattern in &self.groups[group].patterns {
            match glob::glob(pattern) {
                Ok(entries) => paths.extend(entries.filter_map(Result::ok)),
                Err(err) => tracing::warn!(pattern, error = %err, "bad glob"),
            }
        }
        paths.sort();
        paths.dedup();
        paths
    }

    /// Opens `path` unless its file is already followed; decides where to start.
    fn consider(&mut self, group: usize, path: &Path) -> io::Result<Option<Found>> {
        let meta = std::fs::metadata(path)?;
        if !meta.is_file() {
            return Ok(None);
        }
        let id = DevIno::of(&meta);
        if self.following.contains_key(&(group, id)) {
            return Ok(None);
        }
        let file = File::open(path)?;
        // Not named until its first line is complete; looked at again next scan.
        let Some(fingerprint) = fingerprint::of_file(&file)? else {
            self.pending += 1;
            return Ok(None);
        };
        let gzip = fingerprint::is_gzip(&file)?;
        let key = (group, fingerprint.clone());
        let start = match self.known.get(&key) {
            Some(tracked) if tracked.active.load(Ordering::SeqCst) => return Ok(None),
            // Read to its end before: only a plain file that grew since has more.
            Some(tracked) => {
                let end = tracked.end.load(Ordering::SeqCst);
                if gzip || meta.len() <= end {
                    return Ok(None);
                }
                end
            }
            None => self.start_offset(group, &fingerprint, &file, &meta, gzip)?,
        };
        let tracked = Tracked::started(start);
        self.known.insert(key, tracked.clone());
        let input = if gzip {
            gzip_input(file, path, start, tracked.clone())?
        } else {
            self.following.insert((group, id), tracked.clone());
            self.follow_input(file, fingerprint.clone(), path, id, start, tracked.clone())?
        };
        tracing::info!(path = %path.display(), fingerprint = %fingerprint, offset = start, "following file");
        Ok(Some(Found {
            group,
            fingerprint,
            path: path.to_path_buf(),
            input,
            tracked,
        }))
    }

    fn start_offset(
        &self,
        group: usize,
        fingerprint: &Fingerprint,
        file: &File,
        meta: &std::fs::Metadata,
        gzip: bool,
    ) -> io::Result<u64> {
        let spec = &self.groups[group];
        if let Some(&offset) = self
            .checkpoints
            .get(&(spec.name.clone(), fingerprint.clone()))
        {
            if !gzip && offset > meta.len() {
                tracing::warn!(fingerprint = %fingerprint, offset, size = meta.len(), "file is shorter than its checkpoint; reading it from the start");
                return Ok(0);
            }
            return Ok(offset);
        }
        // "end" is for the very first start: a group with checkpoints has run before, and
        // its files new since then are new lines.
        let group_ran_before = self.checkpoints.keys().any(|(name, _)| *name == spec.name);
        if self.first_scan && spec.start_at == StartAt::End && !group_ran_before {
            if gzip {
                // Old rotated history: nothing of it is "new".
                return Ok(u64::MAX);
            }
            return end_of_last_line(file, meta.len());
        }
        Ok(0)
    }

    fn follow_input(
        &self,
        mut file: File,
        fingerprint: Fingerprint,
        path: &Path,
        id: DevIno,
        start: u64,
        tracked: Arc<Tracked>,
    ) -> io::Result<Input> {
        file.seek(SeekFrom::Start(start))?;
        let raw_bytes = Arc::new(AtomicU64::new(0));
        let follow = Follow::new(
            file,
            fingerprint,
            path.to_path_buf(),
            id,
            start,
            self.stop.clone(),
            self.follow,
            self.stats.clone(),
            tracked,
        );
        Ok(Input {
            name: path.display().to_string(),
            reader: Box::new(follow),
            size: None,
            raw_bytes,
            gzip: false,
            offset: start,
        })
    }
}

/// Where the file's last complete line ends (a line still being written is read whole).
fn end_of_last_line(file: &File, size: u64) -> io::Result<u64> {
    let mut end = size;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let from = end.saturating_sub(buf.len() as u64);
        let n = (end - from) as usize;
        file.read_exact_at(&mut buf[..n], from)?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
            return Ok(from + i as u64 + 1);
        }
        end = from;
    }
    Ok(0)
}

/// A gzipped (rotated, compressed) file: read from `start` in its decompressed stream to
/// its end. `start` past the end reads nothing.
fn gzip_input(file: File, path: &Path, start: u64, tracked: Arc<Tracked>) -> io::Result<Input> {
    let mut decoder = MultiGzDecoder::new(io::BufReader::new(file));
    let skipped = if start == u64::MAX {
        io::copy(&mut decoder, &mut io::sink())?
    } else {
        io::copy(&mut (&mut decoder).take(start), &mut io::sink())?
    };
    Ok(Input {
        name: path.display().to_string(),
        reader: Box::new(ToEnd {
            inner: decoder,
            position: skipped,
            tracked,
        }),
        size: None,
        raw_bytes: Arc::new(AtomicU64::new(0)),
        gzip: true,
        offset: skipped,
    })
}

/// Reads to the end once, then marks the file read.
struct ToEnd<R> {
    inner: R,
    position: u64,
    tracked: Arc<Tracked>,
}

impl<R: Read> Read for ToEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position += n as u64;
        if n == 0 {
            self.tracked.finish(self.position);
        }
        Ok(n)
    }
}
