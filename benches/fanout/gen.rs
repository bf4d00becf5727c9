//! The load generator: N subscriber connections (plus K that never read) on one `mio`
//! event loop, checking order and loss and recording latency.
//!
//! One clock read per `read` call: every message in the bytes one `read` returns was
//! available to the subscriber at that instant, so that is its receive time.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::hist::Hist;
use crate::proto::{Ctrl, Parsed, Proto};
use crate::sys::{now_ns, thread_cpu_ns};

/// Bytes read per `read` call.
const SCRATCH: usize = 256 * 1024;
/// Bytes read from one subscriber before the others get a turn.
const READ_BUDGET: usize = 1024 * 1024;
/// Connections being set up at once (below the listen backlogs, so no SYN is dropped).
const CONNECT_WINDOW: usize = 512;
/// Past this many subscribers, they are spread over several loopback source addresses
/// (127.0.0.2, .3, ...), this many each: one address has 28,232 ephemeral ports here, and
/// `connect` slows down badly (seconds per thousand) once about half of them are taken.
const PER_SOURCE: usize = 8_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    /// Connected, waiting for the server's handshake answer (NATS `PONG`, Redis
    /// `subscribe`, WebSocket `101`, hubcast's `#at`).
    Handshake,
    Ready,
    Dead,
}

struct Sub {
    stream: Option<TcpStream>,
    state: State,
    /// Never read once ready (stall mode).
    stalled: bool,
    /// Unparsed bytes from the previous read (a partial header, never a whole payload).
    carry: Vec<u8>,
    /// Payload and framing bytes still to skip from the current message.
    skip: usize,
    attempts: u32,
    /// The next sequence number expected.
    next: u64,
    /// This round: messages received, lost (gaps), out of order or duplicated.
    got: u64,
    lost: u64,
    reordered: u64,
    bad_size: u64,
    done: bool,
    queued: bool,
    /// The peer closed or the socket failed: read to the end, never stop at a short read.
    closing: bool,
    /// WebSocket: the `Sec-WebSocket-Accept` the server must answer with, until it has;
    /// event streams: empty, until the `200` is here.
    accept: Option<String>,
}

impl Sub {
    fn new(stalled: bool) -> Self {
        Sub {
            stream: None,
            state: State::Idle,
            stalled,
            carry: Vec::new(),
            skip: 0,
            attempts: 0,
            next: 0,
            got: 0,
            lost: 0,
            reordered: 0,
            bad_size: 0,
            done: false,
            queued: false,
            closing: false,
            accept: None,
        }
    }
}

/// How a round ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    Complete,
    Timeout,
    /// No subscriber received anything for the progress timeout.
    Stalled,
}

/// What one round measured.
pub(crate) struct Round {
    pub(crate) end: End,
    /// The send timestamp of the round's first message.
    pub(crate) t_first: u64,
    /// When the last healthy subscriber had the last message (or the round ended).
    pub(crate) t_last: u64,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) reordered: u64,
    pub(crate) bad_size: u64,
    /// Healthy subscribers that were disconnected during the round.
    pub(crate) died: u64,
    pub(crate) hist: Hist,
    /// CPU time of the generator thread during the round.
    pub(crate) gen_cpu_ns: u64,
    pub(crate) errors: Vec<String>,
}

impl Round {
    pub(crate) fn secs(&self) -> f64 {
        self.t_last.saturating_sub(self.t_first) as f64 / 1e9
    }
}

pub(crate) struct Gen {
    poll: Poll,
    events: Events,
    proto: Proto,
    addr: SocketAddr,
    subs: Vec<Sub>,
    scratch: Vec<u8>,
    queue: Vec<usize>,
    payload_size: usize,
    errors: Vec<String>,
    dead_before: u64,
    /// hubcast's sequenced protocol: the hub-wide stream's epoch, from `#at`.
    epoch: Option<u64>,
}

