//! At most one log line per interval for events an attacker can repeat at will (refused
//! logins, refused connections), with a count of the ones left out.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(super) struct Throttled {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    pub fn new(interval: Duration) -> Throttled {
        Throttled {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// One more event at `now`: `Some(n)` when it is to be logged, `n` being how many were
    /// left out since the last line; `None` when this one is left out.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_the_rest() {
        let mut log = Throttled::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.hit(t0), Some(0));
        for i in 1..=49 {
            assert_eq!(log.hit(t0 + Duration::from_millis(i * 100)), None);
        }
        assert_eq!(log.hit(t0 + Duration::from_secs(10)), Some(49));
        assert_eq!(log.hit(t0 + Duration::from_secs(11)), None);
        assert_eq!(log.hit(t0 + Duration::from_secs(25)), Some(1));
    }
}
