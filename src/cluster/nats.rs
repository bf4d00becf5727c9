//! The backplane thread (feature `nats`): one OS thread with a current-thread tokio runtime
//! of its own, running the official `async-nats` client. Nothing else in hubcast runs on a
//! runtime.
//!
//! It publishes what the dispatcher forwards, subscribes to `P.all` and to each topic with
//! local members, hands what it receives to the dispatcher as `Command::Remote` frames
//! (never forwarded again), sends a probe through the broker and back every
//! `probe_interval`, and reports the connection's state in `Stats` and as events.
//! `async-nats` reconnects by itself (with our backoff and jitter) and re-subscribes every
//! subscription after a reconnect.

use std::collections::HashMap;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::{Client, Event as NatsEvent, HeaderMap, RequestErrorKind};
use bytes::Bytes;
use crossbeam_channel::Sender;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::connect::{connected, options, probe_client};
use super::unreachable::{causes, Outage};
use super::{kind_received, kind_value, subject_for, BridgeReceiver, Cluster, Out, KIND_HEADER};
use crate::command::{Batch, Command, Frames, Target};
use crate::shared::Shared;
use crate::wire::codec;
use crate::{ClusterState, Framing, MessageKind};

/// A message received from another node.
struct Received {
    /// `None`: every client; else the topic.
    topic: Option<Arc<str>>,
    payload: Bytes,
    /// From its header (see `cluster`'s documentation).
    kind: Option<MessageKind>,
}

/// How long the backplane thread may go on publishing once the dispatcher is gone: what
/// the broker has not taken by then (a frozen broker takes nothing, and a publish waits on
/// it for good) is given up, so that the hub's shutdown is never held up by the broker.
const GIVE_UP_AFTER: Duration = Duration::from_secs(1);

/// Starts the backplane thread. It ends when the dispatcher drops its bridge: at once if
/// the broker takes what is left or the node is not connected, else [`GIVE_UP_AFTER`]
/// later.
pub(crate) fn spawn(
    cluster: Cluster,
    receiver: BridgeReceiver,
    shared: Arc<Shared>,
    commands: Sender<Command>,
    framing: Framing,
    batch_max: usize,
) -> std::io::Result<JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("hubcast-nats".into())
        .spawn(move || {
            let counters = Arc::clone(&shared);
            let publishing = Arc::new(AtomicBool::new(false));
            let node = Node {
                prefix: cluster.prefix.clone(),
                shared,
                commands,
                framing,
                batch_max,
                publishing: Arc::clone(&publishing),
            };
            let BridgeReceiver {
                mut rx,
                pending,
                closed,
            } = receiver;
            runtime.block_on(async {
                tokio::select! {
                    () = node.run(cluster, &mut rx, &pending) => {}
                    waited = give_up(closed, &counters) => {
                        if waited {
                            log::warn!(
                                "hubcast cluster: the broker took nothing for {GIVE_UP_AFTER:?} \
                                 after the hub stopped; the rest is not propagated"
                            );
                        }
                    }
                }
            });
            // What the dispatcher handed over and was never published: the message given
            // up on in the middle of its publish, if any, and those after it.
            rx.close();
            let mut lost = u64::from(publishing.load(SeqCst));
            while let Ok(out) = rx.try_recv() {
                if matches!(out, Out::All(..) | Out::Topic(..)) {
                    lost += 1;
                }
            }
            let counters = &counters.counters;
            counters.cluster_lost.fetch_add(lost, Relaxed);
            counters.cluster_connected.store(false, SeqCst);
            // Shutting the runtime down drops the NATS connections. It does not wait for a
            // look at an unreachable server (`causes`, a blocking task of up to a second
            // per address, longer for a name that does not resolve), which would hold up
            // the hub's shutdown: that thread is left to end by itself.
            runtime.shutdown_timeout(Duration::ZERO);
        })
}

/// What the backplane thread's tasks need of the hub.
#[derive(Clone)]
struct Node {
    prefix: String,
    shared: Arc<Shared>,
    commands: Sender<Command>,
    framing: Framing,
    /// The most frame bytes handed to the dispatcher in one command, as a host's batch.
    batch_max: usize,
    /// A message is being handed to the NATS client (which waits while the broker takes
    /// nothing).
    publishing: Arc<AtomicBool>,
}

