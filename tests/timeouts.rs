//! Per-client deadlines: `idle_timeout`, `heartbeat` and `write_timeout`, each scenario
//! for every wire (TCP lines, TCP length-prefixed, WebSocket).
//!
//! Short timeouts (200-250 ms) are used only where the assertion is "eventually
//! disconnected". Where a client must stay connected, the deadline is long compared with
//! what the client has to do in time (answer a ping within a second or, beside a silent
//! one, within two intervals of 250 ms; send a message every 20 ms), so a loaded machine
//! cannot make it miss.

mod util;

use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use hubcast::{DisconnectReason, Event, Hub, HubBuilder, SlowClientPolicy};
use util::{
    assert_stats_add_up, broadcast_numbered, healthy_beside, healthy_still_served, numbered,
    per_wire, EventLog, Item, Peer, Wire, LOCAL, MSG_LEN, SEND_BUFFER, TIMEOUT, TINY,
};

/// Clients that go quiet are `Idle` after `idle_timeout`, however they went quiet: saying
/// nothing at all (like a peer that vanished without a FIN, which loopback cannot make; a
/// raw one and a real client library's), one message and then nothing, or stopping inside
/// a frame (a line with no end, a length prefix or a WebSocket header with no payload).
/// Nothing of a torn frame is delivered, and none is closed before its time. Meanwhile two
/// healthy clients that send a message every 20 ms, far inside the 2 s limit, stay
/// connected and keep getting every broadcast. Each quiet one gets the broadcasts made
/// while it was connected, then its close (on WebSocket 1001, "idle too long") and a clean
/// end of stream.
fn quiet_clients_are_idle_and_talking_ones_stay(wire: Wire) {
    const IDLE: Duration = Duration::from_secs(2);
    let hub = wire.bind(Hub::builder().idle_timeout(Some(IDLE)).write_timeout(None));
    let mut events = EventLog::subscribe(&hub);
    let mut healthy = healthy_beside(&hub, &mut events, wire);
    for client in &mut healthy {
        client.keep_alive(Duration::from_millis(20));
    }
    let start = Instant::now();
    let (silent, silent_id) = wire.join_rcvbuf(&hub, &mut events, TINY);
    let (library, library_id) = wire.join_library(&hub, &mut events);
    let (mut quiet, quiet_id) = wire.join(&hub, &mut events);
    quiet.send(b"one message, then nothing");
    let (mut torn, torn_id) = wire.join(&hub, &mut events);
    torn.write(&wire.torn_frame());

    broadcast_numbered(&hub, 0..100, MSG_LEN);
    for client in &healthy {
        client.expect_numbered(0..100, MSG_LEN);
    }
    let quiet_ones = [silent_id, library_id, quiet_id, torn_id];
    for id in quiet_ones {
        assert_eq!(events.disconnected(id), DisconnectReason::Idle, "{id}");
        assert!(
            start.elapsed() >= IDLE,
            "closed after {:?}",
            start.elapsed()
        );
    }
    assert_eq!(
        events.messages_from(quiet_id),
        vec![&b"one message, then nothing"[..]]
    );
    for id in [silent_id, library_id, torn_id] {
        assert!(events.messages_from(id).is_empty(), "{id}");
    }
    healthy_still_served(&hub, &healthy, 100);
    assert_stats_add_up(&hub, &[(DisconnectReason::Idle, quiet_ones.len() as u64)]);

    for mut client in [silent, library, quiet, torn] {
        for i in 0..100 {
            let message = client.read_message();
            assert!(message == numbered(i, MSG_LEN), "message {i}: {message:?}");
        }
        let end = client.expect_close(DisconnectReason::Idle);
        assert_eq!(end, None, "closed with a reset, not a FIN");
    }
}

