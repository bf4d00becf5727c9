//! The builder: every knob the hub has, its default and why. The validation that turns a
//! bad value into [`Error::Config`](crate::Error::Config) at `bind` is in `validate`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::options::{AcceptFilter, Authenticator, Callback, TopicCheck};
use crate::wire::Wire;
use crate::{
    Auth, AuthRequest, Framing, Hub, Origins, Protocol, Relay, Result, SlowClientPolicy,
    TopicRequest, Transport,
};

mod validate;

/// Configures and starts a [`Hub`]. Made by [`Hub::builder`].
///
/// Every setting has a finite default, listed on its method.
///
/// ```
/// use hubcast::{Framing, Hub, SlowClientPolicy};
///
/// let hub = Hub::builder()
///     .framing(Framing::LengthPrefixed)
///     .max_frame(1 << 20)
///     .queue_bytes(8 << 20)
///     .slow_client_policy(SlowClientPolicy::DropOldest)
///     .bind("127.0.0.1:0")?;
/// println!("listening on {}", hub.local_addr());
/// # Ok::<(), hubcast::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `bind` is called"]
pub struct HubBuilder {
    pub(crate) framing: Framing,
    pub(crate) max_frame: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) slow_client_policy: SlowClientPolicy,
    pub(crate) relay: Relay,
    pub(crate) max_clients: usize,
    pub(crate) backlog: u32,
    pub(crate) nodelay: bool,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) send_buffer: Option<usize>,
    pub(crate) event_capacity: usize,
    pub(crate) command_capacity: usize,
    pub(crate) linger: Duration,
    pub(crate) flow_control: bool,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_clients_per_ip: Option<usize>,
    pub(crate) accept_filter: Option<Callback<AcceptFilter>>,
    pub(crate) authenticator: Option<Callback<Authenticator>>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::transport::tls::TlsSetting>,
    /// The transport of the address given to `bind`, if set.
    pub(crate) transport: Option<Transport>,
    /// Listeners besides the one `bind` makes.
    pub(crate) listen: Vec<ListenSpec>,
    pub(crate) websocket: WebSocketSettings,
    pub(crate) max_topics: usize,
    pub(crate) max_topics_per_client: usize,
    pub(crate) max_topic_len: usize,
    pub(crate) protocol: Protocol,
    pub(crate) replay_messages: usize,
    pub(crate) replay_bytes: usize,
    pub(crate) replay_age: Duration,
    pub(crate) replay_kept_bytes: usize,
    pub(crate) replay_total_bytes: usize,
    pub(crate) client_topics: Option<Callback<TopicCheck>>,
    #[cfg(feature = "nats")]
    pub(crate) cluster: Option<crate::Cluster>,
}

/// A listener asked for with [`HubBuilder::listen`]: the address as given, what it resolved
/// to (resolved at once, reported at `bind`), and its transport.
#[derive(Debug, Clone)]
pub(crate) struct ListenSpec {
    pub(crate) given: String,
    pub(crate) addrs: std::result::Result<Vec<SocketAddr>, (std::io::ErrorKind, String)>,
    pub(crate) transport: Transport,
}

/// The WebSocket knobs, kept whatever the features so the builder's shape never changes;
/// the handshake checks upgrades against them as they are.
#[derive(Debug, Clone)]
pub(crate) struct WebSocketSettings {
    /// Serve upgrades on this path only (compared with the path without its query
    /// string); `None`: any path.
    pub(crate) path: Option<String>,
    /// Which pages may open a connection.
    pub(crate) origins: Origins,
    /// Subprotocols the server speaks, in order of preference; empty: none is chosen.
    pub(crate) protocols: Vec<String>,
    /// The largest request head (request line and headers) in bytes.
    pub(crate) max_head: usize,
    /// Whether every message goes in a binary frame.
    pub(crate) binary: bool,
}

