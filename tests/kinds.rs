//! Message kinds (text or binary) kept end to end for WebSocket clients: a WebSocket
//! client's message reaches the others (relay to all, to the others, to topics; replayed
//! by `#resume`) in a frame of the kind it came in; a host's `Message` goes in its kind
//! (broadcast, send_to, publish, …), whatever `websocket_binary` says; plain bytes and a
//! TCP client's messages, which have no kind, go as text when UTF-8 (unless
//! `websocket_binary`), else as binary. `Event::Message` says the kind: the opcode for
//! WebSocket clients, none for TCP ones.
//!
//! Every check reads the opcode of what a real client (tungstenite) receives: a binary
//! message that happens to be UTF-8 (empty, ASCII) must arrive binary.
#![cfg(feature = "websocket")]

mod util;

use hubcast::{Event, Hub, HubBuilder, Message, MessageKind, Protocol, Relay};
use tungstenite::Message as Ws;
use util::{mixed, next_message, per_wire, ws_join, EventLog, Peer, Wire};

/// What WebSocket clients send in the relay tests: the empty binary message, ASCII binary
/// (Autobahn's `*`s; a protobuf can be ASCII too), binary that is not UTF-8, text, empty
/// text, and a binary message too big for a batch (it travels as a frame of its own).
fn sent() -> Vec<Ws> {
    vec![
        Ws::binary(Vec::new()),
        Ws::binary(b"****".to_vec()),
        Ws::binary(vec![0xff, 0x00, 0xfe]),
        Ws::text("héllo"),
        Ws::text(""),
        Ws::binary(vec![b'*'; 8 * 1024]),
    ]
}

/// The kind `Event::Message` should give for what a WebSocket client sent.
fn kind_of(message: &Ws) -> Option<MessageKind> {
    match message {
        Ws::Text(_) => Some(MessageKind::Text),
        Ws::Binary(_) => Some(MessageKind::Binary),
        other => panic!("not a data message: {other:?}"),
    }
}

/// The next `Event::Message`'s payload and kind, which must be `from`'s.
fn message_event(events: &mut EventLog, from: hubcast::ClientId) -> (Vec<u8>, Option<MessageKind>) {
    match events.next() {
        Event::Message {
            client,
            payload,
            kind,
            ..
        } if client == from => (payload.to_vec(), kind),
        other => panic!("expected a Message from {from}, got {other:?}"),
    }
}

/// The hub relays with `relay`; alice and bob are WebSocket clients, and with
/// `Relay::Topics` both are in one topic. Every message alice sends reaches bob (and, with
/// `Relay::All`, alice herself) as she sent it, opcode included, and the event says its
/// kind.
fn relayed_messages_keep_their_kind(relay: Relay) {
    let hub = mixed(Hub::builder().relay(relay));
    let mut events = EventLog::subscribe(&hub);
    let (mut alice, alice_id) = ws_join(&hub, &mut events);
    let (mut bob, bob_id) = ws_join(&hub, &mut events);
    if relay == Relay::Topics {
        hub.join(alice_id, "room").unwrap();
        hub.join(bob_id, "room").unwrap();
    }
    for message in sent() {
        alice.send(message.clone()).unwrap();
        let (payload, kind) = message_event(&mut events, alice_id);
        assert_eq!(
            (&payload[..], kind),
            (&message.clone().into_data()[..], kind_of(&message))
        );
        assert_eq!(next_message(&mut bob), message, "{relay:?}");
        if relay == Relay::All {
            assert_eq!(next_message(&mut alice), message, "the sender's own copy");
        }
    }
}

#[test]
fn relay_all_keeps_kinds() {
    relayed_messages_keep_their_kind(Relay::All);
}

#[test]
fn relay_others_keeps_kinds() {
    relayed_messages_keep_their_kind(Relay::Others);
}

#[test]
fn relay_topics_keeps_kinds() {
    relayed_messages_keep_their_kind(Relay::Topics);
}

/// A TCP client's message has no kind: its event says so, and WebSocket clients get it as
/// text when it is UTF-8, as binary otherwise; with `websocket_binary`, as binary always.
#[test]
fn a_tcp_clients_messages_have_no_kind() {
    for always_binary in [false, true] {
        let hub = mixed(
            Hub::builder()
                .relay(Relay::Others)
                .websocket_binary(always_binary),
        );
        let mut events = EventLog::subscribe(&hub);
        let (mut nc, nc_id) = util::join(&hub, &mut events);
        let (mut ws, _) = ws_join(&hub, &mut events);
        for payload in ["plain".as_bytes(), &[0xff, 0xfe]] {
            nc.write(&util::frame(hubcast::Framing::Lines, payload));
            assert_eq!(message_event(&mut events, nc_id), (payload.to_vec(), None));
            let expected = match std::str::from_utf8(payload) {
                Ok(text) if !always_binary => Ws::text(text),
                _ => Ws::binary(payload.to_vec()),
            };
            assert_eq!(next_message(&mut ws), expected, "binary: {always_binary}");
        }
    }
}

