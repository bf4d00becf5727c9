//! Helpers shared by the integration tests: real sockets, reads before a deadline, waits
//! for events with a timeout. Nothing here sleeps: every wait is a blocking read or
//! receive bounded by a timeout that success never reaches.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hubcast::{ClientId, DisconnectReason, Event, Hub, Subscription};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// How long any single wait may take before the test fails. Never reached on success, so
/// it can be generous: the tests run in parallel on loaded machines.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// A client connection with its own read buffer. Every read must finish before the
/// peer's deadline, which starts at [`TIMEOUT`] from connect and can be extended.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    deadline: Instant,
}

impl Peer {
    pub(crate) fn new(stream: TcpStream) -> Peer {
        Peer {
            stream,
            buf: Vec::new(),
            start: 0,
            deadline: Instant::now() + TIMEOUT,
        }
    }

    /// Connects to `addr` (blocking, with `TIMEOUT`).
    pub(crate) fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
        Peer::new(stream)
    }

    /// Connects with a small `SO_RCVBUF` set before the handshake, so the kernel window
    /// stays small and a peer that never reads backs up into the hub's queue quickly.
    pub(crate) fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> Peer {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .expect("socket");
        socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        socket
            .connect_timeout(&addr.into(), TIMEOUT)
            .expect("connect");
        Peer::new(socket.into())
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("client write");
    }

    /// Bytes received and not yet consumed.
    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        out
    }

    /// One read from the socket into the buffer, bounded by the deadline. `Ok(0)` is end
    /// of stream; passing the deadline is an error of kind `TimedOut`.
    fn fill(&mut self) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => return Err(io::ErrorKind::TimedOut.into()),
                Err(err) => return Err(err),
            }
        }
    }

    /// As [`fill`](Self::fill), but a timeout panics.
    fn fill_or_panic(&mut self) -> io::Result<usize> {
        match self.fill() {
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                panic!(
                    "timed out waiting for data; {} bytes buffered",
                    self.buffered().len()
                )
            }
            result => result,
        }
    }

    /// Fills until at least `n` bytes are buffered; panics on end of stream.
    fn fill_to(&mut self, n: usize) {
        while self.buffered().len() < n {
            match self.fill_or_panic() {
                Ok(0) => panic!(
                    "end of stream with {} of {n} bytes buffered",
                    self.buffered().len()
                ),
                Ok(_) => {}
                Err(err) => panic!("read failed: {err}"),
            }
        }
    }

    /// The next line, without its `\n`. Panics on timeout or end of stream.
    pub(crate) fn read_line(&mut self) -> Vec<u8> {
        self.try_read_line()
            .unwrap_or_else(|| panic!("end of stream before a line"))
    }

    /// The next line as UTF-8 text, without its `\n`.
    pub(crate) fn read_text_line(&mut self) -> String {
        String::from_utf8(self.read_line()).expect("line is UTF-8")
    }

    /// The next line, or `None` at a clean end of stream (or a reset) with nothing
    /// buffered. Panics on timeout, or on end of stream in the middle of a line.
    pub(crate) fn try_read_line(&mut self) -> Option<Vec<u8>> {
        match self.read_line_until_deadline() {
            Ok(line) => line,
            Err(_) => panic!(
                "timed out waiting for a line; {} bytes buffered",
                self.buffered().len()
            ),
        }
    }

    /// The next line if one arrives within `timeout`, `None` if none does. Panics at end
    /// of stream.
    pub(crate) fn read_line_within(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = self.deadline;
        self.deadline = Instant::now() + timeout;
        let line = self.read_line_until_deadline();
        self.deadline = deadline;
        match line {
            Ok(Some(line)) => Some(line),
            Ok(None) => panic!("end of stream before a line"),
            Err(TimedOut) => None,
        }
    }

    fn read_line_until_deadline(&mut self) -> Result<Option<Vec<u8>>, TimedOut> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buffered()[scanned..].iter().position(|&b| b == b'\n') {
                let mut line = self.consume(scanned + i + 1);
                line.pop();
                return Ok(Some(line));
            }
            scanned = self.buffered().len();
            match self.fill() {
                Err(err) if err.kind() == io::ErrorKind::TimedOut => return Err(TimedOut),
                Ok(0) | Err(_) if self.buffered().is_empty() => return Ok(None),
                Ok(0) => panic!("end of stream inside a line: {:?}", self.buffered()),
                Ok(_) => {}
                Err(err) => panic!("read failed inside a line: {err}"),
            }
        }
    }

    /// Reads `n` bytes exactly.
    pub(crate) fn read_exact(&mut self, n: usize) -> Vec<u8> {
        self.fill_to(n);
        self.consume(n)
    }

    /// The next length-prefixed frame's payload (4-byte big-endian length).
    pub(crate) fn read_frame(&mut self) -> Vec<u8> {
        self.fill_to(4);
        let header = self.buffered();
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        self.fill_to(4 + len);
        self.consume(4);
        self.consume(len)
    }

    /// Reads until the hub closes the connection (end of stream or reset) and returns
    /// whatever arrived first.
    pub(crate) fn read_to_close(&mut self) -> Vec<u8> {
        loop {
            match self.fill_or_panic() {
                Ok(0) | Err(_) => {
                    let n = self.buffered().len();
                    return self.consume(n);
                }
                Ok(_) => {}
            }
        }
    }

    /// Asserts that the hub closes the connection without sending anything more.
    pub(crate) fn expect_closed(&mut self) {
        let rest = self.read_to_close();
        assert!(
            rest.is_empty(),
            "expected the connection to close, got {rest:?}"
        );
    }

    /// Closes the connection with a reset: `SO_LINGER` 0, then close.
    pub(crate) fn reset(self) {
        reset(self.stream);
    }
}

