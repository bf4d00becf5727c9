//! Async receive: `Subscription::recv_async` and, with feature `stream`, the `Stream` of
//! events, under tokio's multi-thread runtime (no runtime in the hub itself). Every event
//! comes, in order, through a flood that pauses and resumes the hub and through a shutdown
//! (the stream then ends); a cancelled receive loses nothing; two tasks awaiting one
//! subscription both get events; a stream dropped by its task ends a pause.

mod util;

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use hubcast::{DisconnectReason, Event, Framing, Hub};
use tokio::runtime::Runtime;
use util::{frame, numbered, seq_of, Peer, LOCAL, TIMEOUT};

/// Lines of 100 bytes with the newline.
const LEN: usize = 99;

/// A runtime of two workers, as a host's `#[tokio::main]` would give.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A client that writes `lines` numbered lines as fast as TCP lets it, then half-closes.
/// Its send buffer is small, so it finishes only if the hub keeps reading. The thread
/// returns the connection, to keep it open until joined.
fn flood(hub: &Hub, lines: usize) -> JoinHandle<Peer> {
    let mut peer = Peer::connect_sndbuf(hub.local_addr(), 16 * 1024);
    thread::spawn(move || {
        let wire: Vec<u8> = (0..lines)
            .flat_map(|i| frame(Framing::Lines, &numbered(i, LEN)))
            .collect();
        peer.write(&wire);
        peer.shutdown_write();
        peer
    })
}

/// Checks `events` is one client's whole story: `Connected`, its `lines` lines in order,
/// then `Disconnected` because it closed.
fn check_story(events: &[Event], lines: usize) {
    assert!(
        matches!(events.first(), Some(Event::Connected { .. })),
        "first {:?}",
        events.first()
    );
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnected {
                reason: DisconnectReason::PeerClosed,
                ..
            })
        ),
        "last {:?}",
        events.last()
    );
    assert_eq!(events.len(), lines + 2, "events lost or duplicated");
    for (i, event) in events[1..=lines].iter().enumerate() {
        match event {
            Event::Message { payload, .. } => assert_eq!(seq_of(payload), i, "reordered"),
            other => panic!("event {i}: unexpected {other:?}"),
        }
    }
}

/// Through a flood of 20,000 lines into queues of 16 events (the hub pauses and resumes
/// over and over) and a shutdown, a `Stream` consumer on a multi-thread runtime gets
/// every event in order, then the end of the stream.
#[cfg(feature = "stream")]
#[test]
fn a_stream_gets_every_event_in_order_through_a_flood_and_a_shutdown() {
    use futures_util::StreamExt;

    const LINES: usize = 20_000;
    let hub = Hub::builder().event_capacity(16).bind(LOCAL).expect("bind");
    let mut stream = hub.subscribe();
    let rt = runtime();
    let (left_tx, left_rx) = mpsc::channel();
    let consumer = rt.spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            if matches!(event, Event::Disconnected { .. }) {
                left_tx.send(()).expect("test thread");
            }
            events.push(event);
        }
        // Ended: and it stays ended.
        assert!(stream.next().await.is_none());
        events
    });
    let client = flood(&hub, LINES);
    left_rx
        .recv_timeout(TIMEOUT)
        .expect("the client's Disconnected");
    let stats = hub.stats();
    // A round reads at most 256 KiB of a client, some 2,600 lines: at least 8 pauses
    // (hundreds, in practice).
    assert!(
        stats.pauses >= 5,
        "the hub paused only {} times",
        stats.pauses
    );
    hub.shutdown(TIMEOUT).expect("shutdown");
    let events = rt
        .block_on(async { tokio::time::timeout(TIMEOUT, consumer).await })
        .expect("the stream ends after a shutdown")
        .expect("consumer task");
    check_story(&events, LINES);
    drop(client.join().expect("client"));
}

