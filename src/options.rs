//! The public option types the builder takes (framing, policies, transports, origins), and
//! the WebSocket settings the handshake checks upgrades against.

use std::net::SocketAddr;

/// How messages are delimited on the wire, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Framing {
    /// Newline-delimited lines, the default: works with `nc` and `telnet`.
    ///
    /// Inbound, a frame ends at `\n`; the `\n` and every `\r` just before it are removed
    /// from the payload, so `\r\n` clients work too, and no payload from a line ends in
    /// `\r`. Outbound, a `\n` is appended unless the message
    /// already ends with one. A message with `\n` inside it reaches clients as several lines,
    /// and one that ends in `\r` reaches line clients without it; a WebSocket client's
    /// message that would (a `\n` in it, or a final `\r`) is refused instead: see
    /// [`Transport::WebSocket`].
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
    /// Small messages copied into one of the client's buffers go together, so up to 32 KiB
    /// of them may be dropped at once; control messages of the protocol never are.
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
    /// Each message from a client goes to the members of every topic it is in, except
    /// itself: a chat with rooms. A client in no topic reaches nobody but the host.
    Topics,
}

/// Whether messages carry the hubcast protocol (`docs/PROTOCOL.md`): numbered streams that
/// a client can resume after a reconnect, and control messages to join and leave topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// A message is its payload and nothing else (the default).
    #[default]
    None,
    /// Every message of a stream (the hub-wide one, and each topic) is numbered; the hub
    /// keeps a replay ring per stream and answers resume requests; clients may send control
    /// messages. Not with [`Framing::Raw`], which has no message boundaries.
    Sequenced,
}

/// What a listener's connections speak, for [`HubBuilder::listen`](crate::HubBuilder::listen)
/// and [`HubBuilder::transport`](crate::HubBuilder::transport).
///
/// Every variant exists whatever the features, so matches compile under every feature set;
/// binding a listener whose feature is off is an [`Error::Config`](crate::Error::Config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// Plain TCP, with the hub's [`Framing`].
    Tcp,
    /// TLS, then the hub's [`Framing`] (feature `tls`, and a TLS configuration on the
    /// builder).
    Tls,
    /// WebSocket over plain TCP, `ws://` (feature `websocket`): one hub message is one
    /// WebSocket message. With [`Framing::Lines`] a message is one line, so a client's
    /// message with a newline in it, or ending in `\r` (which line clients could not
    /// tell from a line's `\r\n`), is a protocol error (close code 1007,
    /// [`DisconnectReason::Protocol`](crate::DisconnectReason::Protocol)): what a
    /// WebSocket client sends reaches line clients unchanged, and the other way round.
    WebSocket,
    /// WebSocket over TLS, `wss://` (features `websocket` and `tls`, and a TLS
    /// configuration on the builder).
    WebSocketTls,
}

impl Transport {
    /// Whether connections start with a TLS handshake.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::WebSocketTls)
    }

    /// Whether connections speak WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::WebSocket | Transport::WebSocketTls)
    }
}

/// An address the hub listens on, with its transport, from
/// [`Hub::local_addrs`](crate::Hub::local_addrs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ListenAddr {
    /// The bound address (with the real port when bound to port 0).
    pub addr: SocketAddr,
    /// What its connections speak.
    pub transport: Transport,
}

/// Which browser origins may open WebSocket connections (see
/// [`HubBuilder::websocket_origins`](crate::HubBuilder::websocket_origins)). Browsers send
/// an `Origin` header with every WebSocket request and cannot be stopped from connecting
/// across sites any other way; clients that are not browsers usually send none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Origins {
    /// Requests without an `Origin` header, and those whose origin has the same host and
    /// port as their `Host` header (a page served by the same host). The default.
    #[default]
    SameOrigin,
    /// Any origin. Any web page a user visits can then connect in their name: use it only
    /// when the hub authenticates otherwise, or serves public data.
    Any,
    /// Requests without an `Origin` header, and those whose origin is one of these, such as
    /// `"https://example.com"` or `"http://localhost:8000"` (compared without regard to
    /// case; `"null"` matches pages opened from files).
    List(Vec<String>),
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
    /// What else the listener answers over HTTP: event streams, pages, metrics, health.
    pub(crate) http: HttpSettings,
    /// WebSocket compression (`permessage-deflate`, feature `deflate`).
    pub(crate) compression: CompressionSettings,
}

