//! A client's bounded outbound queue of shared, already-encoded frames, and writing it out
//! with `writev`.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::command::Frames;
use crate::stats::Tally;
use crate::transport::Conn;
use crate::SlowClientPolicy;

/// What each queued chunk costs on top of its bytes, so the bound also holds for many tiny
/// chunks: the queue entry (a [`Chunk`], 64 bytes) plus the shared buffer's header.
pub(crate) const CHUNK_OVERHEAD: usize = 64;

/// The most slices one `writev` takes; Linux's `IOV_MAX` is 1024.
const MAX_IOV: usize = 128;
/// Slices for a short queue.
const SHORT_IOV: usize = 4;
/// A drained queue keeps room for this many chunks and gives back the rest, so a backlog
/// does not hold memory once it is written out.
const KEEP_CHUNKS: usize = 16;

/// Consecutive whole frames of one [`Frames`] buffer, shared by every queue it is in.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    bytes: Bytes,
    /// The end offsets of every frame of the buffer the chunk was cut from.
    ends: Arc<[u32]>,
    /// The chunk's frames, as indexes into `ends`.
    first: u32,
    count: u32,
    /// Where `bytes` starts in that buffer.
    base: u32,
}

impl Chunk {
    /// Frames `range` of `frames` (a non-empty range of frame indexes).
    pub(crate) fn new(frames: &Frames, range: Range<usize>) -> Chunk {
        let start = frames.start_of(range.start);
        let end = frames.ends[range.end - 1] as usize;
        Chunk {
            bytes: frames.bytes.slice(start..end),
            ends: Arc::clone(&frames.ends),
            first: range.start as u32,
            count: range.len() as u32,
            base: start as u32,
        }
    }

    /// Every frame of `frames`.
    pub(crate) fn whole(frames: &Frames) -> Chunk {
        Chunk::new(frames, 0..frames.ends.len())
    }

    /// Protocol bytes that are no message (an HTTP answer, a WebSocket control frame): they
    /// count as no frame in the stats.
    pub(crate) fn raw(bytes: bytes::Bytes) -> Chunk {
        Chunk {
            bytes,
            ends: Arc::from([]),
            first: 0,
            count: 0,
            base: 0,
        }
    }

    pub(crate) fn frames(&self) -> u64 {
        u64::from(self.count)
    }

    /// How many frames lie wholly within the first `offset` bytes.
    fn frames_before(&self, offset: usize) -> u64 {
        if offset >= self.bytes.len() {
            return self.frames();
        }
        let range = self.first as usize..(self.first + self.count) as usize;
        let limit = self.base as usize + offset;
        self.ends[range].partition_point(|&end| end as usize <= limit) as u64
    }

    pub(crate) fn cost(&self) -> usize {
        self.bytes.len() + CHUNK_OVERHEAD
    }
}

/// What [`Queue::enqueue`] did with a chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// Queued; `true` if the queue was empty before, so the client needs a write.
    Queued(bool),
    /// Queued after dropping this many older frames, or not queued and this many frames
    /// dropped (`DropNewest`).
    Dropped(u64),
    /// The queue is full and the policy is to disconnect.
    Full,
}

/// A bounded queue of chunks, written from the front.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes of `chunks[0]` already written.
    offset: usize,
    /// The queue's cost: chunk bytes plus [`CHUNK_OVERHEAD`] each.
    cost: usize,
}

impl Queue {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The queue's cost: chunk bytes plus their bookkeeping.
    pub(crate) fn cost(&self) -> usize {
        self.cost
    }

    /// Whether queueing `chunk` would pass `bound` (an empty queue takes any chunk).
    pub(crate) fn is_over(&self, chunk: &Chunk, bound: usize) -> bool {
        !self.chunks.is_empty() && self.cost + chunk.cost() > bound
    }

