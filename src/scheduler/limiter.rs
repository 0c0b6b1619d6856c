//! How many calls one provider gets at once, adapted to what it answers: pure state over
//! instants the caller passes in, so tests drive it with a fake clock.
//!
//! A provider with no limit learnt starts slowly: [`SLOW_START`] calls, one more per success
//! (so the limit doubles with each round of calls) until the first refusal or its maximum
//! (`-j`): a provider that never pushes back is at `-j` after a few calls, and one that does
//! sees a refusal or two, not a whole first wave of `-j` calls. The first refusal leaves the
//! limit at the calls that were in flight beside the refused one (what the provider
//! admitted). Later, a call refused for load (429, 529, `overloaded`) halves the limit (not
//! below 1), never above the calls beside it: a burst of refusals of calls started before
//! the cut (which say nothing new) only brings it down to what the provider admitted, not by
//! half again each. After a cut the limit climbs back by one per success to the last level
//! known to work (the ceiling), then by one after a run of successes (a probe). A refused
//! probe goes back to the ceiling and doubles the run the next probe waits for (up to
//! [`PROBE_RUN_MAX`]), so probes at a level that keeps refusing get rarer; a probe that
//! holds (a round of successes at its level) becomes the ceiling and resets the run. A
//! retry-after or a usage-limit reset holds the provider at 0 until then.

use std::time::{Duration, Instant};

/// Calls at once a provider with no limit learnt starts at.
pub const SLOW_START: usize = 2;
/// Successes before the first probe above the ceiling.
pub const PROBE_RUN: u32 = 8;
/// The longest run a probe waits for: a limit learnt early is re-tried now and then.
pub const PROBE_RUN_MAX: u32 = 256;

/// A change of the limit, for the build's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Cut { from: usize, to: usize },
    Raised { from: usize, to: usize },
}

#[derive(Debug, Clone)]
pub struct Limiter {
    max: usize,
    limit: usize,
    /// The highest limit that worked since the last cut: climbed back to quickly.
    ceiling: Option<usize>,
    streak: u32,
    probe_run: u32,
    /// The limit is above the ceiling because a probe raised it.
    probing: bool,
    /// No refusal yet and no limit learnt: one more call per success.
    slow_start: bool,
    last_cut: Option<Instant>,
    hold_until: Option<Instant>,
}

