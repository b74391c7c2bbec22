//! Distribution of per-key window counts across all keys of a detector.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize, Serializer};

/// Per-key window counts of the last two epochs, for "how busy is a busy key here".
/// Two histograms rotate so old traffic ages out without per-sample timestamps.
/// Saved as each histogram's recorded `(value, count)` pairs, which give back the same
/// buckets and so the same quantiles.
#[derive(Debug, Deserialize)]
#[serde(try_from = "SavedPopulation")]
pub struct PopulationHistogram {
    current: Histogram<u32>,
    previous: Histogram<u32>,
    /// `current` and `previous` together, kept as samples arrive: a quantile is read off
    /// it without merging two histograms each time.
    both: Histogram<u32>,
    epoch: Option<i64>,
    epoch_nanos: i64,
}

impl PopulationHistogram {
    pub fn new(epoch_nanos: i64) -> Self {
        PopulationHistogram {
            current: histogram(),
            previous: histogram(),
            both: histogram(),
            epoch: None,
            epoch_nanos: epoch_nanos.max(1),
        }
    }

    /// The epoch length it was made with (a restored one must match its detector's).
    pub fn epoch_nanos(&self) -> i64 {
        self.epoch_nanos
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
                self.both.clone_from(&self.previous);
                self.epoch = Some(epoch);
            }
            Some(_) => {}
        }
    }

    pub fn record(&mut self, count: u32) {
        if count > 0 {
            // Saturating: a count above the bound is recorded at the bound.
            self.current.saturating_record(count as u64);
            self.both.saturating_record(count as u64);
        }
    }

    pub fn samples(&self) -> u64 {
        self.current.len() + self.previous.len()
    }

    /// `quantile` over these samples and those of `others` (other partitions' histograms
    /// of the same detector, in cluster mode).
    pub fn quantile_with(
        &self,
        others: &[PopulationHistogram],
        q: f64,
        min_samples: u64,
    ) -> Option<u64> {
        let samples = self.samples() + others.iter().map(|o| o.samples()).sum::<u64>();
        if samples < min_samples.max(1) {
            return None;
        }
        let mut merged = self.both.clone();
        for other in others {
            merged.add(&other.both).ok()?;
        }
        Some(merged.value_at_quantile(q))
    }

    /// The value at quantile `q` over both epochs, or `None` with fewer than `min_samples`.
    pub fn quantile(&self, q: f64, min_samples: u64) -> Option<u64> {
        if self.samples() < min_samples.max(1) {
            return None;
        }
        Some(self.both.value_at_quantile(q))
    }
}

fn histogram() -> Histogram<u32> {
    Histogram::<u32>::new_with_bounds(1, 1 << 30, 2).expect("valid bounds")
}

/// `(lowest value of the bucket, count)` for every non-empty bucket.
fn recorded(histogram: &Histogram<u32>) -> Vec<(u64, u32)> {
    histogram
        .iter_recorded()
        .map(|v| {
            (
                histogram.lowest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            )
        })
        .collect()
}

fn rebuilt(pairs: &[(u64, u32)]) -> Result<Histogram<u32>, String> {
    let mut histogram = histogram();
    for &(value, count) in pairs {
        histogram
            .record_n(value, count)
            .map_err(|e| format!("value {value}: {e:?}"))?;
    }
    Ok(histogram)
}

#[derive(Serialize, Deserialize)]
struct SavedPopulation {
    epoch_nanos: i64,
    epoch: Option<i64>,
    current: Vec<(u64, u32)>,
    previous: Vec<(u64, u32)>,
}

impl Serialize for PopulationHistogram {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SavedPopulation {
            epoch_nanos: self.epoch_nanos,
            epoch: self.epoch,
            current: recorded(&self.current),
            previous: recorded(&self.previous),
        }
        .serialize(serializer)
    }
}

impl TryFrom<SavedPopulation> for PopulationHistogram {
    type Error = String;

    fn try_from(saved: SavedPopulation) -> Result<Self, String> {
        if saved.epoch_nanos < 1 {
            return Err(format!("epoch of {} ns", saved.epoch_nanos));
        }
        let (current, previous) = (rebuilt(&saved.current)?, rebuilt(&saved.previous)?);
        let mut both = current.clone();
        both.add(&previous).map_err(|e| format!("{e:?}"))?;
        Ok(PopulationHistogram {
            current,
            previous,
            both,
            epoch: saved.epoch,
            epoch_nanos: saved.epoch_nanos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_partitions_populations_count_as_ones_own() {
        let (mut own, mut other) = (PopulationHistogram::new(100), PopulationHistogram::new(100));
        for _ in 0..150 {
            own.record(2);
            other.record(40);
        }
        assert_eq!(
            own.quantile(0.9, 200),
            None,
            "150 samples are too few alone"
        );
        let merged = own
            .quantile_with(std::slice::from_ref(&other), 0.9, 200)
            .unwrap();
        assert!(
            (39..=41).contains(&merged),
            "the busy other partition moves the 90th percentile: {merged}"
        );
        assert_eq!(own.quantile_with(&[], 0.5, 100), own.quantile(0.5, 100));
    }

    #[test]
    fn the_running_sum_of_both_epochs_is_their_merge() {
        let mut pop = PopulationHistogram::new(100);
        for (at, values) in [(0, 1..400u32), (120, 200..900), (180, 5..60), (420, 1..30)] {
            pop.advance_to(at);
            for v in values {
                pop.record(v * v % 977 + 1);
            }
            let mut merged = pop.current.clone();
            merged.add(&pop.previous).unwrap();
            for q in [0.0, 0.25, 0.5, 0.9, 0.99, 1.0] {
                assert_eq!(
                    pop.quantile(q, 1),
                    Some(merged.value_at_quantile(q)),
                    "at {at}, q {q}"
                );
            }
        }
    }

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

    #[test]
    fn saved_populations_give_the_same_quantiles() {
        let mut pop = PopulationHistogram::new(100);
        pop.advance_to(0);
        for v in 1..=3000 {
            pop.record(v * 7 % 1013 + v);
        }
        pop.advance_to(150);
        for v in 1..=500 {
            pop.record(v * 131);
        }
        pop.record(u32::MAX);
        let text = serde_json::to_string(&pop).unwrap();
        let back: PopulationHistogram = serde_json::from_str(&text).unwrap();
        assert_eq!(back.samples(), pop.samples());
        assert_eq!(back.epoch, pop.epoch);
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(back.quantile(q, 1), pop.quantile(q, 1), "q {q}");
        }
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        let out_of_range =
            r#"{"epoch_nanos":100,"epoch":1,"current":[[4294967296,1]],"previous":[]}"#;
        assert!(serde_json::from_str::<PopulationHistogram>(out_of_range).is_err());
    }
}
