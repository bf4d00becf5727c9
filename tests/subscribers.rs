//! Subscriptions: every subscriber sees every event in the same order; a stalled one holds
//! clients back through TCP instead of losing events; a dropped one holds nothing back.

#[path = "util_old/mod.rs"]
mod util;

use std::io::Write;
use std::time::Duration;

use hubcast::{ClientId, DisconnectReason, Error, Event, Hub, ShutdownReport, Stats, Subscription};
use socket2::{Domain, Protocol, Socket, Type};
use util::{
    drain_to_end, expect_connected, expect_disconnected, expect_message, join, next_event,
    numbered, seq_of, Peer, TIMEOUT,
};

#[test]
fn hub_and_subscription_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Hub>();
    assert_send_sync::<Subscription>();
    assert_send_sync::<Event>();
    assert_send_sync::<Stats>();
    assert_send_sync::<ShutdownReport>();
    assert_send_sync::<Error>();
    assert_send_sync::<ClientId>();

    // And they work across threads: a subscription moved to another thread, a hub shared
    // by reference.
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let from_thread = std::thread::spawn(move || {
        let id = expect_connected(&events);
        (id, expect_message(&events, id))
    });
    let mut peer = Peer::connect(hub.local_addr());
    peer.write(b"across threads\n");
    let (id, payload) = from_thread.join().expect("subscriber thread");
    assert_eq!(payload, b"across threads");
    std::thread::scope(|scope| {
        scope.spawn(|| hub.send_to(id, "from another thread").unwrap());
    });
    assert_eq!(peer.read_line(), b"from another thread");
}

