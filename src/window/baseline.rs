//! Exponentially weighted mean and variance of a key's per-bucket counts.

/// EWMA of a per-bucket count with its variance (West's incremental form). `f32` keeps
/// per-key state small; the values are rates, not money.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ewma {
    #[serde(with = "super::exact")]
    mean: f32,
    #[serde(with = "super::exact")]
    var: f32,
    /// Buckets observed (saturating): how much history backs the mean.
    observed: u32,
}

/// Beyond this many empty buckets in a row the state is decayed in one step.
const MAX_STEPWISE_GAP: u64 = 64;

impl Ewma {
    /// Smoothing factor for a half-life measured in buckets.
    pub fn alpha_for_half_life(half_life_buckets: f64) -> f64 {
        1.0 - 0.5f64.powf(1.0 / half_life_buckets.max(1e-9))
    }

    pub fn mean(&self) -> f64 {
        self.mean as f64
    }

    pub fn variance(&self) -> f64 {
        self.var as f64
    }

    pub fn observed(&self) -> u32 {
        self.observed
    }

    pub fn update(&mut self, value: f64, alpha: f64) {
        if self.observed == 0 {
            self.mean = value as f32;
            self.var = 0.0;
        } else {
            let mean = self.mean as f64;
            let diff = value - mean;
            let incr = alpha * diff;
            self.mean = (mean + incr) as f32;
            self.var = ((1.0 - alpha) * (self.var as f64 + diff * incr)) as f32;
        }
        self.observed = self.observed.saturating_add(1);
    }

    /// Learns `count` empty buckets at once (a key that was silent).
    pub fn update_zeros(&mut self, count: u64, alpha: f64) {
        if count == 0 {
            return;
        }
        if count <= MAX_STEPWISE_GAP || self.observed == 0 {
            for _ in 0..count.min(MAX_STEPWISE_GAP) {
                self.update(0.0, alpha);
            }
            if count > MAX_STEPWISE_GAP {
                self.decay(count - MAX_STEPWISE_GAP, alpha);
            }
            return;
        }
        self.decay(count, alpha);
    }

    fn decay(&mut self, count: u64, alpha: f64) {
        let factor = (1.0 - alpha).powf(count as f64);
        self.mean = (self.mean as f64 * factor) as f32;
        self.var = (self.var as f64 * factor) as f32;
        self.observed = self
            .observed
            .saturating_add(count.min(u32::MAX as u64) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_a_steady_rate() {
        let alpha = Ewma::alpha_for_half_life(6.0);
        let mut ewma = Ewma::default();
        for i in 0..500 {
            ewma.update(if i % 2 == 0 { 8.0 } else { 12.0 }, alpha);
        }
        assert!((ewma.mean() - 10.0).abs() < 0.5, "{}", ewma.mean());
        assert!(
            ewma.variance() > 2.0 && ewma.variance() < 6.0,
            "{}",
            ewma.variance()
        );
    }

    #[test]
    fn half_life_halves_after_silence() {
        let alpha = Ewma::alpha_for_half_life(10.0);
        let mut ewma = Ewma::default();
        ewma.update(100.0, alpha);
        ewma.update_zeros(10, alpha);
        assert!((ewma.mean() - 50.0).abs() < 0.01, "{}", ewma.mean());
        let mut long = Ewma::default();
        long.update(100.0, alpha);
        long.update_zeros(200, alpha);
        assert!(long.mean() < 0.0001);
        assert_eq!(long.observed(), 201);
    }
}
