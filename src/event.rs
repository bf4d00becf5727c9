//! What the hub tells its host: client ids, events, disconnect reasons and subscriptions.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{fence, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::Receiver;

use crate::shared::{lock, Shared};

/// Identifies one client connection for the lifetime of its hub.
///
/// Ids are handed out in accept order and never reused, so a stale id can never address a
/// newer client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub(crate) u64);

impl ClientId {
    /// The id as a number, unique within its hub.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a client left the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client closed its side of the connection (end of stream).
    PeerClosed,
    /// The connection was reset or broken by the peer (`ECONNRESET`, `EPIPE`).
    Reset,
    /// The client did not read fast enough: its outbound queue hit its bound under
    /// [`SlowClientPolicy::Disconnect`](crate::SlowClientPolicy::Disconnect), or writes to
    /// it made no progress for [`write_timeout`](crate::HubBuilder::write_timeout).
    Slow,
    /// The client sent a frame longer than [`max_frame`](crate::HubBuilder::max_frame).
    FrameTooLarge,
    /// The hub shut down.
    Shutdown,
    /// The host called [`Hub::disconnect`](crate::Hub::disconnect).
    Kicked,
    /// The client sent nothing for [`idle_timeout`](crate::HubBuilder::idle_timeout).
    Idle,
    /// The client answered no [`heartbeat`](crate::HubBuilder::heartbeat) ping for two
    /// intervals.
    Unresponsive,
    /// The client broke the transport's protocol (for example a corrupt TLS record).
    Protocol,
    /// Any other I/O error on the client's socket.
    Io(io::ErrorKind),
}

impl DisconnectReason {
    /// Every reason without a payload, in the order [`Stats`](crate::Stats) counts them.
    pub(crate) const COUNT: usize = 10;
    /// Their names, in that order.
    pub(crate) const NAMES: [&'static str; Self::COUNT] = [
        "PeerClosed",
        "Reset",
        "Slow",
        "FrameTooLarge",
        "Shutdown",
        "Kicked",
        "Idle",
        "Unresponsive",
        "Protocol",
        "Io",
    ];

    pub(crate) fn index(self) -> usize {
        match self {
            DisconnectReason::PeerClosed => 0,
            DisconnectReason::Reset => 1,
            DisconnectReason::Slow => 2,
            DisconnectReason::FrameTooLarge => 3,
            DisconnectReason::Shutdown => 4,
            DisconnectReason::Kicked => 5,
            DisconnectReason::Idle => 6,
            DisconnectReason::Unresponsive => 7,
            DisconnectReason::Protocol => 8,
            DisconnectReason::Io(_) => 9,
        }
    }

    /// Maps a socket error to the reason a client left because of it.
    pub(crate) fn from_io(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => DisconnectReason::Reset,
            io::ErrorKind::InvalidData => DisconnectReason::Protocol,
            kind => DisconnectReason::Io(kind),
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::PeerClosed => f.write_str("closed by peer"),
            DisconnectReason::Reset => f.write_str("connection reset"),
            DisconnectReason::Slow => f.write_str("too slow to read"),
            DisconnectReason::FrameTooLarge => f.write_str("frame too large"),
            DisconnectReason::Shutdown => f.write_str("hub shut down"),
            DisconnectReason::Kicked => f.write_str("disconnected by host"),
            DisconnectReason::Idle => f.write_str("idle too long"),
            DisconnectReason::Unresponsive => f.write_str("missed heartbeats"),
            DisconnectReason::Protocol => f.write_str("protocol violation"),
            DisconnectReason::Io(kind) => write!(f, "i/o error: {kind}"),
        }
    }
}

/// Something that happened on the hub, delivered to every [`Subscription`].
///
/// For one client the order is always `Connected`, then its `Message`s in the order it sent
/// them, then exactly one `Disconnected`, after which nothing more of it.
///
/// Later versions may add variants, and fields to each variant: match with `..` and a
/// wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A client connected and will receive broadcasts from now on.
    #[non_exhaustive]
    Connected {
        /// The new client.
        client: ClientId,
        /// The client's address as the listener saw it.
        addr: SocketAddr,
    },
    /// A client sent one complete frame.
    #[non_exhaustive]
    Message {
        /// Who sent it.
        client: ClientId,
        /// The frame's payload, without its delimiter or length prefix. Any bytes,
        /// not necessarily UTF-8. A copy of exactly these bytes: holding it pins no other
        /// memory.
        payload: Bytes,
    },
    /// A client left; it receives nothing more and its id will not come back.
    #[non_exhaustive]
    Disconnected {
        /// The client that left.
        client: ClientId,
        /// Why it left.
        reason: DisconnectReason,
    },
}

/// Events a subscription had no room for when the hub stopped: received after the ones
/// in its channel.
#[derive(Debug, Default)]
pub(crate) struct Tail(Mutex<VecDeque<Event>>);

