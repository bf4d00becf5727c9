//! `Hub`: the host's handle, and nothing else. It frames messages, hands them to the
//! dispatcher through the command channel, and reads the state the dispatcher shares.
//!
//! - this file: the handle and its public methods;
//! - `topics`: joining, leaving and publishing to topics, and who is in them;
//! - `start`: binding the listeners and starting the threads, from the `Config`
//!   `HubBuilder::bind` makes;
//! - `batching`: how host calls become batched `Command`s, in call order, within the
//!   budget of pending work;
//! - `asynchronous`: the awaitable sends, which wait for room in that budget without
//!   blocking a thread.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::command::{Command, SharedBatch, Target};
use crate::dispatcher::{panic_into_message, Outcome};
use crate::shared::{lock, NewSubscriber, Shared, Tail, WakeOnEnd};
use crate::{
    AsMessage, ClientId, ClientInfo, Error, Framing, HubBuilder, ListenAddr, Result,
    ShutdownReport, Stats, Subscription, WouldBlock,
};

mod adopt;
mod asynchronous;
mod batching;
mod start;
mod topics;
mod users;

pub use adopt::Adopted;
#[cfg(feature = "websocket")]
pub use adopt::{WebSocketAnswer, WebSocketRefusal};
pub(crate) use start::given_addr;

/// A running broadcast hub: its listening sockets, its clients and the dispatcher thread
/// that serves them.
///
/// `Hub` is `Send + Sync`: share it (for example in an `Arc`) and call it from any thread.
/// No method waits for a client, unless [`flow_control`](HubBuilder::flow_control) is on.
/// Dropping the hub shuts it down as [`Hub::shutdown`] does, with the
/// [`linger`](HubBuilder::linger) time as deadline.
///
/// ```
/// use std::io::{BufRead, BufReader};
/// use std::net::TcpStream;
/// use hubcast::{Event, Hub};
///
/// let hub = Hub::bind("127.0.0.1:0")?;
/// let events = hub.subscribe();
/// let client = TcpStream::connect(hub.local_addr())?;
/// // Wait until the hub has registered the client, then broadcast.
/// assert!(matches!(events.recv(), Ok(Event::Connected { .. })));
/// hub.broadcast("hello")?;
///
/// let mut line = String::new();
/// BufReader::new(client).read_line(&mut line)?;
/// assert_eq!(line, "hello\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping the hub shuts it down"]
pub struct Hub {
    shared: Arc<Shared>,
    tx: Sender<Command>,
    /// The batch small messages are added to, until the dispatcher takes it. Every send into
    /// the command channel happens under this lock, so batches and other commands reach the
    /// dispatcher in call order. Nobody waits while holding it.
    open_batch: Mutex<Option<SharedBatch>>,
    /// The largest batch (`Config::batch_max`).
    batch_max: usize,
    thread: Mutex<Option<JoinHandle<Outcome>>>,
    /// Never empty: the first is the address given to `bind`.
    local_addrs: Vec<ListenAddr>,
    framing: Framing,
    /// The longest frame the host may send (`Config::max_framed_len`).
    max_framed_len: usize,
    event_capacity: usize,
    linger: Duration,
    topic_limits: crate::topics::TopicLimits,
    /// Whether the hub is part of a cluster (feature `nats`).
    #[cfg(feature = "nats")]
    clustered: bool,
    /// The backplane thread (feature `nats`): it ends once the dispatcher has.
    #[cfg(feature = "nats")]
    cluster_thread: Mutex<Option<JoinHandle<()>>>,
    /// With `Protocol::Sequenced` a topic whose last member left is kept for `replay_age`
    /// and until its replay ring empties, and the dispatcher frees it then, never this
    /// handle.
    keeps_rings: bool,
    /// The WebSocket settings, to check upgrades the host answers itself
    /// (`Hub::websocket_answer`).
    #[cfg(feature = "websocket")]
    websocket: crate::options::WebSocketSettings,
}

