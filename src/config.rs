//! `Config`: what a running hub needs of its builder. [`HubBuilder::bind`](crate::HubBuilder::bind)
//! validates the builder's settings and makes it, computing every derived value (batch
//! size, tick, ring and topic limits) once; the start-up, the `Hub` handle and the
//! dispatcher read it and never see the builder.

use std::net::SocketAddr;
use std::time::Duration;

use crate::callbacks::{
    AcceptFilter, AdmitHook, Authenticator, Callback, TopicCheck, TopicOptionsOf,
};
use crate::command::{BATCH_BELOW, BATCH_MAX};
use crate::options::WebSocketSettings;
use crate::topics::stream::RingLimits;
use crate::topics::TopicLimits;
use crate::wire::Settings;
use crate::{Framing, RateLimit, Relay, SlowClientPolicy, Transport};

/// A hub's settings, valid, with the values derived from them. Field names are the
/// builder's where the meaning is the same; see each `HubBuilder` method for what a setting
/// does.
#[derive(Debug)]
pub(crate) struct Config {
    // The wire.
    pub(crate) framing: Framing,
    pub(crate) max_frame: usize,
    /// The WebSocket settings (used with feature `websocket`).
    pub(crate) websocket: WebSocketSettings,
    /// The TLS configuration, loaded (feature `tls`).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<std::sync::Arc<rustls::ServerConfig>>,

    // Listeners, for the start-up.
    /// The transport of the address given to `bind`.
    pub(crate) main_transport: Transport,
    /// Listeners besides the one `bind` makes.
    pub(crate) listen: Vec<ListenSpec>,
    pub(crate) backlog: u32,

    // Queues, the host's calls and subscriptions.
    pub(crate) queue_bytes: usize,
    pub(crate) slow_client_policy: SlowClientPolicy,
    pub(crate) relay: Relay,
    pub(crate) command_capacity: usize,
    pub(crate) event_capacity: usize,
    pub(crate) flow_control: bool,
    pub(crate) linger: Duration,
    /// The largest batch, host-side or relayed (see [`batch_max`]).
    pub(crate) batch_max: usize,
    /// The longest frame the host may send: `queue_bytes`, within [`MAX_FRAME_LEN`].
    pub(crate) max_framed_len: usize,

    // Admission.
    pub(crate) max_clients: usize,
    pub(crate) max_clients_per_ip: Option<usize>,
    /// The most clients of one user key at once (`Admit::user`).
    pub(crate) max_clients_per_user: Option<usize>,
    pub(crate) nodelay: bool,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) send_buffer: Option<usize>,
    pub(crate) accept_filter: Option<Callback<AcceptFilter>>,
    pub(crate) authenticator: Option<Callback<Authenticator>>,
    /// The host's `admit` hook: a client's name and topics as it becomes one.
    pub(crate) admit: Option<Callback<AdmitHook>>,
    /// Each client's inbound rate limit, valid, if any.
    pub(crate) rate_limit: Option<RateLimit>,

    // Deadlines.
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) handshake_timeout: Duration,
    /// How often per-client deadlines are checked, if any is set (see [`tick`]).
    pub(crate) tick: Option<Duration>,

    // Topics and the protocol.
    pub(crate) topic_limits: TopicLimits,
    /// Whether messages carry the protocol (`Protocol::Sequenced`).
    pub(crate) sequenced: bool,
    pub(crate) ring_limits: RingLimits,
    pub(crate) replay_kept_bytes: usize,
    pub(crate) replay_total_bytes: usize,
    pub(crate) client_topics: Option<Callback<TopicCheck>>,
    /// The host's options of each new topic (presence, history on join).
    pub(crate) topic_options: Option<Callback<TopicOptionsOf>>,
    /// Whether subscribers get every membership change (`Event::MemberJoined`…).
    pub(crate) presence_events: bool,

    /// The cluster to join (feature `nats`), for the start-up.
    #[cfg(feature = "nats")]
    pub(crate) cluster: Option<crate::Cluster>,
}

/// A listener asked for with [`HubBuilder::listen`](crate::HubBuilder::listen): the address
/// as given, what it resolved to (resolved at once, reported at `bind`), and its transport.
#[derive(Debug, Clone)]
pub(crate) struct ListenSpec {
    pub(crate) given: String,
    pub(crate) addrs: std::result::Result<Vec<SocketAddr>, (std::io::ErrorKind, String)>,
    pub(crate) transport: Transport,
}

/// The longest frame, framed for any wire: offsets in a batch are 32-bit, and a WebSocket
/// header adds up to 10 bytes.
pub(crate) const MAX_FRAME_LEN: usize = u32::MAX as usize - 16;

/// Bounds of the tick (a quarter of the shortest timeout): timeouts fire within a tick,
/// and a hub with clients wakes at most a few times a second for them.
const TICK_MIN: Duration = Duration::from_millis(10);
const TICK_MAX: Duration = Duration::from_secs(1);

/// The largest batch for clients bounded at `queue_bytes`: small bounds get small batches,
/// so that drops stay fine-grained.
pub(crate) fn batch_max(queue_bytes: usize) -> usize {
    BATCH_MAX.min(queue_bytes / 8).max(BATCH_BELOW)
}

/// How often per-client deadlines with these `timeouts` are checked: a quarter of the
/// shortest, within 10 ms and 1 s; `None` if none is set.
pub(crate) fn tick(timeouts: impl IntoIterator<Item = Option<Duration>>) -> Option<Duration> {
    timeouts
        .into_iter()
        .flatten()
        .min()
        .map(|t| (t / 4).clamp(TICK_MIN, TICK_MAX))
}

/// A replay age as rings use it: one too long to represent is no age limit.
pub(crate) fn ring_age(age: Duration) -> Option<Duration> {
    std::time::Instant::now().checked_add(age).map(|_| age)
}

impl Config {
    /// What the wires frame and read by.
    pub(crate) fn wire(&self) -> Settings<'_> {
        Settings::new(
            self.framing,
            self.max_frame,
            self.sequenced,
            self.queue_bytes,
            &self.websocket,
        )
    }
}
