//! WebSocket clients (feature `websocket`) beside TCP clients, driven by tungstenite's
//! client: relay both ways, the handshake's refusals, the authenticator seeing the request,
//! protocol duties (ping, close codes, fragments, limits), slow clients, heartbeats, wss.
//!
//! Where a real client cannot misbehave on purpose (a frame without a mask, a request that
//! never ends, a client that never reads), the tests speak raw WebSocket on a `Peer`: the
//! helpers below write masked client frames byte by byte and parse the hub's frames,
//! checking that every frame the hub sends is whole, unmasked and without reserved bits.
#![cfg(feature = "websocket")]

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hubcast::{
    Auth, ClientId, DisconnectReason, Event, Framing, Hub, HubBuilder, Origins, Protocol, Relay,
    SlowClientPolicy, Transport,
};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame as WsFrame};
use tungstenite::{Bytes, ClientRequestBuilder, Message, WebSocket};
use util::{
    assert_stats_add_up, broadcast_numbered, healthy_pair, numbered, seq_of, tag_seq_of, tagged,
    EventLog, Healthy, Peer, LOCAL, MSG_LEN, ROOMY, SEND_BUFFER, TIMEOUT, TINY,
};

type Ws = WebSocket<TcpStream>;

// ------------------------------------------------------------------- tungstenite clients

/// Connects a WebSocket client to `addr` (path `/`, no Origin).
fn ws_connect(addr: SocketAddr) -> Ws {
    let stream = Peer::connect(addr).stream;
    let (ws, _) = tungstenite::client::client(format!("ws://{addr}/"), stream)
        .unwrap_or_else(|err| panic!("WebSocket handshake with {addr}: {err}"));
    ws
}

/// Connects a WebSocket client and waits for its `Connected` event.
fn ws_join(hub: &Hub, events: &mut EventLog) -> (Ws, ClientId) {
    let ws = ws_connect(ws_addr(hub));
    let id = events.connected(ws.get_ref().local_addr().expect("local addr"));
    (ws, id)
}

/// A hub with a TCP listener (the first address) and a WebSocket one (the second).
fn mixed(builder: HubBuilder) -> Hub {
    builder
        .listen(LOCAL, Transport::WebSocket)
        .bind(LOCAL)
        .expect("bind")
}

fn ws_addr(hub: &Hub) -> SocketAddr {
    hub.local_addrs()[1].addr
}

/// The next data or close message; answers nothing else (tungstenite answers pings by
/// itself).
fn next_message<S: Read + Write>(ws: &mut WebSocket<S>) -> Message {
    loop {
        let msg = ws.read().expect("a message");
        if let Message::Text(_) | Message::Binary(_) | Message::Close(_) = msg {
            return msg;
        }
    }
}

fn text<S: Read + Write>(ws: &mut WebSocket<S>) -> String {
    match next_message(ws) {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads the hub's close frame (nothing else may come first) and returns its code and
/// reason.
fn close_of<S: Read + Write>(ws: &mut WebSocket<S>) -> (u16, String) {
    match next_message(ws) {
        Message::Close(Some(CloseFrame { code, reason })) => (u16::from(code), reason.to_string()),
        other => panic!("expected a close frame with a code, got {other:?}"),
    }
}

/// Sends one message as these fragments, with tungstenite's raw frames (masked by it).
fn send_fragments(ws: &mut Ws, first: Data, fragments: &[&[u8]]) {
    let last = fragments.len() - 1;
    for (i, fragment) in fragments.iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { first } else { Data::Continue });
        let frame = WsFrame::message(fragment.to_vec(), opcode, i == last);
        ws.write(Message::Frame(frame)).expect("write a fragment");
    }
    ws.flush().expect("flush");
}

/// A WebSocket client whose messages a thread reads as they arrive, so the hub never waits
/// for it.
struct WsReader {
    id: ClientId,
    messages: Receiver<Message>,
    /// The socket, to end the reader's blocking read when dropped.
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl WsReader {
    fn spawn(mut ws: Ws, id: ClientId) -> WsReader {
        let stream = ws.get_ref().try_clone().expect("clone");
        let (tx, messages) = mpsc::channel();
        let thread = thread::spawn(move || {
            // Ends when the connection does (or the test has gone).
            while let Ok(msg) = ws.read() {
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        WsReader {
            id,
            messages,
            stream,
            thread: Some(thread),
        }
    }

    fn next(&self) -> Message {
        self.messages
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|err| panic!("client {}: no message: {err}", self.id))
    }

    /// Asserts the next messages are the numbered messages `range`, as text, in order.
    fn expect_numbered(&self, range: Range<usize>, len: usize) {
        for i in range {
            match self.next() {
                Message::Text(text) if text.as_bytes() == numbered(i, len) => {}
                other => panic!(
                    "client {}: expected text message {i}, got {other:?}",
                    self.id
                ),
            }
        }
    }
}

impl Drop for WsReader {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ------------------------------------------------------------------------ raw WebSocket

/// The opcodes of RFC 6455 section 5.2.
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The mask of the raw client's frames: no byte is zero, so an unmasking bug shows.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The key and accept value of RFC 6455 section 1.3.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A response head longer than this is a hub bug, not something to wait for.
const MAX_RESPONSE_HEAD: usize = 4096;

/// A client frame with every field under the test's control, so that it can be wrong:
/// `rsv` is the three reserved bits (4 = RSV1, 2 = RSV2, 1 = RSV3), `mask` `None` for an
/// unmasked frame. The length takes the shortest form, as RFC 6455 requires.
fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | (rsv & 7) << 4 | (opcode & 0x0f)];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(masked | n as u8),
        n @ 126..=0xffff => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A whole, masked client frame.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(true, 0, opcode, payload, Some(MASK))
}

/// A fragment of a message: `opcode` for the first, `CONTINUATION` for the others.
fn fragment(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    client_frame(fin, 0, opcode, payload, Some(MASK))
}

/// A masked close frame with this code and reason.
fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    masked(CLOSE, &[&code.to_be_bytes()[..], reason].concat())
}

/// A frame from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    /// A whole, final frame.
    fn whole(opcode: u8, payload: &[u8]) -> Frame {
        Frame {
            fin: true,
            opcode,
            payload: payload.to_vec(),
        }
    }

    /// The code of a close frame; fails the test for anything else.
    fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        assert!(self.fin, "a fragmented close frame: {self:?}");
        let code = self.payload.get(..2).expect("a close frame without a code");
        u16::from_be_bytes([code[0], code[1]])
    }

    /// The reason of a close frame, which must be UTF-8.
    fn close_reason(&self) -> String {
        self.close_code();
        String::from_utf8(self.payload[2..].to_vec()).expect("a UTF-8 close reason")
    }
}

/// The server frame at the front of `bytes` and its length, or `None` if it is not all
/// there. Fails the test for what no server frame may have: a mask or a reserved bit.
fn parse_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
    let (first, second) = (*bytes.first()?, *bytes.get(1)?);
    assert_eq!(
        first & 0x70,
        0,
        "a server frame with reserved bits: {first:#x}"
    );
    assert_eq!(second & 0x80, 0, "a masked server frame");
    let (len, header) = match second & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => {
            let len = u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?);
            (usize::try_from(len).expect("a frame length"), 10)
        }
        n => (usize::from(n), 2),
    };
    let payload = bytes.get(header..header + len)?;
    let frame = Frame {
        fin: first & 0x80 != 0,
        opcode: first & 0x0f,
        payload: payload.to_vec(),
    };
    Some((frame, header + len))
}

/// Every frame of a byte stream from the hub, which must end on a frame boundary: a torn
/// last frame fails the test.
fn parse_stream(bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some((frame, len)) = parse_frame(&bytes[at..]) else {
            panic!(
                "the stream ends in a torn frame: {} bytes after {} whole frames",
                bytes.len() - at,
                frames.len()
            );
        };
        frames.push(frame);
        at += len;
    }
    frames
}

/// The next frame from the hub (within `TIMEOUT`).
fn read_frame(peer: &mut Peer) -> Frame {
    let mut bytes = peer.read_exact(2);
    let extra = match bytes[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    bytes.extend(peer.read_exact(extra));
    let len = match extra {
        0 => usize::from(bytes[1] & 0x7f),
        _ => bytes[2..]
            .iter()
            .fold(0, |len, &b| len << 8 | usize::from(b)),
    };
    bytes.extend(peer.read_exact(len));
    let (frame, used) = parse_frame(&bytes).expect("a whole frame");
    assert_eq!(used, bytes.len());
    frame
}

/// Reads the hub's close frame, which must come next, then the end of the stream (a FIN:
/// the hub closes cleanly after its close frame). Returns the frame.
fn expect_close(peer: &mut Peer, code: u16) -> Frame {
    let frame = read_frame(peer);
    assert_eq!(frame.close_code(), code, "{frame:?}");
    peer.expect_fin();
    frame
}

/// An HTTP response head (and body, if read to the end).
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// Parses a head that ends in `\r\n\r\n`.
    fn parse(head: &[u8], body: Vec<u8>) -> Response {
        let text = std::str::from_utf8(head).expect("an ASCII response head");
        let mut lines = text.trim_end_matches("\r\n").split("\r\n");
        let status_line = lines.next().expect("a status line");
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("a header line");
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        Response {
            status,
            headers,
            body,
        }
    }

    /// The value of header `name` (case-insensitive), if it was sent once; fails the test
    /// if it was sent twice.
    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let value = values.next();
        assert!(values.next().is_none(), "{name} sent twice: {self:?}");
        value
    }

    /// Asserts this is the answer to a valid upgrade: 101, with the accept key of [`KEY`].
    fn assert_switching(&self) {
        assert_eq!(self.status, 101, "{self:?}");
        assert_eq!(
            self.header("sec-websocket-accept"),
            Some(ACCEPT),
            "{self:?}"
        );
        let upgrade = self.header("upgrade").expect("an Upgrade header");
        assert!(upgrade.eq_ignore_ascii_case("websocket"), "{self:?}");
    }
}

