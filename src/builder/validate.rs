//! The validation that turns a bad builder setting into [`Error::Config`] at `bind`,
//! each message naming the setting and its limit, and the [`Config`] a valid builder makes.

use std::time::Duration;

use super::HubBuilder;
use crate::config::{self, Config, MAX_FRAME_LEN};
use crate::shared::{MAX_BUDGET_BYTES, MAX_BUDGET_COMMANDS};
use crate::topics::stream::RingLimits;
use crate::topics::TopicLimits;
use crate::wire::{codec, Settings, Wire};
use crate::{Error, Framing, Protocol, RateLimit, Relay, Result, Transport};

impl HubBuilder {
    /// The hub's [`Config`]: the settings checked, the TLS configuration loaded, and every
    /// derived value computed.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if a setting is out of range, [`Error::Tls`] if the TLS
    /// certificate or key cannot be used.
    pub(super) fn into_config(self) -> Result<Config> {
        self.validate()?;
        let main_transport = self.main_transport();
        let tick = config::tick([
            self.idle_timeout,
            self.heartbeat,
            self.write_timeout,
            self.has_handshake().then_some(self.handshake_timeout),
            self.websocket
                .http
                .sse_path
                .as_ref()
                .and(self.websocket.http.sse_keepalive),
        ]);
        Ok(Config {
            framing: self.framing,
            max_frame: self.max_frame,
            websocket: self.websocket,
            #[cfg(feature = "tls")]
            tls: self
                .tls
                .map(crate::transport::tls::TlsSetting::into_config)
                .transpose()?,
            main_transport,
            listen: self.listen,
            backlog: self.backlog,
            queue_bytes: self.queue_bytes,
            slow_client_policy: self.slow_client_policy,
            relay: self.relay,
            command_capacity: self.command_capacity,
            event_capacity: self.event_capacity,
            flow_control: self.flow_control,
            linger: self.linger,
            batch_max: config::batch_max(self.queue_bytes),
            // Frame offsets are 32-bit; no queue takes more than `queue_bytes` at once.
            max_framed_len: self.queue_bytes.min(MAX_FRAME_LEN),
            max_clients: self.max_clients,
            max_clients_per_ip: self.max_clients_per_ip,
            max_clients_per_user: self.max_clients_per_user,
            nodelay: self.nodelay,
            keepalive: self.keepalive,
            send_buffer: self.send_buffer,
            accept_filter: self.accept_filter,
            authenticator: self.authenticator,
            admit: self.admit,
            rate_limit: self.rate_limit,
            idle_timeout: self.idle_timeout,
            heartbeat: self.heartbeat,
            write_timeout: self.write_timeout,
            handshake_timeout: self.handshake_timeout,
            tick,
            topic_limits: TopicLimits {
                max_topics: self.max_topics,
                max_per_client: self.max_topics_per_client,
                max_name: self.max_topic_len,
            },
            sequenced: self.protocol == Protocol::Sequenced,
            ring_limits: RingLimits {
                messages: self.replay_messages,
                bytes: self.replay_bytes,
                age: config::ring_age(self.replay_age),
            },
            replay_kept_bytes: self.replay_kept_bytes,
            replay_total_bytes: self.replay_total_bytes,
            client_topics: self.client_topics,
            topic_options: self.topic_options,
            presence_events: self.presence_events,
            #[cfg(feature = "nats")]
            cluster: self.cluster,
        })
    }

    fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        let at_least_1 = [
            ("max_frame", self.max_frame),
            ("queue_bytes", self.queue_bytes),
            ("max_clients", self.max_clients),
            ("event_capacity", self.event_capacity),
            ("command_capacity", self.command_capacity),
            ("send_buffer", self.send_buffer.unwrap_or(1)),
            ("max_clients_per_ip", self.max_clients_per_ip.unwrap_or(1)),
            (
                "max_clients_per_user",
                self.max_clients_per_user.unwrap_or(1),
            ),
            ("max_topic_len", self.max_topic_len),
        ];
        if let Some((name, _)) = at_least_1.iter().find(|(_, v)| *v == 0) {
            return fail(format!("{name} must be at least 1"));
        }
        let at_most = [
            ("queue_bytes", self.queue_bytes, MAX_BUDGET_BYTES),
            (
                "command_capacity",
                self.command_capacity,
                MAX_BUDGET_COMMANDS,
            ),
            ("event_capacity", self.event_capacity, MAX_EVENT_CAPACITY),
            ("max_topics", self.max_topics, u32::MAX as usize - 1),
            (
                "send_buffer",
                self.send_buffer.unwrap_or(0),
                MAX_SEND_BUFFER,
            ),
        ];
        if let Some((name, value, max)) = at_most.iter().find(|(_, v, max)| v > max) {
            return fail(format!("{name} is {value}, over its limit of {max}"));
        }
        let zero = Some(Duration::ZERO);
        if self.idle_timeout == zero || self.heartbeat == zero || self.write_timeout == zero {
            return fail("timeouts and the heartbeat interval must not be zero".into());
        }
        if let Some(interval) = self.heartbeat.filter(|&i| i < MIN_HEARTBEAT) {
            // Deadlines are checked every 10 ms at the finest: two shorter intervals
            // would pass before the first ping went out.
            return fail(format!(
                "the heartbeat interval ({interval:?}) must be at least {MIN_HEARTBEAT:?}"
            ));
        }
        if let Some(idle) = self.keepalive.filter(|&idle| idle < MIN_KEEPALIVE) {
            return fail(format!(
                "the keep-alive idle time ({idle:?}) must be at least {MIN_KEEPALIVE:?} \
                 (None turns keep-alive off)"
            ));
        }
        if self.heartbeat.is_some() && self.framing == Framing::Raw {
            return fail("heartbeats need a framing with an empty frame, not Raw".into());
        }
        for transport in self.transports() {
            if transport.is_tls() && !cfg!(feature = "tls") {
                return fail(format!("{transport:?} needs the `tls` feature"));
            }
            if transport.is_tls() && !self.has_tls() {
                return fail(format!(
                    "{transport:?} needs a TLS configuration (HubBuilder::tls or tls_pem)"
                ));
            }
            if let Err(why) = Wire::check(transport, &self.wire_settings()) {
                return fail(why);
            }
        }
        if self.topic_options.is_some() && self.protocol != Protocol::Sequenced {
            // Presence and history are told through the protocol: without it the closure
            // would be asked for nothing.
            return fail("topic_options needs Protocol::Sequenced".into());
        }
        if self.protocol == Protocol::Sequenced && self.framing == Framing::Raw {
            return fail("Protocol::Sequenced needs message boundaries, not Framing::Raw".into());
        }
        #[cfg(feature = "nats")]
        if let Some(cluster) = &self.cluster {
            if cluster.urls.is_empty() {
                return fail("a cluster needs at least one NATS server URL".into());
            }
            // As the NATS client will parse them: a URL it cannot use would leave the hub
            // outside its cluster for good, with only a log line to say so.
            for url in &cluster.urls {
                if url.trim().is_empty() {
                    return fail(format!("NATS server URL {url:?}: empty"));
                }
                if let Err(err) = url.parse::<async_nats::ServerAddr>() {
                    return fail(format!("NATS server URL {url:?}: {err}"));
                }
            }
            // What the connection reads and parses at every (re)connect: a file it cannot
            // read or a seed it cannot parse would keep the hub out of its cluster for good.
            if let Err(err) = cluster.check_credentials() {
                return fail(err);
            }
            // A topic's subject must fit in the broker's control line (4,096 bytes by
            // default) with room for the command, or every publish to it would break the
            // connection.
            let subject = crate::cluster::subject_len_at_most(&cluster.prefix, self.max_topic_len);
            if subject > crate::cluster::MAX_SUBJECT {
                return fail(format!(
                    "with a cluster, max_topic_len ({}) makes NATS subjects of up to {subject} \
                     bytes, over {}",
                    self.max_topic_len,
                    crate::cluster::MAX_SUBJECT
                ));
            }
            let valid_token = |t: &str| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            };
            if !cluster.prefix.split('.').all(valid_token) {
                return fail(format!(
                    "cluster prefix {:?}: tokens of letters, digits, - and _, dot-separated",
                    cluster.prefix
                ));
            }
            if cluster.probe_interval < crate::cluster::MIN_PROBE_INTERVAL {
                return fail(format!(
                    "the cluster's probe interval ({:?}) must be at least {:?}",
                    cluster.probe_interval,
                    crate::cluster::MIN_PROBE_INTERVAL
                ));
            }
        }
        if let Some(limit) = &self.rate_limit {
            if let Err(why) = check_rate_limit(limit) {
                return fail(format!("rate_limit: {why}"));
            }
        }
        if self.websocket.max_head < 256 {
            return fail("websocket_max_head must be at least 256 bytes".into());
        }
        if let Err(why) = check_compression(&self.websocket.compression) {
            return fail(why);
        }
        if let Err(why) = self.check_http() {
            return fail(why);
        }
        if self.relay != Relay::Off {
            // Every frame a client may send must fit in a queue once relayed.
            let framed = codec::encoded_len_of(self.framing, self.max_frame);
            let max = self.queue_bytes.min(MAX_FRAME_LEN);
            if framed.map_or(true, |len| len > max) {
                return fail(format!(
                    "in relay mode, max_frame ({}) framed must fit in queue_bytes ({})",
                    self.max_frame, self.queue_bytes
                ));
            }
        }
        Ok(())
    }

    /// Checks the HTTP knobs of WebSocket listeners: paths well formed and distinct, page
    /// types valid header values, event-stream timings within bounds, and a WebSocket
    /// listener to serve them on.
    fn check_http(&self) -> std::result::Result<(), String> {
        let http = &self.websocket.http;
        if !http.serves_http() {
            return Ok(());
        }
        if !self.transports().any(Transport::is_websocket) {
            return Err(
                "sse_path, page, metrics_path and the health paths are served on WebSocket \
                 listeners: add one (Transport::WebSocket or WebSocketTls)"
                    .into(),
            );
        }
        let mut seen: Vec<(&str, &str)> = Vec::new();
        let websocket = self
            .websocket
            .path
            .as_deref()
            .map(|p| ("websocket_path", p));
        for (knob, path) in http.paths().chain(websocket) {
            let bad = |c: char| c == '?' || c == '#' || c.is_whitespace() || c.is_control();
            if !path.starts_with('/') || path.contains(bad) {
                return Err(format!(
                    "{knob} {path:?}: a path starts with / and has no ?, #, white space or \
                     control character"
                ));
            }
            if let Some((other, _)) = seen.iter().find(|(_, p)| *p == path) {
                return Err(format!("{knob} {path:?} is also {other}'s path"));
            }
            seen.push((knob, path));
        }
        for page in &http.pages {
            let visible = |c: char| c == ' ' || c.is_ascii_graphic();
            if page.content_type.is_empty() || !page.content_type.chars().all(visible) {
                return Err(format!(
                    "page {:?}: content type {:?} is not visible ASCII",
                    page.path, page.content_type
                ));
            }
        }
        if let Some(interval) = http.sse_keepalive.filter(|&i| i < MIN_HEARTBEAT) {
            return Err(format!(
                "the sse_keepalive interval ({interval:?}) must be at least {MIN_HEARTBEAT:?}"
            ));
        }
        if !(MIN_SSE_RETRY..=MAX_SSE_RETRY).contains(&http.sse_retry) {
            return Err(format!(
                "sse_retry ({:?}) must be within {MIN_SSE_RETRY:?} and {MAX_SSE_RETRY:?}",
                http.sse_retry
            ));
        }
        Ok(())
    }

    /// Whether a TLS configuration was given.
    fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The transport of the address given to `bind`.
    fn main_transport(&self) -> Transport {
        self.transport.unwrap_or(if self.has_tls() {
            Transport::Tls
        } else {
            Transport::Tcp
        })
    }

    /// Every transport the hub listens with.
    fn transports(&self) -> impl Iterator<Item = Transport> + '_ {
        std::iter::once(self.main_transport()).chain(self.listen.iter().map(|l| l.transport))
    }

    /// Whether some connections have a handshake before they become clients (TLS, a
    /// WebSocket upgrade, or an authentication frame).
    fn has_handshake(&self) -> bool {
        let opens = |t: Transport| t.is_tls() || Wire::of(t).opens_with_http();
        self.authenticator.is_some() || self.transports().any(opens)
    }

    /// What the wires frame and read by, as set.
    fn wire_settings(&self) -> Settings<'_> {
        Settings::new(
            self.framing,
            self.max_frame,
            self.protocol == Protocol::Sequenced,
            self.queue_bytes,
            &self.websocket,
        )
    }
}

