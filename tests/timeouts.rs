//! Per-client deadlines: `idle_timeout`, `heartbeat` and `write_timeout`.
//!
//! Short timeouts (100-200 ms) are used only where the assertion is "eventually
//! disconnected". Where a client must stay connected, the deadline is long compared with
//! what the client has to do in time (answer a ping, send a frame every 20 ms), so a
//! loaded machine cannot make it miss.

mod util;

use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use hubcast::{DisconnectReason, Event, Framing, Hub, HubBuilder, SlowClientPolicy};
use util::{
    assert_stats_add_up, broadcast_numbered, healthy_pair, healthy_still_served, numbered,
    spawn_reader, EventLog, Got, Peer, LOCAL, MSG_LEN, SEND_BUFFER, TIMEOUT, TINY,
};

/// Clients that go quiet are `Idle` after `idle_timeout`, however they went quiet: saying
/// nothing at all (like a peer that vanished without a FIN, which loopback cannot make),
/// one frame and then nothing, or stopping inside a frame (a length prefix with no payload,
/// or a line with no end). Nothing of a torn frame is delivered. Meanwhile two healthy
/// clients that send a frame every 20 ms, far inside the 2 s limit, stay connected and
/// keep getting every broadcast.
fn quiet_clients_are_idle_and_talking_ones_stay(framing: Framing) {
    let hub = Hub::builder()
        .framing(framing)
        .idle_timeout(Some(Duration::from_secs(2)))
        .write_timeout(None)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut healthy = healthy_pair(&hub, &mut events, framing);
    for client in &mut healthy {
        client.keep_alive(Duration::from_millis(20));
    }
    let mut silent = Peer::connect_rcvbuf(hub.local_addr(), TINY);
    let silent_id = events.connected(silent.addr());
    let mut quiet = Peer::connect(hub.local_addr());
    let quiet_id = events.connected(quiet.addr());
    quiet.send(framing, b"one frame, then nothing");
    let mut torn = Peer::connect(hub.local_addr());
    let torn_id = events.connected(torn.addr());
    match framing {
        Framing::LengthPrefixed => torn.write(&100u32.to_be_bytes()),
        _ => torn.write(b"a line with no end"),
    }

    broadcast_numbered(&hub, 0..100, MSG_LEN);
    for client in &healthy {
        client.expect_numbered(0..100, MSG_LEN);
    }
    for id in [silent_id, quiet_id, torn_id] {
        assert_eq!(events.disconnected(id), DisconnectReason::Idle, "{id}");
    }
    assert_eq!(
        events.messages_from(quiet_id),
        vec![&b"one frame, then nothing"[..]]
    );
    assert!(events.messages_from(silent_id).is_empty());
    assert!(events.messages_from(torn_id).is_empty());
    healthy_still_served(&hub, &healthy, 100);
    assert_stats_add_up(&hub, &[(DisconnectReason::Idle, 3)]);

    // Each got the broadcasts made while it was connected, then a clean end of stream.
    for peer in [&mut silent, &mut quiet, &mut torn] {
        for i in 0..100 {
            let frame = peer.next_frame(framing).expect("a broadcast");
            assert!(frame == numbered(i, MSG_LEN), "message {i}: {frame:?}");
        }
        peer.expect_fin();
    }
}

#[test]
fn quiet_clients_are_idle_and_talking_ones_stay_in_lines() {
    quiet_clients_are_idle_and_talking_ones_stay(Framing::Lines);
}

#[test]
fn quiet_clients_are_idle_and_talking_ones_stay_length_prefixed() {
    quiet_clients_are_idle_and_talking_ones_stay(Framing::LengthPrefixed);
}