/// An upgrade request for `path` with `Host: host`, without the headers named in `omit`
/// and with the header lines in `extra`: by default a valid one, with [`KEY`].
fn request(path: &str, host: &str, omit: &[&str], extra: &[&str]) -> String {
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let lines = [
        "Upgrade: websocket",
        "Connection: Upgrade",
        &key,
        "Sec-WebSocket-Version: 13",
    ];
    let mut out = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for line in lines.iter().chain(extra) {
        let name = line.split(':').next().unwrap_or_default();
        let omitted = omit.iter().any(|o| o.eq_ignore_ascii_case(name)) && !extra.contains(line);
        if !omitted {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out
}

/// A valid upgrade request for `/` on the hub's WebSocket address.
fn valid_request(hub: &Hub) -> String {
    request("/", &ws_addr(hub).to_string(), &[], &[])
}

/// Reads a response head, up to and including its blank line, leaving what follows (the
/// first frames) in `peer`'s buffer.
fn read_head(peer: &mut Peer) -> Response {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < MAX_RESPONSE_HEAD, "no end of head: {head:?}");
        head.extend(peer.read_exact(1));
    }
    Response::parse(&head, Vec::new())
}

/// Sends `request` on a new connection from `peer`; returns the response head.
fn send_request(peer: &mut Peer, request: &str) -> Response {
    peer.write(request.as_bytes());
    read_head(peer)
}

/// A raw WebSocket client, upgraded (the answer checked).
fn raw_upgraded(hub: &Hub) -> Peer {
    let mut peer = Peer::connect(ws_addr(hub));
    send_request(&mut peer, &valid_request(hub)).assert_switching();
    peer
}

/// A raw WebSocket client, upgraded, with its `Connected` event.
fn raw_join(hub: &Hub, events: &mut EventLog) -> (Peer, ClientId) {
    raw_join_with(Peer::connect(ws_addr(hub)), hub, events)
}

/// [`raw_join`] on a connection made with other buffer sizes.
fn raw_join_with(mut peer: Peer, hub: &Hub, events: &mut EventLog) -> (Peer, ClientId) {
    send_request(&mut peer, &valid_request(hub)).assert_switching();
    let id = events.connected(peer.addr());
    (peer, id)
}

/// Sends `request`, which the hub must refuse: returns the whole answer (head and body)
/// and the client's address, once the hub has closed the connection cleanly.
fn refused(addr: SocketAddr, request: &str) -> (Response, SocketAddr) {
    let mut peer = Peer::connect(addr);
    peer.write(request.as_bytes());
    let (bytes, end) = peer.read_to_end();
    assert_eq!(end, None, "closed with a reset after {bytes:?}");
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&bytes)))
        + 4;
    let response = Response::parse(&bytes[..split], bytes[split..].to_vec());
    let len: usize = response
        .header("content-length")
        .expect("a Content-Length")
        .parse()
        .expect("a number");
    assert_eq!(response.body.len(), len, "{response:?}");
    assert_eq!(
        response.header("connection").map(|c| c.contains("close")),
        Some(true)
    );
    (response, peer.addr())
}

