//! The host's handle: `Hub`, the state it shares with the dispatcher, and the commands it
//! sends there.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Sender, TrySendError};
use mio::{Poll, Waker};

use crate::codec;
use crate::dispatcher::{Dispatcher, WAKER};
use crate::stats::Counters;
use crate::{
    ClientId, ClientInfo, Error, Event, Framing, HubBuilder, Result, ShutdownReport, Stats,
    Subscription,
};

/// Broadcasts shorter than this are framed straight into a shared batch (see [`Batch`]);
/// longer ones travel as their own frame.
pub(crate) const BATCH_BELOW: usize = 4 * 1024;
/// The largest batch.
const BATCH_MAX: usize = 64 * 1024;

/// Consecutive small broadcasts, framed by host threads into one buffer that the dispatcher
/// takes whole: one command, one queue entry per client and one `writev` slice for many
/// messages, and no allocation or channel operation per message.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) buf: BytesMut,
    /// Where each frame ends in `buf`.
    pub(crate) ends: Vec<u32>,
    /// Set by the dispatcher when it takes the batch: nothing may be added after that.
    pub(crate) taken: bool,
}

/// A batch shared between the host threads filling it and the dispatcher taking it.
pub(crate) type SharedBatch = Arc<Mutex<Batch>>;

/// Work the host hands to the dispatcher, in call order.
#[derive(Debug)]
pub(crate) enum Command {
    /// A batch of small broadcasts; more may be added until the dispatcher takes it.
    Batch(SharedBatch),
    Broadcast(Bytes),
    BroadcastExcept(ClientId, Bytes),
    SendTo(ClientId, Bytes),
    Disconnect(ClientId),
    Shutdown(Instant),
}

impl Command {
    /// The frame bytes the command holds, counted against the pending-bytes budget.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            // A batch may still grow to its largest size.
            Command::Batch(_) => BATCH_MAX,
            Command::Broadcast(frame)
            | Command::BroadcastExcept(_, frame)
            | Command::SendTo(_, frame) => frame.len(),
            Command::Disconnect(_) | Command::Shutdown(_) => 0,
        }
    }
}

/// What the registry knows of a connected client, for [`Hub::clients`] and id checks.
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) addr: SocketAddr,
    pub(crate) name: Option<String>,
    pub(crate) dropped: Arc<AtomicU64>,
}

/// New subscribers waiting for the dispatcher to adopt them.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pub(crate) senders: Vec<Sender<Event>>,
    /// Set when the dispatcher has exited: later subscriptions end at once.
    pub(crate) closed: bool,
}

/// State shared by the [`Hub`] handle, [`Subscription`]s and the dispatcher thread.
#[derive(Debug)]
pub(crate) struct Shared {
    waker: Waker,
    /// Set by the first caller to wake the dispatcher, cleared by the dispatcher before it
    /// drains commands: one `eventfd` write per round, not one per broadcast.
    notified: AtomicBool,
    /// The dispatcher stopped reading clients because a subscriber's queue is full.
    paused: AtomicBool,
    closed: AtomicBool,
    pub(crate) counters: Counters,
    pub(crate) registry: Mutex<HashMap<ClientId, Registered>>,
    pub(crate) inbox: Mutex<Inbox>,
    /// Whether `inbox.senders` may be non-empty; spares the dispatcher a lock per event.
    pub(crate) inbox_pending: AtomicBool,
    /// Frame bytes in commands the dispatcher has not taken yet, bounded by `queue_bytes`.
    pending_bytes: AtomicUsize,
    /// Host threads waiting for `pending_bytes` to drop, and where they wait.
    room_waiters: AtomicUsize,
    room: Mutex<()>,
    room_freed: Condvar,
}

impl Shared {
    pub(crate) fn wake(&self) {
        // A plain load first: while a wake-up is pending (the dispatcher is busy), callers
        // only read the flag and do not take its cache line away from the dispatcher.
        if !self.notified.load(SeqCst) && !self.notified.swap(true, SeqCst) {
            if let Err(err) = self.waker.wake() {
                log::error!("failed to wake the hubcast dispatcher: {err}");
            }
        }
    }

    /// Called by the dispatcher before it drains commands.
    pub(crate) fn clear_notified(&self) {
        self.notified.store(false, SeqCst);
    }

