//! How clients leave: closing, half-closing with a backlog, resetting (idle or while the
//! hub writes to them), being kicked, each for every wire where it applies to all (TCP
//! lines, TCP length-prefixed, WebSocket); and what the host may still address afterwards.

mod util;

use std::time::Duration;

use hubcast::{ClientId, DisconnectReason, Error, Event, Framing, Hub};
use util::{
    assert_stats_add_up, broadcast_numbered, healthy_beside, healthy_pair, healthy_still_served,
    join, per_wire, seq_of, EventLog, Peer, Wire, LOCAL, SEND_BUFFER, TIMEOUT, TINY,
};

/// Messages that make a backlog for a client that does not read: 1000 of 1000 bytes are
/// far more than its kernel buffers hold (hub `SO_SNDBUF` of [`SEND_BUFFER`], doubled by
/// the kernel, plus a [`TINY`] receive buffer), and far less than its queue.
const BACKLOG: usize = 1000;
const BACKLOG_LEN: usize = 1000;

/// A hub for clients of `wire` that writes to clients with [`SEND_BUFFER`], queues up to
/// 8 MiB for each, never gives up on a stalled writer, and lets a leaving client have what
/// was queued for it for up to [`TIMEOUT`].
fn backlog_hub(wire: Wire) -> Hub {
    wire.bind(
        Hub::builder()
            .send_buffer(Some(SEND_BUFFER))
            .queue_bytes(8 << 20)
            .write_timeout(None)
            .linger(TIMEOUT),
    )
}

/// After `id` has left with `reason` (and no one else has): the stats count it exactly
/// once, and after a shutdown the rest of the event stream holds no second `Disconnected`
/// for it. `staying` clients are still connected.
fn assert_left_once(
    hub: &Hub,
    events: &mut EventLog,
    id: ClientId,
    reason: DisconnectReason,
    staying: usize,
) {
    let stats = hub.stats();
    assert_eq!(stats.disconnects(reason), 1, "{stats:?}");
    assert_eq!(stats.disconnects.total(), 1, "{stats:?}");
    assert_eq!(stats.connected, staying as u64, "{stats:?}");
    assert_eq!(hub.clients().len(), staying);
    assert!(hub.clients().iter().all(|c| c.id != id));
    let report = hub.shutdown(TIMEOUT).unwrap();
    assert_eq!(report.clients, staying);
    for event in events.until_end() {
        assert!(
            !matches!(event, Event::Disconnected { client, .. } if client == id),
            "second Disconnected for {id}: {event:?}"
        );
    }
    let stats = hub.stats();
    assert_eq!(stats.disconnects(reason), 1, "{stats:?}");
    assert_eq!(
        stats.disconnects.total(),
        1 + stats.disconnects(DisconnectReason::Shutdown),
        "{stats:?}"
    );
}

/// A client shuts down its sending side (after a last line) while a backlog is queued for
/// it. The hub delivers the line, reports `PeerClosed` at once, and sends it no new
/// broadcast, but still writes out what was queued (within `linger`), then closes cleanly.
#[test]
fn half_close_is_one_peer_closed_and_the_backlog_is_still_delivered() {
    let hub = backlog_hub(Wire::Lines);
    let mut events = EventLog::subscribe(&hub);
    let healthy = healthy_pair(&hub, &mut events, Framing::Lines);
    let mut closer = Peer::connect_rcvbuf(hub.local_addr(), TINY);
    let id = events.connected(closer.addr());

    broadcast_numbered(&hub, 0..BACKLOG, BACKLOG_LEN);
    for client in &healthy {
        client.expect_numbered(0..BACKLOG, BACKLOG_LEN);
    }
    events.wait_until("the healthy clients' deliveries to be counted", || {
        hub.stats().frames_out >= 2 * BACKLOG as u64
    });
    let frames_out = hub.stats().frames_out;
    assert!(
        frames_out < 3 * BACKLOG as u64,
        "no backlog to linger on ({frames_out} frames delivered)"
    );

    closer.write(b"last words\n");
    closer.shutdown_write();
    assert_eq!(events.disconnected(id), DisconnectReason::PeerClosed);
    let story = events.story_of(id);
    let addr = closer.addr();
    assert!(
        matches!(
            story.as_slice(),
            [
                Event::Connected { client: a, addr: from, .. },
                Event::Message { client: b, payload, .. },
                Event::Disconnected { client: c, reason: DisconnectReason::PeerClosed, .. },
            ] if [*a, *b, *c] == [id; 3] && *from == addr && &payload[..] == b"last words"
        ),
        "{story:?}"
    );
    // Broadcast after it left: the healthy clients get this, the half-closed one must not.
    healthy_still_served(&hub, &healthy, BACKLOG);

    // Everything queued before it left arrives, in order, then a clean end of stream.
    for i in 0..BACKLOG {
        let frame = closer.next_frame(Framing::Lines).expect("a queued frame");
        assert_eq!(seq_of(&frame), i);
        assert_eq!(frame.len(), BACKLOG_LEN, "torn frame {i}");
    }
    closer.expect_fin();
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, 1)]);
    assert_left_once(&hub, &mut events, id, DisconnectReason::PeerClosed, 2);
}

