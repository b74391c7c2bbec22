//! Which input offsets are safely processed: every line before the offset went through the
//! engine *and* every incident event those lines produced is durable in the sinks. This is
//! what a daemon checkpoints; a restart from it neither loses nor repeats an event.

use std::collections::VecDeque;

#[derive(Debug, Default)]
struct SourceOffsets {
    committed: u64,
    /// (events emitted so far, offset) for batches the engine finished, oldest first.
    waiting: VecDeque<(u64, u64)>,
}

#[derive(Debug, Default)]
pub struct Offsets {
    sources: Vec<SourceOffsets>,
}

impl Offsets {
    pub fn new(sources: usize) -> Self {
        Offsets {
            sources: (0..sources).map(|_| SourceOffsets::default()).collect(),
        }
    }

    /// One more source, numbered after the others.
    pub fn add(&mut self) {
        self.sources.push(SourceOffsets::default());
    }

    /// The engine consumed `source` up to `offset` when `events` events had been emitted.
    pub fn processed(&mut self, source: usize, offset: u64, events: u64) {
        let waiting = &mut self.sources[source].waiting;
        match waiting.back_mut() {
            // Batches finished with no event in between need one entry only.
            Some((seq, last)) if *seq == events => *last = (*last).max(offset),
            _ => waiting.push_back((events, offset)),
        }
    }

    /// Every event up to `durable` is stored: offsets that waited for them become committed.
    pub fn durable(&mut self, durable: u64) {
        for source in &mut self.sources {
            while let Some(&(seq, offset)) = source.waiting.front() {
                if seq > durable {
                    break;
                }
                source.committed = source.committed.max(offset);
                source.waiting.pop_front();
            }
        }
    }

    pub fn committed(&self, source: usize) -> u64 {
        self.sources[source].committed
    }

    /// The newest offset the engine has processed (committed or not).
    pub fn processed_to(&self, source: usize) -> u64 {
        let source = &self.sources[source];
        source
            .waiting
            .back()
            .map_or(source.committed, |&(_, offset)| offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_wait_for_their_events() {
        let mut offsets = Offsets::new(2);
        offsets.processed(0, 100, 0);
        offsets.processed(1, 50, 0);
        offsets.processed(0, 200, 3);
        offsets.processed(0, 300, 3);
        offsets.durable(0);
        assert_eq!((offsets.committed(0), offsets.committed(1)), (100, 50));
        assert_eq!(offsets.processed_to(0), 300);
        offsets.durable(2);
        assert_eq!(offsets.committed(0), 100, "event 3 is not durable yet");
        offsets.durable(3);
        assert_eq!(offsets.committed(0), 300);
    }
}
