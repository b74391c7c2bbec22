//! Distribution of per-key window counts across all keys of a detector.

use hdrhistogram::Histogram;

/// Per-key window counts of the last two epochs, for "how busy is a busy key here".
/// Two histograms rotate so old traffic ages out without per-sample timestamps.
#[derive(Debug)]
pub struct PopulationHistogram {
    current: Histogram<u32>,
    previous: Histogram<u32>,
    epoch: Option<i64>,
    epoch_nanos: i64,
}

impl PopulationHistogram {
    pub fn new(epoch_nanos: i64) -> Self {
        let new = || Histogram::<u32>::new_with_bounds(1, 1 << 30, 2).expect("valid bounds");
        PopulationHistogram {
            current: new(),
            previous: new(),
            epoch: None,
            epoch_nanos: epoch_nanos.max(1),
        }
    }

    /// Rotates epochs as event time moves on.
    pub fn advance_to(&mut self, now_nanos: i64) {
        let epoch = now_nanos.div_euclid(self.epoch_nanos);
        match self.epoch {
            None => self.epoch = Some(epoch),
            Some(current) if epoch > current => {
                std::mem::swap(&mut self.current, &mut self.previous);
                self.current.reset();
                if epoch > current + 1 {
                    self.previous.reset();
                }
                self.epoch = Some(epoch);
            }
            Some(_) => {}
        }
    }

    pub fn record(&mut self, count: u32) {
        if count > 0 {
            // Saturating: a count above the bound is recorded at the bound.
            self.current.saturating_record(count as u64);
        }
    }

    pub fn samples(&self) -> u64 {
        self.current.len() + self.previous.len()
    }

    /// The value at quantile `q` over both epochs, or `None` with fewer than `min_samples`.
    pub fn quantile(&self, q: f64, min_samples: u64) -> Option<u64> {
        if self.samples() < min_samples.max(1) {
            return None;
        }
        let mut merged = self.current.clone();
        merged.add(&self.previous).ok()?;
        Some(merged.value_at_quantile(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_follow_recent_epochs_only() {
        let mut pop = PopulationHistogram::new(100);
        pop.advance_to(0);
        for v in 1..=100 {
            pop.record(v);
        }
        assert_eq!(pop.quantile(0.5, 10), Some(50));
        assert_eq!(pop.quantile(0.5, 1000), None);
        pop.advance_to(150);
        for _ in 0..100 {
            pop.record(1000);
        }
        let median = pop.quantile(0.5, 10).unwrap();
        assert!((99..=1000).contains(&median));
        pop.advance_to(250);
        pop.advance_to(350);
        assert_eq!(pop.samples(), 0);
    }
}