/// Asserts that the next event is the `Connected` of the client at `addr`: nothing
/// happened before it, in particular no `Connected` of a refused connection.
fn first_connected(events: &mut EventLog, addr: SocketAddr) -> ClientId {
    match events.next() {
        Event::Connected {
            client, addr: a, ..
        } if a == addr => client,
        other => panic!("expected {addr} to be the first to connect, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------- relay

#[test]
fn tcp_and_websocket_clients_talk_both_ways() {
    let hub = mixed(Hub::builder().relay(Relay::Others));
    let mut events = EventLog::subscribe(&hub);
    let mut nc = Peer::connect(hub.local_addr());
    let nc_id = events.expect_connected();
    let mut browser = ws_connect(ws_addr(&hub));
    let ws_id = events.expect_connected();

    browser
        .send(Message::text("hello from the browser"))
        .unwrap();
    assert_eq!(events.expect_message(ws_id), b"hello from the browser");
    assert_eq!(nc.read_line(), b"hello from the browser");

    nc.write(b"hello from nc\n");
    assert_eq!(events.expect_message(nc_id), b"hello from nc");
    assert_eq!(text(&mut browser), "hello from nc");

    hub.broadcast("to everyone").unwrap();
    assert_eq!(nc.read_line(), b"to everyone");
    assert_eq!(text(&mut browser), "to everyone");
    // Not UTF-8: a binary frame, never a text frame.
    hub.broadcast([0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        next_message(&mut browser),
        Message::binary(vec![0xff, 0xfe, 0x00])
    );
    assert_eq!(nc.read_line(), [0xff, 0xfe, 0x00]);
    assert_stats_add_up(&hub, &[]);
}

/// Messages per sender in the relay tests, and their length.
const RELAYED: usize = 1_000;
const RELAYED_LEN: usize = 40;

/// What a client thread of the relay tests gives back: the stream and sequence number of
/// every message it got, in order, and its connection, so that none closes before the
/// counters are checked.
type Relayed = (Vec<(usize, usize)>, Box<dyn Send>);

/// Three TCP and three WebSocket clients each send `RELAYED` numbered messages (stream =
/// the client's index) in one burst, then read: each gets every other client's messages
/// (and, with `Relay::All`, its own) exactly once, in each sender's order, and on
/// WebSocket as text; the subscriber hears every message in order; the counters add up.
fn relay_between_wires(relay: Relay) {
    const TCP: usize = 3;
    const WS: usize = 3;
    let hub = mixed(Hub::builder().relay(relay));
    let mut events = EventLog::subscribe(&hub);
    let senders = TCP + WS;
    let expected = match relay {
        Relay::All => senders * RELAYED,
        _ => (senders - 1) * RELAYED,
    };
    let payload = |stream, seq| tagged(stream, seq, RELAYED_LEN);

    // Everyone joins before anyone sends, so that every client is there for every message.
    let mut ids = Vec::new();
    let mut tcp = Vec::new();
    for _ in 0..TCP {
        let peer = Peer::connect_rcvbuf(hub.local_addr(), ROOMY);
        ids.push(events.connected(peer.addr()));
        tcp.push(peer);
    }
    let mut ws = Vec::new();
    for _ in 0..WS {
        let (client, id) = ws_join(&hub, &mut events);
        ids.push(id);
        ws.push(client);
    }
    let mut threads: Vec<JoinHandle<Relayed>> = Vec::new();
    for (me, mut peer) in tcp.into_iter().enumerate() {
        threads.push(thread::spawn(move || {
            let burst: Vec<u8> = (0..RELAYED)
                .flat_map(|seq| util::frame(Framing::Lines, &payload(me, seq)))
                .collect();
            peer.write(&burst);
            let got = (0..expected)
                .map(|_| tag_seq_of(&peer.read_line()))
                .collect();
            (got, Box::new(peer) as Box<dyn Send>)
        }));
    }
    for (me, mut ws) in (TCP..).zip(ws) {
        threads.push(thread::spawn(move || {
            for seq in 0..RELAYED {
                let text = String::from_utf8(payload(me, seq)).expect("ASCII");
                ws.write(Message::text(text)).expect("write");
            }
            ws.flush().expect("flush");
            let got = (0..expected)
                .map(|_| match ws.read().expect("a message") {
                    Message::Text(text) => tag_seq_of(text.as_bytes()),
                    other => panic!("client {me}: expected text, got {other:?}"),
                })
                .collect();
            (got, Box::new(ws) as Box<dyn Send>)
        }));
    }

    // Draining the events meanwhile, so the hub never pauses for the subscriber.
    for (stream, &id) in ids.iter().enumerate() {
        let got = events.messages(id, RELAYED);
        for (seq, message) in got.iter().enumerate() {
            assert!(
                message[..] == payload(stream, seq)[..],
                "event {seq} of {id}: {message:?}"
            );
        }
    }
    let mut connections = Vec::new();
    for (me, thread) in threads.into_iter().enumerate() {
        let (got, connection) = thread.join().expect("client thread");
        connections.push(connection);
        let mut next = [0; TCP + WS];
        for (from, seq) in got {
            assert!(
                relay == Relay::All || from != me,
                "client {me} got its own message {seq}"
            );
            assert_eq!(
                seq, next[from],
                "client {me}: message from {from} out of order"
            );
            next[from] += 1;
        }
        for (from, &n) in next.iter().enumerate() {
            let want = if from == me && relay != Relay::All {
                0
            } else {
                RELAYED
            };
            assert_eq!(n, want, "client {me}: messages from {from}");
        }
    }
    let total = (senders * RELAYED) as u64;
    let out = (senders * expected) as u64;
    events.wait_until("the counters to be published", || {
        let stats = hub.stats();
        stats.frames_in == total && stats.frames_out == out
    });
    let stats = hub.stats();
    assert_eq!(
        (stats.frames_in, stats.frames_out),
        (total, out),
        "{stats:?}"
    );
    assert_eq!(stats.connected, senders as u64);
    assert_stats_add_up(&hub, &[]);
}

#[test]
fn relay_others_between_tcp_and_websocket_keeps_each_senders_order() {
    relay_between_wires(Relay::Others);
}

#[test]
fn relay_all_between_tcp_and_websocket_includes_the_sender() {
    relay_between_wires(Relay::All);
}

/// What a WebSocket client is sent is decided by the payload, whatever wire or opcode it
/// came in on: text for UTF-8 and binary otherwise, or binary always with
/// `websocket_binary(true)`.
fn message_kinds(always_binary: bool) {
    let hub = mixed(
        Hub::builder()
            .relay(Relay::Others)
            .websocket_binary(always_binary),
    );
    let mut events = EventLog::subscribe(&hub);
    let (mut nc, nc_id) = util::join(&hub, &mut events);
    let (mut alice, alice_id) = ws_join(&hub, &mut events);
    let (mut bob, _) = ws_join(&hub, &mut events);
    let kind = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) if !always_binary => Message::text(text.to_owned()),
        _ => Message::binary(bytes.to_vec()),
    };
    let utf8 = "héllo €".as_bytes();
    let not_utf8: &[u8] = &[0xc3, 0x28, 0xff];

    // From the host.
    for payload in [utf8, not_utf8] {
        hub.broadcast(payload).unwrap();
        assert_eq!(next_message(&mut alice), kind(payload));
        assert_eq!(next_message(&mut bob), kind(payload));
        assert_eq!(nc.read_line(), payload);
    }
    // From a WebSocket client: a binary message that is UTF-8 reaches the others as text.
    for (message, payload) in [
        (Message::binary(utf8.to_vec()), utf8),
        (Message::binary(not_utf8.to_vec()), not_utf8),
        (Message::text("ünïcode"), "ünïcode".as_bytes()),
    ] {
        alice.send(message).unwrap();
        assert_eq!(events.expect_message(alice_id), payload);
        assert_eq!(next_message(&mut bob), kind(payload));
        assert_eq!(nc.read_line(), payload);
    }
    // From a TCP client.
    for payload in [utf8, not_utf8] {
        nc.write(&util::frame(Framing::Lines, payload));
        assert_eq!(events.expect_message(nc_id), payload);
        assert_eq!(next_message(&mut alice), kind(payload));
        assert_eq!(next_message(&mut bob), kind(payload));
    }
    let stats = hub.stats();
    assert_eq!(stats.connected, 3);
    assert_eq!(stats.disconnects.total(), 0, "{stats:?}");
}

#[test]
fn text_for_utf8_and_binary_otherwise_by_default() {
    message_kinds(false);
}

#[test]
fn websocket_binary_sends_every_message_as_binary() {
    message_kinds(true);
}

// ---------------------------------------------------------------------------- fragments

/// A text message in five fragments, with pings between them and a 3-byte character cut
/// across three fragments, each frame in its own write: one `Message` with the whole
/// payload, each ping answered in order, and the message relayed whole.
#[test]
fn a_fragmented_message_with_pings_between_is_one_message() {
    let hub = mixed(Hub::builder().relay(Relay::Others));
    let mut events = EventLog::subscribe(&hub);
    let (mut nc, _) = util::join(&hub, &mut events);
    let (mut ws, id) = raw_join(&hub, &mut events);
    ws.stream.set_nodelay(true).expect("TCP_NODELAY");
    let euro = "€".as_bytes();
    let frames = [
        fragment(TEXT, b"Hel", false),
        masked(PING, b"p1"),
        fragment(CONTINUATION, b"lo, w", false),
        fragment(CONTINUATION, &[b"orld ", &euro[..1]].concat(), false),
        masked(PING, b"p2"),
        fragment(CONTINUATION, &euro[1..2], false),
        fragment(CONTINUATION, &[&euro[2..], b"!"].concat(), true),
    ];
    for frame in &frames {
        ws.write(frame);
    }
    assert_eq!(events.expect_message(id), "Hello, world €!".as_bytes());
    assert_eq!(nc.read_text_line(), "Hello, world €!");
    assert_eq!(read_frame(&mut ws), Frame::whole(PONG, b"p1"));
    assert_eq!(read_frame(&mut ws), Frame::whole(PONG, b"p2"));
    // One message in: the fragments and pings are not messages.
    events.wait_until("the message to be counted", || hub.stats().frames_in >= 1);
    assert_eq!(hub.stats().frames_in, 1);
}

/// `max_frame` bounds a whole message, fragments added up: exactly `max_frame` is a
/// message, one byte more closes the connection with 1009 (tungstenite's own fragments).
#[test]
fn a_fragmented_message_may_reach_max_frame_but_not_pass_it() {
    let hub = mixed(Hub::builder().max_frame(1000));
    let mut events = EventLog::subscribe(&hub);
    let (mut ws, id) = ws_join(&hub, &mut events);
    send_fragments(&mut ws, Data::Binary, &[&[7; 600], &[7; 400]]);
    assert_eq!(events.expect_message(id), vec![7; 1000]);
    send_fragments(&mut ws, Data::Binary, &[&[8; 600], &[8; 401]]);
    let (code, reason) = close_of(&mut ws);
    assert_eq!((code, reason.as_str()), (1009, "frame too large"));
    assert_eq!(
        events.expect_disconnected(id),
        DisconnectReason::FrameTooLarge
    );
    assert_stats_add_up(&hub, &[(DisconnectReason::FrameTooLarge, 1)]);
    assert_eq!(hub.stats().frames_in, 1);
}

// ---------------------------------------------------------------------------- ping/pong

/// A ping is answered with a pong carrying its payload: from tungstenite, and from a raw
/// client whose first frame (a ping of 125 bytes, the most a control frame holds) comes in
/// the same write as its upgrade request, as browsers may send them.
#[test]
fn a_ping_is_answered_with_a_pong_carrying_its_payload() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (mut ws, _) = ws_join(&hub, &mut events);
    ws.send(Message::Ping(Bytes::from_static(b"are you there?")))
        .unwrap();
    match ws.read().expect("a pong") {
        Message::Pong(payload) => assert_eq!(&payload[..], b"are you there?"),
        other => panic!("expected a pong, got {other:?}"),
    }

    let mut raw = Peer::connect(ws_addr(&hub));
    let payload: Vec<u8> = (0..125).collect();
    let opening = [valid_request(&hub).into_bytes(), masked(PING, &payload)].concat();
    raw.write(&opening);
    read_head(&mut raw).assert_switching();
    events.connected(raw.addr());
    assert_eq!(read_frame(&mut raw), Frame::whole(PONG, &payload));

    // Pings are no messages.
    events.drain();
    let messages = events.seen.iter();
    assert_eq!(
        messages
            .filter(|e| matches!(e, Event::Message { .. }))
            .count(),
        0
    );
    let stats = hub.stats();
    assert_eq!((stats.frames_in, stats.accepted), (0, 2), "{stats:?}");
}

/// With heartbeats on, a pong is a sign of life: a client that answers pings (tungstenite
/// does) outlives three times the silence that makes one that never reads nor answers
/// `Unresponsive`, closed with 4002 after the pings it never read.
#[test]
fn pongs_keep_a_client_alive_and_silence_is_4002_unresponsive() {
    const INTERVAL: Duration = Duration::from_millis(250);
    const PINGS: usize = 6;
    let hub = mixed(Hub::builder().heartbeat(Some(INTERVAL)));
    let mut events = EventLog::subscribe(&hub);
    let (mut silent, silent_id) = raw_join(&hub, &mut events);
    let (mut ws, ws_id) = ws_join(&hub, &mut events);
    // tungstenite queues the pong as it returns a ping, and sends it at the next read.
    let answering = thread::spawn(move || {
        for _ in 0..PINGS {
            match ws.read().expect("a ping") {
                Message::Ping(payload) => assert!(payload.is_empty()),
                other => panic!("expected a ping, got {other:?}"),
            }
        }
        // Then it leaves by itself: its departure's reason says whether it lived so long.
        ws.close(None).expect("close");
        while ws.read().is_ok() {}
    });
    assert_eq!(
        events.disconnected(silent_id),
        DisconnectReason::Unresponsive
    );
    answering.join().expect("the answering client");
    assert_eq!(events.disconnected(ws_id), DisconnectReason::PeerClosed);

    let (bytes, end) = silent.read_to_end();
    assert_eq!(end, None, "closed with a reset");
    let frames = parse_stream(&bytes);
    let (close, pings) = frames.split_last().expect("frames");
    assert!(!pings.is_empty(), "no ping before the close");
    assert!(
        pings.iter().all(|p| *p == Frame::whole(PING, b"")),
        "{pings:?}"
    );
    assert_eq!(close.close_code(), 4002);
    assert_eq!(close.close_reason(), "missed heartbeats");
    assert_stats_add_up(
        &hub,
        &[
            (DisconnectReason::Unresponsive, 1),
            (DisconnectReason::PeerClosed, 1),
        ],
    );
}

// -------------------------------------------------------------------------- close codes

#[test]
fn a_kicked_client_is_closed_with_4001() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (mut ws, ws_id) = ws_join(&hub, &mut events);
    let (mut raw, raw_id) = raw_join(&hub, &mut events);
    hub.broadcast("before the kick").unwrap();
    hub.disconnect(ws_id).unwrap();
    hub.disconnect(raw_id).unwrap();
    // What was queued first is still delivered, then the close frame.
    assert_eq!(text(&mut ws), "before the kick");
    assert_eq!(close_of(&mut ws), (4001, "disconnected by host".to_owned()));
    assert_eq!(read_frame(&mut raw), Frame::whole(TEXT, b"before the kick"));
    expect_close(&mut raw, 4001);
    assert_eq!(events.disconnected(ws_id), DisconnectReason::Kicked);
    assert_eq!(events.disconnected(raw_id), DisconnectReason::Kicked);
    assert_stats_add_up(&hub, &[(DisconnectReason::Kicked, 2)]);
}

