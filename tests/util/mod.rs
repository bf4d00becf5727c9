//! The one helper module of every integration test: real sockets on 127.0.0.1 (port 0),
//! a client connection that reads frames before a deadline, well-behaved clients that read
//! on a thread, a log of a subscription's events, the one numbered-payload format for
//! ordered streams, the check that the hub's counters add up, and a guard for child
//! processes.
//!
//! Every wait here is bounded by [`TIMEOUT`], which success never reaches: a blocking read,
//! a receive on a subscription or a channel, or (only where nothing raises an event) a
//! condition checked again each time a subscription receives or [`PACE`] passes. Nothing
//! here sleeps to let something happen.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Range;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hubcast::{Bytes, ClientId, DisconnectReason, Event, Framing, Hub, Subscription};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Where every hub in the tests listens: loopback, port chosen by the OS.
pub(crate) const LOCAL: &str = "127.0.0.1:0";
/// The longest any single wait may take before the test fails. Never reached on success,
/// so it can be generous: the tests run in parallel on loaded machines.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a polled condition waits for something to happen before it is checked again.
pub(crate) const PACE: Duration = Duration::from_millis(5);
/// A receive buffer so large that a healthy client never makes the hub wait, even if its
/// reader thread is descheduled for a while. The kernel caps it at `net.core.rmem_max`
/// (often 208 KiB, doubled): tests that need the hub never to wait for a healthy client
/// burst less than that.
pub(crate) const ROOMY: usize = 4 << 20;
/// A receive buffer as small as the kernel allows, for clients meant to fall behind.
pub(crate) const TINY: usize = 4096;
/// The hub's `send_buffer` in tests that fill a client's queue: the default, and no
/// smaller, since under two loopback segments (64 KiB each) the peer's delayed ACKs
/// (40 ms) pace every write to the healthy clients. Tests that need a backlog send more
/// bytes instead.
pub(crate) const SEND_BUFFER: usize = 128 * 1024;
/// The usual length of a [`numbered`] message.
pub(crate) const MSG_LEN: usize = 100;

// ------------------------------------------------------------------- numbered payloads

/// The length of the header of a [`numbered`] message, the shortest one there is.
pub(crate) const NUMBERED_MIN: usize = 12;

/// Message `seq` of stream 0: see [`tagged`].
pub(crate) fn numbered(seq: usize, len: usize) -> Vec<u8> {
    tagged(0, seq, len)
}

/// The one payload format of ordered streams: `s<stream:2>m<seq:8>`, padded with dots to
/// `len` bytes. No newline, so it is one line in every framing; several senders each number
/// their own stream.
pub(crate) fn tagged(stream: usize, seq: usize, len: usize) -> Vec<u8> {
    assert!(
        stream < 100 && seq < 100_000_000,
        "({stream}, {seq}) too large"
    );
    let mut msg = format!("s{stream:02}m{seq:08}").into_bytes();
    assert!(
        len >= msg.len(),
        "{len} bytes is too short for a numbered message"
    );
    msg.resize(len, b'.');
    msg
}

/// The stream and sequence number of `msg`, if it is exactly a message made by
/// [`tagged`] (of whatever length): a torn or corrupt one gives `None`.
pub(crate) fn parse_numbered(msg: &[u8]) -> Option<(usize, usize)> {
    // Compared a block at a time (a memcmp), which stays fast in debug builds.
    const DOTS: [u8; 1024] = [b'.'; 1024];
    let head = msg.get(..NUMBERED_MIN)?;
    let padded = msg[NUMBERED_MIN..]
        .chunks(DOTS.len())
        .all(|chunk| chunk == &DOTS[..chunk.len()]);
    if head[0] != b's' || head[3] != b'm' || !padded {
        return None;
    }
    let number = |digits: &[u8]| -> Option<usize> {
        digits.iter().try_fold(0, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + usize::from(d - b'0'))
        })
    };
    Some((number(&head[1..3])?, number(&head[4..])?))
}

/// The stream and sequence number of `msg`; fails the test if it is not a numbered message.
pub(crate) fn tag_seq_of(msg: &[u8]) -> (usize, usize) {
    parse_numbered(msg)
        .unwrap_or_else(|| panic!("not a numbered message: {:?}", String::from_utf8_lossy(msg)))
}

/// The sequence number of `msg`, a message of stream 0; fails the test otherwise.
pub(crate) fn seq_of(msg: &[u8]) -> usize {
    let (stream, seq) = tag_seq_of(msg);
    assert_eq!(
        stream, 0,
        "message {seq} of stream {stream}, expected stream 0"
    );
    seq
}

/// `payload` framed as a client sends it.
pub(crate) fn frame(framing: Framing, payload: &[u8]) -> Vec<u8> {
    match framing {
        Framing::Lines => {
            let mut out = payload.to_vec();
            out.push(b'\n');
            out
        }
        Framing::LengthPrefixed => {
            let len = u32::try_from(payload.len()).expect("frame length");
            let mut out = len.to_be_bytes().to_vec();
            out.extend_from_slice(payload);
            out
        }
        _ => payload.to_vec(),
    }
}

