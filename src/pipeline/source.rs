//! Sources: an opened input, its format chosen from its first lines, read in chunks and
//! decoded into batches, in order. Threaded sources read on a thread of their own and decode
//! on a shared pool of workers, several chunks ahead of the engine (a bounded queue per
//! source); inline sources do both on the caller's thread.

use std::io::Read;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use super::batch::{decode, Batch, DecodeSpec, Spare};
use crate::detect::PathMatch;
use crate::input::{lines, Chunk, ChunkReader, Input};
use crate::parse::{Parser, TrustedProxies};

/// Lines of a source's start shown to the format chooser.
pub const SAMPLE_LINES: usize = 64;

/// Chooses a source's parser from its first lines; says how it chose.
pub type ChooseFormat = dyn Fn(&[&[u8]]) -> anyhow::Result<(Box<dyn Parser>, String)> + Send + Sync;

/// How every source is read and decoded.
#[derive(Clone)]
pub struct ReadSpec {
    pub choose: Arc<ChooseFormat>,
    /// The engine's path pattern sets, matched while decoding (`Engine::path_match`).
    pub path_match: Option<Arc<PathMatch>>,
    pub trusted: TrustedProxies,
    pub chunk_bytes: usize,
    pub max_line_bytes: usize,
}

/// What a source hands the engine side, in order.
pub enum SourceEvent {
    /// The format was chosen (always first, unless the source failed before).
    Format(String),
    Batch(Batch),
    /// Reading failed; nothing follows.
    Failed(String),
    End,
}

/// A source the engine side pulls batches from.
pub trait BatchStream: Send {
    /// The next event; blocks until it is there.
    fn next(&mut self) -> SourceEvent;
    /// The next event if one comes within `timeout` (a live source may have none).
    fn next_within(&mut self, timeout: std::time::Duration) -> Option<SourceEvent> {
        let _ = timeout;
        Some(self.next())
    }
    /// Gives a consumed batch back for its buffers to be reused.
    fn recycle(&mut self, batch: Batch);
}

/// Reads chunks and knows the source's decode spec once its format is chosen.
struct Reader {
    chunks: ChunkReader<Box<dyn Read + Send>>,
    /// The first chunk, read to choose the format and not yet handed on.
    first: Option<Chunk>,
    spec: Option<Arc<DecodeSpec>>,
    name: String,
}

impl Reader {
    fn new(input: Input, read: &ReadSpec) -> Reader {
        Reader {
            chunks: ChunkReader::new(input.reader, read.chunk_bytes, read.max_line_bytes)
                .starting_at(input.offset),
            first: None,
            spec: None,
            name: input.name,
        }
    }

    /// Reads the first chunk and chooses the format from it.
    fn open(&mut self, read: &ReadSpec) -> Result<String, String> {
        let first = self.next_chunk(Vec::new())?;
        let sample: Vec<&[u8]> = first
            .as_ref()
            .map(|c| lines(c.bytes()).take(SAMPLE_LINES).collect())
            .unwrap_or_default();
        let (parser, note) = (read.choose)(&sample).map_err(|e| format!("{}: {e:#}", self.name))?;
        self.first = first;
        self.spec = Some(Arc::new(DecodeSpec {
            parser: Arc::from(parser),
            trusted: read.trusted.clone(),
            max_line_bytes: read.max_line_bytes,
            source: Arc::from(self.name.as_str()),
            path_match: read.path_match.clone(),
        }));
        Ok(note)
    }

    fn next_chunk(&mut self, buffer: Vec<u8>) -> Result<Option<Chunk>, String> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        match self.chunks.next_chunk(buffer) {
            // Told to stop: the lines not handed on are read again after a restart.
            Err(e) if crate::input::is_stopped(&e) => Ok(None),
            other => other.map_err(|e| format!("{}: {e}", self.name)),
        }
    }
}

/// Decodes on the calling thread: the single-threaded mode.
pub struct InlineSource {
    reader: Reader,
    read: ReadSpec,
    opened: bool,
    done: bool,
    spare: Option<Batch>,
}

impl InlineSource {
    pub fn new(input: Input, read: ReadSpec) -> Self {
        InlineSource {
            reader: Reader::new(input, &read),
            read,
            opened: false,
            done: false,
            spare: None,
        }
    }
}

impl BatchStream for InlineSource {
    fn next(&mut self) -> SourceEvent {
        if self.done {
            return SourceEvent::End;
        }
        if !self.opened {
            self.opened = true;
            return match self.reader.open(&self.read) {
                Ok(note) => SourceEvent::Format(note),
                Err(err) => {
                    self.done = true;
                    SourceEvent::Failed(err)
                }
            };
        }
        let mut spare = self.spare.take().map(Batch::into_spare).unwrap_or_default();
        match self.reader.next_chunk(std::mem::take(&mut spare.data)) {
            Ok(Some(chunk)) => {
                let spec = self.reader.spec.clone().expect("opened");
                SourceEvent::Batch(decode(chunk, &spec, spare))
            }
            Ok(None) => {
                self.done = true;
                SourceEvent::End
            }
            Err(err) => {
                self.done = true;
                SourceEvent::Failed(err)
            }
        }
    }