#[test]
fn shutdown_closes_websocket_clients_with_1001() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (mut ws, id) = ws_join(&hub, &mut events);
    let (mut nc, _) = util::join(&hub, &mut events);
    hub.broadcast("last words").unwrap();
    let report = hub.shutdown(TIMEOUT).expect("shutdown");
    assert_eq!((report.clients, report.flushed), (2, 2), "{report:?}");
    assert_eq!(text(&mut ws), "last words");
    assert_eq!(close_of(&mut ws), (1001, "hub shut down".to_owned()));
    assert_eq!(nc.read_line(), b"last words");
    nc.expect_closed();
    events.until_end();
    assert_eq!(events.disconnected(id), DisconnectReason::Shutdown);
    assert_stats_add_up(&hub, &[(DisconnectReason::Shutdown, 2)]);
}

#[test]
fn an_idle_client_is_closed_with_1001() {
    const IDLE: Duration = Duration::from_millis(200);
    let hub = mixed(Hub::builder().idle_timeout(Some(IDLE)));
    let mut events = EventLog::subscribe(&hub);
    let start = Instant::now();
    let (mut ws, id) = ws_join(&hub, &mut events);
    assert_eq!(close_of(&mut ws), (1001, "idle too long".to_owned()));
    assert!(
        start.elapsed() >= IDLE,
        "closed after {:?}",
        start.elapsed()
    );
    assert_eq!(events.disconnected(id), DisconnectReason::Idle);
    assert_stats_add_up(&hub, &[(DisconnectReason::Idle, 1)]);
}

/// A message over `max_frame` is refused from its header alone: the payload never comes.
#[test]
fn a_message_over_max_frame_is_closed_with_1009() {
    let hub = mixed(Hub::builder().max_frame(1000));
    let mut events = EventLog::subscribe(&hub);
    for len in [1001, 70_000] {
        let (mut raw, id) = raw_join(&hub, &mut events);
        let frame = masked(BINARY, &vec![0; len]);
        // 2 bytes, the 16- or 64-bit length, the mask.
        let header = if len > 0xffff { 14 } else { 8 };
        raw.write(&frame[..header]);
        expect_close(&mut raw, 1009);
        assert_eq!(
            events.disconnected(id),
            DisconnectReason::FrameTooLarge,
            "{len} bytes"
        );
    }
    assert_stats_add_up(&hub, &[(DisconnectReason::FrameTooLarge, 2)]);
}

/// Text that is not UTF-8 (whole, proved wrong by one fragment, or in a close reason) is
/// closed with 1007 and counted as a protocol violation.
#[test]
fn text_that_is_not_utf8_is_closed_with_1007() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let cases = [
        masked(TEXT, b"ok \xff"),
        // A 2-byte character whose second byte is not a continuation byte.
        fragment(TEXT, b"ok \xc3\x28", false),
        close_frame(1000, b"\xff"),
    ];
    for wire in &cases {
        let (mut raw, id) = raw_join(&hub, &mut events);
        raw.write(wire);
        expect_close(&mut raw, 1007);
        assert_eq!(events.disconnected(id), DisconnectReason::Protocol);
    }
    assert_stats_add_up(&hub, &[(DisconnectReason::Protocol, cases.len() as u64)]);
    assert_eq!(hub.stats().frames_in, 0);
}

/// With `websocket_binary(true)` every message goes in a binary frame: the protocol's
/// control messages and the messages a resume replays too, not only live ones.
#[test]
fn always_binary_covers_control_and_replayed_messages() {
    let hub = mixed(
        Hub::builder()
            .protocol(Protocol::Sequenced)
            .websocket_binary(true),
    );
    let mut events = EventLog::subscribe(&hub);
    hub.broadcast("m1").unwrap();
    let (mut ws, _) = ws_join(&hub, &mut events);
    let at = next_message(&mut ws);
    assert!(at.is_binary(), "{at:?}");
    let at = String::from_utf8(at.into_data().to_vec()).unwrap();
    let epoch = at.split(' ').nth(2).expect("#at * <epoch> <seq>");
    ws.send(Message::text(format!("#resume * {epoch} 0")))
        .unwrap();
    let resumed = next_message(&mut ws);
    assert!(resumed.is_binary(), "{resumed:?}");
    assert_eq!(
        resumed.into_data(),
        format!("#resumed * {epoch} 1 1").as_bytes()
    );
    let replayed = next_message(&mut ws);
    assert_eq!(replayed, Message::binary(b"1 m1".to_vec()));
}

/// On a line-framed hub a WebSocket message is one line: one with a newline in it (text
/// or binary, whole or in fragments), or ending in '\r' (which a line reader drops with the
/// "\n" after it), is closed with 1007 and reaches nobody, so a browser cannot make a TCP
/// client read lines it never sent, or a line that is not its message. A '\r' elsewhere
/// is a byte like any other. With length-prefixed framing the same messages are ordinary.
#[test]
fn a_message_with_a_newline_is_refused_on_a_line_framed_hub() {
    let hub = mixed(Hub::builder().relay(Relay::Others));
    let mut events = EventLog::subscribe(&hub);
    let (mut nc, _) = util::join(&hub, &mut events);
    let forged = b"innocent\n99 forged\n#noresume * epoch 1 1";
    let cases = [
        masked(TEXT, forged),
        masked(BINARY, b"a\nb"),
        [
            fragment(TEXT, b"first ", false),
            masked(CONTINUATION, b"\nsecond"),
        ]
        .concat(),
        masked(TEXT, b"ends in cr\r"),
        masked(TEXT, b"\r"),
        [
            fragment(BINARY, b"cr in ", false),
            masked(CONTINUATION, b"the last fragment\r"),
        ]
        .concat(),
    ];
    for wire in &cases {
        let (mut raw, id) = raw_join(&hub, &mut events);
        raw.write(wire);
        expect_close(&mut raw, 1007);
        assert_eq!(events.disconnected(id), DisconnectReason::Protocol);
    }
    hub.broadcast("marker").unwrap();
    assert_eq!(
        nc.read_line(),
        b"marker",
        "nothing reached the TCP client before"
    );
    assert_eq!(hub.stats().frames_in, 0);
    let (mut raw, id) = raw_join(&hub, &mut events);
    raw.write(&masked(TEXT, b"\ra\rb"));
    assert_eq!(events.expect_message(id), b"\ra\rb");
    assert_eq!(nc.read_line(), b"\ra\rb");

    let hub = mixed(
        Hub::builder()
            .framing(Framing::LengthPrefixed)
            .relay(Relay::Others),
    );
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, _) = util::join(&hub, &mut events);
    let (mut raw, id) = raw_join(&hub, &mut events);
    raw.write(&masked(TEXT, forged));
    assert_eq!(events.expect_message(id), forged);
    assert_eq!(peer.read_frame(), forged);
}

/// Every protocol violation a client can make is closed with 1002 (each on its own
/// connection), and none of them delivers anything.
#[test]
fn protocol_violations_are_closed_with_1002() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", client_frame(true, 0, TEXT, b"hi", None)),
        ("RSV1", client_frame(true, 4, TEXT, b"x", Some(MASK))),
        ("RSV2", client_frame(true, 2, BINARY, b"x", Some(MASK))),
        ("RSV3", client_frame(true, 1, PING, b"", Some(MASK))),
        ("data opcode 3", masked(3, b"")),
        ("control opcode 0xB", masked(0xB, b"")),
        ("ping over 125 bytes", masked(PING, &[0; 126])),
        (
            "fragmented ping",
            client_frame(false, 0, PING, b"", Some(MASK)),
        ),
        ("continuation without a start", masked(CONTINUATION, b"x")),
        (
            "new message inside a fragmented one",
            [fragment(TEXT, b"a", false), masked(TEXT, b"b")].concat(),
        ),
        ("close code 1005", close_frame(1005, b"")),
        ("close code 999", close_frame(999, b"")),
        ("1-byte close payload", masked(CLOSE, &[3])),
    ];
    for (what, wire) in &cases {
        let (mut raw, id) = raw_join(&hub, &mut events);
        raw.write(wire);
        let frame = read_frame(&mut raw);
        assert_eq!(frame.close_code(), 1002, "{what}: {frame:?}");
        raw.expect_fin();
        assert_eq!(
            events.disconnected(id),
            DisconnectReason::Protocol,
            "{what}"
        );
    }
    assert_stats_add_up(&hub, &[(DisconnectReason::Protocol, cases.len() as u64)]);
    let stats = hub.stats();
    assert_eq!(stats.frames_in, 0, "{stats:?}");
    assert!(events
        .seen
        .iter()
        .all(|e| !matches!(e, Event::Message { .. })));
}

/// A client's close is echoed with its own code (none for none), then the connection
/// ends cleanly: `PeerClosed`.
#[test]
fn a_client_close_is_echoed_with_its_code() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    for (wire, echo) in [
        (close_frame(1000, b"bye"), 1000u16.to_be_bytes().to_vec()),
        (close_frame(4321, b""), 4321u16.to_be_bytes().to_vec()),
        (masked(CLOSE, b""), Vec::new()),
    ] {
        let (mut raw, id) = raw_join(&hub, &mut events);
        raw.write(&wire);
        assert_eq!(read_frame(&mut raw), Frame::whole(CLOSE, &echo));
        raw.expect_fin();
        assert_eq!(events.disconnected(id), DisconnectReason::PeerClosed);
    }
    // tungstenite's close handshake completes: it gets its code back, then the end.
    let (mut ws, id) = ws_join(&hub, &mut events);
    let bye = CloseFrame {
        code: CloseCode::from(4321),
        reason: "done".into(),
    };
    ws.close(Some(bye)).expect("close");
    assert_eq!(close_of(&mut ws).0, 4321);
    assert!(matches!(
        ws.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
    assert_eq!(events.disconnected(id), DisconnectReason::PeerClosed);
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, 4)]);
}

