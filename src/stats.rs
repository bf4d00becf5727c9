//! Counters the dispatcher keeps and the snapshots the host reads.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::{ClientId, DisconnectReason};

/// A snapshot of a hub's counters, from [`Hub::stats`](crate::Hub::stats).
///
/// Counters are totals since the hub started. They are published by the dispatcher after
/// each round of work, so a snapshot may trail the newest events by one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Clients connected now.
    pub connected: u64,
    /// Of those, clients the host accepted itself and handed over with
    /// [`Hub::adopt`](crate::Hub::adopt) (they belong to no listener).
    pub adopted: u64,
    /// Connections accepted and registered as clients.
    pub accepted: u64,
    /// Connections closed at once: over [`max_clients`](crate::HubBuilder::max_clients) or
    /// [`max_clients_per_ip`](crate::HubBuilder::max_clients_per_ip), turned away by the
    /// [`accept_filter`](crate::HubBuilder::accept_filter), or shed while the process was
    /// out of file descriptors.
    pub refused: u64,
    /// Connections the [authenticator](crate::HubBuilder::authenticate) rejected (or
    /// that it panicked on), and those admitted with an invalid
    /// [user key](crate::Admit::user).
    pub rejected: u64,
    /// Connections closed before becoming clients: TLS handshake failed, no authentication
    /// frame within [`handshake_timeout`](crate::HubBuilder::handshake_timeout), or closed
    /// or broke the framing first.
    pub handshake_failed: u64,
    /// Times `accept` failed (for example `EMFILE`, out of file descriptors) and the hub
    /// backed off before trying again.
    pub accept_errors: u64,
    /// Frames received from clients.
    pub frames_in: u64,
    /// Payload bytes received from clients (framing included).
    pub bytes_in: u64,
    /// Frames written to clients, counted once per client.
    pub frames_out: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Frames dropped for slow clients under [`DropOldest`](crate::SlowClientPolicy::DropOldest)
    /// or [`DropNewest`](crate::SlowClientPolicy::DropNewest).
    pub dropped: u64,
    /// Clients that left, by reason; see [`Stats::disconnects`].
    pub disconnects: Disconnects,
    /// How long the hub has been paused because a [`Subscription`](crate::Subscription)
    /// is full, if it is now: it reads no client and accepts no connection until the
    /// subscription is drained.
    pub paused: Option<Duration>,
    /// Times the hub paused for a full subscription.
    pub pauses: u64,
    /// Times a client slow to read held the others back: while it caught up, the hub read
    /// no client (and, with [`flow_control`](crate::HubBuilder::flow_control), took no host
    /// call) — never for more than a second at once. Counted once per such stretch, as the
    /// dispatcher noticed it.
    pub held_back: u64,
    /// Times a client over its [`rate_limit`](crate::HubBuilder::rate_limit) was held back
    /// under [`RateLimitPolicy::HoldBack`](crate::RateLimitPolicy::HoldBack): the hub
    /// stopped reading it until its allowance refilled. Counted once per stop.
    pub rate_held: u64,
    /// Messages over a client's [`rate_limit`](crate::HubBuilder::rate_limit) dropped
    /// under [`RateLimitPolicy::Drop`](crate::RateLimitPolicy::Drop). (Clients disconnected
    /// for it are counted in `disconnects`, as
    /// [`RateLimited`](crate::DisconnectReason::RateLimited).)
    pub rate_dropped: u64,
    /// Messages a client sent in relay mode that reached no other client of this hub:
    /// under [`Relay::Topics`](crate::Relay::Topics) its sender was in no topic, or in
    /// topics with no other member; under [`Relay::All`](crate::Relay::All) and
    /// [`Relay::Others`](crate::Relay::Others), no other client was connected. Subscribers
    /// still got each as [`Event::Message`](crate::Event::Message); in a cluster, other
    /// nodes may have. A client put in its topics at connect
    /// ([`HubBuilder::admit`](crate::HubBuilder::admit)) never sends one of these by
    /// racing its own join.
    pub relayed_to_nobody: u64,
    /// Topics an [`Admit`](crate::Admit) named that the client could not be put in: an
    /// invalid name, or over a topic limit. Each is skipped (and logged at `warn`); the
    /// client is admitted all the same.
    pub admit_topics_refused: u64,
    /// Messages the [`client_topics`](crate::HubBuilder::client_topics) closure refused to
    /// relay ([`TopicAction::Publish`](crate::TopicAction::Publish)), counted once per
    /// message and topic refused (a message refused in two of its sender's topics counts
    /// twice; under [`Relay::All`](crate::Relay::All) and
    /// [`Relay::Others`](crate::Relay::Others), once per message). Subscribers still got
    /// each as [`Event::Message`](crate::Event::Message). A message refused everywhere is
    /// counted here, not in `relayed_to_nobody`.
    pub publish_refused: u64,
    /// Times a host closure ([`accept_filter`](crate::HubBuilder::accept_filter),
    /// [`authenticate`](crate::HubBuilder::authenticate),
    /// [`admit`](crate::HubBuilder::admit),
    /// [`client_topics`](crate::HubBuilder::client_topics)) panicked; each cost one
    /// connection, or one request (or one message's relay to one topic) for
    /// `client_topics`.
    pub callback_panics: u64,
    /// Streams clients resumed ([`Protocol::Sequenced`](crate::Protocol::Sequenced)).
    pub resumes: u64,
    /// Resume requests that could not be met.
    pub resumes_refused: u64,
    /// Messages sent again to clients that resumed.
    pub replayed: u64,
    /// What every replay ring holds now, in bytes of memory: messages as framed, with
    /// their bookkeeping ([`Protocol::Sequenced`](crate::Protocol::Sequenced)). At most
    /// [`replay_total_bytes`](crate::HubBuilder::replay_total_bytes), give or take one
    /// batch of messages.
    pub replay_bytes: u64,
    /// Messages dropped from replay rings before their time to keep the rings within
    /// [`replay_total_bytes`](crate::HubBuilder::replay_total_bytes): the oldest of the
    /// largest rings first. A resume that needs one is answered `old`.
    pub replay_trimmed: u64,
    /// Topics with no member kept now for their replay rings, so that members who come
    /// back can resume ([`Protocol::Sequenced`](crate::Protocol::Sequenced)).
    pub kept_topics: u64,
    /// What the kept topics' replay rings hold now, counted as `replay_bytes` is: at most
    /// [`replay_kept_bytes`](crate::HubBuilder::replay_kept_bytes).
    pub kept_bytes: u64,
    /// Kept topics evicted before their rings emptied by age: the oldest, to keep the kept
    /// rings within [`replay_kept_bytes`](crate::HubBuilder::replay_kept_bytes), or to make
    /// room for a new topic when the hub held
    /// [`max_topics`](crate::HubBuilder::max_topics). A resume of one is answered `epoch`.
    pub topics_evicted: u64,
    /// Connections refused because their [user](crate::Admit::user) had
    /// [`max_clients_per_user`](crate::HubBuilder::max_clients_per_user) clients already.
    /// Counted here only, not in `refused` or `rejected`.
    pub user_cap_refused: u64,
    /// Plain HTTP requests a WebSocket listener answered and closed: pages, the metrics,
    /// health, and 404 or 405 for what it does not serve (not upgrades or event streams,
    /// which become clients, nor malformed requests, counted in `handshake_failed`).
    pub http_requests: u64,
    /// Event streams opened (server-sent events: clients counted in `accepted` too).
    pub sse_opened: u64,
    /// Changes of presence told to topics' members: `#presence` messages numbered (see
    /// [`TopicOptions::presence`](crate::TopicOptions::presence)), each sent once to every
    /// member of its topic.
    pub presence_changes: u64,
    /// Binary messages not sent to event streams, which carry text (counted once per
    /// message and wire of event streams, not per client; see
    /// [`HubBuilder::sse_binary_base64`](crate::HubBuilder::sse_binary_base64)).
    pub sse_binary_skipped: u64,
    /// WebSocket clients connected now that negotiated compression (`permessage-deflate`,
    /// [`websocket_compression`](crate::HubBuilder::websocket_compression), feature
    /// `deflate`; all the compression counts are zero without it).
    pub compressed_clients: u64,
    /// Messages compressed for WebSocket clients: once per message and batch (or replay),
    /// not per client; a message whose compression was not smaller went plain and is not
    /// counted.
    pub compressed_frames: u64,
    /// Bytes of those messages before compression.
    pub compressed_bytes_in: u64,
    /// Bytes of those messages after compression (frame headers not counted).
    pub compressed_bytes_out: u64,
    /// Time spent compressing, in nanoseconds (messages sent plain after all included).
    pub compress_nanos: u64,
    /// Compressed messages received from WebSocket clients and inflated.
    pub inflated_messages: u64,
    /// The cluster connection (feature `nats`; all zero without a cluster).
    pub cluster: ClusterStats,
}