/// A client that answers every heartbeat stays connected across several intervals. The
/// heartbeats are empty frames on TCP and empty ping frames on WebSocket, answered with an
/// empty frame or a pong, and the answers never reach subscribers: the client's only
/// message is the one it sends after them. (On TCP an answer is a frame in, read and
/// counted though not delivered; a pong is no message in.)
fn answering_heartbeats_keeps_a_client_connected(wire: Wire) {
    const PINGS: usize = 4;
    // Long enough that the client, which answers at once, has a whole second to spare.
    let interval = Duration::from_secs(1);
    let hub = wire.bind(Hub::builder().heartbeat(Some(interval)));
    let mut events = EventLog::subscribe(&hub);
    let (mut client, id) = wire.join(&hub, &mut events);

    hub.broadcast("between pings").expect("broadcast");
    let mut pings = 0;
    let mut other = Vec::new();
    while pings < PINGS {
        match client.next_item() {
            Some(Item::Ping) => {
                client.answer_ping();
                pings += 1;
            }
            Some(Item::Message(message)) => other.push(message),
            end => panic!("disconnected after {pings} pings: {end:?}"),
        }
        events.drain();
    }
    assert_eq!(other, vec![b"between pings".to_vec()]);
    // Read after the answers: once it is delivered, the hub has read them all.
    client.send(b"after the answers");
    assert_eq!(events.messages(id, 1), vec![&b"after the answers"[..]]);
    let answers_in = if wire.is_websocket() { 0 } else { PINGS as u64 };
    events.wait_until("the answers to be counted", || {
        hub.stats().frames_in > answers_in
    });
    assert_eq!(hub.stats().frames_in, answers_in + 1);
    assert!(
        hub.client(id).is_some(),
        "the answering client was disconnected: {:?}",
        events.seen
    );
    events.drain();
    assert!(!events.has_left(id), "{:?}", events.seen);
    assert_eq!(
        events.messages_from(id),
        vec![&b"after the answers"[..]],
        "answers were delivered as messages"
    );
    // Nothing else happened: its arrival and its one message.
    assert_eq!(events.seen.len(), 2, "{:?}", events.seen);
    assert_stats_add_up(&hub, &[]);
    hub.shutdown(TIMEOUT).expect("shutdown");
}

/// With heartbeats on, answering is a sign of life: a client that answers (tungstenite by
/// itself on WebSocket) outlives three times the silence that makes one that neither reads
/// nor answers `Unresponsive` after two intervals. Everything the silent one received was
/// heartbeats, at least one, then its close (on WebSocket 4002, "missed heartbeats").
fn a_silent_client_is_unresponsive_and_an_answering_one_stays(wire: Wire) {
    const INTERVAL: Duration = Duration::from_millis(250);
    const PINGS: usize = 6;
    let hub = wire.bind(Hub::builder().heartbeat(Some(INTERVAL)));
    let mut events = EventLog::subscribe(&hub);
    let (silent, silent_id) = wire.join(&hub, &mut events);
    let (mut answering, answering_id) = wire.join_library(&hub, &mut events);
    let answerer = thread::spawn(move || {
        for _ in 0..PINGS {
            match answering.next_item() {
                Some(Item::Ping) => answering.answer_ping(),
                other => panic!("expected a heartbeat, got {other:?}"),
            }
        }
        // Then it leaves by itself: its departure's reason says whether it lived so long.
        answering.leave();
    });
    assert_eq!(
        events.disconnected(silent_id),
        DisconnectReason::Unresponsive
    );
    answerer.join().expect("the answering client");
    assert_eq!(
        events.disconnected(answering_id),
        DisconnectReason::PeerClosed
    );

    let pings = silent
        .read_to_end()
        .closed_for(DisconnectReason::Unresponsive);
    assert!(!pings.is_empty(), "disconnected without a heartbeat");
    assert!(pings.iter().all(|p| *p == Item::Ping), "{pings:?}");
    assert_stats_add_up(
        &hub,
        &[
            (DisconnectReason::Unresponsive, 1),
            (DisconnectReason::PeerClosed, 1),
        ],
    );
}

per_wire!(
    quiet_clients_are_idle_and_talking_ones_stay,
    answering_heartbeats_keeps_a_client_connected,
    a_silent_client_is_unresponsive_and_an_answering_one_stays,
    write_timeout_finds_a_stalled_reader_whose_queue_is_not_full,
);

