//! Limits that protect the hub: max_clients, max_frame (for every wire), queue_bytes, and
//! configuration checks.

mod util;

use hubcast::{DisconnectReason, Error, Framing, Hub};
use util::{
    assert_counters, assert_stats_add_up, broadcast_numbered, healthy_beside, healthy_still_served,
    join, numbered, per_wire, Counter, EventLog, Peer, Wire, LOCAL, MSG_LEN,
};

#[test]
fn connection_over_max_clients_is_closed_and_counted() {
    let hub = Hub::builder().max_clients(2).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (a, a_id) = join(&hub, &mut events);
    let (mut b, b_id) = join(&hub, &mut events);

    let mut extra = Peer::connect(hub.local_addr());
    extra.expect_closed();
    assert_counters(
        &hub,
        &[
            (Counter::Refused, 1),
            (Counter::Accepted, 2),
            (Counter::Connected, 2),
        ],
    );
    assert_eq!(hub.clients().len(), 2);

    // The refused connection made no event: the next one is a's leaving. Then there is
    // room again.
    drop(a);
    assert_eq!(
        events.expect_disconnected(a_id),
        DisconnectReason::PeerClosed
    );
    let (mut c, c_id) = join(&hub, &mut events);
    assert!(c_id > b_id);
    hub.broadcast("room for two").unwrap();
    assert_eq!(b.read_line(), b"room for two");
    assert_eq!(c.read_line(), b"room for two");
    assert_eq!(hub.stats().refused, 1);
}

/// A message of exactly `max_frame` bytes is accepted; one byte more is `FrameTooLarge`
/// and the connection is closed (on WebSocket with 1009, "frame too large"), while two
/// healthy clients are served throughout:
/// - a too-long line is refused as soon as its byte `max_frame + 1` arrives, before any
///   newline, even when it comes in many small writes;
/// - a length prefix or a WebSocket frame's header over the limit is refused before any
///   payload arrives, whether one over, 64 KiB and more (WebSocket's 64-bit length), 1 GiB
///   (the hub must not wait for or allocate the payload) or `u32::MAX` (no overflow).
fn max_frame_is_accepted_and_one_more_is_too_large(wire: Wire) {
    const MAX: usize = 1000;
    let hub = wire.bind(Hub::builder().max_frame(MAX));
    let mut events = EventLog::subscribe(&hub);
    let healthy = healthy_beside(&hub, &mut events, wire);
    let (mut exact, exact_id) = wire.join(&hub, &mut events);

    exact.send(&[b'a'; MAX]);
    let mut accepted = vec![vec![b'a'; MAX]];
    if wire == Wire::Lines {
        // "\r\n" is framing, not payload: still exactly MAX.
        let mut crlf = vec![b'b'; MAX];
        crlf.extend_from_slice(b"\r\n");
        exact.write(&crlf);
        accepted.push(vec![b'b'; MAX]);
    }
    assert_eq!(events.messages(exact_id, accepted.len()), accepted);
    broadcast_numbered(&hub, 0..10, MSG_LEN);
    for client in &healthy {
        client.expect_numbered(0..10, MSG_LEN);
    }
    for i in 0..10 {
        assert_eq!(exact.read_message(), numbered(i, MSG_LEN));
    }

    // One byte over: a whole line; the prefix or header alone, where there is one.
    match wire.header_of(MAX + 1) {
        Some(header) => exact.write(&header),
        None => exact.send(&[b'c'; MAX + 1]),
    }
    assert_eq!(
        events.disconnected(exact_id),
        DisconnectReason::FrameTooLarge
    );
    assert_eq!(events.messages_from(exact_id).len(), accepted.len());
    exact.expect_close(DisconnectReason::FrameTooLarge);

    // Over the limit without a delimiter, or with a huge length and no payload.
    let floods: Vec<Vec<u8>> = match wire {
        Wire::Lines => vec![vec![b'd'; MAX + 1]],
        _ => [70_000, 1 << 30, u32::MAX as usize]
            .into_iter()
            .filter_map(|len| wire.header_of(len))
            .collect(),
    };
    for flood in &floods {
        let (mut flooder, id) = wire.join(&hub, &mut events);
        // In small writes, so the line spans many reads. The hub can only decide once the
        // last byte is in, so every write succeeds.
        for part in flood.chunks(10) {
            flooder.write(part);
        }
        assert_eq!(events.disconnected(id), DisconnectReason::FrameTooLarge);
        assert!(events.messages_from(id).is_empty());
        flooder.expect_close(DisconnectReason::FrameTooLarge);
    }

    healthy_still_served(&hub, &healthy, 10);
    let too_large = 1 + floods.len() as u64;
    assert_stats_add_up(&hub, &[(DisconnectReason::FrameTooLarge, too_large)]);
}

