//! The load generator: N subscriber connections, spread over one or more servers (the hubs
//! of a cluster, or nats-server), on one `mio` event loop in the bench process, checking
//! that each gets every publisher's messages exactly once and in order, and recording
//! latency. Adapted from `benches/fanout/gen.rs`, with several publishers per round
//! (each subscriber keeps one expected sequence number per publisher) and readiness
//! markers.
//!
//! One clock read per `read` call: every message in the bytes one `read` returns was
//! available to the subscriber at that instant, so that is its receive time.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::hist::Hist;
use crate::proto::{read_stamp, Ctrl, Parsed, Proto, PUB_SHIFT, SYNC};
use crate::sys::{now_ns, thread_cpu_ns};

/// Bytes read per `read` call.
const SCRATCH: usize = 256 * 1024;
/// Bytes read from one subscriber before the others get a turn.
const READ_BUDGET: usize = 1024 * 1024;
/// How often readiness markers are asked for while some subscriber still lacks one.
const SYNC_EVERY_NS: u64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    /// Connected, waiting for the server's handshake answer (NATS `PONG`).
    Handshake,
    Ready,
    Dead,
}

struct Sub {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    state: State,
    /// Unparsed bytes from the previous read (a partial header, never a whole payload).
    carry: Vec<u8>,
    /// Payload and framing bytes still to skip from the current message.
    skip: usize,
    /// The next message index expected from each publisher of the round.
    next: Vec<u64>,
    /// This round: messages received, lost (gaps), out of order or duplicated, of another
    /// size than the round's.
    got: u64,
    lost: u64,
    reordered: u64,
    bad_size: u64,
    /// The hubs whose readiness marker this subscriber has seen (bit = hub index).
    synced: u64,
    done: bool,
    queued: bool,
    /// The peer closed or the socket failed: read to the end, never stop at a short read.
    closing: bool,
}

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Complete,
    /// The deadline passed.
    Timeout,
    /// Nothing arrived for the progress timeout while publishers were still going.
    Stalled,
    /// The publishers were done and nothing more arrived for the drain timeout: messages
    /// are missing.
    Incomplete,
}

/// What one round measured.
pub(crate) struct Round {
    pub(crate) end: End,
    /// The send timestamp of the round's first message.
    pub(crate) t_first: u64,
    /// When the last healthy subscriber had its last message (or the round ended).
    pub(crate) t_last: u64,
    pub(crate) delivered: u64,
    /// Deliveries that never came: gaps, and the missing tail of each publisher's stream.
    pub(crate) lost: u64,
    pub(crate) reordered: u64,
    pub(crate) bad_size: u64,
    /// Messages of no publisher of the round.
    pub(crate) unexpected: u64,
    /// Subscribers that were disconnected during the round.
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
    /// What a subscriber sends once connected (NATS `CONNECT`, `SUB`, `PING`).
    hello: Vec<u8>,
    subs: Vec<Sub>,
    scratch: Vec<u8>,
    work: Vec<usize>,
    /// The round's publishers and message size.
    publishers: usize,
    size: usize,
    hist: Hist,
    t_first: u64,
    unexpected: u64,
    errors: Vec<String>,
}

impl Gen {
    /// One subscriber per address in `addrs`, speaking `proto`, sending `hello` first.
    pub(crate) fn new(proto: Proto, hello: Vec<u8>, addrs: &[SocketAddr]) -> io::Result<Gen> {
        let subs = addrs
            .iter()
            .map(|&addr| Sub {
                addr,
                stream: None,
                state: State::Connecting,
                carry: Vec::new(),
                skip: 0,
                next: Vec::new(),
                got: 0,
                lost: 0,
                reordered: 0,
                bad_size: 0,
                synced: 0,
                done: false,
                queued: false,
                closing: false,
            })
            .collect();
        Ok(Gen {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            proto,
            hello,
            subs,
            scratch: vec![0; SCRATCH + 64 * 1024],
            work: Vec::new(),
            publishers: 0,
            size: 0,
            hist: Hist::new(),
            t_first: u64::MAX,
            unexpected: 0,
            errors: Vec::new(),
        })
    }

