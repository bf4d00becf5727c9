//! Fault injection: clients that reset while the hub writes to them, half-close, vanish,
//! never read, read one byte a second, stall inside a frame, send garbage, send frames just
//! over the limit, or connect and say nothing.
//!
//! Every scenario runs beside two healthy clients and checks the hostile client's exact
//! [`DisconnectReason`], that the healthy clients got every broadcast in order, and that the
//! hub's counters add up.
//!
//! Clients meant to fall behind get a tiny receive buffer and the hub a small send buffer,
//! so their backlog lands in the hub's queue at once; healthy clients get a roomy receive
//! buffer, so they never make the hub wait even if their reader thread is descheduled.

mod hostile_util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use hostile_util::*;
use hubcast::{DisconnectReason, Framing, Hub};

/// Two healthy clients beside each hostile one.
fn healthy_pair(hub: &Hub, events: &mut EventLog, framing: Framing) -> [Healthy; 2] {
    [
        Healthy::join(hub, events, framing),
        Healthy::join(hub, events, framing),
    ]
}

fn broadcast_numbered(hub: &Hub, range: std::ops::Range<usize>) {
    for i in range {
        hub.broadcast(numbered(i)).expect("broadcast");
    }
}

/// Broadcasts `range` in windows of `window` messages, each once the healthy clients have
/// received the one before: the host never bursts more than a window into their queues,
/// while a client that does not read falls further behind with every window.
fn broadcast_paced(hub: &Hub, healthy: &[Healthy], range: std::ops::Range<usize>, window: usize) {
    let mut start = range.start;
    while start < range.end {
        let end = (start + window).min(range.end);
        broadcast_numbered(hub, start..end);
        for client in healthy {
            client.expect_numbered(start..end);
        }
        start = end;
    }
}

/// After the hostile client is gone: the hub keeps serving the healthy ones.
fn healthy_still_served(hub: &Hub, healthy: &[Healthy], from: usize) {
    broadcast_numbered(hub, from..from + 10);
    for client in healthy {
        client.expect_numbered(from..from + 10);
    }
    let ids: Vec<_> = hub.clients().iter().map(|c| c.id).collect();
    for client in healthy {
        assert!(ids.contains(&client.id), "{} is gone: {ids:?}", client.id);
    }
}

const WINDOW: usize = 50;

/// A client that reads one byte a second falls behind and is eventually `Slow` under the
/// `Disconnect` policy; what it did read is the exact start of the stream.
#[test]
fn one_byte_a_second_reader_is_eventually_slow() {
    let hub = Hub::builder()
        .send_buffer(Some(4 * 1024))
        .queue_bytes(16 * 1024)
        .write_timeout(None)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::new(hub.subscribe());
    let healthy = healthy_pair(&hub, &mut events, Framing::Lines);
    let mut slow = connect_with_rcvbuf(hub.local_addr(), TINY);
    let slow_id = events.connected(slow.local_addr().expect("addr"));

    let (stop, stopped) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match slow.read(&mut byte) {
                Ok(1) => got.push(byte[0]),
                _ => return got,
            }
            // One byte a second: paced by a channel that only fires when the test ends.
            match stopped.recv_timeout(Duration::from_secs(1)) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return got,
            }
        }
    });

    let mut next = 0;
    while !events.has_left(slow_id) {
        assert!(next < 1_000_000, "the slow reader was never disconnected");
        broadcast_paced(&hub, &healthy, next..next + WINDOW, WINDOW);
        next += WINDOW;
        events.drain();
    }
    assert_eq!(events.disconnected(slow_id), DisconnectReason::Slow);
    drop(stop);
    let got = reader.join().expect("reader");
    let stream: Vec<u8> = (0..next)
        .flat_map(|i| frame(Framing::Lines, &numbered(i)))
        .collect();
    assert!(!got.is_empty());
    assert_eq!(
        got[..],
        stream[..got.len()],
        "the slow reader got a torn stream"
    );
    healthy_still_served(&hub, &healthy, next);
    assert_stats_add_up(&hub, &[(DisconnectReason::Slow, 1)]);
}

/// NUL bytes, invalid UTF-8 and control bytes are payload like any other: delivered
/// verbatim, in both directions.
fn garbage_is_delivered_verbatim(framing: Framing) {
    let hub = Hub::builder().framing(framing).bind(LOCAL).expect("bind");
    let mut events = EventLog::new(hub.subscribe());
    let healthy = healthy_pair(&hub, &mut events, framing);
    let mut hostile = connect(hub.local_addr());
    let hostile_id = events.connected(hostile.local_addr().expect("addr"));

    let garbage: [&[u8]; 6] = [
        b"\0",
        b"\0\0\0\0\0\0\0\0",
        b"\xff\xfe\xfd not utf-8 \xc3\x28 \xed\xa0\x80",
        b"\0nul\0inside\0",
        b"\x1b[31m\x07\x08\x7f",
        b"",
    ];
    let wire: Vec<u8> = garbage.iter().flat_map(|g| frame(framing, g)).collect();
    // In two writes cut in the middle of a frame.
    hostile.write_all(&wire[..7]).expect("write");
    hostile.write_all(&wire[7..]).expect("write");
    broadcast_numbered(&hub, 0..10);
    for g in garbage {
        hub.broadcast(g).expect("broadcast garbage");
    }
    broadcast_numbered(&hub, 10..20);
    for client in &healthy {
        client.expect_numbered(0..10);
        client.expect(&garbage);
        client.expect_numbered(10..20);
    }
    assert_eq!(events.messages(hostile_id, garbage.len()), garbage.to_vec());
    hostile.shutdown(Shutdown::Write).expect("close");
    assert_eq!(
        events.disconnected(hostile_id),
        DisconnectReason::PeerClosed
    );
    healthy_still_served(&hub, &healthy, 20);
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, 1)]);
}

#[test]
fn garbage_and_nuls_are_delivered_verbatim_in_lines() {
    garbage_is_delivered_verbatim(Framing::Lines);
}

#[test]
fn garbage_and_nuls_are_delivered_verbatim_length_prefixed() {
    garbage_is_delivered_verbatim(Framing::LengthPrefixed);
}
