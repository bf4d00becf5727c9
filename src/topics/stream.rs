//! Numbered streams and their replay rings ([`Protocol::Sequenced`](crate::Protocol)): the
//! hub-wide stream and one per topic. The dispatcher numbers each message as it fans it out
//! — the one place where host calls and relayed messages are in one total order — and keeps
//! the last messages, as framed, to replay to a client that comes back.

use std::collections::VecDeque;
use std::mem;
use std::ops::Range;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::random::random_u64;
use crate::{MessageKind, ResumeRefusal};

/// How much a replay ring keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingLimits {
    pub(crate) messages: usize,
    /// The most a ring's messages may cost (see [`frame_cost`]).
    pub(crate) bytes: usize,
    /// `None`: no age limit.
    pub(crate) age: Option<Duration>,
}

/// One message kept for replay: its number, when it was sent, its framed bytes (a copy,
/// so the ring pins nothing else) and its kind, so that a WebSocket client is replayed the
/// message with the opcode it first went out with.
#[derive(Debug)]
struct Kept {
    seq: u64,
    at: Instant,
    frame: Bytes,
    kind: Option<MessageKind>,
    /// A `#presence` message: not counted as one of the last messages a join asks for.
    presence: bool,
}

/// What a kept frame of `len` bytes costs in memory: its allocation, rounded as allocators
/// round, with their header, and the shared header `Bytes` makes when a replay first clones
/// it. The ring's entry itself is counted apart, by the ring's capacity.
pub(crate) fn frame_cost(len: usize) -> usize {
    const ALLOCATION: usize = 16;
    const HEADERS: usize = 16 + 32;
    len.div_ceil(ALLOCATION) * ALLOCATION + HEADERS
}

/// What a set of replay rings costs together, in bytes: each stream counted in it adds its
/// own cost as it changes and takes it back when it is dropped or no longer counted, so the
/// sum is exact whoever holds the stream. Every stream of a hub counts in the hub's total
/// (the `replay_total_bytes` bound); kept topics' streams also count in the kept total.
#[derive(Debug, Clone, Default)]
pub(crate) struct RingTotal(Arc<AtomicUsize>);

impl RingTotal {
    /// The sum now.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Relaxed)
    }

    fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes, Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.0.fetch_sub(bytes, Relaxed);
    }
}

/// A stream's numbers and its replay ring.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) epoch: u64,
    /// The last number given; 0 before the first message.
    pub(crate) seq: u64,
    ring: VecDeque<Kept>,
    /// What the ring's messages cost (see [`frame_cost`]): the per-ring bound applies to it.
    ring_bytes: usize,
    /// The hub's total, a second total it may count in too (see [`count_in`]), and what
    /// this stream adds to them now.
    ///
    /// [`count_in`]: Self::count_in
    total: RingTotal,
    also: Option<RingTotal>,
    counted: usize,
}

/// A new random epoch: different for every stream life, across restarts.
pub(crate) fn new_epoch() -> u64 {
    // Positive and below 2^53, so clients in languages with float numbers read it exactly.
    (random_u64() >> 11).max(1)
}

impl Stream {
    /// A new stream, counted in `total`.
    pub(crate) fn new(total: &RingTotal) -> Stream {
        Stream {
            epoch: new_epoch(),
            seq: 0,
            ring: VecDeque::new(),
            ring_bytes: 0,
            total: total.clone(),
            also: None,
            counted: 0,
        }
    }

    /// Numbers the next message.
    pub(crate) fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Keeps message `seq`, of `kind`, for replay, dropping the oldest past the limits.
    pub(crate) fn keep(
        &mut self,
        seq: u64,
        frame: Bytes,
        kind: Option<MessageKind>,
        presence: bool,
        now: Instant,
        limits: &RingLimits,
    ) {
        let cost = frame_cost(frame.len());
        if limits.messages == 0 || cost > limits.bytes {
            // It can never be replayed; neither can anything before it, in order.
            self.ring = VecDeque::new();
            self.ring_bytes = 0;
        } else {
            self.ring_bytes += cost;
            self.ring.push_back(Kept {
                seq,
                at: now,
                frame,
                kind,
                presence,
            });
            while self.ring.len() > limits.messages || self.ring_bytes > limits.bytes {
                self.pop();
            }
        }
        self.account();
    }

