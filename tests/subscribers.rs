//! Subscriptions: every subscriber sees every event in the same order; one that is never
//! drained pauses the hub, which holds clients back through TCP instead of losing events or
//! growing memory; one dropped while the hub waits for it holds nothing back; one that
//! catches up resumes the hub. A full subscription that is dropped holds nothing back, the
//! drop alone ending a pause.

mod util;

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hubcast::{
    ClientId, DisconnectReason, Error, Event, Framing, Hub, ShutdownReport, Stats, Subscription,
};
use util::{
    assert_stats_add_up, frame, join, tag_seq_of, tagged, EventLog, Healthy, Peer, LOCAL, TIMEOUT,
};

/// Lines of 100 bytes with the newline.
const LEN: usize = 99;

/// A client that writes `lines` numbered lines of stream `tag` as fast as TCP lets it, then
/// half-closes, and tells `done` its tag. Its send buffer is small, so what it writes
/// cannot hide in its own kernel: it finishes only if the hub keeps reading. The thread
/// returns the connection, to keep it open until joined.
fn chatty(hub: &Hub, tag: usize, lines: usize, done: &mpsc::Sender<usize>) -> JoinHandle<Peer> {
    let mut peer = Peer::connect_sndbuf(hub.local_addr(), 16 * 1024);
    let done = done.clone();
    thread::spawn(move || {
        let wire: Vec<u8> = (0..lines)
            .flat_map(|i| frame(Framing::Lines, &tagged(tag, i, LEN)))
            .collect();
        peer.write(&wire);
        peer.shutdown_write();
        let _ = done.send(tag);
        peer
    })
}

/// Checks `events` is a correct story for `clients` chatty clients of `lines` lines each:
/// for each client `Connected`, then every line in order, then `Disconnected` with
/// `PeerClosed`.
fn check_story(events: &[Event], clients: usize, lines: usize) {
    let mut next: HashMap<ClientId, (usize, usize)> = HashMap::new(); // id -> (tag, line)
    let mut connected = Vec::new();
    let mut left = Vec::new();
    for event in events {
        match event {
            Event::Connected { client, .. } => {
                assert!(!connected.contains(client), "{client} connected twice");
                connected.push(*client);
            }
            Event::Message {
                client, payload, ..
            } => {
                assert!(connected.contains(client) && !left.contains(client));
                assert_eq!(payload.len(), LEN, "{client}: torn line");
                let (tag, line) = tag_seq_of(payload);
                let expected = next.entry(*client).or_insert((tag, 0));
                assert_eq!(*expected, (tag, line), "{client}: lost or reordered");
                expected.1 += 1;
            }
            Event::Disconnected { client, reason, .. } => {
                assert_eq!(*reason, DisconnectReason::PeerClosed, "{client}");
                assert!(!left.contains(client), "{client} left twice");
                left.push(*client);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((connected.len(), left.len()), (clients, clients));
    let mut tags: Vec<usize> = next.values().map(|&(tag, _)| tag).collect();
    tags.sort_unstable();
    assert_eq!(tags, (0..clients).collect::<Vec<_>>(), "every client spoke");
    for (id, (tag, count)) in next {
        assert_eq!(
            count, lines,
            "{id} (stream {tag}) delivered {count} of {lines} lines"
        );
    }
}

/// Receives until `n` more clients have left and returns everything received so far.
fn collect_until_left(log: &mut EventLog, n: usize) -> Vec<Event> {
    let mut left = 0;
    while left < n {
        left += usize::from(matches!(log.next(), Event::Disconnected { .. }));
    }
    log.seen.clone()
}

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
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let from_thread = thread::spawn(move || {
        let id = events.expect_connected();
        (id, events.expect_message(id))
    });
    let mut peer = Peer::connect(hub.local_addr());
    peer.write(b"across threads\n");
    let (id, payload) = from_thread.join().expect("subscriber thread");
    assert_eq!(payload, b"across threads");
    thread::scope(|scope| {
        scope.spawn(|| hub.send_to(id, "from another thread").unwrap());
    });
    assert_eq!(peer.read_line(), b"from another thread");
}

/// Twenty subscriptions with small queues, so that they take turns pausing the hub, see
/// the same events in the same order: each client's `Connected`, its lines in order, one
/// `Disconnected`. After a shutdown each ends with nothing more.
#[test]
fn many_subscribers_see_the_same_events_in_the_same_order() {
    const SUBSCRIBERS: usize = 20;
    const CLIENTS: usize = 5;
    const LINES: usize = 300;
    let hub = Hub::builder().event_capacity(64).bind(LOCAL).expect("bind");
    let mut first = EventLog::subscribe(&hub);
    let others: Vec<_> = (1..SUBSCRIBERS)
        .map(|_| {
            let mut log = EventLog::subscribe(&hub);
            thread::spawn(move || {
                let story = collect_until_left(&mut log, CLIENTS);
                (story, log.until_end())
            })
        })
        .collect();
    let (done, _) = mpsc::channel();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|tag| chatty(&hub, tag, LINES, &done))
        .collect();

    let story = collect_until_left(&mut first, CLIENTS);
    check_story(&story, CLIENTS, LINES);
    for writer in clients {
        writer.join().expect("writer");
    }
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, CLIENTS as u64)]);
    let report = hub.shutdown(TIMEOUT).expect("shutdown");
    assert_eq!(report.clients, 0);
    assert_eq!(first.until_end(), vec![]);
    for (i, other) in others.into_iter().enumerate() {
        let (other_story, rest) = other.join().expect("subscriber");
        assert!(
            other_story == story,
            "subscriber {} saw a different story",
            i + 1
        );
        assert_eq!(rest, vec![], "subscriber {}", i + 1);
    }
}

