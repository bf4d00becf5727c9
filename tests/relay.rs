//! Relay mode: what clients send reaches the other clients, batched, in order, exactly
//! once, within every bound. (A client cut as slow by the relay of its own messages, on
//! every wire, is in `tests/slow_client.rs`.)

mod util;

use hubcast::{Hub, Relay};
use util::{stats_when, EventLog, Peer, TINY};

/// A line from publisher `p` with sequence number `seq`, padded to `len` bytes.
fn line(p: usize, seq: usize, len: usize) -> Vec<u8> {
    let mut msg = format!("p{p:02}:{seq:06}").into_bytes();
    msg.resize(len, b'.');
    msg.push(b'\n');
    msg
}

/// (publisher, seq) of a line made by [`line`].
fn parse(msg: &[u8]) -> (usize, usize) {
    let text = std::str::from_utf8(&msg[..10]).expect("ascii");
    (text[1..3].parse().unwrap(), text[4..10].parse().unwrap())
}

/// Connects `n` clients and returns them with their ids.
fn clients(hub: &Hub, events: &mut EventLog, n: usize) -> Vec<(Peer, hubcast::ClientId)> {
    (0..n).map(|_| util::join(hub, events)).collect()
}

/// Several clients publish at once, each many small lines in few writes, so that relayed
/// frames from different senders share batches. Every client gets every other client's
/// lines in each sender's order and exactly once, never its own (`Relay::Others`), and
/// the counters add up exactly.
#[test]
fn relayed_batches_keep_order_and_exclude_the_sender() {
    const PUBLISHERS: usize = 4;
    const LINES: usize = 2_000;
    const LEN: usize = 40;
    let hub = Hub::builder()
        .relay(Relay::Others)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let peers = clients(&hub, &mut events, PUBLISHERS);
    // Nobody drains it from here on: a full subscription would pause the hub.
    drop(events);
    let readers: Vec<_> = peers
        .into_iter()
        .enumerate()
        .map(|(me, (mut peer, _))| {
            std::thread::spawn(move || {
                let mut writer = peer.stream.try_clone().unwrap();
                let publisher = std::thread::spawn(move || {
                    use std::io::Write;
                    // 100 lines per write: reads hold many frames.
                    for chunk in (0..LINES).collect::<Vec<_>>().chunks(100) {
                        let bytes: Vec<u8> = chunk.iter().flat_map(|&i| line(me, i, LEN)).collect();
                        writer.write_all(&bytes).unwrap();
                    }
                });
                let mut next = [0usize; PUBLISHERS];
                for _ in 0..(PUBLISHERS - 1) * LINES {
                    let (from, seq) = parse(&peer.read_line());
                    assert_ne!(from, me, "client {me} got its own line");
                    assert_eq!(
                        seq, next[from],
                        "client {me}: line from {from} out of order"
                    );
                    next[from] += 1;
                }
                publisher.join().unwrap();
                (peer, next)
            })
        })
        .collect();
    let mut peers = Vec::new();
    for (me, reader) in readers.into_iter().enumerate() {
        let (peer, next) = reader.join().expect("reader");
        for (from, &count) in next.iter().enumerate() {
            assert_eq!(count, if from == me { 0 } else { LINES });
        }
        peers.push(peer);
    }
    // Nothing more is on its way to anyone.
    for peer in &mut peers {
        assert_eq!(
            peer.read_line_within(std::time::Duration::from_millis(50)),
            None
        );
    }
    let want_out = (PUBLISHERS * (PUBLISHERS - 1) * LINES) as u64;
    let stats = stats_when(&hub, |s| s.frames_out == want_out);
    assert_eq!(stats.frames_in, (PUBLISHERS * LINES) as u64, "{stats:?}");
    assert_eq!(stats.frames_out, want_out, "{stats:?}");
    assert_eq!(stats.dropped, 0);
}

/// `Relay::All` sends each client its own lines too, in order with everyone else's.
#[test]
fn relay_all_includes_the_sender() {
    let hub = Hub::builder()
        .relay(Relay::All)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peers = clients(&hub, &mut events, 2);
    let burst: Vec<u8> = (0..500).flat_map(|i| line(0, i, 20)).collect();
    peers[0].0.write(&burst);
    for (peer, _) in &mut peers {
        for i in 0..500 {
            assert_eq!(parse(&peer.read_line()), (0, i));
        }
    }
}

/// A client that stops reading meets its policy per frame, even inside relayed batches:
/// under `DropOldest` what it finally receives plus what was dropped for it is exactly what
/// was relayed to it, and the last line (never the oldest) always arrives.
#[test]
fn drops_inside_relayed_batches_are_counted_per_frame() {
    const LINES: usize = 20_000;
    let hub = Hub::builder()
        .relay(Relay::Others)
        .queue_bytes(64 * 1024)
        .max_frame(1024)
        .slow_client_policy(hubcast::SlowClientPolicy::DropOldest)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut publisher, publisher_id) = util::join(&hub, &mut events);
    // A small receive window, so the kernel cannot hide the backlog.
    let mut sleeper = Peer::connect_rcvbuf(hub.local_addr(), TINY);
    let sleeper_id = events.expect_connected();
    let burst: Vec<u8> = (0..LINES).flat_map(|i| line(0, i, 60)).collect();
    publisher.write(&burst);
    publisher.write(b"end\n");
    // Every line reached the hub before the sleeper reads, so some were dropped for it.
    for _ in 0..LINES {
        events.expect_message(publisher_id);
    }
    assert_eq!(events.expect_message(publisher_id), b"end");
    let mut received = 0;
    let mut last = None;
    loop {
        let got = sleeper.read_line();
        if got == b"end" {
            break;
        }
        let (_, seq) = parse(&got);
        assert!(last.map_or(true, |l| seq > l), "out of order");
        last = Some(seq);
        received += 1;
    }
    let dropped = hub.client(sleeper_id).expect("still connected").dropped;
    assert!(dropped > 0, "nothing was dropped: the test did not test");
    assert_eq!(received + dropped, LINES as u64);
    let stats = hub.stats();
    assert_eq!(stats.dropped, dropped, "{stats:?}");
}
