//! One connection as the dispatcher sees it: its socket, where it is in its life, its
//! bounded outbound queue, its partial inbound frame and its timers.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue::Queue;
use crate::stats::Tally;
use crate::topics::order::Fences;
use crate::topics::TopicId;
use crate::transport::Conn;
use crate::wire::Wire;
use crate::{ClientId, Transport};

mod flow;
pub(crate) mod rate;

use flow::Flow;

/// Where a connection is in its life, with what only that part of its life needs. A
/// deadline of `None` is one too far away to matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepted, but not yet a client: the TLS handshake, the WebSocket upgrade or the
    /// authentication frame is due by the deadline. Gets no broadcasts; subscribers have
    /// not heard of it.
    Handshake(Option<Instant>),
    /// A client: gets broadcasts, its frames are delivered.
    Live,
    /// Only its queue is still written, until the deadline; its input is discarded.
    Closing(Closing),
}

/// A connection being closed (see `Dispatcher::finish_closing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closing {
    /// Closed by then, written out or not.
    pub(crate) deadline: Option<Instant>,
    /// Refused before it became a client (a WebSocket upgrade turned down): what it is
    /// written is an HTTP answer, and subscribers never heard of it. Otherwise it was a
    /// client, and has left (subscribers were told).
    pub(crate) refused: bool,
    /// The peer sent more after it began to close (discarded).
    pub(crate) peer_sent: bool,
    /// Its queue written, the hub has half-closed and waits, discarding input, for the
    /// peer's end of stream.
    pub(crate) lingering: bool,
}

/// What the end of a connection's input means for it (see [`Phase::ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It never became a client: it is dropped (a failed handshake).
    Unaccepted,
    /// A client: it leaves.
    Leave,
    /// Closing already: closed now.
    Close,
    /// Closing already, and its peer has stopped sending: closed once its queue is
    /// written, with no more lingering.
    Drained,
}

impl Phase {
    /// What the end of the connection's input means in this phase: its peer's end of
    /// stream (`error` false), or a socket error.
    pub(crate) fn ended(&mut self, error: bool) -> Ended {
        match self {
            Phase::Handshake(_) => Ended::Unaccepted,
            Phase::Live => Ended::Leave,
            Phase::Closing(_) if error => Ended::Close,
            Phase::Closing(closing) => {
                closing.peer_sent = false;
                closing.lingering = false;
                Ended::Drained
            }
        }
    }
}

/// What to do with a closing connection now (see [`Closing::step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseStep {
    /// Wait: its queue is still being written, or its end of stream is awaited.
    Wait,
    /// Half-close and wait for its end of stream, discarding its input, until the new
    /// deadline.
    Linger(Option<Instant>),
    /// Close the socket.
    Close,
}

/// How long a closing connection that is still sending is waited for, half-closed, after
/// its queue is written: enough for its end of stream to arrive, not enough to cost a slot.
pub(crate) const LINGERING: Duration = Duration::from_secs(1);

impl Closing {
    /// The phase of a connection closing by `deadline`; `refused` if it never became a
    /// client.
    pub(crate) fn phase(deadline: Option<Instant>, refused: bool) -> Phase {
        Phase::Closing(Closing {
            deadline,
            refused,
            peer_sent: false,
            lingering: false,
        })
    }

    /// What to do now with a connection closing so, that `has_output` or not, while the
    /// hub is `shutting_down` or not.
    ///
    /// Once its queue is written, a connection whose peer is still sending is not closed
    /// at once: closing with its input on the way would reset the connection, and could
    /// destroy what the hub wrote last (a close frame) before the peer reads it. It is
    /// half-closed, and waited for until its end of stream, for [`LINGERING`] at most.
    /// A shutdown does not wait for that.
    pub(crate) fn step(&self, now: Instant, has_output: bool, shutting_down: bool) -> CloseStep {
        let in_time = self.deadline.map_or(true, |d| now < d);
        if !in_time {
            return CloseStep::Close;
        }
        if has_output || (self.lingering && !shutting_down) {
            return CloseStep::Wait;
        }
        if self.peer_sent && !self.lingering && !shutting_down {
            let until = now.checked_add(LINGERING);
            return CloseStep::Linger([self.deadline, until].into_iter().flatten().min());
        }
        CloseStep::Close
    }
}

