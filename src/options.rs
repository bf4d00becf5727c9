//! The public option types the builder takes: framing, policies, and what the host's
//! closures are given and return.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// How messages are delimited on the wire, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Framing {
    /// Newline-delimited lines, the default: works with `nc` and `telnet`.
    ///
    /// Inbound, a frame ends at `\n`; the `\n` and one `\r` before it are removed from the
    /// payload, so `\r\n` clients work too. Outbound, a `\n` is appended unless the message
    /// already ends with one. A message with `\n` inside it reaches clients as several lines.
    #[default]
    Lines,
    /// A 4-byte big-endian length, then that many payload bytes.
    LengthPrefixed,
    /// No framing: each read from a client is one message (at most
    /// [`max_frame`](crate::HubBuilder::max_frame) bytes), and messages are written as they
    /// are.
    Raw,
}

/// What happens when a client's outbound queue is full because it reads too slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SlowClientPolicy {
    /// Disconnect the client with [`DisconnectReason::Slow`](crate::DisconnectReason::Slow),
    /// the default: a client that cannot keep up would otherwise get a stream with holes.
    #[default]
    Disconnect,
    /// Drop the oldest queued messages (never one already partly written) to make room.
    DropOldest,
    /// Drop the new message for this client and keep what is queued.
    DropNewest,
}

/// Whether messages from clients are re-broadcast to the other clients, as the tutorial
/// chat server did. Subscribers get [`Event::Message`](crate::Event::Message) either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Relay {
    /// Messages from clients only reach subscribers (the default).
    #[default]
    Off,
    /// Each message from a client is broadcast to every client, its sender included.
    All,
    /// Each message from a client is broadcast to every client except its sender.
    Others,
}

/// What an [authenticator](crate::HubBuilder::authenticate) decides about a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// Let the connection in as a client.
    Accept,
    /// Let it in under this name, shown in [`ClientInfo::name`](crate::ClientInfo::name).
    AcceptAs(String),
    /// Close it. It never appears as [`Event::Connected`](crate::Event::Connected) and
    /// is counted in [`Stats::rejected`](crate::Stats::rejected).
    Reject,
}

/// What an [authenticator](crate::HubBuilder::authenticate) is shown of a new connection.
///
/// Passed by reference and valid only during the call. More of the connection (for
/// example a WebSocket upgrade request) may be shown in later versions.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    pub(crate) addr: SocketAddr,
    pub(crate) frame: Option<&'a [u8]>,
}

impl AuthRequest<'_> {
    /// The peer's address, as the listener saw it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection's first frame (its payload, without framing), which is its
    /// authentication frame and is not delivered as a message. Always `Some` for
    /// connections that authenticate with a frame, as every TCP and TLS connection does.
    pub fn frame(&self) -> Option<&[u8]> {
        self.frame
    }
}

/// The host's decision functions, shared with the dispatcher thread.
pub(crate) type AcceptFilter = dyn Fn(SocketAddr) -> bool + Send + Sync;
pub(crate) type Authenticator = dyn Fn(&AuthRequest<'_>) -> Auth + Send + Sync;

/// A host closure, printable in `Debug` output.
pub(crate) struct Callback<F: ?Sized>(pub(crate) Arc<F>);

impl<F: ?Sized> Clone for Callback<F> {
    fn clone(&self) -> Self {
        Callback(Arc::clone(&self.0))
    }
}

impl<F: ?Sized> fmt::Debug for Callback<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<closure>")
    }
}
