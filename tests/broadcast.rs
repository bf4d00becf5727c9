//! Fan-out, ordering, framings, relay and targeted sends on real loopback sockets.
//!
//! (Arbitrary bytes, NULs and invalid UTF-8 in both directions are in `faults.rs`.)

mod util;

use hubcast::{DisconnectReason, Error, Event, Framing, Hub, Relay};
use util::{frame, join, numbered, seq_of, tag_seq_of, tagged, EventLog, Peer, LOCAL};

#[test]
fn every_one_of_50_clients_gets_every_message_in_order() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peers: Vec<Peer> = (0..50).map(|_| join(&hub, &mut events).0).collect();
    assert_eq!(hub.clients().len(), 50);

    for i in 0..100 {
        hub.broadcast(format!("message {i}")).unwrap();
    }
    for peer in &mut peers {
        for i in 0..100 {
            assert_eq!(peer.read_text_line(), format!("message {i}"));
        }
    }
    assert_eq!(hub.stats().accepted, 50);
    assert_eq!(hub.stats().connected, 50);
}

/// 10,000 messages each way, none lost, none reordered, for one framing.
fn ten_thousand_each_way(framing: Framing) {
    const N: usize = 10_000;
    const LEN: usize = 12;
    let hub = Hub::builder().framing(framing).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);

    // Hub to client: a reader thread runs while the host broadcasts.
    let reader = std::thread::spawn(move || {
        for i in 0..N {
            let msg = match framing {
                Framing::Lines => peer.read_line(),
                Framing::LengthPrefixed => peer.read_frame(),
                _ => peer.read_exact(LEN),
            };
            assert_eq!(
                seq_of(&msg),
                i,
                "{framing:?}: message {i} lost or out of order"
            );
            assert_eq!(msg, numbered(i, LEN));
        }
        peer
    });
    for i in 0..N {
        hub.broadcast(numbered(i, LEN)).unwrap();
    }
    let peer = reader.join().expect("reader thread");

    // Client to hub: a writer thread sends while the subscriber drains.
    let mut writer = peer.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let wire: Vec<u8> = (0..N)
            .flat_map(|i| frame(framing, &numbered(i, LEN)))
            .collect();
        // Several writes of odd sizes, so frames straddle reads.
        for part in wire.chunks(7919) {
            writer.write_all(part).unwrap();
        }
    });
    if framing == Framing::Raw {
        // Raw keeps no boundaries: what arrives, concatenated, is what was sent.
        let mut got = Vec::new();
        while got.len() < N * LEN {
            got.extend_from_slice(&events.expect_message(id));
        }
        let want: Vec<u8> = (0..N).flat_map(|i| numbered(i, LEN)).collect();
        assert!(got == want, "raw stream differs from what was sent");
    } else {
        for i in 0..N {
            let payload = events.expect_message(id);
            assert_eq!(
                payload,
                numbered(i, LEN),
                "{framing:?}: inbound message {i}"
            );
        }
    }
    writer.join().expect("writer thread");
    let stats = hub.stats();
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.disconnects.total(), 0, "{stats:?}");
    assert_eq!(hub.clients().len(), 1);
    drop(peer);
}

#[test]
fn ten_thousand_messages_in_order_with_lines() {
    ten_thousand_each_way(Framing::Lines);
}

#[test]
fn ten_thousand_messages_in_order_length_prefixed() {
    ten_thousand_each_way(Framing::LengthPrefixed);
}

#[test]
fn ten_thousand_messages_in_order_raw() {
    ten_thousand_each_way(Framing::Raw);
}

#[test]
fn lines_accept_crlf_and_split_multiline_broadcasts() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);

    peer.write(b"one\r\n\ntwo\n");
    assert_eq!(events.expect_message(id), b"one");
    assert_eq!(events.expect_message(id), b"");
    assert_eq!(events.expect_message(id), b"two");

    hub.broadcast("a\nb").unwrap();
    hub.broadcast("ends with newline\n").unwrap();
    assert_eq!(peer.read_line(), b"a");
    assert_eq!(peer.read_line(), b"b");
    assert_eq!(peer.read_line(), b"ends with newline");
    hub.broadcast("next").unwrap();
    assert_eq!(
        peer.read_line(),
        b"next",
        "a message ending in \\n got a second one"
    );
}