impl Default for HubBuilder {
    fn default() -> Self {
        HubBuilder {
            framing: Framing::Lines,
            max_frame: 64 * 1024,
            queue_bytes: 4 * 1024 * 1024,
            slow_client_policy: SlowClientPolicy::Disconnect,
            relay: Relay::Off,
            max_clients: 10_000,
            backlog: 4096,
            nodelay: true,
            keepalive: Some(Duration::from_secs(60)),
            send_buffer: Some(128 * 1024),
            event_capacity: 4096,
            command_capacity: 16 * 1024,
            linger: Duration::from_secs(1),
            flow_control: false,
            idle_timeout: None,
            heartbeat: None,
            write_timeout: Some(Duration::from_secs(10)),
            handshake_timeout: Duration::from_secs(10),
            max_clients_per_ip: None,
            accept_filter: None,
            authenticator: None,
            #[cfg(feature = "tls")]
            tls: None,
            transport: None,
            listen: Vec::new(),
            websocket: WebSocketSettings {
                path: None,
                origins: Origins::SameOrigin,
                protocols: Vec::new(),
                max_head: 8 * 1024,
                binary: false,
            },
            max_topics: 10_000,
            max_topics_per_client: 64,
            max_topic_len: 64,
            protocol: Protocol::None,
            replay_messages: 1024,
            replay_bytes: 1024 * 1024,
            replay_age: Duration::from_secs(120),
            replay_kept_bytes: 64 * 1024 * 1024,
            replay_total_bytes: 256 * 1024 * 1024,
            client_topics: None,
            #[cfg(feature = "nats")]
            cluster: None,
        }
    }
}