/// A hub's cluster connection (feature `nats`), in [`Stats::cluster`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Connected to the broker now.
    pub connected: bool,
    /// The end-to-end probe is late now (see
    /// [`ClusterState::Partitioned`](crate::ClusterState::Partitioned)).
    pub partitioned: bool,
    /// Messages published for the other nodes.
    pub sent: u64,
    /// Messages received from the other nodes.
    pub received: u64,
    /// Messages lost between this node and the others: not propagated to them (the broker
    /// was away, or the node's buffer for it, `Cluster::buffer_bytes`, was full; local
    /// clients got them), or from them and not taken (the node's buffer of messages
    /// received, as large, was full: its dispatcher was a whole buffer behind).
    pub lost: u64,
    /// Times the NATS client dropped a message from the other nodes because this node had
    /// not taken the ones before it yet (its subscription buffer was full); such messages
    /// are not in `lost`. The broker reports no slow consumer: it closes the connection,
    /// counted in `disconnects`.
    pub slow_consumer: u64,
    /// Times the connection to the broker was lost (it reconnects by itself).
    pub disconnects: u64,
}

impl Stats {
    /// Clients that left for `reason` (all [`DisconnectReason::Io`] kinds count together).
    pub fn disconnects(&self, reason: DisconnectReason) -> u64 {
        self.disconnects.0[reason.index()]
    }
}

