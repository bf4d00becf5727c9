//! A client's inbound rate limit: two token buckets (messages, bytes) with the clock
//! passed in, and the one decision the dispatcher applies to each message it cuts. Pure:
//! no socket, no dispatcher; tested on its own below.
//!
//! A message is taken while both allowances hold at least one token, and costs one
//! message and its length in bytes, which may overdraw the byte allowance: a message
//! larger than the burst is taken when the allowance is full and leaves it in debt, so no
//! client is ever stuck, and over any stretch of time what was taken is at most the burst
//! plus the rate times the time, plus the last message.

use std::time::{Duration, Instant};

use crate::{RateLimit, RateLimitPolicy};

/// The longest wait the dispatcher is told at once: past it, it simply asks again.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// One allowance: refilled at `rate` tokens a second up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Tokens {
    rate: f64,
    burst: f64,
    /// What is left: at most `burst`, below zero while overdrawn.
    level: f64,
}

impl Tokens {
    fn new((rate, burst): (f64, u64)) -> Tokens {
        let burst = burst as f64;
        Tokens {
            rate,
            burst,
            level: burst,
        }
    }

    fn refill(&mut self, secs: f64) {
        // Never above the burst however long the client was idle (no overflow: `secs` is
        // finite and `rate` at most 10^15, so the product is too).
        self.level = (self.level + self.rate * secs).min(self.burst);
    }

    /// How long until it holds a whole token again; zero if it does.
    fn wait(&self) -> Duration {
        if self.level >= 1.0 {
            return Duration::ZERO;
        }
        let secs = (1.0 - self.level) / self.rate;
        // One microsecond more, so that rounding never leaves it just short on waking.
        Duration::try_from_secs_f64(secs)
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT)
            .saturating_add(Duration::from_micros(1))
    }
}

/// A client's allowances, full when it connects.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    messages: Option<Tokens>,
    bytes: Option<Tokens>,
    /// When they were last refilled.
    at: Instant,
}

impl Bucket {
    pub(crate) fn new(limit: &RateLimit, now: Instant) -> Bucket {
        Bucket {
            messages: limit.messages.map(Tokens::new),
            bytes: limit.bytes.map(Tokens::new),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        for tokens in self.messages.iter_mut().chain(self.bytes.iter_mut()) {
            tokens.refill(secs);
        }
    }

    /// How long until a message may be taken: zero if one may be now.
    pub(crate) fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let wait = |t: &Option<Tokens>| t.as_ref().map_or(Duration::ZERO, Tokens::wait);
        wait(&self.messages).max(wait(&self.bytes))
    }

    /// Takes a message of `len` bytes, whatever is left.
    pub(crate) fn charge(&mut self, len: usize) {
        if let Some(t) = &mut self.messages {
            t.level -= 1.0;
        }
        if let Some(t) = &mut self.bytes {
            t.level -= len as f64;
        }
    }

    /// Takes a message of `len` bytes if one may be taken now.
    pub(crate) fn admit(&mut self, now: Instant, len: usize) -> bool {
        let ok = self.wait(now).is_zero();
        if ok {
            self.charge(len);
        }
        ok
    }
}

/// What the dispatcher does with a message it cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand it on.
    Deliver,
    /// Drop it and count it.
    Drop,
    /// The client leaves as `RateLimited`.
    Disconnect,
}