// ---------------------------------------------------------------------------- handshake

#[test]
fn another_websocket_version_is_426_naming_13() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let host = ws_addr(&hub).to_string();
    let version = ["Sec-WebSocket-Version"];
    for extra in [&["Sec-WebSocket-Version: 8"][..], &[]] {
        let (response, _) = refused(ws_addr(&hub), &request("/", &host, &version, extra));
        assert_eq!(response.status, 426, "{response:?}");
        assert_eq!(response.header("sec-websocket-version"), Some("13"));
        assert_eq!(response.header("upgrade"), Some("websocket"));
    }
    let good = raw_upgraded(&hub);
    first_connected(&mut events, good.addr());
    let stats = hub.stats();
    assert_eq!(
        (stats.handshake_failed, stats.accepted),
        (2, 1),
        "{stats:?}"
    );
}

#[test]
fn a_request_that_is_no_upgrade_is_400() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let host = ws_addr(&hub).to_string();
    let requests = [
        request("/", &host, &["Sec-WebSocket-Key"], &[]),
        request("/", &host, &["Upgrade"], &[]),
        request("/", &host, &["Connection"], &[]),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        // No Host, or two (RFC 6455 4.1 asks for one).
        request("/", &host, &[], &[]).replacen(&format!("Host: {host}\r\n"), "", 1),
        request("/", &host, &[], &["Host: elsewhere.example"]),
    ];
    for request in &requests {
        let (response, _) = refused(ws_addr(&hub), request);
        assert_eq!(response.status, 400, "{request:?}: {response:?}");
        assert!(response.header("sec-websocket-accept").is_none());
    }
    let good = raw_upgraded(&hub);
    first_connected(&mut events, good.addr());
    let stats = hub.stats();
    assert_eq!(stats.handshake_failed, requests.len() as u64, "{stats:?}");
    assert_eq!((stats.accepted, stats.rejected), (1, 0), "{stats:?}");
}

/// With `websocket_path`, other paths get 404; the query string does not count.
#[test]
fn only_the_websocket_path_is_served() {
    let hub = mixed(Hub::builder().websocket_path(Some("/chat")));
    let mut events = EventLog::subscribe(&hub);
    let host = ws_addr(&hub).to_string();
    for path in ["/", "/other", "/chat/more", "/?/chat"] {
        let (response, _) = refused(ws_addr(&hub), &request(path, &host, &[], &[]));
        assert_eq!(response.status, 404, "{path}: {response:?}");
    }
    let mut peer = Peer::connect(ws_addr(&hub));
    send_request(&mut peer, &request("/chat?x=1", &host, &[], &[])).assert_switching();
    let id = first_connected(&mut events, peer.addr());
    peer.write(&masked(TEXT, b"in the chat"));
    assert_eq!(events.expect_message(id), b"in the chat");
    let stats = hub.stats();
    assert_eq!(
        (stats.handshake_failed, stats.accepted),
        (4, 1),
        "{stats:?}"
    );
}

/// The default origin policy: no `Origin` (not a browser) or the same host and port as
/// `Host`; a page of another site, or of another port, gets 403.
#[test]
fn browser_origins_must_be_the_same_origin_by_default() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let addr = ws_addr(&hub);
    let host = addr.to_string();
    let other_port = format!("Origin: http://127.0.0.1:{}", addr.port() ^ 1);
    for origin in ["Origin: http://evil.example", &other_port, "Origin: null"] {
        let (response, _) = refused(addr, &request("/", &host, &[], &[origin]));
        assert_eq!(response.status, 403, "{origin}: {response:?}");
    }
    let same = format!("Origin: http://{host}");
    // Kept open, so that the next event is the next one's `Connected`.
    let mut accepted = Vec::new();
    for extra in [&[same.as_str()][..], &[]] {
        let mut peer = Peer::connect(addr);
        send_request(&mut peer, &request("/", &host, &[], extra)).assert_switching();
        first_connected(&mut events, peer.addr());
        accepted.push(peer);
    }
    let stats = hub.stats();
    assert_eq!(
        (stats.handshake_failed, stats.accepted),
        (3, 2),
        "{stats:?}"
    );
}

#[test]
fn browser_origins_from_a_list_or_any() {
    let app = "https://app.example";
    let listed = mixed(Hub::builder().websocket_origins(Origins::List(vec![app.into()])));
    let any = mixed(Hub::builder().websocket_origins(Origins::Any));
    let mut listed_events = EventLog::subscribe(&listed);
    let mut any_events = EventLog::subscribe(&any);
    let evil = "Origin: http://evil.example";
    // Accepted connections stay open, so that the next event is the next `Connected`.
    let mut open = Vec::new();
    let mut accepted = |hub: &Hub, events: &mut EventLog, origin: &str| {
        let mut peer = Peer::connect(ws_addr(hub));
        let host = ws_addr(hub).to_string();
        send_request(&mut peer, &request("/", &host, &[], &[origin])).assert_switching();
        first_connected(events, peer.addr());
        open.push(peer);
    };
    let host = ws_addr(&listed).to_string();
    for origin in [
        evil,
        "Origin: https://app.example:8443",
        "Origin: http://app.example",
    ] {
        let (response, _) = refused(ws_addr(&listed), &request("/", &host, &[], &[origin]));
        assert_eq!(response.status, 403, "{origin}: {response:?}");
    }
    accepted(&listed, &mut listed_events, &format!("Origin: {app}"));
    accepted(&listed, &mut listed_events, "Origin: HTTPS://APP.EXAMPLE");
    accepted(&any, &mut any_events, evil);
    accepted(&any, &mut any_events, "Origin: null");
    let stats = listed.stats();
    assert_eq!(
        (stats.handshake_failed, stats.accepted),
        (3, 2),
        "{stats:?}"
    );
    let stats = any.stats();
    assert_eq!(
        (stats.handshake_failed, stats.accepted),
        (0, 2),
        "{stats:?}"
    );
}

#[test]
fn a_head_over_websocket_max_head_is_431() {
    const MAX_HEAD: usize = 512;
    let hub = mixed(Hub::builder().websocket_max_head(MAX_HEAD));
    let mut events = EventLog::subscribe(&hub);
    let host = ws_addr(&hub).to_string();
    let padded = |len: usize| {
        let bare = request("/", &host, &[], &["X-Padding: "]).len();
        let padding = format!("X-Padding: {}", "p".repeat(len - bare));
        let request = request("/", &host, &[], &[&padding]);
        assert_eq!(request.len(), len);
        request
    };
    let (response, _) = refused(ws_addr(&hub), &padded(MAX_HEAD + 1));
    assert_eq!(response.status, 431, "{response:?}");
    let (response, _) = refused(ws_addr(&hub), &padded(4 * MAX_HEAD));
    assert_eq!(response.status, 431, "{response:?}");
    // Exactly at the limit is fine.
    let mut peer = Peer::connect(ws_addr(&hub));
    send_request(&mut peer, &padded(MAX_HEAD)).assert_switching();
    first_connected(&mut events, peer.addr());
    let stats = hub.stats();
    assert_eq!(
        (stats.handshake_failed, stats.accepted),
        (2, 1),
        "{stats:?}"
    );
}

/// A request that never ends holds its connection until `handshake_timeout`, no longer,
/// and never becomes a client.
#[test]
fn a_request_that_never_ends_is_closed_at_handshake_timeout() {
    const HANDSHAKE: Duration = Duration::from_millis(300);
    let hub = mixed(Hub::builder().handshake_timeout(HANDSHAKE));
    let mut events = EventLog::subscribe(&hub);
    let start = Instant::now();
    let mut peer = Peer::connect(ws_addr(&hub));
    let request = valid_request(&hub);
    // Everything but the blank line that ends the head.
    peer.write(&request.as_bytes()[..request.len() - 2]);
    peer.expect_fin();
    assert!(
        start.elapsed() >= HANDSHAKE,
        "closed after {:?}",
        start.elapsed()
    );
    let good = raw_upgraded(&hub);
    first_connected(&mut events, good.addr());
    let stats = hub.stats();
    assert_eq!(
        (stats.handshake_failed, stats.accepted),
        (1, 1),
        "{stats:?}"
    );
}

/// A head that arrives in two reads is answered once it is whole: the first half alone
/// neither makes a client nor gets an answer.
#[test]
fn a_head_split_across_reads_is_answered_once_whole() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let request = valid_request(&hub);
    let (first, rest) = request.as_bytes().split_at(request.len() / 2);
    let mut peer = Peer::connect(ws_addr(&hub));
    peer.stream.set_nodelay(true).expect("TCP_NODELAY");
    peer.write(first);
    // The counters are published after the round that read the first half, so by then
    // the hub has done all it does with it.
    events.wait_until("the first half to be read", || {
        hub.stats().bytes_in >= first.len() as u64
    });
    events.drain();
    assert!(events.seen.is_empty(), "{:?}", events.seen);
    assert!(hub.clients().is_empty(), "{:?}", hub.clients());
    peer.write(rest);
    read_head(&mut peer).assert_switching();
    let id = first_connected(&mut events, peer.addr());
    peer.write(&masked(TEXT, b"whole"));
    assert_eq!(events.expect_message(id), b"whole");
    let stats = hub.stats();
    assert_eq!(
        (stats.handshake_failed, stats.accepted),
        (0, 1),
        "{stats:?}"
    );
}

