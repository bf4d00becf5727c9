//! The builder and every knob the hub has, with the defaults and why they are what they are.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::{Error, Hub, Result};

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
    /// [`max_frame`](HubBuilder::max_frame) bytes), and messages are written as they are.
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

/// What an [authenticator](HubBuilder::authenticate) decides about a new connection.
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

/// The host's decision functions, shared with the dispatcher thread.
pub(crate) type AcceptFilter = dyn Fn(SocketAddr) -> bool + Send + Sync;
pub(crate) type Authenticator = dyn Fn(SocketAddr, &[u8]) -> Auth + Send + Sync;

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
    pub(crate) tls: Option<crate::tls::TlsSetting>,
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
    /// when the hub has nothing to send them.
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
    /// pauses reading from clients. Default: 4096.
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events;
        self
    }

    /// How many host calls ([`broadcast`](Hub::broadcast) and friends) may wait for the
    /// dispatcher; their frames may also total at most [`queue_bytes`](Self::queue_bytes).
    /// Past either, callers wait for the dispatcher (never for a client, unless
    /// [`flow_control`](Self::flow_control) is on), which bounds memory if the host outruns
    /// the hub. Default: 16,384.
    pub fn command_capacity(mut self, commands: usize) -> Self {
        self.command_capacity = commands;
        self
    }

    /// How long a leaving client keeps getting what was already queued for it: a client
    /// the host [kicked](Hub::disconnect), one that closed its sending side, and every client
    /// when a [`Hub`] is dropped without [`Hub::shutdown`]. Default: 1 s.
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
    /// sender would, instead of overrunning their queues. A client is busy while it has
    /// over half of [`queue_bytes`](Self::queue_bytes) queued and is draining it: not once
    /// its writes have made no progress for 250 ms, nor once it has stayed over half its
    /// bound for a second. So a stalled or persistently slow client holds the host back for
    /// a bounded time only, then meets [`write_timeout`](Self::write_timeout) and the
    /// slow-client policy as usual.
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
    pub fn heartbeat(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Disconnects a client as [`Slow`](crate::DisconnectReason::Slow) when writes to it
    /// have made no progress for this long while it has messages waiting, even if its queue
    /// is not full (like NATS's `write_deadline`), or `None` for no limit. Default: 10 s.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The time a new connection has to finish its TLS handshake and, with an
    /// [authenticator](Self::authenticate), send its authentication frame. A connection
    /// that does not is closed and counted in
    /// [`Stats::handshake_failed`](crate::Stats::handshake_failed). Default: 10 s.
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
    /// It runs on the dispatcher thread: keep it fast and never block in it.
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

    /// Requires each connection's first frame to be an authentication frame, handed with
    /// the peer's address to `authenticate`, which returns an [`Auth`]. Until it accepts,
    /// the connection gets no broadcasts and subscribers do not hear of it; the frame
    /// itself is not delivered as a message. A connection that sends nothing within
    /// [`handshake_timeout`](Self::handshake_timeout) is closed.
    /// It runs on the dispatcher thread: keep it fast and never block in it.
    ///
    /// ```
    /// use hubcast::{Auth, Hub};
    ///
    /// let hub = Hub::builder()
    ///     .authenticate(|_addr, frame| match frame.strip_prefix(b"token ") {
    ///         Some(b"secret") => Auth::AcceptAs("alice".into()),
    ///         _ => Auth::Reject,
    ///     })
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn authenticate(
        mut self,
        authenticate: impl Fn(SocketAddr, &[u8]) -> Auth + Send + Sync + 'static,
    ) -> Self {
        self.authenticator = Some(Callback(Arc::new(authenticate)));
        self
    }

    /// Serves every client over TLS with this rustls configuration.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(crate::tls::TlsSetting::Config(config));
        self
    }

    /// Serves every client over TLS with this certificate chain and private key, in PEM,
    /// and rustls's safe defaults (TLS 1.2 and 1.3, the `ring` provider). Bad PEM data makes
    /// [`bind`](Self::bind) fail with [`Error::Tls`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_pem(
        mut self,
        cert_chain: impl Into<Vec<u8>>,
        private_key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls = Some(crate::tls::TlsSetting::Pem {
            cert: cert_chain.into(),
            key: private_key.into(),
        });
        self
    }

    /// Binds the listener and starts the dispatcher thread.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if a setting is out of range, [`Error::Tls`] if the TLS certificate
    /// or key cannot be used, [`Error::Bind`] if the address cannot be resolved or bound,
    /// [`Error::Start`] if the event loop or thread cannot be created.
    pub fn bind<A: ToSocketAddrs>(self, addr: A) -> Result<Hub> {
        self.validate()?;
        Hub::start(self, addr)
    }

    fn validate(&self) -> Result<()> {
        if self.max_frame == 0 {
            return Err(Error::Config("max_frame must be at least 1"));
        }
        if self.queue_bytes == 0 {
            return Err(Error::Config("queue_bytes must be at least 1"));
        }
        if self.max_clients == 0 {
            return Err(Error::Config("max_clients must be at least 1"));
        }
        if self.event_capacity == 0 {
            return Err(Error::Config("event_capacity must be at least 1"));
        }
        if self.command_capacity == 0 {
            return Err(Error::Config("command_capacity must be at least 1"));
        }
        if self.send_buffer == Some(0) {
            return Err(Error::Config("send_buffer must be at least 1"));
        }
        if self.max_clients_per_ip == Some(0) {
            return Err(Error::Config("max_clients_per_ip must be at least 1"));
        }
        let zero = Some(Duration::ZERO);
        if self.idle_timeout == zero || self.heartbeat == zero || self.write_timeout == zero {
            return Err(Error::Config(
                "timeouts and the heartbeat interval must not be zero",
            ));
        }
        if self.heartbeat.is_some() && self.framing == Framing::Raw {
            return Err(Error::Config(
                "heartbeats need a framing with an empty frame, not Raw",
            ));
        }
        Ok(())
    }
}