#[test]
fn a_later_subscriber_sees_only_later_events() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut early = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut early);
    let mut late = EventLog::subscribe(&hub);
    peer.write(b"hello\n");
    assert_eq!(early.expect_message(id), b"hello");
    assert_eq!(
        late.expect_message(id),
        b"hello",
        "the late subscriber got an old event"
    );
}

/// A subscription nobody drains fills, and the hub stops reading clients: the clients are
/// held back by TCP (none can finish sending its 1 MB), and the hub's memory stays bounded.
/// Once drained, every line arrives, in order, from every client.
#[test]
fn an_undrained_subscriber_pauses_the_hub_and_loses_nothing() {
    const CAPACITY: usize = 16;
    const CLIENTS: usize = 3;
    const LINES: usize = 10_000;
    let hub = Hub::builder()
        .event_capacity(CAPACITY)
        .bind(LOCAL)
        .expect("bind");
    let undrained = hub.subscribe();
    // Drained as events come, it shows the hub at work until the other one fills.
    let mut observer = EventLog::subscribe(&hub);
    let (done_tx, done) = mpsc::channel();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|tag| chatty(&hub, tag, LINES, &done_tx))
        .collect();

    observer.wait_until("the undrained subscription to fill", || {
        undrained.len() == CAPACITY
    });
    // For 300 ms, no client gets its 1 MB out: the hub is not reading.
    match done.recv_timeout(Duration::from_millis(300)) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("a client finished sending while the hub was paused: {other:?}"),
    }
    let paused = hub.stats();
    // At most one event per client beyond the subscription's room, and at most one read
    // (64 KiB) per client in the hub's buffers, while 3 MB wait to be sent.
    assert!(
        paused.frames_in <= (CAPACITY + CLIENTS) as u64,
        "the hub kept reading while paused: {paused:#?}"
    );
    assert!(
        paused.bytes_in <= (CLIENTS * 64 * 1024) as u64,
        "the hub kept reading while paused: {paused:#?}"
    );
    assert_eq!(undrained.len(), CAPACITY);
    // The pause is visible to the host.
    assert!(paused.paused.is_some(), "{paused:#?}");
    assert!(paused.pauses >= 1, "{paused:#?}");

    // Draining at last (the observer too, on a thread, or it would pause the hub in turn):
    // every line, in order, from every client, and the same story for both.
    let observer = thread::spawn(move || collect_until_left(&mut observer, CLIENTS));
    let mut undrained = EventLog::new(undrained);
    let story = collect_until_left(&mut undrained, CLIENTS);
    check_story(&story, CLIENTS, LINES);
    assert!(
        observer.join().expect("observer") == story,
        "the subscriptions saw different stories"
    );
    for writer in clients {
        writer.join().expect("writer");
    }
    assert_eq!(done.try_iter().count(), CLIENTS);
    assert!(undrained.sub().is_empty());
    // The stats are final once the hub has shut down.
    hub.shutdown(TIMEOUT).expect("shutdown");
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, CLIENTS as u64)]);
    assert_eq!(hub.stats().frames_in, (CLIENTS * LINES) as u64);
    assert_eq!(hub.stats().paused, None);
}

