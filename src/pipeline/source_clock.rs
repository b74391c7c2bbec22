//! Event time per source: which lines a source may hand the engine. A line is late only
//! against its own source's recent times, and a time far from them (a corrupt or forged
//! timestamp: 1970, 2262) is set aside instead of moving the clock, unless the lines after
//! it confirm that the source really jumped (a gap in traffic, a restarted writer).

use crate::event::{Timestamp, NANOS_PER_SEC};

/// Lines after a suspicious time that vote on whether the source really moved there: few,
/// so a real gap near the end of the known lines still stands, more than one, so a pair
/// of corrupt lines does not vouch for itself.
const LOOKAHEAD: usize = 3;

#[derive(Clone, Copy, Debug)]
pub struct ClockSettings {
    /// How far behind the source's newest time a line may be and still count.
    pub late_tolerance_nanos: i64,
    /// A jump larger than this, forwards or backwards, must be confirmed by the lines after
    /// it (replay) or agree with the wall clock (live sources).
    pub max_jump_nanos: i64,
    /// Live sources: reads the wall clock (once per batch) that their lines are judged
    /// against. None for replay, whose lines may come from any time.
    pub wall_clock: Option<fn() -> Timestamp>,
}

impl Default for ClockSettings {
    fn default() -> Self {
        ClockSettings {
            late_tolerance_nanos: 5 * NANOS_PER_SEC,
            max_jump_nanos: 10 * 60 * NANOS_PER_SEC,
            wall_clock: None,
        }
    }
}

/// What becomes of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Accept,
    /// Older than the source's newest time minus the tolerance.
    Late,
    /// Far from the source's times (and unconfirmed): counted and set aside.
    OutOfRange,
}

#[derive(Clone, Debug, Default)]
pub struct SourceClock {
    newest: Option<Timestamp>,
    pub late: u64,
    pub out_of_range: u64,
}

impl SourceClock {
    /// The source's newest admitted time: its watermark.
    pub fn watermark(&self) -> Option<Timestamp> {
        self.newest
    }

    /// Decides on a line stamped `ts`. `next` yields the times of the source's following
    /// lines that are already known; `wall` is the wall clock for live sources.
    pub fn admit(
        &mut self,
        ts: Timestamp,
        next: impl Iterator<Item = Timestamp>,
        wall: Option<Timestamp>,
        settings: &ClockSettings,
    ) -> Admit {
        let far = |a: Timestamp, b: Timestamp| {
            a.nanos().abs_diff(b.nanos()) > settings.max_jump_nanos.unsigned_abs()
        };
        let verdict = match (self.newest, wall) {
            // Live: a line cannot have been written (far) after it was read. The past is
            // not judged by the wall clock: a file read from its start holds old lines.
            (_, Some(wall))
                if ts.nanos() > wall.nanos().saturating_add(settings.max_jump_nanos) =>
            {
                Admit::OutOfRange
            }
            (Some(newest), _) if ts.nanos() < newest.nanos() - settings.late_tolerance_nanos => {
                if far(ts, newest) {
                    Admit::OutOfRange
                } else {
                    Admit::Late
                }
            }
            // Live: a jump to about now needs no lines after it to vouch for it (the log
            // woke after a quiet night; the first line of a new file).
            (_, Some(wall)) if !far(ts, wall) => Admit::Accept,
            (None, _) => confirmed(ts, next, far, true),
            (Some(newest), _) if far(ts, newest) => confirmed(ts, next, far, false),
            (Some(_), _) => Admit::Accept,
        };
        match verdict {
            Admit::Accept => self.newest = self.newest.max(Some(ts)),
            Admit::Late => self.late += 1,
            Admit::OutOfRange => self.out_of_range += 1,
        }
        verdict
    }
}

