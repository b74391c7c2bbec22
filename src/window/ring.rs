//! A sliding window of per-bucket counts in event time.

use crate::event::Timestamp;

/// Upper bound on buckets per window, so a window is a fixed-size array (no allocation
/// per key: a million keys must fit in a few tens of MB).
pub const MAX_BUCKETS: usize = 30;

/// Window geometry, shared by every key of a detector (not stored per key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    bucket_nanos: i64,
    buckets: usize,
}

impl WindowSpec {
    /// `None` when the window is not a whole number (1..=MAX_BUCKETS) of positive buckets.
    pub fn new(window_nanos: i64, bucket_nanos: i64) -> Option<Self> {
        if bucket_nanos <= 0 || window_nanos <= 0 || window_nanos % bucket_nanos != 0 {
            return None;
        }
        let buckets = (window_nanos / bucket_nanos) as usize;
        (1..=MAX_BUCKETS).contains(&buckets).then_some(WindowSpec {
            bucket_nanos,
            buckets,
        })
    }

    pub fn bucket_of(&self, ts: Timestamp) -> i64 {
        ts.nanos().div_euclid(self.bucket_nanos)
    }

    pub fn bucket_start(&self, bucket: i64) -> Timestamp {
        Timestamp(bucket * self.bucket_nanos)
    }

    pub fn buckets(&self) -> usize {
        self.buckets
    }

    pub fn bucket_nanos(&self) -> i64 {
        self.bucket_nanos
    }

    pub fn window_nanos(&self) -> i64 {
        self.bucket_nanos * self.buckets as i64
    }
}

/// Counts per bucket over the last `spec.buckets()` buckets ending at `head`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(into = "SavedWindow", try_from = "SavedWindow")]
pub struct RateWindow {
    counts: [u32; MAX_BUCKETS],
    head: i64,
    sum: u32,
}

/// A window as saved: its head and its slots' counts (slot = bucket mod the window's
/// buckets), without the empty slots at the end. The sum is recomputed.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedWindow {
    head: i64,
    counts: Vec<u32>,
}

impl From<RateWindow> for SavedWindow {
    fn from(window: RateWindow) -> Self {
        let used = window
            .counts
            .iter()
            .rposition(|&c| c != 0)
            .map_or(0, |last| last + 1);
        SavedWindow {
            head: window.head,
            counts: window.counts[..used].to_vec(),
        }
    }
}

impl TryFrom<SavedWindow> for RateWindow {
    type Error = String;

    fn try_from(saved: SavedWindow) -> Result<Self, String> {
        if saved.counts.len() > MAX_BUCKETS {
            return Err(format!(
                "{} bucket counts, at most {MAX_BUCKETS}",
                saved.counts.len()
            ));
        }
        let mut counts = [0; MAX_BUCKETS];
        counts[..saved.counts.len()].copy_from_slice(&saved.counts);
        let sum = saved.counts.iter().map(|&c| c as u64).sum::<u64>();
        Ok(RateWindow {
            counts,
            head: saved.head,
            sum: sum.min(u32::MAX as u64) as u32,
        })
    }
}

/// Result of adding to a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// Counted in its bucket.
    Counted,
    /// Older than the whole window: not counted.
    TooOld,
}

impl RateWindow {
    pub fn new(head: i64) -> Self {
        RateWindow {
            counts: [0; MAX_BUCKETS],
            head,
            sum: 0,
        }
    }

    /// Whether the window can belong to a window of `spec`'s geometry (a restored window
    /// has no count outside `spec`'s slots).
    pub fn fits(&self, spec: &WindowSpec) -> bool {
        self.counts[spec.buckets..].iter().all(|&c| c == 0)
    }

    /// The newest bucket index.
    pub fn head(&self) -> i64 {
        self.head
    }

    /// Events in the window.
    pub fn sum(&self) -> u32 {
        self.sum
    }

    /// Count in the newest bucket.
    pub fn head_count(&self, spec: &WindowSpec) -> u32 {
        self.counts[self.slot(spec, self.head)]
    }

    fn slot(&self, spec: &WindowSpec, bucket: i64) -> usize {
        bucket.rem_euclid(spec.buckets as i64) as usize
    }

    /// Moves the head forward to `bucket`. `completed(count, empty_after)` is told the count
    /// of the bucket that just closed and how many empty buckets followed it, so baselines
    /// can learn from every bucket without storing them.
    pub fn advance(&mut self, spec: &WindowSpec, bucket: i64, completed: impl FnOnce(u32, u64)) {
        if bucket <= self.head {
            return;
        }
        let steps = bucket - self.head;
        completed(self.head_count(spec), (steps - 1) as u64);
        if steps >= spec.buckets as i64 {
            self.counts[..spec.buckets].fill(0);
            self.sum = 0;
        } else {
            for b in self.head + 1..=bucket {
                let slot = self.slot(spec, b);
                self.sum -= self.counts[slot];
                self.counts[slot] = 0;
            }
        }
        self.head = bucket;
    }