/// A subscription that fills, so that the hub pauses for it, and is then dropped mid-stream
/// holds nothing back: the other subscriber sees the whole story, which began as the
/// dropped one saw it, and the hub goes on accepting and serving clients.
#[test]
fn a_subscriber_dropped_while_the_hub_waits_for_it_holds_nothing_back() {
    const CAPACITY: usize = 8;
    const CLIENTS: usize = 3;
    const LINES: usize = 2_000;
    let hub = Hub::builder()
        .event_capacity(CAPACITY)
        .bind(LOCAL)
        .expect("bind");
    let neglected = hub.subscribe();
    let mut attentive = EventLog::subscribe(&hub);
    let (done, _) = mpsc::channel();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|tag| chatty(&hub, tag, LINES, &done))
        .collect();

    // The attentive subscriber goes on receiving what the hub emitted until the neglected
    // one filled; the neglected one reads a little, then goes away.
    attentive.wait_until("the neglected subscription to fill", || {
        neglected.len() == CAPACITY
    });
    let mut neglected = EventLog::new(neglected);
    let seen: Vec<Event> = (0..3).map(|_| neglected.next()).collect();
    drop(neglected);

    let story = collect_until_left(&mut attentive, CLIENTS);
    check_story(&story, CLIENTS, LINES);
    assert_eq!(story[..3], seen[..]);
    for writer in clients {
        writer.join().expect("writer");
    }
    // And the hub carries on for newcomers.
    let newcomer = Healthy::join(&hub, &mut attentive, Framing::Lines);
    hub.broadcast("still here").expect("broadcast");
    newcomer.expect(&[b"still here"]);
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, CLIENTS as u64)]);
}

#[test]
fn a_subscriber_that_catches_up_resumes_the_hub() {
    // Capacity 1: every single event fills the subscription.
    let hub = Hub::builder().event_capacity(1).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peers: Vec<(Peer, ClientId)> = (0..4).map(|_| join(&hub, &mut events)).collect();
    for (i, (peer, _)) in peers.iter_mut().enumerate() {
        let wire: Vec<u8> = (0..200)
            .flat_map(|k| frame(Framing::Lines, &tagged(i, k, 16)))
            .collect();
        peer.write(&wire);
    }
    let mut next = [0usize; 4];
    for _ in 0..4 * 200 {
        let Event::Message {
            client, payload, ..
        } = events.next()
        else {
            panic!("not a message")
        };
        let i = peers
            .iter()
            .position(|(_, id)| *id == client)
            .expect("known client");
        assert_eq!(tag_seq_of(&payload), (i, next[i]));
        next[i] += 1;
    }
    assert_eq!(next, [200; 4]);
}

/// A hub with one subscription drained as events come (`events`), and `neglected` others
/// with room for one event and never read: its client's `Connected` fills them, and its
/// first line overflows them, so the hub pauses. No client timeout is set, so no timer of
/// the dispatcher's wakes it while it is paused, but the pause's warning.
fn paused_for(neglected: usize) -> (Hub, EventLog, Peer, ClientId, Vec<Subscription>) {
    let hub = Hub::builder()
        .event_capacity(1)
        .write_timeout(None)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let subs: Vec<Subscription> = (0..neglected).map(|_| hub.subscribe()).collect();
    let (mut peer, id) = join(&hub, &mut events);
    peer.send(Framing::Lines, b"m1");
    assert_eq!(events.expect_message(id), b"m1");
    events.wait_until("the hub to pause", || hub.stats().paused.is_some());
    assert!(subs.iter().all(|sub| sub.len() == 1));
    (hub, events, peer, id, subs)
}

/// After a full subscription was dropped: the hub reads its client again, accepts a new
/// one, and serves it.
fn still_serving(hub: &Hub, events: &mut EventLog, peer: &mut Peer, id: ClientId) {
    peer.send(Framing::Lines, b"hello");
    assert_eq!(events.expect_message(id), b"hello");
    let newcomer = Healthy::join(hub, events, Framing::Lines);
    hub.broadcast("still here").expect("broadcast");
    newcomer.expect(&[b"still here"]);
    assert_eq!(peer.read_line(), b"still here");
}

/// Dropping the full subscription the hub paused for, as the docs advise, ends the pause:
/// the drop alone (on another thread, with no client, connection or host call to wake the
/// dispatcher) makes the dispatcher forget it. Its count of queued events never goes down
/// once it is dropped, so a dispatcher waiting for room in it waited for ever.
#[test]
fn dropping_the_full_subscription_the_hub_paused_for_ends_the_pause() {
    let (hub, mut events, mut peer, id, mut neglected) = paused_for(1);
    // Past the pause's warning, so that no timer of the dispatcher's wakes it in the drop's
    // place.
    events.wait_until("the pause to be logged", || {
        hub.stats()
            .paused
            .is_some_and(|paused| paused >= Duration::from_millis(1500))
    });
    let sub = neglected.pop().expect("a neglected subscription");
    thread::spawn(move || drop(sub)).join().expect("drop");
    events.wait_until("the pause to end", || hub.stats().paused.is_none());
    still_serving(&hub, &mut events, &mut peer, id);
}

