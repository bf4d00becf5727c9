//! The one error type callers can get back from hubcast.

use std::io;

use crate::ClientId;

/// A specialised `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller of hubcast can get wrong, or what the operating system refused.
///
/// A misbehaving, slow or vanished *client* is never an `Error`: it leaves the hub with an
/// [`Event::Disconnected`](crate::Event::Disconnected) carrying a
/// [`DisconnectReason`](crate::DisconnectReason).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be created, bound or put into listening state.
    #[error("failed to bind {addr}")]
    Bind {
        /// The address that was asked for, as the caller wrote it.
        addr: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A builder setting is out of range; the text says which one and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The hub has been shut down (or is shutting down) and takes no more work.
    #[error("hub is closed")]
    Closed,
    /// The hub's dispatcher thread died — a bug, or its event loop failed — and every
    /// client was dropped. The hub takes no more work; `cause` says what happened (for a
    /// panic, its message).
    #[error("hub failed: {cause}")]
    Failed {
        /// What killed the dispatcher.
        cause: String,
    },
    /// The call would have had to wait, and was made where it must not: from
    /// [`Hub::try_broadcast`](crate::Hub::try_broadcast), or from one of the hub's own
    /// closures (which run on the dispatcher thread). Nothing was sent.
    #[error("the hub cannot take this now: {0}")]
    WouldBlock(WouldBlock),
    /// A topic name is empty, too long ([`max_topic_len`](crate::HubBuilder::max_topic_len))
    /// or holds whitespace or a control character; the text says which.
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    /// Joining would pass a limit: [`max_topics`](crate::HubBuilder::max_topics) or
    /// [`max_topics_per_client`](crate::HubBuilder::max_topics_per_client); the text says
    /// which.
    #[error("topic limit reached: {0}")]
    TopicLimit(String),
    /// No client with this id is connected (it never was, or it has left).
    #[error("unknown client {0}")]
    UnknownClient(ClientId),
    /// The message cannot be framed or cannot fit in a client's outbound queue.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The size of the encoded frame.
        len: usize,
        /// The largest frame this hub accepts for sending.
        max: usize,
    },
    /// The TLS certificate, key or configuration cannot be used (feature `tls`; the variant
    /// exists without it so that matches compile under every feature set).
    #[error("invalid TLS configuration")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Setting up the hub's event loop or thread failed.
    #[error("failed to start the hub")]
    Start(#[source] io::Error),
}

/// Why a call that must not wait could not go through (see [`Error::WouldBlock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WouldBlock {
    /// The dispatcher is [`command_capacity`](crate::HubBuilder::command_capacity) calls
    /// or [`queue_bytes`](crate::HubBuilder::queue_bytes) of frames behind.
    Backlog,
    /// [`flow_control`](crate::HubBuilder::flow_control) is holding host calls back while
    /// a client catches up, and the calls already waiting fill the budget.
    FlowControl,
    /// [`Hub::shutdown`](crate::Hub::shutdown) was called from one of the hub's closures:
    /// the shutdown has begun, but cannot be waited for on the thread that carries it out.
    DispatcherThread,
}

impl std::fmt::Display for WouldBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WouldBlock::Backlog => "the dispatcher is behind",
            WouldBlock::FlowControl => "flow control is holding calls while a client catches up",
            WouldBlock::DispatcherThread => "called from the hub's own dispatcher thread",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_and_small() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert!(
            std::mem::size_of::<Error>() <= 48,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn display_does_not_repeat_the_source() {
        let err = Error::Bind {
            addr: "127.0.0.1:1".into(),
            source: io::Error::new(io::ErrorKind::AddrInUse, "address in use"),
        };
        assert_eq!(err.to_string(), "failed to bind 127.0.0.1:1");
        assert!(std::error::Error::source(&err).is_some());
    }
}