impl HubBuilder {
    /// A builder with every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// How messages are framed on the wire. Default: [`Framing::Lines`].
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// The largest inbound frame payload, in bytes. A client that announces (length-prefixed)
    /// or accumulates (lines) a longer frame is disconnected with
    /// [`FrameTooLarge`](crate::DisconnectReason::FrameTooLarge) before anything is
    /// allocated for it. Default: 64 KiB.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// The bound of each client's outbound queue, in bytes. Each queued chunk counts its
    /// length plus 64 bytes of bookkeeping, so the bound holds for tiny messages too.
    /// It is also the largest message [`Hub::broadcast`] accepts, and the largest burst a
    /// healthy client can absorb beyond its socket buffer. Default: 4 MiB.
    ///
    /// Frames are shared between queues, so a broadcast queued for every client costs its
    /// bytes once plus a small entry per client; the bound (clients × `queue_bytes`) is only
    /// approached when every client is stalled on different messages (`send_to`).
    ///
    /// With [`Protocol::Sequenced`], a resume's replay is counted against it with what the
    /// queue holds already (one that does not fit is answered `much`), and control messages
    /// (answers to the client's requests, `#joined`/`#left` of the host's changes), which no
    /// policy drops, may pass it by 64 KiB: past that the client is disconnected as
    /// [`Slow`](crate::DisconnectReason::Slow) whatever the policy.
    ///
    /// It also bounds the frames waiting for the dispatcher (see
    /// [`command_capacity`](Self::command_capacity)). At most 2^40 - 1. In relay mode,
    /// [`max_frame`](Self::max_frame) framed must fit in it.
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = bytes;
        self
    }

    /// What to do with a client whose queue is full. Default: [`SlowClientPolicy::Disconnect`].
    pub fn slow_client_policy(mut self, policy: SlowClientPolicy) -> Self {
        self.slow_client_policy = policy;
        self
    }

    /// Whether messages from clients are relayed to other clients. Default: [`Relay::Off`].
    pub fn relay(mut self, relay: Relay) -> Self {
        self.relay = relay;
        self
    }

    /// The most clients connected at once. A connection over the limit is accepted and
    /// closed at once, and counted in [`Stats::refused`](crate::Stats::refused).
    /// Default: 10,000 (the process's file-descriptor limit must allow it too).
    pub fn max_clients(mut self, clients: usize) -> Self {
        self.max_clients = clients;
        self
    }

    /// The listen backlog: connections the kernel completes before the hub accepts them.
    /// The kernel caps it at `net.core.somaxconn`. Default: 4096, so a burst of connects is
    /// not dropped.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Whether `TCP_NODELAY` is set on client sockets. Default: `true`: the hub batches
    /// writes itself, so Nagle's algorithm only adds latency.
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// TCP keep-alive idle time for client sockets, or `None` to leave it off.
    /// Default: 60 s, so peers that vanished without a FIN are found within minutes even
    /// when the hub has nothing to send them. Linux takes at most 32,767 s; longer times
    /// are cut to that. Under 1 s (the kernel counts whole seconds) is an
    /// [`Error::Config`](crate::Error::Config).
    pub fn keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// `SO_SNDBUF` for client sockets, or `None` for the kernel's auto-tuning. Default:
    /// 128 KiB: large enough for batched writes, small enough that the kernel does not hide a
    /// second multi-megabyte queue behind [`queue_bytes`](Self::queue_bytes).
    ///
    /// Keep it at two segments or more: on loopback, whose segments are 64 KiB, a 16 KiB
    /// buffer leaves the peer's delayed ACKs (40 ms) pacing every write.
    pub fn send_buffer(mut self, bytes: Option<usize>) -> Self {
        self.send_buffer = bytes;
        self
    }

    /// How many events each [`Subscription`](crate::Subscription) queues before the hub
    /// pauses reading from clients. Default: 4096; at most 2^20, so that a subscription
    /// nobody drains holds bounded memory (its events are stored as they come, in batches
    /// of a dispatcher round, not allocated up front).
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events;
        self
    }

    /// How many host calls ([`broadcast`](Hub::broadcast) and friends) may wait for the
    /// dispatcher; their frames may also total at most [`queue_bytes`](Self::queue_bytes)
    /// (small messages are batched: one call per 64 KiB of them). Past either, callers wait
    /// for the dispatcher (never for a client, unless [`flow_control`](Self::flow_control)
    /// is on), and [`Hub::try_broadcast`] fails with [`Error::WouldBlock`](crate::Error::WouldBlock), which bounds
    /// memory if the host outruns the hub. Default: 16,384; at most 2^24 - 1.
    pub fn command_capacity(mut self, commands: usize) -> Self {
        self.command_capacity = commands;
        self
    }

    /// How long a leaving client keeps getting what was already queued for it: a client
    /// the host [kicked](Hub::disconnect), one that closed its sending side, and every client
    /// when a [`Hub`] is dropped without [`Hub::shutdown`]. Default: 1 s.
    ///
    /// Any duration is accepted; one too long to represent (such as [`Duration::MAX`]) means
    /// no deadline: the queue is written out however long that takes, except that a client
    /// whose writes make no progress for [`write_timeout`](Self::write_timeout) is closed
    /// anyway. With `write_timeout` off too, dropping a hub waits for its slowest client.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Whether [`Hub::broadcast`] may wait for the clients to catch up. Default: `false`:
    /// `broadcast` never waits for clients, and a host that publishes faster than its
    /// clients read fills their queues until the [`SlowClientPolicy`] applies.
    ///
    /// With `true`, the hub stops taking host calls while a *busy* client catches up, so
    /// `broadcast` waits and a flooding host publishes at the pace of its clients, as a TCP
    /// sender would, instead of overrunning their queues. A client is *high* once it has
    /// over half of [`queue_bytes`](Self::queue_bytes) queued, until it is back under a
    /// quarter; it is busy while it is high, its writes make progress (a client whose
    /// writes made none for 250 ms while other clients' did is stalled, not busy; for 50
    /// ms, if it has drained nothing since it went high) and it has busy time left. Each
    /// client has one second of busy time, spent while it is busy and earned back at a
    /// tenth of real time. So however a client paces its reads, it holds the host back for
    /// at most a second at once and about a tenth of the time in the long run, then meets
    /// [`write_timeout`](Self::write_timeout) and the slow-client policy as usual.
    ///
    /// Whatever this setting, the hub stops reading clients while a client is busy, so
    /// clients that publish (relay mode, or a host answering each message) are held back by
    /// TCP rather than making healthy readers lose messages.
    pub fn flow_control(mut self, on: bool) -> Self {
        self.flow_control = on;
        self
    }

    /// Disconnects a client that has sent nothing for this long, with
    /// [`DisconnectReason::Idle`](crate::DisconnectReason::Idle), or `None` for no limit.
    /// Default: `None`, because listen-only clients (`nc`, feeds) are the normal case for a
    /// broadcast hub; TCP keep-alive and [`write_timeout`](Self::write_timeout) still find
    /// dead peers.
    ///
    /// Any duration is accepted; one too long to represent means no limit. Zero is an
    /// [`Error::Config`](crate::Error::Config).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sends every client a ping frame at this interval, and disconnects a client that has
    /// sent nothing for two intervals with
    /// [`DisconnectReason::Unresponsive`](crate::DisconnectReason::Unresponsive).
    /// Default: `None`.
    ///
    /// The ping is an empty frame: an empty line with [`Framing::Lines`], a zero length
    /// with [`Framing::LengthPrefixed`]. Clients answer with any frame, typically an empty
    /// one; while heartbeats are on, empty frames from clients are taken as answers and not
    /// delivered as [`Event::Message`](crate::Event::Message). [`Framing::Raw`] has no
    /// empty frame, so heartbeats with it are a configuration error.
    ///
    /// Any interval from 10 ms is accepted; two intervals too long to represent mean no
    /// [`Unresponsive`](crate::DisconnectReason::Unresponsive) limit. Under 10 ms (the
    /// finest interval deadlines are checked at), zero included, is an [`Error::Config`](crate::Error::Config).
    pub fn heartbeat(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Disconnects a client as [`Slow`](crate::DisconnectReason::Slow) when writes to it
    /// have made no progress for this long while it has messages waiting, even if its queue
    /// is not full (like NATS's `write_deadline`), or `None` for no limit. A client that is
    /// leaving (kicked, closed its side, or at shutdown) and makes no progress for this long
    /// is closed without waiting for [`linger`](Self::linger). Default: 10 s.
    ///
    /// Any duration is accepted; one too long to represent means no limit. Zero is an
    /// [`Error::Config`](crate::Error::Config).
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The time a new connection has to finish its TLS handshake and, with an
    /// [authenticator](Self::authenticate), send its authentication frame. A connection
    /// that does not is closed and counted in
    /// [`Stats::handshake_failed`](crate::Stats::handshake_failed). Default: 10 s.
    ///
    /// Any duration is accepted; one too long to represent means no deadline.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The most connections from one IP address at once; more are refused like those over
    /// [`max_clients`](Self::max_clients). Default: `None`, no limit tighter than
    /// `max_clients`, because clients behind one NAT or proxy, and loopback benchmarks,
    /// share an address.
    pub fn max_clients_per_ip(mut self, clients: Option<usize>) -> Self {
        self.max_clients_per_ip = clients;
        self
    }

    /// A filter run on every new connection's address before anything else; `false`
    /// closes it at once and counts it in [`Stats::refused`](crate::Stats::refused).
    ///
    /// It runs on the dispatcher thread, like the [authenticator](Self::authenticate), so
    /// the same rules hold: keep it fast and never block in it; a panic in it refuses the
    /// connection (logged at `error`, counted in [`Stats::refused`](crate::Stats::refused)
    /// and [`Stats::callback_panics`](crate::Stats::callback_panics)), not the hub; and
    /// [`Hub`] methods called from it never wait (see [`authenticate`](Self::authenticate)).
    ///
    /// ```
    /// let hub = hubcast::Hub::builder()
    ///     .accept_filter(|addr| addr.ip().is_loopback())
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn accept_filter(
        mut self,
        filter: impl Fn(SocketAddr) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.accept_filter = Some(Callback(Arc::new(filter)));
        self
    }

    /// Requires each connection's first frame to be an authentication frame, shown with
    /// the peer's address to `authenticate` in an [`AuthRequest`]; it returns an [`Auth`].
    /// Until it accepts, the connection gets no broadcasts and subscribers do not hear of
    /// it; the frame itself is not delivered as a message. A connection that sends nothing
    /// within [`handshake_timeout`](Self::handshake_timeout) is closed.
    ///
    /// # Rules for closures the hub runs
    ///
    /// The authenticator and the [accept filter](Self::accept_filter) run on the
    /// dispatcher thread, between its other work:
    ///
    /// - Keep them fast and never block in them: every client waits meanwhile.
    /// - A panic in one costs the connection, not the hub: it is rejected (counted in
    ///   [`Stats::rejected`](crate::Stats::rejected) and
    ///   [`Stats::callback_panics`](crate::Stats::callback_panics)) and logged at `error`.
    ///   (With `panic = "abort"`, a panic aborts the process as always.)
    /// - They may call the hub's methods — for example broadcast a welcome — but those
    ///   calls never wait, since the thread they would wait for is the caller's own: where
    ///   a call from another thread would wait, it fails with
    ///   [`Error::WouldBlock`](crate::Error::WouldBlock) instead, and
    ///   [`Hub::shutdown`] starts the shutdown without waiting for it.
    /// - To reach the hub from a closure, capture a
    ///   [`Weak<Hub>`](std::sync::Weak) (set once the hub is bound), not an `Arc<Hub>`:
    ///   the closure lives as long as the hub, so a strong reference keeps the hub from
    ///   ever being dropped.
    ///
    /// ```
    /// use hubcast::{Auth, Hub};
    ///
    /// let hub = Hub::builder()
    ///     .authenticate(|request| match request.frame().and_then(|f| f.strip_prefix(b"token ")) {
    ///         Some(b"secret") => Auth::AcceptAs("alice".into()),
    ///         _ => Auth::Reject,
    ///     })
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn authenticate(
        mut self,
        authenticate: impl Fn(&AuthRequest<'_>) -> Auth + Send + Sync + 'static,
    ) -> Self {
        self.authenticator = Some(Callback(Arc::new(authenticate)));
        self
    }

    /// Serves every client over TLS with this rustls configuration.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(crate::transport::tls::TlsSetting::Config(config));
        self
    }

    /// Serves every client over TLS with this certificate chain and private key, in PEM,
    /// and rustls's safe defaults (TLS 1.2 and 1.3, the `ring` provider). Bad PEM data makes
    /// [`bind`](Self::bind) fail with [`Error::Tls`](crate::Error::Tls).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_pem(
        mut self,
        cert_chain: impl Into<Vec<u8>>,
        private_key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls = Some(crate::transport::tls::TlsSetting::Pem {
            cert: cert_chain.into(),
            key: private_key.into(),
        });
        self
    }

    /// What the address given to [`bind`](Self::bind) speaks. Default: [`Transport::Tcp`],
    /// or [`Transport::Tls`] once `tls` or `tls_pem` is set (feature `tls`).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Listens on `addr` too, with `transport`, beside the address given to
    /// [`bind`](Self::bind): one hub serves TCP, TLS and WebSocket clients at once, and every
    /// broadcast reaches all of them, framed once per kind of wire. Call it once per extra
    /// listener. Use port 0 and [`Hub::local_addrs`] to learn the port.
    ///
    /// The address is resolved now; what cannot be resolved or bound makes `bind` fail with
    /// [`Error::Bind`](crate::Error::Bind) naming it. A TLS or WebSocket transport whose feature is off, or a TLS
    /// transport without a TLS configuration, makes it fail with [`Error::Config`](crate::Error::Config).
    ///
    /// ```
    /// use hubcast::{Hub, Transport};
    ///
    /// let hub = Hub::builder()
    ///     .listen("127.0.0.1:0", Transport::Tcp)
    ///     .bind("127.0.0.1:0")?;
    /// assert_eq!(hub.local_addrs().len(), 2);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn listen<A: ToSocketAddrs + fmt::Debug>(mut self, addr: A, transport: Transport) -> Self {
        let given = crate::hub::given_addr(&addr);
        let addrs = addr
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|err| (err.kind(), err.to_string()));
        self.listen.push(ListenSpec {
            given,
            addrs,
            transport,
        });
        self
    }

    /// Serves WebSocket upgrades on this path only (`"/chat"`; the query string does not
    /// count), answering others with 404, or on any path with `None`. Default: `None`.
    pub fn websocket_path(mut self, path: Option<&str>) -> Self {
        self.websocket.path = path.map(str::to_owned);
        self
    }

    /// Which browser origins may open WebSocket connections; others are answered with 403.
    /// Default: [`Origins::SameOrigin`], so a page of another site cannot connect in its
    /// visitor's name (a browser sends its cookies with the request). Pages served from
    /// another host or port, and pages opened from files, need [`Origins::List`].
    pub fn websocket_origins(mut self, origins: Origins) -> Self {
        self.websocket.origins = origins;
        self
    }

    /// The WebSocket subprotocols the hub speaks, in order of preference: the first the
    /// client also offers (`Sec-WebSocket-Protocol`) is chosen, and none if no offer
    /// matches (the connection is still accepted). Default: none.
    pub fn websocket_protocols<S: AsRef<str>>(
        mut self,
        protocols: impl IntoIterator<Item = S>,
    ) -> Self {
        self.websocket.protocols = protocols
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        self
    }

    /// The largest WebSocket upgrade request head (request line and headers), in bytes;
    /// a longer one is answered with 431. Default: 8 KiB.
    pub fn websocket_max_head(mut self, bytes: usize) -> Self {
        self.websocket.max_head = bytes;
        self
    }

    /// Whether messages to WebSocket clients go in binary frames always. Default: `false`:
    /// a message that is valid UTF-8 goes in a text frame (what browsers read as a string)
    /// and any other in a binary frame, so no text frame ever carries invalid UTF-8.
    pub fn websocket_binary(mut self, binary: bool) -> Self {
        self.websocket.binary = binary;
        self
    }

    /// The most topics the hub holds at once. Default: 10,000: each costs a name and a
    /// member list.
    ///
    /// Only topics with members count against a refusal: [`Hub::join`] (or a client's
    /// `#join`) of a new topic fails with [`Error::TopicLimit`](crate::Error::TopicLimit) only if every topic the hub
    /// holds has a member. A topic with no member kept for its replay ring
    /// ([`Protocol::Sequenced`], see [`replay_age`](Self::replay_age)) gives up its room:
    /// the one whose last member left longest ago is evicted, and a later resume of it is
    /// answered `epoch` (numbers restarted).
    pub fn max_topics(mut self, topics: usize) -> Self {
        self.max_topics = topics;
        self
    }

    /// The most topics one client may be in at once. Default: 64.
    pub fn max_topics_per_client(mut self, topics: usize) -> Self {
        self.max_topics_per_client = topics;
        self
    }

    /// The longest topic name, in bytes of UTF-8. Default: 64. With a cluster (feature
    /// `nats`, `HubBuilder::cluster`), a topic is a NATS subject of the prefix and up to three
    /// bytes per byte of the name, which must stay within 4,000 bytes (the broker's control
    /// line): a longer limit is an [`Error::Config`](crate::Error::Config).
    pub fn max_topic_len(mut self, bytes: usize) -> Self {
        self.max_topic_len = bytes;
        self
    }

    /// Whether messages carry the hubcast protocol: numbered streams with replay rings and
    /// resume, and control messages from clients. Default: [`Protocol::None`]. See
    /// `docs/PROTOCOL.md` for the wire format, precise enough to write a client from.
    ///
    /// ```
    /// use hubcast::{Hub, Protocol};
    ///
    /// let hub = Hub::builder()
    ///     .protocol(Protocol::Sequenced)
    ///     .replay_messages(10_000)
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The most messages each stream's replay ring keeps ([`Protocol::Sequenced`]).
    /// Default: 1,024.
    pub fn replay_messages(mut self, messages: usize) -> Self {
        self.replay_messages = messages;
        self
    }

    /// The most bytes each stream's replay ring keeps. Default: 1 MiB. A ring counts what
    /// its messages really cost: each message as framed (with its header, `17 ` or
    /// `3@lobby `), rounded up to 16 bytes, plus 48 bytes of bookkeeping; all rings together
    /// are bounded by [`replay_total_bytes`](Self::replay_total_bytes).
    pub fn replay_bytes(mut self, bytes: usize) -> Self {
        self.replay_bytes = bytes;
        self
    }

    /// How long a message stays in its stream's replay ring. Default: 2 minutes, long
    /// enough for a phone changing networks or a laptop waking up. A topic whose last member
    /// left is kept (with its numbers) for this long after it left, and as long as its ring
    /// holds messages, so members that come back within this time can resume — even from a
    /// room where nothing was said, at their position — unless it is evicted first, the one left longest ago
    /// first, when kept rings pass [`replay_kept_bytes`](Self::replay_kept_bytes) or a new
    /// topic needs its room under [`max_topics`](Self::max_topics). Any duration is
    /// accepted; one too long to represent means no age limit.
    pub fn replay_age(mut self, age: Duration) -> Self {
        self.replay_age = age;
        self
    }

    /// The most bytes the replay rings of *kept* topics hold together: topics whose last
    /// member left, kept with their numbers so members that come back can resume
    /// ([`Protocol::Sequenced`]). Counted as rings count their bytes (messages as framed).
    /// Past it, kept topics are evicted, the one whose last member left longest ago first:
    /// its ring and numbers are dropped, and a later resume of it is answered `epoch`.
    /// Topics with members are not affected.
    ///
    /// Default: 64 MiB: 64 full rings at the default [`replay_bytes`](Self::replay_bytes),
    /// or thousands of rooms' last messages. Without this bound, clients that join rooms,
    /// fill their rings and leave could make the hub hold up to
    /// [`max_topics`](Self::max_topics) × `replay_bytes` (10 GB by default). 0 keeps no
    /// topic without members once its ring holds anything.
    pub fn replay_kept_bytes(mut self, bytes: usize) -> Self {
        self.replay_kept_bytes = bytes;
        self
    }

    /// The most bytes every replay ring of the hub holds together — the hub-wide stream's
    /// and every topic's, with members or kept ([`Protocol::Sequenced`]) — counted as
    /// [`replay_bytes`](Self::replay_bytes) counts them, plus each ring's entries. Default:
    /// 256 MiB.
    ///
    /// Past it, the oldest messages of the largest rings go first: every ring larger than
    /// one common level is trimmed down to it (to 15/16 of the bound, so that trims are
    /// rare), and smaller rings lose nothing. A resume that needs a message trimmed away is
    /// answered `old`; trimmed messages are counted in
    /// [`Stats::replay_trimmed`](crate::Stats::replay_trimmed). Without this bound, rings
    /// of topics with members were bounded only one by one: clients that join rooms of
    /// their own and fill them could make the hub hold topics × `replay_bytes`. With it,
    /// the hub's memory is at most clients × ([`queue_bytes`](Self::queue_bytes) + 64 KiB of
    /// control messages + [`max_frame`](Self::max_frame)) + this + a fixed cost per client
    /// and per topic.
    pub fn replay_total_bytes(mut self, bytes: usize) -> Self {
        self.replay_total_bytes = bytes;
        self
    }

    /// Lets clients join and leave topics themselves ([`Protocol::Sequenced`]'s `#join`
    /// and `#leave`), each request checked by `allow`, which runs on the dispatcher thread
    /// under the same rules as the [authenticator](Self::authenticate). Default: clients
    /// may not choose topics; only the host puts them in ([`Hub::join`]).
    ///
    /// `allow` sees only requests that would change the client's topics: a `#join` of a
    /// topic the client is in, or a `#leave` of one it is not in, is answered at once. Each
    /// change a request makes is reported as
    /// [`Event::TopicJoined`](crate::Event::TopicJoined) or
    /// [`Event::TopicLeft`](crate::Event::TopicLeft); see [`Hub::join`] for the order of
    /// the host's and the clients' changes.
    ///
    /// ```
    /// use hubcast::{Hub, Protocol};
    ///
    /// // Any client may join any room but "admin".
    /// let hub = Hub::builder()
    ///     .protocol(Protocol::Sequenced)
    ///     .client_topics(|request| request.topic() != "admin")
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn client_topics(
        mut self,
        allow: impl Fn(&TopicRequest<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.client_topics = Some(Callback(Arc::new(allow)));
        self
    }

    /// Joins a cluster of hubs through NATS (feature `nats`): every broadcast, topic
    /// publish and relayed client message on any hub of the cluster reaches the matching
    /// clients of every hub, once, and every hub delivers each publisher's messages of a
    /// stream in order. Default: no cluster. See [`Cluster`](crate::Cluster) for the
    /// connection settings and the README's "Scaling out" for what is promised.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    pub fn cluster(mut self, cluster: crate::Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The topic limits, as the hub checks them.
    pub(crate) fn topic_limits(&self) -> crate::topics::TopicLimits {
        crate::topics::TopicLimits {
            max_topics: self.max_topics,
            max_per_client: self.max_topics_per_client,
            max_name: self.max_topic_len,
        }
    }

    /// Binds the listener and starts the dispatcher thread.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) if a setting is out of range, [`Error::Tls`](crate::Error::Tls) if the TLS certificate
    /// or key cannot be used, [`Error::Bind`](crate::Error::Bind) (naming `addr` as given) if the address cannot
    /// be resolved or bound, [`Error::Start`](crate::Error::Start) if the event loop or thread cannot be created.
    pub fn bind<A: ToSocketAddrs + fmt::Debug>(self, addr: A) -> Result<Hub> {
        self.validate()?;
        Hub::start(self, addr)
    }

    /// Whether a TLS configuration was given.
    pub(crate) fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The transport of the address given to `bind`.
    pub(crate) fn main_transport(&self) -> Transport {
        self.transport.unwrap_or(if self.has_tls() {
            Transport::Tls
        } else {
            Transport::Tcp
        })
    }

    /// Every transport the hub listens with.
    pub(crate) fn transports(&self) -> impl Iterator<Item = Transport> + '_ {
        std::iter::once(self.main_transport()).chain(self.listen.iter().map(|l| l.transport))
    }

    /// Whether some connections have a handshake before they become clients (TLS, a
    /// WebSocket upgrade, or an authentication frame).
    pub(crate) fn has_handshake(&self) -> bool {
        let opens = |t: Transport| t.is_tls() || Wire::of(t).opens_with_http();
        self.authenticator.is_some() || self.transports().any(opens)
    }
}
