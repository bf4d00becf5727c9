//! The builder's settings of how the hub treats its clients: framing, queues and slow
//! clients, connection limits and socket options, the host's calls, deadlines, and the
//! host's closures that admit connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::HubBuilder;
use crate::callbacks::Callback;
use crate::{Admit, Auth, AuthRequest, Framing, RateLimit, Relay, SlowClientPolicy};
#[cfg(doc)]
use crate::{Hub, Protocol};

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

    /// Limits what each client may send: messages and bytes per second, with bursts, and
    /// what happens to a client over it: held back (not read: TCP slows it down, nothing
    /// is lost), its excess dropped, or disconnected as
    /// [`RateLimited`](crate::DisconnectReason::RateLimited). See [`RateLimit`] for what
    /// counts. Default: `None`, no limit.
    ///
    /// Held back, a client's unread messages wait in its socket and it is read again when
    /// its allowance has refilled, without any event; other clients are read as usual.
    /// Counted in [`Stats::rate_held`](crate::Stats::rate_held) and
    /// [`Stats::rate_dropped`](crate::Stats::rate_dropped).
    ///
    /// `bind` refuses, with [`Error::Config`](crate::Error::Config), a limit with neither
    /// messages nor bytes set, a rate that is not a number within its bounds, or a burst of
    /// zero or over its bound (see [`RateLimit::messages`] and [`RateLimit::bytes`]).
    pub fn rate_limit(mut self, limit: impl Into<Option<RateLimit>>) -> Self {
        self.rate_limit = limit.into();
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

    /// The most clients of one [user](crate::Admit::user) at once (its tabs, say); a
    /// connection of a user who has that many already is refused as it would be admitted.
    /// Default: `None`, no limit tighter than [`max_clients`](Self::max_clients).
    /// `Some(0)` is an [`Error::Config`](crate::Error::Config). Clients without a user key
    /// are not limited by it.
    ///
    /// The count and the admission are one step of the dispatcher, so however many
    /// connections of one user arrive at once, exactly this many are admitted; once one of
    /// them has left (its [`Event::Disconnected`](crate::Event::Disconnected) is emitted),
    /// a new one is admitted. A connection refused for it never appears as
    /// [`Event::Connected`](crate::Event::Connected), is counted in
    /// [`Stats::user_cap_refused`](crate::Stats::user_cap_refused) (only there) and logged
    /// at `warn` with the other refusals (one line a second in a flood). A TCP or TLS
    /// connection is closed; a WebSocket upgrade is answered `429 Too Many Requests`, so
    /// a page can tell "too many tabs" from a failed authentication (`403`).
    ///
    /// ```
    /// use hubcast::{Admit, Auth, Hub};
    ///
    /// // The first frame is the user's token; at most 3 tabs each.
    /// let hub = Hub::builder()
    ///     .authenticate(|request| match request.frame() {
    ///         Some(token) => Auth::Admit(Admit::new().user(String::from_utf8_lossy(token))),
    ///         None => Auth::Reject,
    ///     })
    ///     .max_clients_per_user(Some(3))
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn max_clients_per_user(mut self, clients: Option<usize>) -> Self {
        self.max_clients_per_user = clients;
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

    /// Decides each new client's name, user and topics as it becomes a client, before its
    /// first message is read, so that a message it sends the moment it connects already
    /// reaches its topics (with [`Relay::Topics`]) and is already numbered in them. Joining
    /// from the host's [`Event::Connected`](crate::Event::Connected) handler instead comes
    /// later: the client's first messages may be read before it is in.
    ///
    /// `admit` is shown the connection's [`AuthRequest`] (its address and transport; a
    /// WebSocket connection's upgrade request, path, query string and headers) and is
    /// called for every connection as it becomes a client: a TCP connection as it is
    /// accepted, a TLS one once its handshake is done, a WebSocket one at its upgrade.
    /// The topics of its [`Admit`] are joined with the same limits as
    /// [`Hub::join`](crate::Hub::join), in the same step as the client is admitted; one that
    /// cannot be joined is skipped (see [`Admit`]). Subscribers get
    /// [`Event::Connected`](crate::Event::Connected), then
    /// [`Event::TopicJoined`](crate::Event::TopicJoined) for each topic joined.
    ///
    /// With an [authenticator](Self::authenticate) as well, the authenticator decides:
    /// its [`Auth::Admit`] is the whole answer and `admit` is not called; after
    /// [`Auth::Accept`] or [`Auth::AcceptAs`], `admit` is called with the same request
    /// and its topics and user apply, under the name `AcceptAs` gave if it gave one (else
    /// `admit`'s).
    ///
    /// It runs on the dispatcher thread, under the rules of
    /// [`authenticate`](Self::authenticate): a panic in it costs that connection (it is
    /// rejected: counted in [`Stats::rejected`](crate::Stats::rejected) and
    /// [`Stats::callback_panics`](crate::Stats::callback_panics), logged at `error`; a
    /// WebSocket upgrade is answered 403), never the hub.
    ///
    /// ```
    /// use hubcast::{Admit, Hub, Relay};
    ///
    /// // Everyone starts in "lobby"; browsers asking for `/news` in "news" too.
    /// let hub = Hub::builder()
    ///     .relay(Relay::Topics)
    ///     .admit(|request| {
    ///         let admit = Admit::new().topic("lobby");
    ///         match request.path() {
    ///             Some("/news") => admit.topic("news"),
    ///             _ => admit,
    ///         }
    ///     })
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn admit(
        mut self,
        admit: impl Fn(&AuthRequest<'_>) -> Admit + Send + Sync + 'static,
    ) -> Self {
        self.admit = Some(Callback(Arc::new(admit)));
        self
    }
}
