//! Topics decided at connect (`HubBuilder::admit`, `Auth::Admit`; issue 16): a client is in
//! its topics before its first message is read, so a line sent the moment it connects
//! reaches the room; `#joined` comes before anything of the topic; a panicking hook costs
//! only its connection; a topic that cannot be joined is skipped and counted; and a relayed
//! message that reaches nobody is counted (`Stats::relayed_to_nobody`).

mod util;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hubcast::{Admit, Auth, Event, Framing, Hub, Relay};
use util::*;

/// Clients in the connect-and-send tests, and how many are open at once (within the
/// usual descriptor limit of 1,024, counting the hub's side too).
const CLIENTS: usize = 1_000;
const BATCH: usize = 100;

/// Every client in `lobby`, relayed to the other members of its rooms.
fn lobby_hub() -> hubcast::HubBuilder {
    Hub::builder()
        .relay(Relay::Topics)
        .admit(|_| Admit::new().topic("lobby"))
}

/// An observer in `lobby`: a client whose `Connected` was seen, so it is in the room.
fn observer(hub: &Hub) -> Peer {
    let mut events = EventLog::subscribe(hub);
    let (peer, id) = join(hub, &mut events);
    assert_eq!(hub.client(id).unwrap().topics, ["lobby"]);
    peer
}

/// Reads `n` lines from the observer and checks they are exactly `expected`.
fn expect_lines(observer: &mut Peer, expected: impl Iterator<Item = String>) {
    let mut want: HashSet<String> = expected.collect();
    while !want.is_empty() {
        let line = observer.read_text_line();
        assert!(want.remove(&line), "unexpected or repeated line {line:?}");
    }
}

#[test]
fn tcp_clients_that_send_at_once_reach_the_room() {
    let hub = lobby_hub().bind(LOCAL).expect("bind");
    let mut watcher = observer(&hub);
    for batch in 0..CLIENTS / BATCH {
        let range = batch * BATCH..(batch + 1) * BATCH;
        // Each connects and sends its line in its first write, as `nc` piping a line does.
        let clients: Vec<Peer> = range
            .clone()
            .map(|i| {
                let mut peer = Peer::connect(hub.local_addr());
                peer.write(format!("hello from {i}\n").as_bytes());
                peer
            })
            .collect();
        expect_lines(&mut watcher, range.map(|i| format!("hello from {i}")));
        // Closed only once read: closing with unread input could reset the connection
        // before the hub read the line.
        drop(clients);
    }
    let stats = hub.stats();
    assert_eq!(stats.relayed_to_nobody, 0, "{stats:?}");
    assert_eq!(stats.admit_topics_refused, 0);
}

#[cfg(feature = "websocket")]
#[test]
fn websocket_messages_sent_with_the_upgrade_reach_the_room() {
    let hub = mixed(lobby_hub());
    let mut watcher = observer(&hub);
    let addr = ws_addr(&hub);
    let request = valid_request(&hub);
    for batch in 0..CLIENTS / BATCH {
        let range = batch * BATCH..(batch + 1) * BATCH;
        // The upgrade request and a text message in one write.
        let clients: Vec<Peer> = range
            .clone()
            .map(|i| {
                let mut peer = Peer::connect(addr);
                let mut bytes = request.clone().into_bytes();
                bytes.extend(masked(1, format!("hello from {i}").as_bytes()));
                peer.write(&bytes);
                peer
            })
            .collect();
        expect_lines(&mut watcher, range.map(|i| format!("hello from {i}")));
        drop(clients);
    }
    assert_eq!(hub.stats().relayed_to_nobody, 0);
}

#[test]
fn joined_comes_before_any_message_of_the_topic() {
    let hub = rooms()
        .admit(|_| Admit::new().topic("lobby"))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    for n in 0..200 {
        // The host publishes to lobby as each client connects, so that it joins mid-stream.
        hub.publish("lobby", format!("news {n}")).expect("publish");
        let mut peer = Peer::connect(hub.local_addr());
        // Sent at once: its own message is numbered in lobby too (`#own`).
        peer.write(b"hi\n");
        for m in 0..3 {
            hub.publish("lobby", format!("news {n}.{m}"))
                .expect("publish");
        }
        read_at(&mut peer);
        let joined = peer.read_text_line();
        let words: Vec<&str> = joined.split(' ').collect();
        assert_eq!(&words[..2], ["#joined", "@lobby"], "{joined}");
        let start: u64 = words[3].parse().unwrap();
        // The first lobby message it gets, its own marker or another's, follows #joined.
        let line = peer.read_text_line();
        let seq = match line.strip_prefix("#own @lobby ") {
            Some(seq) => seq.parse::<u64>().unwrap(),
            None => line.split('@').next().unwrap().parse().unwrap(),
        };
        assert_eq!(seq, start + 1, "{joined} then {line}");
        let id = events.connected(peer.addr());
        // Connected, then TopicJoined, before its message.
        match events.next() {
            Event::TopicJoined { client, topic, .. } => {
                assert_eq!((client, topic.as_str()), (id, "lobby"));
            }
            other => panic!("expected TopicJoined, got {other:?}"),
        }
    }
}

