//! The engine side: pulls batches from every source, admits each line against its own
//! source's clock, merges the sources in event-time order into the engine, numbers the
//! incident events for the sinks, and tracks which offsets are safe.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::batch::Batch;
use super::offsets::Offsets;
use super::source::{BatchStream, SourceEvent};
use super::source_clock::{Admit, ClockSettings, SourceClock};
use super::Sink;
use crate::detect::Engine;
use crate::event::Timestamp;

/// Unparsed lines kept per source for the summary.
const MAX_SAMPLES: usize = 5;
/// Live and every source quiet: how long a round of looking at them takes before the hook
/// runs again.
const QUIET_WAIT: Duration = Duration::from_millis(100);

/// Whether a live merge goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop once every source has ended (the caller has told them to stop).
    Stop,
}

/// Sees every merged record before the engine does (a cluster agent publishes them).
pub trait Tap: Send {
    /// Record `record` of source `source` (its index in the merge) is merged.
    fn record(&mut self, source: usize, record: &super::Record<'_>);
    /// Makes every record seen so far durable elsewhere; blocks until it is.
    fn flush(&mut self) -> anyhow::Result<()>;
    /// For the caller that set it (metrics, naming sources).
    fn as_any(&mut self) -> &mut dyn std::any::Any;
}

/// The daemon's hook into a live merge (see `Merge::run_live`).
pub type Hook<'a> = dyn FnMut(&mut Merge, &mut Engine) -> Flow + 'a;

/// What one source did.
#[derive(Clone, Debug, Default)]
pub struct SourceReport {
    pub name: String,
    /// How its format was chosen.
    pub format: Option<String>,
    pub lines: u64,
    pub bytes: u64,
    pub parsed: u64,
    pub unparsed: u64,
    /// Too far behind the source's own newest time.
    pub late: u64,
    /// Times far from the source's others, set aside.
    pub out_of_range: u64,
    pub cut_lines: u64,
    pub incomplete: u64,
    /// Requests whose peer was a trusted proxy.
    pub proxied: u64,
    /// Busiest private client addresses (see `PrivateClients`).
    pub private_clients: super::batch::PrivateClients,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// Samples of unparsed lines, `N: why: text` (raw: escape before showing).
    pub samples: Vec<String>,
    pub error: Option<String>,
    /// Offset up to which lines are processed and their events durable.
    pub committed_offset: u64,
    /// Offset up to which the engine has processed lines.
    pub processed_offset: u64,
}

/// Where a source stands when the merge asks for its next line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    /// Its next admitted line has this time.
    At(Timestamp),
    /// A live source with nothing new within the idle timeout: it stops holding the others
    /// back until it has lines again.
    Idle,
    /// Ended or failed.
    Done,
}

struct Cursor {
    stream: Box<dyn BatchStream>,
    batch: Option<Batch>,
    next: usize,
    clock: SourceClock,
    report: SourceReport,
    /// Position among the sources by first event time: breaks ties in the merge.
    rank: usize,
    /// The wall clock when the current batch arrived (live sources).
    wall: Option<Timestamp>,
}

impl Cursor {
    fn new(name: String, stream: Box<dyn BatchStream>, rank: usize) -> Cursor {
        Cursor {
            stream,
            batch: None,
            next: 0,
            clock: SourceClock::default(),
            report: SourceReport {
                name,
                ..SourceReport::default()
            },
            rank,
            wall: None,
        }
    }

    /// Pulls until a batch with records or the end; finishes consumed batches on the way.
    /// With `idle` set, a source with nothing new for that long is reported idle.
    fn head(
        &mut self,
        index: usize,
        clock: &ClockSettings,
        offsets: &mut Offsets,
        events: u64,
        idle: Option<Duration>,
    ) -> Head {
        loop {
            if let Some(batch) = &self.batch {
                let records = batch.records();
                while let Some(record) = records.get(self.next) {
                    let ahead = records[self.next + 1..].iter().map(|r| r.ts());
                    match self.clock.admit(record.ts(), ahead, self.wall, clock) {
                        Admit::Accept => return Head::At(record.ts()),
                        Admit::Late => self.report.late += 1,
                        Admit::OutOfRange => self.report.out_of_range += 1,
                    }
                    self.next += 1;
                }
                let done = self.batch.take().expect("checked");
                offsets.processed(index, done.counts.end_offset, events);
                self.stream.recycle(done);
            }
            let event = match idle {
                None => self.stream.next(),
                Some(timeout) => match self.stream.next_within(timeout) {
                    Some(event) => event,
                    None => return Head::Idle,
                },
            };
            match event {
                SourceEvent::Format(note) => self.report.format = Some(note),
                SourceEvent::Batch(batch) => {
                    self.wall = clock.wall_clock.map(|now| now());
                    self.start(batch)
                }
                SourceEvent::Failed(err) => {
                    self.report.error = Some(err);
                    return Head::Done;
                }
                SourceEvent::End => return Head::Done,
            }
        }
    }

