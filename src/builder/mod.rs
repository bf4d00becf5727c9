//! The builder: every knob the hub has, its default and why. This file holds the builder and
//! its defaults; its setters are grouped in the files beside it, in the order the docs list
//! them (rustdoc lists a submodule's methods before this file's):
//!
//! - `clients`: framing, queues and slow clients, limits, deadlines, the host's closures;
//! - `listeners`: TLS, transports, WebSocket;
//! - `topics`: topics, the protocol and its replay rings;
//! - this file: the cluster, and `bind`;
//! - `validate`: the validation that turns a bad value into
//!   [`Error::Config`](crate::Error::Config) at `bind`, and the `Config` a valid builder makes.

use std::fmt;
use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::callbacks::{
    AcceptFilter, AdmitHook, Authenticator, Callback, TopicCheck, TopicOptionsOf,
};
use crate::config::ListenSpec;
use crate::options::WebSocketSettings;
use crate::{Framing, Hub, Protocol, RateLimit, Relay, Result, SlowClientPolicy, Transport};

mod clients;
mod listeners;
mod topics;
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
    framing: Framing,
    max_frame: usize,
    queue_bytes: usize,
    slow_client_policy: SlowClientPolicy,
    relay: Relay,
    max_clients: usize,
    backlog: u32,
    nodelay: bool,
    keepalive: Option<Duration>,
    send_buffer: Option<usize>,
    event_capacity: usize,
    command_capacity: usize,
    linger: Duration,
    flow_control: bool,
    idle_timeout: Option<Duration>,
    heartbeat: Option<Duration>,
    write_timeout: Option<Duration>,
    handshake_timeout: Duration,
    max_clients_per_ip: Option<usize>,
    max_clients_per_user: Option<usize>,
    accept_filter: Option<Callback<AcceptFilter>>,
    authenticator: Option<Callback<Authenticator>>,
    admit: Option<Callback<AdmitHook>>,
    rate_limit: Option<RateLimit>,
    #[cfg(feature = "tls")]
    tls: Option<crate::transport::tls::TlsSetting>,
    /// The transport of the address given to `bind`, if set.
    transport: Option<Transport>,
    /// Listeners besides the one `bind` makes.
    listen: Vec<ListenSpec>,
    websocket: WebSocketSettings,
    max_topics: usize,
    max_topics_per_client: usize,
    max_topic_len: usize,
    protocol: Protocol,
    replay_messages: usize,
    replay_bytes: usize,
    replay_age: Duration,
    replay_kept_bytes: usize,
    replay_total_bytes: usize,
    client_topics: Option<Callback<TopicCheck>>,
    topic_options: Option<Callback<TopicOptionsOf>>,
    presence_events: bool,
    #[cfg(feature = "nats")]
    cluster: Option<crate::Cluster>,
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
            max_clients_per_user: None,
            accept_filter: None,
            authenticator: None,
            admit: None,
            rate_limit: None,
            #[cfg(feature = "tls")]
            tls: None,
            transport: None,
            listen: Vec::new(),
            websocket: WebSocketSettings::default(),
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
            topic_options: None,
            presence_events: false,
            #[cfg(feature = "nats")]
            cluster: None,
        }
    }
}

impl HubBuilder {
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

    /// Binds the listener and starts the dispatcher thread.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) if a setting is out of range, [`Error::Tls`](crate::Error::Tls) if the TLS certificate
    /// or key cannot be used, [`Error::Bind`](crate::Error::Bind) (naming `addr` as given) if the address cannot
    /// be resolved or bound, [`Error::Start`](crate::Error::Start) if the event loop or thread cannot be created.
    pub fn bind<A: ToSocketAddrs + fmt::Debug>(self, addr: A) -> Result<Hub> {
        Hub::start(self.into_config()?, addr)
    }
}
