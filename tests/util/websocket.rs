//! WebSocket clients (feature `websocket`): tungstenite's client, and raw WebSocket on a
//! [`Peer`] for what a real client cannot do on purpose (a frame without a mask, a request
//! that never ends, a client that never reads). The raw helpers write masked client frames
//! byte by byte and parse the hub's frames, checking that every frame the hub sends is
//! whole, unmasked and without reserved bits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use hubcast::{ClientId, DisconnectReason, Event, Hub, HubBuilder, Transport};
use socket2::Socket;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame as WsFrame};
use tungstenite::{Message, WebSocket};

use super::{EventLog, Peer, LOCAL};

pub(crate) type Ws = WebSocket<TcpStream>;

/// The close frame a WebSocket client leaving for `reason` is sent: its code (RFC 6455's
/// where there is one, else one of the 4000 range, which is for applications) and, as its
/// reason, the reason's text. Fails the test for reasons no close frame can be sent for.
pub(crate) fn close_for(reason: DisconnectReason) -> (u16, &'static str) {
    match reason {
        DisconnectReason::Slow => (4000, "too slow to read"),
        DisconnectReason::Kicked => (4001, "disconnected by host"),
        DisconnectReason::Unresponsive => (4002, "missed heartbeats"),
        DisconnectReason::Shutdown => (1001, "hub shut down"),
        DisconnectReason::Idle => (1001, "idle too long"),
        DisconnectReason::FrameTooLarge => (1009, "frame too large"),
        DisconnectReason::Protocol => (1002, "protocol violation"),
        DisconnectReason::RateLimited => (1008, "sent too fast (rate limit)"),
        other => panic!("no close frame is sent for {other:?}"),
    }
}

/// Asserts that a message from the hub came in the kind of frame the hub picks for its
/// payload by default (`websocket_binary` off): text for UTF-8, binary otherwise.
pub(crate) fn assert_kind(text: bool, payload: &[u8]) {
    let utf8 = std::str::from_utf8(payload).is_ok();
    assert_eq!(
        text,
        utf8,
        "a {} message for {}: {:?}",
        if text { "text" } else { "binary" },
        if utf8 {
            "UTF-8"
        } else {
            "bytes that are not UTF-8"
        },
        String::from_utf8_lossy(&payload[..payload.len().min(64)])
    );
}

// ------------------------------------------------------------------- tungstenite clients

/// Connects a WebSocket client with tungstenite on a socket from
/// [`client_socket`](super::client_socket) (path `/`, no Origin).
pub(crate) fn ws_connect_socket(socket: Socket, addr: SocketAddr) -> Ws {
    let stream = Peer::connect_socket(socket, addr).stream;
    let (ws, _) = tungstenite::client::client(format!("ws://{addr}/"), stream)
        .unwrap_or_else(|err| panic!("WebSocket handshake with {addr}: {err}"));
    ws
}

/// Connects a WebSocket client to `addr` (path `/`, no Origin).
pub(crate) fn ws_connect(addr: SocketAddr) -> Ws {
    ws_connect_socket(super::client_socket(addr, None, None), addr)
}

/// Connects a WebSocket client and waits for its `Connected` event.
pub(crate) fn ws_join(hub: &Hub, events: &mut EventLog) -> (Ws, ClientId) {
    let ws = ws_connect(ws_addr(hub));
    let id = events.connected(ws.get_ref().local_addr().expect("local addr"));
    (ws, id)
}

/// A hub with a TCP listener (the first address) and a WebSocket one (the second).
pub(crate) fn mixed(builder: HubBuilder) -> Hub {
    builder
        .listen(LOCAL, Transport::WebSocket)
        .bind(LOCAL)
        .expect("bind")
}

/// The WebSocket address of a [`mixed`] hub.
pub(crate) fn ws_addr(hub: &Hub) -> SocketAddr {
    let listener = hub.local_addrs()[1];
    assert_eq!(listener.transport, Transport::WebSocket, "{listener:?}");
    listener.addr
}

