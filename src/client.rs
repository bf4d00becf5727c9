//! One client connection as the dispatcher sees it: its socket, its bounded outbound queue of
//! shared frames, and its partial inbound frame.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::Tally;
use crate::transport::Conn;
use crate::{ClientId, SlowClientPolicy};
use bytes::{Bytes, BytesMut};

/// What each queued chunk costs on top of its bytes, so the bound also holds for many tiny
/// frames: the queue slot plus the shared buffer's header, rounded up.
pub(crate) const CHUNK_OVERHEAD: usize = 64;

/// The most slices one `writev` takes; Linux's `IOV_MAX` is 1024.
const MAX_IOV: usize = 128;
/// Slices for a short queue.
const SHORT_IOV: usize = 4;

/// One or more whole frames, shared by every queue it is in.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub(crate) bytes: Bytes,
    ends: Ends,
}

/// Where the frames of a chunk end, so deliveries and losses are counted per frame even
/// when a chunk of many frames is cut short.
#[derive(Debug, Clone)]
enum Ends {
    One,
    /// The end offset of each frame, shared like the bytes.
    Many(Arc<[u32]>),
}

impl Chunk {
    /// A chunk of one frame.
    pub(crate) fn one(frame: Bytes) -> Self {
        Chunk {
            bytes: frame,
            ends: Ends::One,
        }
    }

    /// A chunk of several frames that end at `ends` (ascending, the last at `bytes.len()`).
    pub(crate) fn many(bytes: Bytes, ends: &[u32]) -> Self {
        match ends {
            [_] => Chunk::one(bytes),
            _ => Chunk {
                bytes,
                ends: Ends::Many(ends.into()),
            },
        }
    }

    /// How many frames the chunk holds.
    pub(crate) fn frames(&self) -> u32 {
        match &self.ends {
            Ends::One => 1,
            Ends::Many(ends) => ends.len() as u32,
        }
    }

    /// How many frames lie wholly within the first `offset` bytes.
    fn frames_before(&self, offset: usize) -> u32 {
        match &self.ends {
            Ends::One => u32::from(offset >= self.bytes.len()),
            Ends::Many(ends) => ends.partition_point(|&end| end as usize <= offset) as u32,
        }
    }

    fn cost(&self) -> usize {
        self.bytes.len() + CHUNK_OVERHEAD
    }
}

/// What [`Client::enqueue`] did with a chunk.
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

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepted, but not yet a client: the TLS handshake or the authentication frame is
    /// due by the deadline. Gets no broadcasts; subscribers have not heard of it.
    Handshake(Instant),
    /// A client: gets broadcasts, its frames are delivered.
    Live,
    /// Has left (subscribers were told); only its queue is still written, until the
    /// deadline. Its input is discarded.
    Closing(Instant),
}

/// A connection. Owned by the dispatcher thread alone.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: ClientId,
    pub(crate) addr: SocketAddr,
    pub(crate) conn: Conn,
    pub(crate) phase: Phase,
    queue: VecDeque<Chunk>,
    /// Bytes of `queue[0]` already written.
    offset: usize,
    /// The queue's cost: chunk bytes plus [`CHUNK_OVERHEAD`] each.
    queued: usize,
    /// Edge-triggered readiness: `false` once a write returned `WouldBlock`.
    pub(crate) writable: bool,
    /// The client is in the dispatcher's list of clients to flush.
    pub(crate) dirty: bool,
    /// The client is in the dispatcher's list of clients that may have unread input.
    pub(crate) read_pending: bool,
    /// Received bytes not yet cut into frames.
    pub(crate) rbuf: BytesMut,
    /// How much of `rbuf` is known to hold no frame end (see `codec::decode`).
    pub(crate) scanned: usize,
    pub(crate) dropped: Arc<AtomicU64>,
    /// When the client last sent anything (the dispatcher's round time).
    pub(crate) last_read: Instant,
    /// When the hub last sent it a heartbeat ping.
    pub(crate) last_ping: Instant,
    /// Since when its queue has been waiting on a full socket without progress.
    pub(crate) stalled_since: Option<Instant>,
    /// Since when its queue has been over half its bound, if it is (see
    /// `Dispatcher::busy_clients`).
    pub(crate) high_since: Option<Instant>,
}

impl Client {
    pub(crate) fn new(
        id: ClientId,
        addr: SocketAddr,
        conn: Conn,
        phase: Phase,
        now: Instant,
    ) -> Self {
        Client {
            id,
            addr,
            conn,
            phase,
            queue: VecDeque::new(),
            offset: 0,
            queued: 0,
            writable: true,
            dirty: false,
            read_pending: false,
            rbuf: BytesMut::new(),
            scanned: 0,
            dropped: Arc::new(AtomicU64::new(0)),
            last_read: now,
            last_ping: now,
            stalled_since: None,
            high_since: None,
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    pub(crate) fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing(_))
    }

