//! Hostile clients: one that reads one byte a second, and ones that send garbage (NULs,
//! invalid UTF-8, control bytes, empty frames) in frames cut across writes. Each runs
//! beside two healthy clients, and each test checks the hostile client's exact fate, that
//! the healthy clients got every broadcast in order, and that the hub's counters add up.
//!
//! The other hostile clients have the file of their concern: resetting or half-closing
//! with a backlog in `disconnect.rs`; never reading, under each policy, in
//! `slow_client.rs`; vanished peers, silent ones and ones stalling inside a frame in
//! `timeouts.rs`; oversized frames in `limits.rs`; silent or broken handshakes in
//! `admission.rs`.

mod util;

use std::io::Read;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use hubcast::{DisconnectReason, Framing, Hub};
use util::{
    assert_stats_add_up, broadcast_numbered, broadcast_paced, frame, healthy_pair,
    healthy_still_served, numbered, EventLog, Peer, LOCAL, MSG_LEN, SEND_BUFFER, TINY,
};

/// A client that reads one byte a second falls behind and is eventually `Slow` under the
/// `Disconnect` policy; what it did read is the exact start of the stream.
#[test]
fn one_byte_a_second_reader_is_eventually_slow() {
    const WINDOW: usize = 50;
    let hub = Hub::builder()
        .send_buffer(Some(SEND_BUFFER))
        .queue_bytes(16 * 1024)
        .write_timeout(None)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let healthy = healthy_pair(&hub, &mut events, Framing::Lines);
    let mut slow = Peer::connect_rcvbuf(hub.local_addr(), TINY);
    let slow_id = events.connected(slow.addr());

    let (stop, stopped) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match slow.stream.read(&mut byte) {
                Ok(1) => got.push(byte[0]),
                _ => return got,
            }
            // The scenario: one byte a second. The wait ends early when the test drops
            // `stop`.
            match stopped.recv_timeout(Duration::from_secs(1)) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return got,
            }
        }
    });

    let mut next = 0;
    while !events.has_left(slow_id) {
        assert!(next < 1_000_000, "the slow reader was never disconnected");
        broadcast_paced(&hub, &healthy, next..next + WINDOW, MSG_LEN, WINDOW);
        next += WINDOW;
        events.drain();
    }
    assert_eq!(events.disconnected(slow_id), DisconnectReason::Slow);
    drop(stop);
    let got = reader.join().expect("reader");
    let stream: Vec<u8> = (0..next)
        .flat_map(|i| frame(Framing::Lines, &numbered(i, MSG_LEN)))
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
/// verbatim, in both directions, even when the client's frames are cut across writes.
fn garbage_is_delivered_verbatim(framing: Framing) {
    let hub = Hub::builder().framing(framing).bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let healthy = healthy_pair(&hub, &mut events, framing);
    let mut hostile = Peer::connect(hub.local_addr());
    let hostile_id = events.connected(hostile.addr());

    let garbage: [&[u8]; 7] = [
        b"\0",
        b"\0\0\0\0\0\0\0\0",
        b"\xff\xfe\xfd not utf-8 \xc3\x28 \xed\xa0\x80",
        b"\xff\xfe\x00bad \xc3( \xed\xa0\x80 end",
        b"\0nul\0inside\0",
        b"\x1b[31m\x07\x08\x7f",
        b"",
    ];
    let wire: Vec<u8> = garbage.iter().flat_map(|g| frame(framing, g)).collect();
    // In two writes cut in the middle of a frame.
    hostile.write(&wire[..7]);
    hostile.write(&wire[7..]);
    broadcast_numbered(&hub, 0..10, MSG_LEN);
    for g in garbage {
        hub.broadcast(g).expect("broadcast garbage");
    }
    broadcast_numbered(&hub, 10..20, MSG_LEN);
    for client in &healthy {
        client.expect_numbered(0..10, MSG_LEN);
        client.expect(&garbage);
        client.expect_numbered(10..20, MSG_LEN);
    }
    assert_eq!(events.messages(hostile_id, garbage.len()), garbage.to_vec());
    // The hostile client itself gets the garbage back as it was broadcast.
    for i in 0..10 {
        assert_eq!(hostile.next_frame(framing), Some(numbered(i, MSG_LEN)));
    }
    for g in garbage {
        assert_eq!(hostile.next_frame(framing).as_deref(), Some(g));
    }
    hostile.shutdown_write();
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