/// WebSocket compression (`permessage-deflate` without context takeover, feature
/// `deflate`; see `wire::deflate`), kept whatever the features: `bind` refuses it on
/// without the feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompressionSettings {
    /// Whether an upgrade offering the extension is answered with it.
    pub(crate) enabled: bool,
    /// Messages shorter than this go plain even to clients that negotiated it.
    pub(crate) min_size: usize,
    /// The deflate level, 1 (fastest) to 9 (smallest).
    pub(crate) level: u8,
}

impl Default for CompressionSettings {
    /// Off; from 256 bytes; level 1.
    fn default() -> Self {
        CompressionSettings {
            enabled: false,
            min_size: 256,
            level: 1,
        }
    }
}

/// The HTTP side of WebSocket listeners beside upgrades: server-sent events, fixed pages,
/// the metrics text and health (see `wire::http` for the routing).
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    /// Server-sent events at this path (the hub-wide stream) and below it (`/<topic>`).
    pub(crate) sse_path: Option<String>,
    /// How often an idle event stream gets a comment line, if ever.
    pub(crate) sse_keepalive: Option<std::time::Duration>,
    /// The reconnection delay sent to event streams (`retry:`).
    pub(crate) sse_retry: std::time::Duration,
    /// Whether binary messages go to event streams in base64 (else they are skipped).
    pub(crate) sse_base64: bool,
    /// Fixed responses, by exact path.
    pub(crate) pages: Vec<Page>,
    /// Where the Prometheus text is served, if anywhere.
    pub(crate) metrics_path: Option<String>,
    /// Where liveness is served, if anywhere.
    pub(crate) live_path: Option<String>,
    /// Where readiness is served, if anywhere.
    pub(crate) ready_path: Option<String>,
}

impl Default for HttpSettings {
    /// Nothing served but upgrades; for event streams once on, a comment every 15 s (well
    /// under the 60 s proxies such as nginx wait for a byte) and a 2 s reconnection delay.
    fn default() -> Self {
        HttpSettings {
            sse_path: None,
            sse_keepalive: Some(std::time::Duration::from_secs(15)),
            sse_retry: std::time::Duration::from_secs(2),
            sse_base64: false,
            pages: Vec::new(),
            metrics_path: None,
            live_path: None,
            ready_path: None,
        }
    }
}

impl HttpSettings {
    /// Whether anything but WebSocket upgrades is served.
    pub(crate) fn serves_http(&self) -> bool {
        self.sse_path.is_some()
            || !self.pages.is_empty()
            || self.metrics_path.is_some()
            || self.live_path.is_some()
            || self.ready_path.is_some()
    }

    /// Every path configured, with the knob that set it (for checks at `bind`).
    pub(crate) fn paths(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        let named = [
            ("sse_path", &self.sse_path),
            ("metrics_path", &self.metrics_path),
            ("liveness_path", &self.live_path),
            ("readiness_path", &self.ready_path),
        ];
        named
            .into_iter()
            .filter_map(|(knob, path)| Some((knob, path.as_deref()?)))
            .chain(self.pages.iter().map(|page| ("page", page.path.as_str())))
    }
}

/// A fixed response the host registered ([`HubBuilder::page`](crate::HubBuilder::page)).
#[derive(Clone)]
pub(crate) struct Page {
    /// The exact path it answers (without a query string).
    pub(crate) path: String,
    /// Its `Content-Type`.
    pub(crate) content_type: String,
    /// Its body, shared by every response.
    pub(crate) body: bytes::Bytes,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("path", &self.path)
            .field("content_type", &self.content_type)
            .field("len", &self.body.len())
            .finish()
    }
}

