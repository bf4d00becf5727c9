//! What the hub tells its host: client ids, events and disconnect reasons (plain data).

use std::fmt;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::MessageKind;

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
    /// The client broke the transport's protocol: for example a corrupt TLS record, or a
    /// WebSocket message with a newline on a hub with [`Framing::Lines`](crate::Framing::Lines).
    ///
    /// A WebSocket client that breaks the protocol right behind messages of its own that a
    /// subscription's host has not finished with (it has not come back for more events
    /// since) is read no more, but leaves only once every host has, or after
    /// [`linger`](crate::HubBuilder::linger) (at most 1 s): so answers sent to those
    /// messages with [`Hub::send_to`](crate::Hub::send_to) reach it before its close
    /// frame, and this event may come that much after the violation.
    Protocol,
    /// The client sent faster than its [`rate_limit`](crate::HubBuilder::rate_limit)
    /// under [`RateLimitPolicy::Disconnect`](crate::RateLimitPolicy::Disconnect).
    RateLimited,
    /// Any other I/O error on the client's socket.
    Io(io::ErrorKind),
}

impl DisconnectReason {
    /// Every reason without a payload, in the order [`Stats`](crate::Stats) counts them.
    pub(crate) const COUNT: usize = 11;
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
        "RateLimited",
        "Io",
    ];

    /// Their names as metric labels (`hubcast_disconnects_total{reason="…"}`), in that
    /// order: stable, snake_case (all [`DisconnectReason::Io`] kinds share `io`).
    pub(crate) const LABELS: [&'static str; Self::COUNT] = [
        "peer_closed",
        "reset",
        "slow",
        "frame_too_large",
        "shutdown",
        "kicked",
        "idle",
        "unresponsive",
        "protocol",
        "rate_limited",
        "io",
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
            DisconnectReason::RateLimited => 9,
            DisconnectReason::Io(_) => 10,
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
            DisconnectReason::RateLimited => f.write_str("sent too fast (rate limit)"),
            DisconnectReason::Io(kind) => write!(f, "i/o error: {kind}"),
        }
    }
}

