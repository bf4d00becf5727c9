//! Accepting connections: the limits, the host's accept filter, the spare descriptor that
//! lets the hub shed connections when the process is out of descriptors, and the back-off
//! when `accept` fails. Refusals are logged in aggregate, never one line per connection.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};

use super::storm::{self, StormLog};
use super::Dispatcher;
use crate::client::{Client, Phase};
use crate::transport::Conn;
use crate::wire::Wire;
use crate::{ClientId, Transport};

/// Connections accepted per round, so a connect storm cannot starve existing clients.
const ACCEPT_BATCH: usize = 256;
/// First and longest pause after `accept` fails for lack of resources.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// The longest keep-alive idle time Linux takes (`TCP_KEEPIDLE`).
const MAX_KEEPALIVE: Duration = Duration::from_secs(32_767);

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    MaxClients,
    MaxClientsPerIp,
    Filter,
    FilterPanicked,
    NoDescriptors,
}

impl Refusal {
    /// Why, as the log says it.
    fn kind(self) -> &'static str {
        match self {
            Refusal::MaxClients => "at max_clients",
            Refusal::MaxClientsPerIp => "at max_clients_per_ip",
            Refusal::Filter => "by the accept filter",
            Refusal::FilterPanicked => "because the accept filter panicked",
            Refusal::NoDescriptors => "out of file descriptors",
        }
    }
}

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

/// A listening socket and what its connections speak.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    pub(crate) transport: Transport,
    /// It may have connections waiting.
    pub(crate) pending: bool,
}

/// The dispatcher's admission state.
#[derive(Debug)]
pub(crate) struct Admission {
    /// After `accept` failed: not before this, and the pause to double next time.
    backoff: Option<(Instant, Duration)>,
    /// Open connections per peer address, for `max_clients_per_ip`.
    per_ip: HashMap<IpAddr, usize>,
    /// Connections accepted but not yet clients (TLS handshake or authentication due).
    pub(crate) handshaking: usize,
    /// A spare file descriptor: when `accept` fails for want of descriptors, closing it
    /// lets the hub accept and at once close the waiting connection instead of leaving it
    /// to make the listener ready again and again.
    reserve: Option<File>,
    next_id: u64,
    log: StormLog,
    /// Clients closed for breaking the rules (a bad handshake, frame or message), logged
    /// in aggregate.
    pub(crate) misbehaved: StormLog,
}

impl Admission {
    pub(crate) fn new() -> Admission {
        Admission {
            backoff: None,
            per_ip: HashMap::new(),
            handshaking: 0,
            reserve: File::open("/dev/null").ok(),
            next_id: 1,
            log: StormLog::new(log::Level::Warn, "connections refused"),
            misbehaved: StormLog::new(log::Level::Info, "clients closed for breaking the rules"),
        }
    }

    /// Whether accepting would do something now.
    pub(crate) fn ready(&self, now: Instant, listeners: &[Listener]) -> bool {
        listeners.iter().any(|l| l.pending) && self.backoff.map_or(true, |(until, _)| now >= until)
    }

    /// When to look again: the end of a back-off (if connections wait and the hub is not
    /// paused), or of a log period.
    pub(crate) fn retry_at(&self, waiting: bool) -> Option<Instant> {
        let backoff = self.backoff.filter(|_| waiting).map(|(until, _)| until);
        [backoff, self.log.next()].into_iter().flatten().min()
    }

    /// Logs refusals counted in a period that is over.
    pub(crate) fn tick(&mut self, now: Instant) {
        self.log.tick(now);
    }

    /// Logs a connection refused (the first of a storm, then counts by `kind`).
    pub(crate) fn refuse_logged(
        &mut self,
        kind: &'static str,
        now: Instant,
        line: std::fmt::Arguments<'_>,
    ) {
        self.log.record(storm::ADMISSION, kind, now, line);
    }

    /// A connection from `addr` closed.
    pub(crate) fn forget(&mut self, addr: SocketAddr) {
        if let Some(count) = self.per_ip.get_mut(&addr.ip()) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&addr.ip());
            }
        }
    }
}