// ------------------------------------------------------------- the numbered protocol

/// A hub that speaks the numbered-stream protocol (`Protocol::Sequenced`).
pub(crate) fn sequenced() -> hubcast::HubBuilder {
    Hub::builder().protocol(hubcast::Protocol::Sequenced)
}

/// A hub like the `rooms` example: any client may join any room, and what it says goes to
/// the other members of its rooms.
pub(crate) fn rooms() -> hubcast::HubBuilder {
    sequenced()
        .relay(hubcast::Relay::Topics)
        .client_topics(|_| true)
}

/// Reads the `#at * <epoch> <seq>` a client of [`sequenced`] hub gets first: (epoch, seq).
pub(crate) fn read_at(peer: &mut Peer) -> (u64, u64) {
    let line = peer.read_text_line();
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(&words[..2], ["#at", "*"], "{line}");
    (words[2].parse().unwrap(), words[3].parse().unwrap())
}

// ------------------------------------------------------------------------------ clients

/// A client socket bound to the loopback address of `hub`'s family, so that its own address
/// is known before it connects, with these kernel buffer sizes. Setting `SO_RCVBUF` before
/// connecting also fixes the window the client advertises.
pub(crate) fn client_socket(
    hub: SocketAddr,
    rcvbuf: Option<usize>,
    sndbuf: Option<usize>,
) -> Socket {
    let socket =
        Socket::new(Domain::for_address(hub), Type::STREAM, Some(Protocol::TCP)).expect("socket");
    if let Some(bytes) = rcvbuf {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    if let Some(bytes) = sndbuf {
        socket.set_send_buffer_size(bytes).expect("SO_SNDBUF");
    }
    let mut local = hub;
    local.set_port(0);
    socket.bind(&local.into()).expect("bind the client socket");
    socket
}

/// A client connection with its own read buffer. Each read (a frame, a line, bytes, the
/// rest of the stream) must finish within [`TIMEOUT`]; so must each write.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

impl Peer {
    /// Connects to `addr` with the kernel's default buffers.
    pub(crate) fn connect(addr: SocketAddr) -> Peer {
        Peer::connect_socket(client_socket(addr, None, None), addr)
    }

    /// Connects with this receive buffer: [`TINY`] for a client meant to fall behind,
    /// [`ROOMY`] for one that must never make the hub wait.
    pub(crate) fn connect_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> Peer {
        Peer::connect_socket(client_socket(addr, Some(rcvbuf), None), addr)
    }

    /// Connects with this send buffer, so what it writes cannot hide in its own kernel.
    pub(crate) fn connect_sndbuf(addr: SocketAddr, sndbuf: usize) -> Peer {
        Peer::connect_socket(client_socket(addr, None, Some(sndbuf)), addr)
    }

    /// Connects a socket from [`client_socket`].
    pub(crate) fn connect_socket(socket: Socket, addr: SocketAddr) -> Peer {
        socket
            .connect_timeout(&addr.into(), TIMEOUT)
            .unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
        let stream: TcpStream = socket.into();
        // For reads and writes on `stream` itself; the `Peer` methods set their own.
        stream
            .set_read_timeout(Some(TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(TIMEOUT))
            .expect("write timeout");
        Peer::new(stream)
    }

    /// Wraps a connected stream (reads set their own timeouts).
    pub(crate) fn new(stream: TcpStream) -> Peer {
        Peer {
            stream,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// The client's own address, as the hub reports it in `Connected`.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("client write");
    }

    /// Sends `payload` framed for `framing`.
    pub(crate) fn send(&mut self, framing: Framing, payload: &[u8]) {
        self.write(&frame(framing, payload));
    }

    /// Shuts down the sending side (a FIN); the client can still read.
    pub(crate) fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).expect("half-close");
    }

    /// Closes the connection with a reset (RST) instead of a FIN: `SO_LINGER` 0, then close.
    pub(crate) fn reset(self) {
        SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        drop(self);
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        out
    }

    /// One read into the buffer before `deadline`: `Ok(0)` at end of stream, an error of
    /// kind `TimedOut` once the deadline has passed.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        if self.start > 0 {
            self.buf.drain(..self.start);
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
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::ErrorKind::TimedOut.into())
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Cuts the next whole frame out of the buffer, if there is one.
    fn cut(&mut self, framing: Framing) -> Option<Vec<u8>> {
        let data = self.buffered();
        match framing {
            Framing::Lines => {
                let end = data.iter().position(|&b| b == b'\n')?;
                let mut line = self.consume(end + 1);
                line.pop();
                Some(line)
            }
            Framing::LengthPrefixed => {
                let header: [u8; 4] = data.get(..4)?.try_into().ok()?;
                let len = u32::from_be_bytes(header) as usize;
                if data.len() < 4 + len {
                    return None;
                }
                self.consume(4);
                Some(self.consume(len))
            }
            // Raw: whatever has arrived.
            _ => {
                let n = data.len();
                (n > 0).then(|| self.consume(n))
            }
        }
    }

    /// The next frame before `deadline`. `Ok(None)` at a clean end of stream with nothing
    /// buffered; `UnexpectedEof` if the stream ends inside a frame; `TimedOut` after the
    /// deadline; other errors (a reset) as they come.
    fn frame_by(&mut self, framing: Framing, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(frame) = self.cut(framing) {
                return Ok(Some(frame));
            }
            match self.fill(deadline)? {
                0 if self.buffered().is_empty() => return Ok(None),
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                _ => {}
            }
        }
    }

    /// The next frame within [`TIMEOUT`], or how the stream ended: `Ok(None)` at a clean end
    /// of stream. For reader threads, which report rather than panic.
    pub(crate) fn try_next_frame(&mut self, framing: Framing) -> io::Result<Option<Vec<u8>>> {
        self.frame_by(framing, Instant::now() + TIMEOUT)
    }

    /// The next frame, or `None` once the hub has closed the connection (a FIN or a reset)
    /// with nothing more buffered. Fails the test on a timeout or a torn last frame.
    pub(crate) fn next_frame(&mut self, framing: Framing) -> Option<Vec<u8>> {
        match self.try_next_frame(framing) {
            Ok(frame) => frame,
            Err(err) if is_reset(&err) && self.buffered().is_empty() => None,
            Err(err) if err.kind() == io::ErrorKind::TimedOut => panic!(
                "no {framing:?} frame within {TIMEOUT:?}; {} bytes buffered",
                self.buffered().len()
            ),
            Err(err) => panic!("reading a {framing:?} frame: {err}: {:?}", self.buffered()),
        }
    }

    /// The next line, without its `\n`. Fails the test on a timeout or end of stream.
    pub(crate) fn read_line(&mut self) -> Vec<u8> {
        self.next_frame(Framing::Lines)
            .unwrap_or_else(|| panic!("end of stream before a line"))
    }

    /// The next line as UTF-8 text, without its `\n`.
    pub(crate) fn read_text_line(&mut self) -> String {
        String::from_utf8(self.read_line()).expect("line is UTF-8")
    }

    /// The next length-prefixed frame's payload.
    pub(crate) fn read_frame(&mut self) -> Vec<u8> {
        self.next_frame(Framing::LengthPrefixed)
            .unwrap_or_else(|| panic!("end of stream before a frame"))
    }

    /// The next line if one arrives within `timeout`, `None` if none does. Fails the test
    /// at end of stream.
    pub(crate) fn read_line_within(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        match self.frame_by(Framing::Lines, Instant::now() + timeout) {
            Ok(Some(line)) => Some(line),
            Ok(None) => panic!("end of stream before a line"),
            Err(err) if err.kind() == io::ErrorKind::TimedOut => None,
            Err(err) => panic!("reading a line: {err}"),
        }
    }

    /// Exactly `n` bytes, whatever the framing.
    pub(crate) fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        while self.buffered().len() < n {
            match self.fill(deadline) {
                Ok(0) => panic!("end of stream with {} of {n} bytes", self.buffered().len()),
                Ok(_) => {}
                Err(err) => panic!(
                    "reading {n} bytes: {err}; {} buffered",
                    self.buffered().len()
                ),
            }
        }
        self.consume(n)
    }

    /// Reads until the hub closes the connection: what arrived, and how it ended (`None`
    /// for a clean end of stream, else the error, for example `ConnectionReset`). Fails the
    /// test if the hub has not closed it within [`TIMEOUT`].
    pub(crate) fn read_to_end(&mut self) -> (Vec<u8>, Option<io::ErrorKind>) {
        let deadline = Instant::now() + TIMEOUT;
        let end = loop {
            match self.fill(deadline) {
                Ok(0) => break None,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                    panic!("the hub never closed the connection")
                }
                Err(err) => break Some(err.kind()),
            }
        };
        let n = self.buffered().len();
        (self.consume(n), end)
    }

    /// Reads until the hub closes the connection and returns whatever arrived first.
    pub(crate) fn read_to_close(&mut self) -> Vec<u8> {
        self.read_to_end().0
    }

    /// Asserts that the hub closes the connection without sending anything more.
    pub(crate) fn expect_closed(&mut self) {
        let rest = self.read_to_close();
        assert!(
            rest.is_empty(),
            "expected the connection to close, got {rest:?}"
        );
    }

    /// Asserts that the hub closes the connection cleanly (a FIN, not a reset) without
    /// sending anything more.
    pub(crate) fn expect_fin(&mut self) {
        let (rest, end) = self.read_to_end();
        assert!(
            rest.is_empty(),
            "expected the connection to close, got {rest:?}"
        );
        assert_eq!(end, None, "closed with a reset, not a FIN");
    }
}

fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// What a client's reader thread saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Got {
    Frame(Vec<u8>),
    /// The stream ended: cleanly (`None`) or with this error.
    End(Option<io::ErrorKind>),
}

/// Reads frames from `peer` on a thread until the stream ends, sending each to the returned
/// channel.
pub(crate) fn spawn_reader(mut peer: Peer, framing: Framing) -> (Receiver<Got>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let thread = thread::spawn(move || loop {
        let got = match peer.try_next_frame(framing) {
            Ok(Some(frame)) => Got::Frame(frame),
            Ok(None) => Got::End(None),
            Err(err) => Got::End(Some(err.kind())),
        };
        let end = matches!(got, Got::End(_));
        if tx.send(got).is_err() || end {
            return;
        }
    });
    (rx, thread)
}

/// A well-behaved client: a roomy receive buffer and a thread that reads every frame as it
/// arrives; optionally a thread that sends a frame regularly, to stay clear of
/// `idle_timeout`.
#[derive(Debug)]
pub(crate) struct Healthy {
    pub(crate) id: ClientId,
    pub(crate) addr: SocketAddr,
    /// For writing; the reader thread has its own handle.
    pub(crate) stream: TcpStream,
    framing: Framing,
    frames: Receiver<Got>,
    reader: Option<JoinHandle<()>>,
    keepalive: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Healthy {
    /// Connects and waits for the hub's `Connected` event for it.
    pub(crate) fn join(hub: &Hub, events: &mut EventLog, framing: Framing) -> Healthy {
        Healthy::join_with_auth(hub, events, framing, None)
    }

    /// Connects, sends `auth` as its first frame if given, and waits until it is connected.
    pub(crate) fn join_with_auth(
        hub: &Hub,
        events: &mut EventLog,
        framing: Framing,
        auth: Option<&[u8]>,
    ) -> Healthy {
        let mut peer = Peer::connect_rcvbuf(hub.local_addr(), ROOMY);
        if let Some(auth) = auth {
            peer.send(framing, auth);
        }
        let addr = peer.addr();
        let id = events.connected(addr);
        let stream = peer.stream.try_clone().expect("clone");
        let (frames, reader) = spawn_reader(peer, framing);
        Healthy {
            id,
            addr,
            stream,
            framing,
            frames,
            reader: Some(reader),
            keepalive: None,
        }
    }

    /// Sends a `keepalive` frame every `every` from a thread, until dropped.
    pub(crate) fn keep_alive(&mut self, every: Duration) {
        let (stop, stopped) = mpsc::channel::<()>();
        let mut stream = self.stream.try_clone().expect("clone");
        let frame = frame(self.framing, b"keepalive");
        let thread = thread::spawn(move || loop {
            if stream.write_all(&frame).is_err() {
                return;
            }
            // The scenario: a client that talks at a steady rate. The wait ends early when
            // the test drops the sender.
            match stopped.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        });
        self.keepalive = Some((stop, thread));
    }

    /// The next thing this client received; fails the test after [`TIMEOUT`].
    pub(crate) fn next(&self) -> Got {
        self.frames
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|err| panic!("client {}: nothing within {TIMEOUT:?}: {err}", self.id))
    }