/// The next data or close message; answers nothing else (tungstenite answers pings by
/// itself).
pub(crate) fn next_message<S: Read + Write>(ws: &mut WebSocket<S>) -> Message {
    loop {
        let msg = ws.read().expect("a message");
        if let Message::Text(_) | Message::Binary(_) | Message::Close(_) = msg {
            return msg;
        }
    }
}

/// The next message, which must be text.
pub(crate) fn text<S: Read + Write>(ws: &mut WebSocket<S>) -> String {
    match next_message(ws) {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads the hub's close frame (nothing else may come first) and returns its code and
/// reason.
pub(crate) fn close_of<S: Read + Write>(ws: &mut WebSocket<S>) -> (u16, String) {
    match next_message(ws) {
        Message::Close(Some(CloseFrame { code, reason })) => (u16::from(code), reason.to_string()),
        other => panic!("expected a close frame with a code, got {other:?}"),
    }
}

/// Sends one message as these fragments, with tungstenite's raw frames (masked by it).
pub(crate) fn send_fragments(ws: &mut Ws, first: Data, fragments: &[&[u8]]) {
    let last = fragments.len() - 1;
    for (i, fragment) in fragments.iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { first } else { Data::Continue });
        let frame = WsFrame::message(fragment.to_vec(), opcode, i == last);
        ws.write(Message::Frame(frame)).expect("write a fragment");
    }
    ws.flush().expect("flush");
}

// ------------------------------------------------------------------------ raw WebSocket

/// The opcodes of RFC 6455 section 5.2.
pub(crate) const CONTINUATION: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;

/// The mask of the raw client's frames: no byte is zero, so an unmasking bug shows.
pub(crate) const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The key and accept value of RFC 6455 section 1.3.
pub(crate) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub(crate) const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A response head longer than this is a hub bug, not something to wait for.
pub(crate) const MAX_RESPONSE_HEAD: usize = 4096;

/// A client frame with every field under the test's control, so that it can be wrong:
/// `rsv` is the three reserved bits (4 = RSV1, 2 = RSV2, 1 = RSV3), `mask` `None` for an
/// unmasked frame. The length takes the shortest form, as RFC 6455 requires.
pub(crate) fn client_frame(
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut out = frame_header(fin, rsv, opcode, payload.len(), mask);
    match mask {
        Some(mask) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4])),
        None => out.extend_from_slice(payload),
    }
    out
}

/// The header of a [`client_frame`] of `len` bytes, mask included: what comes before its
/// payload.
pub(crate) fn frame_header(
    fin: bool,
    rsv: u8,
    opcode: u8,
    len: usize,
    mask: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | (rsv & 7) << 4 | (opcode & 0x0f)];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match len {
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
    out.extend(mask.iter().flatten());
    out
}

/// A whole, masked client frame.
pub(crate) fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(true, 0, opcode, payload, Some(MASK))
}

/// A fragment of a message: `opcode` for the first, `CONTINUATION` for the others.
pub(crate) fn fragment(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    client_frame(fin, 0, opcode, payload, Some(MASK))
}

/// A masked close frame with this code and reason.
pub(crate) fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    masked(CLOSE, &[&code.to_be_bytes()[..], reason].concat())
}

/// A frame from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    pub(crate) payload: Vec<u8>,
}

impl Frame {
    /// A whole, final frame.
    pub(crate) fn whole(opcode: u8, payload: &[u8]) -> Frame {
        Frame {
            fin: true,
            opcode,
            payload: payload.to_vec(),
        }
    }

    /// The code of a close frame; fails the test for anything else.
    pub(crate) fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        assert!(self.fin, "a fragmented close frame: {self:?}");
        let code = self.payload.get(..2).expect("a close frame without a code");
        u16::from_be_bytes([code[0], code[1]])
    }

    /// The reason of a close frame, which must be UTF-8.
    pub(crate) fn close_reason(&self) -> String {
        self.close_code();
        String::from_utf8(self.payload[2..].to_vec()).expect("a UTF-8 close reason")
    }
}

