//! One client abstraction over every wire a client can speak, so that a scenario that
//! applies to all of them (slow clients, close reasons, heartbeats) is written once and
//! run for each with [`per_wire!`]:
//!
//! - [`Wire::Lines`] and [`Wire::LengthPrefixed`]: TCP, with the hub's framing;
//! - [`Wire::WebSocket`] (feature `websocket`): `ws://`, on a hub whose first listener is
//!   TCP with lines (for clients beside) and whose second is WebSocket.
//!
//! What differs between wires lives here, not in the scenarios: how a message is framed,
//! what a heartbeat is (an empty frame on TCP, an empty ping frame on WebSocket) and how it
//! is answered, and how a client learns why it was closed: on TCP only by the end of the
//! stream (the reason is the host's `Disconnected` event), on WebSocket by the close frame
//! with the code and reason of [`close_for`](super::close_for), then a clean end of stream.
//!
//! A WebSocket [`WireClient`] is raw WebSocket on a [`Peer`] (so it can stall, stay
//! silent or tear a frame on purpose, and every frame the hub sends it is checked to be
//! whole, unmasked, without reserved bits, and text exactly for UTF-8); one from
//! [`Wire::connect_library`] is tungstenite's client instead, a real client's view of the
//! same frames. On TCP both are a [`Peer`].

use std::io;
use std::net::{SocketAddr, TcpStream};

use hubcast::{AuthRequest, ClientId, DisconnectReason, Framing, Hub, HubBuilder};
use socket2::{SockRef, Socket};

use super::{client_socket, frame, EventLog, Peer, LOCAL};

/// What a client speaks to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// TCP, a message a line.
    Lines,
    /// TCP, each message after its length (4 bytes, big-endian).
    LengthPrefixed,
    /// WebSocket over TCP (`ws://`), a message a WebSocket message.
    #[cfg(feature = "websocket")]
    WebSocket,
}

/// Defines, for each scenario `name` (a function taking a [`Wire`]), a module `name` with a
/// test for each wire: `name::lines`, `name::length_prefixed` and, with the feature,
/// `name::websocket`.
#[allow(unused_macros)]
macro_rules! per_wire {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[test]
            fn lines() {
                super::$scenario($crate::util::Wire::Lines);
            }

            #[test]
            fn length_prefixed() {
                super::$scenario($crate::util::Wire::LengthPrefixed);
            }

            #[cfg(feature = "websocket")]
            #[test]
            fn websocket() {
                super::$scenario($crate::util::Wire::WebSocket);
            }
        }
    )+};
}
#[allow(unused_imports)]
pub(crate) use per_wire;

impl Wire {
    /// Whether this is WebSocket.
    pub(crate) fn is_websocket(self) -> bool {
        !matches!(self, Wire::Lines | Wire::LengthPrefixed)
    }

    /// The hub's framing: of the TCP clients, and of every client on WebSocket, where it
    /// decides what a message may hold (with lines, no newline).
    pub(crate) fn framing(self) -> Framing {
        match self {
            Wire::LengthPrefixed => Framing::LengthPrefixed,
            _ => Framing::Lines,
        }
    }

    /// The TCP wire of a hub bound by [`bind`](Self::bind) for this wire: this one, or
    /// lines for WebSocket.
    pub(crate) fn tcp(self) -> Wire {
        match self {
            Wire::LengthPrefixed => Wire::LengthPrefixed,
            _ => Wire::Lines,
        }
    }

    /// Binds `builder` on 127.0.0.1 with this wire's framing and, for WebSocket, a second
    /// listener that speaks it (the first stays TCP, for clients beside).
    pub(crate) fn bind(self, builder: HubBuilder) -> Hub {
        let builder = builder.framing(self.framing());
        match self {
            #[cfg(feature = "websocket")]
            Wire::WebSocket => super::mixed(builder),
            _ => builder.bind(LOCAL).expect("bind"),
        }
    }