/// Something that happened on the hub, delivered to every
/// [`Subscription`](crate::Subscription).
///
/// For one client the order is always `Connected`, then its `Message`s (and its own
/// `TopicJoined`, `TopicLeft`, `Resumed`, `ResumeRefused`) in the order it sent them, then
/// exactly one `Disconnected`, after which nothing more of it.
///
/// Later versions may add variants, and fields to each variant: match with `..` and a
/// wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A client connected and will receive broadcasts from now on. It is already in the
    /// topics it was admitted to, each told in a [`TopicJoined`](Event::TopicJoined) that
    /// follows.
    #[non_exhaustive]
    Connected {
        /// The new client.
        client: ClientId,
        /// The client's address as the listener saw it.
        addr: SocketAddr,
        /// Its [user key](crate::Admit::user), if it was admitted with one: the same as
        /// [`ClientInfo::user`](crate::ClientInfo::user), without asking
        /// [`Hub::client`](crate::Hub::client) (which may already have forgotten a client
        /// that left at once).
        user: Option<String>,
    },
    /// A client sent one complete frame. Every one is delivered here, whether or not it
    /// was relayed to other clients: what the
    /// [`client_topics`](crate::HubBuilder::client_topics) closure refuses to relay
    /// ([`TopicAction::Publish`](crate::TopicAction::Publish)) still reaches the host.
    #[non_exhaustive]
    Message {
        /// Who sent it.
        client: ClientId,
        /// The frame's payload, without its delimiter or length prefix. Any bytes,
        /// not necessarily UTF-8. A copy of exactly these bytes: holding it pins no other
        /// memory.
        payload: Bytes,
        /// The kind it came as: [`Text`](MessageKind::Text) or
        /// [`Binary`](MessageKind::Binary) from a WebSocket client (the opcode of its
        /// frames; a text payload is valid UTF-8), `None` from a TCP or TLS client, whose
        /// framing has no kinds. Relayed messages keep it; to send one on with it, use
        /// [`Message::new`](crate::Message::new).
        ///
        /// ```
        /// # #[allow(dead_code)]
        /// # fn echo(hub: &hubcast::Hub, event: hubcast::Event) -> Result<(), Box<dyn std::error::Error>> {
        /// use hubcast::{Event, Message};
        ///
        /// if let Event::Message { client, payload, kind, .. } = event {
        ///     match kind {
        ///         Some(kind) => hub.send_to(client, Message::new(kind, payload)?)?,
        ///         None => hub.send_to(client, payload)?,
        ///     }
        /// }
        /// # Ok(())
        /// # }
        /// ```
        kind: Option<MessageKind>,
    },
    /// A client left; it receives nothing more and its id will not come back.
    #[non_exhaustive]
    Disconnected {
        /// The client that left.
        client: ClientId,
        /// Why it left.
        reason: DisconnectReason,
    },
    /// A client resumed a stream ([`Protocol::Sequenced`](crate::Protocol::Sequenced)): it
    /// was sent the messages it missed, then goes on live.
    #[non_exhaustive]
    Resumed {
        /// The client.
        client: ClientId,
        /// The stream: `"*"` for the hub-wide one, `"@name"` for a topic.
        stream: String,
        /// How many messages it was sent again.
        replayed: u64,
    },
    /// A client joined a topic by its own request: `#join`, or a `#resume` of a topic it
    /// was not in ([`Protocol::Sequenced`](crate::Protocol::Sequenced) with
    /// [`client_topics`](crate::HubBuilder::client_topics)). Sent only when the request
    /// made it a member; never for [`Hub::join`](crate::Hub::join).
    ///
    /// Also sent right after [`Connected`](Event::Connected) for each topic the client was
    /// put in as it was admitted ([`Admit::topic`](crate::Admit::topic), from the
    /// [authenticator](crate::HubBuilder::authenticate) or the
    /// [`admit`](crate::HubBuilder::admit) hook), whatever the protocol: the host learns
    /// which of them it is in (one that could not be joined is skipped).
    ///
    /// Joins and leaves are decided in one order, the host's when its call returns, a
    /// client's when the hub reads it, and the last decided wins: a `Hub::leave` of this
    /// topic whose command had not reached the client yet is overridden (the client is
    /// not taken out). To follow a client's topics exactly, read
    /// [`Hub::client`](crate::Hub::client) after each of your own joins and leaves and on
    /// each `TopicJoined` and `TopicLeft`: the last read is the client's membership, the
    /// one the last `#joined` or `#left` of the topic the client receives states.
    #[non_exhaustive]
    TopicJoined {
        /// The client.
        client: ClientId,
        /// The topic's name (without `@`).
        topic: String,
    },
    /// A client left a topic by its own request (`#leave`), with
    /// [`Protocol::Sequenced`](crate::Protocol::Sequenced) and
    /// [`client_topics`](crate::HubBuilder::client_topics). Sent only when the request
    /// took it out of the topic; never for [`Hub::leave`](crate::Hub::leave), nor when it
    /// leaves the hub.
    ///
    /// A `Hub::join` of this topic decided before the `#leave` was read is overridden by
    /// it, even if its command had not reached the client yet: the client is not put in
    /// (it is never sent `#joined` for it), and this event is how the host learns it. See
    /// [`TopicJoined`](Event::TopicJoined) for the order of decisions.
    #[non_exhaustive]
    TopicLeft {
        /// The client.
        client: ClientId,
        /// The topic's name (without `@`).
        topic: String,
    },
    /// A client became a member of a topic, whoever decided it ([`Hub::join`](crate::Hub::join),
    /// its own `#join` or a resume that joined, a topic it was admitted to). Only with
    /// [`presence_events`](crate::HubBuilder::presence_events), in the order the changes
    /// are applied: for one topic, every `MemberJoined` and `MemberLeft` in the order its
    /// members saw them. Per hub: members on other nodes of a cluster are not told here.
    #[non_exhaustive]
    MemberJoined {
        /// The client.
        client: ClientId,
        /// The topic's name (without `@`).
        topic: String,
        /// Its [user key](crate::Admit::user), if it has one.
        user: Option<String>,
    },
    /// A client stopped being a member of a topic: [`Hub::leave`](crate::Hub::leave), its
    /// own `#leave`, or leaving the hub (before its [`Disconnected`](Event::Disconnected)).
    /// Only with [`presence_events`](crate::HubBuilder::presence_events).
    #[non_exhaustive]
    MemberLeft {
        /// The client.
        client: ClientId,
        /// The topic's name (without `@`).
        topic: String,
        /// Its [user key](crate::Admit::user), if it has one.
        user: Option<String>,
    },
    /// A topic got its first member (right before that member's
    /// [`MemberJoined`](Event::MemberJoined)). Only with
    /// [`presence_events`](crate::HubBuilder::presence_events).
    #[non_exhaustive]
    TopicOccupied {
        /// The topic's name (without `@`).
        topic: String,
    },
    /// A topic's last member left (right after its [`MemberLeft`](Event::MemberLeft)).
    /// Only with [`presence_events`](crate::HubBuilder::presence_events).
    #[non_exhaustive]
    TopicEmptied {
        /// The topic's name (without `@`).
        topic: String,
    },
    /// The cluster connection changed state (feature `nats`).
    #[non_exhaustive]
    Cluster {
        /// The new state.
        state: ClusterState,
    },
    /// A client asked to resume a stream and could not: it was told why and where the
    /// stream is, to refetch its state.
    #[non_exhaustive]
    ResumeRefused {
        /// The client.
        client: ClientId,
        /// The stream: `"*"` for the hub-wide one, `"@name"` for a topic.
        stream: String,
        /// Why not.
        reason: ResumeRefusal,
    },
}