    /// Adds `n` events at `bucket` (which must not be ahead of the head: call `advance`
    /// first). Out-of-order events land in their own bucket while it is still in the window.
    pub fn add(&mut self, spec: &WindowSpec, bucket: i64, n: u32) -> Added {
        debug_assert!(bucket <= self.head, "advance before adding");
        if self.head - bucket >= spec.buckets as i64 {
            return Added::TooOld;
        }
        let slot = self.slot(spec, bucket);
        self.counts[slot] = self.counts[slot].saturating_add(n);
        self.sum = self.sum.saturating_add(n);
        Added::Counted
    }

    /// Advance to the bucket of `ts` if it is newer, then count one event there.
    pub fn record(
        &mut self,
        spec: &WindowSpec,
        bucket: i64,
        completed: impl FnOnce(u32, u64),
    ) -> Added {
        self.advance(spec, bucket, completed);
        self.add(spec, bucket, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: i64 = 1_000_000_000;

    fn spec() -> WindowSpec {
        WindowSpec::new(60 * SEC, 10 * SEC).unwrap()
    }

    #[test]
    fn spec_validation() {
        assert!(WindowSpec::new(60 * SEC, 7 * SEC).is_none());
        assert!(WindowSpec::new(0, SEC).is_none());
        assert!(WindowSpec::new(1000 * SEC, SEC).is_none());
        assert_eq!(spec().buckets(), 6);
    }

    #[test]
    fn out_of_order_lands_in_its_bucket_and_expires_with_it() {
        let spec = spec();
        let mut window = RateWindow::new(0);
        window.record(&spec, 5, |_, _| {});
        assert_eq!(window.record(&spec, 3, |_, _| {}), Added::Counted);
        assert_eq!(window.sum(), 2);
        // Bucket 3 leaves the window when the head reaches 9; bucket 5 stays.
        window.advance(&spec, 9, |_, _| {});
        assert_eq!(window.sum(), 1);
        assert_eq!(window.record(&spec, 2, |_, _| {}), Added::TooOld);
    }

    #[test]
    fn advance_reports_completed_bucket_and_gap() {
        let spec = spec();
        let mut window = RateWindow::new(10);
        window.record(&spec, 10, |_, _| {});
        window.record(&spec, 10, |_, _| {});
        let mut seen = None;
        window.advance(&spec, 14, |count, empty| seen = Some((count, empty)));
        assert_eq!(seen, Some((2, 3)));
        window.advance(&spec, 100, |_, _| {});
        assert_eq!(window.sum(), 0);
    }

    #[test]
    fn saved_windows_read_back_whole() {
        let spec = spec();
        let mut window = RateWindow::new(0);
        for (bucket, n) in [(3, 2), (4, 1), (7, 5), (6, 1)] {
            window.advance(&spec, bucket, |_, _| {});
            window.add(&spec, bucket, n);
        }
        let text = serde_json::to_string(&window).unwrap();
        assert_eq!(text, r#"{"head":7,"counts":[1,5,0,2,1]}"#);
        let back: RateWindow = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (back.head(), back.sum(), back.counts),
            (7, 9, window.counts)
        );
        assert!(back.fits(&spec));
        assert!(!back.fits(&WindowSpec::new(40 * SEC, 10 * SEC).unwrap()));
        let too_long = format!(r#"{{"head":1,"counts":{:?}}}"#, [1; MAX_BUCKETS + 1]);
        assert!(serde_json::from_str::<RateWindow>(&too_long).is_err());
    }

    proptest! {
        /// The running sum always equals a brute-force count of events within the window.
        #[test]
        fn sum_matches_brute_force(events in prop::collection::vec((0i64..200, 0i64..8), 1..300)) {
            let spec = spec();
            let mut window = RateWindow::new(0);
            let mut kept: Vec<i64> = Vec::new();
            let mut head = 0i64;
            for (forward, back) in events {
                head += forward % 3;
                let bucket = (head - back).max(0);
                window.advance(&spec, head, |_, _| {});
                if window.add(&spec, bucket, 1) == Added::Counted {
                    kept.push(bucket);
                }
                let expected = kept.iter().filter(|&&b| head - b < 6).count() as u32;
                prop_assert_eq!(window.sum(), expected);
            }
        }
    }
}