    /// Where clients of this wire connect to a hub bound by [`bind`](Self::bind).
    pub(crate) fn addr(self, hub: &Hub) -> SocketAddr {
        match self {
            #[cfg(feature = "websocket")]
            Wire::WebSocket => super::ws_addr(hub),
            _ => hub.local_addr(),
        }
    }

    /// The bytes a message of `len` bytes takes on this wire from the hub.
    pub(crate) fn framed_len(self, len: usize) -> usize {
        match self {
            Wire::Lines => len + 1,
            Wire::LengthPrefixed => len + 4,
            #[cfg(feature = "websocket")]
            Wire::WebSocket => match len {
                0..=125 => len + 2,
                126..=0xffff => len + 4,
                _ => len + 10,
            },
        }
    }

    /// `payload` as a client of this wire sends it: framed, or one masked WebSocket frame
    /// (text if UTF-8, else binary).
    pub(crate) fn client_frame(self, payload: &[u8]) -> Vec<u8> {
        match self {
            #[cfg(feature = "websocket")]
            Wire::WebSocket => {
                let text = std::str::from_utf8(payload).is_ok();
                super::masked(if text { super::TEXT } else { super::BINARY }, payload)
            }
            _ => frame(self.framing(), payload),
        }
    }

    /// What a client sends first of a message of `len` bytes, where that says how long it
    /// is: the length prefix, or the WebSocket frame's header with its mask. `None` for
    /// lines, whose length shows only at the end.
    pub(crate) fn header_of(self, len: usize) -> Option<Vec<u8>> {
        match self {
            Wire::Lines => None,
            Wire::LengthPrefixed => Some(u32::try_from(len).expect("a u32").to_be_bytes().to_vec()),
            #[cfg(feature = "websocket")]
            Wire::WebSocket => Some(super::frame_header(
                true,
                0,
                super::BINARY,
                len,
                Some(super::MASK),
            )),
        }
    }

    /// The beginning of a message that never ends: a line with no end, a length prefix
    /// with no payload, or a WebSocket frame's header and part of its payload.
    pub(crate) fn torn_frame(self) -> Vec<u8> {
        match self {
            Wire::Lines => b"a line with no end".to_vec(),
            Wire::LengthPrefixed => 100u32.to_be_bytes().to_vec(),
            #[cfg(feature = "websocket")]
            Wire::WebSocket => {
                let frame = super::masked(super::TEXT, &[b'x'; 100]);
                frame[..frame.len() - 50].to_vec()
            }
        }
    }

    /// Connects a client of this wire with the kernel's default buffers (on WebSocket, raw
    /// and upgraded).
    pub(crate) fn connect(self, hub: &Hub) -> WireClient {
        self.connect_socket(hub, client_socket(self.addr(hub), None, None))
    }

    /// Connects with this receive buffer.
    pub(crate) fn connect_rcvbuf(self, hub: &Hub, rcvbuf: usize) -> WireClient {
        self.connect_socket(hub, client_socket(self.addr(hub), Some(rcvbuf), None))
    }

    /// Connects a socket from [`client_socket`], made for [`addr`](Self::addr).
    pub(crate) fn connect_socket(self, hub: &Hub, socket: Socket) -> WireClient {
        let addr = self.addr(hub);
        let conn = match self {
            #[cfg(feature = "websocket")]
            Wire::WebSocket => Conn::Peer(super::raw_connect_socket(socket, addr)),
            _ => Conn::Peer(Peer::connect_socket(socket, addr)),
        };
        WireClient { wire: self, conn }
    }

    /// Connects a client as a real client library does it: tungstenite's on WebSocket, the
    /// same as [`connect`](Self::connect) on TCP.
    pub(crate) fn connect_library(self, hub: &Hub) -> WireClient {
        match self {
            #[cfg(feature = "websocket")]
            Wire::WebSocket => WireClient {
                wire: self,
                conn: Conn::Library(Box::new(super::ws_connect(self.addr(hub)))),
            },
            _ => self.connect(hub),
        }
    }

    /// [`connect`](Self::connect), then waits for the client's `Connected` event.
    pub(crate) fn join(self, hub: &Hub, events: &mut EventLog) -> (WireClient, ClientId) {
        joined(self.connect(hub), events)
    }