    /// Asserts the next frames are exactly `payloads`, in order.
    pub(crate) fn expect(&self, payloads: &[&[u8]]) {
        for (n, payload) in payloads.iter().enumerate() {
            match self.next() {
                Got::Frame(frame) => {
                    assert_eq!(frame, *payload, "client {}: frame {n} differs", self.id)
                }
                end => panic!("client {}: {end:?} before frame {n}", self.id),
            }
        }
    }

    /// Asserts the next frames are the numbered messages `range` of length `len`, in order,
    /// with no gap.
    pub(crate) fn expect_numbered(&self, range: Range<usize>, len: usize) {
        for i in range {
            match self.next() {
                Got::Frame(frame) => assert!(
                    frame == numbered(i, len),
                    "client {}: expected message {i}, got {:?}",
                    self.id,
                    String::from_utf8_lossy(&frame)
                ),
                end => panic!("client {}: {end:?} before message {i}", self.id),
            }
        }
    }
}

impl Drop for Healthy {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.keepalive.take() {
            drop(stop);
            let _ = thread.join();
        }
        // Ends the reader thread's blocking read.
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Two healthy clients, to run beside a misbehaving one.
pub(crate) fn healthy_pair(hub: &Hub, events: &mut EventLog, framing: Framing) -> [Healthy; 2] {
    [
        Healthy::join(hub, events, framing),
        Healthy::join(hub, events, framing),
    ]
}

/// Connects a client and waits for its `Connected` event, after which every broadcast
/// reaches it.
pub(crate) fn join(hub: &Hub, events: &mut EventLog) -> (Peer, ClientId) {
    let peer = Peer::connect(hub.local_addr());
    let id = events.connected(peer.addr());
    (peer, id)
}

/// Broadcasts the numbered messages `range`, each `len` bytes.
pub(crate) fn broadcast_numbered(hub: &Hub, range: Range<usize>, len: usize) {
    for i in range {
        hub.broadcast(numbered(i, len)).expect("broadcast");
    }
}

/// Broadcasts `range` in windows of `window` messages, each once the healthy clients have
/// received the one before: the host never bursts more than a window into their queues,
/// while a client that does not read falls further behind with every window.
pub(crate) fn broadcast_paced(
    hub: &Hub,
    healthy: &[Healthy],
    range: Range<usize>,
    len: usize,
    window: usize,
) {
    let mut start = range.start;
    while start < range.end {
        let end = (start + window).min(range.end);
        broadcast_numbered(hub, start..end, len);
        for client in healthy {
            client.expect_numbered(start..end, len);
        }
        start = end;
    }
}

/// After a misbehaving client is gone: the hub still serves the healthy ones, with ten
/// more numbered messages from `from`, and they are still connected.
pub(crate) fn healthy_still_served(hub: &Hub, healthy: &[Healthy], from: usize) {
    broadcast_paced(hub, healthy, from..from + 10, MSG_LEN, 10);
    let ids: Vec<_> = hub.clients().iter().map(|c| c.id).collect();
    for client in healthy {
        assert!(ids.contains(&client.id), "{} is gone: {ids:?}", client.id);
    }
}

// ------------------------------------------------------------------------------- events

/// What waiting on a subscription gave.
#[derive(Debug)]
pub(crate) enum Received {
    Event(Event),
    TimedOut,
    /// The hub has shut down and every event has been received.
    Closed,
}

/// The client and reason of a `Disconnected` event (events cannot be built outside the
/// crate to compare with, so tests compare these).
pub(crate) fn departure(event: &Event) -> Option<(ClientId, DisconnectReason)> {
    match *event {
        Event::Disconnected { client, reason, .. } => Some((client, reason)),
        _ => None,
    }
}

/// Waits up to `timeout` for the next event of `sub`. The one place that looks at the
/// error type of `Subscription`'s receive methods; everything else goes through here or
/// only asks `is_ok`.
pub(crate) fn receive(sub: &Subscription, timeout: Duration) -> Received {
    use hubcast::RecvTimeoutError::{Closed, Timeout};
    match sub.recv_timeout(timeout) {
        Ok(event) => Received::Event(event),
        Err(Timeout) => Received::TimedOut,
        Err(Closed) => Received::Closed,
        Err(other) => panic!("unexpected receive error: {other:?}"),
    }
}

/// A subscription that records every event it receives, so that a test can wait for one
/// event and later check what else happened. Waits for "the next event" are strict (the
/// `expect_*` methods); waits for "an event like this" skip others and keep them.
#[derive(Debug)]
pub(crate) struct EventLog {
    sub: Subscription,
    /// Every event received so far, in order.
    pub(crate) seen: Vec<Event>,
}

impl EventLog {
    pub(crate) fn new(sub: Subscription) -> Self {
        EventLog {
            sub,
            seen: Vec::new(),
        }
    }