/// Disconnect counts by [`DisconnectReason`]; read them with [`Stats::disconnects`].
///
/// Its `Debug` output lists the reasons with a count, such as `{Slow: 2, Kicked: 1}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Disconnects([u64; DisconnectReason::COUNT]);

impl fmt::Debug for Disconnects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                DisconnectReason::NAMES
                    .iter()
                    .zip(self.0)
                    .filter(|(_, n)| *n > 0)
                    .map(|(&name, n)| (Name(name), n)),
            )
            .finish()
    }
}

impl Disconnects {
    /// All disconnects, whatever the reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// A name printed without quotes.
struct Name(&'static str);

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// One connected client, from [`Hub::clients`](crate::Hub::clients).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The client's id.
    pub id: ClientId,
    /// The client's address.
    pub addr: SocketAddr,
    /// The name the [authenticator](crate::HubBuilder::authenticate) gave it, if any.
    pub name: Option<String>,
    /// Frames dropped for this client by the slow-client policy.
    pub dropped: u64,
    /// The topics it is in, by name.
    pub topics: Vec<String>,
    /// Its [user key](crate::Admit::user), if it was admitted with one; also
    /// [`ClientInfo::user`].
    pub user: Option<String>,
}

impl ClientInfo {
    /// Its [user key](crate::Admit::user), if it was admitted with one.
    ///
    /// ```
    /// use hubcast::{Admit, Event, Hub};
    /// use std::net::TcpStream;
    ///
    /// let hub = Hub::builder().admit(|_| Admit::new().user("alice")).bind("127.0.0.1:0")?;
    /// let events = hub.subscribe();
    /// let _tab = TcpStream::connect(hub.local_addr())?;
    /// let Ok(Event::Connected { client, .. }) = events.recv() else { panic!() };
    /// assert_eq!(hub.client(client).unwrap().user(), Some("alice"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// One topic, from [`Hub::topics`](crate::Hub::topics).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// How many clients are in it.
    pub members: usize,
}

/// One connection in a topic, from [`Hub::members`](crate::Hub::members).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The client.
    pub client: ClientId,
    /// Its [user key](crate::Admit::user), if it was admitted with one. A user's
    /// connections are one entry of the topic's presence.
    pub user: Option<String>,
}