impl Tail {
    pub(crate) fn extend(&self, events: impl IntoIterator<Item = Event>) {
        lock(&self.0).extend(events);
    }

    fn pop(&self) -> Option<Event> {
        lock(&self.0).pop_front()
    }

    fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

/// [`Subscription::recv`] found the subscription ended: the hub has stopped and every event
/// has been received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the hub has stopped and every event has been received")]
pub struct RecvError;

/// Why [`Subscription::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No event is queued now.
    #[error("no event is queued")]
    Empty,
    /// The hub has stopped and every event has been received.
    #[error("the hub has stopped and every event has been received")]
    Closed,
}

/// Why [`Subscription::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No event came within the timeout.
    #[error("no event within the timeout")]
    Timeout,
    /// The hub has stopped and every event has been received.
    #[error("the hub has stopped and every event has been received")]
    Closed,
}

/// A receiver of every [`Event`] of one hub, made by [`Hub::subscribe`](crate::Hub::subscribe).
///
/// Each subscription has its own bounded queue
/// ([`event_capacity`](crate::HubBuilder::event_capacity)). While any subscription's queue is
/// full the hub stops reading from clients and stops accepting new ones, so TCP flow
/// control pushes back on the senders: nothing is dropped and memory stays bounded. Drain
/// your subscriptions, or drop the ones you no longer need: a subscription nobody drains
/// stops the whole hub from reading (a pause over a second is logged at `warn`, and
/// [`Stats::paused`](crate::Stats::paused) shows it).
///
/// The stream ends (iteration stops, [`recv`](Self::recv) returns `Err`) once the hub has
/// stopped — shut down, or [failed](crate::Error::Failed) — and every queued event has been
/// received. Events the queue had no room for when the hub stopped come last; shutting down
/// never waits for a subscriber.
pub struct Subscription {
    rx: Receiver<Event>,
    tail: Arc<Tail>,
    shared: Arc<Shared>,
}

impl Subscription {
    pub(crate) fn new(rx: Receiver<Event>, tail: Arc<Tail>, shared: Arc<Shared>) -> Self {
        Subscription { rx, tail, shared }
    }

    /// Blocks until the next event, or returns `Err` once the hub has stopped and every
    /// event has been received.
    pub fn recv(&self) -> Result<Event, RecvError> {
        let event = self.rx.recv().ok().or_else(|| self.tail.pop());
        self.after_recv();
        event.ok_or(RecvError)
    }

    /// Returns the next event if one is queued, without blocking.
    pub fn try_recv(&self) -> Result<Event, TryRecvError> {
        let event = match self.rx.try_recv() {
            Ok(event) => Ok(event),
            Err(crossbeam_channel::TryRecvError::Empty) => Err(TryRecvError::Empty),
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                self.tail.pop().ok_or(TryRecvError::Closed)
            }
        };
        self.after_recv();
        event
    }

    /// Waits at most `timeout` for the next event. Any timeout is accepted; one too long to
    /// represent waits for ever.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let event = match self.rx.recv_timeout(timeout) {
            Ok(event) => Ok(event),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(RecvTimeoutError::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                self.tail.pop().ok_or(RecvTimeoutError::Closed)
            }
        };
        self.after_recv();
        event
    }

    /// The number of events queued for this subscription.
    pub fn len(&self) -> usize {
        self.rx.len() + self.tail.len()
    }

    /// Whether no event is queued for this subscription.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A blocking iterator over events that ends when the hub has stopped.
    pub fn iter(&self) -> Iter<'_> {
        Iter { sub: self }
    }

    /// Once this queue has half drained, wakes a dispatcher that paused for it. The fence
    /// pairs with the dispatcher's (see `dispatcher::subscribers`): either it sees the room
    /// made here, or this sees its flag.
    fn after_recv(&self) {
        fence(SeqCst);
        if self.shared.is_paused() && self.rx.len() <= self.rx.capacity().unwrap_or(0) / 2 {
            self.shared.wake();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The dispatcher may be paused on this queue: disconnect first, then wake it so it
        // finds the receiver gone.
        drop(std::mem::replace(&mut self.rx, crossbeam_channel::never()));
        fence(SeqCst);
        if self.shared.is_paused() {
            self.shared.wake();
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("queued", &self.len())
            .finish()
    }
}

/// Blocking iterator over a borrowed [`Subscription`].
#[derive(Debug)]
pub struct Iter<'a> {
    sub: &'a Subscription,
}

impl Iterator for Iter<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.sub.recv().ok()
    }
}

/// Blocking iterator that owns its [`Subscription`].
#[derive(Debug)]
pub struct IntoIter {
    sub: Subscription,
}

impl Iterator for IntoIter {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.sub.recv().ok()
    }
}

impl<'a> IntoIterator for &'a Subscription {
    type Item = Event;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Subscription {
    type Item = Event;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter { sub: self }
    }
}