#[test]
fn length_prefixed_round_trip_both_ways() {
    let payloads: [&[u8]; 4] = [
        b"",
        b"with\nnewline\r\n",
        &[0, 1, 2, 255, 254],
        &[b'x'; 70_000],
    ];
    let hub = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .max_frame(100_000)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);

    let mut wire = Vec::new();
    for payload in payloads {
        wire.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        wire.extend_from_slice(payload);
    }
    peer.write(&wire);
    for payload in payloads {
        assert_eq!(events.expect_message(id), payload);
    }

    for payload in payloads {
        hub.broadcast(payload).unwrap();
    }
    // The exact bytes on the wire: a 4-byte big-endian length, then the payload.
    let got = peer.read_exact(wire.len());
    assert!(got == wire, "length-prefixed bytes on the wire differ");
}

#[test]
fn raw_framing_adds_nothing_and_strips_nothing() {
    let hub = Hub::builder().framing(Framing::Raw).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);

    let sent: &[u8] = b"no\nframing\x00\xffat all";
    peer.write(sent);
    let mut got = Vec::new();
    while got.len() < sent.len() {
        got.extend_from_slice(&events.expect_message(id));
    }
    assert_eq!(got, sent);

    hub.broadcast("abc").unwrap();
    hub.broadcast("def\n").unwrap();
    hub.broadcast(b"\x00").unwrap();
    assert_eq!(peer.read_exact(8), b"abcdef\n\x00");
}

#[test]
fn relay_all_reaches_every_client_including_the_sender() {
    let hub = Hub::builder().relay(Relay::All).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut a, a_id) = join(&hub, &mut events);
    let (mut b, _) = join(&hub, &mut events);
    let (mut c, _) = join(&hub, &mut events);

    a.write(b"hello from a\n");
    // Subscribers get the message too, whatever the relay mode.
    assert_eq!(events.expect_message(a_id), b"hello from a");
    for peer in [&mut a, &mut b, &mut c] {
        assert_eq!(peer.read_line(), b"hello from a");
    }
}

#[test]
fn relay_others_skips_the_sender() {
    let hub = Hub::builder().relay(Relay::Others).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut a, a_id) = join(&hub, &mut events);
    let (mut b, _) = join(&hub, &mut events);
    let (mut c, _) = join(&hub, &mut events);

    a.write(b"hello from a\n");
    assert_eq!(events.expect_message(a_id), b"hello from a");
    // The relay is queued before the event is emitted, so this marker comes after it.
    hub.broadcast("marker").unwrap();
    assert_eq!(b.read_line(), b"hello from a");
    assert_eq!(c.read_line(), b"hello from a");
    for peer in [&mut b, &mut c] {
        assert_eq!(peer.read_line(), b"marker");
    }
    assert_eq!(
        a.read_line(),
        b"marker",
        "the sender got its own message back"
    );
}

#[test]
fn relay_off_sends_nothing_to_clients() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut a, a_id) = join(&hub, &mut events);
    let (mut b, _) = join(&hub, &mut events);

    a.write(b"only for the host\n");
    assert_eq!(events.expect_message(a_id), b"only for the host");
    hub.broadcast("marker").unwrap();
    assert_eq!(a.read_line(), b"marker");
    assert_eq!(b.read_line(), b"marker");
}

#[test]
fn send_to_and_broadcast_except_address_the_right_clients() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut a, a_id) = join(&hub, &mut events);
    let (mut b, b_id) = join(&hub, &mut events);
    let (mut c, _) = join(&hub, &mut events);

    hub.send_to(b_id, "only b").unwrap();
    hub.broadcast_except(a_id, "not a").unwrap();
    hub.broadcast("everyone").unwrap();

    assert_eq!(a.read_line(), b"everyone");
    assert_eq!(b.read_line(), b"only b");
    assert_eq!(b.read_line(), b"not a");
    assert_eq!(b.read_line(), b"everyone");
    assert_eq!(c.read_line(), b"not a");
    assert_eq!(c.read_line(), b"everyone");
}

#[test]
fn broadcast_except_an_unknown_client_reaches_everyone() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (gone, gone_id) = join(&hub, &mut events);
    let (mut a, _) = join(&hub, &mut events);
    drop(gone);
    assert_eq!(
        events.expect_disconnected(gone_id),
        DisconnectReason::PeerClosed
    );

    hub.broadcast_except(gone_id, "still sent").unwrap();
    assert_eq!(a.read_line(), b"still sent");
}

