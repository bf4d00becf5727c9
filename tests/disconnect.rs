//! How clients leave: closing, resetting, being kicked; and what the host may still
//! address afterwards.

#[path = "util_old/mod.rs"]
mod util;

use std::net::Shutdown;
use std::time::Duration;

use hubcast::{DisconnectReason, Error, Event, Hub};
use util::{drain_to_end, expect_disconnected, expect_message, join, next_event, Peer};

/// After `id` has left with `reason`: no other client left, the stats count it exactly
/// once, and after a shutdown the rest of the event stream holds no second `Disconnected`
/// for it.
fn assert_left_once(
    hub: &Hub,
    events: &hubcast::Subscription,
    id: hubcast::ClientId,
    reason: DisconnectReason,
) {
    let stats = hub.stats();
    assert_eq!(stats.disconnects(reason), 1, "{stats:?}");
    assert_eq!(stats.disconnects.total(), 1, "{stats:?}");
    assert_eq!(stats.connected, 0);
    assert!(hub.clients().is_empty());
    let report = hub.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(report.clients, 0);
    for event in drain_to_end(events) {
        assert!(
            !matches!(event, Event::Disconnected { client, .. } if client == id),
            "second Disconnected for {id}: {event:?}"
        );
    }
    assert_eq!(hub.stats().disconnects.total(), 1);
}

#[test]
fn clean_close_is_one_peer_closed() {
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let (mut peer, id) = join(&hub, &events);

    peer.write(b"last words\n");
    peer.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(expect_message(&events, id), b"last words");
    assert_eq!(
        expect_disconnected(&events, id),
        DisconnectReason::PeerClosed
    );
    // The hub closes its side too.
    peer.expect_closed();
    assert_left_once(&hub, &events, id, DisconnectReason::PeerClosed);
}

#[test]
fn dropping_the_socket_is_one_peer_closed() {
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let (peer, id) = join(&hub, &events);
    drop(peer);
    assert_eq!(
        expect_disconnected(&events, id),
        DisconnectReason::PeerClosed
    );
    assert_left_once(&hub, &events, id, DisconnectReason::PeerClosed);
}

#[test]
fn reset_is_one_reset() {
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let (peer, id) = join(&hub, &events);
    peer.reset();
    assert_eq!(expect_disconnected(&events, id), DisconnectReason::Reset);
    assert_left_once(&hub, &events, id, DisconnectReason::Reset);
}

#[test]
fn reset_while_the_hub_is_sending_is_one_disconnect() {
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let (peer, id) = join(&hub, &events);
    let (mut other, _) = join(&hub, &events);
    for i in 0..1000 {
        hub.broadcast(format!("message {i}")).unwrap();
    }
    peer.reset();
    for i in 0..1000 {
        hub.broadcast(format!("more {i}")).unwrap();
    }
    // Whether the hub notices the reset on a read or on a write, it is a reset.
    assert_eq!(expect_disconnected(&events, id), DisconnectReason::Reset);
    for i in 0..1000 {
        assert_eq!(other.read_text_line(), format!("message {i}"));
    }
    for i in 0..1000 {
        assert_eq!(other.read_text_line(), format!("more {i}"));
    }
    let stats = hub.stats();
    assert_eq!(stats.disconnects(DisconnectReason::Reset), 1, "{stats:?}");
    assert_eq!(stats.disconnects.total(), 1, "{stats:?}");
}

#[test]
fn kicked_client_gets_what_was_sent_before_then_eof() {
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let (mut peer, id) = join(&hub, &events);
    let (mut other, _) = join(&hub, &events);

    hub.broadcast("to everyone").unwrap();
    hub.send_to(id, "goodbye").unwrap();
    hub.disconnect(id).unwrap();
    hub.broadcast("after the kick").unwrap();

    assert_eq!(expect_disconnected(&events, id), DisconnectReason::Kicked);
    assert_eq!(peer.read_line(), b"to everyone");
    assert_eq!(peer.read_line(), b"goodbye");
    peer.expect_closed();
    assert_eq!(other.read_line(), b"to everyone");
    assert_eq!(other.read_line(), b"after the kick");

    let stats = hub.stats();
    assert_eq!(stats.disconnects(DisconnectReason::Kicked), 1, "{stats:?}");
    assert_eq!(stats.disconnects.total(), 1, "{stats:?}");
    assert_eq!(hub.clients().len(), 1);
}

#[test]
fn unknown_client_ids_are_errors() {
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let (peer, id) = join(&hub, &events);
    drop(peer);
    assert_eq!(
        expect_disconnected(&events, id),
        DisconnectReason::PeerClosed
    );

    assert!(matches!(hub.send_to(id, "hello?"), Err(Error::UnknownClient(c)) if c == id));
    assert!(matches!(hub.disconnect(id), Err(Error::UnknownClient(c)) if c == id));

    // A later client gets a new id: the old one stays unknown.
    let (_peer, id2) = join(&hub, &events);
    assert_ne!(id, id2);
    assert!(id2 > id);
    assert!(matches!(
        hub.send_to(id, "hello?"),
        Err(Error::UnknownClient(_))
    ));
    hub.send_to(id2, "hello").unwrap();
}

#[test]
fn kicked_twice_is_unknown_the_second_time() {
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let (mut peer, id) = join(&hub, &events);
    hub.disconnect(id).unwrap();
    assert_eq!(expect_disconnected(&events, id), DisconnectReason::Kicked);
    assert!(matches!(hub.disconnect(id), Err(Error::UnknownClient(_))));
    peer.expect_closed();
    assert_eq!(hub.stats().disconnects(DisconnectReason::Kicked), 1);
}

#[test]
fn events_of_one_client_come_in_order() {
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let mut peer = Peer::connect(hub.local_addr());
    peer.write(b"1\n2\n3\n");
    drop(peer);
    let Event::Connected { client: id, .. } = next_event(&events) else {
        panic!("no Connected")
    };
    for line in [b"1", b"2", b"3"] {
        assert_eq!(expect_message(&events, id), line);
    }
    assert_eq!(
        expect_disconnected(&events, id),
        DisconnectReason::PeerClosed
    );
}