impl Gen {
    /// `n` healthy subscribers and `stalled` that never read, of `proto`, to `addr`.
    pub(crate) fn new(
        proto: Proto,
        addr: SocketAddr,
        n: usize,
        stalled: usize,
    ) -> io::Result<Self> {
        let mut subs: Vec<Sub> = (0..n).map(|_| Sub::new(false)).collect();
        subs.extend((0..stalled).map(|_| Sub::new(true)));
        Ok(Gen {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            proto,
            addr,
            subs,
            scratch: vec![0; SCRATCH + 64 * 1024],
            queue: Vec::new(),
            payload_size: 0,
            errors: Vec::new(),
            dead_before: 0,
            epoch: None,
        })
    }

    fn source(&self, i: usize) -> Option<IpAddr> {
        let total = self.subs.len();
        if total <= PER_SOURCE {
            return None;
        }
        // Round-robin, so each address's ports fill evenly.
        let sources = total.div_ceil(PER_SOURCE);
        let k = u8::try_from(2 + i % sources).unwrap_or(254);
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, k)))
    }

    fn open(&mut self, i: usize) -> io::Result<()> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        if let Some(ip) = self.source(i) {
            crate::sys::bind_address_no_port(std::os::fd::AsRawFd::as_raw_fd(&socket))?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
        }
        match socket.connect(&self.addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(socket.into());
        self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let sub = &mut self.subs[i];
        sub.stream = Some(stream);
        sub.state = State::Connecting;
        sub.attempts += 1;
        Ok(())
    }

    /// Opens every connection and completes each handshake. Fails at `deadline`.
    pub(crate) fn connect_all(&mut self, deadline: u64) -> Result<(), String> {
        let total = self.subs.len();
        let mut next_open = 0;
        let mut in_flight = 0;
        let mut ready = 0;
        let mut retry: Vec<usize> = Vec::new();
        while ready < total {
            if now_ns() > deadline {
                return Err(format!(
                    "connect timeout: {ready} of {total} subscribers ready"
                ));
            }
            while in_flight < CONNECT_WINDOW && (next_open < total || !retry.is_empty()) {
                let i = retry.pop().unwrap_or_else(|| {
                    next_open += 1;
                    next_open - 1
                });
                self.open(i).map_err(|e| format!("connect #{i}: {e}"))?;
                in_flight += 1;
            }
            self.poll
                .poll(&mut self.events, Some(Duration::from_millis(50)))
                .map_err(|e| e.to_string())?;
            let tokens: Vec<(usize, bool, bool)> = self
                .events
                .iter()
                .map(|e| {
                    (
                        e.token().0,
                        e.is_writable(),
                        e.is_readable() || e.is_read_closed() || e.is_error(),
                    )
                })
                .collect();
            for (i, writable, readable) in tokens {
                if self.subs[i].state == State::Connecting && (writable || readable) {
                    let stream = self.subs[i]
                        .stream
                        .as_mut()
                        .expect("connecting has a stream");
                    let err = stream.take_error().ok().flatten();
                    match (err, stream.peer_addr()) {
                        (None, Ok(_)) => {
                            let mut hello = std::borrow::Cow::Borrowed(self.proto.hello());
                            if self.proto.is_ws() {
                                let (request, accept) = crate::ws::upgrade_request(self.addr);
                                hello = request.into();
                                self.subs[i].accept = Some(accept);
                            } else if self.proto == Proto::Sse {
                                hello = crate::sse::request(self.addr).into();
                                // No key to check: the head's status and type are.
                                self.subs[i].accept = Some(String::new());
                            }
                            let stream = self.subs[i].stream.as_mut().expect("connected");
                            if !hello.is_empty() {
                                // A few bytes into an empty socket buffer: never short.
                                let n = stream.write(&hello).map_err(|e| format!("hello: {e}"))?;
                                if n != hello.len() {
                                    return Err("short handshake write".into());
                                }
                                self.subs[i].state = State::Handshake;
                            } else if self.proto.has_handshake() {
                                // hubcast's sequenced protocol: the server speaks first.
                                self.subs[i].state = State::Handshake;
                            } else {
                                self.subs[i].state = State::Ready;
                                ready += 1;
                                in_flight -= 1;
                            }
                        }
                        (Some(e), _) | (None, Err(e))
                            if e.kind() == io::ErrorKind::NotConnected =>
                        {
                            // Not yet: spurious wake-up.
                            let _ = e;
                        }
                        (Some(e), _) | (None, Err(e)) => {
                            let sub = &mut self.subs[i];
                            if let Some(mut s) = sub.stream.take() {
                                let _ = self.poll.registry().deregister(&mut s);
                            }
                            in_flight -= 1;
                            if sub.attempts >= 5 {
                                return Err(format!("connect #{i} failed 5 times: {e}"));
                            }
                            sub.state = State::Idle;
                            retry.push(i);
                        }
                    }
                }
                if self.subs[i].state == State::Handshake && readable {
                    self.read_handshake(i)?;
                    if self.subs[i].state == State::Ready {
                        ready += 1;
                        in_flight -= 1;
                    }
                }
            }
        }
        // Ready subscribers the handshake left readable are picked up by the next round.
        Ok(())
    }

    fn read_handshake(&mut self, i: usize) -> Result<(), String> {
        loop {
            let sub = &mut self.subs[i];
            let Some(stream) = sub.stream.as_mut() else {
                return Ok(());
            };
            let c = sub.carry.len();
            self.scratch[..c].copy_from_slice(&sub.carry);
            match stream.read(&mut self.scratch[c..c + SCRATCH]) {
                Ok(0) => return Err(format!("subscriber #{i} closed during handshake")),
                Ok(n) => {
                    let data = &self.scratch[..c + n];
                    let mut pos = 0;
                    if let Some(accept) = &sub.accept {
                        // WebSocket: the server's answer to the upgrade, then frames.
                        let Some(end) = crate::ws::head_end(data) else {
                            if data.len() > crate::ws::MAX_HEAD {
                                return Err(format!("subscriber #{i}: upgrade answer too long"));
                            }
                            sub.carry.clear();
                            sub.carry.extend_from_slice(data);
                            continue;
                        };
                        if self.proto == Proto::Sse {
                            crate::sse::check_response(&data[..end])
                        } else {
                            crate::ws::check_response(&data[..end], accept)
                        }
                        .map_err(|e| format!("subscriber #{i}: {e}"))?;
                        sub.accept = None;
                        sub.state = State::Ready;
                        pos = end;
                    }
                    while sub.state == State::Handshake {
                        match self.proto.parse(&data[pos..], self.payload_size) {
                            Parsed::Need => break,
                            Parsed::Ctrl { len, kind } => {
                                pos += len;
                                match kind {
                                    Ctrl::Pong | Ctrl::Subscribed => sub.state = State::Ready,
                                    Ctrl::At(epoch) => {
                                        sub.state = State::Ready;
                                        self.epoch = Some(epoch);
                                    }
                                    Ctrl::Ping => {
                                        let _ = stream.write(b"PONG\r\n");
                                    }
                                    Ctrl::Error => {
                                        let line = String::from_utf8_lossy(&data[pos - len..pos]);
                                        return Err(format!(
                                            "subscriber #{i}: {}",
                                            line.trim_end()
                                        ));
                                    }
                                    Ctrl::Other => {}
                                }
                            }
                            Parsed::Msg { .. } => {
                                return Err("message before the round began".into())
                            }
                            Parsed::Bad(e) => return Err(format!("subscriber #{i}: {e}")),
                        }
                    }
                    sub.carry.clear();
                    sub.carry.extend_from_slice(&data[pos..]);
                    if sub.state == State::Ready {
                        // Anything after the handshake is read with the first round.
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("subscriber #{i} during handshake: {e}")),
            }
        }
    }

    /// Receives messages `start..start + count` of `size` payload bytes on every healthy
    /// subscriber. Ends when each has the last one or is gone, at `deadline`, or when nothing
    /// arrives for `progress_ns`.
    pub(crate) fn run_round(
        &mut self,
        start: u64,
        count: u64,
        size: usize,
        deadline: u64,
        progress_ns: u64,
    ) -> Round {
        let end_seq = start + count;
        self.payload_size = size;
        let mut remaining = 0u64;
        for sub in &mut self.subs {
            sub.got = 0;
            sub.lost = 0;
            sub.reordered = 0;
            sub.bad_size = 0;
            sub.done = sub.stalled || sub.state != State::Ready;
            if !sub.done {
                sub.next = start;
                remaining += 1;
            }
        }
        let mut hist = Hist::new();
        let cpu0 = thread_cpu_ns();
        // The earliest send stamp seen: the round's first message.
        let mut t_first = u64::MAX;
        let mut t_last = now_ns();
        let mut last_progress = now_ns();
        let mut end = End::Complete;
        // Whatever is already readable (handshake leftovers) gets a look first.
        self.queue.clear();
        for (i, sub) in self.subs.iter_mut().enumerate() {
            sub.queued = false;
            if !sub.done {
                sub.queued = true;
                self.queue.push(i);
            }
        }
        let mut work = std::mem::take(&mut self.queue);
        while remaining > 0 {
            let now = now_ns();
            if now > deadline {
                end = End::Timeout;
                break;
            }
            if now.saturating_sub(last_progress) > progress_ns {
                end = End::Stalled;
                break;
            }
            let timeout = if work.is_empty() {
                Some(Duration::from_millis(20))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.errors.push(format!("poll: {e}"));
                    end = End::Timeout;
                    break;
                }
            }
            for event in self.events.iter() {
                let i = event.token().0;
                let sub = &mut self.subs[i];
                if event.is_read_closed() || event.is_error() {
                    sub.closing = true;
                }
                if !sub.stalled && !sub.queued && sub.state == State::Ready {
                    sub.queued = true;
                    work.push(i);
                }
            }
            let batch = std::mem::take(&mut work);
            for &i in &batch {
                self.subs[i].queued = false;
                let (progress, more) = self.read_sub(i, &mut hist, &mut t_first);
                if progress {
                    last_progress = now_ns();
                }
                let sub = &mut self.subs[i];
                if !sub.done && (sub.next >= end_seq || sub.state == State::Dead) {
                    sub.done = true;
                    remaining -= 1;
                    if sub.state != State::Dead {
                        t_last = now_ns();
                    }
                }
                if more && sub.state == State::Ready && !sub.queued {
                    sub.queued = true;
                    work.push(i);
                }
            }
        }
        let end_time = now_ns();
        if end != End::Complete {
            t_last = end_time;
        }
        self.queue = work;
        let mut round = Round {
            end,
            t_first: t_first.min(end_time),
            t_last,
            delivered: 0,
            lost: 0,
            reordered: 0,
            bad_size: 0,
            died: 0,
            hist,
            gen_cpu_ns: thread_cpu_ns() - cpu0,
            errors: std::mem::take(&mut self.errors),
        };
        let mut dead = 0;
        for sub in &self.subs {
            if sub.stalled {
                continue;
            }
            round.delivered += sub.got;
            round.reordered += sub.reordered;
            round.bad_size += sub.bad_size;
            round.lost += sub.lost + end_seq.saturating_sub(sub.next.max(start));
            if sub.state == State::Dead {
                dead += 1;
            }
        }
        round.died = dead - self.dead_before.min(dead);
        self.dead_before = dead;
        round
    }

    /// Reads one subscriber until its socket is empty or its budget is spent. Returns
    /// (received anything, may have more).
    fn read_sub(&mut self, i: usize, hist: &mut Hist, t_first: &mut u64) -> (bool, bool) {
        let proto = self.proto;
        let stamp = proto.stamp();
        let size = self.payload_size;
        let sub = &mut self.subs[i];
        let Some(stream) = sub.stream.as_mut() else {
            return (false, false);
        };
        let mut budget = READ_BUDGET;
        let mut progress = false;
        loop {
            let c = sub.carry.len();
            self.scratch[..c].copy_from_slice(&sub.carry);
            let n = match stream.read(&mut self.scratch[c..c + SCRATCH]) {
                Ok(0) => {
                    sub.state = State::Dead;
                    self.errors
                        .push(format!("subscriber #{i}: server closed the connection"));
                    return (progress, false);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (progress, false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    sub.state = State::Dead;
                    self.errors.push(format!("subscriber #{i}: {e}"));
                    return (progress, false);
                }
            };
            progress = true;
            let now = now_ns();
            let data = &self.scratch[..c + n];
            let mut pos = sub.skip.min(data.len());
            sub.skip -= pos;
            let mut replies = Vec::new();
            while pos < data.len() {
                match proto.parse(&data[pos..], size) {
                    Parsed::Need => break,
                    Parsed::Msg { head, body, tail } => {
                        let Some((seq, ts)) = stamp.read(&data[pos + head..], now) else {
                            sub.state = State::Dead;
                            self.errors
                                .push(format!("subscriber #{i}: message without a stamp"));
                            return (progress, false);
                        };
                        if body != size {
                            sub.bad_size += 1;
                        }
                        if seq == sub.next {
                            sub.next += 1;
                        } else if seq > sub.next {
                            sub.lost += seq - sub.next;
                            sub.next = seq + 1;
                        } else {
                            sub.reordered += 1;
                        }
                        sub.got += 1;
                        hist.record(now.saturating_sub(ts));
                        if ts < *t_first {
                            *t_first = ts;
                        }
                        let total = head + body + tail;
                        let avail = data.len() - pos;
                        if total <= avail {
                            pos += total;
                        } else {
                            sub.skip = total - avail;
                            pos = data.len();
                        }
                    }
                    Parsed::Ctrl { len, kind } => {
                        pos += len;
                        match kind {
                            Ctrl::Ping if proto.is_ws() => {
                                // The pong echoes the ping's payload (after its 2-byte
                                // header: control frames are at most 125 bytes).
                                let ping = &data[pos - len + 2..pos];
                                replies.extend_from_slice(&crate::ws::masked_frame(0xa, ping));
                            }
                            Ctrl::Ping => replies.extend_from_slice(b"PONG\r\n"),
                            Ctrl::Error => {
                                let line = String::from_utf8_lossy(&data[pos - len..pos]);
                                self.errors
                                    .push(format!("subscriber #{i}: {}", line.trim_end()));
                            }
                            _ => {}
                        }
                    }
                    Parsed::Bad(e) => {
                        sub.state = State::Dead;
                        self.errors.push(format!("subscriber #{i}: {e}"));
                        return (progress, false);
                    }
                }
            }
            sub.carry.clear();
            sub.carry.extend_from_slice(&data[pos..]);
            if !replies.is_empty() {
                let _ = stream.write(&replies);
            }
            if n < SCRATCH && !sub.closing {
                // A short read emptied the socket; with edge-triggered readiness, bytes that
                // arrive from now on raise a new event, so no extra read to see EAGAIN. (Not
                // after an end-of-stream event: the FIN may already be here, behind the data,
                // and raises no new event.)
                return (progress, false);
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                // Yield to the others; edge-triggered, so come back without an event.
                return (progress, true);
            }
        }
    }

    /// hubcast's sequenced protocol: the hub-wide stream's epoch, as `#at` gave it.
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Writes `bytes` to every healthy subscriber (a short request: it fits in an empty
    /// socket buffer, so a short write is an error).
    pub(crate) fn send_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        for (i, sub) in self.subs.iter_mut().enumerate() {
            if sub.stalled || sub.state != State::Ready {
                continue;
            }
            let Some(stream) = sub.stream.as_mut() else {
                continue;
            };
            match stream.write(bytes) {
                Ok(n) if n == bytes.len() => {}
                Ok(n) => return Err(format!("subscriber #{i}: short write ({n} bytes)")),
                Err(e) => return Err(format!("subscriber #{i}: {e}")),
            }
        }
        Ok(())
    }

    /// Closes every connection.
    pub(crate) fn close(&mut self) {
        for sub in &mut self.subs {
            if let Some(mut s) = sub.stream.take() {
                let _ = self.poll.registry().deregister(&mut s);
            }
        }
    }
}
