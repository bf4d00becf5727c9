//! The dispatcher thread: one `mio` event loop that owns the listener and every client
//! socket, runs the host's commands, fans frames out and feeds subscribers.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::client::{Chunk, Client, Enqueued, Phase};
use crate::codec;
use crate::config::Auth;
use crate::hub::{Command, Registered, Shared};
use crate::stats::Tally;
use crate::transport::Conn;
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
/// First and longest pause after `accept` fails for lack of resources.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Bounds of the housekeeping tick that checks per-client deadlines (a quarter of the
/// shortest timeout): timeouts fire within a tick, and an idle hub wakes at most once a
/// second, and only while it has clients.
const TICK_MIN: Duration = Duration::from_millis(10);
const TICK_MAX: Duration = Duration::from_secs(1);
/// A client whose writes have been stuck this long no longer holds up the others (see
/// `Dispatcher::busy_clients`).
const STALL_GRACE: Duration = Duration::from_millis(250);
/// Nor does a client that has stayed over half its bound this long: it reads, but too
/// slowly to keep up even with the others held back for it.
const HIGH_GRACE: Duration = Duration::from_secs(1);

/// What giving up the spare descriptor achieved.
#[derive(Debug, PartialEq, Eq)]
enum Shedding {
    /// A waiting connection was accepted and closed.
    Shed,
    /// No connection was waiting after all.
    NothingWaiting,
    /// There is no spare, or accepting failed anyway.
    NoSpare,
}

/// A subscriber and the events it has not had room for yet.
#[derive(Debug)]
struct Subscriber {
    tx: Sender<Event>,
    /// While non-empty, the dispatcher reads no client and accepts no connection, so this
    /// holds at most one read's worth of frames plus one event per client.
    overflow: VecDeque<Event>,
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
    scratch: Vec<u8>,
    /// The listener may have connections waiting.
    accept_pending: bool,
    backoff: Option<(Instant, Duration)>,
    tally: Tally,
    shutdown: Option<Instant>,
    report: ShutdownReport,
    /// The time this round started: a coarse clock for per-client timestamps.
    now: Instant,
    /// How often per-client deadlines are checked, if any are set, and when next.
    tick: Option<Duration>,
    next_tick: Instant,
    /// Connections accepted but not yet clients (TLS handshake or authentication due).
    handshaking: usize,
    /// Live clients with over half their queue bound queued.
    high_clients: usize,
    /// Open connections per peer address, for `max_clients_per_ip`.
    per_ip: HashMap<IpAddr, usize>,
    /// A spare file descriptor: when `accept` fails for want of descriptors, closing it
    /// lets the hub accept and at once close the waiting connection instead of leaving it
    /// to make the listener ready again and again.
    reserve: Option<File>,
    /// The heartbeat ping frame, encoded once.
    ping: Option<Bytes>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Dispatcher {
    pub(crate) fn new(
        config: HubBuilder,
        poll: Poll,
        mut listener: TcpListener,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        #[cfg(feature = "tls")] tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Self> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        #[cfg(feature = "tls")]
        let tls_on = tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls_on = false;
        let has_handshake = config.authenticator.is_some() || tls_on;
        let timeouts = [
            config.idle_timeout,
            config.heartbeat,
            config.write_timeout,
            has_handshake.then_some(config.handshake_timeout),
        ];
        let tick = timeouts
            .into_iter()
            .flatten()
            .min()
            .map(|t| (t / 4).clamp(TICK_MIN, TICK_MAX));
        let ping = config.heartbeat.map(|_| {
            let len = codec::encoded_len(config.framing, b"").unwrap_or(0);
            codec::encode(config.framing, b"", len)
        });
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
            scratch: vec![0; SCRATCH],
            accept_pending: false,
            backoff: None,
            tally: Tally::default(),
            shutdown: None,
            report: ShutdownReport::default(),
            now: Instant::now(),
            tick,
            next_tick: Instant::now(),
            handshaking: 0,
            high_clients: 0,
            per_ip: HashMap::new(),
            reserve: File::open("/dev/null").ok(),
            ping,
            #[cfg(feature = "tls")]
            tls,
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
            self.now = Instant::now();
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
            self.housekeeping();
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
        // Under flow control, host calls wait in the channel while a client catches up.
        let gated = self.config.flow_control && !self.shared.is_closed();
        let mut busy = None;
        if gated && self.any_busy_memo(&mut busy) {
            return true;
        }
        self.shared.clear_notified();
        let mut alive = true;
        let mut taken = 0;
        for _ in 0..COMMAND_BATCH {
            // Look again after every fan-out: one round's batch could otherwise pass the
            // bound of clients that are keeping up.
            if gated && self.any_busy_memo(&mut busy) {
                break;
            }
            let command = self.commands.try_recv();
            if let Ok(command) = &command {
                taken += command.bytes();
            }
            match command {
                Ok(command) => self.run_command(command),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    alive = false;
                    break;
                }
            }
        }
        self.shared.release(taken);
        alive || self.shutdown.is_some()
    }