impl Limiter {
    /// A provider allowed `max` calls at once, starting at `start` (what an earlier build
    /// learnt), else slowly from [`SLOW_START`].
    pub fn new(max: usize, start: Option<usize>) -> Limiter {
        let max = max.max(1);
        let limit = start.unwrap_or(SLOW_START).clamp(1, max);
        Limiter {
            slow_start: start.is_none() && limit < max,
            max,
            limit,
            ceiling: (limit < max).then_some(limit),
            streak: 0,
            probe_run: PROBE_RUN,
            probing: false,
            last_cut: None,
            hold_until: None,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Calls allowed at once at `now`: 0 while held.
    pub fn limit(&self, now: Instant) -> usize {
        if self.held_until(now).is_some() {
            0
        } else {
            self.limit
        }
    }

    /// The limit it returns to when no longer held.
    pub fn base_limit(&self) -> usize {
        self.limit
    }

    /// What this run learnt for the next build to start from: its limit once a refusal
    /// taught it one, its maximum (nothing to keep) once it got there. `None` while it only
    /// ramped (the slow start's level, or where a build with no calls left it, says nothing
    /// of the provider, and a build starting from it would skip the slow start).
    pub fn learnt(&self) -> Option<usize> {
        if self.limit >= self.max {
            Some(self.max)
        } else if self.last_cut.is_some() {
            Some(self.limit)
        } else {
            None
        }
    }

    /// When a hold in force at `now` ends.
    pub fn held_until(&self, now: Instant) -> Option<Instant> {
        self.hold_until.filter(|&t| t > now)
    }

    /// Whether the limit was cut after a call started at `started`: its refusal is part of
    /// a burst the limiter already answered.
    pub fn cut_since(&self, started: Instant) -> bool {
        self.last_cut.is_some_and(|cut| started < cut)
    }

    /// Holds every call until `until` (a retry-after, a usage-limit reset).
    pub fn hold(&mut self, until: Instant) {
        self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
    }

    /// A call succeeded. The raises of the slow start are not news (a build whose provider
    /// never pushes back would report one per call up to `-j`).
    pub fn success(&mut self) -> Option<Change> {
        self.streak += 1;
        if self.limit >= self.max {
            self.slow_start = false;
            return None;
        }
        if self.slow_start {
            self.limit += 1;
            return None;
        }
        if self.probing && self.streak >= self.limit as u32 {
            // A round of calls at the probed level went through: it works.
            self.probing = false;
            self.ceiling = Some(self.limit);
            self.probe_run = PROBE_RUN;
        }
        let below_ceiling = self.ceiling.is_some_and(|c| self.limit < c);
        if !below_ceiling && self.streak < self.probe_run {
            return None;
        }
        let from = self.limit;
        if !below_ceiling {
            // A probe past what is known to work; that is where a refusal sends it back.
            self.probing = true;
            self.ceiling = Some(from);
        }
        self.limit += 1;
        self.streak = 0;
        Some(Change::Raised {
            from,
            to: self.limit,
        })
    }

    /// A call that started at `started` was refused for load at `now`, with `in_flight`
    /// calls (itself included) out; `retry_after` if the provider said when to call again.
    pub fn refused(
        &mut self,
        now: Instant,
        started: Instant,
        in_flight: usize,
        retry_after: Option<Duration>,
    ) -> Option<Change> {
        if let Some(d) = retry_after {
            self.hold(now + d);
        }
        let from = self.limit;
        let beside = in_flight.saturating_sub(1).max(1);
        let stale = self.cut_since(started);
        let to = if stale {
            // Refused in the same burst: the provider admitted at most the calls beside it.
            self.limit.min(beside)
        } else {
            self.last_cut = Some(now);
            if std::mem::take(&mut self.slow_start) {
                // The first refusal: the calls beside it are what the provider admits.
                self.limit.min(beside)
            } else if self.probing {
                // The level below the probe worked: back to it, and probe more rarely.
                self.probe_run = (self.probe_run * 2).min(PROBE_RUN_MAX);
                self.ceiling.unwrap_or(1).min(beside)
            } else {
                (self.limit.min(in_flight.max(1)) / 2).clamp(1, beside)
            }
        };
        self.probing = false;
        self.streak = 0;
        // What it comes down to is what worked before: the climb back is quick up to there.
        self.ceiling = Some(
            self.ceiling
                .map_or(beside, |c| c.min(beside))
                .max(to)
                .min(self.max),
        );
        self.limit = to;
        (to != from).then_some(Change::Cut { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: instants at whole milliseconds from one origin.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn clock() -> Clock {
        Clock(Instant::now())
    }

    #[test]
    fn a_provider_that_never_pushes_back_reaches_its_maximum_after_a_few_rounds_quietly() {
        let mut l = Limiter::new(16, None);
        assert_eq!(l.limit(clock().at(0)), SLOW_START);
        let mut rounds = 0;
        while l.limit(clock().at(0)) < 16 {
            for _ in 0..l.limit(clock().at(0)) {
                assert_eq!(l.success(), None, "the slow start is not news");
            }
            rounds += 1;
            assert!(rounds < 10);
        }
        assert_eq!(rounds, 3, "2, 4, 8, 16: doubling each round");
        for _ in 0..100 {
            assert_eq!(l.success(), None);
        }
        assert_eq!(l.limit(clock().at(0)), 16);
    }

    #[test]
    fn the_first_refusal_ends_the_slow_start_at_the_calls_admitted_beside_it() {
        let c = clock();
        let mut l = Limiter::new(16, None);
        for _ in 0..6 {
            l.success();
        }
        assert_eq!(l.limit(c.at(0)), 8);
        // 5 out when one is refused: the provider admitted 4.
        assert_eq!(
            l.refused(c.at(10), c.at(5), 5, None),
            Some(Change::Cut { from: 8, to: 4 })
        );
        // A success no longer raises it: 4 is the ceiling, probed after a run.
        for _ in 0..PROBE_RUN - 1 {
            assert_eq!(l.success(), None);
        }
        assert_eq!(l.success(), Some(Change::Raised { from: 4, to: 5 }));
    }

    /// Rounds of calls against a provider that admits `k` at once and refuses the rest at
    /// once (before the admitted ones end): the calls made and the refused, for `tasks`.
    fn against(k: usize, max: usize, start: Option<usize>, tasks: usize) -> (usize, usize) {
        let c = clock();
        let mut l = Limiter::new(max, start);
        let (mut done, mut calls, mut refused) = (0, 0, 0);
        for round in 0u64..10_000 {
            if done == tasks {
                break;
            }
            let out = l.limit(c.at(round * 100)).min(tasks - done);
            calls += out;
            let mut in_flight = out;
            for _ in k.min(out)..out {
                l.refused(c.at(round * 100 + 10), c.at(round * 100), in_flight, None);
                in_flight -= 1;
                refused += 1;
            }
            for _ in 0..k.min(out) {
                l.success();
                done += 1;
            }
        }
        assert_eq!(done, tasks);
        (calls, refused)
    }

    #[test]
    fn against_a_fixed_limit_at_most_5_percent_of_calls_are_refused_cold_or_warm() {
        // (Rounds overshoot the slow start more than calls ending one by one would.)
        let (calls, refused) = against(4, 16, None, 200);
        assert!(refused * 100 <= calls * 5, "cold: {refused} of {calls}");
        let (calls, refused) = against(4, 16, Some(4), 200);
        assert!(refused * 100 <= calls * 5, "warm: {refused} of {calls}");
    }

    #[test]
    fn a_refused_probe_goes_back_to_the_ceiling_and_the_next_waits_twice_as_long() {
        let c = clock();
        let mut l = Limiter::new(16, Some(4));
        let run_to_probe = |l: &mut Limiter| {
            let mut run = 1;
            while l.success().is_none() {
                run += 1;
                assert!(run < 1000);
            }
            run
        };
        assert_eq!(run_to_probe(&mut l), PROBE_RUN);
        assert_eq!(l.limit(c.at(0)), 5);
        assert_eq!(
            l.refused(c.at(10), c.at(5), 5, None),
            Some(Change::Cut { from: 5, to: 4 })
        );
        assert_eq!(run_to_probe(&mut l), 2 * PROBE_RUN);
        l.refused(c.at(20), c.at(15), 5, None);
        assert_eq!(run_to_probe(&mut l), 4 * PROBE_RUN);
        // This probe holds: a round of 5 successes at 5. It is the new ceiling, and the
        // next probe comes after the first run again.
        for _ in 0..5 {
            assert_eq!(l.success(), None);
        }
        assert_eq!(run_to_probe(&mut l) + 5, PROBE_RUN);
        assert_eq!(l.limit(c.at(30)), 6);
        l.refused(c.at(40), c.at(35), 6, None);
        assert_eq!(l.limit(c.at(41)), 5, "back to the level that held");
    }

    #[test]
    fn a_refusal_halves_the_limit_and_a_burst_of_them_stops_at_what_was_admitted() {
        let c = clock();
        let mut l = Limiter::new(16, Some(16));
        // 16 calls started at 0; 4 admitted, 12 refused one after another.
        assert_eq!(
            l.refused(c.at(10), c.at(0), 16, None),
            Some(Change::Cut { from: 16, to: 8 })
        );
        let mut in_flight = 15;
        for _ in 0..11 {
            l.refused(c.at(20), c.at(0), in_flight, None);
            in_flight -= 1;
        }
        assert_eq!(l.limit(c.at(30)), 4, "the 4 beside the last refusal");
        // A fresh refusal (a call started after the cut) halves again, never below 1.
        assert_eq!(
            l.refused(c.at(40), c.at(35), 4, None),
            Some(Change::Cut { from: 4, to: 2 })
        );
        l.refused(c.at(50), c.at(45), 2, None);
        l.refused(c.at(60), c.at(55), 1, None);
        assert_eq!(l.limit(c.at(70)), 1);
    }

    #[test]
    fn after_a_cut_it_climbs_back_quickly_to_the_ceiling_then_probes_after_a_run() {
        let c = clock();
        let mut l = Limiter::new(16, Some(16));
        // 5 in flight when one is refused: 4 worked.
        l.refused(c.at(0), c.at(0), 5, None);
        assert_eq!(l.limit(c.at(1)), 2);
        assert!(matches!(l.success(), Some(Change::Raised { to: 3, .. })));
        assert!(matches!(l.success(), Some(Change::Raised { to: 4, .. })));
        // At the ceiling: a probe only after a run.
        for _ in 0..PROBE_RUN - 1 {
            assert_eq!(l.success(), None);
        }
        assert_eq!(l.success(), Some(Change::Raised { from: 4, to: 5 }));
    }

    #[test]
    fn never_above_the_maximum() {
        let c = clock();
        let mut l = Limiter::new(3, None);
        l.refused(c.at(0), c.at(0), 3, None);
        for _ in 0..10_000 {
            l.success();
        }
        assert_eq!(l.limit(c.at(1)), 3);
        assert_eq!(Limiter::new(3, Some(10)).limit(c.at(0)), 3);
        assert_eq!(Limiter::new(3, Some(0)).limit(c.at(0)), 1);
    }

    #[test]
    fn a_retry_after_or_a_reset_holds_the_provider_at_zero_until_then() {
        let c = clock();
        let mut l = Limiter::new(8, None);
        l.refused(c.at(0), c.at(0), 1, Some(Duration::from_secs(2)));
        assert_eq!(l.limit(c.at(1_999)), 0);
        assert_eq!(l.held_until(c.at(1_000)), Some(c.at(2_000)));
        assert_eq!(
            l.limit(c.at(2_000)),
            1,
            "then its limit (1 in flight, cut to 1)"
        );
        // A later reset extends the hold; an earlier one does not shorten it.
        l.hold(c.at(60_000));
        l.hold(c.at(30_000));
        assert_eq!(l.held_until(c.at(10_000)), Some(c.at(60_000)));
        assert_eq!(l.limit(c.at(60_001)), 1);
    }

    #[test]
    fn only_a_refusal_teaches_a_limit_to_keep() {
        let c = clock();
        let no_calls = Limiter::new(16, None);
        assert_eq!(no_calls.learnt(), None, "the starting 2 is not learnt");
        let mut ramping = Limiter::new(16, None);
        for _ in 0..3 {
            ramping.success();
        }
        assert_eq!(ramping.base_limit(), 5);
        assert_eq!(ramping.learnt(), None, "nor is the slow start's level");
        for _ in 0..20 {
            ramping.success();
        }
        assert_eq!(
            ramping.learnt(),
            Some(16),
            "at its maximum: nothing to keep"
        );
        let mut refused = Limiter::new(16, None);
        refused.success();
        refused.refused(c.at(10), c.at(5), 3, None);
        assert_eq!(refused.learnt(), Some(2), "the calls it admitted");
    }

    #[test]
    fn a_limit_learnt_before_is_where_it_starts_and_what_it_climbs_from() {
        let mut l = Limiter::new(16, Some(4));
        let now = Instant::now();
        assert_eq!(l.limit(now), 4);
        for _ in 0..PROBE_RUN - 1 {
            assert_eq!(
                l.success(),
                None,
                "4 is its ceiling: probes only after a run"
            );
        }
        assert_eq!(l.success(), Some(Change::Raised { from: 4, to: 5 }));
    }
}
