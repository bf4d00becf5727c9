//! What the host sees when its own code misbehaves: closures that panic, calls made from
//! inside the hub's closures, calls that must not wait, and addresses that cannot be bound.
//! The dispatcher dying outright is tested in `src/hub/mod.rs`, where a panic can be injected.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use hubcast::{Auth, Error, Event, Hub, Protocol, WouldBlock};
use util::{
    assert_counters, join, panic_as, per_wire, Counter, EventLog, Peer, Wire, LOCAL, PANICS,
    TIMEOUT,
};

/// An accept filter that panics, in each of the ways of [`PANICS`], costs the connection
/// it was deciding and nothing else: it is refused, and the hub serves on.
#[test]
fn a_panicking_accept_filter_costs_one_connection_each_not_the_hub() {
    let calls = AtomicUsize::new(0);
    let hub = Hub::builder()
        .accept_filter(move |_| match PANICS.get(calls.fetch_add(1, SeqCst)) {
            Some(how) => panic_as(how),
            None => true,
        })
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    for _ in PANICS {
        Peer::connect(hub.local_addr()).expect_closed();
    }
    let (mut good, _) = join(&hub, &mut events);
    hub.broadcast("still serving").unwrap();
    assert_eq!(good.read_line(), b"still serving");
    let panics = PANICS.len() as u64;
    assert_counters(
        &hub,
        &[
            (Counter::Refused, panics),
            (Counter::CallbackPanics, panics),
            (Counter::Accepted, 1),
        ],
    );
    assert!(!hub.is_closed());
}

/// An authenticator that panics, in each of the ways of [`PANICS`], costs the connection
/// it was deciding and nothing else, on every wire: it is rejected (on WebSocket answered
/// 403) and never connected, and the hub serves on.
fn a_panicking_authenticator_costs_one_connection_each_not_the_hub(wire: Wire) {
    let hub =
        wire.bind(Hub::builder().authenticate(
            |request| match Wire::token_of(request).as_deref() {
                Some("good") => Auth::Accept,
                Some(how) if PANICS.contains(&how) => panic_as(how),
                _ => Auth::Reject,
            },
        ));
    let mut events = EventLog::subscribe(&hub);
    for how in PANICS {
        wire.expect_refused_with_token(&hub, how, 403);
    }
    let (mut good, good_id) = wire.join_with_token(&hub, &mut events, "good");
    // No event before it: the refused connections never connected.
    events.drain();
    assert_eq!(events.seen.len(), 1, "{:?}", events.seen);
    hub.broadcast("still serving").unwrap();
    good.expect_messages(&[b"still serving"]);
    assert!(hub.client(good_id).is_some());
    let panics = PANICS.len() as u64;
    assert_counters(
        &hub,
        &[
            (Counter::Rejected, panics),
            (Counter::CallbackPanics, panics),
            (Counter::HandshakeFailed, 0),
            (Counter::Accepted, 1),
        ],
    );
    assert!(!hub.is_closed());
}

per_wire!(a_panicking_authenticator_costs_one_connection_each_not_the_hub);

#[test]
fn a_client_topics_closure_panicking_with_a_payload_that_panics_on_drop_refuses_the_request() {
    let hub = Hub::builder()
        .protocol(Protocol::Sequenced)
        .client_topics(|request| match request.topic() {
            how @ ("once" | "twice") => panic_as(how),
            _ => true,
        })
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    assert!(peer.read_text_line().starts_with("#at * "));
    peer.write(b"#join @once\n#join @twice\n#join @lobby\n");
    assert_eq!(peer.read_text_line(), "#refused join @once denied");
    assert_eq!(peer.read_text_line(), "#refused join @twice denied");
    assert!(peer.read_text_line().starts_with("#joined @lobby "));
    // The client stays, and the hub goes on serving it and accepting others.
    let (mut other, _) = join(&hub, &mut events);
    assert!(other.read_text_line().starts_with("#at * "));
    peer.write(b"hello\n");
    assert_eq!(events.expect_message(id), b"hello");
    assert_eq!(hub.stats().callback_panics, 2);
    assert!(!hub.is_closed());
}

/// The hub's handle as its own closures reach it: a weak reference set once it is bound.
type Slot = Arc<OnceLock<Weak<Hub>>>;

fn hub_in(slot: &Slot) -> Option<Arc<Hub>> {
    slot.get().and_then(Weak::upgrade)
}

/// A broadcast from inside the authenticator, while a host thread floods a hub whose
/// budget is tiny, used to make the dispatcher wait on itself for good. Now every such call
/// either goes through or says it would have had to wait, and nothing hangs.
#[test]
fn broadcasting_from_the_authenticator_never_waits_on_the_dispatcher() {
    const CLIENTS: usize = 20;
    const WELCOMES: usize = 200;
    let slot: Slot = Arc::default();
    let outcomes = Arc::new(Mutex::new((0usize, 0usize)));
    let hub = {
        let (slot, outcomes) = (Arc::clone(&slot), Arc::clone(&outcomes));
        Hub::builder()
            .command_capacity(64)
            .queue_bytes(256 * 1024)
            .authenticate(move |_| {
                let hub = hub_in(&slot).expect("the hub is bound");
                for i in 0..WELCOMES {
                    match hub.broadcast(format!("welcome {i}")) {
                        Ok(()) => outcomes.lock().unwrap().0 += 1,
                        Err(Error::WouldBlock(WouldBlock::Backlog)) => {
                            outcomes.lock().unwrap().1 += 1;
                        }
                        Err(err) => panic!("unexpected {err}"),
                    }
                }
                Auth::Accept
            })
            .bind("127.0.0.1:0")
            .unwrap()
    };
    let hub = Arc::new(hub);
    slot.set(Arc::downgrade(&hub)).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let flooder = {
        let hub = Arc::clone(&hub);
        std::thread::spawn(move || {
            for i in 0..2_000 {
                hub.broadcast(vec![b'0' + (i % 10) as u8; 16 * 1024])
                    .unwrap();
            }
        })
    };
    let mut peers = Vec::new();
    for _ in 0..CLIENTS {
        let mut peer = Peer::connect(hub.local_addr());
        peer.write(b"let me in\n");
        peers.push(peer);
    }
    // Clients that never read may be cut as slow: what matters is that every one of them
    // got through the authenticator and the flood ended.
    let mut connected = 0;
    while connected < CLIENTS {
        if let Event::Connected { .. } = events.next() {
            connected += 1;
        }
    }
    flooder.join().expect("the flooding thread finished");
    let (ok, would_block) = *outcomes.lock().unwrap();
    assert_eq!(ok + would_block, CLIENTS * WELCOMES);
    drop(peers);
}

