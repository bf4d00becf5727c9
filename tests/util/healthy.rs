//! Well-behaved clients of any [`Wire`]: a roomy receive buffer and a thread that reads
//! every message as it arrives, beside the misbehaving client a test is about; and the
//! broadcasts that check they keep getting everything.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hubcast::{ClientId, Framing, Hub};

use super::{broadcast_numbered, numbered, EventLog, Peer, Wire, MSG_LEN, ROOMY, TIMEOUT};

/// What a client's reader thread saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Got {
    /// A frame on TCP, a text message on WebSocket.
    Frame(Vec<u8>),
    /// A binary message on WebSocket.
    Binary(Vec<u8>),
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

/// A well-behaved client: a roomy receive buffer and a thread that reads every message as
/// it arrives (on WebSocket, tungstenite's client, which answers pings); optionally a
/// thread that sends a message regularly, to stay clear of `idle_timeout`.
#[derive(Debug)]
pub(crate) struct Healthy {
    pub(crate) id: ClientId,
    pub(crate) addr: SocketAddr,
    /// For writing; the reader thread has its own handle.
    pub(crate) stream: TcpStream,
    /// Whether it speaks WebSocket, else TCP with `framing`.
    websocket: bool,
    framing: Framing,
    frames: Receiver<Got>,
    reader: Option<JoinHandle<()>>,
    keepalive: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Healthy {
    /// Connects over TCP with `framing` and waits for the hub's `Connected` event for it.
    pub(crate) fn join(hub: &Hub, events: &mut EventLog, framing: Framing) -> Healthy {
        Healthy::join_with_auth(hub, events, framing, None)
    }

    /// Connects a client of `wire` to a hub bound by [`Wire::bind`] and waits until it is
    /// connected.
    pub(crate) fn join_wire(hub: &Hub, events: &mut EventLog, wire: Wire) -> Healthy {
        match wire {
            #[cfg(feature = "websocket")]
            Wire::WebSocket => Healthy::join_websocket(hub, events),
            _ => Healthy::join(hub, events, wire.framing()),
        }
    }

    /// A healthy tungstenite client, with the receive buffer of a TCP one.
    #[cfg(feature = "websocket")]
    fn join_websocket(hub: &Hub, events: &mut EventLog) -> Healthy {
        let addr = Wire::WebSocket.addr(hub);
        let socket = super::client_socket(addr, Some(ROOMY), None);
        let ws = super::ws_connect_socket(socket, addr);
        let stream = ws.get_ref().try_clone().expect("clone");
        let addr = stream.local_addr().expect("local addr");
        let id = events.connected(addr);
        let (frames, reader) = spawn_ws_reader(ws);
        Healthy {
            id,
            addr,
            stream,
            websocket: true,
            framing: Framing::Lines,
            frames,
            reader: Some(reader),
            keepalive: None,
        }
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
            websocket: false,
            framing,
            frames,
            reader: Some(reader),
            keepalive: None,
        }
    }

    /// `payload` framed as this client sends it.
    fn client_frame(&self, payload: &[u8]) -> Vec<u8> {
        #[cfg(feature = "websocket")]
        if self.websocket {
            return Wire::WebSocket.client_frame(payload);
        }
        super::frame(self.framing, payload)
    }

    /// Sends `payload` as one message.
    pub(crate) fn send(&self, payload: &[u8]) {
        (&self.stream)
            .write_all(&self.client_frame(payload))
            .expect("client write");
    }

    /// Sends a `keepalive` message every `every` from a thread, until dropped. (On
    /// WebSocket it writes beside tungstenite, which writes only to answer the hub's
    /// pings and close frame: not for a hub without heartbeats that is not closing.)
    pub(crate) fn keep_alive(&mut self, every: Duration) {
        let (stop, stopped) = mpsc::channel::<()>();
        let mut stream = self.stream.try_clone().expect("clone");
        let frame = self.client_frame(b"keepalive");
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

/// Two healthy clients beside a misbehaving one of `wire`, on a hub bound by
/// [`Wire::bind`]: one of the hub's TCP wire and one of `wire` (two TCP clients for a TCP
/// wire, one of each for WebSocket).
pub(crate) fn healthy_beside(hub: &Hub, events: &mut EventLog, wire: Wire) -> [Healthy; 2] {
    [
        Healthy::join_wire(hub, events, wire.tcp()),
        Healthy::join_wire(hub, events, wire),
    ]
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

/// Reads tungstenite's messages on a thread until the connection ends, sending each to the
/// returned channel. Reading answers pings (tungstenite queues the pong and sends it as it
/// reads on).
#[cfg(feature = "websocket")]
fn spawn_ws_reader(mut ws: super::Ws) -> (Receiver<Got>, JoinHandle<()>) {
    use tungstenite::{Error, Message};
    let (tx, rx) = mpsc::channel();
    let thread = thread::spawn(move || loop {
        let got = match ws.read() {
            Ok(Message::Text(text)) => Got::Frame(text.as_bytes().to_vec()),
            Ok(Message::Binary(bytes)) => Got::Binary(bytes.to_vec()),
            // Pings and pongs are no messages; after a close frame the end follows.
            Ok(_) => continue,
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => Got::End(None),
            Err(Error::Io(err)) => Got::End(Some(err.kind())),
            Err(_) => Got::End(Some(io::ErrorKind::InvalidData)),
        };
        let end = matches!(got, Got::End(_));
        if tx.send(got).is_err() || end {
            return;
        }
    });
    (rx, thread)
}
