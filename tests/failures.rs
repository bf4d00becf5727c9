//! What the host sees when its own code misbehaves: closures that panic, calls made from
//! inside the hub's closures, calls that must not wait, and addresses that cannot be bound.
//! The dispatcher dying outright is tested in `src/hub.rs`, where a panic can be injected.

mod util;

use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use hubcast::{Auth, Error, Event, Hub, Protocol, WouldBlock};
use util::{join, EventLog, Peer, TIMEOUT};

#[test]
fn a_panicking_accept_filter_costs_one_connection_not_the_hub() {
    let calls = AtomicUsize::new(0);
    let hub = Hub::builder()
        .accept_filter(move |_| {
            if calls.fetch_add(1, SeqCst) == 0 {
                panic!("a bug in the host's filter");
            }
            true
        })
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut first = Peer::connect(hub.local_addr());
    first.expect_closed();
    let (mut second, _) = join(&hub, &mut events);
    hub.broadcast("still serving").unwrap();
    assert_eq!(second.read_line(), b"still serving");
    let stats = hub.stats();
    assert_eq!(
        (stats.refused, stats.callback_panics, stats.accepted),
        (1, 1, 1),
        "{stats:?}"
    );
    assert!(!hub.is_closed());
}

#[test]
fn a_panicking_authenticator_costs_one_connection_not_the_hub() {
    let hub = Hub::builder()
        .authenticate(|request| match request.frame() {
            Some(b"boom") => panic!("a bug in the host's authenticator"),
            _ => Auth::Accept,
        })
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut bad = Peer::connect(hub.local_addr());
    bad.write(b"boom\n");
    bad.expect_closed();
    let mut good = Peer::connect(hub.local_addr());
    good.write(b"hello\n");
    events.expect_connected();
    hub.broadcast("still serving").unwrap();
    assert_eq!(good.read_line(), b"still serving");
    let stats = hub.stats();
    assert_eq!(
        (stats.rejected, stats.callback_panics, stats.accepted),
        (1, 1, 1),
        "{stats:?}"
    );
}

/// A panic payload whose own drop panics: with a message, or (`again`) with another such
/// payload, whose drop would panic in turn. Dropped where the panic was caught, it used to
/// take the whole hub down (`Error::Failed`).
struct PanicOnDrop {
    again: bool,
}

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if self.again {
            panic::panic_any(PanicOnDrop { again: false });
        }
        panic!("dropping the panic's payload panics too");
    }
}

#[test]
fn an_accept_filter_panicking_with_a_payload_that_panics_on_drop_costs_one_connection() {
    let calls = AtomicUsize::new(0);
    let hub = Hub::builder()
        .accept_filter(move |_| match calls.fetch_add(1, SeqCst) {
            0 => panic::panic_any(PanicOnDrop { again: false }),
            1 => panic::panic_any(PanicOnDrop { again: true }),
            _ => true,
        })
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    for _ in 0..2 {
        Peer::connect(hub.local_addr()).expect_closed();
    }
    let (mut good, _) = join(&hub, &mut events);
    hub.broadcast("still serving").unwrap();
    assert_eq!(good.read_line(), b"still serving");
    let stats = hub.stats();
    assert_eq!(
        (stats.refused, stats.callback_panics, stats.accepted),
        (2, 2, 1),
        "{stats:?}"
    );
    assert!(!hub.is_closed());
}

#[test]
fn an_authenticator_panicking_with_a_payload_that_panics_on_drop_costs_one_connection() {
    let hub = Hub::builder()
        .authenticate(|request| match request.frame() {
            Some(b"once") => panic::panic_any(PanicOnDrop { again: false }),
            Some(b"twice") => panic::panic_any(PanicOnDrop { again: true }),
            _ => Auth::Accept,
        })
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    for frame in [&b"once\n"[..], b"twice\n"] {
        let mut bad = Peer::connect(hub.local_addr());
        bad.write(frame);
        bad.expect_closed();
    }
    let mut good = Peer::connect(hub.local_addr());
    good.write(b"hello\n");
    events.expect_connected();
    hub.broadcast("still serving").unwrap();
    assert_eq!(good.read_line(), b"still serving");
    let stats = hub.stats();
    assert_eq!(
        (stats.rejected, stats.callback_panics, stats.accepted),
        (2, 2, 1),
        "{stats:?}"
    );
    assert!(!hub.is_closed());
}

#[test]
fn a_client_topics_closure_panicking_with_a_payload_that_panics_on_drop_refuses_the_request() {
    let hub = Hub::builder()
        .protocol(Protocol::Sequenced)
        .client_topics(|request| match request.topic() {
            "once" => panic::panic_any(PanicOnDrop { again: false }),
            "twice" => panic::panic_any(PanicOnDrop { again: true }),
            _ => true,
        })
        .bind("127.0.0.1:0")
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
    let (entered_tx, entered) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let (entered_tx, released) = (Mutex::new(entered_tx), Mutex::new(released));
    let hub = Hub::builder()
        .command_capacity(4)
        .accept_filter(move |_| {
            entered_tx.lock().unwrap().send(()).unwrap();
            let _ = released.lock().unwrap().recv_timeout(TIMEOUT);
            true
        })
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    entered.recv_timeout(TIMEOUT).expect("the filter ran");

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
    release.send(()).unwrap();
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