/// Messages received from other nodes on their way to the dispatcher, bounded in bytes
/// like the outgoing side: past `max`, a message is dropped and counted as lost (the
/// dispatcher is behind by a whole buffer).
#[derive(Clone)]
struct Inbound {
    tx: mpsc::UnboundedSender<Received>,
    pending: Arc<AtomicUsize>,
    max: usize,
}

/// Ready [`GIVE_UP_AFTER`] after the dispatcher has dropped the bridge (`true`), or at
/// once if the node is not connected to a broker then (`false`): nothing more can be
/// published, so a shutdown need not wait for a broker that is away.
async fn give_up(closed: tokio::sync::oneshot::Receiver<()>, shared: &Shared) -> bool {
    let _ = closed.await;
    if !shared.counters.cluster_connected.load(SeqCst) {
        return false;
    }
    tokio::time::sleep(GIVE_UP_AFTER).await;
    true
}

impl Node {
    async fn run(
        self,
        cluster: Cluster,
        outgoing: &mut mpsc::UnboundedReceiver<Out>,
        pending: &AtomicUsize,
    ) {
        let (events_tx, events) = mpsc::unbounded_channel();
        let options = match options(&cluster, events_tx).await {
            Ok(options) => options,
            Err(err) => {
                log::error!("hubcast cluster: bad NATS settings: {err}");
                return;
            }
        };
        // With `retry_on_initial_connect`, this returns at once and connects in the
        // background; it fails only on a malformed URL, which `bind` refuses. The URLs go
        // as a list: async-nats parses a single string as one URL, commas and all.
        let urls = cluster.urls.join(",");
        let client = match options.connect(cluster.urls.as_slice()).await {
            Ok(client) => client,
            Err(err) => {
                log::error!("hubcast cluster: cannot connect to NATS at {urls}: {err}");
                return;
            }
        };
        // Events and the probe run as tasks of their own, so that a publish waiting on a
        // frozen broker never holds up noticing it.
        let watch = tokio::spawn(self.clone().watch(events, cluster.urls.clone()));
        let probe = tokio::spawn(self.clone().probe(cluster.clone(), client.clone()));
        let (received_tx, mut received) = mpsc::unbounded_channel::<Received>();
        let inbound = Inbound {
            tx: received_tx,
            pending: Arc::new(AtomicUsize::new(0)),
            max: cluster.buffer_bytes,
        };
        let mut subscriptions: HashMap<Arc<str>, tokio::task::JoinHandle<()>> = HashMap::new();
        let all_subject = format!("{}.all", self.prefix);
        let all = self
            .subscribe(&client, all_subject.clone(), None, inbound.clone())
            .await;
        let counters = &self.shared.counters;
        loop {
            tokio::select! {
                out = outgoing.recv() => {
                    let Some(out) = out else {
                        // The dispatcher is gone: the hub stopped.
                        break;
                    };
                    match out {
                        Out::All(payload, _) | Out::Topic(_, payload, _) if !connected(&client) => {
                            pending.fetch_sub(payload.len(), SeqCst);
                            counters.cluster_lost.fetch_add(1, Relaxed);
                        }
                        Out::All(payload, kind) => {
                            let len = payload.len();
                            self.publish(&client, all_subject.clone(), payload, kind).await;
                            pending.fetch_sub(len, SeqCst);
                        }
                        Out::Topic(topic, payload, kind) => {
                            let len = payload.len();
                            let subject = subject_for(&self.prefix, &topic);
                            self.publish(&client, subject, payload, kind).await;
                            pending.fetch_sub(len, SeqCst);
                        }
                        Out::Subscribe(topic) => {
                            let subject = subject_for(&self.prefix, &topic);
                            let task = self
                                .subscribe(&client, subject, Some(Arc::clone(&topic)), inbound.clone())
                                .await;
                            if let Some(task) = task {
                                subscriptions.insert(topic, task);
                            }
                        }
                        Out::Unsubscribe(topic) => {
                            if let Some(task) = subscriptions.remove(&topic) {
                                // Dropping the subscriber unsubscribes.
                                task.abort();
                            }
                        }
                    }
                }
                Some(first) = received.recv() => {
                    // Everything already here goes in one batch, in arrival order.
                    let mut batch = vec![first];
                    while let Ok(more) = received.try_recv() {
                        batch.push(more);
                    }
                    let bytes = batch.iter().map(|m| m.payload.len()).sum();
                    self.inject(batch).await;
                    inbound.pending.fetch_sub(bytes, SeqCst);
                }
            }
        }
        for task in subscriptions.into_values().chain(all).chain([watch, probe]) {
            task.abort();
        }
        // Hand what was published to the socket, unless the broker is away.
        let _ = tokio::time::timeout(GIVE_UP_AFTER, client.flush()).await;
    }