/// A client that drops its connection (a FIN; on WebSocket without a close frame) is one
/// `PeerClosed`.
fn dropping_the_connection_is_one_peer_closed(wire: Wire) {
    let hub = wire.bind(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (client, id) = wire.join(&hub, &mut events);
    drop(client);
    assert_eq!(events.expect_disconnected(id), DisconnectReason::PeerClosed);
    assert_left_once(&hub, &mut events, id, DisconnectReason::PeerClosed, 0);
}

fn reset_is_one_reset(wire: Wire) {
    let hub = wire.bind(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (client, id) = wire.join(&hub, &mut events);
    client.reset();
    assert_eq!(events.expect_disconnected(id), DisconnectReason::Reset);
    assert_left_once(&hub, &mut events, id, DisconnectReason::Reset, 0);
}

/// A client resets its connection while its socket is full and a backlog is queued for it,
/// and the host keeps broadcasting. Whether the hub notices on a read or on a write, it is
/// one `Reset`, and the other clients get everything, before and after.
fn reset_while_the_hub_is_writing_is_one_reset(wire: Wire) {
    let hub = backlog_hub(wire);
    let mut events = EventLog::subscribe(&hub);
    let healthy = healthy_beside(&hub, &mut events, wire);
    let (resetter, id) = wire.join_rcvbuf(&hub, &mut events, TINY);

    broadcast_numbered(&hub, 0..BACKLOG, BACKLOG_LEN);
    for client in &healthy {
        client.expect_numbered(0..BACKLOG, BACKLOG_LEN);
    }
    // The healthy clients have everything; the resetter has a backlog still being written.
    events.wait_until("the healthy clients' deliveries to be counted", || {
        hub.stats().frames_out >= 2 * BACKLOG as u64
    });
    let frames_out = hub.stats().frames_out;
    assert!(
        frames_out < 3 * BACKLOG as u64,
        "the resetter should still have frames queued ({frames_out} delivered)"
    );

    resetter.reset();
    // More to write to it, so the hub may just as well find the reset on a write.
    broadcast_numbered(&hub, BACKLOG..2 * BACKLOG, BACKLOG_LEN);
    assert_eq!(events.disconnected(id), DisconnectReason::Reset);
    for client in &healthy {
        client.expect_numbered(BACKLOG..2 * BACKLOG, BACKLOG_LEN);
    }
    healthy_still_served(&hub, &healthy, 2 * BACKLOG);
    assert_stats_add_up(&hub, &[(DisconnectReason::Reset, 1)]);
    assert_eq!(events.departures(), vec![(id, DisconnectReason::Reset)]);
}

/// A kicked client (a raw one and a real client library's) gets what was sent to it
/// before, then its close (on WebSocket 4001, "disconnected by host"); the others get
/// what is broadcast after, and the kicks are the next events, in order.
fn a_kicked_client_gets_what_was_sent_before_then_its_close(wire: Wire) {
    let hub = wire.bind(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (raw, raw_id) = wire.join(&hub, &mut events);
    let (library, library_id) = wire.join_library(&hub, &mut events);
    let (mut other, _) = wire.join(&hub, &mut events);

    hub.broadcast("to everyone").unwrap();
    for id in [raw_id, library_id] {
        hub.send_to(id, "goodbye").unwrap();
        hub.disconnect(id).unwrap();
    }
    hub.broadcast("after the kick").unwrap();

    for id in [raw_id, library_id] {
        assert_eq!(events.expect_disconnected(id), DisconnectReason::Kicked);
    }
    for mut kicked in [raw, library] {
        // What was queued first is still delivered, then the close.
        kicked.expect_messages(&[b"to everyone", b"goodbye"]);
        kicked.expect_close(DisconnectReason::Kicked);
    }
    other.expect_messages(&[b"to everyone", b"after the kick"]);
    assert_stats_add_up(&hub, &[(DisconnectReason::Kicked, 2)]);
    assert_eq!(hub.clients().len(), 1);
}

per_wire!(
    dropping_the_connection_is_one_peer_closed,
    reset_is_one_reset,
    reset_while_the_hub_is_writing_is_one_reset,
    a_kicked_client_gets_what_was_sent_before_then_its_close,
);

#[test]
fn unknown_client_ids_are_errors() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (peer, id) = join(&hub, &mut events);
    drop(peer);
    assert_eq!(events.expect_disconnected(id), DisconnectReason::PeerClosed);

    assert!(matches!(hub.send_to(id, "hello?"), Err(Error::UnknownClient(c)) if c == id));
    assert!(matches!(hub.disconnect(id), Err(Error::UnknownClient(c)) if c == id));

    // A later client gets a new id: the old one stays unknown.
    let (mut peer2, id2) = join(&hub, &mut events);
    assert_ne!(id, id2);
    assert!(id2 > id);
    assert!(matches!(
        hub.send_to(id, "hello?"),
        Err(Error::UnknownClient(_))
    ));
    hub.send_to(id2, "hello").unwrap();
    assert_eq!(peer2.read_line(), b"hello");
}

#[test]
fn kicked_twice_is_unknown_the_second_time() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    hub.disconnect(id).unwrap();
    assert_eq!(events.expect_disconnected(id), DisconnectReason::Kicked);
    assert!(matches!(hub.disconnect(id), Err(Error::UnknownClient(_))));
    peer.expect_closed();
    assert_eq!(hub.stats().disconnects(DisconnectReason::Kicked), 1);
}

#[test]
fn events_of_one_client_come_in_order() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    let addr = peer.addr();
    peer.write(b"1\n2\n3\n");
    drop(peer);
    let Event::Connected {
        client: id,
        addr: seen,
        ..
    } = events.next()
    else {
        panic!("no Connected")
    };
    assert_eq!(seen, addr);
    for line in [b"1", b"2", b"3"] {
        assert_eq!(events.expect_message(id), line);
    }
    assert_eq!(events.expect_disconnected(id), DisconnectReason::PeerClosed);
    // The stats are final once the hub has shut down.
    hub.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(hub.stats().frames_in, 3);
}
