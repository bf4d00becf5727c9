//! Per-client deadlines: `idle_timeout`, `heartbeat` and `write_timeout`.
//!
//! Short timeouts (100-200 ms) are used only where the assertion is "eventually
//! disconnected". Where a client must stay connected, the deadline is long compared with
//! what the client has to do in time (answer a ping, send a line), so a loaded machine
//! cannot make it miss.

mod hostile_util;

use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use hostile_util::*;
use hubcast::{DisconnectReason, Event, Framing, Hub, HubBuilder, SlowClientPolicy};

#[test]
fn silent_client_is_idle() {
    let hub = Hub::builder()
        .idle_timeout(Some(Duration::from_millis(200)))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::new(hub.subscribe());
    let mut silent = connect(hub.local_addr());
    let silent_id = events.connected(silent.local_addr().expect("addr"));
    let mut quiet = connect(hub.local_addr());
    let quiet_id = events.connected(quiet.local_addr().expect("addr"));
    quiet.write_all(b"one line, then nothing\n").expect("write");

    assert_eq!(events.disconnected(silent_id), DisconnectReason::Idle);
    assert_eq!(events.disconnected(quiet_id), DisconnectReason::Idle);
    assert_eq!(
        events.messages_from(quiet_id),
        vec![&b"one line, then nothing"[..]]
    );
    // The hub closed both cleanly.
    assert_eq!(read_to_end(&mut silent), (Vec::new(), None));
    assert_eq!(read_to_end(&mut quiet), (Vec::new(), None));
    assert_stats_add_up(&hub, &[(DisconnectReason::Idle, 2)]);
}

/// What the answering client's thread reports.
enum Heard {
    Ping,
    Frame(Vec<u8>),
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
    let mut events = EventLog::new(hub.subscribe());
    let stream = connect(hub.local_addr());
    let id = events.connected(stream.local_addr().expect("addr"));

    let (tx, heard) = mpsc::channel();
    let mut answers = stream.try_clone().expect("clone");
    let reader = thread::spawn(move || {
        let mut reader = FrameReader::new(stream, framing);
        while let Ok(Some(payload)) = reader.next_frame() {
            if payload.is_empty() {
                answers.write_all(&frame(framing, b"")).expect("answer");
                let _ = tx.send(Heard::Ping);
            } else {
                let _ = tx.send(Heard::Frame(payload));
            }
        }
    });

    hub.broadcast("between pings").expect("broadcast");
    let mut pings = 0;
    let mut frames = Vec::new();
    while pings < 4 {
        match heard.recv_timeout(TIMEOUT).expect("a ping") {
            Heard::Ping => pings += 1,
            Heard::Frame(frame) => frames.push(frame),
        }
        events.drain();
    }
    assert_eq!(frames, vec![b"between pings".to_vec()]);
    // The hub has read the four answers (they count as frames in, though not delivered).
    events.wait_until("the answers to be read", || hub.stats().frames_in >= 4);
    assert!(
        hub.clients().iter().any(|c| c.id == id),
        "the answering client was disconnected: {:?}",
        events.seen
    );
    events.drain();
    assert!(!events.has_left(id), "{:?}", events.seen);
    let empty_messages = events
        .seen
        .iter()
        .filter(|e| matches!(e, Event::Message { payload, .. } if payload.is_empty()))
        .count();
    assert_eq!(empty_messages, 0, "ping answers were delivered as messages");
    assert_stats_add_up(&hub, &[]);
    hub.shutdown(Duration::from_secs(1)).expect("shutdown");
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
    let mut events = EventLog::new(hub.subscribe());
    let stream = connect(hub.local_addr());
    let id = events.connected(stream.local_addr().expect("addr"));
    assert_eq!(events.disconnected(id), DisconnectReason::Unresponsive);
    let mut reader = FrameReader::new(stream, framing);
    while let Some(frame) = reader.next_frame().expect("read") {
        assert!(frame.is_empty(), "not a ping: {frame:?}");
    }
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

/// A client that stopped reading is `Slow` after `write_timeout` even though its queue is
/// far from full: with `DropNewest` a full queue would drop frames, not disconnect, and
/// nothing is dropped.
#[test]
fn write_timeout_finds_a_stalled_reader_whose_queue_is_not_full() {
    let hub = Hub::builder()
        .send_buffer(Some(4 * 1024))
        .queue_bytes(8 << 20)
        .slow_client_policy(SlowClientPolicy::DropNewest)
        .write_timeout(Some(Duration::from_millis(200)))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::new(hub.subscribe());
    let stalled = connect_with_rcvbuf(hub.local_addr(), TINY);
    let id = events.connected(stalled.local_addr().expect("addr"));
    // 100 KiB: more than the socket buffers hold, about 1% of the queue.
    for i in 0..1000 {
        hub.broadcast(numbered(i)).expect("broadcast");
    }
    assert_eq!(events.disconnected(id), DisconnectReason::Slow);
    assert_eq!(hub.stats().dropped, 0);
    assert_stats_add_up(&hub, &[(DisconnectReason::Slow, 1)]);
}

/// While a subscription is full the hub reads no client, by design. A client that keeps
/// sending meanwhile has not gone idle: its data is waiting in the socket. It must not be
/// disconnected as `Idle` (or `Unresponsive`) because the *host* is slow to drain events.
fn a_full_subscription_does_not_time_out_talking_clients(builder: HubBuilder, idle: Duration) {
    let hub = builder.event_capacity(4).bind(LOCAL).expect("bind");
    let events = hub.subscribe();
    // The test keeps `talker` open to the end; the thread writes through a clone.
    let talker = connect(hub.local_addr());
    let mut writes = talker.try_clone().expect("clone");
    let (stop, stopped) = mpsc::channel::<()>();
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
            // A line every 20 ms, 25 times within the idle limit (pacing only).
            match stopped.recv_timeout(Duration::from_millis(20)) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return sent,
            }
        }
    });

    // Do not drain: the subscription fills (Connected + 3 lines) and the hub pauses.
    let pacer = Pacer::new();
    pacer.wait_until("the subscription to fill", || events.len() == 4);
    let paused_at = Instant::now();
    // Stay full for four idle periods while the client keeps talking.
    while paused_at.elapsed() < 4 * idle {
        pacer.pause(PACE);
    }
    let still_there = hub.clients().len();
    let stats = hub.stats();

    // Drain everything: the client must not have left, and every line arrives.
    drop(stop);
    let sent = writer.join().expect("writer");
    let (mut lines, mut left) = (0, None);
    while lines < sent && left.is_none() {
        match events.recv_timeout(TIMEOUT).expect("an event") {
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