/// A host message goes out in its kind through every sending method, explicit kinds
/// winning over `websocket_binary`, and plain bytes as before.
fn host_messages_go_as_their_kind(always_binary: bool) {
    let hub = mixed(Hub::builder().websocket_binary(always_binary));
    let mut events = EventLog::subscribe(&hub);
    let (mut alice, alice_id) = ws_join(&hub, &mut events);
    let (mut bob, bob_id) = ws_join(&hub, &mut events);
    hub.join(alice_id, "room").unwrap();
    hub.join(bob_id, "room").unwrap();
    // Plain bytes: guessed from the bytes, or binary under `websocket_binary`.
    let untyped = |text: &str| {
        if always_binary {
            Ws::binary(text.as_bytes().to_vec())
        } else {
            Ws::text(text)
        }
    };

    hub.broadcast(Message::binary(&b""[..])).unwrap();
    hub.try_broadcast(Message::binary(&b"**"[..])).unwrap();
    hub.broadcast(Message::text("text")).unwrap();
    hub.broadcast("plain").unwrap();
    // Too big for a batch: a frame of its own. Sent by reference, kept for the checks.
    let big = Message::binary(vec![b'*'; 8 * 1024]);
    hub.broadcast(&big).unwrap();
    for ws in [&mut alice, &mut bob] {
        assert_eq!(next_message(ws), Ws::binary(Vec::new()));
        assert_eq!(next_message(ws), Ws::binary(b"**".to_vec()));
        assert_eq!(next_message(ws), Ws::text("text"));
        assert_eq!(next_message(ws), untyped("plain"));
        assert_eq!(next_message(ws), Ws::binary(big.payload().to_vec()));
    }

    hub.broadcast_except(alice_id, Message::binary(&b"not alice"[..]))
        .unwrap();
    hub.send_to(alice_id, Message::binary(&b"to alice"[..]))
        .unwrap();
    hub.send_to(alice_id, Message::text("text to alice"))
        .unwrap();
    hub.publish("room", Message::binary(&b"published"[..]))
        .unwrap();
    hub.publish_except("room", bob_id, Message::text("not bob"))
        .unwrap();
    hub.publish("room", "plain published").unwrap();
    assert_eq!(next_message(&mut bob), Ws::binary(b"not alice".to_vec()));
    assert_eq!(next_message(&mut alice), Ws::binary(b"to alice".to_vec()));
    assert_eq!(next_message(&mut alice), Ws::text("text to alice"));
    for ws in [&mut alice, &mut bob] {
        assert_eq!(next_message(ws), Ws::binary(b"published".to_vec()));
    }
    assert_eq!(next_message(&mut alice), Ws::text("not bob"));
    for ws in [&mut alice, &mut bob] {
        assert_eq!(next_message(ws), untyped("plain published"));
    }
}

#[test]
fn host_messages_go_as_their_kind_by_default() {
    host_messages_go_as_their_kind(false);
}

#[test]
fn explicit_kinds_win_over_websocket_binary() {
    host_messages_go_as_their_kind(true);
}

