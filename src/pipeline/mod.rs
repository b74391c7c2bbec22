//! The one pipeline `replay` (and later the daemon) runs: sources → decode (worker threads)
//! → per-source event time → merge by event time → engine → incident events → sinks, with
//! the input offsets that are safe to checkpoint.
//!
//! Sources are merged record by record in event-time order, so the engine sees one stream
//! whatever order inputs are named in (rotated `access.log*`, one file per pod). Ties go to
//! the source whose first line is older, so a rotated set replays exactly as one file. The
//! engine's clock, the newest merged time, is so the minimum over the active sources'
//! positions; a source at its end, or (live) idle past `idle_timeout`, no longer holds it.
//! Which lines are late is decided per source, against its own watermark (`SourceClock`).

mod batch;
mod idle_clock;
mod merge;
mod offsets;
mod saved_state;
mod source;
mod source_clock;
mod store_sink;

use std::sync::Arc;

pub use batch::{decode, is_private, Batch, Counts, DecodeSpec, PrivateClients, Record, Spare};
pub use idle_clock::IdleClock;
pub use merge::{Flow, Hook, Merge, SourceReport, Tap};
pub use offsets::Offsets;
pub use saved_state::{SavedState, StateChanges};
pub use source::{
    BatchStream, ChooseFormat, DecodePool, InlineSource, ReadSpec, SourceEvent, ThreadedSource,
    SAMPLE_LINES,
};
pub use source_clock::{Admit, ClockSettings, SourceClock};
pub use store_sink::{StoreProbe, StoreSink};

use crate::detect::{Engine, IncidentEvent};
use crate::input::Input;

/// Where incident events go (printer, store, later the alert outbox).
pub trait Sink {
    /// Takes event number `seq` (numbered from 1, in order).
    fn accept(&mut self, seq: u64, event: &IncidentEvent) -> anyhow::Result<()>;
    /// Every event numbered up to this is durable (stored, printed).
    fn durable(&mut self) -> u64;
}

#[derive(Clone, Copy, Debug)]
pub struct PipelineSettings {
    pub clock: ClockSettings,
    /// Decode workers; 1 runs everything on the calling thread.
    pub threads: usize,
    /// Chunks a source reads ahead of the engine.
    pub depth: usize,
    /// Live sources: one with nothing new for this long (wall clock) stops holding the
    /// others back. `None` for files read to their end (replay): every source is waited for.
    pub idle_timeout: Option<std::time::Duration>,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            clock: ClockSettings::default(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            depth: 3,
            idle_timeout: None,
        }
    }
}

/// Chunk size for `sources` inputs read at once: large enough that per-chunk work is
/// noise (~600 lines), small enough that the read-ahead of every source (`depth` chunks
/// each, plus their parsed requests, ~3x the chunk) stays within about 16 MB.
pub fn chunk_bytes_for(sources: usize, depth: usize, max_line_bytes: usize) -> usize {
    let budget = 16 << 20;
    (budget / (sources.max(1) * (depth + 3) * 4)).clamp(2 * max_line_bytes, 128 << 10)
}

/// Builds the sources for opened inputs: threaded on a decode pool, or inline.
pub fn sources(
    inputs: Vec<Input>,
    read: &ReadSpec,
    settings: &PipelineSettings,
) -> Vec<Box<dyn BatchStream>> {
    if settings.threads <= 1 {
        return inputs
            .into_iter()
            .map(|input| Box::new(InlineSource::new(input, read.clone())) as Box<dyn BatchStream>)
            .collect();
    }
    let pool = DecodePool::new(settings.threads);
    inputs
        .into_iter()
        .map(|input| {
            Box::new(pool.source(input, read.clone(), settings.depth)) as Box<dyn BatchStream>
        })
        .collect()
}

/// Runs every source to its end through `engine` into `sinks`, closing what is still open
/// at the end. `progress` is called after each batch.
pub fn run(
    names: Vec<String>,
    streams: Vec<Box<dyn BatchStream>>,
    engine: &mut Engine,
    sinks: &mut [&mut dyn Sink],
    settings: &PipelineSettings,
    progress: &mut dyn FnMut(&Merge),
) -> anyhow::Result<Merge> {
    let mut merge = Merge::new(names, streams, settings.clock);
    merge.run(engine, sinks, settings.idle_timeout, progress)?;
    merge.finish(engine, sinks)?;
    Ok(merge)
}

/// A format chooser that always picks the named preset (for callers that know the format).
pub fn preset_format(name: &'static str) -> Arc<ChooseFormat> {
    Arc::new(move |_: &[&[u8]]| {
        crate::parse::preset(name)
            .map(|parser| (parser, format!("{name} (fixed)")))
            .ok_or_else(|| anyhow::anyhow!("no format preset named {name:?}"))
    })
}

/// How every source is read (no path pre-matching; set `path_match` for that).
pub fn read_spec(
    choose: Arc<ChooseFormat>,
    trusted: crate::parse::TrustedProxies,
    chunk_bytes: usize,
    max_line_bytes: usize,
) -> ReadSpec {
    ReadSpec {
        choose,
        path_match: None,
        trusted,
        chunk_bytes,
        max_line_bytes,
    }
}