    /// Opens every connection and completes each handshake. Fails at `deadline`.
    pub(crate) fn connect_all(&mut self, deadline: u64) -> Result<(), String> {
        for i in 0..self.subs.len() {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
                .map_err(|e| format!("socket: {e}"))?;
            socket
                .set_nonblocking(true)
                .and_then(|()| socket.set_nodelay(true))
                .map_err(|e| format!("socket: {e}"))?;
            match socket.connect(&self.subs[i].addr.into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(e) => return Err(format!("connect #{i}: {e}")),
            }
            let mut stream = TcpStream::from_std(socket.into());
            self.poll
                .registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| format!("register: {e}"))?;
            self.subs[i].stream = Some(stream);
        }
        let mut ready = 0;
        while ready < self.subs.len() {
            if now_ns() > deadline {
                return Err(format!(
                    "connect timeout: {ready} of {} subscribers ready",
                    self.subs.len()
                ));
            }
            self.poll
                .poll(&mut self.events, Some(Duration::from_millis(50)))
                .map_err(|e| e.to_string())?;
            let tokens: Vec<(usize, bool)> = self
                .events
                .iter()
                .map(|e| (e.token().0, e.is_readable() || e.is_read_closed()))
                .collect();
            for (i, readable) in tokens {
                if self.subs[i].state == State::Connecting {
                    let stream = self.subs[i].stream.as_mut().expect("a stream");
                    if let Some(e) = stream.take_error().ok().flatten() {
                        return Err(format!("connect #{i}: {e}"));
                    }
                    match stream.peer_addr() {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                        Err(e) => return Err(format!("connect #{i}: {e}")),
                    }
                    if self.hello.is_empty() {
                        self.subs[i].state = State::Ready;
                        ready += 1;
                        continue;
                    }
                    // A few bytes into an empty socket buffer: never short.
                    let n = stream
                        .write(&self.hello)
                        .map_err(|e| format!("hello: {e}"))?;
                    if n != self.hello.len() {
                        return Err("short handshake write".into());
                    }
                    self.subs[i].state = State::Handshake;
                }
                if self.subs[i].state == State::Handshake && readable {
                    self.read_handshake(i)?;
                    if self.subs[i].state == State::Ready {
                        ready += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn read_handshake(&mut self, i: usize) -> Result<(), String> {
        let sub = &mut self.subs[i];
        let Some(stream) = sub.stream.as_mut() else {
            return Ok(());
        };
        loop {
            let c = sub.carry.len();
            self.scratch[..c].copy_from_slice(&sub.carry);
            match stream.read(&mut self.scratch[c..c + SCRATCH]) {
                Ok(0) => return Err(format!("subscriber #{i} closed during handshake")),
                Ok(n) => {
                    let data = &self.scratch[..c + n];
                    let mut pos = 0;
                    loop {
                        match self.proto.parse(&data[pos..]) {
                            Parsed::Need => break,
                            Parsed::Ctrl { len, kind } => {
                                pos += len;
                                match kind {
                                    Ctrl::Pong => sub.state = State::Ready,
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
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("subscriber #{i} during handshake: {e}")),
            }
        }
    }

    /// Waits until every subscriber has seen a readiness marker from each hub in `mask`,
    /// calling `ask` (which has the hubs send one) every 100 ms until then: proof that
    /// every hub's subscription to the others is in place. Fails at `deadline`.
    pub(crate) fn sync(
        &mut self,
        mask: u64,
        deadline: u64,
        mut ask: impl FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        self.publishers = 0;
        for sub in &mut self.subs {
            sub.next.clear();
        }
        let mut next_ask = 0;
        loop {
            let missing = self.subs.iter().filter(|s| s.synced & mask != mask).count();
            if missing == 0 {
                break;
            }
            let now = now_ns();
            if now > deadline {
                return Err(format!(
                    "{missing} of {} subscribers never got every hub's readiness marker",
                    self.subs.len()
                ));
            }
            if now >= next_ask {
                ask()?;
                next_ask = now + SYNC_EVERY_NS;
            }
            self.pump();
            if let Some(dead) = self.subs.iter().position(|s| s.state == State::Dead) {
                return Err(format!(
                    "subscriber #{dead} died before the round: {}",
                    self.errors.join("; ")
                ));
            }
        }
        if self.unexpected > 0 {
            return Err(format!(
                "{} messages arrived before the round began",
                self.unexpected
            ));
        }
        Ok(())
    }

    /// Receives one round: from each of `publishers` publishers, messages `0..end` of
    /// `size` payload bytes, where `ends` tells each publisher's `end` once all of them
    /// are known (publishers stop at a count or a time). Ends when every subscriber has
    /// every message or is gone; at `deadline`; when nothing arrives for `progress_ns`; or
    /// when the ends are known and nothing arrives for `drain_ns`.
    pub(crate) fn run_round(
        &mut self,
        publishers: usize,
        size: usize,
        deadline: u64,
        progress_ns: u64,
        drain_ns: u64,
        mut ends: impl FnMut() -> Option<Vec<u64>>,
    ) -> Round {
        self.publishers = publishers;
        self.size = size;
        self.hist = Hist::new();
        self.t_first = u64::MAX;
        self.unexpected = 0;
        let dead_before = self.dead();
        for sub in &mut self.subs {
            sub.next.clear();
            sub.next.resize(publishers, 0);
            sub.got = 0;
            sub.lost = 0;
            sub.reordered = 0;
            sub.bad_size = 0;
            sub.done = sub.state != State::Ready;
        }
        let cpu0 = thread_cpu_ns();
        let mut known: Option<Vec<u64>> = None;
        let mut t_last = now_ns();
        let mut last_progress = now_ns();
        let mut end = End::Complete;
        loop {
            if known.is_none() {
                known = ends();
                if known.is_some() {
                    // Draining starts now.
                    last_progress = last_progress.max(now_ns());
                }
            }
            if let Some(ends) = &known {
                let now = now_ns();
                for sub in &mut self.subs {
                    if sub.done {
                        continue;
                    }
                    if sub.state == State::Dead {
                        sub.done = true;
                    } else if sub.next.iter().zip(ends).all(|(n, e)| n >= e) {
                        sub.done = true;
                        t_last = now;
                    }
                }
                if self.subs.iter().all(|s| s.done) {
                    break;
                }
            }
            let now = now_ns();
            if now > deadline {
                end = End::Timeout;
                break;
            }
            let quiet = now.saturating_sub(last_progress);
            if known.is_some() && quiet > drain_ns {
                end = End::Incomplete;
                break;
            }
            if known.is_none() && quiet > progress_ns {
                end = End::Stalled;
                break;
            }
            if self.pump() {
                last_progress = now_ns();
            }
        }
        let end_time = now_ns();
        if end != End::Complete {
            t_last = end_time;
        }
        let ends = known.unwrap_or_default();
        let mut round = Round {
            end,
            t_first: self.t_first.min(end_time),
            t_last,
            delivered: 0,
            lost: 0,
            reordered: 0,
            bad_size: 0,
            unexpected: self.unexpected,
            died: self.dead() - dead_before,
            hist: std::mem::replace(&mut self.hist, Hist::new()),
            gen_cpu_ns: thread_cpu_ns() - cpu0,
            errors: std::mem::take(&mut self.errors),
        };
        for sub in &self.subs {
            round.delivered += sub.got;
            round.reordered += sub.reordered;
            round.bad_size += sub.bad_size;
            round.lost += sub.lost;
            for (n, e) in sub.next.iter().zip(&ends) {
                round.lost += e.saturating_sub(*n);
            }
        }
        round
    }

    fn dead(&self) -> u64 {
        self.subs.iter().filter(|s| s.state == State::Dead).count() as u64
    }

    /// One poll, and a read of every subscriber with something to read. Returns whether
    /// anything was received.
    fn pump(&mut self) -> bool {
        let timeout = if self.work.is_empty() {
            Duration::from_millis(5)
        } else {
            Duration::ZERO
        };
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.errors.push(format!("poll: {e}"));
            }
            return false;
        }
        for event in self.events.iter() {
            let i = event.token().0;
            let sub = &mut self.subs[i];
            if event.is_read_closed() || event.is_error() {
                sub.closing = true;
            }
            if !sub.queued && sub.state == State::Ready {
                sub.queued = true;
                self.work.push(i);
            }
        }
        let batch = std::mem::take(&mut self.work);
        let mut progress = false;
        for &i in &batch {
            self.subs[i].queued = false;
            let (got, more) = self.read_sub(i);
            progress |= got;
            let sub = &mut self.subs[i];
            if more && sub.state == State::Ready && !sub.queued {
                sub.queued = true;
                self.work.push(i);
            }
        }
        progress
    }

    /// Reads one subscriber until its socket is empty or its budget is spent. Returns
    /// (received anything, may have more).
    fn read_sub(&mut self, i: usize) -> (bool, bool) {
        let proto = self.proto;
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
            let mut pong = false;
            while pos < data.len() {
                match proto.parse(&data[pos..]) {
                    Parsed::Need => break,
                    Parsed::Msg { head, body, tail } => {
                        let (seq, ts) = read_stamp(&data[pos + head..]);
                        let publisher = (seq >> PUB_SHIFT) as usize;
                        let index = seq & ((1 << PUB_SHIFT) - 1);
                        if seq & SYNC != 0 {
                            sub.synced |= 1 << (seq & 63);
                        } else if publisher >= self.publishers {
                            self.unexpected += 1;
                        } else {
                            if body != self.size {
                                sub.bad_size += 1;
                            }
                            let next = &mut sub.next[publisher];
                            if index == *next {
                                *next += 1;
                            } else if index > *next {
                                sub.lost += index - *next;
                                *next = index + 1;
                            } else {
                                sub.reordered += 1;
                            }
                            sub.got += 1;
                            self.hist.record(now.saturating_sub(ts));
                            self.t_first = self.t_first.min(ts);
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
                            Ctrl::Ping => pong = true,
                            Ctrl::Error => {
                                let line = String::from_utf8_lossy(&data[pos - len..pos]);
                                self.errors
                                    .push(format!("subscriber #{i}: {}", line.trim_end()));
                            }
                            Ctrl::Pong | Ctrl::Other => {}
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
            if pong {
                let _ = stream.write(b"PONG\r\n");
            }
            if n < SCRATCH && !sub.closing {
                // A short read emptied the socket; with edge-triggered readiness, bytes that
                // arrive from now on raise a new event. (Not after an end-of-stream event:
                // the FIN may already be here, behind the data, and raises no new event.)
                return (progress, false);
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                // Yield to the others; edge-triggered, so come back without an event.
                return (progress, true);
            }
        }
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
