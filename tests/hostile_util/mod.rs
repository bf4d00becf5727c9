//! Helpers shared by the hostile-client and fault tests: real sockets on 127.0.0.1 with
//! chosen buffer sizes, a client-side frame reader for each framing, healthy clients that
//! record what they receive, an event log, and the check that the hub's counters add up.
//!
//! Nothing here sleeps. Every wait is on an event, on a socket read with a timeout, or on a
//! condition polled while paced by `recv_timeout`, and every wait has a generous deadline.
// Each test binary uses a different part of this module, as its own crate-private module.
#![allow(dead_code, unreachable_pub)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hubcast::{Bytes, ClientId, DisconnectReason, Event, Framing, Hub, Subscription};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Where every hub in these tests listens: loopback, port chosen by the OS.
pub const LOCAL: &str = "127.0.0.1:0";
/// The longest any single wait may take before the test fails: generous, for a loaded
/// machine. Waits normally end within milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How often a polled condition is checked again (each check is paced by `recv_timeout`).
pub const PACE: Duration = Duration::from_millis(5);
/// A receive buffer so large that a healthy client never makes the hub wait, even if its
/// reader thread is descheduled for a while (the kernel caps it at `net.core.rmem_max`).
pub const ROOMY: usize = 4 << 20;
/// A receive buffer as small as the kernel allows, for clients meant to fall behind.
pub const TINY: usize = 4096;
/// The payload size of [`numbered`] messages.
pub const MSG_LEN: usize = 100;

/// The `i`-th numbered broadcast: `MSG_LEN` bytes, starting with its number.
pub fn numbered(i: usize) -> Vec<u8> {
    let mut msg = format!("m{i:07} ").into_bytes();
    msg.resize(MSG_LEN, b'.');
    msg
}

/// The number in a [`numbered`] message, if it is one.
pub fn number_of(payload: &[u8]) -> Option<usize> {
    if payload.len() != MSG_LEN || payload.first() != Some(&b'm') {
        return None;
    }
    std::str::from_utf8(&payload[1..8]).ok()?.parse().ok()
}

/// `payload` framed as a client sends it.
pub fn frame(framing: Framing, payload: &[u8]) -> Vec<u8> {
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

/// A TCP socket bound to 127.0.0.1 (so its address is known before it connects), with
/// `SO_RCVBUF` set if asked. Setting it before `connect` also fixes the advertised window.
pub fn bound_socket(rcvbuf: Option<usize>) -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    if let Some(bytes) = rcvbuf {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    let local: SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&local.into()).expect("bind client");
    socket
}

/// Connects a socket from [`bound_socket`]; reads and writes time out after [`TIMEOUT`].
pub fn connect_socket(socket: Socket, addr: SocketAddr) -> TcpStream {
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    stream
}

/// A client connection with the kernel's default buffers.
pub fn connect(addr: SocketAddr) -> TcpStream {
    connect_socket(bound_socket(None), addr)
}

/// A client connection with this receive buffer.
pub fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    connect_socket(bound_socket(Some(rcvbuf)), addr)
}

/// Makes closing `stream` send a reset (RST) instead of a FIN.
pub fn set_linger_zero(stream: &TcpStream) {
    SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

/// Reads `stream` to its end: what arrived, and how it ended (`None` for a clean end of
/// stream, else the error, for example `ConnectionReset`).
pub fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Option<io::ErrorKind>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (data, None),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                assert!(
                    !matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                    "the hub never closed the connection: {err}"
                );
                return (data, Some(err.kind()));
            }
        }
    }
}

/// Cuts the byte stream from the hub into frames, as a client of each framing would.
#[derive(Debug)]
pub struct FrameReader {
    stream: TcpStream,
    framing: Framing,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl FrameReader {
    pub fn new(stream: TcpStream, framing: Framing) -> Self {
        FrameReader {
            stream,
            framing,
            buf: Vec::new(),
            scratch: vec![0; 64 * 1024],
        }
    }

    /// The next frame's payload, `Ok(None)` at a clean end of stream.
    pub fn next_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(frame) = self.cut() {
                return Ok(Some(frame));
            }
            let n = match self.stream.read(&mut self.scratch) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
            self.buf.extend_from_slice(&self.scratch[..n]);
        }
    }

    fn cut(&mut self) -> Option<Vec<u8>> {
        match self.framing {
            Framing::Lines => {
                let end = self.buf.iter().position(|&b| b == b'\n')?;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                Some(line)
            }
            Framing::LengthPrefixed => {
                let header: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
                let len = u32::from_be_bytes(header) as usize;
                if self.buf.len() < 4 + len {
                    return None;
                }
                let frame = self.buf[4..4 + len].to_vec();
                self.buf.drain(..4 + len);
                Some(frame)
            }
            _ => (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf)),
        }
    }
}