    fn run_command(&mut self, command: Command) {
        if self.shutdown.is_some() {
            // Raced with shutdown: the clients are leaving and take nothing new.
            return;
        }
        match command {
            Command::Batch(batch) => {
                let mut batch = batch.lock().unwrap_or_else(PoisonError::into_inner);
                batch.taken = true;
                // Queues count a chunk by its length: copy a mostly empty buffer so that
                // the memory a chunk holds stays within twice what it is counted as.
                let bytes = if batch.buf.capacity() > 2 * batch.buf.len() {
                    Bytes::copy_from_slice(&batch.buf)
                } else {
                    batch.buf.split().freeze()
                };
                let chunk = Chunk::many(bytes, &std::mem::take(&mut batch.ends));
                drop(batch);
                self.fan_out(chunk, None);
            }
            Command::Broadcast(frame) => self.fan_out(Chunk::one(frame), None),
            Command::BroadcastExcept(id, frame) => {
                let except = self.by_id.get(&id).copied();
                self.fan_out(Chunk::one(frame), except);
            }
            Command::SendTo(id, frame) => {
                if let Some(&slot) = self.by_id.get(&id) {
                    self.enqueue(slot, &Chunk::one(frame));
                }
            }
            Command::Disconnect(id) => {
                if let Some(&slot) = self.by_id.get(&id) {
                    let deadline = self.now + self.config.linger;
                    self.leave(slot, DisconnectReason::Kicked, Some(deadline));
                }
            }
            Command::Shutdown(deadline) => self.begin_shutdown(deadline),
        }
    }