    /// A new subscription to `hub`.
    pub(crate) fn subscribe(hub: &Hub) -> Self {
        EventLog::new(hub.subscribe())
    }

    /// The subscription, for a test that goes on without the log.
    pub(crate) fn into_sub(self) -> Subscription {
        self.sub
    }

    /// The subscription itself, to look at its queue.
    pub(crate) fn sub(&self) -> &Subscription {
        &self.sub
    }

    /// The next event if one arrives within `timeout`. Fails the test if the subscription
    /// has ended.
    pub(crate) fn next_within(&mut self, timeout: Duration) -> Option<Event> {
        match receive(&self.sub, timeout) {
            Received::Event(event) => {
                self.seen.push(event.clone());
                Some(event)
            }
            Received::TimedOut => None,
            Received::Closed => panic!("the subscription ended; seen: {:?}", self.tail()),
        }
    }

    /// The next event, whatever it is; fails the test after [`TIMEOUT`].
    pub(crate) fn next(&mut self) -> Event {
        self.next_within(TIMEOUT)
            .unwrap_or_else(|| panic!("no event within {TIMEOUT:?}; seen: {:?}", self.tail()))
    }

    /// Asserts that the next event is a `Connected` and returns its client id.
    pub(crate) fn expect_connected(&mut self) -> ClientId {
        match self.next() {
            Event::Connected { client, .. } => client,
            other => panic!("expected Connected, got {other:?}"),
        }
    }

    /// Asserts that the next event is a `Message` from `from` and returns its payload.
    pub(crate) fn expect_message(&mut self, from: ClientId) -> Vec<u8> {
        match self.next() {
            Event::Message {
                client, payload, ..
            } if client == from => payload.to_vec(),
            other => panic!("expected a Message from {from}, got {other:?}"),
        }
    }

    /// Asserts that the next event is the `Disconnected` of `id` and returns its reason.
    pub(crate) fn expect_disconnected(&mut self, id: ClientId) -> DisconnectReason {
        match self.next() {
            Event::Disconnected { client, reason, .. } if client == id => reason,
            other => panic!("expected {id} to disconnect, got {other:?}"),
        }
    }