    /// [`connect_rcvbuf`](Self::connect_rcvbuf), then waits for its `Connected` event.
    pub(crate) fn join_rcvbuf(
        self,
        hub: &Hub,
        events: &mut EventLog,
        rcvbuf: usize,
    ) -> (WireClient, ClientId) {
        joined(self.connect_rcvbuf(hub, rcvbuf), events)
    }

    /// [`connect_socket`](Self::connect_socket), then waits for its `Connected` event.
    pub(crate) fn join_socket(
        self,
        hub: &Hub,
        events: &mut EventLog,
        socket: Socket,
    ) -> (WireClient, ClientId) {
        joined(self.connect_socket(hub, socket), events)
    }

    /// [`connect_library`](Self::connect_library), then waits for its `Connected` event.
    pub(crate) fn join_library(self, hub: &Hub, events: &mut EventLog) -> (WireClient, ClientId) {
        joined(self.connect_library(hub), events)
    }
}

/// Authentication, the same on every wire: a client shows a token, as its first frame on
/// TCP and as the query `token=<token>` of its upgrade request on WebSocket.
impl Wire {
    /// The token a connection shows the authenticator, on any wire.
    pub(crate) fn token_of(request: &AuthRequest<'_>) -> Option<String> {
        match request.frame() {
            Some(frame) => Some(String::from_utf8_lossy(frame).into_owned()),
            None => Some(request.query()?.strip_prefix("token=")?.to_owned()),
        }
    }

    /// Connects a client that shows `token`, and waits for its `Connected` event.
    pub(crate) fn join_with_token(
        self,
        hub: &Hub,
        events: &mut EventLog,
        token: &str,
    ) -> (WireClient, ClientId) {
        let addr = self.addr(hub);
        let mut peer = Peer::connect(addr);
        match self {
            #[cfg(feature = "websocket")]
            Wire::WebSocket => {
                let request =
                    super::request(&format!("/?token={token}"), &addr.to_string(), &[], &[]);
                super::send_request(&mut peer, &request).assert_switching();
            }
            _ => peer.send(self.framing(), token.as_bytes()),
        }
        joined(
            WireClient {
                wire: self,
                conn: Conn::Peer(peer),
            },
            events,
        )
    }

    /// Asserts that a connection showing `token` is refused, never connected, sent
    /// nothing, and closed: on WebSocket answered `status` and closed cleanly, on TCP
    /// closed as soon as its token is read.
    pub(crate) fn expect_refused_with_token(self, hub: &Hub, token: &str, status: u16) {
        let addr = self.addr(hub);
        match self {
            #[cfg(feature = "websocket")]
            Wire::WebSocket => {
                let request =
                    super::request(&format!("/?token={token}"), &addr.to_string(), &[], &[]);
                let (response, _) = super::refused(addr, &request);
                assert_eq!(response.status, status, "{response:?}");
            }
            _ => {
                let _ = status;
                let mut peer = Peer::connect(addr);
                peer.send(self.framing(), token.as_bytes());
                peer.expect_closed();
            }
        }
    }
}

fn joined(client: WireClient, events: &mut EventLog) -> (WireClient, ClientId) {
    let id = events.connected(client.addr());
    (client, id)
}

/// What a client reads from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A message.
    Message(Vec<u8>),
    /// A heartbeat: an empty frame on TCP (so an empty message reads as one too), an empty
    /// ping frame on WebSocket.
    Ping,
    /// A WebSocket close frame: its code (1005, "no status", for none) and reason.
    Close(u16, String),
}

/// A client of some [`Wire`].
#[derive(Debug)]
pub(crate) struct WireClient {
    wire: Wire,
    conn: Conn,
}

#[derive(Debug)]
enum Conn {
    /// TCP, or raw WebSocket.
    Peer(Peer),
    /// tungstenite's WebSocket client.
    #[cfg(feature = "websocket")]
    Library(Box<super::Ws>),
}