    /// Counts `bytes` as pending, first waiting (for the dispatcher, never for a client
    /// unless `flow_control` is on) while that would pass `budget`. A command always fits
    /// when nothing else is pending. Fails once the hub is closed.
    fn reserve(&self, bytes: usize, budget: usize) -> Result<()> {
        let fits = |pending: usize| pending == 0 || pending + bytes <= budget;
        let mut pending = self.pending_bytes.load(SeqCst);
        while fits(pending) {
            match self
                .pending_bytes
                .compare_exchange(pending, pending + bytes, SeqCst, SeqCst)
            {
                Ok(_) => return Ok(()),
                Err(now) => pending = now,
            }
        }
        // Slow path. The waiter count and the pending count pair up as in `release`:
        // either the dispatcher sees this waiter, or this sees the room it made.
        self.room_waiters.fetch_add(1, SeqCst);
        let mut guard = self.room.lock().unwrap_or_else(PoisonError::into_inner);
        let result = loop {
            if self.is_closed() {
                break Err(Error::Closed);
            }
            let pending = self.pending_bytes.load(SeqCst);
            if fits(pending)
                && self
                    .pending_bytes
                    .compare_exchange(pending, pending + bytes, SeqCst, SeqCst)
                    .is_ok()
            {
                break Ok(());
            }
            self.wake();
            guard = self
                .room_freed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        };
        drop(guard);
        self.room_waiters.fetch_sub(1, SeqCst);
        result
    }