    /// Adds `chunk`, applying `policy` if that would pass `bound`.
    ///
    /// An empty queue always takes the chunk, so one message up to the bound (which the
    /// hub enforces) always fits.
    pub(crate) fn enqueue(
        &mut self,
        chunk: &Chunk,
        bound: usize,
        policy: SlowClientPolicy,
    ) -> Enqueued {
        let was_empty = self.chunks.is_empty();
        if !self.is_over(chunk, bound) {
            self.push(chunk);
            return Enqueued::Queued(was_empty);
        }
        match policy {
            SlowClientPolicy::Disconnect => Enqueued::Full,
            SlowClientPolicy::DropNewest => Enqueued::Dropped(chunk.frames()),
            SlowClientPolicy::DropOldest => {
                // Never drop the front chunk once part of it is written: the peer would get
                // a torn frame. Nor protocol bytes that are no message (a control message
                // of the protocol, a WebSocket close frame): they must reach the client
                // however slow it is, and they are few and small.
                let mut at = usize::from(self.offset > 0);
                let mut dropped = 0;
                while at < self.chunks.len() && self.cost + chunk.cost() > bound {
                    if self.chunks[at].frames() == 0 {
                        at += 1;
                    } else if let Some(old) = self.chunks.remove(at) {
                        self.cost -= old.cost();
                        dropped += old.frames();
                    }
                }
                self.push(chunk);
                Enqueued::Dropped(dropped)
            }
        }
    }

    fn push(&mut self, chunk: &Chunk) {
        self.cost += chunk.cost();
        self.chunks.push_back(chunk.clone());
    }

    /// Adds `chunk` whatever the bound: for the few protocol bytes that must reach a client
    /// however slow it is (an upgrade answer, a close frame). They are small and sent once.
    /// [`DropOldest`](SlowClientPolicy::DropOldest) never drops a chunk that holds no frame;
    /// messages queued here (a replay) it drops like any other.
    pub(crate) fn push_unbounded(&mut self, chunk: Chunk) {
        self.cost += chunk.cost();
        self.chunks.push_back(chunk);
    }

    /// Drops everything but a partly written front chunk (it must be finished, or the
    /// peer gets a torn frame), for a client that is cut off. Returns the frames dropped.
    #[cfg(feature = "websocket")]
    pub(crate) fn truncate(&mut self) -> u64 {
        let keep = usize::from(self.offset > 0);
        let mut dropped = 0;
        for chunk in self.chunks.drain(keep..) {
            self.cost -= chunk.cost();
            dropped += chunk.frames();
        }
        dropped
    }