#[test]
fn a_panicking_admit_hook_costs_only_its_connection() {
    for how in PANICS {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let hub = Hub::builder()
            .admit(move |_| {
                if counted.fetch_add(1, Ordering::SeqCst) == 1 {
                    panic_as(how);
                }
                Admit::new().topic("lobby")
            })
            .bind(LOCAL)
            .expect("bind");
        let mut events = EventLog::subscribe(&hub);
        let (mut first, a) = join(&hub, &mut events);
        let mut doomed = Peer::connect(hub.local_addr());
        doomed.expect_closed();
        let (mut third, c) = join(&hub, &mut events);
        let stats = stats_when(&hub, |s| s.rejected == 1);
        assert_eq!((stats.rejected, stats.callback_panics), (1, 1), "{how}");
        assert!(!events.saw_connected(doomed.addr()), "{how}");
        hub.publish("lobby", "still here").expect("publish");
        assert_eq!(first.read_line(), b"still here");
        assert_eq!(third.read_line(), b"still here");
        let clients: Vec<_> = hub.clients().iter().map(|c| c.id).collect();
        assert_eq!(clients.len(), 2, "{clients:?}");
        assert!(clients.contains(&a) && clients.contains(&c));
    }
}

#[test]
fn topics_that_cannot_be_joined_are_skipped() {
    let hub = Hub::builder()
        .max_topics_per_client(2)
        .admit(|_| {
            Admit::new()
                .topic("has space")
                .topic("lobby")
                .topic("lobby")
                .topic("news")
                .topic("third")
        })
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    for topic in ["lobby", "news"] {
        match events.next() {
            Event::TopicJoined {
                client, topic: t, ..
            } => assert_eq!((client, &*t), (id, topic)),
            other => panic!("expected TopicJoined, got {other:?}"),
        }
    }
    assert_eq!(hub.client(id).unwrap().topics, ["lobby", "news"]);
    // An invalid name and one over the per-client limit; the repeat is no refusal.
    assert_eq!(hub.stats().admit_topics_refused, 2);
    hub.publish("news", "n").expect("publish");
    assert_eq!(peer.read_line(), b"n");
}

#[test]
fn the_authenticator_decides_and_the_hook_fills_in() {
    let hooked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hooked);
    let hub = Hub::builder()
        .authenticate(|request| match request.frame() {
            Some(b"admit") => Auth::Admit(Admit::new().name("ann").topic("vip")),
            Some(b"as") => Auth::AcceptAs("bob".into()),
            Some(b"plain") => Auth::Accept,
            _ => Auth::Reject,
        })
        .admit(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Admit::new().name("hooked").topic("lobby")
        })
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut peers = Vec::new();
    for (frame, name, topic) in [
        ("admit", "ann", "vip"),
        ("as", "bob", "lobby"),
        ("plain", "hooked", "lobby"),
    ] {
        let mut peer = Peer::connect(hub.local_addr());
        peer.send(Framing::Lines, frame.as_bytes());
        let id = events.connected(peer.addr());
        let info = hub.client(id).unwrap();
        assert_eq!(
            (info.name.as_deref(), &info.topics[..]),
            (Some(name), &[topic.to_owned()][..])
        );
        peers.push(peer);
    }
    assert_eq!(
        hooked.load(Ordering::SeqCst),
        2,
        "not called after Auth::Admit"
    );
}

#[test]
fn relayed_messages_that_reach_nobody_are_counted() {
    // Relay::Topics: the first client is in no topic, the others in lobby.
    let admitted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&admitted);
    let hub = Hub::builder()
        .relay(Relay::Topics)
        .admit(move |_| match counted.fetch_add(1, Ordering::SeqCst) {
            0 => Admit::new(),
            _ => Admit::new().topic("lobby"),
        })
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut peers = Vec::new();
    // In no topic, then alone in lobby: nobody hears either.
    for sent in 1..=2 {
        let (mut peer, id) = join(&hub, &mut events);
        peer.write(b"nobody hears\n");
        assert_eq!(events.messages(id, 1), [&b"nobody hears"[..]]);
        let stats = stats_when(&hub, |s| s.relayed_to_nobody == sent);
        assert_eq!(stats.relayed_to_nobody, sent);
        peers.push(peer);
    }
    // Someone else in lobby now: heard, not counted.
    let (mut listener, _) = join(&hub, &mut events);
    peers[1].write(b"heard\n");
    assert_eq!(listener.read_line(), b"heard");
    assert_eq!(hub.stats().relayed_to_nobody, 2);

    // Relay::Others: alone, then not.
    let hub = Hub::builder()
        .relay(Relay::Others)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let (mut alone, id) = join(&hub, &mut events);
    alone.write(b"anyone?\n");
    events.messages(id, 1);
    assert_eq!(
        stats_when(&hub, |s| s.relayed_to_nobody == 1).relayed_to_nobody,
        1
    );
    let (mut other, _) = join(&hub, &mut events);
    alone.write(b"hello\n");
    assert_eq!(other.read_line(), b"hello");
    assert_eq!(hub.stats().relayed_to_nobody, 1);
}