per_wire!(max_frame_is_accepted_and_one_more_is_too_large);

#[test]
fn message_larger_than_queue_bytes_is_refused() {
    let hub = Hub::builder().queue_bytes(1024).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);

    // Lines add a newline: 1023 bytes frame to 1024, the bound.
    hub.broadcast([b'a'; 1023]).unwrap();
    match hub.broadcast([b'b'; 1024]) {
        Err(Error::MessageTooLarge { len, max }) => assert_eq!((len, max), (1025, 1024)),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert!(matches!(
        hub.send_to(id, [b'c'; 2000]),
        Err(Error::MessageTooLarge { .. })
    ));
    assert!(matches!(
        hub.broadcast_except(id, [b'd'; 2000]),
        Err(Error::MessageTooLarge { .. })
    ));
    // A message that already ends with a newline gets none added.
    let mut exact = vec![b'e'; 1023];
    exact.push(b'\n');
    hub.broadcast(&exact).unwrap();

    assert_eq!(peer.read_line(), [b'a'; 1023]);
    assert_eq!(peer.read_line(), [b'e'; 1023]);
    hub.broadcast("still working").unwrap();
    assert_eq!(peer.read_line(), b"still working");
}

#[test]
fn length_prefixed_message_larger_than_queue_bytes_is_refused() {
    let hub = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .queue_bytes(1024)
        .bind(LOCAL)
        .unwrap();
    hub.broadcast([0u8; 1020]).unwrap();
    match hub.broadcast([0u8; 1021]) {
        Err(Error::MessageTooLarge { len, max }) => assert_eq!((len, max), (1025, 1024)),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
}

#[test]
fn out_of_range_settings_are_config_errors() {
    let cases = [
        ("max_frame", Hub::builder().max_frame(0)),
        ("queue_bytes", Hub::builder().queue_bytes(0)),
        ("max_clients", Hub::builder().max_clients(0)),
        ("event_capacity", Hub::builder().event_capacity(0)),
        ("command_capacity", Hub::builder().command_capacity(0)),
        ("send_buffer", Hub::builder().send_buffer(Some(0))),
    ];
    for (name, builder) in cases {
        match builder.bind(LOCAL) {
            Err(Error::Config(msg)) => assert!(msg.contains(name), "{name}: {msg}"),
            other => panic!("{name}: expected Error::Config, got {other:?}"),
        }
    }
}

#[test]
fn binding_an_address_in_use_is_a_bind_error() {
    let taken = std::net::TcpListener::bind(LOCAL).unwrap();
    let addr = taken.local_addr().unwrap();
    match Hub::bind(addr) {
        Err(err @ Error::Bind { .. }) => assert!(std::error::Error::source(&err).is_some()),
        other => panic!("expected Error::Bind, got {other:?}"),
    }
}

#[test]
fn smallest_settings_still_work() {
    let hub = Hub::builder()
        .event_capacity(1)
        .command_capacity(1)
        .max_clients(1)
        .send_buffer(Some(1))
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    for i in 0..100 {
        hub.broadcast(format!("{i}")).unwrap();
    }
    for i in 0..100 {
        assert_eq!(peer.read_text_line(), format!("{i}"));
    }
    peer.write(b"a\nb\nc\n");
    for line in [b"a", b"b", b"c"] {
        assert_eq!(events.expect_message(id), line);
    }
}