#[test]
fn concurrent_broadcasters_keep_each_threads_order() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 1_000;
    const LEN: usize = 20;
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peers: Vec<Peer> = (0..3).map(|_| join(&hub, &mut events).0).collect();

    let readers: Vec<_> = peers
        .drain(..)
        .map(|mut peer| {
            std::thread::spawn(move || {
                let mut next = [0usize; THREADS];
                for _ in 0..THREADS * PER_THREAD {
                    let line = peer.read_line();
                    assert_eq!(line.len(), LEN, "torn message");
                    let (t, seq) = tag_seq_of(&line);
                    assert_eq!(seq, next[t], "thread {t}'s messages out of order or lost");
                    next[t] += 1;
                }
                next
            })
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let hub = &hub;
            scope.spawn(move || {
                for seq in 0..PER_THREAD {
                    hub.broadcast(tagged(t, seq, LEN)).unwrap();
                }
            });
        }
    });
    for reader in readers {
        assert_eq!(reader.join().expect("reader thread"), [PER_THREAD; THREADS]);
    }
}

/// Where the machine has IPv6 loopback (std can bind `[::1]`), the hub works over it;
/// where it has not, binding fails with `Error::Bind`.
#[test]
fn ipv6_loopback_works_or_fails_to_bind_like_std() {
    let available = std::net::TcpListener::bind("[::1]:0").is_ok();
    let hub = match Hub::bind("[::1]:0") {
        Ok(hub) => hub,
        Err(err) => {
            assert!(!available, "std can bind [::1], the hub cannot: {err}");
            assert!(matches!(err, Error::Bind { .. }), "{err:?}");
            return;
        }
    };
    assert!(available, "the hub bound [::1], std cannot");
    assert!(hub.local_addr().is_ipv6());
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    let id = match events.next() {
        Event::Connected { client, addr, .. } => {
            assert_eq!(addr, peer.addr());
            assert!(addr.is_ipv6(), "{addr}");
            client
        }
        other => panic!("expected Connected, got {other:?}"),
    };
    assert_eq!(hub.clients()[0].addr, peer.addr());
    peer.write(b"over v6\n");
    assert_eq!(events.expect_message(id), b"over v6");
    hub.broadcast("back over v6").unwrap();
    assert_eq!(peer.read_line(), b"back over v6");
}

#[test]
fn connected_event_reports_the_peer_address() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let peer = Peer::connect(hub.local_addr());
    let Event::Connected { client, addr, .. } = events.next() else {
        panic!("no Connected")
    };
    assert_eq!(addr, peer.addr());
    let clients = hub.clients();
    assert_eq!(clients.len(), 1);
    assert_eq!(
        (clients[0].id, clients[0].addr, clients[0].dropped),
        (client, addr, 0)
    );
}

/// One hub, two listeners: a broadcast reaches the clients of both, and a client of one
/// relays to the other's.
#[test]
fn clients_of_every_listener_get_every_broadcast() {
    let hub = Hub::builder()
        .relay(hubcast::Relay::Others)
        .listen(LOCAL, hubcast::Transport::Tcp)
        .bind(LOCAL)
        .expect("bind");
    let addrs = hub.local_addrs();
    assert_eq!(addrs.len(), 2);
    assert_eq!(addrs[0].addr, hub.local_addr());
    assert_ne!(addrs[0].addr, addrs[1].addr);
    assert!(addrs.iter().all(|a| a.transport == hubcast::Transport::Tcp));
    let mut events = EventLog::subscribe(&hub);
    let mut first = Peer::connect(addrs[0].addr);
    events.expect_connected();
    let mut second = Peer::connect(addrs[1].addr);
    events.expect_connected();
    hub.broadcast("to both").unwrap();
    assert_eq!(first.read_line(), b"to both");
    assert_eq!(second.read_line(), b"to both");
    second.write(b"from the second\n");
    assert_eq!(first.read_line(), b"from the second");
}

#[test]
fn listeners_that_cannot_be_bound_or_served_are_errors() {
    match Hub::builder()
        .listen("127.0.0.1:99999", hubcast::Transport::Tcp)
        .bind(LOCAL)
    {
        Err(hubcast::Error::Bind { addr, .. }) => assert_eq!(addr, "127.0.0.1:99999"),
        other => panic!("unexpected {other:?}"),
    }
    // A TLS listener with no TLS configuration (or without the feature).
    assert!(matches!(
        Hub::builder()
            .listen(LOCAL, hubcast::Transport::Tls)
            .bind(LOCAL),
        Err(hubcast::Error::Config(_))
    ));
}