    fn pop(&mut self) {
        if let Some(old) = self.ring.pop_front() {
            self.ring_bytes -= frame_cost(old.frame.len());
        }
    }

    /// Gives back the room of messages that went, once the ring holds far fewer than it has
    /// room for: a ring trimmed or aged down must not keep the memory of its busiest time.
    fn shrink(&mut self) {
        let len = self.ring.len();
        if len == 0 {
            // An empty ring costs nothing: trims and the hub-wide bound can always get under
            // any level.
            self.ring = VecDeque::new();
        } else if self.ring.capacity() > 2 * len + 16 {
            self.ring.shrink_to(len + len / 2 + 8);
        }
    }

    /// Brings the totals up to date with what the stream costs now.
    fn account(&mut self) {
        let (cost, counted) = (self.cost(), self.counted);
        for total in [Some(&self.total), self.also.as_ref()]
            .into_iter()
            .flatten()
        {
            if cost >= counted {
                total.add(cost - counted);
            } else {
                total.sub(counted - cost);
            }
        }
        self.counted = cost;
    }

    /// Counts the stream in `also` besides the hub's total from now on (`None`: in the
    /// hub's total only).
    pub(crate) fn count_in(&mut self, also: Option<&RingTotal>) {
        if let Some(old) = self.also.take() {
            old.sub(self.counted);
        }
        if let Some(new) = also {
            new.add(self.counted);
        }
        self.also = also.cloned();
    }

    /// What the ring costs in memory: its messages and its entries (by capacity).
    pub(crate) fn cost(&self) -> usize {
        self.ring_bytes + self.ring.capacity() * mem::size_of::<Kept>()
    }

    /// Drops messages older than the age limit. Returns when the next one will be, if any.
    pub(crate) fn prune(&mut self, now: Instant, limits: &RingLimits) -> Option<Instant> {
        let age = limits.age?;
        let mut next = None;
        while let Some(front) = self.ring.front() {
            match front.at.checked_add(age) {
                Some(until) if until <= now => self.pop(),
                until => {
                    next = until;
                    break;
                }
            }
        }
        self.shrink();
        self.account();
        next
    }

    /// Drops the oldest messages until the ring costs at most `level`. Returns how many
    /// went.
    pub(crate) fn trim_to(&mut self, level: usize) -> u64 {
        let mut dropped = 0;
        while self.cost() > level && !self.ring.is_empty() {
            self.pop();
            self.shrink();
            dropped += 1;
        }
        self.account();
        dropped
    }

    pub(crate) fn ring_is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The messages after `after` up to `upto` (included), as a range of ring indexes for
    /// [`frames`](Self::frames), for a client at `(epoch, after)`, if the ring still holds
    /// them all. A message past `age` at `now` counts as gone, pruned or not: rings are
    /// pruned on a coarse schedule.
    pub(crate) fn replay(
        &self,
        epoch: u64,
        after: u64,
        upto: u64,
        (now, age): (Instant, Option<Duration>),
    ) -> Result<Range<usize>, ResumeRefusal> {
        if epoch != self.epoch || after > self.seq {
            return Err(ResumeRefusal::Epoch);
        }
        if after >= upto {
            return Ok(0..0);
        }
        let live =
            |k: &Kept| age.map_or(true, |age| k.at.checked_add(age).map_or(true, |t| t > now));
        let oldest = self
            .ring
            .iter()
            .find(|k| live(k))
            .map_or(self.seq + 1, |k| k.seq);
        if after + 1 < oldest {
            return Err(ResumeRefusal::TooOld);
        }
        let first = self.ring.partition_point(|k| k.seq <= after);
        let end = self.ring.partition_point(|k| k.seq <= upto);
        Ok(first..end.max(first))
    }