/// A receive cancelled while it waits (a `select!` whose other branch wins) takes no
/// event: over a flood, the receives that complete get every event, in order, and after a
/// shutdown `recv_async` returns `Err`.
#[test]
fn a_cancelled_recv_async_loses_no_event() {
    const LINES: usize = 5_000;
    let hub = Hub::builder().event_capacity(16).bind(LOCAL).expect("bind");
    let sub = Arc::new(hub.subscribe());
    let rt = runtime();
    let (left_tx, left_rx) = mpsc::channel();
    let consumer = {
        let sub = Arc::clone(&sub);
        rt.spawn(async move {
            let (mut events, mut cancelled) = (Vec::new(), 0usize);
            loop {
                tokio::select! {
                    received = sub.recv_async() => match received {
                        Ok(event) => {
                            if matches!(event, Event::Disconnected { .. }) {
                                left_tx.send(()).expect("test thread");
                            }
                            events.push(event);
                        }
                        Err(_) => break,
                    },
                    // Ready at its second poll: a receive that waited is dropped.
                    () = tokio::task::yield_now() => cancelled += 1,
                }
            }
            (events, cancelled)
        })
    };
    let client = flood(&hub, LINES);
    left_rx
        .recv_timeout(TIMEOUT)
        .expect("the client's Disconnected");
    hub.shutdown(TIMEOUT).expect("shutdown");
    let (events, cancelled) = rt
        .block_on(async { tokio::time::timeout(TIMEOUT, consumer).await })
        .expect("recv_async fails after a shutdown")
        .expect("consumer task");
    assert!(cancelled > 0, "no receive was cancelled");
    check_story(&events, LINES);
    drop(client.join().expect("client"));
}

/// Two tasks awaiting one subscription. While one holds the event it got (waiting on its
/// gate), the next event goes to the other, which had been awaiting beside it: every
/// waiting task is woken. Then, both free, they share a flood: each event goes to exactly
/// one, in order for each.
#[test]
fn two_tasks_awaiting_one_subscription_both_get_events() {
    const ROUNDS: usize = 10;
    const LINES: usize = 5_000;
    let hub = Hub::builder().event_capacity(16).bind(LOCAL).expect("bind");
    let sub = Arc::new(hub.subscribe());
    let rt = runtime();
    let (got_tx, got_rx) = mpsc::channel::<(usize, Event)>();
    let gates: Vec<Arc<tokio::sync::Semaphore>> = (0..2)
        .map(|_| Arc::new(tokio::sync::Semaphore::new(0)))
        .collect();
    let tasks: Vec<_> = (0..2)
        .map(|task| {
            let (sub, got, gate) = (Arc::clone(&sub), got_tx.clone(), Arc::clone(&gates[task]));
            rt.spawn(async move {
                while let Ok(event) = sub.recv_async().await {
                    got.send((task, event)).expect("test thread");
                    // Waits for the test to let it take another (a permit per event).
                    gate.acquire().await.expect("gate").forget();
                }
            })
        })
        .collect();
    drop(got_tx);
    let mut client = Peer::connect(hub.local_addr());
    let next = || got_rx.recv_timeout(TIMEOUT).expect("an event");

    // One at a time: the task that got the last event is held at its gate, so only the
    // other can take the next one.
    let (mut holder, event) = next();
    assert!(matches!(event, Event::Connected { .. }), "{event:?}");
    for i in 0..ROUNDS {
        client.send(Framing::Lines, &numbered(i, LEN));
        let (task, event) = next();
        assert_ne!(task, holder, "round {i}: the held task got an event");
        match event {
            Event::Message { payload, .. } => assert_eq!(seq_of(&payload), i),
            other => panic!("round {i}: unexpected {other:?}"),
        }
        gates[holder].add_permits(1);
        holder = task;
    }

    // Both free: a flood, each event to one of them.
    gates[holder].add_permits(LINES + 10);
    gates[1 - holder].add_permits(LINES + 10);
    let wire: Vec<u8> = (ROUNDS..ROUNDS + LINES)
        .flat_map(|i| frame(Framing::Lines, &numbered(i, LEN)))
        .collect();
    client.write(&wire);
    client.shutdown_write();
    let mut last = [None::<usize>; 2];
    let mut per_task = [0usize; 2];
    for _ in 0..LINES {
        let (task, event) = next();
        let Event::Message { payload, .. } = event else {
            panic!("unexpected {event:?}")
        };
        let seq = seq_of(&payload);
        assert!(
            last[task] < Some(seq),
            "task {task}: {seq} after {:?}",
            last[task]
        );
        last[task] = Some(seq);
        per_task[task] += 1;
    }
    let (_, event) = next();
    assert!(matches!(event, Event::Disconnected { .. }), "{event:?}");
    assert_eq!(per_task.iter().sum::<usize>(), LINES);
    hub.shutdown(TIMEOUT).expect("shutdown");
    rt.block_on(async {
        for task in tasks {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("both tasks end after a shutdown")
                .expect("task");
        }
    });
    assert!(got_rx.try_recv().is_err(), "an event after the client left");
}

