//! A plain TCP client on 127.0.0.1 with its own read buffer: frames, lines or bytes, each
//! read before a deadline, and the ways a connection ends (FIN or reset).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hubcast::{ClientId, Framing, Hub};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::{frame, EventLog, TIMEOUT};

/// Where every hub in the tests listens: loopback, port chosen by the OS.
pub(crate) const LOCAL: &str = "127.0.0.1:0";
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

/// Connects a client and waits for its `Connected` event, after which every broadcast
/// reaches it.
pub(crate) fn join(hub: &Hub, events: &mut EventLog) -> (Peer, ClientId) {
    let peer = Peer::connect(hub.local_addr());
    let id = events.connected(peer.addr());
    (peer, id)
}

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

    /// Exactly `n` bytes, or how the stream ended if it ends with nothing buffered: `None`
    /// for a clean end of stream, else the error (a reset). Fails the test on a timeout or
    /// an end after part of the `n` bytes.
    pub(crate) fn read_exact_or_end(&mut self, n: usize) -> Result<Vec<u8>, Option<io::ErrorKind>> {
        let deadline = Instant::now() + TIMEOUT;
        while self.buffered().len() < n {
            let end = match self.fill(deadline) {
                Ok(0) => None,
                Ok(_) => continue,
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                    panic!(
                        "no {n} bytes within {TIMEOUT:?}; {} buffered",
                        self.buffered().len()
                    )
                }
                Err(err) => Some(err.kind()),
            };
            assert!(
                self.buffered().is_empty(),
                "the stream ended ({end:?}) with {} of {n} bytes",
                self.buffered().len()
            );
            return Err(end);
        }
        Ok(self.consume(n))
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

pub(crate) fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}