    /// Writes as much as `conn` takes, many chunks per `writev`, until the queue is empty
    /// (`Ok`) or the socket would block (`WouldBlock`). Also returns how many bytes were
    /// written; `tally` counts bytes and whole frames.
    pub(crate) fn write_to(
        &mut self,
        conn: &mut Conn,
        tally: &mut Tally,
    ) -> (usize, io::Result<()>) {
        let mut total = 0;
        while !self.chunks.is_empty() {
            // A short queue (the usual case below saturation) needs no big slice array.
            let result = if self.chunks.len() <= SHORT_IOV {
                self.write_gathered::<SHORT_IOV>(conn)
            } else {
                self.write_gathered::<MAX_IOV>(conn)
            };
            match result {
                Ok(0) => return (total, Err(io::ErrorKind::WriteZero.into())),
                Ok(written) => {
                    total += written;
                    self.advance(written, tally);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (total, Err(err)),
            }
        }
        if self.chunks.capacity() > KEEP_CHUNKS {
            self.chunks.shrink_to(KEEP_CHUNKS);
        }
        (total, Ok(()))
    }

    /// One `writev` of up to `N` chunks from the front of the queue.
    fn write_gathered<const N: usize>(&self, conn: &mut Conn) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); N];
        let mut n = 0;
        for (slot, chunk) in iov.iter_mut().zip(&self.chunks) {
            let start = if n == 0 { self.offset } else { 0 };
            *slot = IoSlice::new(&chunk.bytes[start..]);
            n += 1;
        }
        conn.write_vectored(&iov[..n])
    }

    /// Retires `written` bytes from the front of the queue.
    fn advance(&mut self, mut written: usize, tally: &mut Tally) {
        tally.bytes_out += written as u64;
        while let Some(front) = self.chunks.front() {
            let done = front.frames_before(self.offset);
            let left = front.bytes.len() - self.offset;
            if written < left {
                self.offset += written;
                tally.frames_out += front.frames_before(self.offset) - done;
                return;
            }
            written -= left;
            self.offset = 0;
            self.cost -= front.cost();
            tally.frames_out += front.frames() - done;
            self.chunks.pop_front();
        }
    }

    /// What is still queued: (whole or partly written frames, bytes not yet written).
    pub(crate) fn backlog(&self) -> (u64, u64) {
        let written = self
            .chunks
            .front()
            .map_or(0, |c| c.frames_before(self.offset));
        let frames = self.chunks.iter().map(Chunk::frames).sum::<u64>() - written;
        let bytes = self
            .chunks
            .iter()
            .map(|c| c.bytes.len() as u64)
            .sum::<u64>()
            - self.offset as u64;
        (frames, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Batch, Target};
    use crate::Framing;

    fn frames(payloads: &[&[u8]]) -> Frames {
        let mut batch = Batch::with_capacity(64);
        for p in payloads {
            batch.push(Framing::Lines, p, Target::All);
        }
        batch.take()
    }

    #[test]
    fn a_chunk_counts_only_its_own_frames() {
        let f = frames(&[b"aa", b"b", b"cccc", b"d"]); // "aa\nb\ncccc\nd\n"
        let mid = Chunk::new(&f, 1..3); // "b\ncccc\n"
        assert_eq!(&mid.bytes[..], b"b\ncccc\n");
        assert_eq!(mid.frames(), 2);
        assert_eq!(mid.frames_before(0), 0);
        assert_eq!(mid.frames_before(1), 0);
        assert_eq!(mid.frames_before(2), 1);
        assert_eq!(mid.frames_before(6), 1);
        assert_eq!(mid.frames_before(7), 2);
        assert_eq!(Chunk::whole(&f).frames_before(3), 1);
    }

    #[test]
    fn the_bound_applies_the_policy() {
        let f = frames(&[&[b'x'; 100]]);
        let chunk = Chunk::whole(&f);
        let bound = 2 * chunk.cost();
        let mut q = Queue::default();
        assert_eq!(
            q.enqueue(&chunk, bound, SlowClientPolicy::Disconnect),
            Enqueued::Queued(true)
        );
        assert_eq!(
            q.enqueue(&chunk, bound, SlowClientPolicy::Disconnect),
            Enqueued::Queued(false)
        );
        assert_eq!(
            q.enqueue(&chunk, bound, SlowClientPolicy::Disconnect),
            Enqueued::Full
        );
        assert_eq!(
            q.enqueue(&chunk, bound, SlowClientPolicy::DropNewest),
            Enqueued::Dropped(1)
        );
        assert_eq!(
            q.enqueue(&chunk, bound, SlowClientPolicy::DropOldest),
            Enqueued::Dropped(1)
        );
        assert_eq!(q.cost(), bound);
        assert_eq!(q.backlog(), (2, 202));
    }

    #[test]
    fn drop_oldest_keeps_protocol_bytes() {
        let (small, big) = (frames(&[&[b'x'; 100]]), frames(&[&[b'y'; 200]]));
        let chunk = Chunk::whole(&small);
        let control = Chunk::raw(Bytes::from_static(b"#resumed * 1 2 3\n"));
        let bound = 2 * chunk.cost() + 2 * control.cost();
        let mut q = Queue::default();
        q.push_unbounded(control.clone());
        for _ in 0..2 {
            let queued = q.enqueue(&chunk, bound, SlowClientPolicy::DropOldest);
            assert!(matches!(queued, Enqueued::Queued(_)));
        }
        q.push_unbounded(control.clone());
        // The big one needs the room of both messages: they go, the control messages stay,
        // in order.
        assert_eq!(
            q.enqueue(&Chunk::whole(&big), bound, SlowClientPolicy::DropOldest),
            Enqueued::Dropped(2)
        );
        let kinds: Vec<u64> = q.chunks.iter().map(Chunk::frames).collect();
        assert_eq!(kinds, vec![0, 0, 1]);
    }

    #[test]
    fn an_empty_queue_takes_a_chunk_over_the_bound() {
        let f = frames(&[&[b'x'; 100]]);
        let mut q = Queue::default();
        assert_eq!(
            q.enqueue(&Chunk::whole(&f), 10, SlowClientPolicy::Disconnect),
            Enqueued::Queued(true)
        );
    }
}