    /// Called by the dispatcher for the frame bytes of the commands it took.
    pub(crate) fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.pending_bytes.fetch_sub(bytes, SeqCst);
        }
        if self.room_waiters.load(SeqCst) > 0 {
            self.notify_room();
        }
    }

    /// Wakes host threads waiting for room (also when the hub closes).
    pub(crate) fn notify_room(&self) {
        let _guard = self.room.lock().unwrap_or_else(PoisonError::into_inner);
        self.room_freed.notify_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(SeqCst)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, SeqCst);
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, HashMap<ClientId, Registered>> {
        // The registry holds plain data that no panic can leave half-updated.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running broadcast hub: a listening socket, its clients and the dispatcher thread that
/// serves them.
///
/// `Hub` is `Send + Sync`: share it (for example in an `Arc`) and call it from any thread.
/// No method waits for a client. Dropping the hub shuts it down as [`Hub::shutdown`] does,
/// with the [`linger`](HubBuilder::linger) time as deadline.
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
pub struct Hub {
    shared: Arc<Shared>,
    tx: Sender<Command>,
    /// The batch small broadcasts are added to, until the dispatcher takes it. Every send
    /// into the command channel happens under this lock, so batches and other commands
    /// reach the dispatcher in call order.
    open_batch: Mutex<Option<SharedBatch>>,
    batch_max: usize,
    thread: Mutex<Option<JoinHandle<ShutdownReport>>>,
    local_addr: SocketAddr,
    framing: Framing,
    queue_bytes: usize,
    event_capacity: usize,
    linger: Duration,
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
    pub fn bind<A: ToSocketAddrs>(addr: A) -> Result<Hub> {
        HubBuilder::new().bind(addr)
    }

    /// A builder to configure framing, limits and policies before binding.
    pub fn builder() -> HubBuilder {
        HubBuilder::new()
    }

    pub(crate) fn start<A: ToSocketAddrs>(config: HubBuilder, addr: A) -> Result<Hub> {
        #[cfg(feature = "tls")]
        let tls = config
            .tls
            .clone()
            .map(crate::tls::TlsSetting::into_config)
            .transpose()?;
        let listener = bind_listener(addr, config.backlog)?;
        let local_addr = listener.local_addr().map_err(Error::Start)?;
        let poll = Poll::new().map_err(Error::Start)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(Error::Start)?;
        let shared = Arc::new(Shared {
            waker,
            notified: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            registry: Mutex::new(HashMap::new()),
            inbox: Mutex::new(Inbox::default()),
            inbox_pending: AtomicBool::new(false),
            pending_bytes: AtomicUsize::new(0),
            room_waiters: AtomicUsize::new(0),
            room: Mutex::new(()),
            room_freed: Condvar::new(),
        });
        let (tx, rx) = crossbeam_channel::bounded(config.command_capacity);
        let hub = Hub {
            shared: Arc::clone(&shared),
            tx,
            open_batch: Mutex::new(None),
            // Small bounds get small batches, so drops stay fine-grained.
            batch_max: BATCH_MAX.min(config.queue_bytes / 8).max(BATCH_BELOW),
            thread: Mutex::new(None),
            local_addr,
            framing: config.framing,
            queue_bytes: config.queue_bytes,
            event_capacity: config.event_capacity,
            linger: config.linger,
        };
        let dispatcher = Dispatcher::new(
            config,
            poll,
            listener,
            shared,
            rx,
            #[cfg(feature = "tls")]
            tls,
        )
        .map_err(Error::Start)?;
        let thread = std::thread::Builder::new()
            .name("hubcast-dispatcher".into())
            .spawn(move || dispatcher.run())
            .map_err(Error::Start)?;
        *hub.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        log::info!("hubcast listening on {local_addr}");
        Ok(hub)
    }

    /// The address the hub listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A new receiver of every [`Event`] from now on.
    ///
    /// Every live subscription sees every event; dropping it unsubscribes. A subscription
    /// that stops draining pauses reading from clients once its queue
    /// ([`event_capacity`](HubBuilder::event_capacity)) is full: see [`Subscription`].
    /// Subscribing to a hub that has shut down gives a subscription that is already ended.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = crossbeam_channel::bounded(self.event_capacity);
        let mut inbox = self.shared.inbox();
        if !inbox.closed {
            inbox.senders.push(tx);
            self.shared.inbox_pending.store(true, SeqCst);
        }
        drop(inbox);
        Subscription::new(rx, Arc::clone(&self.shared))
    }

    /// Sends `msg` to every connected client.
    ///
    /// The message is framed once, here, and the frame is shared by every client's queue;
    /// messages under 4 KiB are framed into a batch that the dispatcher takes whole. Returns
    /// as soon as the dispatcher has it: it never waits for a client, unless
    /// [`flow_control`](HubBuilder::flow_control) is on (see [`Hub`]'s blocking notes in
    /// the crate docs). Every client
    /// connected now (whose [`Event::Connected`] has been delivered) gets it, after every
    /// message broadcast before it, unless the client leaves or its
    /// [slow-client policy](crate::SlowClientPolicy) drops it.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] if the framed message is longer than
    /// [`queue_bytes`](HubBuilder::queue_bytes) (or than `u32::MAX` for length-prefixed
    /// framing); [`Error::Closed`] once the hub is shutting down.
    pub fn broadcast(&self, msg: impl AsRef<[u8]>) -> Result<()> {
        let msg = msg.as_ref();
        let len = self.frame_len(msg)?;
        if len == 0 {
            // An empty message under raw framing: nothing goes on the wire.
            return Ok(());
        }
        if len >= BATCH_BELOW {
            return self.send(Command::Broadcast(codec::encode(self.framing, msg, len)));
        }
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let mut open = self
            .open_batch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(batch) = open.as_ref() {
            let mut batch = batch.lock().unwrap_or_else(PoisonError::into_inner);
            if !batch.taken && batch.buf.len() + len <= self.batch_max {
                codec::encode_into(self.framing, msg, &mut batch.buf);
                // Fits: a batch is at most BATCH_MAX bytes.
                let end = batch.buf.len() as u32;
                batch.ends.push(end);
                return Ok(());
            }
        }
        // Start small and grow: at low rates a batch holds one message.
        let mut buf = BytesMut::with_capacity((len * 8).clamp(512, self.batch_max));
        codec::encode_into(self.framing, msg, &mut buf);
        let ends = vec![buf.len() as u32];
        let batch = Arc::new(Mutex::new(Batch {
            buf,
            ends,
            taken: false,
        }));
        *open = Some(Arc::clone(&batch));
        let sent = self.send_locked(&mut open, Command::Batch(batch));
        if sent.is_err() {
            // Nobody will take this batch: later broadcasts must not be added to it.
            *open = None;
        }
        sent
    }

    /// Sends `msg` to every connected client except `client`, for example to relay what that
    /// client said. An unknown `client` is not an error: everyone gets the message.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Self::broadcast).
    pub fn broadcast_except(&self, client: ClientId, msg: impl AsRef<[u8]>) -> Result<()> {
        let frame = self.frame(msg.as_ref())?;
        self.send(Command::BroadcastExcept(client, frame))
    }

    /// Sends `msg` to one client, in order with the broadcasts it receives.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownClient`] if `client` is not connected, otherwise as
    /// [`broadcast`](Self::broadcast). A client that leaves after this call returns simply
    /// does not get the message.
    pub fn send_to(&self, client: ClientId, msg: impl AsRef<[u8]>) -> Result<()> {
        self.check_client(client)?;
        let frame = self.frame(msg.as_ref())?;
        self.send(Command::SendTo(client, frame))
    }

    /// Disconnects a client with [`DisconnectReason::Kicked`](crate::DisconnectReason::Kicked).
    ///
    /// Messages already queued for it are still written for up to
    /// [`linger`](HubBuilder::linger), then the connection is closed.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownClient`] if `client` is not connected; [`Error::Closed`] once the hub
    /// is shutting down.
    pub fn disconnect(&self, client: ClientId) -> Result<()> {
        self.check_client(client)?;
        self.send(Command::Disconnect(client))
    }

    /// The clients connected now, in id order.
    pub fn clients(&self) -> Vec<ClientInfo> {
        let mut clients: Vec<ClientInfo> = self
            .shared
            .registry()
            .iter()
            .map(|(&id, entry)| ClientInfo {
                id,
                addr: entry.addr,
                name: entry.name.clone(),
                dropped: entry.dropped.load(SeqCst),
            })
            .collect();
        clients.sort_unstable_by_key(|c| c.id);
        clients
    }

    /// A snapshot of the hub's counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Whether [`shutdown`](Self::shutdown) has been called (or the dispatcher has stopped).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(SeqCst)
    }

    /// Stops accepting, writes out what is queued for each client until `timeout` has
    /// passed, closes every client with
    /// [`DisconnectReason::Shutdown`](crate::DisconnectReason::Shutdown), joins the
    /// dispatcher thread and reports what could not be delivered.
    ///
    /// Subscriptions get the remaining events and then end. Broadcasts made after this call
    /// begins fail with [`Error::Closed`].
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the hub was already shut down.
    pub fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport> {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or(Error::Closed)?;
        self.shared.closed.store(true, SeqCst);
        self.shared.notify_room();
        let deadline = Instant::now() + timeout;
        // Once woken and seeing `closed`, the dispatcher drains commands whatever clients
        // do (even under flow control), so this send cannot hang; it fails only if the
        // dispatcher is already gone.
        self.shared.wake();
        if self.tx.send(Command::Shutdown(deadline)).is_ok() {
            self.shared.wake();
        }
        match thread.join() {
            Ok(report) => Ok(report),
            Err(_) => {
                log::error!("the hubcast dispatcher thread panicked");
                Err(Error::Closed)
            }
        }
    }

    fn frame(&self, msg: &[u8]) -> Result<Bytes> {
        let len = self.frame_len(msg)?;
        Ok(codec::encode(self.framing, msg, len))
    }

    /// The framed length of `msg`, if the hub can send it.
    fn frame_len(&self, msg: &[u8]) -> Result<usize> {
        let len = codec::encoded_len(self.framing, msg).ok_or(Error::MessageTooLarge {
            len: msg.len(),
            max: u32::MAX as usize,
        })?;
        if len > self.queue_bytes {
            return Err(Error::MessageTooLarge {
                len,
                max: self.queue_bytes,
            });
        }
        Ok(len)
    }

    fn check_client(&self, client: ClientId) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if self.shared.registry().contains_key(&client) {
            Ok(())
        } else {
            Err(Error::UnknownClient(client))
        }
    }

    /// Sends any command but a batch: it closes the open batch, so later broadcasts come
    /// after it.
    fn send(&self, command: Command) -> Result<()> {
        let mut open = self
            .open_batch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *open = None;
        self.send_locked(&mut open, command)
    }

    /// Sends `command` while the caller holds the batch lock (proof: `_open`). Waiting here
    /// holds up other host threads, never the dispatcher, which does not take that lock.
    fn send_locked(&self, _open: &mut Option<SharedBatch>, command: Command) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        // Bounds the frames waiting for the dispatcher in bytes, not only in commands.
        self.shared.reserve(command.bytes(), self.queue_bytes)?;
        // Fast path first: a full queue means the dispatcher is behind, so wake it before
        // waiting for room.
        let command = match self.tx.try_send(command) {
            Ok(()) => None,
            Err(TrySendError::Full(command)) => Some(command),
            Err(TrySendError::Disconnected(_)) => return Err(Error::Closed),
        };
        self.shared.wake();
        if let Some(command) = command {
            self.tx.send(command).map_err(|_| Error::Closed)?;
            self.shared.wake();
        }
        Ok(())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        match self.shutdown(self.linger) {
            Ok(report) if !report.is_complete() => {
                log::warn!("hubcast dropped with undelivered messages: {report:?}");
            }
            _ => {}
        }
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("local_addr", &self.local_addr)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Creates the listening socket with `socket2`, so the backlog is ours to choose.
fn bind_listener<A: ToSocketAddrs>(addr: A, backlog: u32) -> Result<mio::net::TcpListener> {
    let addrs = addr.to_socket_addrs().map_err(|source| Error::Bind {
        addr: "(unresolved)".into(),
        source,
    })?;
    let mut last = Error::Bind {
        addr: "(no address)".into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "no socket address to bind"),
    };
    for addr in addrs {
        match listen_on(addr, backlog) {
            Ok(listener) => return Ok(mio::net::TcpListener::from_std(listener)),
            Err(source) => {
                last = Error::Bind {
                    addr: addr.to_string(),
                    source,
                }
            }
        }
    }
    Err(last)
}

fn listen_on(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}