/// The first of the hub's subprotocols (its order of preference) that the client offers
/// is chosen; with no match the connection is still accepted, without the header.
#[test]
fn the_hubs_preferred_subprotocol_is_chosen() {
    let hub = mixed(Hub::builder().websocket_protocols(["v2", "v1"]));
    let mut events = EventLog::subscribe(&hub);
    let host = ws_addr(&hub).to_string();
    for (offer, chosen) in [("v1, v2", Some("v2")), ("v1", Some("v1")), ("v3", None)] {
        let mut peer = Peer::connect(ws_addr(&hub));
        let offer = format!("Sec-WebSocket-Protocol: {offer}");
        let response = send_request(&mut peer, &request("/", &host, &[], &[&offer]));
        response.assert_switching();
        assert_eq!(response.header("sec-websocket-protocol"), chosen, "{offer}");
        events.connected(peer.addr());
    }
    // tungstenite checks the answer against its offer.
    let uri = format!("ws://{host}/").parse().expect("a URI");
    let request = ClientRequestBuilder::new(uri).with_sub_protocol("v1");
    let stream = Peer::connect(ws_addr(&hub)).stream;
    let (_, response) = tungstenite::client::client(request, stream).expect("handshake");
    assert_eq!(response.headers()["sec-websocket-protocol"], "v1");
    assert_eq!(hub.stats().accepted, 4);
}

/// permessage-deflate is declined: the answer names no extension, and messages flow
/// uncompressed.
#[test]
fn permessage_deflate_is_declined() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let host = ws_addr(&hub).to_string();
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits";
    let mut peer = Peer::connect(ws_addr(&hub));
    let response = send_request(&mut peer, &request("/", &host, &[], &[offer]));
    response.assert_switching();
    assert_eq!(
        response.header("sec-websocket-extensions"),
        None,
        "{response:?}"
    );
    let id = events.connected(peer.addr());
    peer.write(&masked(TEXT, b"plain"));
    assert_eq!(events.expect_message(id), b"plain");
    hub.broadcast("plain too").unwrap();
    assert_eq!(read_frame(&mut peer), Frame::whole(TEXT, b"plain too"));
    assert_eq!(hub.stats().accepted, 1);
}

// ------------------------------------------------------------------------ authenticator

/// What the authenticator was shown of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Shown {
    websocket: bool,
    path: Option<String>,
    query: Option<String>,
    cookie: Option<Vec<u8>>,
    authorization: Option<Vec<u8>>,
    frame: Option<Vec<u8>>,
}

/// A hub whose authenticator records what it is shown. WebSocket upgrades are let in by
/// cookie (as alice), bearer token (bob) or query token (carol); TCP connections by their
/// first frame (dave); the path `/panic` makes it panic.
fn auth_hub() -> (Hub, Arc<Mutex<Vec<Shown>>>) {
    let shown = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&shown);
    let hub = mixed(Hub::builder().authenticate(move |request| {
        let owned = |bytes: Option<&[u8]>| bytes.map(<[u8]>::to_vec);
        let seen = Shown {
            websocket: request.is_websocket(),
            path: request.path().map(str::to_owned),
            query: request.query().map(str::to_owned),
            cookie: owned(request.header("cookie")),
            authorization: owned(request.header("Authorization")),
            frame: owned(request.frame()),
        };
        log.lock().expect("lock").push(seen.clone());
        if seen.path.as_deref() == Some("/panic") {
            panic!("the authenticator fails on purpose");
        }
        let name = if seen.cookie.as_deref() == Some(b"session=s3cret") {
            "alice"
        } else if seen.authorization.as_deref() == Some(b"Bearer t0ken") {
            "bob"
        } else if seen
            .query
            .as_deref()
            .is_some_and(|q| q.contains("token=good"))
        {
            "carol"
        } else if seen.frame.as_deref() == Some(b"token good") {
            "dave"
        } else {
            return Auth::Reject;
        };
        Auth::AcceptAs(name.into())
    }));
    (hub, shown)
}

#[test]
fn the_authenticator_sees_the_upgrade_request() {
    let (hub, shown) = auth_hub();
    let mut events = EventLog::subscribe(&hub);
    let host = ws_addr(&hub).to_string();
    let mut peer = Peer::connect(ws_addr(&hub));
    let headers = ["Cookie: session=s3cret", "Authorization: Basic xyz"];
    let response = send_request(&mut peer, &request("/feed?room=1&x", &host, &[], &headers));
    response.assert_switching();
    let alice = events.connected(peer.addr());
    let expected = Shown {
        websocket: true,
        path: Some("/feed".into()),
        query: Some("room=1&x".into()),
        cookie: Some(b"session=s3cret".to_vec()),
        authorization: Some(b"Basic xyz".to_vec()),
        frame: None,
    };
    assert_eq!(shown.lock().unwrap().last(), Some(&expected));

    // A real client's headers, and a token in the query string.
    let uri = format!("ws://{host}/").parse().expect("a URI");
    let request = ClientRequestBuilder::new(uri).with_header("Authorization", "Bearer t0ken");
    let (ws, _) = tungstenite::client::client(request, Peer::connect(ws_addr(&hub)).stream)
        .expect("handshake");
    let bob = events.connected(ws.get_ref().local_addr().unwrap());
    let url = format!("ws://{host}/?token=good");
    let (ws, _) =
        tungstenite::client::client(url, Peer::connect(ws_addr(&hub)).stream).expect("handshake");
    let carol = events.connected(ws.get_ref().local_addr().unwrap());

    // TCP clients on the same hub still authenticate with their first frame.
    let mut nc = Peer::connect(hub.local_addr());
    nc.write(b"token good\n");
    let dave = events.connected(nc.addr());
    let tcp = Shown {
        frame: Some(b"token good".to_vec()),
        ..Shown::default()
    };
    assert_eq!(shown.lock().unwrap().last(), Some(&tcp));

    for (id, name) in [
        (alice, "alice"),
        (bob, "bob"),
        (carol, "carol"),
        (dave, "dave"),
    ] {
        let info = hub.client(id).expect("connected");
        assert_eq!(info.name.as_deref(), Some(name));
    }
    assert_eq!(shown.lock().unwrap().len(), 4);
    let stats = hub.stats();
    assert_eq!((stats.accepted, stats.rejected), (4, 0), "{stats:?}");
}

/// `Reject` and a panic both answer 403 and never make a client; the hub serves on.
#[test]
fn a_rejected_or_panicking_upgrade_is_403_and_never_connected() {
    let (hub, shown) = auth_hub();
    let mut events = EventLog::subscribe(&hub);
    let host = ws_addr(&hub).to_string();
    let (response, _) = refused(ws_addr(&hub), &request("/feed", &host, &[], &[]));
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.body, b"rejected by the authenticator\n");
    assert_eq!(hub.stats().rejected, 1);
    let (response, _) = refused(
        ws_addr(&hub),
        &request("/panic?token=good", &host, &[], &[]),
    );
    assert_eq!(response.status, 403, "{response:?}");
    let stats = hub.stats();
    assert_eq!((stats.rejected, stats.callback_panics), (2, 1), "{stats:?}");
    let mut nc = Peer::connect(hub.local_addr());
    nc.write(b"token bad\n");
    nc.expect_closed();

    let mut peer = Peer::connect(ws_addr(&hub));
    send_request(&mut peer, &request("/?token=good", &host, &[], &[])).assert_switching();
    let id = first_connected(&mut events, peer.addr());
    assert_eq!(
        hub.client(id).expect("connected").name.as_deref(),
        Some("carol")
    );
    assert_eq!(shown.lock().unwrap().len(), 4);
    let stats = hub.stats();
    assert_eq!(
        (
            stats.accepted,
            stats.rejected,
            stats.handshake_failed,
            stats.callback_panics
        ),
        (1, 3, 0, 1),
        "{stats:?}"
    );
}

// ------------------------------------------------------------------------- slow clients

/// Messages per window, and the queue bound, of the slow-client tests (as in
/// `tests/slow_client.rs`: healthy clients read each window in full before the next, so
/// only the stalled client falls behind, by a bounded number of windows).
const WINDOW: usize = 50;
const SLOW_QUEUE: usize = 64 * 1024;
/// Far more than the stalled client's kernel buffers plus its queue could hold.
const SLOW_MAX_BYTES: usize = 16 << 20;

/// A hub with a WebSocket client that upgrades and then never reads, beside two healthy
/// TCP clients and a healthy WebSocket client.
struct Slow {
    hub: Hub,
    events: EventLog,
    stalled: Option<Peer>,
    stalled_id: ClientId,
    tcp: [Healthy; 2],
    ws: WsReader,
    /// Messages broadcast so far.
    sent: usize,
}

impl Slow {
    /// No write timeout, so only the bound and the policy decide; a linger as long as the
    /// test's timeout, so the stalled client's close frame waits for it to read.
    fn new(policy: SlowClientPolicy) -> Slow {
        let hub = mixed(
            Hub::builder()
                .queue_bytes(SLOW_QUEUE)
                .send_buffer(Some(SEND_BUFFER))
                .write_timeout(None)
                .linger(TIMEOUT)
                .slow_client_policy(policy),
        );
        let mut events = EventLog::subscribe(&hub);
        let tcp = healthy_pair(&hub, &mut events, Framing::Lines);
        let (ws, ws_id) = ws_join(&hub, &mut events);
        let ws = WsReader::spawn(ws, ws_id);
        let peer = Peer::connect_rcvbuf(ws_addr(&hub), TINY);
        let (stalled, stalled_id) = raw_join_with(peer, &hub, &mut events);
        Slow {
            hub,
            events,
            stalled: Some(stalled),
            stalled_id,
            tcp,
            ws,
            sent: 0,
        }
    }