/// A task that awaited a subscription's stream, then holds it unpolled while its queue
/// fills, pauses the hub; dropping the stream (the task returns) ends the pause, and the
/// other subscription gets the whole flood.
#[cfg(feature = "stream")]
#[test]
fn a_stream_dropped_by_its_task_ends_a_pause() {
    use crate::util::stats_when;
    use futures_util::StreamExt;

    const LINES: usize = 5_000;
    let hub = Hub::builder().event_capacity(16).bind(LOCAL).expect("bind");
    let kept = hub.subscribe();
    let mut stalled = hub.subscribe();
    let rt = runtime();
    let (first_tx, first_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = rt.spawn(async move {
        let first = stalled.next().await;
        first_tx.send(first).expect("test thread");
        // Holds the stream without polling it until told to stop.
        let _ = stop_rx.await;
        drop(stalled);
    });
    let client = flood(&hub, LINES);
    let first = first_rx.recv_timeout(TIMEOUT).expect("the first event");
    assert!(matches!(first, Some(Event::Connected { .. })), "{first:?}");
    let stats = stats_when(&hub, |s| s.paused.is_some());
    assert!(
        stats.paused.is_some(),
        "the held stream never paused the hub"
    );
    stop_tx.send(()).expect("holder task");
    rt.block_on(async { tokio::time::timeout(TIMEOUT, holder).await })
        .expect("the holder returns")
        .expect("holder task");
    let mut events = Vec::new();
    loop {
        let event = kept.recv_timeout(TIMEOUT).expect("an event of the flood");
        let left = matches!(event, Event::Disconnected { .. });
        events.push(event);
        if left {
            break;
        }
    }
    check_story(&events, LINES);
    drop(client.join().expect("client"));
}

/// A task and a thread blocked in `recv` on one subscription: whichever holds it when two
/// events come in one batch, each gets one. A task that found the thread holding the
/// subscription is woken when the thread lets go, though no batch follows.
#[test]
fn a_task_beside_a_thread_blocked_in_recv_gets_the_rest_of_the_batch() {
    const ROUNDS: usize = 50;
    let hub = Hub::bind(LOCAL).expect("bind");
    let sub = Arc::new(hub.subscribe());
    let mut client = Peer::connect(hub.local_addr());
    assert!(matches!(
        sub.recv_timeout(TIMEOUT),
        Ok(Event::Connected { .. })
    ));
    let rt = runtime();
    for round in 0..ROUNDS {
        let (got_tx, got_rx) = mpsc::channel();
        let thread = {
            let (sub, got) = (Arc::clone(&sub), got_tx.clone());
            thread::spawn(move || got.send(("thread", sub.recv())).expect("test thread"))
        };
        let task = {
            let sub = Arc::clone(&sub);
            rt.spawn(async move { got_tx.send(("task", sub.recv_async().await)) })
        };
        let lines = [numbered(2 * round, LEN), numbered(2 * round + 1, LEN)];
        client.write(
            &[
                frame(Framing::Lines, &lines[0]),
                frame(Framing::Lines, &lines[1]),
            ]
            .concat(),
        );
        let mut seqs: Vec<usize> = (0..2)
            .map(
                |_| match got_rx.recv_timeout(TIMEOUT).expect("both receive") {
                    (_, Ok(Event::Message { payload, .. })) => seq_of(&payload),
                    other => panic!("round {round}: unexpected {other:?}"),
                },
            )
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, [2 * round, 2 * round + 1], "round {round}");
        thread.join().expect("thread");
        rt.block_on(task).expect("task").expect("test thread");
    }
}
