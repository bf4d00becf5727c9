//! Flow control: a host flooding faster than its clients read is paced by them with
//! `flow_control(true)` (nobody is cut), a stalled client never holds the host, and
//! clients publishing in relay mode are held back by TCP instead of overrunning the others.

mod util;

use std::thread;

use hubcast::{DisconnectReason, Event, Framing, Hub, Relay};
use util::{frame, join, numbered, seq_of, EventLog, Peer, LOCAL, TIMEOUT, TINY};

const SIZE: usize = 16 * 1024;

/// Reads `count` length-prefixed numbered frames on a thread and checks their order.
fn reader(mut peer: Peer, count: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for i in 0..count {
            let msg = peer.read_frame();
            assert_eq!(seq_of(&msg), i);
            assert_eq!(msg.len(), SIZE, "torn message {i}");
        }
    })
}

#[test]
fn a_flooding_host_is_paced_by_its_clients_and_nobody_is_cut() {
    // 1,000 messages of 16 KiB are 16 MiB: eight times what each queue may hold.
    let count = 1000;
    let hub = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .queue_bytes(2 << 20)
        .flow_control(true)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let readers: Vec<_> = (0..4)
        .map(|_| reader(join(&hub, &mut events).0, count))
        .collect();
    for i in 0..count {
        hub.broadcast(numbered(i, SIZE)).expect("broadcast");
    }
    for r in readers {
        r.join().expect("a reader missed or reordered a message");
    }
    let stats = hub.stats();
    assert_eq!(stats.disconnects(DisconnectReason::Slow), 0, "{stats:?}");
    assert_eq!(stats.dropped, 0);
}

#[test]
fn a_stalled_client_does_not_hold_a_flow_controlled_host() {
    let count = 1000;
    let hub = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .queue_bytes(1 << 20)
        .flow_control(true)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let readers: Vec<_> = (0..2)
        .map(|_| reader(join(&hub, &mut events).0, count))
        .collect();
    // Never reads: its queue fills, it stops making progress, and it stops counting.
    let stalled = Peer::connect_rcvbuf(hub.local_addr(), TINY);
    let stalled_id = events.connected(stalled.addr());
    for i in 0..count {
        hub.broadcast(numbered(i, SIZE)).expect("broadcast");
    }
    for r in readers {
        r.join()
            .expect("a healthy reader missed or reordered a message");
    }
    let left = events.wait_for("a client to leave", |e| match e {
        Event::Disconnected { .. } => Some(e.clone()),
        _ => None,
    });
    assert_eq!(
        util::departure(&left),
        Some((stalled_id, DisconnectReason::Slow))
    );
    drop(stalled);
}

#[test]
fn relayed_floods_are_held_back_by_tcp_instead_of_cutting_readers() {
    // One client publishes 16 MiB through relay mode; with queues of 2 MiB the readers
    // would be cut as slow if the hub read the publisher faster than they read.
    let count = 1000;
    let hub = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .max_frame(SIZE)
        .queue_bytes(2 << 20)
        .relay(Relay::Others)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let (mut publisher, _) = join(&hub, &mut events);
    let readers: Vec<_> = (0..3)
        .map(|_| reader(join(&hub, &mut events).0, count))
        .collect();
    drop(events);
    let writer = thread::spawn(move || {
        for i in 0..count {
            publisher.write(&frame(Framing::LengthPrefixed, &numbered(i, SIZE)));
        }
        publisher
    });
    for r in readers {
        r.join()
            .expect("a reader missed or reordered a relayed message");
    }
    let _publisher = writer.join().expect("publisher");
    // Shutting down publishes the dispatcher's last counts.
    hub.shutdown(TIMEOUT).expect("shutdown");
    let stats = hub.stats();
    assert_eq!(stats.disconnects(DisconnectReason::Slow), 0, "{stats:?}");
    assert_eq!(stats.frames_in, count as u64);
}