/// A jump to `ts` stands when most of the following lines agree with it (a source's first
/// line: at least half). With nothing following, a first line is taken as it is, a later
/// jump is not.
fn confirmed(
    ts: Timestamp,
    next: impl Iterator<Item = Timestamp>,
    far: impl Fn(Timestamp, Timestamp) -> bool,
    first: bool,
) -> Admit {
    let (mut agree, mut seen) = (0, 0);
    for later in next.take(LOOKAHEAD) {
        seen += 1;
        agree += usize::from(!far(ts, later));
    }
    let stands = match seen {
        0 => first,
        _ if first => 2 * agree >= seen,
        _ => 2 * agree > seen,
    };
    if stands {
        Admit::Accept
    } else {
        Admit::OutOfRange
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = NANOS_PER_SEC;

    fn run(times: &[i64], wall: Option<i64>) -> Vec<Admit> {
        let settings = ClockSettings::default();
        let mut clock = SourceClock::default();
        (0..times.len())
            .map(|i| {
                let next = times[i + 1..].iter().map(|&t| Timestamp(t * S));
                clock.admit(
                    Timestamp(times[i] * S),
                    next,
                    wall.map(|w| Timestamp(w * S)),
                    &settings,
                )
            })
            .collect()
    }

    use Admit::*;

    #[test]
    fn late_is_relative_to_the_source_only() {
        assert_eq!(
            run(&[100, 110, 106, 104], None),
            [Accept, Accept, Accept, Late]
        );
    }

    #[test]
    fn a_far_future_line_is_set_aside_and_does_not_move_the_clock() {
        let far_future = 9_000_000_000; // 2255
        assert_eq!(
            run(&[100, 101, far_future, 102, 103, 104], None),
            [Accept, Accept, OutOfRange, Accept, Accept, Accept]
        );
    }

    #[test]
    fn a_1970_first_line_is_set_aside() {
        let now = 1_790_000_000;
        assert_eq!(
            run(&[0, now, now + 1, now + 2], None),
            [OutOfRange, Accept, Accept, Accept]
        );
        assert_eq!(run(&[now, 0, now + 1], None), [Accept, OutOfRange, Accept]);
        // A corrupt pair does not vouch for itself.
        assert_eq!(
            run(&[0, 0, now, now + 1, now + 2], None),
            [OutOfRange, OutOfRange, Accept, Accept, Accept]
        );
    }

    #[test]
    fn a_confirmed_gap_is_followed() {
        let gap = 100 + 3 * 3600;
        assert_eq!(
            run(&[100, 101, 102, gap, gap + 1, gap + 2, 103], None),
            [Accept, Accept, Accept, Accept, Accept, Accept, OutOfRange]
        );
        // A lone first line before a gap looks like a corrupt one: it is set aside, counted.
        assert_eq!(
            run(&[100, gap, gap + 1], None),
            [OutOfRange, Accept, Accept]
        );
    }

    #[test]
    fn an_unconfirmed_jump_at_the_end_is_set_aside() {
        assert_eq!(
            run(&[100, 101, 100 + 3600], None),
            [Accept, Accept, OutOfRange]
        );
        assert_eq!(run(&[100], None), [Accept]);
    }

    #[test]
    fn live_sources_are_judged_against_the_wall_clock() {
        let wall = 1_790_000_000;
        assert_eq!(
            run(&[wall - 2, wall + 86_400, wall - 1, 5], Some(wall)),
            [Accept, OutOfRange, Accept, OutOfRange]
        );
        // A far-future first line with nothing after it yet (a live file's first batch)
        // is set aside; it does not make the lines after it late.
        let mut clock = SourceClock::default();
        let settings = ClockSettings::default();
        let now = Some(Timestamp(wall * S));
        let alone = |clock: &mut SourceClock, t: i64| {
            clock.admit(Timestamp(t * S), std::iter::empty(), now, &settings)
        };
        assert_eq!(alone(&mut clock, 9_000_000_000), OutOfRange);
        assert_eq!(alone(&mut clock, wall), Accept);
        // Quiet for hours, then one line at about now: the wall clock vouches for it.
        let mut clock = SourceClock::default();
        assert_eq!(alone(&mut clock, wall - 5 * 3600), Accept);
        assert_eq!(alone(&mut clock, wall), Accept);
    }

    #[test]
    fn live_sources_may_hold_old_lines() {
        // A file read from its start (or an old log written into a watched file): its
        // past times are judged against its own lines, as in replay.
        let wall = 1_790_000_000;
        let old = wall - 30 * 86_400;
        assert_eq!(
            run(&[old, old + 1, old + 2, 5, old + 3], Some(wall)),
            [Accept, Accept, Accept, OutOfRange, Accept]
        );
    }
}