impl WireClient {
    pub(crate) fn wire(&self) -> Wire {
        self.wire
    }

    /// The client's own address, as the hub reports it in `Connected`.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.stream().local_addr().expect("local addr")
    }

    /// The connection's socket.
    pub(crate) fn stream(&self) -> &TcpStream {
        match &self.conn {
            Conn::Peer(peer) => &peer.stream,
            #[cfg(feature = "websocket")]
            Conn::Library(ws) => ws.get_ref(),
        }
    }

    /// The raw connection, to write what no well-behaved client would. Fails the test for
    /// a library client.
    pub(crate) fn peer(&mut self) -> &mut Peer {
        match &mut self.conn {
            Conn::Peer(peer) => peer,
            #[cfg(feature = "websocket")]
            Conn::Library(_) => panic!("a library client has no raw connection"),
        }
    }

    /// Writes these bytes as they are.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        self.peer().write(bytes);
    }

    /// Sends `payload` as one message.
    pub(crate) fn send(&mut self, payload: &[u8]) {
        match &mut self.conn {
            Conn::Peer(peer) => peer.write(&self.wire.client_frame(payload)),
            #[cfg(feature = "websocket")]
            Conn::Library(ws) => {
                use tungstenite::Message;
                let message = match std::str::from_utf8(payload) {
                    Ok(text) => Message::text(text.to_owned()),
                    Err(_) => Message::binary(payload.to_vec()),
                };
                ws.send(message).expect("send a WebSocket message");
            }
        }
    }

    /// The next thing the hub sent, or `None` once the connection has ended (cleanly or
    /// with a reset) with nothing more. Fails the test after `TIMEOUT` without either.
    pub(crate) fn next_item(&mut self) -> Option<Item> {
        match &mut self.conn {
            #[cfg(feature = "websocket")]
            Conn::Peer(peer) if self.wire.is_websocket() => {
                super::read_frame_or_end(peer).ok().map(websocket_item)
            }
            Conn::Peer(peer) => match peer.next_frame(self.wire.framing())? {
                frame if frame.is_empty() => Some(Item::Ping),
                frame => Some(Item::Message(frame)),
            },
            #[cfg(feature = "websocket")]
            Conn::Library(ws) => library_item(ws),
        }
    }

    /// The next message; fails the test if anything else comes first.
    pub(crate) fn read_message(&mut self) -> Vec<u8> {
        match self.next_item() {
            Some(Item::Message(payload)) => payload,
            other => panic!("{:?}: expected a message, got {other:?}", self.wire),
        }
    }

    /// Asserts the next messages are exactly `payloads`, in order, with nothing between.
    pub(crate) fn expect_messages(&mut self, payloads: &[&[u8]]) {
        for (n, payload) in payloads.iter().enumerate() {
            let got = self.read_message();
            assert!(
                got == *payload,
                "{:?}: message {n} is {:?}, expected {:?}",
                self.wire,
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(payload)
            );
        }
    }

    /// Answers a heartbeat just read: an empty frame on TCP, an empty pong on WebSocket
    /// (which tungstenite queued by itself as it read the ping, and sends now).
    pub(crate) fn answer_ping(&mut self) {
        match &mut self.conn {
            #[cfg(feature = "websocket")]
            Conn::Peer(peer) if self.wire.is_websocket() => {
                peer.write(&super::masked(super::PONG, b""))
            }
            Conn::Peer(peer) => peer.send(self.wire.framing(), b""),
            #[cfg(feature = "websocket")]
            Conn::Library(ws) => ws.flush().expect("send the pong"),
        }
    }

    /// Asserts that the hub closes the connection, for `reason`, with nothing else first:
    /// on WebSocket the next frame is the close frame of [`close_for`](super::close_for)
    /// and then the stream ends cleanly (for tungstenite, the close frame is checked); on
    /// TCP the stream ends. Returns how it ended, `None` for a clean end (a FIN), else the
    /// error (on TCP a reset, where the hub closed with input from the client unread).
    pub(crate) fn expect_close(&mut self, reason: DisconnectReason) -> Option<io::ErrorKind> {
        #[cfg(feature = "websocket")]
        if self.wire.is_websocket() {
            let got = self.next_item();
            assert_eq!(got, Some(close_item(reason)), "closed for {reason:?}");
            if let Conn::Peer(peer) = &mut self.conn {
                peer.expect_fin();
            }
            return None;
        }
        let _ = reason;
        let (rest, end) = self.peer().read_to_end();
        assert!(
            rest.is_empty(),
            "expected the connection to close, got {rest:?}"
        );
        end
    }

    /// Reads everything until the hub closes the connection, for a client that stopped
    /// reading. On TCP the last frame may be torn (the hub may cut a client inside one):
    /// it is left out. On WebSocket every frame must be whole.
    pub(crate) fn read_to_end(self) -> Ending {
        let wire = self.wire;
        match self.conn {
            Conn::Peer(mut peer) => {
                let (bytes, end) = peer.read_to_end();
                let items = if wire.is_websocket() {
                    websocket_items(&bytes)
                } else {
                    tcp_items(wire.framing(), &bytes)
                };
                Ending { wire, items, end }
            }
            #[cfg(feature = "websocket")]
            Conn::Library(mut ws) => {
                let items = std::iter::from_fn(|| library_item(&mut ws)).collect();
                Ending {
                    wire,
                    items,
                    end: None,
                }
            }
        }
    }

    /// Leaves as a well-behaved client does, and reads what is left until the hub closes:
    /// on TCP it shuts down its sending side (a FIN); on WebSocket it sends a close frame
    /// (1000) and gets it back.
    pub(crate) fn leave(mut self) {
        match &mut self.conn {
            #[cfg(feature = "websocket")]
            Conn::Peer(peer) if self.wire.is_websocket() => {
                peer.write(&super::close_frame(1000, b""));
                let items = websocket_items(&peer.read_to_end().0);
                assert_eq!(
                    items
                        .iter()
                        .filter(|i| matches!(i, Item::Close(..)))
                        .count(),
                    1,
                    "{items:?}"
                );
            }
            Conn::Peer(peer) => {
                peer.shutdown_write();
                peer.read_to_end();
            }
            #[cfg(feature = "websocket")]
            Conn::Library(ws) => {
                ws.close(None).expect("close");
                while ws.read().is_ok() {}
            }
        }
    }

    /// Closes the connection with a reset (RST) instead of a FIN.
    pub(crate) fn reset(self) {
        SockRef::from(self.stream())
            .set_linger(Some(std::time::Duration::ZERO))
            .expect("SO_LINGER 0");
    }
}

