//! What the hub tells its host: client ids, events, disconnect reasons and subscriptions.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{fence, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, TryRecvError};

use crate::hub::Shared;

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
    /// [`SlowClientPolicy::Disconnect`](crate::SlowClientPolicy::Disconnect).
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
/// them, then exactly one `Disconnected`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A client connected and will receive broadcasts from now on.
    Connected {
        /// The new client.
        client: ClientId,
        /// The client's address as the listener saw it.
        addr: SocketAddr,
    },
    /// A client sent one complete frame.
    Message {
        /// Who sent it.
        client: ClientId,
        /// The frame's payload, without its delimiter or length prefix. Any bytes,
        /// not necessarily UTF-8.
        payload: Bytes,
    },
    /// A client left; it receives nothing more and its id will not come back.
    Disconnected {
        /// The client that left.
        client: ClientId,
        /// Why it left.
        reason: DisconnectReason,
    },
}

/// A receiver of every [`Event`] of one hub, made by [`Hub::subscribe`](crate::Hub::subscribe).
///
/// Each subscription has its own bounded queue
/// ([`event_capacity`](crate::HubBuilder::event_capacity)). While any subscription's queue is
/// full the hub stops reading from clients and stops accepting new ones, so TCP flow
/// control pushes back on the senders: nothing is dropped and memory stays bounded. Drain
/// your subscriptions, or drop the ones you no longer need.
///
/// The stream ends (iteration stops, [`recv`](Self::recv) returns `Err`) once the hub has
/// shut down and every queued event has been received.
pub struct Subscription {
    rx: Receiver<Event>,
    shared: Arc<Shared>,
}

impl Subscription {
    pub(crate) fn new(rx: Receiver<Event>, shared: Arc<Shared>) -> Self {
        Subscription { rx, shared }
    }

    /// Blocks until the next event, or returns `Err` once the hub is gone and the queue is
    /// empty.
    pub fn recv(&self) -> Result<Event, RecvError> {
        let event = self.rx.recv();
        self.after_recv();
        event
    }

    /// Returns the next event if one is queued, without blocking.
    pub fn try_recv(&self) -> Result<Event, TryRecvError> {
        let event = self.rx.try_recv();
        self.after_recv();
        event
    }

    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let event = self.rx.recv_timeout(timeout);
        self.after_recv();
        event
    }

    /// The number of events queued for this subscription.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no event is queued for this subscription.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// A blocking iterator over events that ends when the hub is gone.
    pub fn iter(&self) -> Iter<'_> {
        Iter { sub: self }
    }

    /// Once this queue has half drained, wakes a dispatcher that paused for it. The fence
    /// pairs with the dispatcher's in `update_paused`: either it sees the room made here, or
    /// this sees its flag.
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
            .field("queued", &self.rx.len())
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