/// A read did not finish before its deadline.
#[derive(Debug)]
struct TimedOut;

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Closes `stream` with a reset (RST) instead of a FIN: `SO_LINGER` 0, then close.
pub(crate) fn reset(stream: TcpStream) {
    SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
}

/// The next event, whatever it is. Panics if none arrives within `TIMEOUT` or if the
/// subscription has ended.
pub(crate) fn next_event(events: &Subscription) -> Event {
    events
        .recv_timeout(TIMEOUT)
        .unwrap_or_else(|err| panic!("no event within {TIMEOUT:?}: {err:?}"))
}

/// Skips events until one matches `pred` and returns it. Panics after `TIMEOUT`.
pub(crate) fn wait_for(events: &Subscription, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if pred(&event) => return event,
            Ok(_) => {}
            Err(err) => panic!("no matching event within {TIMEOUT:?}: {err:?}"),
        }
    }
}

/// Asserts that the next event is a `Connected` and returns its client id.
pub(crate) fn expect_connected(events: &Subscription) -> ClientId {
    match next_event(events) {
        Event::Connected { client, .. } => client,
        other => panic!("expected Connected, got {other:?}"),
    }
}

/// Asserts that the next event is a `Message` from `from` and returns its payload.
pub(crate) fn expect_message(events: &Subscription, from: ClientId) -> Vec<u8> {
    match next_event(events) {
        Event::Message { client, payload } if client == from => payload.to_vec(),
        other => panic!("expected a Message from {from}, got {other:?}"),
    }
}

/// Asserts that the next event is the `Disconnected` of `id` and returns its reason.
pub(crate) fn expect_disconnected(events: &Subscription, id: ClientId) -> DisconnectReason {
    match next_event(events) {
        Event::Disconnected { client, reason } if client == id => reason,
        other => panic!("expected {id} to disconnect, got {other:?}"),
    }
}

/// Connects a client to `hub` and waits for its `Connected` event, after which every
/// broadcast reaches it. `events` must have nothing else pending.
pub(crate) fn join(hub: &Hub, events: &Subscription) -> (Peer, ClientId) {
    let peer = Peer::connect(hub.local_addr());
    let id = expect_connected(events);
    (peer, id)
}

/// Collects every event left until the subscription ends (after a shutdown).
pub(crate) fn drain_to_end(events: &Subscription) -> Vec<Event> {
    let deadline = Instant::now() + TIMEOUT;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) => out.push(event),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return out,
            Err(err) => panic!("subscription did not end within {TIMEOUT:?}: {err:?}"),
        }
    }
}

/// The number of threads in this process, from `/proc/self/task`.
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// The names (`comm`) of this process's threads.
pub(crate) fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// A message of fixed width carrying `seq`, padded to `len` bytes (no newline).
pub(crate) fn numbered(seq: usize, len: usize) -> Vec<u8> {
    let mut msg = format!("m{seq:08}").into_bytes();
    assert!(len >= msg.len());
    msg.resize(len, b'.');
    msg
}

/// The sequence number in a message made by [`numbered`].
pub(crate) fn seq_of(msg: &[u8]) -> usize {
    assert!(
        msg.len() >= 9 && msg[0] == b'm',
        "not a numbered message: {msg:?}"
    );
    std::str::from_utf8(&msg[1..9])
        .expect("digits")
        .parse()
        .expect("number")
}