/// A client that answers every ping with an empty frame stays connected across several
/// intervals; the pings are empty frames, and the answers never reach subscribers.
fn answering_client_stays_connected(framing: Framing) {
    // Long enough that the client, which answers at once, has a whole second to spare.
    let interval = Duration::from_secs(1);
    let hub = Hub::builder()
        .framing(framing)
        .heartbeat(Some(interval))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let peer = Peer::connect(hub.local_addr());
    let id = events.connected(peer.addr());
    let mut answers = Peer::new(peer.stream.try_clone().expect("clone"));
    let (frames, reader) = spawn_reader(peer, framing);

    hub.broadcast("between pings").expect("broadcast");
    let mut pings = 0;
    let mut other = Vec::new();
    while pings < 4 {
        match frames.recv_timeout(TIMEOUT).expect("a ping") {
            Got::Frame(frame) if frame.is_empty() => {
                answers.send(framing, b"");
                pings += 1;
            }
            Got::Frame(frame) => other.push(frame),
            Got::End(end) => panic!("disconnected after {pings} pings: {end:?}"),
        }
        events.drain();
    }
    assert_eq!(other, vec![b"between pings".to_vec()]);
    // The hub has read the four answers (they count as frames in, though not delivered).
    events.wait_until("the answers to be read", || hub.stats().frames_in >= 4);
    assert!(
        hub.clients().iter().any(|c| c.id == id),
        "the answering client was disconnected: {:?}",
        events.seen
    );
    events.drain();
    assert!(!events.has_left(id), "{:?}", events.seen);
    assert!(
        events.messages_from(id).is_empty(),
        "ping answers were delivered as messages"
    );
    assert_stats_add_up(&hub, &[]);
    hub.shutdown(TIMEOUT).expect("shutdown");
    reader.join().expect("reader");
}

#[test]
fn answering_pings_keeps_a_client_connected_in_lines() {
    answering_client_stays_connected(Framing::Lines);
}

#[test]
fn answering_pings_keeps_a_client_connected_length_prefixed() {
    answering_client_stays_connected(Framing::LengthPrefixed);
}

/// A client that reads but never answers is `Unresponsive` after two intervals; everything
/// it received was pings.
fn silent_client_is_unresponsive(framing: Framing) {
    let hub = Hub::builder()
        .framing(framing)
        .heartbeat(Some(Duration::from_millis(100)))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    let id = events.connected(peer.addr());
    assert_eq!(events.disconnected(id), DisconnectReason::Unresponsive);
    let mut pings = 0;
    while let Some(frame) = peer.next_frame(framing) {
        assert!(frame.is_empty(), "not a ping: {frame:?}");
        pings += 1;
    }
    assert!(pings >= 1, "disconnected without a ping");
    assert_stats_add_up(&hub, &[(DisconnectReason::Unresponsive, 1)]);
}

#[test]
fn silent_client_is_unresponsive_in_lines() {
    silent_client_is_unresponsive(Framing::Lines);
}

#[test]
fn silent_client_is_unresponsive_length_prefixed() {
    silent_client_is_unresponsive(Framing::LengthPrefixed);
}

/// A client that stopped reading (like a peer that vanished: writes stop making progress)
/// is `Slow` after `write_timeout` even though its queue is far from full: with
/// `DropNewest` a full queue would drop frames, not disconnect, and nothing is dropped.
/// The healthy clients beside it are not, even if their reader threads are descheduled for
/// longer than the timeout: the burst fits in their kernel buffers.
#[test]
fn write_timeout_finds_a_stalled_reader_whose_queue_is_not_full() {
    // 400 KB: more than the stalled client's socket buffers (the hub's 256 KiB, doubled
    // from `SEND_BUFFER`, and a tiny receive buffer), about 5% of its queue, and less than
    // a healthy client's socket buffers even where `rmem_max` caps `ROOMY` at 208 KiB.
    const N: usize = 400;
    const LEN: usize = 1000;
    let hub = Hub::builder()
        .send_buffer(Some(SEND_BUFFER))
        .queue_bytes(8 << 20)
        .slow_client_policy(SlowClientPolicy::DropNewest)
        .write_timeout(Some(Duration::from_millis(200)))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let healthy = healthy_pair(&hub, &mut events, Framing::Lines);
    let stalled = Peer::connect_rcvbuf(hub.local_addr(), TINY);
    let id = events.connected(stalled.addr());
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