#[test]
fn two_subscribers_see_the_same_events_in_the_same_order() {
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let first = hub.subscribe();
    let second = hub.subscribe();

    let mut peers: Vec<Peer> = (0..3).map(|_| Peer::connect(hub.local_addr())).collect();
    for (i, peer) in peers.iter_mut().enumerate() {
        for k in 0..50 {
            peer.write(format!("peer {i} line {k}\n").as_bytes());
        }
    }
    peers.remove(0);

    // Read the first subscription until all of that has happened, then shut down and
    // take the rest of both.
    let mut seen = Vec::new();
    let mut messages = 0;
    let mut left = 0;
    while messages < 150 || left < 1 {
        let event = next_event(&first);
        match &event {
            Event::Message { .. } => messages += 1,
            Event::Disconnected { reason, .. } => {
                assert_eq!(*reason, DisconnectReason::PeerClosed);
                left += 1;
            }
            Event::Connected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        seen.push(event);
    }
    hub.shutdown(Duration::from_secs(10)).unwrap();
    seen.extend(drain_to_end(&first));
    let seen_second = drain_to_end(&second);

    assert_eq!(seen.len(), 3 + 150 + 3, "{seen:#?}");
    assert!(
        seen == seen_second,
        "the subscriptions saw different streams"
    );
    // Per client: Connected, its 50 messages in order, then one Disconnected.
    let mut ids: Vec<ClientId> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Connected { client, .. } => Some(*client),
            _ => None,
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for id in ids {
        let mine: Vec<&Event> = seen
            .iter()
            .filter(|e| match e {
                Event::Connected { client, .. }
                | Event::Message { client, .. }
                | Event::Disconnected { client, .. } => *client == id,
                _ => false,
            })
            .collect();
        assert_eq!(mine.len(), 52, "{mine:#?}");
        assert!(matches!(mine[0], Event::Connected { .. }));
        assert!(matches!(mine[51], Event::Disconnected { .. }));
        let Event::Message { payload, .. } = mine[1] else {
            panic!("{:?}", mine[1])
        };
        let peer = String::from_utf8(payload.to_vec())
            .unwrap()
            .split(" line")
            .next()
            .unwrap()
            .to_owned();
        for (k, event) in mine[1..51].iter().enumerate() {
            let Event::Message { payload, .. } = event else {
                panic!("{event:?}")
            };
            assert_eq!(*payload, format!("{peer} line {k}").as_bytes());
        }
    }
}

#[test]
fn a_later_subscriber_sees_only_later_events() {
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let early = hub.subscribe();
    let (mut peer, id) = join(&hub, &early);
    let late = hub.subscribe();
    peer.write(b"hello\n");
    assert_eq!(expect_message(&early, id), b"hello");
    assert_eq!(
        expect_message(&late, id),
        b"hello",
        "the late subscriber got an old event"
    );
}

#[test]
fn a_stalled_subscriber_loses_nothing_and_holds_the_client_back() {
    const LINES: usize = 20_000;
    const LEN: usize = 99; // 100 bytes with the newline: 2 MB in all
    const CHUNK: usize = 100;
    let hub = Hub::builder()
        .event_capacity(8)
        .bind("127.0.0.1:0")
        .unwrap();
    let events = hub.subscribe();

    // A small, fixed send buffer, so 2 MB cannot hide in kernel buffers: the writer can
    // only finish if the hub keeps reading, and the hub may only read while the
    // subscription has room.
    let addr = hub.local_addr();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_send_buffer_size(16 * 1024).unwrap();
    socket.connect_timeout(&addr.into(), TIMEOUT).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    let id = expect_connected(&events);

    let (progress_tx, progress) = crossbeam_channel::unbounded();
    let writer = std::thread::spawn(move || {
        for first in (0..LINES).step_by(CHUNK) {
            let mut wire = Vec::with_capacity(CHUNK * (LEN + 1));
            for seq in first..first + CHUNK {
                wire.extend_from_slice(&numbered(seq, LEN));
                wire.push(b'\n');
            }
            stream.write_all(&wire).expect("client write");
            let _ = progress_tx.send(first + CHUNK);
        }
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    });

    // Drain nothing until the client has sent hundreds of lines (20 KB: less than the
    // kernel buffers take even with the hub paused), far more than the 8 events the
    // subscription holds.
    loop {
        let sent = progress
            .recv_timeout(TIMEOUT)
            .expect("the client could not send 20 KB");
        if sent >= 200 {
            break;
        }
    }

    for seq in 0..LINES {
        let payload = expect_message(&events, id);
        assert_eq!(seq_of(&payload), seq, "line lost or out of order");
        assert_eq!(payload, numbered(seq, LEN));
    }
    assert_eq!(
        expect_disconnected(&events, id),
        DisconnectReason::PeerClosed
    );
    writer.join().expect("writer thread");
    let stats = hub.stats();
    assert_eq!(stats.disconnects.total(), 1, "{stats:?}");
}

#[test]
fn a_dropped_subscriber_does_not_stall_the_hub() {
    let hub = Hub::builder()
        .event_capacity(2)
        .bind("127.0.0.1:0")
        .unwrap();
    let kept = hub.subscribe();
    let stalled = hub.subscribe();
    let mut peer = Peer::connect(hub.local_addr());
    let id = expect_connected(&kept);
    let wire: String = (0..100).map(|i| format!("line {i}\n")).collect();
    peer.write(wire.as_bytes());

    assert_eq!(expect_message(&kept, id), b"line 0");
    assert_eq!(expect_message(&kept, id), b"line 1");
    // The stalled subscription holds Connected and line 0 and is full: the hub has
    // paused reading for it.
    assert_eq!(stalled.len(), 2);
    drop(stalled);

    for i in 2..100 {
        assert_eq!(expect_message(&kept, id), format!("line {i}").as_bytes());
    }
    drop(peer);
    assert_eq!(expect_disconnected(&kept, id), DisconnectReason::PeerClosed);
    // New connections are accepted again too.
    let (_peer, _) = join(&hub, &kept);
}

#[test]
fn a_subscriber_that_catches_up_resumes_the_hub() {
    // Capacity 1: every single event fills the subscription.
    let hub = Hub::builder()
        .event_capacity(1)
        .bind("127.0.0.1:0")
        .unwrap();
    let events = hub.subscribe();
    let mut peers: Vec<(Peer, ClientId)> = (0..4).map(|_| join(&hub, &events)).collect();
    for (i, (peer, _)) in peers.iter_mut().enumerate() {
        let wire: String = (0..200).map(|k| format!("{i}:{k}\n")).collect();
        peer.write(wire.as_bytes());
    }
    let mut next = [0usize; 4];
    for _ in 0..4 * 200 {
        let Event::Message { client, payload } = next_event(&events) else {
            panic!("not a message")
        };
        let i = peers
            .iter()
            .position(|(_, id)| *id == client)
            .expect("known client");
        assert_eq!(payload, format!("{i}:{}", next[i]).as_bytes());
        next[i] += 1;
    }
    assert_eq!(next, [200; 4]);
}