/// Checks a [`RateLimit`]: a limit set, every rate a finite number within its bounds,
/// every burst at least 1 and within its bound (so no refill or wait can overflow).
fn check_rate_limit(limit: &RateLimit) -> std::result::Result<(), String> {
    let limits = [
        (
            "messages",
            limit.messages,
            MAX_MESSAGE_RATE,
            MAX_MESSAGE_BURST,
        ),
        ("bytes", limit.bytes, MAX_BYTE_RATE, MAX_BYTE_BURST),
    ];
    if limits.iter().all(|(_, set, _, _)| set.is_none()) {
        return Err("neither messages nor bytes is limited (RateLimit::messages, ::bytes)".into());
    }
    for (name, set, max_rate, max_burst) in limits {
        let Some((rate, burst)) = set else {
            continue;
        };
        // Written so that NaN fails too.
        if !(rate >= MIN_RATE && rate <= max_rate) {
            return Err(format!(
                "{name} per second is {rate}, not within {MIN_RATE} and {max_rate:e}"
            ));
        }
        if burst == 0 || burst > max_burst {
            return Err(format!(
                "the {name} burst is {burst}, not within 1 and {max_burst}"
            ));
        }
    }
    Ok(())
}

/// The slowest rate a [`RateLimit`] takes: one a thousand seconds.
const MIN_RATE: f64 = 0.001;
/// The fastest message rate a [`RateLimit`] takes.
const MAX_MESSAGE_RATE: f64 = 1e9;
/// The fastest byte rate a [`RateLimit`] takes.
const MAX_BYTE_RATE: f64 = 1e15;
/// The largest message burst a [`RateLimit`] takes.
const MAX_MESSAGE_BURST: u64 = 1 << 32;
/// The largest byte burst a [`RateLimit`] takes (exact as a float).
const MAX_BYTE_BURST: u64 = 1 << 50;