    fn start(&mut self, batch: Batch) {
        let report = &mut self.report;
        for (index, sample) in &batch.counts.samples {
            if report.samples.len() < MAX_SAMPLES {
                report
                    .samples
                    .push(format!("{}: {sample}", report.lines + index + 1));
            }
        }
        report.lines += batch.counts.lines;
        report.bytes += batch.counts.bytes;
        report.parsed += batch.records().len() as u64;
        report.unparsed += batch.counts.unparsed;
        report.cut_lines += batch.counts.cut_lines;
        report.incomplete += batch.counts.incomplete;
        report.proxied += batch.counts.proxied;
        report.private_clients.merge(&batch.counts.private_clients);
        self.batch = Some(batch);
        self.next = 0;
    }
}

/// Every source, merged.
pub struct Merge {
    cursors: Vec<Cursor>,
    clock: ClockSettings,
    offsets: Offsets,
    /// Incident events handed to the sinks so far.
    events: u64,
    /// Sources in the order their lines were merged (by first event time).
    order: Vec<usize>,
    tap: Option<Box<dyn Tap>>,
}

impl Merge {
    pub fn new(
        names: Vec<String>,
        streams: Vec<Box<dyn BatchStream>>,
        clock: ClockSettings,
    ) -> Self {
        let cursors: Vec<Cursor> = names
            .into_iter()
            .zip(streams)
            .map(|(name, stream)| Cursor::new(name, stream, 0))
            .collect();
        Merge {
            offsets: Offsets::new(cursors.len()),
            cursors,
            clock,
            events: 0,
            order: Vec::new(),
            tap: None,
        }
    }

    /// Every merged record goes to `tap` too, before the engine.
    pub fn set_tap(&mut self, tap: Box<dyn Tap>) {
        self.tap = Some(tap);
    }

    pub fn tap(&mut self) -> Option<&mut (dyn Tap + 'static)> {
        self.tap.as_deref_mut()
    }

    /// Flushes the tap (if any): every record merged so far is then durable there.
    pub fn flush_tap(&mut self) -> anyhow::Result<()> {
        self.tap.as_mut().map_or(Ok(()), |tap| tap.flush())
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    /// Per-source reports, in the order the sources were given.
    pub fn reports(&self) -> Vec<SourceReport> {
        self.cursors
            .iter()
            .enumerate()
            .map(|(i, c)| SourceReport {
                committed_offset: self.offsets.committed(i),
                processed_offset: self.offsets.processed_to(i),
                ..c.report.clone()
            })
            .collect()
    }

    /// Source indexes by first event time (the merge's tie order); sources without a line
    /// come last.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn committed_offset(&self, source: usize) -> u64 {
        self.offsets.committed(source)
    }

    /// Offset up to which the engine has processed `source` (events maybe not yet durable).
    pub fn processed_offset(&self, source: usize) -> u64 {
        self.offsets.processed_to(source)
    }

    /// Feeds every line of every source to `engine` in event-time order. With
    /// `idle_timeout` (live sources), a source silent for that long no longer holds the
    /// others back; it rejoins the merge when it has lines again.
    pub fn run(
        &mut self,
        engine: &mut Engine,
        sinks: &mut [&mut dyn Sink],
        idle_timeout: Option<Duration>,
        progress: &mut dyn FnMut(&Merge),
    ) -> anyhow::Result<()> {
        let mut hook = |merge: &mut Merge, _: &mut Engine| {
            progress(merge);
            Flow::Continue
        };
        self.drive(engine, sinks, idle_timeout, &mut hook, false)
    }

    /// The daemon's merge: runs until `hook` says stop and every source has ended. `hook` is
    /// called after each batch and about every `QUIET_WAIT` while all sources are quiet; it
    /// may add sources (`add`) and move the engine's clock (`Engine::advance_to`).
    pub fn run_live(
        &mut self,
        engine: &mut Engine,
        sinks: &mut [&mut dyn Sink],
        idle_timeout: Duration,
        hook: &mut Hook<'_>,
    ) -> anyhow::Result<()> {
        self.drive(engine, sinks, Some(idle_timeout), hook, true)
    }

