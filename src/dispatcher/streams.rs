//! Numbered streams and their replay rings ([`Protocol::Sequenced`](crate::Protocol)): the
//! hub-wide stream and one per topic. The dispatcher numbers each message as it fans it out
//! — the one place where host calls and relayed messages are in one total order — and keeps
//! the last messages, as framed, to replay to a client that comes back.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::ResumeRefusal;

/// How much a replay ring keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingLimits {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
    /// `None`: no age limit.
    pub(crate) age: Option<Duration>,
}

/// One message kept for replay: its number, when it was sent, and its framed bytes (a copy,
/// so the ring pins nothing else).
#[derive(Debug)]
struct Kept {
    seq: u64,
    at: Instant,
    frame: Bytes,
}

/// A stream's numbers and its replay ring.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) epoch: u64,
    /// The last number given; 0 before the first message.
    pub(crate) seq: u64,
    ring: VecDeque<Kept>,
    ring_bytes: usize,
}

/// A random number, from the standard library's per-process hash keys and the clock: no
/// dependency for the few random numbers hubcast needs (epochs, node ids, jitter).
pub(crate) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish()
}

/// A new random epoch: different for every stream life, across restarts.
pub(crate) fn new_epoch() -> u64 {
    // Positive and below 2^53, so clients in languages with float numbers read it exactly.
    (random_u64() >> 11).max(1)
}

impl Stream {
    pub(crate) fn new() -> Stream {
        Stream {
            epoch: new_epoch(),
            seq: 0,
            ring: VecDeque::new(),
            ring_bytes: 0,
        }
    }

    /// Numbers the next message.
    pub(crate) fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Keeps message `seq` for replay, dropping the oldest past the limits.
    pub(crate) fn keep(&mut self, seq: u64, frame: Bytes, now: Instant, limits: &RingLimits) {
        if limits.messages == 0 || frame.len() > limits.bytes {
            // It can never be replayed; neither can anything before it, in order.
            self.clear();
            return;
        }
        self.ring_bytes += frame.len();
        self.ring.push_back(Kept {
            seq,
            at: now,
            frame,
        });
        while self.ring.len() > limits.messages || self.ring_bytes > limits.bytes {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some(old) = self.ring.pop_front() {
            self.ring_bytes -= old.frame.len();
        }
    }

    fn clear(&mut self) {
        self.ring.clear();
        self.ring_bytes = 0;
    }

    /// Drops messages older than the age limit. Returns when the next one will be, if any.
    pub(crate) fn prune(&mut self, now: Instant, limits: &RingLimits) -> Option<Instant> {
        let age = limits.age?;
        while let Some(front) = self.ring.front() {
            match front.at.checked_add(age) {
                Some(until) if until <= now => self.pop(),
                until => return until,
            }
        }
        None
    }

    pub(crate) fn ring_is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The bytes the ring holds: its messages as framed.
    pub(crate) fn ring_bytes(&self) -> usize {
        self.ring_bytes
    }

    /// The framed messages after `after` up to `upto` (included), for a client at
    /// `(epoch, after)`, if the ring still holds them all and they fit in `budget` bytes.
    /// A message past `age` at `now` counts as gone, pruned or not: rings are pruned on a
    /// coarse schedule.
    pub(crate) fn replay(
        &self,
        epoch: u64,
        after: u64,
        upto: u64,
        budget: usize,
        (now, age): (Instant, Option<Duration>),
    ) -> Result<Vec<Bytes>, ResumeRefusal> {
        if epoch != self.epoch || after > self.seq {
            return Err(ResumeRefusal::Epoch);
        }
        if after >= upto {
            return Ok(Vec::new());
        }
        let live =
            |k: &&Kept| age.map_or(true, |age| k.at.checked_add(age).map_or(true, |t| t > now));
        let oldest = self.ring.iter().find(live).map_or(self.seq + 1, |k| k.seq);
        if after + 1 < oldest {
            return Err(ResumeRefusal::TooOld);
        }
        let wanted = self
            .ring
            .iter()
            .skip_while(|k| k.seq <= after)
            .take_while(|k| k.seq <= upto);
        let bytes: usize = wanted.clone().map(|k| k.frame.len()).sum();
        if bytes > budget {
            return Err(ResumeRefusal::TooMuch);
        }
        Ok(wanted.map(|k| k.frame.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RingLimits = RingLimits {
        messages: 3,
        bytes: 100,
        age: Some(Duration::from_secs(10)),
    };

    fn kept(stream: &mut Stream, n: usize, len: usize, at: Instant) {
        for _ in 0..n {
            let seq = stream.next();
            stream.keep(seq, Bytes::from(vec![b'x'; len]), at, &LIMITS);
        }
    }

    #[test]
    fn replays_exactly_what_follows_a_position() {
        let t = Instant::now();
        let mut s = Stream::new();
        kept(&mut s, 5, 10, t);
        // The ring holds 3, 4, 5 (count bound).
        assert_eq!(s.replay(s.epoch, 2, 5, 1000, (t, None)).unwrap().len(), 3);
        assert_eq!(s.replay(s.epoch, 4, 5, 1000, (t, None)).unwrap().len(), 1);
        assert_eq!(
            s.replay(s.epoch, 3, 4, 1000, (t, None)).unwrap().len(),
            1,
            "up to a bound"
        );
        assert!(s.replay(s.epoch, 5, 5, 1000, (t, None)).unwrap().is_empty());
        assert_eq!(
            s.replay(s.epoch, 1, 5, 1000, (t, None)),
            Err(ResumeRefusal::TooOld)
        );
        assert_eq!(
            s.replay(s.epoch + 1, 4, 5, 1000, (t, None)),
            Err(ResumeRefusal::Epoch)
        );
        assert_eq!(
            s.replay(s.epoch, 9, 5, 1000, (t, None)),
            Err(ResumeRefusal::Epoch)
        );
        assert_eq!(
            s.replay(s.epoch, 2, 5, 29, (t, None)),
            Err(ResumeRefusal::TooMuch)
        );
    }

    #[test]
    fn the_ring_keeps_to_its_bytes_and_age() {
        let t = Instant::now();
        let mut s = Stream::new();
        kept(&mut s, 2, 60, t);
        assert_eq!(s.ring_bytes, 60, "the bytes bound dropped the first");
        let later = t + Duration::from_secs(5);
        kept(&mut s, 1, 30, later);
        // Past its age a message is not replayed, pruned or not.
        let at_age = (t + Duration::from_secs(10), LIMITS.age);
        assert_eq!(
            s.replay(s.epoch, s.seq - 2, s.seq, 1000, at_age),
            Err(ResumeRefusal::TooOld)
        );
        assert_eq!(
            s.replay(s.epoch, s.seq - 1, s.seq, 1000, at_age)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            s.prune(t + Duration::from_secs(10), &LIMITS),
            Some(later + Duration::from_secs(10))
        );
        assert_eq!(s.ring_bytes, 30);
        assert_eq!(s.prune(later + Duration::from_secs(10), &LIMITS), None);
        assert!(s.ring_is_empty());
        // A message too big for the ring clears it: nothing before it can be replayed
        // without it.
        kept(&mut s, 1, 10, later);
        kept(&mut s, 1, 200, later);
        assert!(s.ring_is_empty());
        assert_eq!(
            s.replay(s.epoch, s.seq - 1, s.seq, 1000, (t, None)),
            Err(ResumeRefusal::TooOld)
        );
    }

    #[test]
    fn epochs_differ() {
        assert_ne!(new_epoch(), new_epoch());
        assert!(new_epoch() < 1 << 53);
    }
}