#[test]
fn shutdown_from_a_closure_starts_the_shutdown_without_waiting_for_it() {
    let slot: Slot = Arc::default();
    let (tx, said) = mpsc::channel();
    let tx = Mutex::new(tx);
    let hub = {
        let slot = Arc::clone(&slot);
        Hub::builder()
            .authenticate(move |_| {
                let hub = hub_in(&slot).expect("the hub is bound");
                let outcome = hub.shutdown(TIMEOUT);
                tx.lock().unwrap().send(outcome).unwrap();
                Auth::Accept
            })
            .bind("127.0.0.1:0")
            .unwrap()
    };
    let hub = Arc::new(hub);
    slot.set(Arc::downgrade(&hub)).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    peer.write(b"stop the hub\n");
    let outcome = said.recv_timeout(TIMEOUT).expect("the authenticator ran");
    assert!(
        matches!(
            outcome,
            Err(Error::WouldBlock(WouldBlock::DispatcherThread))
        ),
        "{outcome:?}"
    );
    peer.expect_closed();
    assert!(hub.is_closed());
    assert!(matches!(hub.broadcast("late"), Err(Error::Closed)));
    // The subscription ends, and a shutdown from the host waits for the thread to end.
    events.until_end();
    let report = hub
        .shutdown(TIMEOUT)
        .expect("the host's shutdown joins the thread");
    assert!(report.is_complete());
}

/// The last handle to a hub dropped inside its own closure: the hub shuts itself down and
/// its thread ends, instead of joining itself.
#[test]
fn the_last_handle_dropped_inside_a_closure_shuts_the_hub_down() {
    let slot: Slot = Arc::default();
    let (holding_tx, holding) = mpsc::channel();
    let (dropped, dropped_rx) = mpsc::channel::<()>();
    let (holding_tx, dropped_rx) = (Mutex::new(holding_tx), Mutex::new(dropped_rx));
    let hub = {
        let slot = Arc::clone(&slot);
        Hub::builder()
            .authenticate(move |_| {
                // This closure holds the hub while the host drops its own handle, so the
                // last handle goes here, on the dispatcher thread.
                let hub = hub_in(&slot);
                holding_tx.lock().unwrap().send(()).unwrap();
                let _ = dropped_rx.lock().unwrap().recv_timeout(TIMEOUT);
                drop(hub);
                Auth::Accept
            })
            .bind("127.0.0.1:0")
            .unwrap()
    };
    let hub = Arc::new(hub);
    slot.set(Arc::downgrade(&hub)).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    peer.write(b"hello\n");
    holding
        .recv_timeout(TIMEOUT)
        .expect("the authenticator ran");
    drop(hub);
    dropped.send(()).unwrap();
    peer.expect_closed();
    events.until_end();
}

/// `try_broadcast` says why instead of waiting: here the dispatcher is held inside the
/// accept filter, so nothing it is sent is taken until the filter returns.
#[test]
fn try_broadcast_fails_where_broadcast_would_wait() {
    let (builder, held) = util::held_in_accept_filter(Hub::builder().command_capacity(4));
    let hub = builder.bind("127.0.0.1:0").unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    held.wait_entered();

    // Large messages travel one per call: four fill the budget.
    let big = vec![b'x'; 10_000];
    for _ in 0..4 {
        hub.try_broadcast(&big).expect("room for four calls");
    }
    for _ in 0..3 {
        match hub.try_broadcast(&big) {
            Err(Error::WouldBlock(WouldBlock::Backlog)) => {}
            other => panic!("expected WouldBlock(Backlog), got {other:?}"),
        }
    }
    held.release();
    events.expect_connected();
    // Once the dispatcher moves on, a blocking broadcast goes through; the client joined
    // before any of it was taken, so it gets the four and then the last.
    hub.broadcast("after").unwrap();
    for _ in 0..4 {
        assert_eq!(peer.read_line(), big);
    }
    assert_eq!(peer.read_line(), b"after");
}

#[test]
fn bind_errors_name_the_address_as_given() {
    match Hub::bind("127.0.0.1:99999") {
        Err(err @ Error::Bind { .. }) => {
            assert_eq!(err.to_string(), "failed to bind 127.0.0.1:99999");
        }
        other => panic!("unexpected {other:?}"),
    }
    let taken = Hub::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr();
    match Hub::bind(addr) {
        Err(Error::Bind { addr: given, .. }) => assert_eq!(given, addr.to_string()),
        other => panic!("unexpected {other:?}"),
    }
}