    /// Adds a source (a file found while running); it joins the merge at the next batch.
    pub fn add(&mut self, name: String, stream: Box<dyn BatchStream>) -> usize {
        let index = self.cursors.len();
        self.cursors.push(Cursor::new(name, stream, index));
        self.offsets.add();
        index
    }

    /// Sources so far (given and added).
    pub fn len(&self) -> usize {
        self.cursors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cursors.is_empty()
    }

    /// No source is part-way through a batch: the engine has seen exactly the lines up to
    /// every source's processed offset (a consistent point to save state with offsets).
    pub fn at_rest(&self) -> bool {
        self.cursors
            .iter()
            .all(|c| c.batch.is_none() || c.next == 0)
    }

    /// What source `index` did so far (offsets are in `committed_offset`).
    pub fn report(&self, index: usize) -> &SourceReport {
        &self.cursors[index].report
    }

    fn drive(
        &mut self,
        engine: &mut Engine,
        sinks: &mut [&mut dyn Sink],
        idle_timeout: Option<Duration>,
        hook: &mut Hook<'_>,
        live: bool,
    ) -> anyhow::Result<()> {
        let clock = self.clock;
        let mut heads: Vec<(usize, Head)> = Vec::new();
        for (i, cursor) in self.cursors.iter_mut().enumerate() {
            let head = cursor.head(i, &clock, &mut self.offsets, self.events, idle_timeout);
            heads.push((i, head));
        }
        let first_time = |head: &Head| match head {
            Head::At(ts) => Some(*ts),
            _ => None,
        };
        heads.sort_by_key(|(i, head)| {
            let at = first_time(head);
            (at.is_none(), at, self.cursors[*i].report.name.clone())
        });
        self.order = heads.iter().map(|&(i, _)| i).collect();
        let mut heap = BinaryHeap::new();
        let mut idle: Vec<usize> = Vec::new();
        for (rank, &(i, head)) in heads.iter().enumerate() {
            self.cursors[i].rank = rank;
            match head {
                Head::At(ts) => heap.push(Reverse((ts, rank, i))),
                Head::Idle => idle.push(i),
                Head::Done => {}
            }
        }
        let mut joined = self.cursors.len();
        let mut stopping = false;
        loop {
            let Some(Reverse((_, rank, i))) = heap.pop() else {
                if !live {
                    if idle.is_empty() {
                        break;
                    }
                    // Every source is quiet: wait for whichever speaks first.
                    self.wake(&mut idle, &mut heap, idle_timeout);
                    continue;
                }
                if stopping && idle.is_empty() && joined == self.cursors.len() {
                    break;
                }
                // Live and quiet: look at each quiet source briefly, then let the hook run
                // (new files, the clock, checkpoints, a stop).
                let wait = QUIET_WAIT / (idle.len().max(1) as u32);
                if idle.is_empty() {
                    std::thread::sleep(QUIET_WAIT);
                } else {
                    self.wake(&mut idle, &mut heap, Some(wait));
                }
                stopping |= self.call(engine, sinks, hook)? == Flow::Stop;
                self.join(&mut joined, &mut heap, &mut idle);
                continue;
            };
            // Lines of this source go on while they are not after the next source's head.
            let bound = heap.peek().map(|Reverse((ts, r, _))| (*ts, *r));
            loop {
                let cursor = &mut self.cursors[i];
                let batch = cursor.batch.as_ref().expect("a head is in a batch");
                let records = batch.records();
                let record = &records[cursor.next];
                if let Some(tap) = &mut self.tap {
                    tap.record(i, record);
                }
                engine.observe_families(
                    &record.request,
                    record.line,
                    record.path_bits,
                    record.families,
                );
                let ts = record.ts();
                cursor.next += 1;
                cursor.report.first = cursor.report.first.min(Some(ts)).or(Some(ts));
                cursor.report.last = cursor.report.last.max(Some(ts));
                self.events = deliver(engine, sinks, self.events)?;
                let batch_done = cursor.next == records.len();
                let head = if live && batch_done {
                    // Wait for this source's next lines in slices, letting the hook run
                    // (new files, checkpoints, metrics, a stop) while it holds the others.
                    let limit = idle_timeout.unwrap_or(QUIET_WAIT);
                    let slice = QUIET_WAIT.min(limit);
                    let mut waited = Duration::ZERO;
                    loop {
                        let cursor = &mut self.cursors[i];
                        let head =
                            cursor.head(i, &clock, &mut self.offsets, self.events, Some(slice));
                        waited += slice;
                        if head != Head::Idle || waited >= limit {
                            break head;
                        }
                        stopping |= self.call(engine, sinks, hook)? == Flow::Stop;
                        self.join(&mut joined, &mut heap, &mut idle);
                    }
                } else {
                    cursor.head(i, &clock, &mut self.offsets, self.events, idle_timeout)
                };
                if batch_done {
                    self.offsets.durable(durable(sinks, self.events));
                    stopping |= self.call(engine, sinks, hook)? == Flow::Stop;
                    self.join(&mut joined, &mut heap, &mut idle);
                    if !idle.is_empty() {
                        // Quiet sources are checked between batches, without waiting.
                        self.wake(&mut idle, &mut heap, Some(Duration::ZERO));
                    }
                }
                match head {
                    Head::At(ts) if bound.is_none_or(|b| (ts, rank) < b) => continue,
                    Head::At(ts) => {
                        heap.push(Reverse((ts, rank, i)));
                        break;
                    }
                    Head::Idle => {
                        tracing::debug!(source = i, "source idle");
                        idle.push(i);
                        break;
                    }
                    Head::Done => break,
                }
            }
        }
        self.offsets.durable(durable(sinks, self.events));
        Ok(())
    }