/// Everything a client read until the hub closed its connection.
#[derive(Debug)]
pub(crate) struct Ending {
    pub(crate) wire: Wire,
    pub(crate) items: Vec<Item>,
    /// How the stream ended: `None` for a clean end (a FIN), else the error.
    pub(crate) end: Option<io::ErrorKind>,
}

impl Ending {
    /// Asserts that the connection ended as it does for a client closed for `reason`, and
    /// returns what came before: on WebSocket the last frame is that reason's close frame
    /// (nothing follows it) and the stream ends cleanly; on TCP there is nothing to tell (a
    /// client cut as slow may find its connection reset). Nothing else is a close frame.
    pub(crate) fn closed_for(self, reason: DisconnectReason) -> Vec<Item> {
        let mut items = self.items;
        if self.wire.is_websocket() {
            let last = items.pop();
            assert_eq!(
                last,
                Some(close_item(reason)),
                "the stream does not end in the close frame for {reason:?}"
            );
            assert_eq!(self.end, None, "closed with a reset");
        }
        assert!(
            !items.iter().any(|i| matches!(i, Item::Close(..))),
            "a close frame before the end: {items:?}"
        );
        items
    }

    /// [`closed_for`](Self::closed_for), where everything before must be messages.
    pub(crate) fn messages_closed_for(self, reason: DisconnectReason) -> Vec<Vec<u8>> {
        self.closed_for(reason)
            .into_iter()
            .map(|item| match item {
                Item::Message(payload) => payload,
                other => panic!("expected only messages, got {other:?}"),
            })
            .collect()
    }
}