    fn recycle(&mut self, batch: Batch) {
        self.spare = Some(batch);
    }
}

struct Job {
    chunk: Chunk,
    spare: Spare,
    spec: Arc<DecodeSpec>,
    reply: SyncSender<Batch>,
}

/// Decoding workers shared by every threaded source. They end when the pool and every
/// source's reader are gone (not joined: a reader may be blocked on a pipe).
pub struct DecodePool {
    jobs: Sender<Job>,
}

impl DecodePool {
    pub fn new(workers: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..workers.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("gatewatch-decode-{i}"))
                .spawn(move || loop {
                    // The lock is held only to take a job; decoding runs unlocked.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let batch = decode(job.chunk, &job.spec, job.spare);
                    // The source may have stopped listening (shutdown): nothing to do.
                    let _ = job.reply.send(batch);
                })
                .expect("spawn a decode worker");
        }
        DecodePool { jobs }
    }

    /// A source read on a thread of its own, decoded on this pool, at most `depth` chunks
    /// ahead of the engine.
    pub fn source(&self, input: Input, read: ReadSpec, depth: usize) -> ThreadedSource {
        let (events, received) = mpsc::sync_channel::<Pending>(depth.max(1));
        let (recycle, spares) = mpsc::channel::<Batch>();
        let jobs = self.jobs.clone();
        std::thread::Builder::new()
            .name("gatewatch-read".into())
            .spawn(move || read_ahead(input, read, jobs, events, spares))
            .expect("spawn a reader");
        ThreadedSource { received, recycle }
    }
}

/// What the reader thread queues: events, or a batch being decoded.
enum Pending {
    Ready(SourceEvent),
    Decoding(Receiver<Batch>),
}

fn read_ahead(
    input: Input,
    read: ReadSpec,
    jobs: Sender<Job>,
    events: SyncSender<Pending>,
    spares: Receiver<Batch>,
) {
    let mut reader = Reader::new(input, &read);
    let first = match reader.open(&read) {
        Ok(note) => SourceEvent::Format(note),
        Err(err) => SourceEvent::Failed(err),
    };
    let failed = matches!(first, SourceEvent::Failed(_));
    if events.send(Pending::Ready(first)).is_err() || failed {
        return;
    }
    let spec = reader.spec.clone().expect("opened");
    loop {
        let mut spare = spares.try_recv().map(Batch::into_spare).unwrap_or_default();
        let event = match reader.next_chunk(std::mem::take(&mut spare.data)) {
            Ok(Some(chunk)) => {
                let (reply, decoded) = mpsc::sync_channel(1);
                let job = Job {
                    chunk,
                    spare,
                    spec: spec.clone(),
                    reply,
                };
                if jobs.send(job).is_err() {
                    return;
                }
                Pending::Decoding(decoded)
            }
            Ok(None) => Pending::Ready(SourceEvent::End),
            Err(err) => Pending::Ready(SourceEvent::Failed(err)),
        };
        let last = matches!(event, Pending::Ready(_));
        // Blocks while `depth` chunks wait for the engine: reading slows to its pace.
        if events.send(event).is_err() || last {
            return;
        }
    }
}

/// Dropping it closes its queue, which ends the reader thread at its next chunk (the thread
/// is not joined: it may be blocked reading a pipe that never ends).
pub struct ThreadedSource {
    received: Receiver<Pending>,
    recycle: Sender<Batch>,
}

impl ThreadedSource {
    fn resolve(pending: Pending) -> SourceEvent {
        match pending {
            Pending::Ready(event) => event,
            // Being decoded already: it comes soon, whatever the source does next.
            Pending::Decoding(batch) => match batch.recv() {
                Ok(batch) => SourceEvent::Batch(batch),
                Err(_) => SourceEvent::Failed("a decode worker stopped".into()),
            },
        }
    }
}

impl BatchStream for ThreadedSource {
    fn next(&mut self) -> SourceEvent {
        match self.received.recv() {
            Ok(pending) => Self::resolve(pending),
            Err(_) => SourceEvent::End,
        }
    }

    fn next_within(&mut self, timeout: std::time::Duration) -> Option<SourceEvent> {
        match self.received.recv_timeout(timeout) {
            Ok(pending) => Some(Self::resolve(pending)),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(SourceEvent::End),
        }
    }

    fn recycle(&mut self, batch: Batch) {
        let _ = self.recycle.send(batch);
    }
}