/// The state of a hub's cluster connection (feature `nats`), in
/// [`Event::Cluster`](crate::Event::Cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClusterState {
    /// Connected to the broker (again): messages flow between nodes.
    Connected,
    /// The connection to the broker is lost: local clients are still served; messages
    /// for other nodes are not propagated (and counted) until it is back.
    Disconnected,
    /// The end-to-end probe did not come back in time: the broker (or the path to it) is
    /// unresponsive although the connection looks up.
    Partitioned,
    /// The probe comes back again.
    Healed,
    /// The NATS client dropped messages from the other nodes that this node did not take
    /// in time (see [`ClusterStats::slow_consumer`](crate::ClusterStats::slow_consumer)).
    SlowConsumer,
}

/// Why a client could not resume a stream (see `docs/PROTOCOL.md`, `#noresume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResumeRefusal {
    /// The stream's epoch is not the one the client had: its numbers restarted (the hub
    /// restarted, or the topic was freed and made again). Also a position past the
    /// stream's last number, which no client of this stream can have.
    Epoch,
    /// The replay ring no longer holds the message after the client's position.
    TooOld,
    /// Replaying would pass the client's queue bound.
    TooMuch,
    /// A topic the client is not in and may not join.
    NotMember,
    /// The host's [`client_topics`](crate::HubBuilder::client_topics) closure refused the
    /// member this topic's history ([`TopicAction::Resume`](crate::TopicAction::Resume)).
    /// The client is a member all the same, and gets the topic's messages from the
    /// position it was told on.
    Denied,
}

impl ResumeRefusal {
    /// The word the protocol uses for it.
    pub(crate) fn word(self) -> &'static str {
        match self {
            ResumeRefusal::Epoch => "epoch",
            ResumeRefusal::TooOld => "old",
            ResumeRefusal::TooMuch => "much",
            ResumeRefusal::NotMember => "member",
            ResumeRefusal::Denied => "denied",
        }
    }
}

/// The word the protocol sends for it in `#noresume` (`epoch`, `old`, `much`, `member`,
/// `denied`), so that a log line reads as what the client was told.
///
/// ```
/// assert_eq!(hubcast::ResumeRefusal::Epoch.to_string(), "epoch");
/// ```
impl fmt::Display for ResumeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}
