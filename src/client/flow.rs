//! Client back-pressure: which clients may hold the others back, and for how long.
//!
//! A client whose queue passes half its bound is *high*, and stays high until its queue
//! falls below a quarter of the bound — counting what others sent it, not the replays it
//! asked for: a client that does not read its own replays holds nobody back (hysteresis: a client hovering at the mark cannot
//! start a new episode with every dip). A high client is *busy* — the dispatcher stops
//! reading clients and, with `flow_control`, stops taking host calls while one is — only
//! while its writes make progress and it has busy time left.
//!
//! Writes that make no progress while other clients' writes do mean the client is
//! *stalled*, not busy: after [`STALL_GRACE`] once it has drained something while high, but
//! after only [`FIRST_STALL_GRACE`] if it has not — a client that went high while its writes
//! were already stuck did not get there by draining too slowly but by not reading at all,
//! and must not hold the others back while the long grace runs out. When no client's writes
//! have progressed since this one's got stuck, nobody is singled out: the readers as a whole
//! are behind (a loaded machine, a descheduled reader process), and holding back is right.
//! Busy time is a budget: it is spent while the client is busy and earned back at a tenth
//! of real time, up to
//! [`BUSY_BUDGET`]. So no client, however it paces its reads, holds the others back for
//! more than a second at once or more than about a tenth of the time in the long run; after
//! that it meets the slow-client policy like any other.

use std::time::{Duration, Instant};

/// A high client that has drained something while high, and whose writes have made no
/// progress this long since, is stalled, not busy.
pub(crate) const STALL_GRACE: Duration = Duration::from_millis(250);
/// The same for a client that has drained nothing since it went high.
pub(crate) const FIRST_STALL_GRACE: Duration = Duration::from_millis(50);
/// The most busy time a client can have in hand.
pub(crate) const BUSY_BUDGET: Duration = Duration::from_secs(1);
/// Busy time is earned back at 1/EARN_DIVISOR of real time.
const EARN_DIVISOR: u32 = 10;
/// A client that is not busy becomes busy only with this much busy time in hand, so busy
/// time is spent in stretches that dwarf the time between two looks at it.
const MIN_CREDIT: Duration = Duration::from_millis(50);

/// One client's standing in flow control. Time is passed in, so it is tested without a
/// clock.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    high: bool,
    /// Whether its writes made progress since it went high.
    drained: bool,
    /// Busy time left, as of `as_of`.
    credit: Duration,
    as_of: Instant,
    /// Whether the client was judged busy at `as_of` (and so spends credit since then).
    busy: bool,
}

impl Flow {
    pub(crate) fn new(now: Instant) -> Flow {
        Flow {
            high: false,
            drained: false,
            credit: BUSY_BUDGET,
            as_of: now,
            busy: false,
        }
    }

    pub(crate) fn is_high(&self) -> bool {
        self.high
    }

    /// Takes the queue's new cost into account. Returns the new high state if it changed.
    pub(crate) fn update(&mut self, queued: usize, bound: usize, now: Instant) -> Option<bool> {
        let high = if self.high {
            queued > bound / 4
        } else {
            queued > bound / 2
        };
        if high == self.high {
            return None;
        }
        self.settle(now);
        self.high = high;
        self.drained = false;
        self.busy = false;
        Some(high)
    }

    /// Its writes made progress.
    pub(crate) fn progress(&mut self) {
        self.drained |= self.high;
    }

    /// How long writes may make no progress before the client counts as stalled.
    fn grace(&self) -> Duration {
        if self.drained {
            STALL_GRACE
        } else {
            FIRST_STALL_GRACE
        }
    }

    /// When the client, stuck since `stuck_since`, counts as stalled: only if some client's
    /// writes progressed since (at `progress`, the latest); else it is not singled out, and
    /// no time of its own will change that.
    pub(crate) fn stalled_at(
        &self,
        stuck_since: Option<Instant>,
        progress: Instant,
    ) -> Option<Instant> {
        stuck_since
            .filter(|&t| progress > t)
            .and_then(|t| t.checked_add(self.grace()))
    }

    /// Whether the client holds the others back now: high, its writes not stalled (stuck
    /// since `stuck_since`, if they are, while some client's writes progressed at
    /// `progress`, the latest), and busy time left.
    pub(crate) fn is_busy(
        &mut self,
        now: Instant,
        stuck_since: Option<Instant>,
        progress: Instant,
    ) -> bool {
        let stalled = self
            .stalled_at(stuck_since, progress)
            .is_some_and(|t| now >= t);
        self.settle(now);
        let enough = if self.busy {
            !self.credit.is_zero()
        } else {
            self.credit >= MIN_CREDIT
        };
        self.busy = self.high && !stalled && enough;
        self.busy
    }

    /// When a busy client runs out of busy time, if it is busy.
    pub(crate) fn busy_until(&self) -> Option<Instant> {
        self.busy.then(|| self.as_of + self.credit)
    }

    /// Brings the credit up to `now`: spent while busy, earned back otherwise.
    fn settle(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.as_of);
        self.credit = if self.busy {
            self.credit.saturating_sub(elapsed)
        } else {
            (self.credit + elapsed / EARN_DIVISOR).min(BUSY_BUDGET)
        };
        self.as_of = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: usize = 1000;
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn high_above_half_until_below_a_quarter() {
        let t = Instant::now();
        let mut flow = Flow::new(t);
        assert_eq!(flow.update(500, BOUND, t), None);
        assert_eq!(flow.update(501, BOUND, t), Some(true));
        assert_eq!(
            flow.update(300, BOUND, t),
            None,
            "a dip under half is no new episode"
        );
        assert!(flow.is_high());
        assert_eq!(flow.update(250, BOUND, t), Some(false));
        assert_eq!(flow.update(400, BOUND, t), None);
    }

