//! The dispatcher thread: one `mio` event loop that owns the listener and every client
//! socket, runs the host's commands, fans frames out and feeds subscribers.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::client::{Chunk, Client, Enqueued};
use crate::codec;
use crate::hub::{Command, Registered, Shared};
use crate::stats::Tally;
use crate::{ClientId, DisconnectReason, Event, HubBuilder, Relay, ShutdownReport, Undelivered};

/// The token of the waker that host calls use.
pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// Host commands run per round before the loop turns to sockets again.
const COMMAND_BATCH: usize = 1024;
/// Connections accepted per round, so a connect storm cannot starve existing clients.
const ACCEPT_BATCH: usize = 256;
/// Bytes read from one client per round, so one chatty client cannot starve the others.
const READ_BUDGET: usize = 256 * 1024;
/// Size of the one read buffer all clients share.
const SCRATCH: usize = 64 * 1024;
/// Consecutive broadcasts smaller than this are copied into one chunk, so each client gets
/// one queue entry and one `writev` slice per batch instead of one per message.
const COALESCE_BELOW: usize = 4 * 1024;
/// The largest coalesced chunk.
const RUN_MAX: usize = 64 * 1024;
/// First and longest pause after `accept` fails for lack of resources.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A subscriber and the events it has not had room for yet.
#[derive(Debug)]
struct Subscriber {
    tx: Sender<Event>,
    /// While non-empty, the dispatcher reads no client and accepts no connection, so this
    /// holds at most one read's worth of frames plus one event per client.
    overflow: VecDeque<Event>,
}

/// Consecutive small broadcasts gathered into one chunk (see [`COALESCE_BELOW`]).
#[derive(Debug, Default)]
struct Run {
    buf: BytesMut,
    /// The run's only frame, kept uncopied until a second one arrives.
    single: Option<Bytes>,
    frames: u32,
}

pub(crate) struct Dispatcher {
    poll: Poll,
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    config: HubBuilder,
    /// Clients by slot; a slot's index is its `mio` token.
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    /// Slots emptied this round: reused only next round, so a stale event from this round's
    /// batch can never reach a new client in the same slot.
    freed: Vec<usize>,
    by_id: HashMap<ClientId, usize>,
    next_id: u64,
    subscribers: Vec<Subscriber>,
    /// Clients with queued output that the socket may take now.
    dirty: Vec<usize>,
    /// Clients that may have unread input (budget used up, or reading paused).
    read_pending: Vec<usize>,
    /// Clients that left and are writing out their queues until their deadline.
    closing: Vec<usize>,
    run: Run,
    scratch: Vec<u8>,
    /// The listener may have connections waiting.
    accept_pending: bool,
    backoff: Option<(Instant, Duration)>,
    tally: Tally,
    shutdown: Option<Instant>,
    report: ShutdownReport,
}

