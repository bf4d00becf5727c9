//! The host's closures the dispatcher runs (accept filter, authenticator, topic check), what
//! they are shown and what they answer.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::Transport;

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
/// Passed by reference and valid only during the call.
///
/// A TCP or TLS connection is shown with its first frame; a WebSocket connection with its
/// upgrade request (path, query string, headers such as `Cookie` and `Authorization`),
/// before it is answered: browsers cannot send custom headers on a WebSocket, so they carry
/// credentials in a cookie or the query string.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    pub(crate) addr: SocketAddr,
    /// What its listener speaks.
    pub(crate) transport: Transport,
    pub(crate) frame: Option<&'a [u8]>,
    #[cfg(feature = "websocket")]
    pub(crate) upgrade: Option<&'a crate::wire::Upgrade>,
}

impl AuthRequest<'_> {
    /// The peer's address, as the listener saw it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection's first frame (its payload, without framing), which is its
    /// authentication frame and is not delivered as a message. `Some` for TCP and TLS
    /// connections; `None` for WebSocket connections, which are shown their upgrade request
    /// instead.
    pub fn frame(&self) -> Option<&[u8]> {
        self.frame
    }

    /// Whether this is a WebSocket upgrade request.
    pub fn is_websocket(&self) -> bool {
        self.transport.is_websocket()
    }

    /// The path of a WebSocket upgrade request, without its query string (`"/chat"`).
    pub fn path(&self) -> Option<&str> {
        #[cfg(feature = "websocket")]
        return self.upgrade.map(|u| u.path());
        #[cfg(not(feature = "websocket"))]
        None
    }

    /// The query string of a WebSocket upgrade request, without the `?`.
    pub fn query(&self) -> Option<&str> {
        #[cfg(feature = "websocket")]
        return self.upgrade.and_then(|u| u.query());
        #[cfg(not(feature = "websocket"))]
        None
    }

    /// A header of a WebSocket upgrade request (its first value; names are compared without
    /// regard to case), such as `"cookie"` or `"authorization"`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        #[cfg(feature = "websocket")]
        return self.upgrade.and_then(|u| u.header(name));
        #[cfg(not(feature = "websocket"))]
        {
            let _ = name;
            None
        }
    }
}

/// A client's request to join or leave a topic, shown to the host's
/// [`client_topics`](crate::HubBuilder::client_topics) closure.
#[derive(Debug)]
pub struct TopicRequest<'a> {
    pub(crate) client: crate::ClientId,
    pub(crate) topic: &'a str,
    pub(crate) join: bool,
}

impl TopicRequest<'_> {
    /// The client asking.
    pub fn client(&self) -> crate::ClientId {
        self.client
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        self.topic
    }

    /// Whether it asks to join (`true`) or to leave.
    pub fn is_join(&self) -> bool {
        self.join
    }
}

/// The host's decision functions, shared with the dispatcher thread.
pub(crate) type AcceptFilter = dyn Fn(SocketAddr) -> bool + Send + Sync;
pub(crate) type Authenticator = dyn Fn(&AuthRequest<'_>) -> Auth + Send + Sync;
pub(crate) type TopicCheck = dyn Fn(&TopicRequest<'_>) -> bool + Send + Sync;

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
