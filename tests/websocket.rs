//! WebSocket clients (feature `websocket`) beside TCP clients, driven by tungstenite's
//! client: relay both ways, the handshake's refusals, the authenticator seeing the request,
//! protocol duties (ping, close codes, fragments, limits), wss.
//!
//! Where a real client cannot misbehave on purpose (a frame without a mask, a request that
//! never ends), the tests speak raw WebSocket on a `Peer`, with the helpers of
//! `util::websocket`, which check that every frame the hub sends is whole, unmasked and
//! without reserved bits. What applies to every wire (slow clients under each policy, close
//! reasons and their close codes, heartbeats, idle clients, `max_frame`, a panicking
//! authenticator) is written once for all of them, in the files of those subjects.
#![cfg(feature = "websocket")]

mod util;

use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hubcast::{Auth, DisconnectReason, Event, Framing, Hub, Origins, Protocol, Relay};
use tungstenite::protocol::frame::coding::{CloseCode, Data};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::{Bytes, ClientRequestBuilder, Message};
use util::{
    assert_counters, assert_stats_add_up, broadcast_numbered, client_frame, close_frame, close_of,
    expect_close, first_connected, fragment, masked, mixed, next_message, raw_join, raw_upgraded,
    read_frame, read_head, refused, request, send_fragments, send_request, tag_seq_of, tagged,
    text, valid_request, ws_addr, ws_connect, ws_join, Counter, EventLog, Frame, Healthy, Peer,
    Wire, BINARY, CLOSE, CONTINUATION, MASK, MSG_LEN, PING, PONG, ROOMY, TEXT,
};

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
    assert_counters(
        &hub,
        &[
            (Counter::FramesIn, total),
            (Counter::FramesOut, out),
            (Counter::Connected, senders as u64),
        ],
    );
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

/// The kind of frame a WebSocket client is sent a message without a kind in (the host's
/// plain bytes, a TCP client's message) is decided by the payload: text for UTF-8 and
/// binary otherwise, or binary always with `websocket_binary(true)`. A WebSocket client's
/// message keeps its kind, whatever the setting (`tests/kinds.rs` has every path).
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
    // From a WebSocket client: each message reaches the others in its own kind (a binary
    // message that is UTF-8 stays binary, a text message stays text).
    for (message, payload) in [
        (Message::binary(utf8.to_vec()), utf8),
        (Message::binary(not_utf8.to_vec()), not_utf8),
        (Message::text("ünïcode"), "ünïcode".as_bytes()),
    ] {
        alice.send(message.clone()).unwrap();
        assert_eq!(events.expect_message(alice_id), payload);
        assert_eq!(next_message(&mut bob), message);
        assert_eq!(nc.read_line(), payload);
    }
    // From a TCP client.
    for payload in [utf8, not_utf8] {
        nc.write(&util::frame(Framing::Lines, payload));
        assert_eq!(events.expect_message(nc_id), payload);
        assert_eq!(next_message(&mut alice), kind(payload));
        assert_eq!(next_message(&mut bob), kind(payload));
    }
    assert_counters(&hub, &[(Counter::Connected, 3)]);
    assert_stats_add_up(&hub, &[]);
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
    assert_counters(&hub, &[(Counter::FramesIn, 0), (Counter::Accepted, 2)]);
}

// -------------------------------------------------------------------------- close codes

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
    assert_counters(&hub, &[(Counter::FramesIn, 0)]);
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
    assert_counters(
        &hub,
        &[(Counter::HandshakeFailed, 2), (Counter::Accepted, 1)],
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
    assert_counters(
        &hub,
        &[
            (Counter::HandshakeFailed, requests.len() as u64),
            (Counter::Accepted, 1),
            (Counter::Rejected, 0),
        ],
    );
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
    assert_counters(
        &hub,
        &[(Counter::HandshakeFailed, 4), (Counter::Accepted, 1)],
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
    assert_counters(
        &hub,
        &[(Counter::HandshakeFailed, 3), (Counter::Accepted, 2)],
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
    assert_counters(
        &listed,
        &[(Counter::HandshakeFailed, 3), (Counter::Accepted, 2)],
    );
    assert_counters(
        &any,
        &[(Counter::HandshakeFailed, 0), (Counter::Accepted, 2)],
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
    assert_counters(
        &hub,
        &[(Counter::HandshakeFailed, 2), (Counter::Accepted, 1)],
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
    assert_counters(
        &hub,
        &[(Counter::HandshakeFailed, 1), (Counter::Accepted, 1)],
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
    assert_counters(
        &hub,
        &[(Counter::HandshakeFailed, 0), (Counter::Accepted, 1)],
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
/// first frame (dave). (Its panics, on every wire, are in `tests/failures.rs`.)
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
    assert_counters(&hub, &[(Counter::Accepted, 4), (Counter::Rejected, 0)]);
}

/// `Reject` answers 403 with its reason and never makes a client, on WebSocket as on TCP;
/// the hub serves on.
#[test]
fn a_rejected_upgrade_is_403_and_never_connected() {
    let (hub, shown) = auth_hub();
    let mut events = EventLog::subscribe(&hub);
    let host = ws_addr(&hub).to_string();
    let (response, _) = refused(ws_addr(&hub), &request("/feed", &host, &[], &[]));
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.body, b"rejected by the authenticator\n");
    assert_eq!(hub.stats().rejected, 1);
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
    assert_eq!(shown.lock().unwrap().len(), 3);
    assert_counters(
        &hub,
        &[
            (Counter::Accepted, 1),
            (Counter::Rejected, 2),
            (Counter::HandshakeFailed, 0),
            (Counter::CallbackPanics, 0),
        ],
    );
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
    let ws: Vec<Healthy> = (0..EACH)
        .map(|_| Healthy::join_wire(&hub, &mut events, Wire::WebSocket))
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
    assert_counters(&hub, &[(Counter::FramesOut, out), (Counter::Dropped, 0)]);
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
    use hubcast::Transport;
    use util::{certificate, client_config, numbered, tls_connect, LOCAL};

    /// A `wss://` client (rustls under tungstenite) and a TCP client talk through the hub,
    /// and both get its broadcasts in order.
    #[test]
    fn wss_clients_talk_with_tcp_clients() {
        let cert = certificate(false);
        let hub = Hub::builder()
            .tls_pem(cert.cert_pem.clone(), cert.key_pem.clone())
            .transport(Transport::Tcp)
            .relay(Relay::Others)
            .listen(LOCAL, Transport::WebSocketTls)
            .bind(LOCAL)
            .expect("bind");
        let addrs = hub.local_addrs();
        assert_eq!(addrs[1].transport, Transport::WebSocketTls);
        let mut events = EventLog::subscribe(&hub);
        let (mut nc, nc_id) = util::join(&hub, &mut events);

        let tls = tls_connect(addrs[1].addr, client_config(Some(&cert)));
        let local = tls.sock.local_addr().expect("local addr");
        let url = format!("wss://localhost:{}/", addrs[1].addr.port());
        let (mut ws, _) = tungstenite::client::client(url, tls).expect("wss handshake");
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