/// The shortest [`HubBuilder::heartbeat`]: the finest interval deadlines are checked at.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
/// The shortest [`HubBuilder::sse_retry`].
const MIN_SSE_RETRY: Duration = Duration::from_millis(1);
/// The longest [`HubBuilder::sse_retry`].
const MAX_SSE_RETRY: Duration = Duration::from_secs(3600);
/// The shortest [`HubBuilder::keepalive`] idle time the kernel takes (whole seconds).
const MIN_KEEPALIVE: Duration = Duration::from_secs(1);

/// The largest [`HubBuilder::event_capacity`]: what a forgotten subscription may hold.
const MAX_EVENT_CAPACITY: usize = 1 << 20;
/// The largest [`HubBuilder::send_buffer`] the kernel's `int` option takes.
const MAX_SEND_BUFFER: usize = i32::MAX as usize;

/// Why the WebSocket compression knobs cannot be used, if they cannot: turned on without
/// the `deflate` feature, or a level out of 1..=9.
fn check_compression(c: &crate::options::CompressionSettings) -> std::result::Result<(), String> {
    if c.enabled && !cfg!(feature = "deflate") {
        return Err("websocket_compression needs the `deflate` feature".into());
    }
    if !(1..=9).contains(&c.level) {
        return Err(format!(
            "websocket_compression_level must be 1 to 9, not {}",
            c.level
        ));
    }
    Ok(())
}