impl Dispatcher {
    pub(crate) fn new(
        config: HubBuilder,
        poll: Poll,
        mut listener: TcpListener,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
    ) -> io::Result<Self> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Dispatcher {
            poll,
            listener: Some(listener),
            shared,
            commands,
            config,
            clients: Vec::new(),
            free: Vec::new(),
            freed: Vec::new(),
            by_id: HashMap::new(),
            next_id: 1,
            subscribers: Vec::new(),
            dirty: Vec::new(),
            read_pending: Vec::new(),
            closing: Vec::new(),
            run: Run::default(),
            scratch: vec![0; SCRATCH],
            accept_pending: false,
            backoff: None,
            tally: Tally::default(),
            shutdown: None,
            report: ShutdownReport::default(),
        })
    }

    /// The event loop. Returns when a shutdown has closed every client, or when the `Hub`
    /// handle is gone.
    pub(crate) fn run(mut self) -> ShutdownReport {
        let mut events = Events::with_capacity(1024);
        let mut timeout = None;
        loop {
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() != io::ErrorKind::Interrupted {
                    log::error!("hubcast poll failed, closing every client: {err}");
                    self.begin_shutdown(Instant::now());
                }
            }
            if !self.run_commands() {
                self.begin_shutdown(Instant::now() + self.config.linger);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept_pending = true,
                    Token(slot) => {
                        let Some(client) = self.client_mut(slot) else {
                            continue;
                        };
                        if event.is_writable() {
                            client.writable = true;
                            self.mark_dirty(slot);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.mark_read_pending(slot);
                        }
                    }
                }
            }
            self.accept();
            self.read_all();
            self.flush_dirty();
            self.feed_subscribers();
            self.finish_closing();
            self.tally.publish(&self.shared.counters);
            self.free.append(&mut self.freed);
            if self.shutdown.is_some() && self.clients.iter().all(Option::is_none) {
                break;
            }
            timeout = self.next_timeout();
        }
        self.finish()
    }

    /// Runs up to [`COMMAND_BATCH`] host commands. Returns `false` once the `Hub` is gone.
    fn run_commands(&mut self) -> bool {
        self.shared.clear_notified();
        let mut alive = true;
        for _ in 0..COMMAND_BATCH {
            match self.commands.try_recv() {
                Ok(Command::Broadcast(frame)) => self.add_to_run(frame),
                Ok(command) => {
                    self.flush_run();
                    self.run_command(command);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    alive = false;
                    break;
                }
            }
        }
        self.flush_run();
        alive || self.shutdown.is_some()
    }

    fn run_command(&mut self, command: Command) {
        if self.shutdown.is_some() {
            // Raced with shutdown: the clients are leaving and take nothing new.
            return;
        }
        match command {
            Command::Broadcast(frame) => self.fan_out(
                Chunk {
                    bytes: frame,
                    frames: 1,
                },
                None,
            ),
            Command::BroadcastExcept(id, frame) => {
                let except = self.by_id.get(&id).copied();
                self.fan_out(
                    Chunk {
                        bytes: frame,
                        frames: 1,
                    },
                    except,
                );
            }
            Command::SendTo(id, frame) => {
                if let Some(&slot) = self.by_id.get(&id) {
                    self.enqueue(
                        slot,
                        &Chunk {
                            bytes: frame,
                            frames: 1,
                        },
                    );
                }
            }
            Command::Disconnect(id) => {
                if let Some(&slot) = self.by_id.get(&id) {
                    let deadline = Instant::now() + self.config.linger;
                    self.leave(slot, DisconnectReason::Kicked, Some(deadline));
                }
            }
            Command::Shutdown(deadline) => self.begin_shutdown(deadline),
        }
    }

    fn add_to_run(&mut self, frame: Bytes) {
        if self.shutdown.is_some() {
            return;
        }
        let run_max = RUN_MAX.min(self.config.queue_bytes / 8).max(COALESCE_BELOW);
        if frame.len() >= COALESCE_BELOW {
            self.flush_run();
            self.fan_out(
                Chunk {
                    bytes: frame,
                    frames: 1,
                },
                None,
            );
            return;
        }
        if self.run.buf.len() + frame.len() > run_max {
            self.flush_run();
        }
        match self.run.single.take() {
            None if self.run.frames == 0 => self.run.single = Some(frame),
            single => {
                if let Some(first) = single {
                    self.run.buf.extend_from_slice(&first);
                }
                self.run.buf.extend_from_slice(&frame);
            }
        }
        self.run.frames += 1;
    }

    fn flush_run(&mut self) {
        if self.run.frames == 0 {
            return;
        }
        let bytes = match self.run.single.take() {
            Some(frame) => frame,
            None => self.run.buf.split().freeze(),
        };
        let chunk = Chunk {
            bytes,
            frames: std::mem::take(&mut self.run.frames),
        };
        self.fan_out(chunk, None);
    }

    /// Queues `chunk` for every live client but `except`.
    fn fan_out(&mut self, chunk: Chunk, except: Option<usize>) {
        for slot in 0..self.clients.len() {
            if Some(slot) != except {
                self.enqueue(slot, &chunk);
            }
        }
    }

    fn enqueue(&mut self, slot: usize, chunk: &Chunk) {
        let (bound, policy) = (self.config.queue_bytes, self.config.slow_client_policy);
        let Some(client) = self.clients[slot].as_mut() else {
            return;
        };
        if client.closing.is_some() {
            return;
        }
        match client.enqueue(chunk, bound, policy) {
            Enqueued::Queued(true) => self.mark_dirty(slot),
            Enqueued::Queued(false) => {}
            Enqueued::Dropped(frames) => {
                self.shared.counters.dropped.fetch_add(frames, Relaxed);
                log::debug!("dropped {frames} frames for slow client {}", client.id);
                self.mark_dirty(slot);
            }
            Enqueued::Full => self.leave(slot, DisconnectReason::Slow, None),
        }
    }

    fn client_mut(&mut self, slot: usize) -> Option<&mut Client> {
        self.clients.get_mut(slot).and_then(Option::as_mut)
    }

    fn mark_dirty(&mut self, slot: usize) {
        if let Some(client) = self.client_mut(slot) {
            if client.writable && client.has_output() && !client.dirty {
                client.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    fn mark_read_pending(&mut self, slot: usize) {
        if let Some(client) = self.client_mut(slot) {
            if !client.read_pending {
                client.read_pending = true;
                self.read_pending.push(slot);
            }
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let Some(client) = self.clients[slot].as_mut() else {
                continue;
            };
            client.dirty = false;
            if let Err(err) = client.flush(&mut self.tally) {
                self.fail(slot, &err);
            }
        }
        dirty.clear();
        // Failures above may have queued nothing new, but keep whatever they did.
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// Whether new events must wait: some subscriber has a backlog.
    fn paused(&self) -> bool {
        self.subscribers.iter().any(|s| !s.overflow.is_empty())
    }

    /// Accepts waiting connections, unless paused, backing off, at the batch limit or shut
    /// down.
    fn accept(&mut self) {
        if !self.accept_pending || self.paused() {
            return;
        }
        if let Some((until, _)) = self.backoff {
            if Instant::now() < until {
                return;
            }
        }
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    self.backoff = None;
                    if self.by_id.len() >= self.config.max_clients {
                        self.shared.counters.refused.fetch_add(1, Relaxed);
                        log::warn!(
                            "refused {addr}: at max_clients ({})",
                            self.config.max_clients
                        );
                        drop(stream);
                    } else {
                        self.register(stream, addr);
                    }
                    if self.paused() {
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(err) if is_transient_accept_error(&err) => {}
                Err(err) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays in the backlog
                    // and the listener stays readable, so retrying now would spin. Wait,
                    // doubling the pause, while existing clients are served.
                    let pause = self
                        .backoff
                        .map_or(BACKOFF_MIN, |(_, p)| (p * 2).min(BACKOFF_MAX));
                    self.backoff = Some((Instant::now() + pause, pause));
                    self.shared.counters.accept_errors.fetch_add(1, Relaxed);
                    log::warn!("accept failed, retrying in {pause:?}: {err}");
                    return;
                }
            }
        }
    }

    fn register(&mut self, mut stream: mio::net::TcpStream, addr: std::net::SocketAddr) {
        if let Err(err) = self.configure(&stream) {
            log::warn!("could not set socket options for {addr}: {err}");
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.clients.len() - 1
        });
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = self
            .poll
            .registry()
            .register(&mut stream, Token(slot), interest)
        {
            log::warn!("could not register {addr}: {err}");
            self.freed.push(slot);
            return;
        }
        let id = ClientId(self.next_id);
        self.next_id += 1;
        let client = Client::new(id, stream);
        self.shared.registry().insert(
            id,
            Registered {
                addr,
                dropped: Arc::clone(&client.dropped),
            },
        );
        self.clients[slot] = Some(client);
        self.by_id.insert(id, slot);
        let counters = &self.shared.counters;
        counters.accepted.fetch_add(1, Relaxed);
        counters.connected.fetch_add(1, Relaxed);
        log::debug!("client {id} connected from {addr}");
        self.emit(Event::Connected { client: id, addr });
    }

    fn configure(&self, stream: &mio::net::TcpStream) -> io::Result<()> {
        let socket = socket2::SockRef::from(stream);
        socket.set_nodelay(self.config.nodelay)?;
        if let Some(size) = self.config.send_buffer {
            socket.set_send_buffer_size(size)?;
        }
        if let Some(idle) = self.config.keepalive {
            let interval = idle.clamp(Duration::from_secs(1), Duration::from_secs(10));
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(interval);
            socket.set_tcp_keepalive(&keepalive)?;
        }
        Ok(())
    }

    /// Reads every client that may have input, unless subscribers need to catch up first.
    fn read_all(&mut self) {
        let mut pending = std::mem::take(&mut self.read_pending);
        let mut i = 0;
        while i < pending.len() && !self.paused() {
            let slot = pending[i];
            i += 1;
            if let Some(client) = self.client_mut(slot) {
                client.read_pending = false;
                self.read_client(slot);
            }
        }
        // Clients not reached keep their place, ahead of those added meanwhile.
        pending.drain(..i);
        pending.append(&mut self.read_pending);
        self.read_pending = pending;
    }

    /// Reads one client up to its budget: frames go to subscribers (and other clients in
    /// relay mode); end of stream and errors make it leave.
    fn read_client(&mut self, slot: usize) {
        let mut budget = READ_BUDGET;
        loop {
            if !self.decode_frames(slot) {
                return;
            }
            if self.paused() || budget == 0 {
                self.mark_read_pending(slot);
                return;
            }
            let Some(client) = self.clients[slot].as_mut() else {
                return;
            };
            let result = client.stream.read(&mut self.scratch);
            match result {
                Ok(0) => {
                    let reason = DisconnectReason::PeerClosed;
                    if client.closing.is_none() {
                        self.leave(slot, reason, Some(Instant::now() + self.config.linger));
                    }
                    return;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.tally.bytes_in += n as u64;
                    // A leaving client's input is read only to be discarded.
                    if client.closing.is_none() {
                        client.rbuf.extend_from_slice(&self.scratch[..n]);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.fail(slot, &err);
                    return;
                }
            }
        }
    }

    /// Cuts the client's buffered input into frames and delivers them while subscribers have
    /// room. Returns `false` if the client had to leave.
    fn decode_frames(&mut self, slot: usize) -> bool {
        let (framing, max_frame) = (self.config.framing, self.config.max_frame);
        while !self.paused() {
            let Some(client) = self.clients[slot].as_mut() else {
                return false;
            };
            if client.closing.is_some() {
                client.rbuf = BytesMut::new();
                return true;
            }
            match codec::decode(framing, &mut client.rbuf, max_frame, &mut client.scanned) {
                Ok(Some(payload)) => {
                    let id = client.id;
                    self.tally.frames_in += 1;
                    log::trace!("client {id} sent {payload:?}");
                    self.relay(slot, &payload);
                    self.emit(Event::Message {
                        client: id,
                        payload,
                    });
                }
                Ok(None) => {
                    if client.rbuf.is_empty() && client.rbuf.capacity() > 0 {
                        // Idle clients hold no buffer.
                        client.rbuf = BytesMut::new();
                    }
                    return true;
                }
                Err(codec::FrameTooLarge) => {
                    log::info!("client {} sent a frame over {max_frame} bytes", client.id);
                    self.leave(slot, DisconnectReason::FrameTooLarge, None);
                    return false;
                }
            }
        }
        true
    }

    fn relay(&mut self, from: usize, payload: &[u8]) {
        let except = match self.config.relay {
            Relay::Off => return,
            Relay::All => None,
            Relay::Others => Some(from),
        };
        let framing = self.config.framing;
        match codec::encoded_len(framing, payload) {
            Some(len) if len <= self.config.queue_bytes => {
                let frame = codec::encode(framing, payload, len);
                self.fan_out(
                    Chunk {
                        bytes: frame,
                        frames: 1,
                    },
                    except,
                );
            }
            _ => log::warn!(
                "not relaying a {}-byte frame: over queue_bytes",
                payload.len()
            ),
        }
    }

    /// Sends `event` to every subscriber, queueing it behind any backlog; forgets
    /// subscribers whose receiver is gone.
    fn emit(&mut self, event: Event) {
        self.adopt_subscribers();
        let before = self.subscribers.len();
        self.subscribers.retain_mut(|sub| sub.offer(&event));
        if self.subscribers.len() < before {
            log::debug!(
                "{} subscription(s) dropped",
                before - self.subscribers.len()
            );
        }
        self.update_paused();
    }

    fn adopt_subscribers(&mut self) {
        if self.shared.inbox_pending.swap(false, SeqCst) {
            let senders = std::mem::take(&mut self.shared.inbox().senders);
            self.subscribers
                .extend(senders.into_iter().map(|tx| Subscriber {
                    tx,
                    overflow: VecDeque::new(),
                }));
        }
    }

    /// Moves backlogged events into subscriber queues as they drain, and forgets
    /// subscribers that were dropped.
    fn feed_subscribers(&mut self) {
        self.adopt_subscribers();
        self.subscribers.retain_mut(Subscriber::drain);
        self.update_paused();
    }

    /// Publishes whether reading is paused, without losing a wake-up: a subscription checks
    /// the flag after each receive, so after raising it the dispatcher looks at the queues
    /// once more, in case the subscription emptied them just before (the fences on both
    /// sides order the flag against the queue).
    fn update_paused(&mut self) {
        if self.paused() && !self.shared.is_paused() {
            log::debug!("a subscription is full: pausing reads until it drains");
            self.shared.set_paused(true);
            fence(SeqCst);
            self.subscribers.retain_mut(Subscriber::drain);
        }
        if !self.paused() && self.shared.is_paused() {
            self.shared.set_paused(false);
        }
    }

    /// A socket error: the client leaves at once with the matching reason.
    fn fail(&mut self, slot: usize, err: &io::Error) {
        let reason = DisconnectReason::from_io(err);
        if let Some(client) = self.client_mut(slot) {
            if client.closing.is_some() {
                self.close(slot);
                return;
            }
            log::debug!("client {} failed: {err}", client.id);
        }
        self.leave(slot, reason, None);
    }

    /// The client leaves the hub: it is forgotten by id, subscribers are told, and its
    /// socket is closed now (`linger` is `None`) or once its queue is written out or the
    /// deadline passes.
    fn leave(&mut self, slot: usize, reason: DisconnectReason, linger: Option<Instant>) {
        let Some(client) = self.clients[slot].as_mut() else {
            return;
        };
        if client.closing.is_some() {
            return;
        }
        let id = client.id;
        // `closing` also marks the client as gone for fan-out and reads.
        client.closing = Some(linger.unwrap_or_else(Instant::now));
        self.by_id.remove(&id);
        self.shared.registry().remove(&id);
        let counters = &self.shared.counters;
        counters.connected.fetch_sub(1, Relaxed);
        counters.disconnects[reason.index()].fetch_add(1, Relaxed);
        log::debug!("client {id} left: {reason}");
        self.emit(Event::Disconnected { client: id, reason });
        if linger.is_some() {
            self.closing.push(slot);
        } else {
            self.close(slot);
        }
    }

    /// Closes leaving clients whose queues are empty or whose time is up.
    fn finish_closing(&mut self) {
        let now = Instant::now();
        let mut closing = std::mem::take(&mut self.closing);
        closing.retain(|&slot| match self.clients[slot].as_ref() {
            Some(client) if client.has_output() && client.closing.is_some_and(|d| now < d) => true,
            Some(_) => {
                self.close(slot);
                false
            }
            None => false,
        });
        closing.append(&mut self.closing);
        self.closing = closing;
    }

    /// Closes the socket: FIN after what was written, and the slot is freed next round.
    fn close(&mut self, slot: usize) {
        let Some(mut client) = self.clients[slot].take() else {
            return;
        };
        self.freed.push(slot);
        if self.shutdown.is_some() {
            match client.backlog() {
                (0, _) => self.report.flushed += 1,
                (frames, bytes) => self.report.undelivered.push(Undelivered {
                    client: client.id,
                    frames,
                    bytes,
                }),
            }
        }
        let _ = self.poll.registry().deregister(&mut client.stream);
        let _ = client.stream.shutdown(std::net::Shutdown::Write);
        client.discard_input(&mut self.scratch);
    }

    /// Stops accepting and makes every client leave, writing out its queue until `deadline`.
    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(deadline);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.report.clients = self.by_id.len();
        log::info!(
            "hubcast shutting down, {} clients connected",
            self.report.clients
        );
        for slot in 0..self.clients.len() {
            match self.clients[slot].as_mut() {
                Some(client) if client.closing.is_some() => {
                    client.closing = client.closing.map(|d| d.min(deadline));
                }
                Some(_) => self.leave(slot, DisconnectReason::Shutdown, Some(deadline)),
                None => {}
            }
        }
    }

    fn next_timeout(&self) -> Option<Duration> {
        let busy = !self.commands.is_empty()
            || (!self.paused() && (!self.read_pending.is_empty() || self.accept_pending_now()));
        if busy {
            return Some(Duration::ZERO);
        }
        let mut deadline = self.closing_deadline();
        if self.accept_pending && !self.paused() {
            if let Some((until, _)) = self.backoff {
                deadline = Some(deadline.map_or(until, |d| d.min(until)));
            }
        }
        deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    fn accept_pending_now(&self) -> bool {
        self.accept_pending
            && self.listener.is_some()
            && self
                .backoff
                .map_or(true, |(until, _)| Instant::now() >= until)
    }

    fn closing_deadline(&self) -> Option<Instant> {
        self.closing
            .iter()
            .filter_map(|&slot| self.clients[slot].as_ref().and_then(|c| c.closing))
            .min()
    }

    /// After the last client is closed: hand remaining events over and end subscriptions.
    fn finish(mut self) -> ShutdownReport {
        self.adopt_subscribers();
        let mut inbox = self.shared.inbox();
        inbox.closed = true;
        inbox.senders.clear();
        drop(inbox);
        let deadline = self.shutdown.unwrap_or_else(Instant::now);
        for sub in &mut self.subscribers {
            while let Some(event) = sub.overflow.pop_front() {
                if sub.tx.send_deadline(event, deadline).is_err() {
                    log::warn!(
                        "hubcast shut down with {} events undelivered",
                        sub.overflow.len() + 1
                    );
                    break;
                }
            }
        }
        self.shared.set_paused(false);
        self.tally.publish(&self.shared.counters);
        log::info!("hubcast stopped");
        self.report
    }
}

impl Subscriber {
    /// Sends `event` now if nothing is waiting ahead of it and there is room, else queues
    /// it. Returns `false` if the receiver is gone.
    fn offer(&mut self, event: &Event) -> bool {
        if !self.overflow.is_empty() {
            self.overflow.push_back(event.clone());
            return true;
        }
        match self.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(event)) => {
                self.overflow.push_back(event);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Moves backlogged events into the channel. Returns `false` if the receiver is gone.
    fn drain(&mut self) -> bool {
        while let Some(event) = self.overflow.pop_front() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.overflow.push_front(event);
                    return true;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        // With nothing to send, a dropped receiver is found at the next event.
        true
    }
}

fn is_transient_accept_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