/// TCP clients get a `Message`'s bytes alone, as any other message.
#[test]
fn tcp_clients_get_the_bytes_of_a_message() {
    let hub = mixed(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (mut nc, _) = util::join(&hub, &mut events);
    hub.broadcast(Message::binary(&b"bin"[..])).unwrap();
    hub.broadcast(Message::text("txt")).unwrap();
    assert_eq!(nc.read_line(), b"bin");
    assert_eq!(nc.read_line(), b"txt");
}

/// The `#at * <epoch> <seq>` a new client gets first (`Protocol::Sequenced`): the epoch.
fn epoch_of_at(ws: &mut util::Ws) -> String {
    let at = next_message(ws).into_text().expect("#at is text");
    assert!(at.starts_with("#at * "), "{at}");
    at.split(' ')
        .nth(2)
        .expect("#at * <epoch> <seq>")
        .to_owned()
}

/// With `Protocol::Sequenced`, numbered messages keep their kind live, and a `#resume`
/// replays each in the kind it first went out in, whoever sent it: a WebSocket client
/// (relayed), the host with a kind, the host with plain bytes. Direct messages too.
#[test]
fn numbered_and_replayed_messages_keep_their_kind() {
    let hub = mixed(
        HubBuilder::new()
            .protocol(Protocol::Sequenced)
            .relay(Relay::Others),
    );
    let mut events = EventLog::subscribe(&hub);
    let (mut alice, alice_id) = ws_join(&hub, &mut events);
    let (mut bob, bob_id) = ws_join(&hub, &mut events);
    let epoch = epoch_of_at(&mut alice);
    assert_eq!(epoch_of_at(&mut bob), epoch);

    // 1 and 2 from alice, 3 to 5 from the host.
    alice.send(Ws::binary(Vec::new())).unwrap();
    alice.send(Ws::binary(b"**".to_vec())).unwrap();
    for _ in 0..2 {
        message_event(&mut events, alice_id);
    }
    hub.broadcast(Message::binary(&b"#"[..])).unwrap();
    hub.broadcast(Message::text("t")).unwrap();
    hub.broadcast("p").unwrap();
    let expected = [
        Ws::binary(b"1 ".to_vec()),
        Ws::binary(b"2 **".to_vec()),
        Ws::binary(b"3 #".to_vec()),
        Ws::text("4 t"),
        Ws::text("5 p"),
    ];
    for message in &expected {
        assert_eq!(&next_message(&mut bob), message, "live");
    }
    // Alice's own messages come back as `#own` markers, which are text.
    for seq in [1, 2] {
        assert_eq!(next_message(&mut alice), Ws::text(format!("#own * {seq}")));
    }
    for message in &expected[2..] {
        assert_eq!(&next_message(&mut alice), message, "live");
    }

    // A client that comes later resumes from the start: the ring replays all five.
    let (mut carol, _) = ws_join(&hub, &mut events);
    assert_eq!(epoch_of_at(&mut carol), epoch);
    carol
        .send(Ws::text(format!("#resume * {epoch} 0")))
        .unwrap();
    assert_eq!(
        next_message(&mut carol),
        Ws::text(format!("#resumed * {epoch} 1 5"))
    );
    for message in &expected {
        assert_eq!(&next_message(&mut carol), message, "replayed");
    }

    // Direct messages are numbered `- ` and keep their kind.
    hub.send_to(bob_id, Message::binary(&b"d"[..])).unwrap();
    hub.send_to(bob_id, Message::text("e")).unwrap();
    assert_eq!(next_message(&mut bob), Ws::binary(b"- d".to_vec()));
    assert_eq!(next_message(&mut bob), Ws::text("- e"));
}

/// A topic's ring keeps each message's kind too: a member who joins later and resumes the
/// topic from its start gets the relayed binary message and the host's binary publish as
/// binary.
#[test]
fn a_topic_replay_keeps_kinds() {
    let hub = mixed(
        HubBuilder::new()
            .protocol(Protocol::Sequenced)
            .relay(Relay::Topics),
    );
    let mut events = EventLog::subscribe(&hub);
    let (mut alice, alice_id) = ws_join(&hub, &mut events);
    let (mut bob, bob_id) = ws_join(&hub, &mut events);
    epoch_of_at(&mut alice);
    epoch_of_at(&mut bob);
    hub.join(alice_id, "room").unwrap();
    hub.join(bob_id, "room").unwrap();
    let epoch = epoch_of_joined(&mut bob);

    alice.send(Ws::binary(b"ab".to_vec())).unwrap();
    message_event(&mut events, alice_id);
    hub.publish("room", Message::binary(&b"cd"[..])).unwrap();
    hub.publish("room", "ef").unwrap();
    let expected = [
        Ws::binary(b"1@room ab".to_vec()),
        Ws::binary(b"2@room cd".to_vec()),
        Ws::text("3@room ef"),
    ];
    for message in &expected {
        assert_eq!(&next_message(&mut bob), message, "live");
    }
    let (mut carol, carol_id) = ws_join(&hub, &mut events);
    epoch_of_at(&mut carol);
    hub.join(carol_id, "room").unwrap();
    assert_eq!(epoch_of_joined(&mut carol), epoch);
    carol
        .send(Ws::text(format!("#resume @room {epoch} 0")))
        .unwrap();
    assert_eq!(
        next_message(&mut carol),
        Ws::text(format!("#resumed @room {epoch} 1 3"))
    );
    for message in &expected {
        assert_eq!(&next_message(&mut carol), message, "replayed");
    }
}

/// The `#joined @room <epoch> <seq>` a client gets once put in `room`: the epoch.
fn epoch_of_joined(ws: &mut util::Ws) -> String {
    let joined = next_message(ws).into_text().expect("#joined is text");
    joined
        .strip_prefix("#joined @room ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("expected #joined @room, got {joined}"))
        .to_owned()
}

/// A peer on TCP is unaffected by kinds: it gets what WebSocket clients send, byte for
/// byte.
#[test]
fn tcp_clients_get_websocket_messages_byte_for_byte() {
    let hub = mixed(Hub::builder().relay(Relay::Others));
    let mut events = EventLog::subscribe(&hub);
    let (mut ws, _) = ws_join(&hub, &mut events);
    let mut nc = Peer::connect(hub.local_addr());
    events.expect_connected();
    ws.send(Ws::binary(b"**".to_vec())).unwrap();
    ws.send(Ws::text("t")).unwrap();
    assert_eq!(nc.read_line(), b"**");
    assert_eq!(nc.read_line(), b"t");
}

/// `Event::Message`'s kind on every wire: the opcode from a WebSocket client (the test
/// client sends UTF-8 as text, anything else as binary), none from a TCP client.
fn event_kind(wire: Wire) {
    let hub = wire.bind(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (mut client, id) = wire.join(&hub, &mut events);
    for (payload, websocket_kind) in [
        (&b"text"[..], MessageKind::Text),
        (&[0xff, 0x01][..], MessageKind::Binary),
    ] {
        client.send(payload);
        let kind = wire.is_websocket().then_some(websocket_kind);
        assert_eq!(message_event(&mut events, id), (payload.to_vec(), kind));
    }
}

per_wire!(event_kind);