/// The decision for a message of `len` bytes (`control`: a control request of the
/// protocol) cut from a client with this `policy` and `bucket`. Under `HoldBack` the
/// dispatcher waits for [`Bucket::wait`] to be zero before it cuts a message, so the
/// message is taken whatever is left.
pub(crate) fn verdict(
    policy: RateLimitPolicy,
    bucket: &mut Bucket,
    now: Instant,
    len: usize,
    control: bool,
) -> Verdict {
    if bucket.admit(now, len) {
        return Verdict::Deliver;
    }
    match policy {
        RateLimitPolicy::HoldBack => {
            bucket.charge(len);
            Verdict::Deliver
        }
        // A control request is answered, never dropped: losing one would leave the client
        // waiting for its answer. It still uses up the allowance.
        RateLimitPolicy::Drop if control => {
            bucket.charge(len);
            Verdict::Deliver
        }
        RateLimitPolicy::Drop => Verdict::Drop,
        RateLimitPolicy::Disconnect => Verdict::Disconnect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn bucket(limit: RateLimit) -> (Bucket, Instant) {
        let now = Instant::now();
        (Bucket::new(&limit, now), now)
    }

    #[test]
    fn burst_then_rate() {
        let (mut b, t0) = bucket(RateLimit::new().messages(10.0, 5));
        for _ in 0..5 {
            assert!(b.admit(t0, 100));
        }
        assert!(!b.admit(t0, 100));
        // One token per 100 ms.
        let wait = b.wait(t0);
        assert!(wait > ms(99) && wait <= ms(101), "{wait:?}");
        assert!(!b.admit(t0 + ms(50), 1));
        assert!(b.admit(t0 + wait, 1));
        assert!(!b.admit(t0 + wait, 1));
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let (mut b, t0) = bucket(RateLimit::new().messages(1000.0, 3).bytes(1e6, 10));
        // A long idle (a year) refills to the burst, not beyond, and overflows nothing.
        let later = t0 + Duration::from_secs(365 * 24 * 3600);
        let mut taken = 0;
        while b.admit(later, 1) {
            taken += 1;
        }
        assert_eq!(taken, 3);
        assert!(b.wait(later) <= ms(2));
    }

    #[test]
    fn both_limits_apply() {
        // Messages allow 100 at once; bytes allow 1,000: ten messages of 100 bytes.
        let (mut b, t0) = bucket(RateLimit::new().messages(100.0, 100).bytes(1000.0, 1000));
        let mut taken = 0;
        while b.admit(t0, 100) {
            taken += 1;
        }
        assert_eq!(taken, 10);
        // Bytes refill 100 in 100 ms; messages would allow it at once.
        let wait = b.wait(t0);
        assert!(wait > ms(0) && wait <= ms(2), "{wait:?}");
        // Small messages: the message limit binds.
        let (mut b, t0) = bucket(RateLimit::new().messages(100.0, 4).bytes(1000.0, 1000));
        let taken = (0..10).filter(|_| b.admit(t0, 1)).count();
        assert_eq!(taken, 4);
    }

    #[test]
    fn a_message_over_the_burst_overdraws() {
        let (mut b, t0) = bucket(RateLimit::new().bytes(1000.0, 100));
        // Larger than the whole burst: taken when full, leaving a debt of 900 bytes.
        assert!(b.admit(t0, 1000));
        assert!(!b.admit(t0, 1));
        let wait = b.wait(t0);
        // 901 bytes at 1,000 a second.
        assert!(wait >= ms(900) && wait <= ms(902), "{wait:?}");
        assert!(!b.admit(t0 + ms(800), 1));
        assert!(b.admit(t0 + wait, 1000));
        // Never stuck: a waiting client always gets through eventually.
        let wait = b.wait(t0 + wait);
        assert!(wait <= Duration::from_secs(2), "{wait:?}");
    }

    #[test]
    fn over_time_the_rate_holds() {
        // Messages of 300 bytes against 1,000 bytes/s with a burst of 500, taken as soon as
        // allowed for 10 s: at most burst + rate × time + one message.
        let (mut b, t0) = bucket(RateLimit::new().bytes(1000.0, 500));
        let mut now = t0;
        let mut bytes = 0u64;
        while now < t0 + Duration::from_secs(10) {
            if b.admit(now, 300) {
                bytes += 300;
            } else {
                now += b.wait(now);
            }
        }
        assert!(bytes <= 500 + 10_000 + 300, "{bytes}");
        assert!(bytes >= 10_000 - 300, "{bytes}");
    }

    #[test]
    fn tiny_rates_and_huge_debts_wait_at_most_an_hour() {
        let (mut b, t0) = bucket(RateLimit::new().bytes(0.001, 1));
        assert!(b.admit(t0, u32::MAX as usize));
        let wait = b.wait(t0);
        assert_eq!(wait, MAX_WAIT + Duration::from_micros(1));
        // A clock that goes backwards changes nothing.
        assert_eq!(b.wait(t0 - ms(1)), wait);
    }

    #[test]
    fn verdicts_by_policy() {
        let limit = RateLimit::new().messages(1.0, 1);
        let now = Instant::now();
        let cases = [
            (RateLimitPolicy::HoldBack, false, Verdict::Deliver),
            (RateLimitPolicy::Drop, false, Verdict::Drop),
            (RateLimitPolicy::Drop, true, Verdict::Deliver),
            (RateLimitPolicy::Disconnect, false, Verdict::Disconnect),
            (RateLimitPolicy::Disconnect, true, Verdict::Disconnect),
        ];
        for (policy, control, over) in cases {
            let mut b = Bucket::new(&limit, now);
            assert_eq!(verdict(policy, &mut b, now, 1, control), Verdict::Deliver);
            assert_eq!(verdict(policy, &mut b, now, 1, control), over, "{policy:?}");
        }
        // A dropped message costs nothing: the next one a second later passes.
        let mut b = Bucket::new(&limit, now);
        let drop = RateLimitPolicy::Drop;
        assert_eq!(verdict(drop, &mut b, now, 1, false), Verdict::Deliver);
        for _ in 0..100 {
            assert_eq!(verdict(drop, &mut b, now, 1, false), Verdict::Drop);
        }
        let later = now + Duration::from_secs(1) + ms(1);
        assert_eq!(verdict(drop, &mut b, later, 1, false), Verdict::Deliver);
    }
}