    /// Receives events until `pick` picks one; fails the test after [`TIMEOUT`].
    pub(crate) fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = self.next_within(left) else {
                panic!(
                    "no event for {what} within {TIMEOUT:?}; seen: {:?}",
                    self.tail()
                );
            };
            if let Some(picked) = pick(&event) {
                return picked;
            }
        }
    }

    /// Waits for the `Connected` event of the client whose own address is `addr`.
    pub(crate) fn connected(&mut self, addr: SocketAddr) -> ClientId {
        self.wait_for(&format!("{addr} to connect"), |event| match event {
            Event::Connected {
                client, addr: a, ..
            } if *a == addr => Some(*client),
            _ => None,
        })
    }

    /// Waits for `id` to leave (unless it already has) and returns why.
    pub(crate) fn disconnected(&mut self, id: ClientId) -> DisconnectReason {
        let left = |event: &Event| match event {
            Event::Disconnected { client, reason, .. } if *client == id => Some(*reason),
            _ => None,
        };
        if let Some(reason) = self.seen.iter().find_map(left) {
            return reason;
        }
        self.wait_for(&format!("client {id} to leave"), left)
    }

    /// Waits until `id` has sent `n` messages (counting those already received) and returns
    /// them all.
    pub(crate) fn messages(&mut self, id: ClientId, n: usize) -> Vec<Bytes> {
        let mut have = self.messages_from(id).len();
        while have < n {
            self.wait_for(&format!("{n} messages from {id}"), |event| match event {
                Event::Message { client, .. } if *client == id => Some(()),
                _ => None,
            });
            have += 1;
        }
        self.messages_from(id)
    }

    /// Waits until `cond` holds, for state that raises no event of its own (the hub's
    /// counters, another subscription's queue): checked again after each event received,
    /// or after [`PACE`] without one. Fails the test after [`TIMEOUT`].
    pub(crate) fn wait_until(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; seen: {:?}",
                self.tail()
            );
            self.next_within(PACE);
        }
    }

    /// Records every event already queued, without waiting.
    pub(crate) fn drain(&mut self) {
        while let Ok(event) = self.sub.try_recv() {
            self.seen.push(event);
        }
    }

    /// Receives every event left until the subscription ends (the hub has shut down) and
    /// returns them. Fails the test if it has not ended within [`TIMEOUT`].
    pub(crate) fn until_end(&mut self) -> Vec<Event> {
        let deadline = Instant::now() + TIMEOUT;
        let from = self.seen.len();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receive(&self.sub, left) {
                Received::Event(event) => self.seen.push(event),
                Received::Closed => return self.seen[from..].to_vec(),
                Received::TimedOut => panic!("the subscription did not end within {TIMEOUT:?}"),
            }
        }
    }

    /// Whether `id` has left, as far as the events received so far tell.
    pub(crate) fn has_left(&self, id: ClientId) -> bool {
        self.seen
            .iter()
            .any(|e| matches!(e, Event::Disconnected { client, .. } if *client == id))
    }

    /// The payloads `id` sent, in order, as far as the events received so far tell.
    pub(crate) fn messages_from(&self, id: ClientId) -> Vec<Bytes> {
        self.seen
            .iter()
            .filter_map(|event| match event {
                Event::Message {
                    client, payload, ..
                } if *client == id => Some(payload.clone()),
                _ => None,
            })
            .collect()
    }

    /// The events of client `id` received so far, in order.
    pub(crate) fn story_of(&self, id: ClientId) -> Vec<Event> {
        self.seen
            .iter()
            .filter(|event| match event {
                Event::Connected { client, .. }
                | Event::Message { client, .. }
                | Event::Disconnected { client, .. } => *client == id,
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Every `Disconnected` received so far.
    pub(crate) fn departures(&self) -> Vec<(ClientId, DisconnectReason)> {
        self.seen.iter().filter_map(departure).collect()
    }

    /// Whether a client from address `addr` was ever announced.
    pub(crate) fn saw_connected(&self, addr: SocketAddr) -> bool {
        self.seen
            .iter()
            .any(|e| matches!(e, Event::Connected { addr: a, .. } if *a == addr))
    }

    /// The last few events, for failure messages.
    fn tail(&self) -> &[Event] {
        &self.seen[self.seen.len().saturating_sub(8)..]
    }
}

/// Asserts the hub's counters add up: every client accepted is either still connected or
/// counted once among the disconnects, and the disconnects are exactly `reasons`.
pub(crate) fn assert_stats_add_up(hub: &Hub, reasons: &[(DisconnectReason, u64)]) {
    let stats = hub.stats();
    assert_eq!(
        stats.accepted,
        stats.connected + stats.disconnects.total(),
        "accepted != connected + disconnected: {stats:#?}"
    );
    let mut sum = 0;
    for &(reason, count) in reasons {
        assert_eq!(
            stats.disconnects(reason),
            count,
            "disconnects({reason:?}): {stats:#?}"
        );
        sum += count;
    }
    assert_eq!(
        stats.disconnects.total(),
        sum,
        "other disconnects: {stats:#?}"
    );
    assert_eq!(stats.connected, hub.clients().len() as u64, "{stats:#?}");
}

// ---------------------------------------------------------------------------- processes

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

/// A child process with piped stdin, stdout (read line by line on a thread) and stderr
/// (collected, to show when a test fails). It is killed if the test ends before it exits.
///
/// It only ever signals the process it started: only this guard reaps it (a watcher thread
/// learns of its exit with `waitid(WNOWAIT)`, which leaves it a zombie), so until the guard
/// has reaped it, its pid cannot belong to anyone else.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    child: Child,
    status: Option<ExitStatus>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    exited: Receiver<()>,
    stderr: Arc<Mutex<String>>,
    /// The thread that collects stderr: it ends once every writer of the pipe has closed it.
    stderr_reader: Option<JoinHandle<()>>,
    /// Whether the child leads a process group of its own, which is killed with it.
    group: bool,
}

impl ChildProcess {
    pub(crate) fn spawn(command: Command) -> ChildProcess {
        ChildProcess::start(command, false)
    }

    /// Spawns the child as the leader of a new process group, for programs that start
    /// processes of their own (a browser): killing it kills the whole group. Signals go to
    /// the group only while the leader is unreaped, so its id is still this group's.
    pub(crate) fn spawn_group(mut command: Command) -> ChildProcess {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        ChildProcess::start(command, true)
    }

    fn start(mut command: Command, group: bool) -> ChildProcess {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {command:?}: {err}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock().expect("lock").push_str(&text);
            }
        });
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        let (tx, exited) = mpsc::channel();
        thread::spawn(move || {
            wait_for_exit_without_reaping(pid);
            let _ = tx.send(());
        });
        let stdin = child.stdin.take();
        ChildProcess {
            child,
            status: None,
            stdin,
            lines,
            exited,
            stderr,
            stderr_reader: Some(stderr_reader),
            group,
        }
    }

    /// The child's process id. Only [`signal`](Self::signal) may use it to signal the
    /// child, since only this guard knows whether it is reaped.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's exit status if it has exited (reaping it), `None` while it runs.
    /// Never waits.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() && self.exited.try_recv().is_ok() {
            self.status = Some(self.child.wait().expect("reap the child"));
        }
        self.status
    }

    /// Writes one line to the child's stdin.
    pub(crate) fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to the child");
    }

    /// The child's next line on stdout, or `None` if it closed stdout (exited) first;
    /// fails the test if neither happens within [`TIMEOUT`].
    pub(crate) fn try_line(&mut self) -> Option<String> {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                panic!("the child neither wrote a line nor closed stdout");
            }
        }
    }

    /// The child's next line on stdout; fails the test (killing the child and showing its
    /// stderr) if none comes within [`TIMEOUT`].
    pub(crate) fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(err) => {
                self.kill();
                panic!(
                    "no line from the child ({err}); its stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Sends `signal` to the child, unless it has already been reaped.
    pub(crate) fn signal(&mut self, signal: libc::c_int) {
        if self.status.is_none() {
            // Not reaped by us, hence by no one: the pid is still the child's.
            assert_eq!(
                kill(self.child.id(), signal),
                0,
                "kill({}, {signal})",
                self.child.id()
            );
        }
    }

    /// Waits for the child to exit and reaps it; fails the test (killing it) if it has not
    /// exited within [`TIMEOUT`].
    pub(crate) fn wait(&mut self) -> ExitStatus {
        self.wait_within(TIMEOUT)
            .unwrap_or_else(|| panic!("the child did not exit; its stderr:\n{}", self.stderr()))
    }

    /// Waits up to `timeout` for the child to exit and reaps it; `None`, with the child
    /// killed, if it has not exited by then. For children that run longer than [`TIMEOUT`].
    pub(crate) fn wait_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return Some(status);
        }
        if self.exited.recv_timeout(timeout).is_err() {
            self.kill();
            return None;
        }
        let status = self.child.wait().expect("reap the child");
        self.status = Some(status);
        Some(status)
    }

    /// Waits for the child to exit, as [`wait`](Self::wait) does, and returns its status
    /// with all it wrote to stderr (read to the end, which a child that leaves no process
    /// of its own behind reaches as it exits).
    pub(crate) fn finish(&mut self) -> (ExitStatus, String) {
        let status = self.wait();
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().expect("the stderr reader");
        }
        (status, self.stderr())
    }

    /// Waits up to [`TIMEOUT`] until the child's stderr holds `text`, and returns all of
    /// it; fails the test (killing the child) if it does not. Nothing announces a write to
    /// a pipe read on another thread, so this looks again every [`PACE`].
    pub(crate) fn wait_for_stderr(&mut self, text: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let stderr = self.stderr();
            if stderr.contains(text) {
                return stderr;
            }
            if self.try_wait().is_some() {
                // Exited: what it wrote is all in once the reader has reached the end.
                if let Some(reader) = self.stderr_reader.take() {
                    reader.join().expect("the stderr reader");
                }
                let stderr = self.stderr();
                assert!(
                    stderr.contains(text),
                    "{text:?} not in the child's stderr:\n{stderr}"
                );
                return stderr;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("{text:?} not in the child's stderr:\n{stderr}");
            }
            thread::sleep(PACE);
        }
    }

    /// What the child wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            if self.group {
                // The leader is not reaped yet (a zombie at most), so no other process or
                // group can have its id: the whole group goes, helpers included.
                let _ = kill_group(self.child.id(), libc::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.exited.recv_timeout(TIMEOUT);
            if self.group {
                // Reaped only once the rest of its group is gone too, so the group's id
                // stays unused by anyone else until then.
                wait_for_group_to_end(self.child.id());
            }
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        self.kill();
    }
}

