//! Subscribers that misbehave: one that never drains while clients chatter, one dropped
//! mid-stream while the hub is paused on it, and many at once. No event may be lost or
//! reordered, the hub's memory stays bounded, and it keeps serving.

mod hostile_util;

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hostile_util::*;
use hubcast::{ClientId, DisconnectReason, Event, Hub, Subscription};

/// A client that writes `lines` lines tagged with `tag` as fast as TCP lets it, then
/// half-closes.
fn chatty(hub: &Hub, tag: usize, lines: usize) -> (TcpStream, JoinHandle<()>) {
    let stream = connect(hub.local_addr());
    let mut writer = stream.try_clone().expect("clone");
    let thread = thread::spawn(move || {
        let text: String = (0..lines).map(|i| format!("c{tag} {i:06}\n")).collect();
        writer.write_all(text.as_bytes()).expect("write");
        writer.shutdown(Shutdown::Write).expect("half-close");
    });
    (stream, thread)
}

/// Checks `events` is a correct story for `clients` chatty clients of `lines` lines each:
/// for each client `Connected`, then every line in order, then `Disconnected` with
/// `PeerClosed`. Returns the client ids by tag.
fn check_story(events: &[Event], clients: usize, lines: usize) -> Vec<ClientId> {
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
                let text = std::str::from_utf8(payload).expect("utf-8");
                let (tag, line) = text[1..].split_once(' ').expect("tagged line");
                let (tag, line): (usize, usize) = (tag.parse().unwrap(), line.parse().unwrap());
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
    let mut ids = vec![None; clients];
    for (id, (tag, count)) in next {
        assert_eq!(
            count, lines,
            "{id} (c{tag}) delivered {count} of {lines} lines"
        );
        ids[tag] = Some(id);
    }
    ids.into_iter()
        .map(|id| id.expect("every client spoke"))
        .collect()
}

/// Receives until `n` clients have left; fails after [`TIMEOUT`] without progress.
fn collect_until_left(sub: &Subscription, n: usize) -> Vec<Event> {
    let mut events = Vec::new();
    let mut left = 0;
    while left < n {
        let event = sub
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|e| panic!("stuck after {} events: {e}", events.len()));
        left += usize::from(matches!(event, Event::Disconnected { .. }));
        events.push(event);
    }
    events
}

#[test]
fn undrained_subscriber_pauses_the_hub_and_loses_nothing() {
    const CAPACITY: usize = 16;
    const CLIENTS: usize = 3;
    const LINES: usize = 20_000;
    let hub = Hub::builder()
        .event_capacity(CAPACITY)
        .bind(LOCAL)
        .expect("bind");
    let events = hub.subscribe();
    let clients: Vec<_> = (0..CLIENTS).map(|tag| chatty(&hub, tag, LINES)).collect();

    // Nobody drains: the subscription fills and the hub stops reading clients.
    let pacer = Pacer::new();
    pacer.wait_until("the subscription to fill", || events.len() == CAPACITY);
    let window = Instant::now();
    let mut most = hub.stats();
    while window.elapsed() < Duration::from_millis(300) {
        pacer.pause(PACE);
        let stats = hub.stats();
        if stats.bytes_in > most.bytes_in || stats.frames_in > most.frames_in {
            most = stats;
        }
    }
    // At most one event per client beyond the subscription's room, and at most one read
    // (64 KiB) per client in the hub's buffers, while 780 KB wait to be sent.
    assert!(
        most.frames_in <= (CAPACITY + CLIENTS) as u64,
        "the hub kept reading while paused: {most:#?}"
    );
    assert!(
        most.bytes_in <= (CLIENTS * 64 * 1024) as u64,
        "the hub kept reading while paused: {most:#?}"
    );
    assert_eq!(events.len(), CAPACITY);
    eprintln!(
        "while paused: {} frames, {} bytes in",
        most.frames_in, most.bytes_in
    );

    // Draining at last: every line, in order, from every client.
    let story = collect_until_left(&events, CLIENTS);
    check_story(&story, CLIENTS, LINES);
    for (_, writer) in clients {
        writer.join().expect("writer");
    }
    assert!(events.is_empty());
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, CLIENTS as u64)]);
    assert_eq!(hub.stats().frames_in, (CLIENTS * LINES) as u64);
}

#[test]
fn subscriber_dropped_while_the_hub_waits_for_it() {
    const CAPACITY: usize = 8;
    const CLIENTS: usize = 3;
    const LINES: usize = 2_000;
    let hub = Hub::builder()
        .event_capacity(CAPACITY)
        .bind(LOCAL)
        .expect("bind");
    let neglected = hub.subscribe();
    let attentive = hub.subscribe();
    let collector = thread::spawn(move || collect_until_left(&attentive, CLIENTS));
    let clients: Vec<_> = (0..CLIENTS).map(|tag| chatty(&hub, tag, LINES)).collect();

    // The neglected subscription fills, so the hub pauses for it; it reads a little, then
    // goes away mid-stream.
    let pacer = Pacer::new();
    pacer.wait_until("the subscription to fill", || neglected.len() == CAPACITY);
    let seen: Vec<Event> = (0..3)
        .map(|_| neglected.recv_timeout(TIMEOUT).expect("an event"))
        .collect();
    drop(neglected);

    // The other subscriber sees the whole story, which began as the neglected one saw it.
    let story = collector.join().expect("collector");
    check_story(&story, CLIENTS, LINES);
    assert_eq!(story[..3], seen[..]);
    for (_, writer) in clients {
        writer.join().expect("writer");
    }
    // And the hub carries on for newcomers.
    let mut events = EventLog::new(hub.subscribe());
    let newcomer = Healthy::join(&hub, &mut events, hubcast::Framing::Lines);
    hub.broadcast("still here").expect("broadcast");
    newcomer.expect(&[b"still here"]);
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, CLIENTS as u64)]);
}

#[test]
fn twenty_subscribers_see_the_same_events() {
    const SUBSCRIBERS: usize = 20;
    const CLIENTS: usize = 5;
    const LINES: usize = 300;
    let hub = Hub::builder()
        // Small, so that the subscribers take turns pausing the hub.
        .event_capacity(64)
        .bind(LOCAL)
        .expect("bind");
    let collectors: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let sub = hub.subscribe();
            thread::spawn(move || collect_until_left(&sub, CLIENTS))
        })
        .collect();
    let clients: Vec<_> = (0..CLIENTS).map(|tag| chatty(&hub, tag, LINES)).collect();
    let stories: Vec<Vec<Event>> = collectors
        .into_iter()
        .map(|c| c.join().expect("collector"))
        .collect();
    check_story(&stories[0], CLIENTS, LINES);
    for (i, story) in stories.iter().enumerate().skip(1) {
        assert!(story == &stories[0], "subscriber {i} saw a different story");
    }
    for (_, writer) in clients {
        writer.join().expect("writer");
    }
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, CLIENTS as u64)]);
}
