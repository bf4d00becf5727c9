//! Limits that protect the hub: max_clients, max_frame, queue_bytes, and configuration
//! checks.

#[path = "util_old/mod.rs"]
mod util;

use hubcast::{DisconnectReason, Error, Framing, Hub};
use util::{expect_connected, expect_disconnected, expect_message, join, Peer};

#[test]
fn connection_over_max_clients_is_closed_and_counted() {
    let hub = Hub::builder().max_clients(2).bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let (a, a_id) = join(&hub, &events);
    let (mut b, b_id) = join(&hub, &events);

    let mut extra = Peer::connect(hub.local_addr());
    extra.expect_closed();
    let stats = hub.stats();
    assert_eq!(stats.refused, 1, "{stats:?}");
    assert_eq!(stats.accepted, 2, "{stats:?}");
    assert_eq!(stats.connected, 2, "{stats:?}");
    assert_eq!(hub.clients().len(), 2);

    // The refused connection made no event: the next one is a's leaving. Then there is
    // room again.
    drop(a);
    assert_eq!(
        expect_disconnected(&events, a_id),
        DisconnectReason::PeerClosed
    );
    let (mut c, c_id) = join(&hub, &events);
    assert!(c_id > b_id);
    hub.broadcast("room for two").unwrap();
    assert_eq!(b.read_line(), b"room for two");
    assert_eq!(c.read_line(), b"room for two");
    assert_eq!(hub.stats().refused, 1);
}

#[test]
fn line_over_max_frame_disconnects_before_the_newline() {
    let hub = Hub::builder().max_frame(16).bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let (mut peer, id) = join(&hub, &events);

    // Exactly max_frame bytes, with "\r\n", is fine.
    peer.write(b"0123456789abcdef\r\n");
    assert_eq!(expect_message(&events, id), b"0123456789abcdef");
    // One byte more, with no newline yet, is already too long.
    peer.write(b"0123456789abcdefg");
    assert_eq!(
        expect_disconnected(&events, id),
        DisconnectReason::FrameTooLarge
    );
    peer.expect_closed();
    let stats = hub.stats();
    assert_eq!(
        stats.disconnects(DisconnectReason::FrameTooLarge),
        1,
        "{stats:?}"
    );
    assert_eq!(stats.disconnects.total(), 1, "{stats:?}");
}

#[test]
fn long_line_in_many_small_writes_disconnects() {
    let hub = Hub::builder().max_frame(1000).bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let (mut peer, id) = join(&hub, &events);
    // Stop writing as soon as the hub has closed the connection.
    for _ in 0..200 {
        if std::io::Write::write_all(&mut peer.stream, &[b'x'; 10]).is_err() {
            break;
        }
    }
    assert_eq!(
        expect_disconnected(&events, id),
        DisconnectReason::FrameTooLarge
    );
    assert_eq!(hub.stats().disconnects(DisconnectReason::FrameTooLarge), 1);
}

#[test]
fn length_prefix_of_1_gib_disconnects_before_any_payload() {
    let hub = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .max_frame(1024)
        .bind("127.0.0.1:0")
        .unwrap();
    let events = hub.subscribe();
    let (mut peer, id) = join(&hub, &events);

    // At the limit is fine.
    let mut frame = 1024u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[7u8; 1024]);
    peer.write(&frame);
    assert_eq!(expect_message(&events, id), [7u8; 1024]);

    // A header announcing 1 GiB, and nothing after it: the hub must judge the header
    // alone (if it waited for, or allocated, the payload, this would hang or abort).
    peer.write(&(1u32 << 30).to_be_bytes());
    assert_eq!(
        expect_disconnected(&events, id),
        DisconnectReason::FrameTooLarge
    );
    peer.expect_closed();
    let stats = hub.stats();
    assert_eq!(
        stats.disconnects(DisconnectReason::FrameTooLarge),
        1,
        "{stats:?}"
    );
    assert_eq!(stats.disconnects.total(), 1, "{stats:?}");
}

#[test]
fn length_prefix_one_over_max_frame_disconnects() {
    let hub = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .max_frame(16)
        .bind("127.0.0.1:0")
        .unwrap();
    let events = hub.subscribe();
    let (mut peer, id) = join(&hub, &events);
    peer.write(&17u32.to_be_bytes());
    assert_eq!(
        expect_disconnected(&events, id),
        DisconnectReason::FrameTooLarge
    );
}

#[test]
fn message_larger_than_queue_bytes_is_refused() {
    let hub = Hub::builder()
        .queue_bytes(1024)
        .bind("127.0.0.1:0")
        .unwrap();
    let events = hub.subscribe();
    let (mut peer, id) = join(&hub, &events);

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
        .bind("127.0.0.1:0")
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
        match builder.bind("127.0.0.1:0") {
            Err(Error::Config(msg)) => assert!(msg.contains(name), "{name}: {msg}"),
            other => panic!("{name}: expected Error::Config, got {other:?}"),
        }
    }
}

#[test]
fn binding_an_address_in_use_is_a_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
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
        .bind("127.0.0.1:0")
        .unwrap();
    let events = hub.subscribe();
    let mut peer = Peer::connect(hub.local_addr());
    let id = expect_connected(&events);
    for i in 0..100 {
        hub.broadcast(format!("{i}")).unwrap();
    }
    for i in 0..100 {
        assert_eq!(peer.read_text_line(), format!("{i}"));
    }
    peer.write(b"a\nb\nc\n");
    for line in [b"a", b"b", b"c"] {
        assert_eq!(expect_message(&events, id), line);
    }
}
