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
}

impl Cursor {
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
                    match self.clock.admit(record.ts(), ahead, None, clock) {
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
                SourceEvent::Batch(batch) => self.start(batch),
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
            .map(|(name, stream)| Cursor {
                stream,
                batch: None,
                next: 0,
                clock: SourceClock::default(),
                report: SourceReport {
                    name,
                    ..SourceReport::default()
                },
                rank: 0,
            })
            .collect();
        Merge {
            offsets: Offsets::new(cursors.len()),
            cursors,
            clock,
            events: 0,
            order: Vec::new(),
        }
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
        loop {
            let Some(Reverse((_, rank, i))) = heap.pop() else {
                if idle.is_empty() {
                    break;
                }
                // Every source is quiet: wait for whichever speaks first.
                self.wake(&mut idle, &mut heap, idle_timeout);
                continue;
            };
            // Lines of this source go on while they are not after the next source's head.
            let bound = heap.peek().map(|Reverse((ts, r, _))| (*ts, *r));
            loop {
                let cursor = &mut self.cursors[i];
                let batch = cursor.batch.as_ref().expect("a head is in a batch");
                let records = batch.records();
                let record = &records[cursor.next];
                engine.observe_matched(&record.request, record.line, record.path_bits);
                let ts = record.ts();
                cursor.next += 1;
                cursor.report.first = cursor.report.first.min(Some(ts)).or(Some(ts));
                cursor.report.last = cursor.report.last.max(Some(ts));
                self.events = deliver(engine, sinks, self.events)?;
                let batch_done = cursor.next == records.len();
                let head = cursor.head(i, &clock, &mut self.offsets, self.events, idle_timeout);
                if batch_done {
                    self.offsets.durable(durable(sinks, self.events));
                    progress(self);
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