impl Hub {
    /// Binds `addr` with every default setting and starts serving.
    ///
    /// Use port 0 to let the operating system pick a port, then read it with
    /// [`local_addr`](Self::local_addr).
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] if the address cannot be resolved or bound, [`Error::Start`] if the
    /// event loop or its thread cannot be created.
    pub fn bind<A: ToSocketAddrs + fmt::Debug>(addr: A) -> Result<Hub> {
        HubBuilder::new().bind(addr)
    }

    /// A builder to configure framing, limits and policies before binding.
    pub fn builder() -> HubBuilder {
        HubBuilder::new()
    }

    /// The address given to [`bind`](HubBuilder::bind) (with the real port when bound to
    /// port 0). See [`local_addrs`](Self::local_addrs) for every listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0].addr
    }

    /// Every address the hub listens on, with its transport: first the one given to
    /// [`bind`](HubBuilder::bind), then those added with
    /// [`HubBuilder::listen`], in that order.
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.local_addrs
    }

    /// A new receiver of every [`Event`](crate::Event) from now on. Never blocks.
    ///
    /// Every live subscription sees every event (they do not share one stream); dropping
    /// one unsubscribes it. Subscribing to a hub that has stopped gives a subscription that
    /// is already ended.
    ///
    /// **Drain it.** Its queue holds [`event_capacity`](HubBuilder::event_capacity) events;
    /// while it is full, the hub stops reading every client and accepting connections, so
    /// that nothing is dropped. A subscription kept but not drained therefore stops the
    /// whole hub from hearing its clients (broadcasts still go out). Such a pause is logged
    /// at `warn` once it lasts a second and shows in [`Stats::paused`]. Drop subscriptions
    /// you stop reading. See [`Subscription`].
    #[must_use = "a subscription that is not drained pauses the hub; drop it to unsubscribe"]
    pub fn subscribe(&self) -> Subscription {
        // Unbounded as a channel: `Tail::queued` bounds the events in it.
        let (tx, rx) = crossbeam_channel::unbounded();
        let tail = Arc::new(Tail::new(self.event_capacity));
        let mut inbox = self.shared.inbox();
        if !inbox.closed {
            let end = WakeOnEnd(Arc::clone(&tail));
            let tail = Arc::clone(&tail);
            inbox.pending.push(NewSubscriber { tx, tail, end });
            self.shared.inbox_pending.store(true, SeqCst);
        }
        drop(inbox);
        Subscription::new(rx, tail, Arc::clone(&self.shared))
    }

    /// Sends `msg` to every connected client. Waits only if the dispatcher is behind, or
    /// under [`flow_control`](HubBuilder::flow_control); never for a client otherwise.
    ///
    /// `msg` is any bytes (`&str`, `String`, `Vec<u8>`, `&[u8]`, [`Bytes`](crate::Bytes)…)
    /// or a [`Message`](crate::Message), which says its [kind](crate::MessageKind): what
    /// WebSocket clients get it as (text or binary). Plain bytes go to them as text if
    /// they are UTF-8 (unless [`websocket_binary`](HubBuilder::websocket_binary)), else as
    /// binary; TCP and TLS clients get the bytes either way. The same holds for every
    /// sending method ([`send_to`](Self::send_to), [`publish`](Self::publish)…).
    ///
    /// The message is framed once, here, and the frame is shared by every client's queue;
    /// messages under 4 KiB framed go into a batch that the dispatcher takes whole. Returns
    /// as soon as the dispatcher has it. `Ok` promises order, not delivery: every client
    /// connected now (whose [`Event::Connected`](crate::Event::Connected) has been
    /// delivered) gets it after every message sent before it, unless the client leaves or
    /// its [slow-client policy](crate::SlowClientPolicy) drops it.
    ///
    /// It waits when the dispatcher is [`command_capacity`](HubBuilder::command_capacity)
    /// calls or [`queue_bytes`](HubBuilder::queue_bytes) of frames behind, and with
    /// `flow_control` while a client catches up; use [`try_broadcast`](Self::try_broadcast)
    /// never to wait. Called from one of the hub's own closures, it never waits either.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] if the framed message is longer than
    /// [`queue_bytes`](HubBuilder::queue_bytes) or than 4 GiB; [`Error::Closed`] once the
    /// hub is shutting down; [`Error::Failed`] if the hub died; [`Error::WouldBlock`] if
    /// called from one of the hub's closures when it would have had to wait.
    pub fn broadcast(&self, msg: impl AsMessage) -> Result<()> {
        self.submit(Target::All, &msg, true)
    }

    /// Sends `msg` to every connected client if that needs no waiting; never blocks.
    ///
    /// Exactly like [`broadcast`](Self::broadcast), except where `broadcast` would wait:
    /// then nothing is sent and the error says why, so a publisher that must not stall
    /// (a game tick, a market feed) can drop, coalesce or retry the message.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] with [`WouldBlock::Backlog`] when the dispatcher is behind, or
    /// [`WouldBlock::FlowControl`] when flow control is holding host calls; otherwise as
    /// [`broadcast`](Self::broadcast).
    ///
    /// ```
    /// use hubcast::{Error, Hub, WouldBlock};
    ///
    /// let hub = Hub::bind("127.0.0.1:0")?;
    /// match hub.try_broadcast("tick 1") {
    ///     Ok(()) => {}
    ///     Err(Error::WouldBlock(WouldBlock::Backlog | WouldBlock::FlowControl)) => {
    ///         // Skip this tick: the next one carries newer data.
    ///     }
    ///     Err(err) => return Err(err),
    /// }
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn try_broadcast(&self, msg: impl AsMessage) -> Result<()> {
        self.submit(Target::All, &msg, false)
    }

    /// Sends `msg` to every connected client except `client`, for example to relay what that
    /// client said. Blocks as [`broadcast`](Self::broadcast) does. An unknown `client` is
    /// not an error: everyone gets the message.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Self::broadcast).
    pub fn broadcast_except(&self, client: ClientId, msg: impl AsMessage) -> Result<()> {
        self.submit(Target::AllExcept(client), &msg, true)
    }

    /// Sends `msg` to one client, in order with the broadcasts it receives. Blocks as
    /// [`broadcast`](Self::broadcast) does.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownClient`] if `client` is not connected, otherwise as
    /// [`broadcast`](Self::broadcast). A client that leaves after this call returns simply
    /// does not get the message.
    pub fn send_to(&self, client: ClientId, msg: impl AsMessage) -> Result<()> {
        self.check_client(client)?;
        self.submit(Target::One(client), &msg, true)
    }

    /// Disconnects a client with [`DisconnectReason::Kicked`](crate::DisconnectReason::Kicked).
    /// Blocks as [`broadcast`](Self::broadcast) does (it counts as a call waiting for the
    /// dispatcher).
    ///
    /// Messages already queued for it are still written for up to
    /// [`linger`](HubBuilder::linger), then the connection is closed.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownClient`] if `client` is not connected; [`Error::Closed`] once the hub
    /// is shutting down; [`Error::Failed`] if the hub died; [`Error::WouldBlock`] if
    /// called from one of the hub's closures when it would have had to wait.
    pub fn disconnect(&self, client: ClientId) -> Result<()> {
        self.check_client(client)?;
        self.kick(client)
    }

    /// Hands the dispatcher a `Disconnect` of `client` (which may have left), in call order.
    fn kick(&self, client: ClientId) -> Result<()> {
        let wait = !self.shared.on_dispatcher_thread();
        self.send_in_order(
            0,
            wait,
            |_| false,
            |open| {
                // Messages sent after this call go in a later batch, so the client never
                // gets them.
                *open = None;
                Ok(Some(Command::Disconnect(client)))
            },
        )
    }

    /// The clients connected now, in id order. Never blocks for long (copies the registry
    /// under a lock).
    pub fn clients(&self) -> Vec<ClientInfo> {
        let registry = self.shared.registry();
        let mut clients: Vec<ClientInfo> = registry
            .clients
            .iter()
            .map(|(&id, entry)| entry.info(id, &registry.topics))
            .collect();
        clients.sort_unstable_by_key(|c| c.id);
        clients
    }

    /// What the hub knows of one connected client, or `None` if it is not connected.
    /// Never blocks for long.
    pub fn client(&self, client: ClientId) -> Option<ClientInfo> {
        let registry = self.shared.registry();
        let entry = registry.clients.get(&client)?;
        Some(entry.info(client, &registry.topics))
    }

    /// A snapshot of the hub's counters. Never blocks.
    pub fn stats(&self) -> Stats {
        #[allow(unused_mut)]
        let mut stats = self.shared.counters.snapshot(self.shared.epoch);
        #[cfg(feature = "deflate")]
        {
            use crate::wire::Wire;
            stats.compressed_clients = [Wire::WebSocketDeflate, Wire::WebSocketDeflateNarrow]
                .into_iter()
                .map(|wire| self.shared.wires[wire].load(std::sync::atomic::Ordering::Relaxed))
                .sum();
        }
        stats
    }

    /// The hub's metrics as Prometheus text (exposition format 0.0.4, served as
    /// `text/plain; version=0.0.4`): `# HELP` and `# TYPE` lines and the samples of every
    /// counter of [`stats`](Self::stats) and a few gauges, such as the clients connected
    /// through each listener and how long the dispatcher's current round has run. Every
    /// name starts with `hubcast_`; `docs/METRICS.md` lists them. Never blocks.
    ///
    /// ```
    /// let hub = hubcast::Hub::bind("127.0.0.1:0")?;
    /// hub.broadcast("hello")?;
    /// let text = hub.metrics();
    /// assert!(text.contains("# TYPE hubcast_clients_connected gauge\nhubcast_clients_connected 0\n"));
    /// assert!(text.contains("hubcast_disconnects_total{reason=\"slow\"} 0\n"));
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn metrics(&self) -> String {
        crate::metrics::text(&self.shared)
    }

    /// Whether the hub is alive and ready to serve, for liveness and readiness probes; see
    /// [`Health`](crate::Health). Never blocks.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let hub = hubcast::Hub::bind("127.0.0.1:0")?;
    /// assert!(hub.health().ready);
    /// hub.shutdown(Duration::from_secs(1))?;
    /// let health = hub.health();
    /// assert!(!health.live && !health.ready);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn health(&self) -> crate::Health {
        crate::health::check(&self.shared)
    }

    /// Whether the hub takes no more work: [`shutdown`](Self::shutdown) was called, or the
    /// dispatcher stopped or [failed](Error::Failed).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Stops accepting, writes out what is queued for each client until `timeout` has
    /// passed, closes every client with
    /// [`DisconnectReason::Shutdown`](crate::DisconnectReason::Shutdown), joins the
    /// dispatcher thread and reports what could not be delivered. Blocks until then.
    ///
    /// Any timeout is accepted: one too long to represent means no deadline (queues are
    /// written out however long that takes, but a client whose writes make no progress for
    /// [`write_timeout`](HubBuilder::write_timeout) is closed anyway). Subscriptions get the
    /// remaining events and then end; the shutdown never waits for a subscriber. Calls
    /// made after this one begins fail with [`Error::Closed`].
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the hub was already shut down; [`Error::Failed`] if the
    /// dispatcher died (now or before); [`Error::WouldBlock`] with
    /// [`WouldBlock::DispatcherThread`] if called from one of the hub's own closures: the
    /// shutdown has then begun, and a later call from another thread (or dropping the hub)
    /// waits for it.
    pub fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport> {
        let deadline = Instant::now().checked_add(timeout);
        if self.shared.on_dispatcher_thread() {
            if self.shared.close() {
                self.send(Command::Shutdown(deadline))?;
            }
            return Err(Error::WouldBlock(WouldBlock::DispatcherThread));
        }
        let Some(thread) = lock(&self.thread).take() else {
            return Err(self.shared.check().err().unwrap_or(Error::Closed));
        };
        self.shared.close();
        // Once woken and seeing the hub closed, the dispatcher drains commands whatever
        // clients do (even under flow control). It fails only if the dispatcher is gone.
        let _ = self.send(Command::Shutdown(deadline));
        let joined = thread.join();
        // The dispatcher is gone, and its end of the backplane with it: the backplane
        // thread flushes and ends.
        #[cfg(feature = "nats")]
        if let Some(cluster) = lock(&self.cluster_thread).take() {
            if cluster.join().is_err() {
                log::error!("the hubcast backplane thread panicked");
            }
        }
        match joined {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(cause)) => Err(Error::Failed { cause }),
            Err(panic) => {
                // A panic past the dispatcher's own guard.
                let cause = format!("the dispatcher panicked: {}", panic_into_message(panic));
                self.shared.fail(cause.clone());
                Err(Error::Failed { cause })
            }
        }
    }

    fn check_client(&self, client: ClientId) -> Result<()> {
        self.shared.check()?;
        if self.shared.registry().clients.contains_key(&client) {
            Ok(())
        } else {
            Err(Error::UnknownClient(client))
        }
    }

    /// Lets a test kill the dispatcher as a bug would.
    #[cfg(test)]
    pub(crate) fn inject_panic(&self) {
        let _ = self.send(Command::Panic);
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if self.shared.on_dispatcher_thread() {
            // The last handle was dropped inside one of the hub's closures: the dispatcher
            // shuts down by itself and its thread ends. It would also see the command
            // channel close, but a backplane thread holds a sender too, so say it.
            if self.shared.close() {
                let _ = self.send(Command::Shutdown(Instant::now().checked_add(self.linger)));
            }
            return;
        }
        match self.shutdown(self.linger) {
            Ok(report) if !report.is_complete() => {
                log::warn!("hubcast dropped with undelivered messages: {report:?}");
            }
            // A failure was logged when it happened.
            _ => {}
        }
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("local_addrs", &self.local_addrs)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpStream;

    use super::*;
    use crate::{Event, TryRecvError};

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn failed(result: Result<()>) -> String {
        match result {
            Err(Error::Failed { cause }) => cause,
            other => panic!("expected Error::Failed, got {other:?}"),
        }
    }

    /// Every kind of call the dispatcher takes gives back exactly what it reserved.
    #[test]
    fn the_pending_budget_returns_to_zero() {
        let hub = Hub::bind("127.0.0.1:0").unwrap();
        let events = hub.subscribe();
        let mut peers = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let client = TcpStream::connect(hub.local_addr()).unwrap();
            client.set_read_timeout(Some(TIMEOUT)).unwrap();
            peers.push(std::io::BufReader::new(client));
            match events.recv_timeout(TIMEOUT).unwrap() {
                Event::Connected { client, .. } => ids.push(client),
                other => panic!("unexpected {other:?}"),
            }
        }
        hub.broadcast("small").unwrap();
        hub.broadcast(vec![b'x'; 10_000]).unwrap();
        hub.send_to(ids[0], "to one").unwrap();
        hub.broadcast_except(ids[0], "to others").unwrap();
        hub.disconnect(ids[0]).unwrap();
        hub.broadcast("last").unwrap();
        // The last message reached the other client: every call was taken.
        use std::io::BufRead;
        let mut line = String::new();
        loop {
            line.clear();
            peers[1].read_line(&mut line).unwrap();
            if line == "last\n" {
                break;
            }
        }
        assert_eq!(hub.shared.pending(), 0);
    }

    /// A dispatcher that dies (here by a panic a test injects, as a bug would) is reported
    /// at once, every call fails fast, every subscription ends, and nothing hangs.
    #[test]
    fn a_dead_dispatcher_is_reported_and_nothing_hangs() {
        let hub = Hub::builder()
            .command_capacity(64)
            .queue_bytes(256 * 1024)
            .bind("127.0.0.1:0")
            .unwrap();
        let events = hub.subscribe();
        let mut client = TcpStream::connect(hub.local_addr()).unwrap();
        client.set_read_timeout(Some(TIMEOUT)).unwrap();
        let id = match events.recv_timeout(TIMEOUT).unwrap() {
            Event::Connected { client, .. } => client,
            other => panic!("unexpected {other:?}"),
        };
        // Never adopted: no event is emitted between this and the panic.
        let late = hub.subscribe();

        hub.inject_panic();
        // The subscriptions end: the host learns at once.
        assert!(events.recv_timeout(TIMEOUT).is_err());
        assert!(late.recv_timeout(TIMEOUT).is_err());
        assert!(hub.is_closed());
        assert_eq!(hub.subscribe().try_recv(), Err(TryRecvError::Closed));
        assert!(hub.clients().is_empty());
        assert_eq!(hub.stats().connected, 0);

        // Far more calls than the budget holds, and none waits.
        for i in 0..10_000 {
            let cause = failed(hub.broadcast(format!("message {i}")));
            assert!(cause.contains("injected by a test"), "{cause}");
        }
        failed(hub.broadcast(vec![b'x'; 100_000]));
        failed(hub.try_broadcast("x"));
        failed(hub.broadcast_except(id, "x"));
        assert!(matches!(hub.send_to(id, "x"), Err(Error::Failed { .. })));
        assert!(matches!(hub.disconnect(id), Err(Error::Failed { .. })));

        // The client's connection was dropped.
        let mut buf = [0; 16];
        assert!(matches!(client.read(&mut buf), Ok(0) | Err(_)));

        assert!(matches!(hub.shutdown(TIMEOUT), Err(Error::Failed { .. })));
        assert!(matches!(hub.shutdown(TIMEOUT), Err(Error::Failed { .. })));
    }
}
