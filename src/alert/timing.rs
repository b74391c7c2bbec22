//! When to send: a group's digest (Alertmanager's `group_wait` / `group_interval`), and when
//! to try again after a failed attempt (exponential backoff with full jitter, `Retry-After`
//! honoured, `max_age` as the end). Pure: times come in as arguments.

use std::time::Duration;

/// When a group's held alerts are due: `group_wait` after the oldest arrived (a burst
/// gathers into one message), and never sooner than `group_interval` after the group's last
/// message (an attack that goes on produces one update per interval, not one per incident).
pub fn flush_at(
    oldest_held_ns: i64,
    last_sent_ns: Option<i64>,
    group_wait: Duration,
    group_interval: Duration,
) -> i64 {
    let gathered = oldest_held_ns.saturating_add(nanos(group_wait));
    match last_sent_ns {
        Some(last) => gathered.max(last.saturating_add(nanos(group_interval))),
        None => gathered,
    }
}

pub fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// What an HTTP status means for a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// 408, 429 and 5xx: the receiver may take it later.
    Retry,
    /// Any other status: sending it again would get the same answer.
    Refused,
}

pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Refused,
    }
}

/// The first retry's ceiling; each attempt doubles it up to `max`.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);

/// Full jitter: a uniformly random wait between zero and the exponential ceiling
/// (`unit` in [0, 1) is the random draw), so many alerters retrying one receiver spread out.
pub fn backoff(attempts: i64, max: Duration, unit: f64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let ceiling = BACKOFF_BASE.saturating_mul(1 << doublings).min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// `Retry-After` as delta-seconds or an HTTP date (relative to `now_ns`).
pub fn retry_after(value: &str, now_ns: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = date.timestamp_nanos_opt()?;
    Some(Duration::from_nanos(
        u64::try_from(at.saturating_sub(now_ns)).unwrap_or(0),
    ))
}

/// When to try again: the jittered backoff, but not before the receiver's `Retry-After`.
pub fn next_attempt(now_ns: i64, backoff: Duration, retry_after: Option<Duration>) -> i64 {
    let wait = retry_after.map_or(backoff, |after| after.max(backoff));
    now_ns.saturating_add(nanos(wait))
}

/// The messages a channel sends for events arriving at `times` (ns, ascending) in one
/// group, by the rules above: each entry is (send time, events carried). What the worker does
/// live, replayed on paper (for measuring noise on recorded traffic).
pub fn plan_digests(
    times: &[i64],
    group_wait: Duration,
    group_interval: Duration,
) -> Vec<(i64, usize)> {
    let mut sent = Vec::new();
    let mut last_sent: Option<i64> = None;
    let mut held: Vec<i64> = Vec::new();
    let mut next = times.iter().peekable();
    loop {
        let due = held
            .first()
            .map(|oldest| flush_at(*oldest, last_sent, group_wait, group_interval));
        match (due, next.peek()) {
            (Some(due), Some(&&t)) if t > due => {
                sent.push((due, held.len()));
                held.clear();
                last_sent = Some(due);
            }
            (_, Some(&&t)) => {
                held.push(t);
                next.next();
            }
            (Some(due), None) => {
                sent.push((due, held.len()));
                held.clear();
                last_sent = Some(due);
            }
            (None, None) => return sent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_new_group_waits_group_wait_and_a_busy_one_group_interval() {
        let wait = Duration::from_secs(30);
        let interval = Duration::from_secs(300);
        assert_eq!(flush_at(100 * S, None, wait, interval), 130 * S);
        // Sent 10 s ago: the next update waits for the interval.
        assert_eq!(flush_at(100 * S, Some(90 * S), wait, interval), 390 * S);
        // Sent long ago: a new burst only waits group_wait.
        assert_eq!(
            flush_at(10_000 * S, Some(90 * S), wait, interval),
            10_030 * S
        );
    }

    #[test]
    fn a_burst_is_one_message_and_an_ongoing_attack_one_per_interval() {
        let wait = Duration::from_secs(30);
        let interval = Duration::from_secs(300);
        // 37 incidents within a minute: one message after group_wait, the rest of the
        // burst (after the first 30 s) one group_interval later.
        let burst: Vec<i64> = (0..37).map(|i| 1_000 * S + i * S).collect();
        assert_eq!(
            plan_digests(&burst, wait, interval),
            [(1_030 * S, 31), (1_330 * S, 6)]
        );
        // One incident every minute for an hour: at most one message per interval.
        let steady: Vec<i64> = (0..60).map(|i| i * 60 * S).collect();
        let plan = plan_digests(&steady, wait, interval);
        assert_eq!(plan.iter().map(|(_, n)| n).sum::<usize>(), 60);
        assert!(plan.len() <= 13, "{plan:?}");
        assert!(plan.windows(2).all(|w| w[1].0 - w[0].0 >= 300 * S));
        assert!(plan_digests(&[], wait, interval).is_empty());
    }

    #[test]
    fn statuses_are_delivered_retried_or_refused() {
        assert_eq!(verdict(200), Verdict::Delivered);
        assert_eq!(verdict(204), Verdict::Delivered);
        for status in [408, 429, 500, 502, 503, 599] {
            assert_eq!(verdict(status), Verdict::Retry, "{status}");
        }
        for status in [301, 400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(verdict(status), Verdict::Refused, "{status}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(" 3 ", 0), Some(Duration::from_secs(3)));
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:50Z")
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap();
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now + 60 * S),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", 0), None);
        assert_eq!(
            next_attempt(0, Duration::from_millis(200), Some(Duration::from_secs(3))),
            3 * S
        );
        assert_eq!(
            next_attempt(0, Duration::from_secs(5), Some(Duration::from_secs(3))),
            5 * S
        );
    }

    proptest! {
        #[test]
        fn backoff_stays_under_its_doubling_ceiling(attempts in 0i64..100, unit in 0.0f64..1.0) {
            let max = Duration::from_secs(300);
            let wait = backoff(attempts, max, unit);
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << attempts.saturating_sub(1).clamp(0, 30))
                .min(max);
            prop_assert!(wait <= ceiling);
            prop_assert!(wait <= max);
        }

        #[test]
        fn a_group_is_never_due_before_its_wait(oldest in 0i64..1_000_000, last in proptest::option::of(0i64..1_000_000)) {
            let wait = Duration::from_nanos(30);
            let interval = Duration::from_nanos(300);
            let at = flush_at(oldest, last, wait, interval);
            prop_assert!(at >= oldest + 30);
            if let Some(last) = last {
                prop_assert!(at >= last + 300);
            }
        }
    }
}