    /// Broadcasts one window; every healthy client gets all of it, in order.
    fn window(&mut self) {
        let range = self.sent..self.sent + WINDOW;
        broadcast_numbered(&self.hub, range.clone(), MSG_LEN);
        for client in &self.tcp {
            client.expect_numbered(range.clone(), MSG_LEN);
        }
        self.ws.expect_numbered(range, MSG_LEN);
        self.sent += WINDOW;
        self.events.drain();
    }

    /// Broadcasts windows until `done` says the policy has applied, then five more.
    fn run_until(&mut self, mut done: impl FnMut(&mut Slow) -> bool) {
        loop {
            assert!(
                self.sent * MSG_LEN < SLOW_MAX_BYTES,
                "the slow-client policy never applied after {} messages",
                self.sent
            );
            self.window();
            if done(self) {
                break;
            }
        }
        for _ in 0..5 {
            self.window();
        }
    }

    fn stalled_dropped(&self) -> u64 {
        let info = self.hub.client(self.stalled_id);
        info.expect("the stalled client is still connected").dropped
    }

    /// Starts reading everything the stalled client is sent, to the end, on a thread.
    fn read_stalled(&mut self) -> JoinHandle<Vec<u8>> {
        let mut stalled = self.stalled.take().expect("the stalled client");
        thread::spawn(move || {
            let (bytes, end) = stalled.read_to_end();
            assert_eq!(end, None, "closed with a reset");
            bytes
        })
    }
}

/// The stalled client's stream, after its upgrade answer: whole frames only, numbered text
/// messages (their sequence numbers returned) and last a close frame, whose code is
/// returned.
fn stalled_stream(bytes: &[u8]) -> (Vec<usize>, Frame) {
    let mut frames = parse_stream(bytes);
    let close = frames.pop().expect("no frame at all");
    assert_eq!(
        close.opcode, CLOSE,
        "the stream does not end in a close frame"
    );
    let seqs = frames
        .iter()
        .map(|frame| {
            assert!(frame.fin && frame.opcode == TEXT, "{frame:?}");
            let seq = seq_of(&frame.payload);
            assert!(frame.payload == numbered(seq, MSG_LEN), "a corrupt message");
            seq
        })
        .collect();
    (seqs, close)
}

/// Under `Disconnect`, the stalled WebSocket client is cut, and still gets its close frame
/// with 4000: past the queue's bound, after what its kernel buffers held and the frames
/// that were partly written, so the stream it reads is whole frames, gapless from the
/// first message, ending in the close frame.
#[test]
fn a_slow_websocket_client_is_cut_and_still_gets_close_4000() {
    let mut s = Slow::new(SlowClientPolicy::Disconnect);
    let stalled_id = s.stalled_id;
    s.run_until(|s| s.events.has_left(stalled_id));
    assert_eq!(s.events.disconnected(stalled_id), DisconnectReason::Slow);
    assert_eq!(
        s.events.departures(),
        vec![(stalled_id, DisconnectReason::Slow)],
        "a healthy client left"
    );
    let stats = s.hub.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_stats_add_up(&s.hub, &[(DisconnectReason::Slow, 1)]);

    let bytes = s.read_stalled().join().expect("the stalled reader");
    let (seqs, close) = stalled_stream(&bytes);
    assert_eq!(close.close_code(), 4000);
    assert_eq!(close.close_reason(), "too slow to read");
    assert_eq!(seqs, (0..seqs.len()).collect::<Vec<_>>(), "gaps");
    assert!(seqs.len() < s.sent, "got all {} messages", s.sent);
    s.window();
    assert_eq!(s.hub.clients().len(), 3);
}

/// Both drop policies: the stalled client stays, drops are counted for it alone, the
/// healthy clients of both wires get everything. It reads again and the hub shuts down:
/// it gets whole frames, an ascending subsequence from the first message whose length
/// plus the drops is everything sent, then close 1001. Returns its sequence numbers and
/// how many were sent.
fn drop_policy(policy: SlowClientPolicy) -> (Vec<usize>, usize) {
    let mut s = Slow::new(policy);
    s.run_until(|s| s.stalled_dropped() > 0);
    let stats = s.hub.stats();
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.dropped, s.stalled_dropped(), "{stats:?}");
    for info in s.hub.clients() {
        assert_eq!(info.dropped > 0, info.id == s.stalled_id, "{info:?}");
    }
    assert!(
        s.events.departures().is_empty(),
        "{:?}",
        s.events.departures()
    );

    let reader = s.read_stalled();
    s.window();
    assert_stats_add_up(&s.hub, &[]);
    let report = s.hub.shutdown(TIMEOUT).expect("shutdown");
    assert_eq!((report.clients, report.flushed), (4, 4), "{report:?}");
    let (seqs, close) = stalled_stream(&reader.join().expect("the stalled reader"));
    assert_eq!(close.close_code(), 1001);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(seqs.first(), Some(&0), "the oldest message was lost");
    let stats = s.hub.stats();
    let dropped = stats.dropped as usize;
    assert_eq!(seqs.len() + dropped, s.sent, "delivered + dropped != sent");
    assert_eq!(stats.frames_out as usize, 4 * s.sent - dropped, "{stats:?}");
    (seqs, s.sent)
}

#[test]
fn drop_oldest_keeps_the_newest_for_a_slow_websocket_client() {
    let (seqs, sent) = drop_policy(SlowClientPolicy::DropOldest);
    assert_eq!(
        seqs.last(),
        Some(&(sent - 1)),
        "the newest message was lost"
    );
}

#[test]
fn drop_newest_keeps_the_oldest_for_a_slow_websocket_client() {
    let (seqs, _) = drop_policy(SlowClientPolicy::DropNewest);
    let prefix = seqs
        .iter()
        .enumerate()
        .take_while(|&(i, &seq)| i == seq)
        .count();
    assert!(
        prefix * (MSG_LEN + 2 + 64) > SLOW_QUEUE / 2,
        "gapless prefix of only {prefix} messages"
    );
}