    /// Where a replay of the last `n` messages up to `upto` (included) starts: the
    /// position before the `n`-th last message the ring still holds (not past its age) up
    /// to `upto`, or before its oldest if it holds fewer. `#presence` messages between them
    /// are replayed but do not count, and none before the first of them is.
    pub(crate) fn last(&self, n: u64, upto: u64, (now, age): (Instant, Option<Duration>)) -> u64 {
        let live =
            |k: &Kept| age.map_or(true, |age| k.at.checked_add(age).map_or(true, |t| t > now));
        let end = self.ring.partition_point(|k| k.seq <= upto);
        let mut after = upto;
        let mut counted = 0;
        for kept in self.ring.range(..end).rev() {
            if counted == n || !live(kept) {
                break;
            }
            if !kept.presence {
                counted += 1;
                after = kept.seq - 1;
            }
        }
        after
    }

    /// The framed messages at `range`, as [`replay`](Self::replay) gave it, each with its
    /// kind.
    pub(crate) fn frames(
        &self,
        range: Range<usize>,
    ) -> impl Iterator<Item = (&Bytes, Option<MessageKind>)> + Clone {
        self.ring.range(range).map(|k| (&k.frame, k.kind))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.count_in(None);
        self.total.sub(self.counted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of 10 bytes cost 64 each: the bytes bound holds 3 of them, or 1 of 60.
    const LIMITS: RingLimits = RingLimits {
        messages: 3,
        bytes: 200,
        age: Some(Duration::from_secs(10)),
    };

    fn kept(stream: &mut Stream, n: usize, len: usize, at: Instant) {
        for _ in 0..n {
            let seq = stream.next();
            stream.keep(seq, Bytes::from(vec![b'x'; len]), None, false, at, &LIMITS);
        }
    }

    fn count(
        s: &Stream,
        epoch: u64,
        after: u64,
        upto: u64,
        clock: (Instant, Option<Duration>),
    ) -> Result<usize, ResumeRefusal> {
        s.replay(epoch, after, upto, clock)
            .map(|r| s.frames(r).count())
    }

    #[test]
    fn the_last_messages_skip_presence_and_stop_at_the_ring() {
        let t = Instant::now();
        let limits = RingLimits {
            messages: 6,
            bytes: 10_000,
            age: Some(Duration::from_secs(10)),
        };
        let mut s = Stream::new(&RingTotal::default());
        // 1..=8, every third a presence message; the ring holds 3..=8.
        for i in 1..=8u64 {
            let seq = s.next();
            s.keep(seq, Bytes::from_static(b"x"), None, i % 3 == 0, t, &limits);
        }
        let clock = (t, limits.age);
        assert_eq!(s.last(0, 8, clock), 8);
        assert_eq!(s.last(1, 8, clock), 7, "8 is a message");
        assert_eq!(s.last(2, 8, clock), 6, "7 and 8");
        assert_eq!(
            s.last(3, 8, clock),
            4,
            "5, 7 and 8, with 6 (presence) between"
        );
        assert_eq!(
            s.last(2, 6, clock),
            3,
            "up to 6: 4 and 5, and 6 is presence"
        );
        assert_eq!(
            s.last(100, 8, clock),
            3,
            "what the ring holds, from a message"
        );
        let later = (t + Duration::from_secs(11), limits.age);
        assert_eq!(s.last(100, 8, later), 8, "all past their age");
    }

    #[test]
    fn replays_exactly_what_follows_a_position() {
        let t = Instant::now();
        let mut s = Stream::new(&RingTotal::default());
        kept(&mut s, 5, 10, t);
        // The ring holds 3, 4, 5 (count bound).
        assert_eq!(count(&s, s.epoch, 2, 5, (t, None)), Ok(3));
        assert_eq!(count(&s, s.epoch, 4, 5, (t, None)), Ok(1));
        assert_eq!(count(&s, s.epoch, 3, 4, (t, None)), Ok(1), "up to a bound");
        assert_eq!(count(&s, s.epoch, 5, 5, (t, None)), Ok(0));
        assert_eq!(
            count(&s, s.epoch, 1, 5, (t, None)),
            Err(ResumeRefusal::TooOld)
        );
        assert_eq!(
            count(&s, s.epoch + 1, 4, 5, (t, None)),
            Err(ResumeRefusal::Epoch)
        );
        assert_eq!(
            count(&s, s.epoch, 9, 5, (t, None)),
            Err(ResumeRefusal::Epoch)
        );
        let frames: Vec<_> = s
            .frames(s.replay(s.epoch, 3, 5, (t, None)).unwrap())
            .collect();
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn the_ring_keeps_to_its_bytes_and_age() {
        let t = Instant::now();
        let mut s = Stream::new(&RingTotal::default());
        kept(&mut s, 2, 60, t);
        assert_eq!(
            s.ring_bytes,
            frame_cost(60),
            "the bytes bound dropped the first"
        );
        let later = t + Duration::from_secs(5);
        kept(&mut s, 1, 10, later);
        // Past its age a message is not replayed, pruned or not.
        let at_age = (t + Duration::from_secs(10), LIMITS.age);
        assert_eq!(
            count(&s, s.epoch, s.seq - 2, s.seq, at_age),
            Err(ResumeRefusal::TooOld)
        );
        assert_eq!(count(&s, s.epoch, s.seq - 1, s.seq, at_age), Ok(1));
        assert_eq!(
            s.prune(t + Duration::from_secs(10), &LIMITS),
            Some(later + Duration::from_secs(10))
        );
        assert_eq!(s.ring_bytes, frame_cost(10));
        assert_eq!(s.prune(later + Duration::from_secs(10), &LIMITS), None);
        assert!(s.ring_is_empty());
        // A message too big for the ring clears it: nothing before it can be replayed
        // without it.
        kept(&mut s, 1, 10, later);
        kept(&mut s, 1, 200, later);
        assert!(s.ring_is_empty());
        assert_eq!(
            count(&s, s.epoch, s.seq - 1, s.seq, (t, None)),
            Err(ResumeRefusal::TooOld)
        );
    }

    #[test]
    fn the_total_is_exact_through_every_change() {
        let t = Instant::now();
        let total = RingTotal::default();
        let limits = RingLimits {
            messages: 1000,
            bytes: usize::MAX,
            age: Some(Duration::from_secs(10)),
        };
        let (mut a, mut b) = (Stream::new(&total), Stream::new(&total));
        for i in 0..500 {
            let seq = a.next();
            a.keep(
                seq,
                Bytes::from(vec![b'a'; i % 300]),
                None,
                false,
                t,
                &limits,
            );
            let seq = b.next();
            b.keep(
                seq,
                Bytes::from(vec![b'b'; 50]),
                Some(MessageKind::Binary),
                false,
                t + Duration::from_secs(5),
                &limits,
            );
        }
        assert_eq!(total.get(), a.cost() + b.cost());
        assert!(a.cost() > a.ring_bytes, "entries are counted too");
        // Trimmed: the oldest go first, and the ring gives its room back.
        let before = a.cost();
        let dropped = a.trim_to(before / 4);
        assert!(
            dropped > 0 && a.cost() <= before / 4,
            "{} > {}",
            a.cost(),
            before / 4
        );
        assert_eq!(count(&a, a.epoch, a.seq - 1, a.seq, (t, None)), Ok(1));
        assert_eq!(
            count(&a, a.epoch, 0, a.seq, (t, None)),
            Err(ResumeRefusal::TooOld)
        );
        assert_eq!(total.get(), a.cost() + b.cost());
        // Aged out.
        assert!(a.prune(t + Duration::from_secs(10), &limits).is_none());
        assert!(a.ring_is_empty());
        assert_eq!(total.get(), a.cost() + b.cost());
        drop(a);
        assert_eq!(total.get(), b.cost());
        drop(b);
        assert_eq!(total.get(), 0);
    }

    #[test]
    fn the_ring_keeps_each_message_kind() {
        use MessageKind::{Binary, Text};
        let t = Instant::now();
        let mut s = Stream::new(&RingTotal::default());
        for kind in [Some(Binary), None, Some(Text)] {
            let seq = s.next();
            s.keep(seq, Bytes::from_static(b"1 \n"), kind, false, t, &LIMITS);
        }
        let kinds: Vec<_> = s
            .frames(s.replay(s.epoch, 0, 3, (t, None)).unwrap())
            .map(|(_, kind)| kind)
            .collect();
        assert_eq!(kinds, [Some(Binary), None, Some(Text)]);
    }

    #[test]
    fn epochs_differ() {
        assert_ne!(new_epoch(), new_epoch());
        assert!(new_epoch() < 1 << 53);
    }
}