    #[test]
    fn a_client_that_drains_while_high_is_busy_until_stuck_for_the_grace() {
        let t = Instant::now();
        let mut flow = Flow::new(t);
        flow.update(600, BOUND, t);
        flow.progress();
        assert!(flow.is_busy(t, None, t));
        let stuck = Some(t);
        // Others progress after it got stuck: it is singled out.
        let others = t + MS;
        assert!(flow.is_busy(t + STALL_GRACE - MS, stuck, others));
        assert!(!flow.is_busy(t + STALL_GRACE, stuck, others));
        assert!(
            !Flow::new(t).is_busy(t, None, t),
            "a client under the mark is never busy"
        );
    }

    /// A client that stopped reading goes high with its writes already stuck: it is
    /// stalled after the short grace, and holds nobody back for the long one.
    #[test]
    fn a_client_stuck_before_it_went_high_is_stalled_soon() {
        let t = Instant::now();
        let mut flow = Flow::new(t);
        let stuck = Some(t);
        let others = t + MS;
        flow.update(600, BOUND, t + 5 * MS);
        assert!(flow.is_busy(t + 5 * MS, stuck, others));
        assert!(!flow.is_busy(t + FIRST_STALL_GRACE, stuck, others));
        assert_eq!(flow.stalled_at(stuck, others), Some(t + FIRST_STALL_GRACE));
        // Once it drains something, it has the long grace.
        flow.progress();
        assert_eq!(flow.stalled_at(stuck, others), Some(t + STALL_GRACE));
        // A new episode starts without it.
        flow.update(0, BOUND, t + STALL_GRACE);
        flow.update(600, BOUND, t + STALL_GRACE);
        assert_eq!(flow.stalled_at(stuck, others), Some(t + FIRST_STALL_GRACE));
        // With no other client's writes progressing since it got stuck, it is never
        // stalled, so there is no time to look again at.
        assert_eq!(flow.stalled_at(stuck, t), None);
    }

    #[test]
    fn busy_time_runs_out_after_the_budget() {
        let t = Instant::now();
        let mut flow = Flow::new(t);
        flow.update(600, BOUND, t);
        assert!(flow.is_busy(t, None, t));
        assert_eq!(flow.busy_until(), Some(t + BUSY_BUDGET));
        assert!(flow.is_busy(t + 999 * MS, None, t));
        assert!(!flow.is_busy(t + BUSY_BUDGET, None, t));
        assert_eq!(flow.busy_until(), None);
    }

    /// When nobody's writes progress (the machine, or the one process reading every client,
    /// is behind), a stuck client is not singled out: it stays busy, within its budget.
    #[test]
    fn a_client_stuck_like_all_the_others_is_not_stalled() {
        let t = Instant::now();
        let mut flow = Flow::new(t);
        flow.update(600, BOUND, t);
        flow.progress();
        let stuck = Some(t + MS);
        let last = t;
        assert!(flow.is_busy(t + STALL_GRACE * 2, stuck, last));
        // As soon as another client's writes progress, it is stalled.
        assert!(!flow.is_busy(t + STALL_GRACE * 2, stuck, t + 2 * MS));
    }

    /// The loophole the budget closes: a client that drains just enough, about once a
    /// second, to end its episode, then fills up again. It may hold the others back for its
    /// budget, then only for the time it earns back: about a tenth of the time.
    #[test]
    fn dipping_below_the_mark_does_not_restart_the_budget() {
        let t0 = Instant::now();
        let mut flow = Flow::new(t0);
        let mut busy = Duration::ZERO;
        let step = 10 * MS;
        let mut t = t0;
        for i in 0..6000u32 {
            // High for 990 ms, drained under a quarter for 10 ms, once a second.
            let queued = if i % 100 == 99 { 100 } else { 900 };
            flow.update(queued, BOUND, t);
            if flow.is_busy(t, None, t) {
                busy += step;
            }
            t += step;
        }
        // 60 s of this: at most the budget plus a tenth of the rest, give or take a look
        // (10 ms) for each stretch of busy time.
        let earned = Duration::from_secs(60) / EARN_DIVISOR;
        let stretches = (earned.as_millis() / MIN_CREDIT.as_millis()) as u32;
        let limit = BUSY_BUDGET + earned + stretches * step;
        assert!(busy <= limit, "busy for {busy:?} of 60 s (limit {limit:?})");
        assert!(busy >= Duration::from_secs(5), "busy only {busy:?}");
    }

    #[test]
    fn credit_comes_back_while_not_busy() {
        let t = Instant::now();
        let mut flow = Flow::new(t);
        flow.update(600, BOUND, t);
        assert!(flow.is_busy(t, None, t));
        assert!(!flow.is_busy(t + BUSY_BUDGET, None, t));
        flow.update(0, BOUND, t + BUSY_BUDGET);
        // Ten seconds later, the whole budget is back.
        let later = t + BUSY_BUDGET + 10 * BUSY_BUDGET;
        flow.update(600, BOUND, later);
        assert!(flow.is_busy(later, None, t));
        assert_eq!(flow.busy_until(), Some(later + BUSY_BUDGET));
    }
}