/// What [`Hub::shutdown`](crate::Hub::shutdown) could not deliver before its deadline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Clients that were connected when the shutdown began.
    pub clients: usize,
    /// Clients whose queues were written out in full before they were closed.
    pub flushed: usize,
    /// Clients closed with messages still queued, with how many frames and bytes each lost.
    pub undelivered: Vec<Undelivered>,
}

impl ShutdownReport {
    /// Whether every queued message reached the kernel of every client.
    pub fn is_complete(&self) -> bool {
        self.undelivered.is_empty()
    }
}

/// Messages one client did not get because the shutdown deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Undelivered {
    /// The client.
    pub client: ClientId,
    /// Whole frames never written to it (a partly written frame counts as undelivered).
    pub frames: u64,
    /// Bytes never written to it.
    pub bytes: u64,
}

/// The live counters, written by the dispatcher only and read by [`Counters::snapshot`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicU64,
    /// Live clients of no listener (`Hub::adopt`).
    pub(crate) adopted: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) handshake_failed: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) disconnects: [AtomicU64; DisconnectReason::COUNT],
    /// Since when the hub is paused, in nanoseconds since its epoch plus one; 0: it is not.
    pub(crate) paused_since: AtomicU64,
    pub(crate) pauses: AtomicU64,
    pub(crate) callback_panics: AtomicU64,
    pub(crate) held_back: AtomicU64,
    pub(crate) rate_held: AtomicU64,
    pub(crate) rate_dropped: AtomicU64,
    pub(crate) relayed_to_nobody: AtomicU64,
    pub(crate) admit_topics_refused: AtomicU64,
    pub(crate) user_cap_refused: AtomicU64,
    pub(crate) http_requests: AtomicU64,
    pub(crate) sse_opened: AtomicU64,
    pub(crate) presence_changes: AtomicU64,
    pub(crate) sse_binary_skipped: AtomicU64,
    pub(crate) compressed_frames: AtomicU64,
    pub(crate) compressed_bytes_in: AtomicU64,
    pub(crate) compressed_bytes_out: AtomicU64,
    pub(crate) compress_nanos: AtomicU64,
    pub(crate) inflated_messages: AtomicU64,
    pub(crate) publish_refused: AtomicU64,
    pub(crate) resumes: AtomicU64,
    pub(crate) resumes_refused: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) kept_topics: AtomicU64,
    pub(crate) kept_bytes: AtomicU64,
    pub(crate) replay_bytes: AtomicU64,
    pub(crate) replay_trimmed: AtomicU64,
    pub(crate) topics_evicted: AtomicU64,
    pub(crate) cluster_connected: AtomicBool,
    pub(crate) cluster_partitioned: AtomicBool,
    pub(crate) cluster_sent: AtomicU64,
    pub(crate) cluster_received: AtomicU64,
    pub(crate) cluster_lost: AtomicU64,
    pub(crate) cluster_slow_consumer: AtomicU64,
    pub(crate) cluster_reconnects: AtomicU64,
}