    /// Publishes one message, with its kind in a header if it has one (without one, no
    /// header at all: see `cluster`'s documentation).
    async fn publish(
        &self,
        client: &Client,
        subject: String,
        payload: Bytes,
        kind: Option<MessageKind>,
    ) {
        let counters = &self.shared.counters;
        self.publishing.store(true, SeqCst);
        let published = match kind {
            None => client.publish(subject, payload).await,
            Some(kind) => {
                let mut headers = HeaderMap::new();
                headers.insert(KIND_HEADER, kind_value(kind));
                client.publish_with_headers(subject, headers, payload).await
            }
        };
        self.publishing.store(false, SeqCst);
        match published {
            Ok(()) => {
                counters.cluster_sent.fetch_add(1, Relaxed);
            }
            Err(err) => {
                counters.cluster_lost.fetch_add(1, Relaxed);
                log::debug!("hubcast cluster: a message was not published: {err}");
            }
        }
    }

    /// Subscribes to `subject` and passes its messages on, in order, until aborted.
    async fn subscribe(
        &self,
        client: &Client,
        subject: String,
        topic: Option<Arc<str>>,
        inbound: Inbound,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let mut sub = match client.subscribe(subject.clone()).await {
            Ok(sub) => sub,
            Err(err) => {
                log::warn!("hubcast cluster: cannot subscribe to {subject}: {err}");
                return None;
            }
        };
        let shared = Arc::clone(&self.shared);
        // Unconstrained by tokio's cooperative budget, so that each turn takes every
        // message waiting. The connection task fills the subscription's channel (64 Ki
        // messages) with a whole read buffer per socket read, up to 128 reads a turn; taking
        // only 128 messages a turn (the budget), this task fell behind in a flood and
        // async-nats dropped messages as a slow consumer, lost without being counted. It
        // cannot run forever: on this one-thread runtime nothing fills the channel while
        // it runs.
        Some(tokio::spawn(tokio::task::unconstrained(async move {
            while let Some(message) = sub.next().await {
                let len = message.payload.len();
                if inbound.pending.fetch_add(len, SeqCst) + len > inbound.max {
                    inbound.pending.fetch_sub(len, SeqCst);
                    shared.counters.cluster_lost.fetch_add(1, Relaxed);
                    continue;
                }
                let value = message.headers.as_ref().and_then(|h| h.get(KIND_HEADER));
                let kind = kind_received(value.map(|v| v.as_str()), &message.payload);
                let received = Received {
                    topic: topic.clone(),
                    payload: message.payload,
                    kind,
                };
                if inbound.tx.send(received).is_err() {
                    return;
                }
            }
        })))
    }

    /// Hands messages from other nodes to the dispatcher in arrival order, in batches of at
    /// most `batch_max` bytes as a host's broadcasts are (a larger message alone). A topic
    /// with no local member takes nothing. Waits (without blocking the runtime) while the
    /// dispatcher is behind.
    ///
    /// The bound matters: the dispatcher fans a command out to every client at once, and
    /// flow control can hold commands back only between them, so one batch of everything
    /// received (up to `Cluster::buffer_bytes`, 8 MiB, over the default 4 MiB `queue_bytes`)
    /// filled healthy clients' queues in one go and cut them as slow.
    async fn inject(&self, messages: Vec<Received>) {
        let counters = &self.shared.counters;
        counters
            .cluster_received
            .fetch_add(messages.len() as u64, Relaxed);
        let targets: Vec<Option<Target>> = {
            let registry = self.shared.registry();
            messages
                .iter()
                .map(|message| match &message.topic {
                    None => Some(Target::All),
                    Some(topic) => registry.topics.id(topic).map(Target::Topic),
                })
                .collect()
        };
        let framed =
            |m: &Received| codec::encoded_len(self.framing, &m.payload).unwrap_or(m.payload.len());
        let total: usize = messages.iter().map(framed).sum();
        let mut batch = Batch::with_capacity(total.min(self.batch_max));
        for (message, target) in messages.iter().zip(targets) {
            let Some(target) = target else { continue };
            if !batch.is_empty() && batch.len() + framed(message) > self.batch_max {
                if !self.hand_over(batch.take()).await {
                    return;
                }
                batch = Batch::with_capacity(total.min(self.batch_max));
            }
            batch.push(self.framing, &message.payload, target, message.kind);
        }
        if !batch.is_empty() {
            self.hand_over(batch.take()).await;
        }
    }