/// The close frame a WebSocket client leaving for `reason` is sent, as it reads it.
#[cfg(feature = "websocket")]
fn close_item(reason: DisconnectReason) -> Item {
    let (code, text) = super::close_for(reason);
    Item::Close(code, text.to_owned())
}

#[cfg(not(feature = "websocket"))]
fn close_item(_: DisconnectReason) -> Item {
    unreachable!("no WebSocket without the feature")
}

/// The whole frames of a TCP stream, empty ones as heartbeats; a torn last one is left out.
fn tcp_items(framing: Framing, bytes: &[u8]) -> Vec<Item> {
    let mut items = Vec::new();
    let mut rest = bytes;
    loop {
        let (payload, used) = match framing {
            Framing::Lines => match rest.iter().position(|&b| b == b'\n') {
                Some(end) => (&rest[..end], end + 1),
                None => break,
            },
            _ => {
                let Some(header) = rest.get(..4) else { break };
                let len = u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize;
                match rest.get(4..4 + len) {
                    Some(payload) => (payload, 4 + len),
                    None => break,
                }
            }
        };
        items.push(if payload.is_empty() {
            Item::Ping
        } else {
            Item::Message(payload.to_vec())
        });
        rest = &rest[used..];
    }
    items
}

/// What a frame from the hub is to a client: it must be whole, a message in the frame kind
/// the hub picks for its payload, an empty ping, or a close frame.
#[cfg(feature = "websocket")]
fn websocket_item(frame: super::Frame) -> Item {
    use super::{assert_kind, BINARY, CLOSE, PING, TEXT};
    assert!(frame.fin, "a fragment from the hub: {frame:?}");
    match frame.opcode {
        TEXT | BINARY => {
            assert_kind(frame.opcode == TEXT, &frame.payload);
            Item::Message(frame.payload)
        }
        PING => {
            assert!(
                frame.payload.is_empty(),
                "a heartbeat with a payload: {frame:?}"
            );
            Item::Ping
        }
        CLOSE if frame.payload.is_empty() => Item::Close(1005, String::new()),
        CLOSE => Item::Close(frame.close_code(), frame.close_reason()),
        _ => panic!("an unexpected frame from the hub: {frame:?}"),
    }
}

/// Every frame of a stream from the hub, which must end on a frame boundary.
#[cfg(not(feature = "websocket"))]
fn websocket_items(_: &[u8]) -> Vec<Item> {
    unreachable!("no WebSocket without the feature")
}

#[cfg(feature = "websocket")]
fn websocket_items(bytes: &[u8]) -> Vec<Item> {
    super::parse_stream(bytes)
        .into_iter()
        .map(websocket_item)
        .collect()
}

/// The next item tungstenite reads, `None` once the connection is over.
#[cfg(feature = "websocket")]
fn library_item(ws: &mut super::Ws) -> Option<Item> {
    use tungstenite::{Error, Message};
    loop {
        return match ws.read() {
            Ok(Message::Text(text)) => Some(Item::Message(text.as_bytes().to_vec())),
            Ok(Message::Binary(bytes)) => {
                super::assert_kind(false, &bytes);
                Some(Item::Message(bytes.to_vec()))
            }
            Ok(Message::Ping(payload)) => {
                assert!(
                    payload.is_empty(),
                    "a heartbeat with a payload: {payload:?}"
                );
                Some(Item::Ping)
            }
            Ok(Message::Close(Some(close))) => {
                Some(Item::Close(u16::from(close.code), close.reason.to_string()))
            }
            Ok(Message::Close(None)) => Some(Item::Close(1005, String::new())),
            Ok(Message::Pong(_) | Message::Frame(_)) => continue,
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => None,
            Err(Error::Io(err)) if super::is_reset(&err) => None,
            Err(err) => panic!("tungstenite: {err}"),
        };
    }
}