/// The server frame at the front of `bytes` and its length, or `None` if it is not all
/// there. Fails the test for what no server frame may have: a mask or a reserved bit.
pub(crate) fn parse_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
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
pub(crate) fn parse_stream(bytes: &[u8]) -> Vec<Frame> {
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
pub(crate) fn read_frame(peer: &mut Peer) -> Frame {
    read_frame_or_end(peer)
        .unwrap_or_else(|end| panic!("the stream ended ({end:?}) before a frame"))
}

/// The next frame from the hub, or how the stream ended if it ends before the frame
/// begins: `None` for a clean end of stream, else the error (a reset). A frame torn by
/// the end of the stream fails the test.
pub(crate) fn read_frame_or_end(peer: &mut Peer) -> Result<Frame, Option<std::io::ErrorKind>> {
    let mut bytes = peer.read_exact_or_end(2)?;
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
    Ok(frame)
}

/// Reads the hub's close frame, which must come next, then the end of the stream (a FIN:
/// the hub closes cleanly after its close frame). Returns the frame.
pub(crate) fn expect_close(peer: &mut Peer, code: u16) -> Frame {
    let frame = read_frame(peer);
    assert_eq!(frame.close_code(), code, "{frame:?}");
    peer.expect_fin();
    frame
}

/// An HTTP response head (and body, if read to the end).
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// Parses a head that ends in `\r\n\r\n`.
    pub(crate) fn parse(head: &[u8], body: Vec<u8>) -> Response {
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
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
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
    pub(crate) fn assert_switching(&self) {
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
pub(crate) fn request(path: &str, host: &str, omit: &[&str], extra: &[&str]) -> String {
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
pub(crate) fn valid_request(hub: &Hub) -> String {
    request("/", &ws_addr(hub).to_string(), &[], &[])
}

/// Reads a response head, up to and including its blank line, leaving what follows (the
/// first frames) in `peer`'s buffer.
pub(crate) fn read_head(peer: &mut Peer) -> Response {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < MAX_RESPONSE_HEAD, "no end of head: {head:?}");
        head.extend(peer.read_exact(1));
    }
    Response::parse(&head, Vec::new())
}

/// Sends `request` on a new connection from `peer`; returns the response head.
pub(crate) fn send_request(peer: &mut Peer, request: &str) -> Response {
    peer.write(request.as_bytes());
    read_head(peer)
}

/// A raw WebSocket client, upgraded (the answer checked).
pub(crate) fn raw_upgraded(hub: &Hub) -> Peer {
    let mut peer = Peer::connect(ws_addr(hub));
    send_request(&mut peer, &valid_request(hub)).assert_switching();
    peer
}

/// A raw WebSocket client, upgraded, with its `Connected` event.
pub(crate) fn raw_join(hub: &Hub, events: &mut EventLog) -> (Peer, ClientId) {
    raw_join_with(Peer::connect(ws_addr(hub)), hub, events)
}

/// A raw WebSocket client of the WebSocket listener at `addr`, connected from `socket`
/// (see [`client_socket`](super::client_socket)) and upgraded (the answer checked).
pub(crate) fn raw_connect_socket(socket: Socket, addr: SocketAddr) -> Peer {
    let mut peer = Peer::connect_socket(socket, addr);
    let request = request("/", &addr.to_string(), &[], &[]);
    send_request(&mut peer, &request).assert_switching();
    peer
}

/// [`raw_join`] on a connection made with other buffer sizes.
pub(crate) fn raw_join_with(mut peer: Peer, hub: &Hub, events: &mut EventLog) -> (Peer, ClientId) {
    send_request(&mut peer, &valid_request(hub)).assert_switching();
    let id = events.connected(peer.addr());
    (peer, id)
}

/// Sends `request`, which the hub must refuse: returns the whole answer (head and body)
/// and the client's address, once the hub has closed the connection cleanly.
pub(crate) fn refused(addr: SocketAddr, request: &str) -> (Response, SocketAddr) {
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
pub(crate) fn first_connected(events: &mut EventLog, addr: SocketAddr) -> ClientId {
    match events.next() {
        Event::Connected {
            client, addr: a, ..
        } if a == addr => client,
        other => panic!("expected {addr} to be the first to connect, got {other:?}"),
    }
}