    /// Runs the hook and hands on the events it caused (closing quiet incidents).
    fn call(
        &mut self,
        engine: &mut Engine,
        sinks: &mut [&mut dyn Sink],
        hook: &mut Hook<'_>,
    ) -> anyhow::Result<Flow> {
        let flow = hook(self, engine);
        self.events = deliver(engine, sinks, self.events)?;
        self.offsets.durable(durable(sinks, self.events));
        Ok(flow)
    }

    /// Sources added since `joined` enter the merge as quiet ones: they join the heap once
    /// their first lines are there.
    fn join(
        &mut self,
        joined: &mut usize,
        heap: &mut BinaryHeap<Reverse<(Timestamp, usize, usize)>>,
        idle: &mut Vec<usize>,
    ) {
        let new = *joined..self.cursors.len();
        if new.is_empty() {
            return;
        }
        tracing::debug!(?new, "sources join");
        idle.extend(new.clone());
        self.order.extend(new);
        *joined = self.cursors.len();
        self.wake(idle, heap, Some(Duration::ZERO));
    }

    /// Asks each idle source for lines (waiting up to `wait` each); those that have some
    /// rejoin the merge.
    fn wake(
        &mut self,
        idle: &mut Vec<usize>,
        heap: &mut BinaryHeap<Reverse<(Timestamp, usize, usize)>>,
        wait: Option<Duration>,
    ) {
        let clock = self.clock;
        idle.retain(|&i| {
            let cursor = &mut self.cursors[i];
            match cursor.head(i, &clock, &mut self.offsets, self.events, wait) {
                Head::At(ts) => {
                    tracing::debug!(source = i, "source wakes");
                    heap.push(Reverse((ts, cursor.rank, i)));
                    false
                }
                Head::Idle => true,
                Head::Done => false,
            }
        });
    }

    /// End of input: the clock stays where the lines left it; open incidents close.
    pub fn finish(
        &mut self,
        engine: &mut Engine,
        sinks: &mut [&mut dyn Sink],
    ) -> anyhow::Result<()> {
        engine.finish();
        self.events = deliver(engine, sinks, self.events)?;
        self.offsets.durable(durable(sinks, self.events));
        Ok(())
    }

    /// Asks the sinks again what is durable (after they flushed).
    pub fn refresh_durable(&mut self, sinks: &mut [&mut dyn Sink]) {
        self.offsets.durable(durable(sinks, self.events));
    }
}

fn deliver(engine: &mut Engine, sinks: &mut [&mut dyn Sink], mut seq: u64) -> anyhow::Result<u64> {
    for event in engine.drain_events() {
        seq += 1;
        for sink in sinks.iter_mut() {
            sink.accept(seq, &event)?;
        }
    }
    Ok(seq)
}

fn durable(sinks: &mut [&mut dyn Sink], events: u64) -> u64 {
    sinks
        .iter_mut()
        .map(|s| s.durable())
        .min()
        .unwrap_or(events)
}
