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

/// Buckets a window holds inline; wider windows keep their counts in one allocation. Seven
/// counts and the tag fill 32 bytes (eight took 40, the tag padded to the box's alignment).
const INLINE_BUCKETS: usize = 7;

/// A window's per-slot counts: most windows (a minute in 10 s buckets) fit inline in 32
/// bytes, so a table of a million keys does not pay for 30 slots each.
#[derive(Clone, Debug)]
enum Slots {
    Inline([u32; INLINE_BUCKETS]),
    Wide(Box<[u32; MAX_BUCKETS]>),
}

impl Slots {
    #[inline]
    fn all(&self) -> &[u32] {
        match self {
            Slots::Inline(counts) => counts,
            Slots::Wide(counts) => &counts[..],
        }
    }

    /// The counts, wide enough for `buckets` (a window grows wide on its first write).
    #[inline]
    fn fit(&mut self, buckets: usize) -> &mut [u32] {
        if let Slots::Inline(inline) = self {
            if buckets > INLINE_BUCKETS {
                let mut wide = Box::new([0; MAX_BUCKETS]);
                wide[..INLINE_BUCKETS].copy_from_slice(inline);
                *self = Slots::Wide(wide);
            }
        }
        match self {
            Slots::Inline(counts) => counts,
            Slots::Wide(counts) => &mut counts[..],
        }
    }
}

/// Counts per bucket over the last `spec.buckets()` buckets ending at `head`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(into = "SavedWindow", try_from = "SavedWindow")]
pub struct RateWindow {
    counts: Slots,
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
        let counts = window.counts.all();
        let used = counts
            .iter()
            .rposition(|&c| c != 0)
            .map_or(0, |last| last + 1);
        SavedWindow {
            head: window.head,
            counts: counts[..used].to_vec(),
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
        let mut counts = Slots::Inline([0; INLINE_BUCKETS]);
        counts.fit(saved.counts.len())[..saved.counts.len()].copy_from_slice(&saved.counts);
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
            counts: Slots::Inline([0; INLINE_BUCKETS]),
            head,
            sum: 0,
        }
    }

    /// Whether the window can belong to a window of `spec`'s geometry (a restored window
    /// has no count outside `spec`'s slots).
    pub fn fits(&self, spec: &WindowSpec) -> bool {
        let counts = self.counts.all();
        counts[spec.buckets.min(counts.len())..]
            .iter()
            .all(|&c| c == 0)
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
    #[inline]
    pub fn head_count(&self, spec: &WindowSpec) -> u32 {
        // An inline window never written past its slots reads zero beyond them.
        let slot = self.slot(spec, self.head);
        self.counts.all().get(slot).copied().unwrap_or(0)
    }

    fn slot(&self, spec: &WindowSpec, bucket: i64) -> usize {
        bucket.rem_euclid(spec.buckets as i64) as usize
    }

    /// Moves the head forward to `bucket`. `completed(count, empty_after)` is told the count
    /// of the bucket that just closed and how many empty buckets followed it, so baselines
    /// can learn from every bucket without storing them.
    #[inline]
    pub fn advance(&mut self, spec: &WindowSpec, bucket: i64, completed: impl FnOnce(u32, u64)) {
        if bucket <= self.head {
            return;
        }
        let steps = bucket - self.head;
        completed(self.head_count(spec), (steps - 1) as u64);
        let counts = self.counts.fit(spec.buckets);
        if steps >= spec.buckets as i64 {
            counts[..spec.buckets].fill(0);
            self.sum = 0;
        } else {
            for b in self.head + 1..=bucket {
                let slot = b.rem_euclid(spec.buckets as i64) as usize;
                self.sum -= counts[slot];
                counts[slot] = 0;
            }
        }
        self.head = bucket;
    }

    /// Adds `n` events at `bucket` (which must not be ahead of the head: call `advance`
    /// first). Out-of-order events land in their own bucket while it is still in the window.
    #[inline]
    pub fn add(&mut self, spec: &WindowSpec, bucket: i64, n: u32) -> Added {
        debug_assert!(bucket <= self.head, "advance before adding");
        if self.head - bucket >= spec.buckets as i64 {
            return Added::TooOld;
        }
        let slot = self.slot(spec, bucket);
        let counts = self.counts.fit(spec.buckets);
        counts[slot] = counts[slot].saturating_add(n);
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
            (back.head(), back.sum(), back.counts.all()),
            (7, 9, window.counts.all())
        );
        assert!(back.fits(&spec));
        assert!(!back.fits(&WindowSpec::new(40 * SEC, 10 * SEC).unwrap()));
        let too_long = format!(r#"{{"head":1,"counts":{:?}}}"#, [1; MAX_BUCKETS + 1]);
        // A saved window wider than the inline slots comes back wide.
        let wide = format!(r#"{{"head":29,"counts":{:?}}}"#, [1; MAX_BUCKETS]);
        let wide: RateWindow = serde_json::from_str(&wide).unwrap();
        assert_eq!((wide.sum(), wide.counts.all().len()), (30, MAX_BUCKETS));
        assert!(serde_json::from_str::<RateWindow>(&too_long).is_err());
    }

    #[test]
    fn a_window_wider_than_its_inline_slots_grows_on_its_first_write() {
        let spec = WindowSpec::new(600 * SEC, 20 * SEC).unwrap();
        let mut window = RateWindow::new(0);
        assert!(matches!(window.counts, Slots::Inline(_)));
        assert_eq!(window.head_count(&spec), 0);
        for bucket in 0..40 {
            window.record(&spec, bucket, |_, _| {});
        }
        assert!(matches!(window.counts, Slots::Wide(_)));
        assert_eq!(window.sum(), 30, "one per bucket, thirty buckets");
        let narrow = spec_of(6);
        let mut small = RateWindow::new(0);
        for bucket in 0..10 {
            small.record(&narrow, bucket, |_, _| {});
        }
        assert!(matches!(small.counts, Slots::Inline(_)));
        assert_eq!(small.sum(), 6);
    }

    fn spec_of(buckets: i64) -> WindowSpec {
        WindowSpec::new(buckets * 10 * SEC, 10 * SEC).unwrap()
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