    /// Queues `chunk` for every client but `except`.
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
        if !client.is_live() {
            return;
        }
        if client.writable && client.is_over(chunk, bound) {
            // Before calling the client slow, give its socket what it can take now: a
            // burst of host calls is queued in one round, before the round's writes.
            if let Err(err) = client.flush(&mut self.tally, self.now) {
                self.fail(slot, &err);
                return;
            }
        }
        let Some(client) = self.clients[slot].as_mut() else {
            return;
        };
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
        self.track_high(slot);
    }

    /// Keeps `high_clients` in step with one client's queue after it changed.
    fn track_high(&mut self, slot: usize) {
        let hwm = self.config.queue_bytes / 2;
        let Some(client) = self.clients[slot].as_mut() else {
            return;
        };
        let high = client.is_live() && client.queued() > hwm;
        match (high, client.high_since) {
            (true, None) => {
                client.high_since = Some(self.now);
                self.high_clients += 1;
            }
            (false, Some(_)) => {
                client.high_since = None;
                self.high_clients -= 1;
            }
            _ => {}
        }
    }

    /// Whether some client is *busy*: over half its bound because of the load, and
    /// catching up. Not busy: clients whose writes are stuck ([`STALL_GRACE`]) or that
    /// stayed over half their bound for [`HIGH_GRACE`]; so stalled or slow clients hold
    /// up the others for a bounded time only, then meet the slow-client policy.
    fn any_busy(&self) -> bool {
        let now = self.now;
        let busy = |c: &Client| {
            c.high_since
                .is_some_and(|t| now.saturating_duration_since(t) < HIGH_GRACE)
                && !c.is_stalled_for(now, STALL_GRACE)
        };
        self.high_clients > 0 && self.clients.iter().flatten().any(busy)
    }

    /// [`any_busy`](Self::any_busy) inside a loop over commands or reads: the scan is
    /// repeated only when more clients have gone high since the last one (`memo`), since
    /// within a round that is the only way a client becomes busy. Keeps those loops from
    /// scanning every client per step while stalled clients sit high.
    fn any_busy_memo(&self, memo: &mut Option<(usize, bool)>) -> bool {
        match *memo {
            Some((high, busy)) if high >= self.high_clients => busy,
            _ => {
                let busy = self.any_busy();
                *memo = Some((self.high_clients, busy));
                busy
            }
        }
    }

    /// Whether host calls wait (`flow_control`): while a busy client catches up, so a
    /// flooding host goes at the pace of its clients.
    fn host_throttled(&self) -> bool {
        self.config.flow_control && !self.shared.is_closed() && self.any_busy()
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
            if let Err(err) = client.flush(&mut self.tally, self.now) {
                self.fail(slot, &err);
            }
            self.track_high(slot);
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
            if self.now < until {
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
                    self.admit(stream, addr);
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
                    self.shared.counters.accept_errors.fetch_add(1, Relaxed);
                    match self.shed_with_reserve() {
                        Shedding::Shed => continue,
                        Shedding::NothingWaiting => {
                            self.accept_pending = false;
                            return;
                        }
                        Shedding::NoSpare => {}
                    }
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM with no spare descriptor: the
                    // connection stays in the backlog and the listener stays ready, so
                    // retrying now would spin. Wait, doubling the pause, while existing
                    // clients are served.
                    let pause = self
                        .backoff
                        .map_or(BACKOFF_MIN, |(_, p)| (p * 2).min(BACKOFF_MAX));
                    self.backoff = Some((self.now + pause, pause));
                    log::warn!("accept failed, retrying in {pause:?}: {err}");
                    return;
                }
            }
        }
    }

    /// Out of descriptors: gives up the spare one, accepts the waiting connection and
    /// closes it at once, then takes the spare back. Returns `false` if there is no spare.
    fn shed_with_reserve(&mut self) -> Shedding {
        let Some(reserve) = self.reserve.take() else {
            // Try to get the spare back for next time.
            self.reserve = File::open("/dev/null").ok();
            return Shedding::NoSpare;
        };
        drop(reserve);
        let accepted = self.listener.as_ref().map(TcpListener::accept);
        // Close the shed connection before taking the spare back: at the limit, its
        // descriptor is the one the spare needs.
        let shed = match accepted {
            Some(Ok((stream, addr))) => {
                drop(stream);
                self.shared.counters.refused.fetch_add(1, Relaxed);
                log::warn!("refused {addr}: out of file descriptors");
                Shedding::Shed
            }
            Some(Err(err)) if err.kind() == io::ErrorKind::WouldBlock => Shedding::NothingWaiting,
            _ => Shedding::NoSpare,
        };
        self.reserve = File::open("/dev/null").ok();
        shed
    }

    /// Applies the admission rules to a new connection and registers it if they pass.
    fn admit(&mut self, stream: mio::net::TcpStream, addr: SocketAddr) {
        let config = &self.config;
        let refusal = if self.by_id.len() + self.handshaking >= config.max_clients {
            Some("at max_clients")
        } else if config
            .max_clients_per_ip
            .is_some_and(|max| self.per_ip.get(&addr.ip()).copied().unwrap_or(0) >= max)
        {
            Some("at max_clients_per_ip")
        } else if config.accept_filter.as_ref().is_some_and(|f| !(f.0)(addr)) {
            Some("by the accept filter")
        } else {
            None
        };
        match refusal {
            Some(why) => {
                self.shared.counters.refused.fetch_add(1, Relaxed);
                log::warn!("refused {addr}: {why}");
            }
            None => self.register(stream, addr),
        }
    }

    fn register(&mut self, mut stream: mio::net::TcpStream, addr: SocketAddr) {
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
        let conn = match self.wrap(stream) {
            Ok(conn) => conn,
            Err(err) => {
                log::warn!("could not set up {addr}: {err}");
                self.freed.push(slot);
                return;
            }
        };
        let handshake = conn.is_handshaking() || self.config.authenticator.is_some();
        let phase = if handshake {
            self.handshaking += 1;
            Phase::Handshake(self.now + self.config.handshake_timeout)
        } else {
            Phase::Live
        };
        let id = ClientId(self.next_id);
        self.next_id += 1;
        *self.per_ip.entry(addr.ip()).or_insert(0) += 1;
        self.clients[slot] = Some(Client::new(id, addr, conn, phase, self.now));
        if !handshake {
            self.go_live(slot, None);
        }
    }

    /// Puts the transport around a new socket.
    fn wrap(&self, stream: mio::net::TcpStream) -> io::Result<Conn> {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls {
            let tls = crate::tls::TlsConn::new(stream, Arc::clone(config))?;
            return Ok(Conn::Tls(Box::new(tls)));
        }
        Ok(Conn::Tcp(stream))
    }

    /// The connection becomes a client: it gets broadcasts and subscribers hear of it.
    fn go_live(&mut self, slot: usize, name: Option<String>) {
        let Some(client) = self.clients[slot].as_mut() else {
            return;
        };
        if let Phase::Handshake(_) = client.phase {
            self.handshaking -= 1;
        }
        client.phase = Phase::Live;
        let (id, addr) = (client.id, client.addr);
        let dropped = Arc::clone(&client.dropped);
        self.shared.registry().insert(
            id,
            Registered {
                addr,
                name,
                dropped,
            },
        );
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
        // Stop reading while a client is busy: frames read now (relayed, or answered by the
        // host) would grow its queue; publishing clients are held back by TCP instead.
        let mut busy = None;
        let mut i = 0;
        while i < pending.len() && !self.paused() && !self.any_busy_memo(&mut busy) {
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
            let result = client.conn.read(&mut self.scratch);
            if client.conn.has_buffered_output() {
                // A TLS handshake reply that did not fit in the socket.
                self.mark_dirty(slot);
            }
            match result {
                Ok(0) => {
                    self.end_of_stream(slot);
                    return;
                }
                Ok(n) => {
                    let Some(client) = self.clients[slot].as_mut() else {
                        return;
                    };
                    budget = budget.saturating_sub(n);
                    self.tally.bytes_in += n as u64;
                    client.last_read = self.now;
                    // A leaving client's input is read only to be discarded.
                    if !client.is_closing() {
                        client.rbuf.extend_from_slice(&self.scratch[..n]);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    // A TLS handshake may just have completed.
                    self.decode_frames(slot);
                    return;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.fail(slot, &err);
                    return;
                }
            }
        }
    }

    /// The peer closed its sending side.
    fn end_of_stream(&mut self, slot: usize) {
        let Some(client) = self.clients[slot].as_ref() else {
            return;
        };
        match client.phase {
            Phase::Handshake(_) => self.drop_unaccepted(slot, false),
            Phase::Live => {
                let linger = self.now + self.config.linger;
                self.leave(slot, DisconnectReason::PeerClosed, Some(linger));
            }
            Phase::Closing(_) => {}
        }
    }

    /// Cuts the client's buffered input into frames and delivers them while subscribers have
    /// room; during the handshake, hands the first frame to the authenticator. Returns
    /// `false` if the connection is gone.
    fn decode_frames(&mut self, slot: usize) -> bool {
        let (framing, max_frame) = (self.config.framing, self.config.max_frame);
        while !self.paused() {
            let Some(client) = self.clients[slot].as_mut() else {
                return false;
            };
            match client.phase {
                Phase::Closing(_) => {
                    client.rbuf = BytesMut::new();
                    return true;
                }
                Phase::Handshake(_) if client.conn.is_handshaking() => return true,
                Phase::Handshake(_) if self.config.authenticator.is_none() => {
                    // The transport's handshake is done and nothing else is asked.
                    self.go_live(slot, None);
                    continue;
                }
                Phase::Handshake(_) | Phase::Live => {}
            }
            match codec::decode(framing, &mut client.rbuf, max_frame, &mut client.scanned) {
                Ok(Some(payload)) => {
                    let (id, live) = (client.id, client.is_live());
                    self.tally.frames_in += 1;
                    if !live {
                        if !self.authenticate(slot, &payload) {
                            return false;
                        }
                    } else if payload.is_empty() && self.config.heartbeat.is_some() {
                        // A heartbeat answer: it already counted as a sign of life.
                    } else {
                        log::trace!("client {id} sent {payload:?}");
                        self.relay(slot, &payload);
                        self.emit(Event::Message {
                            client: id,
                            payload,
                        });
                    }
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
                    if client.is_live() {
                        self.leave(slot, DisconnectReason::FrameTooLarge, None);
                    } else {
                        self.drop_unaccepted(slot, false);
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Hands a connection's first frame to the authenticator. Returns `false` if rejected.
    fn authenticate(&mut self, slot: usize, frame: &[u8]) -> bool {
        let Some(client) = self.clients[slot].as_ref() else {
            return false;
        };
        let Some(authenticator) = self.config.authenticator.clone() else {
            return true;
        };
        match (authenticator.0)(client.addr, frame) {
            Auth::Accept => self.go_live(slot, None),
            Auth::AcceptAs(name) => self.go_live(slot, Some(name)),
            Auth::Reject => {
                log::info!("rejected {}: authentication failed", client.addr);
                self.drop_unaccepted(slot, true);
                return false;
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
                self.fan_out(Chunk::one(frame), except);
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
        let Some(client) = self.clients[slot].as_ref() else {
            return;
        };
        log::debug!("client {} failed: {err}", client.id);
        match client.phase {
            Phase::Handshake(_) => self.drop_unaccepted(slot, false),
            Phase::Live => self.leave(slot, DisconnectReason::from_io(err), None),
            Phase::Closing(_) => self.close(slot),
        }
    }

    /// Closes a connection that never became a client; subscribers never hear of it.
    fn drop_unaccepted(&mut self, slot: usize, rejected: bool) {
        let counters = &self.shared.counters;
        if rejected {
            counters.rejected.fetch_add(1, Relaxed);
        } else {
            counters.handshake_failed.fetch_add(1, Relaxed);
        }
        self.close(slot);
    }

    /// The client leaves the hub: it is forgotten by id, subscribers are told, and its
    /// socket is closed now (`linger` is `None`) or once its queue is written out or the
    /// deadline passes.
    fn leave(&mut self, slot: usize, reason: DisconnectReason, linger: Option<Instant>) {
        let Some(client) = self.clients[slot].as_mut() else {
            return;
        };
        if !client.is_live() {
            return;
        }
        let id = client.id;
        client.phase = Phase::Closing(linger.unwrap_or(self.now));
        self.track_high(slot);
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

    /// Checks per-client deadlines once a tick: handshakes, idle clients, heartbeats and
    /// stalled writes.
    fn housekeeping(&mut self) {
        let Some(tick) = self.tick else {
            return;
        };
        if self.now < self.next_tick {
            return;
        }
        self.next_tick = self.now + tick;
        let now = self.now;
        let config = &self.config;
        let (idle, heartbeat, write) =
            (config.idle_timeout, config.heartbeat, config.write_timeout);
        for slot in 0..self.clients.len() {
            let Some(client) = self.clients[slot].as_mut() else {
                continue;
            };
            // Input the hub has not read yet (reads paused for a full subscription, or the
            // read budget used up) is a sign of life: the wait is the hub's, not the client's.
            let silent = match client.read_pending {
                true => Duration::ZERO,
                false => now.saturating_duration_since(client.last_read),
            };
            let verdict = match client.phase {
                Phase::Handshake(_) if client.read_pending => continue,
                Phase::Handshake(deadline) if now >= deadline => {
                    log::info!("{}: no handshake in time", client.addr);
                    self.drop_unaccepted(slot, false);
                    continue;
                }
                Phase::Handshake(_) | Phase::Closing(_) => continue,
                Phase::Live if idle.is_some_and(|t| silent >= t) => Some(DisconnectReason::Idle),
                Phase::Live if heartbeat.is_some_and(|t| silent >= 2 * t) => {
                    Some(DisconnectReason::Unresponsive)
                }
                Phase::Live
                    if write.is_some_and(|t| {
                        client.has_output()
                            && client
                                .stalled_since
                                .is_some_and(|s| now.saturating_duration_since(s) >= t)
                    }) =>
                {
                    Some(DisconnectReason::Slow)
                }
                Phase::Live => None,
            };
            match verdict {
                Some(reason) => self.leave(slot, reason, None),
                None => {
                    if let (Some(interval), Some(ping)) = (heartbeat, &self.ping) {
                        if now.saturating_duration_since(client.last_ping) >= interval {
                            client.last_ping = now;
                            let ping = Chunk::one(ping.clone());
                            self.enqueue(slot, &ping);
                        }
                    }
                }
            }
        }
    }

    /// Closes leaving clients whose queues are empty or whose time is up.
    fn finish_closing(&mut self) {
        let now = self.now;
        let mut closing = std::mem::take(&mut self.closing);
        closing.retain(|&slot| {
            // A slot closed another way may already hold a new client: leave that alone.
            let Some(client) = self.clients[slot].as_ref() else {
                return false;
            };
            let Phase::Closing(deadline) = client.phase else {
                return false;
            };
            let keep = client.has_output() && now < deadline;
            if !keep {
                self.close(slot);
            }
            keep
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
        if client.high_since.is_some() {
            self.high_clients -= 1;
        }
        if let Phase::Handshake(_) = client.phase {
            self.handshaking -= 1;
        } else if self.shutdown.is_some() {
            match client.backlog() {
                (0, _) => self.report.flushed += 1,
                (frames, bytes) => self.report.undelivered.push(Undelivered {
                    client: client.id,
                    frames,
                    bytes,
                }),
            }
        }
        if let Some(count) = self.per_ip.get_mut(&client.addr.ip()) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&client.addr.ip());
            }
        }
        let _ = self.poll.registry().deregister(client.conn.socket());
        client.conn.shutdown_write();
        client.conn.discard_input(&mut self.scratch);
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
                Some(Client {
                    phase: Phase::Closing(until),
                    ..
                }) => *until = (*until).min(deadline),
                Some(Client {
                    phase: Phase::Handshake(_),
                    ..
                }) => self.drop_unaccepted(slot, false),
                Some(_) => self.leave(slot, DisconnectReason::Shutdown, Some(deadline)),
                None => {}
            }
        }
    }

    fn next_timeout(&self) -> Option<Duration> {
        let commands_waiting = !self.commands.is_empty();
        let reads_waiting = !self.read_pending.is_empty() && !self.paused();
        let host_throttled = commands_waiting && self.host_throttled();
        let reads_throttled = reads_waiting && self.any_busy();
        let busy = (commands_waiting && !host_throttled)
            || (reads_waiting && !reads_throttled)
            || (!self.paused() && self.accept_pending_now());
        if busy {
            return Some(Duration::ZERO);
        }
        let mut deadline = self.closing_deadline();
        if host_throttled || reads_throttled {
            // Clients may pass STALL_GRACE without an event: look again by then.
            let again = self.now + STALL_GRACE;
            deadline = Some(deadline.map_or(again, |d| d.min(again)));
        }
        if self.tick.is_some() && self.by_id.len() + self.handshaking > 0 {
            deadline = Some(deadline.map_or(self.next_tick, |d| d.min(self.next_tick)));
        }
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
            .filter_map(|&slot| match self.clients[slot].as_ref()?.phase {
                Phase::Closing(deadline) => Some(deadline),
                _ => None,
            })
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