/// A client that stopped reading (like a peer that vanished: writes stop making progress)
/// is `Slow` after `write_timeout` even though its queue is far from full: with
/// `DropNewest` a full queue would drop frames, not disconnect, and nothing is dropped.
/// The healthy clients beside it are not, even if their reader threads are descheduled for
/// longer than the timeout: the burst fits in their kernel buffers.
fn write_timeout_finds_a_stalled_reader_whose_queue_is_not_full(wire: Wire) {
    // 400 KB: more than the stalled client's socket buffers (the hub's 256 KiB, doubled
    // from `SEND_BUFFER`, and a tiny receive buffer), about 5% of its queue, and less than
    // a healthy client's socket buffers even where `rmem_max` caps `ROOMY` at 208 KiB.
    const N: usize = 400;
    const LEN: usize = 1000;
    let hub = wire.bind(
        Hub::builder()
            .send_buffer(Some(SEND_BUFFER))
            .queue_bytes(8 << 20)
            .slow_client_policy(SlowClientPolicy::DropNewest)
            .write_timeout(Some(Duration::from_millis(200))),
    );
    let mut events = EventLog::subscribe(&hub);
    let healthy = healthy_beside(&hub, &mut events, wire);
    let (stalled, id) = wire.join_rcvbuf(&hub, &mut events, TINY);
    broadcast_numbered(&hub, 0..N, LEN);
    for client in &healthy {
        client.expect_numbered(0..N, LEN);
    }
    assert_eq!(events.disconnected(id), DisconnectReason::Slow);
    assert_eq!(hub.stats().dropped, 0);
    healthy_still_served(&hub, &healthy, N);
    assert_stats_add_up(&hub, &[(DisconnectReason::Slow, 1)]);
    drop(stalled);
}

/// While a subscription is full the hub reads no client, by design. A client that keeps
/// sending meanwhile has not gone idle: its data is waiting in the socket. It must not be
/// disconnected as `Idle` (or `Unresponsive`) because the *host* is slow to drain events.
fn a_full_subscription_does_not_time_out_talking_clients(builder: HubBuilder, idle: Duration) {
    const CAPACITY: usize = 4;
    let hub = builder.event_capacity(CAPACITY).bind(LOCAL).expect("bind");
    let events = hub.subscribe();
    // The test keeps `talker` open to the end; the thread writes through a clone.
    let talker = Peer::connect(hub.local_addr());
    let mut writes = talker.stream.try_clone().expect("clone");
    let (stop, stopped) = mpsc::channel::<()>();
    let (wrote, written) = mpsc::channel::<u32>();
    let writer = thread::spawn(move || {
        let mut sent = 0u32;
        loop {
            if writes
                .write_all(format!("line {sent}\n").as_bytes())
                .is_err()
            {
                return sent;
            }
            sent += 1;
            let _ = wrote.send(sent);
            // The scenario: a client that sends a line every 20 ms, 25 times within the
            // idle limit. The wait ends early when the test drops `stop`.
            match stopped.recv_timeout(Duration::from_millis(20)) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return sent,
            }
        }
    });
    let next_line = || {
        written
            .recv_timeout(TIMEOUT)
            .expect("the client stopped sending")
    };

    // Do not drain: the subscription fills (Connected and three lines) and the hub pauses.
    // Checked each time the client has sent another line.
    let deadline = Instant::now() + TIMEOUT;
    while events.len() < CAPACITY {
        assert!(Instant::now() < deadline, "the subscription never filled");
        next_line();
    }
    // Stay full for four idle periods while the client keeps talking.
    let paused_at = Instant::now();
    let mut lines_while_full = 0;
    while paused_at.elapsed() < 4 * idle {
        next_line();
        lines_while_full += 1;
    }
    assert_eq!(events.len(), CAPACITY, "the hub did not stay paused");
    let still_there = hub.clients().len();
    let stats = hub.stats();

    // Drain everything: the client must not have left, and every line arrives.
    drop(stop);
    let sent = writer.join().expect("writer");
    assert!(lines_while_full > 0);
    let mut events = EventLog::new(events);
    let (mut lines, mut left) = (0, None);
    while lines < sent && left.is_none() {
        match events.next() {
            Event::Message { .. } => lines += 1,
            Event::Disconnected { reason, .. } => left = Some(reason),
            _ => {}
        }
    }
    assert_eq!(
        (left, still_there, stats.disconnects.total()),
        (None, 1, 0),
        "a client that sent a line every 20 ms was disconnected while a subscription \
         was full (after {lines} of its {sent} lines): {stats:#?}"
    );
    assert_eq!(hub.clients().len(), 1);
    assert_stats_add_up(&hub, &[]);
    drop(talker);
}

#[test]
fn a_full_subscription_does_not_make_talking_clients_idle() {
    let idle = Duration::from_millis(500);
    a_full_subscription_does_not_time_out_talking_clients(
        Hub::builder().idle_timeout(Some(idle)),
        idle,
    );
}

#[test]
fn a_full_subscription_does_not_make_talking_clients_unresponsive() {
    let interval = Duration::from_millis(250);
    a_full_subscription_does_not_time_out_talking_clients(
        Hub::builder().heartbeat(Some(interval)),
        2 * interval,
    );
}