impl Counters {
    /// The counters now; `epoch` is the origin of `paused_since`.
    pub(crate) fn snapshot(&self, epoch: Instant) -> Stats {
        let paused = match self.paused_since.load(Relaxed) {
            0 => None,
            since => {
                let since = epoch + Duration::from_nanos(since - 1);
                Some(Instant::now().saturating_duration_since(since))
            }
        };
        Stats {
            connected: self.connected.load(Relaxed),
            adopted: self.adopted.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            refused: self.refused.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            handshake_failed: self.handshake_failed.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            frames_in: self.frames_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            frames_out: self.frames_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            disconnects: Disconnects(std::array::from_fn(|i| self.disconnects[i].load(Relaxed))),
            paused,
            pauses: self.pauses.load(Relaxed),
            callback_panics: self.callback_panics.load(Relaxed),
            held_back: self.held_back.load(Relaxed),
            rate_held: self.rate_held.load(Relaxed),
            rate_dropped: self.rate_dropped.load(Relaxed),
            relayed_to_nobody: self.relayed_to_nobody.load(Relaxed),
            admit_topics_refused: self.admit_topics_refused.load(Relaxed),
            publish_refused: self.publish_refused.load(Relaxed),
            resumes: self.resumes.load(Relaxed),
            resumes_refused: self.resumes_refused.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            kept_topics: self.kept_topics.load(Relaxed),
            kept_bytes: self.kept_bytes.load(Relaxed),
            replay_bytes: self.replay_bytes.load(Relaxed),
            replay_trimmed: self.replay_trimmed.load(Relaxed),
            topics_evicted: self.topics_evicted.load(Relaxed),
            user_cap_refused: self.user_cap_refused.load(Relaxed),
            http_requests: self.http_requests.load(Relaxed),
            sse_opened: self.sse_opened.load(Relaxed),
            presence_changes: self.presence_changes.load(Relaxed),
            sse_binary_skipped: self.sse_binary_skipped.load(Relaxed),
            // A gauge of the wire's, filled in by the caller that holds the wires.
            compressed_clients: 0,
            compressed_frames: self.compressed_frames.load(Relaxed),
            compressed_bytes_in: self.compressed_bytes_in.load(Relaxed),
            compressed_bytes_out: self.compressed_bytes_out.load(Relaxed),
            compress_nanos: self.compress_nanos.load(Relaxed),
            inflated_messages: self.inflated_messages.load(Relaxed),
            cluster: ClusterStats {
                connected: self.cluster_connected.load(Relaxed),
                partitioned: self.cluster_partitioned.load(Relaxed),
                sent: self.cluster_sent.load(Relaxed),
                received: self.cluster_received.load(Relaxed),
                lost: self.cluster_lost.load(Relaxed),
                slow_consumer: self.cluster_slow_consumer.load(Relaxed),
                disconnects: self.cluster_reconnects.load(Relaxed),
            },
        }
    }
}

/// Counts the dispatcher adds up during one round and publishes at its end, so the hot
/// write path touches no shared cache line.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) frames_in: u64,
    pub(crate) bytes_in: u64,
    pub(crate) frames_out: u64,
    pub(crate) bytes_out: u64,
    pub(crate) relayed_to_nobody: u64,
}

impl Tally {
    pub(crate) fn publish(&mut self, counters: &Counters) {
        // What the dispatcher's thread compressed and inflated this round.
        #[cfg(feature = "deflate")]
        crate::wire::deflate::publish(counters);
        let any = self.frames_in | self.bytes_in | self.frames_out | self.bytes_out;
        if any | self.relayed_to_nobody != 0 {
            counters.frames_in.fetch_add(self.frames_in, Relaxed);
            counters.bytes_in.fetch_add(self.bytes_in, Relaxed);
            counters.frames_out.fetch_add(self.frames_out, Relaxed);
            counters.bytes_out.fetch_add(self.bytes_out, Relaxed);
            if self.relayed_to_nobody != 0 {
                counters
                    .relayed_to_nobody
                    .fetch_add(self.relayed_to_nobody, Relaxed);
            }
            *self = Tally::default();
        }
    }
}