/// What a client's reader thread saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Frame(Vec<u8>),
    /// The stream ended: cleanly (`None`) or with this error.
    End(Option<io::ErrorKind>),
}

/// Reads frames from `stream` on a thread until the stream ends, sending each to the
/// returned channel.
pub fn spawn_reader(stream: TcpStream, framing: Framing) -> (mpsc::Receiver<Got>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let thread = thread::spawn(move || {
        let mut reader = FrameReader::new(stream, framing);
        loop {
            let got = match reader.next_frame() {
                Ok(Some(frame)) => Got::Frame(frame),
                Ok(None) => Got::End(None),
                Err(err) => Got::End(Some(err.kind())),
            };
            let end = matches!(got, Got::End(_));
            if tx.send(got).is_err() || end {
                return;
            }
        }
    });
    (rx, thread)
}

/// The next thing a reader thread saw; fails the test after [`TIMEOUT`].
pub fn next_got(rx: &mpsc::Receiver<Got>, who: &str) -> Got {
    rx.recv_timeout(TIMEOUT)
        .unwrap_or_else(|err| panic!("{who}: nothing received within {TIMEOUT:?}: {err}"))
}

/// A well-behaved client: a roomy receive buffer and a thread that reads every frame as it
/// arrives; optionally a thread that sends a frame regularly, to stay clear of
/// `idle_timeout`.
#[derive(Debug)]
pub struct Healthy {
    pub id: ClientId,
    pub addr: SocketAddr,
    pub stream: TcpStream,
    framing: Framing,
    frames: mpsc::Receiver<Got>,
    reader: Option<JoinHandle<()>>,
    keepalive: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Healthy {
    /// Connects and waits for the hub's `Connected` event for it.
    pub fn join(hub: &Hub, events: &mut EventLog, framing: Framing) -> Healthy {
        Healthy::join_with_auth(hub, events, framing, None)
    }

    /// Connects, sends `auth` as its first frame if given, and waits until it is connected.
    pub fn join_with_auth(
        hub: &Hub,
        events: &mut EventLog,
        framing: Framing,
        auth: Option<&[u8]>,
    ) -> Healthy {
        let mut stream = connect_with_rcvbuf(hub.local_addr(), ROOMY);
        if let Some(auth) = auth {
            stream.write_all(&frame(framing, auth)).expect("auth frame");
        }
        let addr = stream.local_addr().expect("local addr");
        let id = events.connected(addr);
        let (frames, reader) = spawn_reader(stream.try_clone().expect("clone"), framing);
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
    pub fn keep_alive(&mut self, every: Duration) {
        let (stop, stopped) = mpsc::channel::<()>();
        let mut stream = self.stream.try_clone().expect("clone");
        let frame = frame(self.framing, b"keepalive");
        let thread = thread::spawn(move || loop {
            if stream.write_all(&frame).is_err() {
                return;
            }
            // Pacing only: the thread ends when the test drops the sender.
            match stopped.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        });
        self.keepalive = Some((stop, thread));
    }

    /// The next thing this client received.
    pub fn next(&self) -> Got {
        next_got(&self.frames, &format!("client {}", self.id))
    }

    /// Asserts the next frames are exactly `payloads`, in order.
    pub fn expect(&self, payloads: &[&[u8]]) {
        for (n, payload) in payloads.iter().enumerate() {
            match self.next() {
                Got::Frame(frame) => {
                    assert_eq!(frame, *payload, "client {}: frame {n} differs", self.id)
                }
                end => panic!("client {}: {end:?} before frame {n}", self.id),
            }
        }
    }

    /// Asserts the next frames are the numbered messages `range`, in order, with no gap.
    pub fn expect_numbered(&self, range: Range<usize>) {
        for i in range {
            match self.next() {
                Got::Frame(frame) => assert_eq!(
                    number_of(&frame),
                    Some(i),
                    "client {}: expected message {i}, got {:?}",
                    self.id,
                    String::from_utf8_lossy(&frame)
                ),
                end => panic!("client {}: {end:?} before message {i}", self.id),
            }
        }
    }

    /// Asserts nothing arrived beyond what was expected so far (without waiting).
    pub fn expect_nothing_more(&self) {
        if let Ok(got) = self.frames.try_recv() {
            panic!("client {}: unexpected {got:?}", self.id);
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

/// A subscription that records every event it receives, so a test can wait for one event
/// and later check what else happened.
#[derive(Debug)]
pub struct EventLog {
    sub: Subscription,
    pub seen: Vec<Event>,
}

impl EventLog {
    pub fn new(sub: Subscription) -> Self {
        EventLog {
            sub,
            seen: Vec::new(),
        }
    }

    /// Receives events until `f` picks one; fails the test after [`TIMEOUT`].
    pub fn wait_for<T>(&mut self, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.sub.recv_timeout(left).unwrap_or_else(|err| {
                panic!(
                    "no event for {what} within {TIMEOUT:?} ({err}); seen: {:?}",
                    self.tail()
                )
            });
            let picked = f(&event);
            self.seen.push(event);
            if let Some(picked) = picked {
                return picked;
            }
        }
    }

    /// Waits for the `Connected` event of the client whose local address is `addr`.
    pub fn connected(&mut self, addr: SocketAddr) -> ClientId {
        self.wait_for(&format!("{addr} to connect"), |event| match event {
            Event::Connected {
                client, addr: a, ..
            } if *a == addr => Some(*client),
            _ => None,
        })
    }

    /// Waits for `id` to leave (unless it already has) and returns why.
    pub fn disconnected(&mut self, id: ClientId) -> DisconnectReason {
        let seen = self.seen.iter().find_map(|event| match event {
            Event::Disconnected { client, reason, .. } if *client == id => Some(*reason),
            _ => None,
        });
        if let Some(reason) = seen {
            return reason;
        }
        self.wait_for(&format!("client {id} to leave"), |event| match event {
            Event::Disconnected { client, reason, .. } if *client == id => Some(*reason),
            _ => None,
        })
    }

    /// Waits until `cond` holds, checking it every [`PACE`] while receiving events.
    pub fn wait_until(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; seen: {:?}",
                self.tail()
            );
            if let Ok(event) = self.sub.recv_timeout(PACE) {
                self.seen.push(event);
            }
        }
    }

    /// Waits until `id` has sent `n` messages (counting those already received) and returns
    /// them all.
    pub fn messages(&mut self, id: ClientId, n: usize) -> Vec<Bytes> {
        let mut have = self.messages_from(id).len();
        while have < n {
            self.wait_for(&format!("{} messages from {id}", n), |event| match event {
                Event::Message { client, .. } if *client == id => Some(()),
                _ => None,
            });
            have += 1;
        }
        self.messages_from(id)
    }

    /// Records every event already queued.
    pub fn drain(&mut self) {
        while let Ok(event) = self.sub.try_recv() {
            self.seen.push(event);
        }
    }

    /// Whether `id` has left, as far as the events received so far tell.
    pub fn has_left(&self, id: ClientId) -> bool {
        self.seen
            .iter()
            .any(|e| matches!(e, Event::Disconnected { client, .. } if *client == id))
    }

    /// The payloads `id` sent, in order.
    pub fn messages_from(&self, id: ClientId) -> Vec<Bytes> {
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

    /// Whether a client from local address `addr` was ever announced.
    pub fn saw_connected(&self, addr: SocketAddr) -> bool {
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
pub fn assert_stats_add_up(hub: &Hub, reasons: &[(DisconnectReason, u64)]) {
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

/// A channel that never delivers: its `recv_timeout` paces a polling loop or bounds a
/// measuring window without sleeping.
#[derive(Debug)]
pub struct Pacer {
    _tx: mpsc::Sender<()>,
    rx: mpsc::Receiver<()>,
}

impl Pacer {
    pub fn new() -> Self {
        let (_tx, rx) = mpsc::channel();
        Pacer { _tx, rx }
    }

    /// Waits up to `d` (nothing ever arrives).
    pub fn pause(&self, d: Duration) {
        let _ = self.rx.recv_timeout(d);
    }

    /// Polls `cond` every [`PACE`] until it holds; fails the test after [`TIMEOUT`].
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.pause(PACE);
        }
    }
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}
