//! A client's bounded outbound queue of already-encoded frames — chunks shared with other
//! queues, and small cuts copied into the queue's own buffer — and writing it out with
//! `writev`.

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

    /// One whole frame, shared with whoever holds `bytes` (a replay ring): no buffer of
    /// frame ends is made for it.
    pub(crate) fn frame(bytes: Bytes) -> Chunk {
        Chunk {
            bytes,
            ends: Arc::from([]),
            first: 0,
            count: 1,
            base: 0,
        }
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

    /// Its bytes, for tests of what the wires make.
    #[cfg(all(test, feature = "websocket"))]
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// How many frames lie wholly within the first `offset` bytes.
    fn frames_before(&self, offset: usize) -> u64 {
        if offset >= self.bytes.len() {
            return self.frames();
        }
        if self.ends.is_empty() {
            // One frame (`Chunk::frame`) or none (`Chunk::raw`), not wholly written.
            return 0;
        }
        let range = self.first as usize..(self.first + self.count) as usize;
        let limit = self.base as usize + offset;
        self.ends[range].partition_point(|&end| end as usize <= limit) as u64
    }

    pub(crate) fn cost(&self) -> usize {
        self.bytes.len() + CHUNK_OVERHEAD
    }
}

/// Frames to queue: a chunk, or a cut of a batch that is borrowed and made into a shared
/// chunk only if it is queued by reference (small ones are copied: see [`COPY_BELOW`]).
/// A cut spares the reference counts of a chunk that would be dropped at once.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Piece<'a> {
    Chunk(&'a Chunk),
    /// Frames `first..end` of a batch.
    Cut(&'a Frames, usize, usize),
}

impl<'a> Piece<'a> {
    /// Frames `range` of `frames` (a non-empty range of frame indexes).
    pub(crate) fn cut(frames: &'a Frames, range: Range<usize>) -> Piece<'a> {
        Piece::Cut(frames, range.start, range.end)
    }

    fn bytes(&self) -> &'a [u8] {
        match *self {
            Piece::Chunk(chunk) => &chunk.bytes,
            Piece::Cut(frames, first, end) => {
                &frames.bytes[frames.start_of(first)..frames.ends[end - 1] as usize]
            }
        }
    }

    pub(crate) fn frames(&self) -> u64 {
        match *self {
            Piece::Chunk(chunk) => chunk.frames(),
            Piece::Cut(_, first, end) => (end - first) as u64,
        }
    }

    fn cost(&self) -> usize {
        self.bytes().len() + CHUNK_OVERHEAD
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// The ends of the piece's frames in their buffer, and where the piece starts there.
    fn ends(&self) -> (&'a [u32], u32) {
        match *self {
            Piece::Chunk(chunk) => {
                let range = chunk.first as usize..(chunk.first + chunk.count) as usize;
                (&chunk.ends[range], chunk.base)
            }
            Piece::Cut(frames, first, end) => {
                (&frames.ends[first..end], frames.start_of(first) as u32)
            }
        }
    }

    fn to_chunk(self) -> Chunk {
        match self {
            Piece::Chunk(chunk) => chunk.clone(),
            Piece::Cut(frames, first, end) => Chunk::new(frames, first..end),
        }
    }
}

/// Chunks shorter than this are copied into the client's own buffer instead of being
/// queued by reference: for a few bytes, a copy costs less than a queue entry, its
/// reference counts and a `writev` slice of its own. Topic publishes and relayed messages
/// reach each member as such small cuts of a batch; broadcasts stay shared.
pub(crate) const COPY_BELOW: usize = 1024;
/// The first capacity of a client's own buffer, and the most it grows to before the next
/// copies start another.
const OWNED_FIRST: usize = 512;
const OWNED_MAX: usize = 32 * 1024;

/// Whole frames copied for one client, from small chunks.
#[derive(Debug)]
struct Owned {
    buf: Vec<u8>,
    /// The end of each frame in `buf`.
    ends: Vec<u32>,
}

impl Owned {
    fn frames_before(&self, offset: usize) -> u64 {
        self.ends.partition_point(|&end| end as usize <= offset) as u64
    }
}

/// One entry of a queue: a chunk shared with other queues, bytes of this queue's own, or
/// part of one resume's replayed messages (`true`: its last part; replays are counted
/// apart: see [`Queue::replays`]).
#[derive(Debug)]
enum Entry {
    Shared(Chunk),
    Owned(Owned),
    Replay(Chunk, bool),
}

impl Entry {
    fn bytes(&self) -> &[u8] {
        match self {
            Entry::Shared(chunk) | Entry::Replay(chunk, _) => &chunk.bytes,
            Entry::Owned(owned) => &owned.buf,
        }
    }

    fn frames(&self) -> u64 {
        match self {
            Entry::Shared(chunk) | Entry::Replay(chunk, _) => chunk.frames(),
            Entry::Owned(owned) => owned.ends.len() as u64,
        }
    }

    fn frames_before(&self, offset: usize) -> u64 {
        match self {
            Entry::Shared(chunk) | Entry::Replay(chunk, _) => chunk.frames_before(offset),
            Entry::Owned(owned) => owned.frames_before(offset),
        }
    }

    /// What the entry counts against the bound: its bytes (for an owned buffer, its whole
    /// capacity) plus [`CHUNK_OVERHEAD`].
    fn cost(&self) -> usize {
        match self {
            Entry::Shared(chunk) | Entry::Replay(chunk, _) => chunk.cost(),
            Entry::Owned(owned) => owned.buf.capacity() + CHUNK_OVERHEAD,
        }
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
    entries: VecDeque<Entry>,
    /// Bytes of `entries[0]` already written.
    offset: usize,
    /// The queue's cost: the entries' bytes plus [`CHUNK_OVERHEAD`] each.
    cost: usize,
    /// How many of the entries are replays not yet wholly written, and what their parts
    /// cost.
    replays: usize,
    replay_cost: usize,
}

/// How a chunk would be queued: by reference, or copied into the last owned buffer,
/// growing it to this capacity (the same capacity if it has room), or into a new one.
enum Placement {
    Shared,
    Append(usize),
    NewOwned(usize),
}

impl Queue {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The queue's cost: chunk bytes plus their bookkeeping.
    pub(crate) fn cost(&self) -> usize {
        self.cost
    }

    /// How many resumes' replays are queued and not yet wholly written.
    pub(crate) fn replays(&self) -> usize {
        self.replays
    }

    /// The queue's cost without its replays: what others sent the client, which is what
    /// flow control weighs (a client slow to read what it asked for holds nobody back).
    pub(crate) fn live_cost(&self) -> usize {
        self.cost - self.replay_cost
    }

    /// Takes an entry that left the queue (written, or dropped) out of its counts.
    fn forget(&mut self, entry: &Entry) {
        self.cost -= entry.cost();
        if let Entry::Replay(_, last) = entry {
            self.replay_cost -= entry.cost();
            if *last {
                self.replays -= 1;
            }
        }
    }

    /// Where `piece` would go, and what it would add to the cost.
    fn placement(&self, piece: Piece<'_>) -> (Placement, usize) {
        let len = piece.bytes().len();
        // Protocol bytes that are no message stay entries of their own: `DropOldest` keeps
        // them apart from messages.
        if len >= COPY_BELOW || piece.frames() == 0 {
            return (Placement::Shared, piece.cost());
        }
        if let Some(Entry::Owned(owned)) = self.entries.back() {
            let (used, capacity) = (owned.buf.len(), owned.buf.capacity());
            if used + len <= capacity {
                return (Placement::Append(capacity), 0);
            }
            if used + len <= OWNED_MAX {
                let grown = (capacity * 2).clamp(used + len, OWNED_MAX);
                return (Placement::Append(grown), grown - capacity);
            }
        }
        let capacity = OWNED_FIRST.max(len);
        (Placement::NewOwned(capacity), capacity + CHUNK_OVERHEAD)
    }

    /// Whether queueing `piece` would pass `bound` (an empty queue takes any piece).
    pub(crate) fn is_over(&self, piece: Piece<'_>, bound: usize) -> bool {
        !self.entries.is_empty() && self.cost + self.placement(piece).1 > bound
    }

    /// Adds `piece`, applying `policy` if that would pass `bound`.
    ///
    /// An empty queue always takes the piece, so one message up to the bound (which the
    /// hub enforces) always fits.
    pub(crate) fn enqueue(
        &mut self,
        piece: Piece<'_>,
        bound: usize,
        policy: SlowClientPolicy,
    ) -> Enqueued {
        let was_empty = self.entries.is_empty();
        let (placement, added) = self.placement(piece);
        if was_empty || self.cost + added <= bound {
            self.push(piece, placement, added);
            return Enqueued::Queued(was_empty);
        }
        match policy {
            SlowClientPolicy::Disconnect => Enqueued::Full,
            SlowClientPolicy::DropNewest => Enqueued::Dropped(piece.frames()),
            SlowClientPolicy::DropOldest => {
                // Never drop the front entry once part of it is written: the peer would get
                // a torn frame. Nor protocol bytes that are no message (a control message
                // of the protocol, a WebSocket close frame): they must reach the client
                // however slow it is, and they are few and small. Nor a replay: its
                // `#resumed` promised exactly those messages, and it was checked against the
                // bound when queued. The new chunk is queued by reference here, so what it
                // costs does not change as entries go.
                let mut at = usize::from(self.offset > 0);
                let mut dropped = 0;
                while at < self.entries.len() && self.cost + piece.cost() > bound {
                    let entry = &self.entries[at];
                    if entry.frames() == 0 || matches!(entry, Entry::Replay(..)) {
                        at += 1;
                    } else if let Some(old) = self.entries.remove(at) {
                        self.forget(&old);
                        dropped += old.frames();
                    }
                }
                self.push_shared(piece.to_chunk());
                Enqueued::Dropped(dropped)
            }
        }
    }

    /// Adds `piece` where [`placement`](Self::placement) said, adding `added` to the cost.
    fn push(&mut self, piece: Piece<'_>, placement: Placement, added: usize) {
        let bytes = piece.bytes();
        let (ends, start) = piece.ends();
        let ends = ends.iter().map(|&end| end - start);
        match placement {
            Placement::Shared => return self.push_shared(piece.to_chunk()),
            Placement::Append(capacity) => {
                if let Some(Entry::Owned(owned)) = self.entries.back_mut() {
                    owned.buf.reserve_exact(capacity - owned.buf.len());
                    let base = owned.buf.len() as u32;
                    owned.buf.extend_from_slice(bytes);
                    owned.ends.extend(ends.map(|end| base + end));
                }
            }
            Placement::NewOwned(capacity) => {
                let mut buf = Vec::with_capacity(capacity);
                buf.extend_from_slice(bytes);
                let ends = ends.collect();
                self.entries.push_back(Entry::Owned(Owned { buf, ends }));
            }
        }
        self.cost += added;
    }

    fn push_shared(&mut self, chunk: Chunk) {
        self.cost += chunk.cost();
        self.entries.push_back(Entry::Shared(chunk));
    }

    /// Adds `chunk` whatever the bound: for the few protocol bytes that must reach a client
    /// however slow it is (an upgrade answer, a close frame, an answer to its request).
    /// [`DropOldest`](SlowClientPolicy::DropOldest) never drops a chunk that holds no frame.
    pub(crate) fn push_unbounded(&mut self, chunk: Chunk) {
        self.push_shared(chunk);
    }

    /// Adds one resume's replayed messages, in parts (a chunk per message shared with the
    /// replay ring, or one buffer framed for the client's wire), which the caller checked
    /// against the bound (with [`cost`](Self::cost) and [`replays`](Self::replays)).
    /// [`DropOldest`](SlowClientPolicy::DropOldest) never drops them: the client was told
    /// exactly which messages follow.
    pub(crate) fn push_replay(&mut self, parts: impl IntoIterator<Item = Chunk>) {
        let mut parts = parts.into_iter().peekable();
        if parts.peek().is_none() {
            return;
        }
        self.replays += 1;
        while let Some(chunk) = parts.next() {
            self.cost += chunk.cost();
            self.replay_cost += chunk.cost();
            let last = parts.peek().is_none();
            self.entries.push_back(Entry::Replay(chunk, last));
        }
    }

    /// Drops everything but a partly written front entry (it must be finished, or the
    /// peer gets a torn frame), for a client that is cut off.
    #[cfg(any(feature = "websocket", test))]
    pub(crate) fn truncate(&mut self) {
        let keep = usize::from(self.offset > 0);
        for entry in &self.entries.split_off(keep) {
            self.forget(entry);
        }
    }

    /// Writes as much as `conn` takes, many entries per `writev`, until the queue is empty
    /// (`Ok`) or the socket would block (`WouldBlock`). Also returns how many bytes were
    /// written; `tally` counts bytes and whole frames.
    pub(crate) fn write_to(
        &mut self,
        conn: &mut Conn,
        tally: &mut Tally,
    ) -> (usize, io::Result<()>) {
        let mut total = 0;
        while !self.entries.is_empty() {
            // A short queue (the usual case below saturation) needs no big slice array.
            let result = if self.entries.len() <= SHORT_IOV {
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
        if self.entries.capacity() > KEEP_CHUNKS {
            self.entries.shrink_to(KEEP_CHUNKS);
        }
        (total, Ok(()))
    }

    /// One `writev` of up to `N` entries from the front of the queue.
    fn write_gathered<const N: usize>(&self, conn: &mut Conn) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); N];
        let mut n = 0;
        for (slot, entry) in iov.iter_mut().zip(&self.entries) {
            let start = if n == 0 { self.offset } else { 0 };
            *slot = IoSlice::new(&entry.bytes()[start..]);
            n += 1;
        }
        conn.write_vectored(&iov[..n])
    }

    /// Retires `written` bytes from the front of the queue.
    fn advance(&mut self, mut written: usize, tally: &mut Tally) {
        tally.bytes_out += written as u64;
        while let Some(front) = self.entries.front() {
            let done = front.frames_before(self.offset);
            let left = front.bytes().len() - self.offset;
            if written < left {
                self.offset += written;
                tally.frames_out += front.frames_before(self.offset) - done;
                return;
            }
            written -= left;
            self.offset = 0;
            tally.frames_out += front.frames() - done;
            if let Some(front) = self.entries.pop_front() {
                self.forget(&front);
            }
        }
    }

    /// What is still queued: (whole or partly written frames, bytes not yet written).
    pub(crate) fn backlog(&self) -> (u64, u64) {
        let written = self
            .entries
            .front()
            .map_or(0, |e| e.frames_before(self.offset));
        let frames = self.entries.iter().map(Entry::frames).sum::<u64>() - written;
        let bytes = self
            .entries
            .iter()
            .map(|e| e.bytes().len() as u64)
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
            batch.push(Framing::Lines, p, Target::All, None);
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
        // One frame with no buffer of ends: whole once wholly written.
        let one = Chunk::frame(Bytes::from_static(b"7 hello\n"));
        assert_eq!(one.frames(), 1);
        assert_eq!(one.frames_before(0), 0);
        assert_eq!(one.frames_before(7), 0);
        assert_eq!(one.frames_before(8), 1);
    }

    #[test]
    fn the_bound_applies_the_policy() {
        let f = frames(&[&[b'x'; COPY_BELOW]]);
        let chunk = Chunk::whole(&f);
        let bound = 2 * chunk.cost();
        let mut q = Queue::default();
        assert_eq!(
            q.enqueue(Piece::Chunk(&chunk), bound, SlowClientPolicy::Disconnect),
            Enqueued::Queued(true)
        );
        assert_eq!(
            q.enqueue(Piece::Chunk(&chunk), bound, SlowClientPolicy::Disconnect),
            Enqueued::Queued(false)
        );
        assert_eq!(
            q.enqueue(Piece::Chunk(&chunk), bound, SlowClientPolicy::Disconnect),
            Enqueued::Full
        );
        assert_eq!(
            q.enqueue(Piece::Chunk(&chunk), bound, SlowClientPolicy::DropNewest),
            Enqueued::Dropped(1)
        );
        assert_eq!(
            q.enqueue(Piece::Chunk(&chunk), bound, SlowClientPolicy::DropOldest),
            Enqueued::Dropped(1)
        );
        assert_eq!(q.cost(), bound);
        let len = COPY_BELOW as u64 + 1;
        assert_eq!(q.backlog(), (2, 2 * len));
    }

    #[test]
    fn drop_oldest_keeps_protocol_bytes() {
        let (small, big) = (
            frames(&[&[b'x'; COPY_BELOW]]),
            frames(&[&[b'y'; 2 * COPY_BELOW]]),
        );
        let chunk = Chunk::whole(&small);
        let control = Chunk::raw(Bytes::from_static(b"#resumed * 1 2 3\n"));
        let bound = 2 * chunk.cost() + 2 * control.cost();
        let mut q = Queue::default();
        q.push_unbounded(control.clone());
        for _ in 0..2 {
            let queued = q.enqueue(Piece::Chunk(&chunk), bound, SlowClientPolicy::DropOldest);
            assert!(matches!(queued, Enqueued::Queued(_)));
        }
        q.push_unbounded(control.clone());
        // The big one needs the room of both messages: they go, the control messages stay,
        // in order.
        assert_eq!(
            q.enqueue(
                Piece::Chunk(&Chunk::whole(&big)),
                bound,
                SlowClientPolicy::DropOldest
            ),
            Enqueued::Dropped(2)
        );
        let kinds: Vec<u64> = q.entries.iter().map(Entry::frames).collect();
        assert_eq!(kinds, vec![0, 0, 1]);
    }

    #[test]
    fn drop_oldest_keeps_replays_and_counts_them_until_written() {
        let (small, replay) = (
            frames(&[&[b'x'; COPY_BELOW]]),
            frames(&[b"1 a", b"2 b", b"3 c"]),
        );
        let chunk = Chunk::whole(&small);
        let bound = 3 * chunk.cost();
        let mut q = Queue::default();
        q.push_replay([
            Chunk::whole(&replay),
            Chunk::frame(Bytes::from_static(b"4 d\n")),
        ]);
        assert_eq!(q.replays(), 1);
        for _ in 0..4 {
            q.enqueue(Piece::Chunk(&chunk), bound, SlowClientPolicy::DropOldest);
        }
        // Messages went to make room; the replay did not.
        assert!(matches!(q.entries.front(), Some(Entry::Replay(_, false))));
        assert!(matches!(q.entries.get(1), Some(Entry::Replay(_, true))));
        assert_eq!(q.replays(), 1);
        assert_eq!(
            q.live_cost(),
            q.cost() - Chunk::whole(&replay).cost() - 4 - CHUNK_OVERHEAD
        );
        q.truncate();
        assert_eq!((q.replays(), q.cost(), q.live_cost()), (0, 0, 0));
    }

    #[test]
    fn an_empty_queue_takes_a_chunk_over_the_bound() {
        let f = frames(&[&[b'x'; 100]]);
        let mut q = Queue::default();
        assert_eq!(
            q.enqueue(
                Piece::Chunk(&Chunk::whole(&f)),
                10,
                SlowClientPolicy::Disconnect
            ),
            Enqueued::Queued(true)
        );
    }

    #[test]
    fn small_chunks_are_copied_into_one_entry_and_counted_exactly() {
        let f = frames(&[b"a", b"bb", b"ccc", &[b'x'; 2 * COPY_BELOW]]);
        let mut q = Queue::default();
        let policy = SlowClientPolicy::Disconnect;
        // Three one-frame cuts, as three topic runs would give a member: one entry.
        for i in 0..3 {
            let queued = q.enqueue(Piece::Chunk(&Chunk::new(&f, i..i + 1)), usize::MAX, policy);
            assert_eq!(queued, Enqueued::Queued(i == 0));
        }
        // A protocol message that is no frame, then a large chunk: entries of their own;
        // a small one after them starts a new owned buffer.
        q.push_unbounded(Chunk::raw(Bytes::from_static(b"#ctl\n")));
        q.enqueue(Piece::Chunk(&Chunk::new(&f, 3..4)), usize::MAX, policy);
        q.enqueue(Piece::Chunk(&Chunk::new(&f, 0..1)), usize::MAX, policy);
        let kinds: Vec<(bool, u64)> = q
            .entries
            .iter()
            .map(|e| (matches!(e, Entry::Owned(_)), e.frames()))
            .collect();
        assert_eq!(kinds, [(true, 3), (false, 0), (false, 1), (true, 1)]);
        assert_eq!(q.entries[0].bytes(), b"a\nbb\nccc\n");
        // The cost is each owned buffer's capacity, and each shared chunk's bytes, plus
        // the overhead of every entry.
        let want = 2 * (OWNED_FIRST + CHUNK_OVERHEAD)
            + (5 + CHUNK_OVERHEAD)
            + 2 * COPY_BELOW
            + 1
            + CHUNK_OVERHEAD;
        assert_eq!(q.cost(), want);
        // Partial writes count whole frames only.
        let mut tally = Tally::default();
        q.advance(3, &mut tally); // "a\nb"
        assert_eq!(tally.frames_out, 1);
        q.advance(6, &mut tally); // "b\nccc\n": the first entry is done
        assert_eq!(tally.frames_out, 3);
        assert_eq!(q.entries.len(), 3);
        assert_eq!(q.backlog(), (2, 5 + 2 * COPY_BELOW as u64 + 1 + 2));
    }

    #[test]
    fn an_owned_buffer_grows_to_its_limit_within_the_bound() {
        let f = frames(&[&[b'z'; 99]]); // 100 bytes framed
        let mut q = Queue::default();
        let policy = SlowClientPolicy::Disconnect;
        let mut n = 0;
        while q.cost() < OWNED_MAX {
            assert!(matches!(
                q.enqueue(Piece::Chunk(&Chunk::whole(&f)), usize::MAX, policy),
                Enqueued::Queued(_)
            ));
            n += 1;
        }
        // Full owned buffers, each at most OWNED_MAX, hold every frame.
        assert!(q.entries.iter().all(|e| e.bytes().len() <= OWNED_MAX));
        assert_eq!(q.backlog(), (n, 100 * n));
        // The bound sees a buffer's growth before it happens.
        let bound = q.cost();
        let mut full = Queue::default();
        full.enqueue(Piece::Chunk(&Chunk::whole(&f)), bound, policy);
        while !full.is_over(Piece::Chunk(&Chunk::whole(&f)), bound) {
            full.enqueue(Piece::Chunk(&Chunk::whole(&f)), bound, policy);
        }
        assert!(full.cost() <= bound);
        assert_eq!(
            full.enqueue(Piece::Chunk(&Chunk::whole(&f)), bound, policy),
            Enqueued::Full
        );
    }

    #[test]
    fn drop_oldest_drops_owned_buffers_whole() {
        let small = frames(&[&[b'x'; 99]]);
        let big = frames(&[&[b'y'; 4 * COPY_BELOW]]);
        let mut q = Queue::default();
        let policy = SlowClientPolicy::DropOldest;
        for _ in 0..5 {
            q.enqueue(Piece::Chunk(&Chunk::whole(&small)), usize::MAX, policy);
        }
        let bound = q.cost() + 100;
        assert_eq!(
            q.enqueue(Piece::Chunk(&Chunk::whole(&big)), bound, policy),
            Enqueued::Dropped(5)
        );
        assert_eq!(q.backlog(), (1, 4 * COPY_BELOW as u64 + 1));
    }
}