/// A full subscription dropped before it overflows: the next event finds it gone instead
/// of pausing the hub for it for good.
#[test]
fn a_full_subscription_dropped_before_the_hub_pauses_holds_nothing_back() {
    let hub = Hub::builder().event_capacity(1).bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let neglected = hub.subscribe();
    let (mut peer, id) = join(&hub, &mut events);
    events.wait_until("the neglected subscription to fill", || {
        neglected.len() == 1
    });
    assert_eq!(hub.stats().paused, None);
    drop(neglected);
    peer.send(Framing::Lines, b"m1");
    assert_eq!(events.expect_message(id), b"m1");
    still_serving(&hub, &mut events, &mut peer, id);
}

/// Of two full subscriptions the hub paused for, one is dropped and the other catches up:
/// the hub resumes, the dropped one holding nothing back.
#[test]
fn a_full_subscription_dropped_beside_another_holds_nothing_back() {
    let (hub, mut events, mut peer, id, mut neglected) = paused_for(2);
    let dropped = neglected.pop().expect("a neglected subscription");
    let kept = neglected.pop().expect("a neglected subscription");
    thread::spawn(move || drop(dropped)).join().expect("drop");
    // The kept one still holds the hub back: its client's next line is not read.
    peer.send(Framing::Lines, b"m2");
    assert!(events.next_within(Duration::from_millis(200)).is_none());
    assert!(hub.stats().paused.is_some());
    // It catches up, and goes on draining until the hub stops.
    assert!(matches!(
        kept.recv_timeout(TIMEOUT),
        Ok(Event::Connected { .. })
    ));
    let drainer = thread::spawn(move || kept.iter().count());
    assert_eq!(events.expect_message(id), b"m2");
    still_serving(&hub, &mut events, &mut peer, id);
    hub.shutdown(TIMEOUT).expect("shutdown");
    // m1, m2, hello, the newcomer's Connected, and both clients' Disconnected.
    assert_eq!(drainer.join().expect("drainer"), 6);
}

/// One subscription shared by threads: every event is received once, in order within each
/// receiving thread; `try_recv` never waits, and `recv_timeout` keeps its deadline, while
/// another thread waits in `recv` on the same subscription.
#[test]
fn a_subscription_shared_by_threads_loses_nothing_and_never_blocks_try_recv() {
    let hub = Hub::bind(LOCAL).unwrap();
    let sub = hub.subscribe();
    let done = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|scope| {
        // Nothing is queued: one thread waits in recv, the others must not wait behind it.
        let waiter = scope.spawn(|| sub.recv());
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            assert!(matches!(sub.try_recv(), Err(hubcast::TryRecvError::Empty)));
        }
        let timed = std::time::Instant::now();
        assert!(matches!(
            sub.recv_timeout(Duration::from_millis(30)),
            Err(hubcast::RecvTimeoutError::Timeout)
        ));
        assert!(timed.elapsed() < Duration::from_secs(5));
        // A client's lines wake the waiter; four threads then share the rest.
        let mut peer = util::Peer::connect(hub.local_addr());
        let mut lines = Vec::new();
        for i in 0..2000 {
            lines.extend_from_slice(format!("{i}\n").as_bytes());
        }
        peer.write(&lines);
        drop(peer);
        let first = waiter.join().unwrap().expect("an event");
        assert!(matches!(first, Event::Connected { .. }), "{first:?}");
        // The client's departure comes after its lines: whoever receives it says so.
        let done = &done;
        let deadline = std::time::Instant::now() + util::TIMEOUT;
        let sub = &sub;
        let got: Vec<Vec<u64>> = (0..4)
            .map(|_| {
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        assert!(std::time::Instant::now() < deadline, "no departure");
                        match sub.recv_timeout(Duration::from_millis(10)) {
                            Ok(Event::Message { payload, .. }) => {
                                mine.push(std::str::from_utf8(&payload).unwrap().parse().unwrap())
                            }
                            Ok(Event::Disconnected { .. }) => {
                                done.store(true, std::sync::atomic::Ordering::SeqCst)
                            }
                            _ => {}
                        }
                    }
                    mine
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        for mine in &got {
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "out of order: {mine:?}"
            );
        }
        let mut all: Vec<u64> = got.concat();
        all.sort_unstable();
        assert_eq!(all, (0..2000).collect::<Vec<_>>());
    });
}