    /// Whether anything waits to be written: queued frames, or bytes the transport holds.
    pub(crate) fn has_output(&self) -> bool {
        !self.queue.is_empty() || self.conn.has_buffered_output()
    }

    /// The queue's cost: chunk bytes plus their bookkeeping.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Whether writes have made no progress for at least `grace`.
    pub(crate) fn is_stalled_for(&self, now: Instant, grace: Duration) -> bool {
        self.stalled_since
            .is_some_and(|since| now.saturating_duration_since(since) >= grace)
    }

    /// Whether queueing `chunk` would pass `bound` (an empty queue takes any chunk).
    pub(crate) fn is_over(&self, chunk: &Chunk, bound: usize) -> bool {
        !self.queue.is_empty() && self.queued + chunk.cost() > bound
    }

    /// Adds `chunk` to the queue, applying `policy` if that would pass `bound`.
    ///
    /// An empty queue always takes the chunk, so one message up to the bound (which
    /// `Hub::broadcast` enforces) always fits.
    pub(crate) fn enqueue(
        &mut self,
        chunk: &Chunk,
        bound: usize,
        policy: SlowClientPolicy,
    ) -> Enqueued {
        let was_empty = self.queue.is_empty();
        if !self.is_over(chunk, bound) {
            self.push(chunk);
            return Enqueued::Queued(was_empty);
        }
        match policy {
            SlowClientPolicy::Disconnect => Enqueued::Full,
            SlowClientPolicy::DropNewest => self.count_drops(u64::from(chunk.frames())),
            SlowClientPolicy::DropOldest => {
                // Never drop the front chunk once part of it is written: the peer would get
                // a torn frame.
                let keep = usize::from(self.offset > 0);
                let mut dropped = 0;
                while self.queue.len() > keep && self.queued + chunk.cost() > bound {
                    if let Some(old) = self.queue.remove(keep) {
                        self.queued -= old.cost();
                        dropped += u64::from(old.frames());
                    }
                }
                self.push(chunk);
                self.count_drops(dropped)
            }
        }
    }

    fn push(&mut self, chunk: &Chunk) {
        self.queued += chunk.cost();
        self.queue.push_back(chunk.clone());
    }

    fn count_drops(&self, frames: u64) -> Enqueued {
        self.dropped.fetch_add(frames, Relaxed);
        Enqueued::Dropped(frames)
    }

    /// Writes as much of the queue as the socket takes, many frames per `writev`, until the
    /// queue is empty or the socket would block. `now` dates a stall, for `write_timeout`.
    pub(crate) fn flush(&mut self, tally: &mut Tally, now: Instant) -> io::Result<()> {
        let result = self.write_queue(tally);
        let result = result.and_then(|()| self.conn.flush());
        match result {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                self.stalled_since.get_or_insert(now);
                Ok(())
            }
            other => other,
        }
    }

    fn write_queue(&mut self, tally: &mut Tally) -> io::Result<()> {
        while !self.queue.is_empty() {
            // A short queue (the usual case below saturation) needs no big slice array.
            let result = if self.queue.len() <= SHORT_IOV {
                self.write_gathered::<SHORT_IOV>()
            } else {
                self.write_gathered::<MAX_IOV>()
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.stalled_since = None;
                    self.advance(written, tally);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// One `writev` of up to `N` chunks from the front of the queue.
    fn write_gathered<const N: usize>(&mut self) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); N];
        let mut n = 0;
        for (slot, chunk) in iov.iter_mut().zip(&self.queue) {
            let start = if n == 0 { self.offset } else { 0 };
            *slot = IoSlice::new(&chunk.bytes[start..]);
            n += 1;
        }
        self.conn.write_vectored(&iov[..n])
    }

    /// Retires `written` bytes from the front of the queue.
    fn advance(&mut self, mut written: usize, tally: &mut Tally) {
        tally.bytes_out += written as u64;
        while let Some(front) = self.queue.front() {
            let done = front.frames_before(self.offset);
            let left = front.bytes.len() - self.offset;
            if written < left {
                self.offset += written;
                tally.frames_out += u64::from(front.frames_before(self.offset) - done);
                return;
            }
            written -= left;
            self.offset = 0;
            self.queued -= front.cost();
            tally.frames_out += u64::from(front.frames() - done);
            self.queue.pop_front();
        }
    }

    /// What is still queued: (whole or partly written frames, bytes not yet written).
    pub(crate) fn backlog(&self) -> (u64, u64) {
        let written = self
            .queue
            .front()
            .map_or(0, |c| c.frames_before(self.offset));
        let frames = self
            .queue
            .iter()
            .map(|c| u64::from(c.frames()))
            .sum::<u64>()
            - u64::from(written);
        let bytes =
            self.queue.iter().map(|c| c.bytes.len() as u64).sum::<u64>() - self.offset as u64;
        (frames, bytes)
    }
}