impl Default for WebSocketSettings {
    /// Same origin, any path, no subprotocol, 8 KiB heads, text frames for UTF-8.
    fn default() -> Self {
        WebSocketSettings {
            path: None,
            origins: Origins::SameOrigin,
            protocols: Vec::new(),
            max_head: 8 * 1024,
            binary: false,
            http: HttpSettings::default(),
            compression: CompressionSettings::default(),
        }
    }
}

/// What happens to a client that sends faster than its [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RateLimitPolicy {
    /// Stop reading the client until its allowance has refilled, the default: its
    /// messages wait in its socket, TCP tells it to slow down, and nothing is lost. Other
    /// clients are read as usual.
    #[default]
    HoldBack,
    /// Read on, but drop the messages over the limit: they reach no subscriber and no
    /// client, and are counted in [`Stats::rate_dropped`](crate::Stats::rate_dropped).
    /// Control requests of [`Protocol::Sequenced`] (`#join`, `#resume`, …) are never
    /// dropped: they are answered, and still use up the allowance. While a client's reads
    /// go over its limit, it is read 4 KiB at a time, once per round of the hub, so that
    /// one sending as fast as TCP allows slows down rather than take the hub's time from
    /// the others.
    Drop,
    /// Disconnect the client with
    /// [`DisconnectReason::RateLimited`](crate::DisconnectReason::RateLimited) (WebSocket
    /// close code 1008, policy violation) at its first message over the limit.
    Disconnect,
}

/// A limit on what each client may send, for
/// [`HubBuilder::rate_limit`](crate::HubBuilder::rate_limit): messages per second, bytes per
/// second, or both, each a token bucket with a burst, and what to do with a client over it.
///
/// Each client has an allowance of messages and one of bytes, full when it connects,
/// refilled continuously at the rate up to the burst. A message is taken while both
/// allowances hold at least one (message, byte); it uses one message and its payload's
/// bytes. A message larger than what is left (even larger than the byte burst) is taken
/// and overdraws the byte allowance, which must refill above zero before the next one:
/// no message size leaves a client stuck, and over time the rate holds.
///
/// What counts: every message a client sends once it is a client, control requests of
/// [`Protocol::Sequenced`] included. Not the authentication frame, heartbeat answers
/// (empty frames while [`heartbeat`](crate::HubBuilder::heartbeat) is on), or WebSocket
/// control frames (pings, pongs, close).
///
/// ```
/// use hubcast::{RateLimit, RateLimitPolicy};
///
/// // 50 messages a second with bursts of 100, and 1 MiB a second with bursts of 2 MiB.
/// let limit = RateLimit::new()
///     .messages(50.0, 100)
///     .bytes(1024.0 * 1024.0, 2 << 20)
///     .policy(RateLimitPolicy::HoldBack);
/// let hub = hubcast::Hub::builder().rate_limit(limit).bind("127.0.0.1:0")?;
/// # drop(hub);
/// # Ok::<(), hubcast::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateLimit {
    /// Messages per second and burst, if limited.
    pub(crate) messages: Option<(f64, u64)>,
    /// Bytes per second and burst, if limited.
    pub(crate) bytes: Option<(f64, u64)>,
    pub(crate) policy: RateLimitPolicy,
}

