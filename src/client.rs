//! One connection as the dispatcher sees it: its socket, where it is in its life, its
//! bounded outbound queue, its partial inbound frame and its timers.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dispatcher::flow::Flow;
use crate::queue::Queue;
use crate::stats::Tally;
use crate::topics::TopicId;
use crate::transport::Conn;
use crate::wire::Wire;
use crate::{ClientId, Transport};

/// Where a connection is in its life. A deadline of `None` is one too far away to matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepted, but not yet a client: the TLS handshake or the authentication frame is
    /// due by the deadline. Gets no broadcasts; subscribers have not heard of it.
    Handshake(Option<Instant>),
    /// A client: gets broadcasts, its frames are delivered.
    Live,
    /// Has left (subscribers were told); only its queue is still written, until the
    /// deadline. Its input is discarded.
    Closing(Option<Instant>),
    /// Refused before it became a client (a WebSocket upgrade turned down): only its HTTP
    /// answer is still written, until the deadline. Subscribers never heard of it.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    Refusing(Option<Instant>),
}

/// A connection. Owned by the dispatcher thread alone.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: ClientId,
    pub(crate) addr: SocketAddr,
    pub(crate) conn: Conn,
    /// What its listener speaks.
    pub(crate) transport: Transport,
    pub(crate) phase: Phase,
    pub(crate) queue: Queue,
    /// Edge-triggered readiness: `false` once a write returned `WouldBlock`.
    pub(crate) writable: bool,
    /// The client is in the dispatcher's list of clients to flush.
    pub(crate) dirty: bool,
    /// The client is in the dispatcher's list of clients that may have unread input.
    pub(crate) read_pending: bool,
    /// Received bytes that do not yet make a whole frame, or whole frames not yet handed
    /// on because subscribers are full. Empty (no allocation) whenever it holds nothing.
    pub(crate) rbuf: Vec<u8>,
    /// How much of `rbuf` is known to hold no frame end (see `wire::framed::decode`).
    pub(crate) scanned: usize,
    pub(crate) dropped: Arc<AtomicU64>,
    /// When the client last sent anything (the dispatcher's round time).
    pub(crate) last_read: Instant,
    /// When the hub last sent it a heartbeat ping.
    pub(crate) last_ping: Instant,
    /// Since when its queue has been waiting on a full socket without progress.
    pub(crate) stalled_since: Option<Instant>,
    /// Its standing in flow control.
    pub(crate) flow: Flow,
    /// The topics it is in, as the dispatcher applied the joins and leaves, each with the
    /// number its live messages start after (its `#joined` position), so that a resume
    /// without `<next>` replays up to there and never a message it had live.
    pub(crate) topics: Vec<(TopicId, u64)>,
    /// Its own joins and leaves applied ahead of host commands decided before them (see
    /// `Dispatcher::host_topic_op`); empty unless a `Hub::join` or `Hub::leave` is in
    /// flight while the client changes the same topic itself.
    pub(crate) topic_fences: Vec<TopicFence>,
    /// With the protocol on: the hub-wide stream's number when it connected (it gets the
    /// messages after it live; a resume replays up to it).
    pub(crate) hub_start: u64,
    /// While leaving: the peer sent more after it began to leave (discarded).
    pub(crate) sent_while_closing: bool,
    /// While leaving, its queue written: the hub has half-closed and waits, discarding
    /// input, for the peer's end of stream (see `Dispatcher::finish_closing`).
    pub(crate) lingering: bool,
    /// Its wire's state once its opening was answered (a WebSocket client's decoder): a
    /// few bytes while idle.
    #[cfg(feature = "websocket")]
    pub(crate) session: Option<Box<crate::wire::Session>>,
}

impl Client {
    pub(crate) fn new(
        id: ClientId,
        addr: SocketAddr,
        conn: Conn,
        transport: Transport,
        phase: Phase,
        now: Instant,
    ) -> Self {
        Client {
            id,
            addr,
            conn,
            transport,
            phase,
            queue: Queue::default(),
            writable: true,
            dirty: false,
            read_pending: false,
            rbuf: Vec::new(),
            scanned: 0,
            dropped: Arc::new(AtomicU64::new(0)),
            last_read: now,
            last_ping: now,
            stalled_since: None,
            flow: Flow::new(now),
            topics: Vec::new(),
            topic_fences: Vec::new(),
            sent_while_closing: false,
            lingering: false,
            hub_start: 0,
            #[cfg(feature = "websocket")]
            session: None,
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// Whether it is only writing out before it is closed (its input is discarded).
    pub(crate) fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing(_) | Phase::Refusing(_))
    }

    /// How its messages are framed.
    pub(crate) fn wire(&self) -> Wire {
        Wire::of(self.transport)
    }

    /// Whether anything waits to be written: queued frames, or bytes the transport holds.
    pub(crate) fn has_output(&self) -> bool {
        !self.queue.is_empty() || self.conn.has_buffered_output()
    }

    /// Whether writes have made no progress for at least `grace`.
    pub(crate) fn is_stalled_for(&self, now: Instant, grace: Duration) -> bool {
        self.stalled_since
            .is_some_and(|since| now.saturating_duration_since(since) >= grace)
    }

    /// Writes as much of the queue as the socket takes. `now` dates a stall, for
    /// `write_timeout` and flow control.
    pub(crate) fn flush(&mut self, tally: &mut Tally, now: Instant) -> io::Result<()> {
        let (written, result) = self.queue.write_to(&mut self.conn, tally);
        if written > 0 {
            self.stalled_since = None;
            self.flow.progress();
        }
        match result.and_then(|()| self.conn.flush()) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                self.stalled_since.get_or_insert(now);
                Ok(())
            }
            other => other,
        }
    }

    /// Drops a buffer that holds nothing, so idle clients hold no memory.
    pub(crate) fn release_rbuf(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            self.rbuf = Vec::new();
            self.scanned = 0;
        }
    }
}

/// A client's own join or leave of `topic`, numbered `op`, decided while the host's
/// decisions up to `host_before` were not all applied yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicFence {
    pub(crate) topic: TopicId,
    pub(crate) op: u64,
    pub(crate) host_before: u64,
}