impl Dispatcher {
    /// Accepts waiting connections, unless paused, backing off or shut down, at most
    /// [`ACCEPT_BATCH`] a round over all listeners.
    pub(super) fn accept(&mut self) {
        if self.subs.is_paused() || !self.admission.ready(self.now, &self.io.listeners) {
            return;
        }
        let mut budget = ACCEPT_BATCH;
        for i in 0..self.io.listeners.len() {
            if budget == 0
                || self.subs.is_paused()
                || !self.admission.ready(self.now, &self.io.listeners)
            {
                return;
            }
            if self.io.listeners[i].pending {
                self.accept_from(i, &mut budget);
            }
        }
    }

    /// Accepts from listener `i` until it has no more waiting, `budget` is spent, the hub
    /// pauses, or accepting fails for want of resources.
    fn accept_from(&mut self, i: usize, budget: &mut usize) {
        while *budget > 0 {
            *budget -= 1;
            let Some(listener) = self.io.listeners.get(i) else {
                return;
            };
            match listener.socket.accept() {
                Ok((stream, addr)) => {
                    self.admission.backoff = None;
                    self.admit(stream, addr, i);
                    if self.subs.is_paused() {
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.io.listeners[i].pending = false;
                    return;
                }
                Err(err) if is_transient_accept_error(&err) => {}
                Err(err) => {
                    self.shared.counters.accept_errors.fetch_add(1, Relaxed);
                    match self.shed_with_reserve(i) {
                        Shedding::Shed => continue,
                        Shedding::NothingWaiting => {
                            self.io.listeners[i].pending = false;
                            return;
                        }
                        Shedding::NoSpare => {}
                    }
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM with no spare descriptor: the
                    // connection stays in the backlog and the listener stays ready, so
                    // retrying now would spin. Wait, doubling the pause, while existing
                    // clients are served.
                    let pause = self
                        .admission
                        .backoff
                        .map_or(BACKOFF_MIN, |(_, p)| (p * 2).min(BACKOFF_MAX));
                    self.admission.backoff = Some((self.now + pause, pause));
                    log::warn!("accept failed, retrying in {pause:?}: {err}");
                    return;
                }
            }
        }
    }

    /// Out of descriptors: gives up the spare one, accepts the connection waiting on
    /// listener `i` and closes it at once, then takes the spare back.
    fn shed_with_reserve(&mut self, i: usize) -> Shedding {
        let Some(reserve) = self.admission.reserve.take() else {
            // Try to get the spare back for next time.
            self.admission.reserve = File::open("/dev/null").ok();
            return Shedding::NoSpare;
        };
        drop(reserve);
        let accepted = self.io.listeners.get(i).map(|l| l.socket.accept());
        // Close the shed connection before taking the spare back: at the limit, its
        // descriptor is the one the spare needs.
        let shed = match accepted {
            Some(Ok((stream, addr))) => {
                drop(stream);
                self.refuse(addr, Refusal::NoDescriptors);
                Shedding::Shed
            }
            Some(Err(err)) if err.kind() == io::ErrorKind::WouldBlock => Shedding::NothingWaiting,
            _ => Shedding::NoSpare,
        };
        self.admission.reserve = File::open("/dev/null").ok();
        shed
    }

    pub(super) fn refuse(&mut self, addr: SocketAddr, why: Refusal) {
        self.shared.counters.refused.fetch_add(1, Relaxed);
        let kind = why.kind();
        self.admission
            .refuse_logged(kind, self.now, format_args!("refused {addr}: {kind}"));
    }

    /// Applies the admission rules to a new connection and registers it if they pass.
    /// `listener` is the index of the listener it came through.
    fn admit(&mut self, stream: TcpStream, addr: SocketAddr, listener: usize) {
        match self.refusal(addr) {
            Some(why) => self.refuse(addr, why),
            None => {
                let transport = self.io.listeners[listener].transport;
                self.register(stream, addr, listener, transport);
            }
        }
    }

    /// Why a new connection from `addr` is refused, if it is: the limits, then the filter.
    pub(super) fn refusal(&mut self, addr: SocketAddr) -> Option<Refusal> {
        let config = &self.config;
        let per_ip = self.admission.per_ip.get(&addr.ip()).copied().unwrap_or(0);
        if self.slots.live() + self.admission.handshaking >= config.max_clients {
            Some(Refusal::MaxClients)
        } else if config.max_clients_per_ip.is_some_and(|max| per_ip >= max) {
            Some(Refusal::MaxClientsPerIp)
        } else {
            self.filter(addr)
        }
    }

    /// Runs the host's accept filter, if any; a panic in it refuses the connection.
    fn filter(&mut self, addr: SocketAddr) -> Option<Refusal> {
        let filter = self.config.accept_filter.clone()?;
        let what = format_args!("the accept filter panicked on {addr}, refusing it");
        match self.call_host(|| (filter.0)(addr), what) {
            Some(true) => None,
            Some(false) => Some(Refusal::Filter),
            None => Some(Refusal::FilterPanicked),
        }
    }

    /// Registers a connection that passed the admission rules, speaking `transport`, from
    /// `listener` (or [`ADOPTED`]). Returns its slot, unless it could not be set up.
    pub(super) fn register(
        &mut self,
        mut stream: TcpStream,
        addr: SocketAddr,
        listener: usize,
        transport: Transport,
    ) -> Option<usize> {
        if let Err(err) = self.configure(&stream) {
            log::warn!("could not set socket options for {addr}: {err}");
        }
        let slot = self.slots.vacant();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = self
            .io
            .poll
            .registry()
            .register(&mut stream, Token(slot), interest)
        {
            log::warn!("could not register {addr}: {err}");
            self.slots.release(slot);
            return None;
        }
        let conn = match self.wrap(stream, transport) {
            Ok(conn) => conn,
            Err(err) => {
                log::warn!("could not set up {addr}: {err}");
                self.slots.release(slot);
                return None;
            }
        };
        let handshake = conn.is_handshaking()
            || Wire::of(transport).opens_with_http()
            || self.config.authenticator.is_some();
        let phase = if handshake {
            self.admission.handshaking += 1;
            Phase::Handshake(self.deadline_in(self.config.handshake_timeout))
        } else {
            Phase::Live
        };
        let id = ClientId(self.admission.next_id);
        self.admission.next_id += 1;
        *self.admission.per_ip.entry(addr.ip()).or_insert(0) += 1;
        let mut client = Client::new(id, addr, conn, transport, phase, self.now);
        client.listener = listener;
        self.slots.fill(slot, client);
        if !handshake {
            self.admit_framed(slot, None);
        }
        Some(slot)
    }

    /// Puts the byte stream its listener asks for around a new socket.
    fn wrap(&self, stream: TcpStream, transport: Transport) -> io::Result<Conn> {
        #[cfg(feature = "tls")]
        if transport.is_tls() {
            // `bind` checked that a TLS configuration was given.
            if let Some(config) = &self.config.tls {
                let config = std::sync::Arc::clone(config);
                let tls = crate::transport::tls::TlsConn::new(stream, config)?;
                return Ok(Conn::Tls(Box::new(tls)));
            }
        }
        #[cfg(not(feature = "tls"))]
        let _ = transport;
        Ok(Conn::Tcp(stream))
    }

    fn configure(&self, stream: &TcpStream) -> io::Result<()> {
        let socket = socket2::SockRef::from(stream);
        socket.set_nodelay(self.config.nodelay)?;
        if let Some(size) = self.config.send_buffer {
            socket.set_send_buffer_size(size)?;
        }
        if let Some(idle) = self.config.keepalive {
            let idle = idle.min(MAX_KEEPALIVE);
            let interval = idle.clamp(Duration::from_secs(1), Duration::from_secs(10));
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(interval);
            socket.set_tcp_keepalive(&keepalive)?;
        }
        Ok(())
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