    /// Sends one batch to the dispatcher once its budget has room. Returns `false` if the
    /// hub has stopped.
    async fn hand_over(&self, frames: Frames) -> bool {
        let bytes = frames.bytes.len();
        while !self.shared.try_reserve(bytes) {
            if self.shared.check().is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if self.commands.send(Command::Remote(frames)).is_ok() {
            self.shared.wake();
            true
        } else {
            self.shared.release(1, bytes);
            false
        }
    }

    /// Follows the connection's events into the counters and the host's events, and says
    /// why the servers at `urls` cannot be reached while they cannot (see `unreachable`).
    async fn watch(self, mut events: mpsc::UnboundedReceiver<NatsEvent>, urls: Vec<String>) {
        let counters = &self.shared.counters;
        let mut outage: Option<Outage> = None;
        while let Some(event) = events.recv().await {
            match event {
                NatsEvent::Connected => {
                    if let Some(outage) = outage.take() {
                        log::info!(
                            "hubcast cluster: reached NATS after {} failed attempts over {:.1?}",
                            outage.attempts(),
                            outage.lasted(Instant::now())
                        );
                    }
                    self.set_connected(true);
                }
                NatsEvent::Disconnected => self.set_connected(false),
                NatsEvent::SlowConsumer(_) => {
                    counters.cluster_slow_consumer.fetch_add(1, Relaxed);
                    self.report(ClusterState::SlowConsumer);
                }
                // A failed connection attempt, which async-nats describes only by its kind
                // ("IO error").
                NatsEvent::ClientError(async_nats::ClientError::Other(failed)) => {
                    let now = Instant::now();
                    let outage = outage.get_or_insert_with(|| Outage::new(now));
                    if outage.failed(now) {
                        // Looked at in a task of its own: a look may take seconds (a second
                        // per address, and name resolution), and the events must not wait.
                        let (new, attempts) = (outage.is_new(), outage.attempts());
                        let lasted = outage.lasted(now);
                        let urls = urls.clone();
                        tokio::spawn(async move {
                            let causes = causes(&urls, failed).await;
                            if new {
                                log::warn!(
                                    "hubcast cluster: cannot reach NATS ({causes}); serving \
                                     local clients only, and retrying"
                                );
                            } else {
                                log::warn!(
                                    "hubcast cluster: still cannot reach NATS ({causes}): \
                                     {attempts} attempts over {lasted:.0?}"
                                );
                            }
                        });
                    }
                }
                other => log::info!("hubcast cluster: NATS {other}"),
            }
        }
    }

    /// Records and reports a change of the connection's state, once whoever sees it first:
    /// the client's events, or the probe's look at the connection every interval (the
    /// client drops events past its own buffer of 128, so one could be missed in a storm).
    fn set_connected(&self, up: bool) {
        let counters = &self.shared.counters;
        if counters.cluster_connected.swap(up, SeqCst) == up {
            return;
        }
        if up {
            self.report(ClusterState::Connected);
        } else {
            counters.cluster_reconnects.fetch_add(1, Relaxed);
            self.report(ClusterState::Disconnected);
        }
    }

    /// Sends a numbered probe through the broker four times an interval, from the main
    /// connection to a second one; a probe not back half an interval after it was sent
    /// reports a partition, so a broker frozen at any moment is reported within one
    /// interval (a quarter until the next probe, at most a quarter in a publish the
    /// frozen broker holds up, half for the probe). Probes back again report it healed.
    ///
    /// Only while the main connection is up (a lost one is reported as `Disconnected`),
    /// and once the broker has the probe's subscription: a hub whose connections take
    /// longer than an interval to come up would otherwise report a partition at every
    /// start, before it is even connected. Until then, a broker that does not answer
    /// within an interval is as late as a probe.
    async fn probe(self, cluster: Cluster, client: Client) {
        let subject = format!("{}.probe.{:x}", self.prefix, crate::random::random_u64());
        let Some(receiver) = probe_client(&cluster).await else {
            log::warn!("hubcast cluster: no probe connection; partitions go unnoticed");
            return;
        };
        let Ok(mut back) = receiver.subscribe(subject.clone()).await else {
            log::warn!("hubcast cluster: cannot subscribe the probe; partitions go unnoticed");
            return;
        };
        let ready = format!("{subject}.ready");
        let interval = cluster.probe_interval.min(super::MAX_PROBE_INTERVAL);
        let step = interval / 4;
        let mut ticker = tokio::time::interval(step);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Probes sent and not back yet: (number, when sent), oldest first.
        let mut out: std::collections::VecDeque<(u64, tokio::time::Instant)> =
            std::collections::VecDeque::new();
        let mut sent = 0u64;
        let mut partitioned = false;
        // Whether the broker has the probe's subscription (since the main connection last
        // connected).
        let mut armed = false;
        loop {
            tokio::select! {
                message = back.next() => {
                    let Some(message) = message else { return };
                    let n: Option<u64> = std::str::from_utf8(&message.payload).ok().and_then(|s| s.parse().ok());
                    if let Some(n) = n {
                        while out.front().is_some_and(|&(m, _)| m <= n) {
                            out.pop_front();
                        }
                    }
                }
                _ = ticker.tick() => {
                    self.set_connected(connected(&client));
                    if !connected(&client) {
                        // Reported as `Disconnected`; probes lost with the connection
                        // say nothing.
                        out.clear();
                        armed = false;
                        continue;
                    }
                    let late = if armed {
                        out.front().is_some_and(|&(_, at)| at.elapsed() >= interval / 2)
                    } else {
                        // The first round trip: a request nobody answers comes back as "no
                        // responders" once the broker has handled what the connection sent
                        // before it, the subscription included.
                        let ask = receiver.request(ready.clone(), Bytes::new());
                        match tokio::time::timeout(interval, ask).await {
                            Ok(Ok(_)) => {
                                armed = true;
                                false
                            }
                            Ok(Err(err)) if err.kind() == RequestErrorKind::NoResponders => {
                                armed = true;
                                false
                            }
                            // Failed without an answer (the connection lost meanwhile, which
                            // the next tick sees): no news.
                            Ok(Err(_)) => partitioned,
                            // No answer within an interval: as late as a probe.
                            Err(_) => true,
                        }
                    };
                    if late != partitioned {
                        partitioned = late;
                        self.shared.counters.cluster_partitioned.store(late, SeqCst);
                        self.report(if late { ClusterState::Partitioned } else { ClusterState::Healed });
                    }
                    if !armed {
                        continue;
                    }
                    sent += 1;
                    if out.len() == 64 {
                        // Long partitioned: the oldest, which decides, stays.
                        out.pop_back();
                    }
                    out.push_back((sent, tokio::time::Instant::now()));
                    // Bounded, so a frozen broker cannot hold the probe up: a probe that
                    // could not even be handed over is simply late.
                    let publish = client.publish(subject.clone(), Bytes::from(sent.to_string()));
                    let _ = tokio::time::timeout(step, publish).await;
                }
            }
        }
    }

    /// Tells the dispatcher, which tells the host.
    fn report(&self, state: ClusterState) {
        // The one log line of each change: hosts need not log `Event::Cluster` again.
        let level = match state {
            ClusterState::Connected | ClusterState::Healed => log::Level::Info,
            _ => log::Level::Warn,
        };
        log::log!(level, "hubcast cluster: {state:?}");
        if self.commands.send(Command::Cluster(state)).is_ok() {
            self.shared.wake();
        }
    }
}