impl RateLimit {
    /// No limit yet, with [`RateLimitPolicy::HoldBack`]: set
    /// [`messages`](Self::messages), [`bytes`](Self::bytes) or both (`bind` refuses a
    /// limit with neither).
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `per_second` messages a second on average (from 0.001 to 10^9; fractions
    /// are fine: 0.5 is one every two seconds), and `burst` at once (from 1 to 2^32).
    pub fn messages(mut self, per_second: f64, burst: u64) -> Self {
        self.messages = Some((per_second, burst));
        self
    }

    /// At most `per_second` payload bytes a second on average (from 0.001 to 10^15), and
    /// `burst` at once (from 1 to 2^50; a single message may be larger, see above).
    pub fn bytes(mut self, per_second: f64, burst: u64) -> Self {
        self.bytes = Some((per_second, burst));
        self
    }

    /// What happens to a client over the limit. Default: [`RateLimitPolicy::HoldBack`].
    pub fn policy(mut self, policy: RateLimitPolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// What one topic offers its members, from the host's
/// [`topic_options`](crate::HubBuilder::topic_options) closure, asked once each time the
/// topic is created. The default: no presence, no history on join.
///
/// Both are told through [`Protocol::Sequenced`] (`bind` refuses `topic_options`
/// without it): the wire format is in `docs/PROTOCOL.md` ("Presence", "Last messages on
/// join").
///
/// ```
/// use hubcast::{Hub, Protocol, TopicOptions};
///
/// // Rooms tell their members who is in them (names up to 500 users, then counts), and a
/// // newcomer gets the last 20 messages of a room as it joins.
/// let hub = Hub::builder()
///     .protocol(Protocol::Sequenced)
///     .topic_options(|topic| {
///         if topic.starts_with("room/") {
///             TopicOptions::new().presence(true).presence_limit(500).history(20)
///         } else {
///             TopicOptions::new()
///         }
///     })
///     .bind("127.0.0.1:0")?;
/// # drop(hub);
/// # Ok::<(), hubcast::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicOptions {
    pub(crate) presence: bool,
    pub(crate) presence_limit: usize,
    pub(crate) presence_counts: Option<std::time::Duration>,
    pub(crate) history: usize,
}

impl Default for TopicOptions {
    fn default() -> TopicOptions {
        TopicOptions {
            presence: false,
            presence_limit: 1_000,
            presence_counts: Some(std::time::Duration::from_secs(1)),
            history: 0,
        }
    }
}

/// The shortest period of `presence_counts`: a shorter one is taken as this.
pub(crate) const PRESENCE_COUNTS_MIN: std::time::Duration = std::time::Duration::from_millis(100);

impl TopicOptions {
    /// The default options: no presence, no history on join.
    pub fn new() -> TopicOptions {
        TopicOptions::default()
    }

    /// Whether the topic tells its members who is in it: a snapshot of the members as a
    /// client joins (`#members`), then each change as a message of the topic's stream
    /// (`#presence`), numbered with its other messages, so a resume replays changes too.
    /// One entry per user ([`Admit::user`](crate::Admit::user)) however many of its
    /// connections are in the topic, or per connection without a user key. Default: off.
    ///
    /// Every member of the topic gets the changes (they are numbered in the stream all of
    /// them share): one message per member per change.
    pub fn presence(mut self, on: bool) -> TopicOptions {
        self.presence = on;
        self
    }

    /// The most entries whose names are published. Past it, members are told the count
    /// instead (then as it changes, at most once per
    /// [`presence_counts`](Self::presence_counts) period), and snapshots give the count
    /// only, until the entries fall to three quarters of it; then the whole list is sent
    /// once more. So a big room never costs more than one message per member per change,
    /// and a room near the limit does not flap. Default: 1,000. 0 gives counts only.
    pub fn presence_limit(mut self, entries: usize) -> TopicOptions {
        self.presence_limit = entries;
        self
    }

    /// While names are withheld (past [`presence_limit`](Self::presence_limit)), how often
    /// members are told the count if it changed: one `#presence … count <n>` message per
    /// period at most, however many come and go. Default: every second. `None`: never
    /// (clients ask `#who`). A period under 100 ms is taken as 100 ms.
    pub fn presence_counts(mut self, every: Option<std::time::Duration>) -> TopicOptions {
        self.presence_counts = every;
        self
    }

    /// How many of the topic's last messages a client gets as it joins, by default (a
    /// "cache channel"): served in the same step as the join, from the topic's replay ring
    /// (so at most what it holds), with no gap and no duplicate before the live messages.
    /// A client's `#join @topic <n>` asks for another number. Presence messages between
    /// them come too but do not count. Default: 0.
    pub fn history(mut self, messages: usize) -> TopicOptions {
        self.history = messages;
        self
    }
}