#[allow(unsafe_code)]
fn kill(pid: u32, signal: libc::c_int) -> libc::c_int {
    let pid = libc::pid_t::try_from(pid).expect("pid");
    // SAFETY: kill(2) takes no pointers; the caller guarantees `pid` is an unreaped child.
    unsafe { libc::kill(pid, signal) }
}

/// Sends `signal` to every process of the group that child `leader` leads.
#[allow(unsafe_code)]
fn kill_group(leader: u32, signal: libc::c_int) -> libc::c_int {
    let pgid = libc::pid_t::try_from(leader).expect("pid");
    // SAFETY: killpg(2) takes no pointers; the caller guarantees `leader` is an unreaped
    // child that leads its own group, so the group is still its.
    unsafe { libc::killpg(pgid, signal) }
}

/// Waits up to [`TIMEOUT`] until no live process (zombies aside) is in the process group
/// `pgid`, as far as `/proc` tells. Nothing announces a process's end to anyone but its
/// parent, so this looks again every [`PACE`].
fn wait_for_group_to_end(pgid: u32) {
    let pgid = pgid.to_string();
    let in_group = |entry: std::fs::DirEntry| -> bool {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.as_str())
    };
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        if !procs.filter_map(Result::ok).any(in_group) {
            return;
        }
        thread::sleep(PACE);
    }
}