/// A WebSocket client that floods and never reads is cut as slow by the relay of its own
/// large messages (`Relay::All`; 4 KiB or more are fanned out at once, while its frame is
/// being handled). It still gets its close frame, after whole frames only, and its
/// `Disconnected` is its last event.
#[test]
fn a_client_cut_by_its_own_relay_still_gets_close_4000() {
    const LEN: usize = 5000;
    let hub = mixed(
        Hub::builder()
            .relay(Relay::All)
            .queue_bytes(SLOW_QUEUE)
            .max_frame(8 * 1024)
            .linger(TIMEOUT),
    );
    let mut events = EventLog::subscribe(&hub);
    // Small buffers both ways: it cannot hide what it reads or writes in its kernel.
    let socket = util::client_socket(ws_addr(&hub), Some(TINY), Some(TINY));
    let peer = Peer::connect_socket(socket, ws_addr(&hub));
    let (mut flooder, id) = raw_join_with(peer, &hub, &mut events);
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let mut stream = flooder.stream.try_clone().expect("clone");
        let cut = Arc::clone(&cut);
        thread::spawn(move || {
            // Not UTF-8, so relayed in binary frames.
            let message = masked(BINARY, &[0xff; LEN]);
            let mut sent = 0;
            // Stops once the hub has cut it, so the hub reads all it wrote.
            while !cut.load(std::sync::atomic::Ordering::SeqCst) && sent < 10_000 {
                if stream.write_all(&message).is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        })
    };
    let mut messages = 0;
    loop {
        match events.next() {
            Event::Message { client, .. } if client == id => messages += 1,
            Event::Disconnected { client, reason, .. } if client == id => {
                assert_eq!(reason, DisconnectReason::Slow);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    cut.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(messages > 0);
    // The writer may be in a write when the hub cuts the client: the hub reads on, to
    // discard, so the write ends.
    let sent = writer.join().expect("writer");
    assert!(sent > messages, "sent {sent}, delivered {messages}");

    let (bytes, end) = flooder.read_to_end();
    assert_eq!(end, None, "closed with a reset");
    let mut frames = parse_stream(&bytes);
    let close = frames.pop().expect("frames");
    assert_eq!(close.close_code(), 4000, "the stream ends in {close:?}");
    assert!(frames
        .iter()
        .all(|f| *f == Frame::whole(BINARY, &[0xff; LEN])));
    assert!(frames.len() <= messages);
    hub.shutdown(TIMEOUT).expect("shutdown");
    let after = events.until_end();
    assert!(after.is_empty(), "events after its Disconnected: {after:?}");
    assert_stats_add_up(&hub, &[(DisconnectReason::Slow, 1)]);
}

// --------------------------------------------------------------------------- heartbeats

/// Heartbeats are ping frames (opcode 0x9, empty) for WebSocket clients and empty lines
/// for TCP clients; a pong and an empty line answer them, and neither is a message.
#[test]
fn heartbeats_are_ping_frames_on_websocket_and_empty_lines_on_tcp() {
    let hub = mixed(Hub::builder().heartbeat(Some(Duration::from_millis(200))));
    let mut events = EventLog::subscribe(&hub);
    let (mut nc, nc_id) = util::join(&hub, &mut events);
    let (mut ws, ws_id) = raw_join(&hub, &mut events);
    for _ in 0..3 {
        assert_eq!(read_frame(&mut ws), Frame::whole(PING, b""));
        ws.write(&masked(PONG, b""));
        assert_eq!(nc.read_line(), b"");
        nc.write(b"\n");
    }
    // Both answered in time, and still are clients.
    assert!(hub.client(nc_id).is_some() && hub.client(ws_id).is_some());
    events.drain();
    let (connected, other): (Vec<&Event>, _) = events
        .seen
        .iter()
        .partition(|e| matches!(e, Event::Connected { .. }));
    assert_eq!(
        (connected.len(), other),
        (2, vec![]),
        "answers are no messages"
    );
    assert_stats_add_up(&hub, &[]);
}

// -------------------------------------------------------------------------------- fan-out

/// A burst of 2,000 broadcasts reaches 50 WebSocket and 50 TCP clients complete, in
/// order, and each exactly once: framed once per wire kind, shared by all its clients.
#[test]
fn a_burst_reaches_50_websocket_and_50_tcp_clients_whole_and_in_order() {
    const EACH: usize = 50;
    const BURST: usize = 2_000;
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let tcp: Vec<Healthy> = (0..EACH)
        .map(|_| Healthy::join(&hub, &mut events, Framing::Lines))
        .collect();
    let ws: Vec<WsReader> = (0..EACH)
        .map(|_| {
            let (ws, id) = ws_join(&hub, &mut events);
            WsReader::spawn(ws, id)
        })
        .collect();
    broadcast_numbered(&hub, 0..BURST, MSG_LEN);
    for client in &tcp {
        client.expect_numbered(0..BURST, MSG_LEN);
    }
    for client in &ws {
        client.expect_numbered(0..BURST, MSG_LEN);
    }
    let out = (2 * EACH * BURST) as u64;
    events.wait_until("every frame counted", || hub.stats().frames_out >= out);
    let stats = hub.stats();
    assert_eq!((stats.frames_out, stats.dropped), (out, 0), "{stats:?}");
    assert_stats_add_up(&hub, &[]);
}

// -------------------------------------------------------------------------- random cuts

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random stream of client frames: `messages` data messages, text or binary, some
/// fragmented at random byte offsets (a character may be cut), pings on their own and
/// between fragments, each frame with its own random mask. Returns the wire, the
/// messages and the ping payloads, in order.
fn random_frames(rng: &mut Rng, messages: usize) -> (Vec<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    const CHARS: [char; 8] = ['a', 'z', ' ', '\n', 'é', '€', '中', '😀'];
    let (mut wire, mut sent, mut pings) = (Vec::new(), Vec::new(), Vec::new());
    let mut ping = |rng: &mut Rng, wire: &mut Vec<u8>| {
        let payload: Vec<u8> = (0..rng.below(126)).map(|_| rng.next() as u8).collect();
        wire.extend(masked(PING, &payload));
        pings.push(payload);
    };
    for _ in 0..messages {
        if rng.below(5) == 0 {
            ping(rng, &mut wire);
        }
        let text = rng.below(2) == 0;
        // Mostly short; now and then long enough for the 16- and 64-bit lengths.
        let len = match rng.below(20) {
            0 => 70_000 + rng.below(1000),
            1..=3 => 126 + rng.below(2000),
            _ => rng.below(126),
        };
        let payload: Vec<u8> = if text {
            let chars = (0..len / 2).map(|_| CHARS[rng.below(CHARS.len())]);
            chars.collect::<String>().into_bytes()
        } else {
            (0..len).map(|_| rng.next() as u8).collect()
        };
        let mut cuts: Vec<usize> = (0..rng.below(4))
            .map(|_| rng.below(payload.len() + 1))
            .collect();
        cuts.sort_unstable();
        cuts.push(payload.len());
        let mut start = 0;
        for (i, &end) in cuts.iter().enumerate() {
            let fin = i == cuts.len() - 1;
            let opcode = match (i, text) {
                (0, true) => TEXT,
                (0, false) => BINARY,
                _ => CONTINUATION,
            };
            let mask = (rng.next() as u32).to_be_bytes();
            wire.extend(client_frame(
                fin,
                0,
                opcode,
                &payload[start..end],
                Some(mask),
            ));
            if !fin && rng.below(3) == 0 {
                ping(rng, &mut wire);
            }
            start = end;
        }
        sent.push(payload);
    }
    (wire, sent, pings)
}

/// A client writes a long random sequence of frames in random-sized writes with
/// `TCP_NODELAY`, so the hub reads them cut at arbitrary bytes: header, mask, payload,
/// inside a character. The messages it decodes are exactly those sent, and each ping is
/// answered in order.
#[test]
fn frames_cut_at_random_boundaries_decode_to_the_same_messages() {
    // Random payloads have newlines: length-prefixed framing carries any bytes.
    let hub = mixed(
        Hub::builder()
            .framing(Framing::LengthPrefixed)
            .max_frame(1 << 20),
    );
    let mut events = EventLog::subscribe(&hub);
    let mut total = 0;
    for seed in 1..=6u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (mut raw, id) = raw_join(&hub, &mut events);
        raw.stream.set_nodelay(true).expect("TCP_NODELAY");
        let (wire, messages, pings) = random_frames(&mut rng, 120);
        let mut at = 0;
        while at < wire.len() {
            let most = if rng.below(8) == 0 { 4096 } else { 40 };
            let end = (at + 1 + rng.below(most)).min(wire.len());
            raw.write(&wire[at..end]);
            at = end;
        }
        let got: Vec<Vec<u8>> = events
            .messages(id, messages.len())
            .iter()
            .map(|m| m.to_vec())
            .collect();
        assert!(got == messages, "seed {seed}: the messages differ");
        for (i, ping) in pings.iter().enumerate() {
            let pong = read_frame(&mut raw);
            assert_eq!(pong, Frame::whole(PONG, ping), "seed {seed}, pong {i}");
        }
        raw.write(&close_frame(1000, b""));
        expect_close(&mut raw, 1000);
        assert_eq!(events.disconnected(id), DisconnectReason::PeerClosed);
        total += messages.len() as u64;
    }
    assert_eq!(hub.stats().frames_in, total);
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, 6)]);
}

// -------------------------------------------------------------------------------- wss

#[cfg(feature = "tls")]
mod wss {
    use super::*;
    use hubcast::rustls::StreamOwned;
    use hubcast::rustls::{self, pki_types::ServerName, ClientConfig, ClientConnection};

    /// A `wss://` client (rustls under tungstenite) and a TCP client talk through the hub,
    /// and both get its broadcasts in order.
    #[test]
    fn wss_clients_talk_with_tcp_clients() {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("self-signed");
        let hub = Hub::builder()
            .tls_pem(cert.pem(), key.serialize_pem())
            .transport(Transport::Tcp)
            .relay(Relay::Others)
            .listen(LOCAL, Transport::WebSocketTls)
            .bind(LOCAL)
            .expect("bind");
        let addrs = hub.local_addrs();
        assert_eq!(addrs[1].transport, Transport::WebSocketTls);
        let mut events = EventLog::subscribe(&hub);
        let (mut nc, nc_id) = util::join(&hub, &mut events);

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let sock = Peer::connect(addrs[1].addr).stream;
        let local = sock.local_addr().expect("local addr");
        let name = ServerName::try_from("localhost").expect("name");
        let conn = ClientConnection::new(Arc::new(config), name).expect("client connection");
        let url = format!("wss://localhost:{}/", addrs[1].addr.port());
        let (mut ws, _) =
            tungstenite::client::client(url, StreamOwned::new(conn, sock)).expect("wss handshake");
        let ws_id = events.connected(local);

        ws.send(Message::text("over wss")).expect("send");
        assert_eq!(events.expect_message(ws_id), b"over wss");
        assert_eq!(nc.read_line(), b"over wss");
        nc.write(b"over tcp\n");
        assert_eq!(events.expect_message(nc_id), b"over tcp");
        assert_eq!(text(&mut ws), "over tcp");
        broadcast_numbered(&hub, 0..100, MSG_LEN);
        for i in 0..100 {
            assert!(nc.read_line() == numbered(i, MSG_LEN), "nc: message {i}");
            assert!(
                text(&mut ws).as_bytes() == numbered(i, MSG_LEN),
                "wss: message {i}"
            );
        }
        ws.close(None).expect("close");
        assert!(matches!(next_message(&mut ws), Message::Close(None)));
        assert_eq!(events.disconnected(ws_id), DisconnectReason::PeerClosed);
        assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, 1)]);
    }
}

/// A WebSocket client cut for not reading the answers to its requests gets nothing after
/// its close frame (RFC 6455: no data frame after Close), however many it had asked for.
#[test]
fn a_client_cut_for_its_unread_answers_gets_nothing_after_its_close_frame() {
    let hub = mixed(
        Hub::builder()
            .protocol(Protocol::Sequenced)
            .queue_bytes(64 * 1024)
            .write_timeout(None),
    );
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) =
        raw_join_with(Peer::connect_rcvbuf(ws_addr(&hub), TINY), &hub, &mut events);
    let mut stream = peer.stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        // Each is answered `#noresume @xyzwv member 0 0` (no client topics here).
        let many = masked(TEXT, b"#resume @xyzwv 1 0").repeat(1000);
        (0..20).all(|_| stream.write_all(&many).is_ok())
    });
    assert_eq!(events.disconnected(id), DisconnectReason::Slow);
    let (bytes, _) = peer.read_to_end();
    let _ = writer.join();
    let frames = parse_stream(&bytes);
    let close = frames
        .iter()
        .position(|f| f.opcode == CLOSE)
        .expect("a close frame");
    assert_eq!(close, frames.len() - 1, "frames after the close frame");
}