/// A connection. Owned by the dispatcher thread alone.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: ClientId,
    pub(crate) addr: SocketAddr,
    pub(crate) conn: Conn,
    /// What its listener speaks.
    pub(crate) transport: Transport,
    /// How its messages are framed: its listener's wire, until its opening request makes
    /// it an event stream.
    pub(crate) wire: Wire,
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
    /// How much of `rbuf` is known to hold no frame end (see `wire::codec::decode`).
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
    /// Its own joins and leaves applied ahead of host decisions made before them.
    pub(crate) topic_fences: Fences,
    /// With the protocol on: the hub-wide stream's number when it connected (it gets the
    /// messages after it live; a resume replays up to it).
    pub(crate) hub_start: u64,
    /// Its wire's state once its opening was answered (a WebSocket client's decoder): a
    /// few bytes while idle.
    #[cfg(feature = "websocket")]
    pub(crate) session: Option<Box<crate::wire::Session>>,
    /// Its inbound rate limit's allowances, if the hub has one (set when it goes live).
    pub(crate) rate: Option<rate::Bucket>,
    /// Its user key (`Admit::user`), shown to the `client_topics` closure: the registry's
    /// own allocation, shared.
    pub(crate) user: Option<Arc<str>>,
    /// Held back for its rate limit: it is not read until then (the dispatcher's `held`
    /// list wakes it).
    pub(crate) held_until: Option<Instant>,
    /// Under `RateLimitPolicy::Drop`, its last read went over its limit: it is read once a
    /// round, a little at a time (a client whose excess is dropped must not take the
    /// dispatcher from the others by sending as fast as TCP allows).
    pub(crate) dropping: bool,
    /// The mark (`Subscribers::emitted`) of its last message handed to subscribers.
    pub(crate) last_message: u64,
    /// It broke its protocol right behind messages the host has not finished with: it is
    /// read no more, and leaves once the host has (see `Dispatcher::broke_protocol`).
    pub(crate) failing: Option<Failing>,
    /// The index of the listener it came through (`Shared::listeners`), set as it is
    /// accepted.
    pub(crate) listener: usize,
}

/// A client that broke its protocol and waits, still live and unread, for every subscriber
/// to be done with its messages, so that the host's answers to them (`send_to`) reach it
/// before its close frame. Bounded: it leaves at the deadline in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failing {
    /// Its close code and why it leaves.
    pub(crate) code: u16,
    pub(crate) reason: crate::DisconnectReason,
    /// The mark of its last message (`Subscribers::done_with`).
    pub(crate) mark: u64,
    /// It leaves by then whatever the host does.
    pub(crate) deadline: Option<Instant>,
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
            wire: Wire::of(transport),
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
            topic_fences: Fences::default(),
            hub_start: 0,
            #[cfg(feature = "websocket")]
            session: None,
            rate: None,
            user: None,
            held_until: None,
            dropping: false,
            last_message: 0,
            failing: None,
            listener: 0,
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// Whether it is only writing out before it is closed (its input is discarded).
    pub(crate) fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing(_))
    }

    /// How its messages are framed.
    pub(crate) fn wire(&self) -> Wire {
        self.wire
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

#[cfg(test)]
mod tests {
    use super::*;

    fn closing(deadline: Option<Instant>, peer_sent: bool, lingering: bool) -> Closing {
        Closing {
            deadline,
            refused: false,
            peer_sent,
            lingering,
        }
    }

    #[test]
    fn the_end_of_input_means_what_the_phase_says() {
        let now = Instant::now();
        assert_eq!(Phase::Handshake(None).ended(false), Ended::Unaccepted);
        assert_eq!(Phase::Handshake(Some(now)).ended(true), Ended::Unaccepted);
        assert_eq!(Phase::Live.ended(false), Ended::Leave);
        assert_eq!(Phase::Live.ended(true), Ended::Leave);
        let lingering = Phase::Closing(closing(Some(now), true, true));
        // A socket error closes it at once.
        let mut failed = lingering;
        assert_eq!(failed.ended(true), Ended::Close);
        // Its end of stream ends the wait for it: closed once its queue is written.
        let mut ended = lingering;
        assert_eq!(ended.ended(false), Ended::Drained);
        assert_eq!(ended, Phase::Closing(closing(Some(now), false, false)));
    }

    #[test]
    fn a_closing_connection_waits_for_its_queue_then_for_a_sending_peer() {
        let now = Instant::now();
        let soon = now + Duration::from_millis(100);
        let later = now + Duration::from_secs(60);
        // Its queue is still being written: wait, unless the time is up.
        assert_eq!(
            closing(Some(later), false, false).step(now, true, false),
            CloseStep::Wait
        );
        assert_eq!(
            closing(Some(now), false, false).step(now, true, false),
            CloseStep::Close
        );
        // Written, and the peer sent nothing more: close.
        assert_eq!(
            closing(Some(later), false, false).step(now, false, false),
            CloseStep::Close
        );
        assert_eq!(
            closing(None, false, false).step(now, false, false),
            CloseStep::Close
        );
        // Written, but the peer is still sending: linger, for at most LINGERING, and no
        // longer than the deadline.
        assert_eq!(
            closing(Some(later), true, false).step(now, false, false),
            CloseStep::Linger(Some(now + LINGERING))
        );
        assert_eq!(
            closing(Some(soon), true, false).step(now, false, false),
            CloseStep::Linger(Some(soon))
        );
        // Lingering: wait for its end of stream (which clears `lingering`) or the deadline.
        assert_eq!(
            closing(Some(soon), true, true).step(now, false, false),
            CloseStep::Wait
        );
        assert_eq!(
            closing(Some(soon), true, true).step(soon, false, false),
            CloseStep::Close
        );
        // A shutdown does not linger.
        assert_eq!(
            closing(Some(later), true, false).step(now, false, true),
            CloseStep::Close
        );
        assert_eq!(
            closing(Some(later), true, true).step(now, false, true),
            CloseStep::Close
        );
    }
}