/// Blocks until child `pid` has exited, leaving it unreaped.
#[allow(unsafe_code)]
fn wait_for_exit_without_reaping(pid: libc::pid_t) {
    let id = libc::id_t::try_from(pid).expect("pid");
    loop {
        // SAFETY: `siginfo_t` is plain data, valid when zeroed; waitid writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a local `siginfo_t`; WNOWAIT leaves the child unreaped.
        let ret =
            unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if ret == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

// ---------------------------------------------------------------------- outside programs

/// Whether `name` is an executable on `PATH`, for a test that runs an outside program. If
/// it is not, the test should return at once: this says so on the terminal (past the test
/// harness's capture, so a skip is never silent) and returns false. In CI (`CI` set, as
/// CI sets it to `true`, and not to `false` or `0`) a missing program fails the test
/// instead: CI installs every one of them first, with `scripts/install-test-deps.sh`, and
/// nothing skips there.
pub(crate) fn require_program(name: &str) -> bool {
    if find_program(name).is_some() {
        return true;
    }
    let ci = std::env::var("CI").unwrap_or_default();
    if !matches!(ci.as_str(), "" | "false" | "0") {
        panic!("{name} not found, and CI={ci}: scripts/install-test-deps.sh installs it");
    }
    // Straight to stderr: the harness captures only the print macros.
    let _ = writeln!(
        io::stderr(),
        "skipping: {name} not found; install it with scripts/install-test-deps.sh"
    );
    false
}

/// The path of the executable `name` on `PATH`, or in `/usr/sbin` or `/sbin`, where
/// Debian installs daemons such as `nats-server` and which a user's `PATH` often lacks.
pub(crate) fn find_program(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|file| {
            file.metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// `target/<profile>/examples/<name>`, found from the running test binary, which runs as
/// `target/<profile>/deps/<test>-<hash>`. `cargo test` builds the examples there (those
/// whose `required-features` are enabled).
pub(crate) fn example_path(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} not found: is examples/{name}.rs missing, or its required features off?",
        path.display()
    );
    path
}

/// A new empty directory under the system's temporary directory, removed with everything
/// in it when dropped.
#[derive(Debug)]
pub(crate) struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Creates `hubcast-<label>-<pid>-<n>`, unique within this process and among
    /// processes alive at once.
    pub(crate) fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hubcast-{label}-{}-{n}", std::process::id()));
        // A directory left by an earlier process with the same pid.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Keeps the directory, to look at after the test, and returns its path.
    pub(crate) fn keep(self) -> std::path::PathBuf {
        let path = self.0.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
