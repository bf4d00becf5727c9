//! Admission control: the authenticator (`Accept`, `AcceptAs`, `Reject`), the handshake
//! timeout, the accept filter and `max_clients_per_ip`. A connection that is not admitted
//! never appears as `Connected`, never receives a broadcast, and is counted.

mod util;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubcast::{Auth, DisconnectReason, Event, Framing, Hub, HubBuilder};
use util::{
    assert_counters, assert_stats_add_up, broadcast_numbered, client_socket, healthy_still_served,
    Counter, EventLog, Healthy, Peer, LOCAL, MSG_LEN, TIMEOUT,
};

fn authenticating() -> HubBuilder {
    Hub::builder().authenticate(|request| match request.frame().unwrap_or_default() {
        b"token good" => Auth::Accept,
        b"token alice" => Auth::AcceptAs("alice".into()),
        _ => Auth::Reject,
    })
}

#[test]
fn authenticator_accepts_names_and_rejects() {
    let hub = authenticating().bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);

    // The authentication frame is not a message; what follows it is.
    let mut plain = Peer::connect(hub.local_addr());
    plain.write(b"token good\nhello\n");
    let plain_id = events.connected(plain.addr());
    let alice = Healthy::join_with_auth(&hub, &mut events, Framing::Lines, Some(b"token alice"));

    let mut intruder = Peer::connect(hub.local_addr());
    let intruder_addr = intruder.addr();
    intruder.write(b"token bad\nlet me talk\n");
    hub.broadcast("members only").expect("broadcast");
    alice.expect(&[b"members only"]);
    events.wait_until("the rejection", || hub.stats().rejected == 1);

    // Closed cleanly, with nothing sent to it.
    intruder.expect_fin();
    hub.broadcast("still members only").expect("broadcast");
    alice.expect(&[b"still members only"]);

    assert_eq!(events.messages(plain_id, 1), vec![&b"hello"[..]]);
    events.drain();
    assert!(!events.saw_connected(intruder_addr));
    let messages: Vec<_> = events
        .seen
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .collect();
    assert_eq!(messages.len(), 1, "{messages:?}");

    let names: Vec<_> = hub.clients().into_iter().map(|c| (c.id, c.name)).collect();
    assert_eq!(
        names,
        vec![(plain_id, None), (alice.id, Some("alice".to_owned()))]
    );
    assert_counters(
        &hub,
        &[
            (Counter::Accepted, 2),
            (Counter::Rejected, 1),
            (Counter::HandshakeFailed, 0),
        ],
    );
    assert_stats_add_up(&hub, &[]);
}

/// A connection still in its handshake is not a client: broadcasts made then never reach
/// it, even once it has authenticated.
#[test]
fn no_broadcasts_before_authentication() {
    let (admitted_tx, admitted) = mpsc::channel();
    let admitted_tx = Mutex::new(admitted_tx);
    let hub = authenticating()
        // Tells the test when the hub has taken the connection in (the filter runs just
        // before it is registered).
        .accept_filter(move |addr| {
            let _ = admitted_tx.lock().expect("lock").send(addr);
            true
        })
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let member = Healthy::join_with_auth(&hub, &mut events, Framing::Lines, Some(b"token good"));
    assert_eq!(
        admitted.recv_timeout(TIMEOUT).expect("filter ran"),
        member.addr
    );

    let mut late = Peer::connect(hub.local_addr());
    let late_addr = late.addr();
    assert_eq!(
        admitted.recv_timeout(TIMEOUT).expect("filter ran"),
        late_addr
    );
    hub.broadcast("before").expect("broadcast");
    member.expect(&[b"before"]);

    late.write(b"token good\n");
    let late_id = events.connected(late_addr);
    hub.broadcast("after").expect("broadcast");
    member.expect(&[b"after"]);
    assert_eq!(late.read_line(), b"after");
    assert!(hub.clients().iter().any(|c| c.id == late_id));
    assert_stats_add_up(&hub, &[]);
}

/// Ways a handshake fails: silence (closed after `handshake_timeout`), a partial
/// authentication frame, an oversized one, and closing before authenticating. Each is
/// closed, counted in `handshake_failed`, never announced and never sent anything, while
/// two members, who authenticated at once, get every broadcast. The silent one is closed
/// cleanly, with a FIN.
#[test]
fn failed_handshakes_are_counted_and_never_connect() {
    let hub = authenticating()
        .max_frame(64)
        // The members authenticate right after connecting; a second leaves them plenty of
        // room on a loaded machine.
        .handshake_timeout(Duration::from_secs(1))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let members = [
        Healthy::join_with_auth(&hub, &mut events, Framing::Lines, Some(b"token good")),
        Healthy::join_with_auth(&hub, &mut events, Framing::Lines, Some(b"token good")),
    ];

    let mut silent = Peer::connect(hub.local_addr());
    let mut partial = Peer::connect(hub.local_addr());
    partial.write(b"token go");
    let mut oversized = Peer::connect(hub.local_addr());
    oversized.write(&[b'x'; 100]);
    let mut quitter = Peer::connect(hub.local_addr());
    quitter.shutdown_write();
    let addrs: Vec<SocketAddr> = [&silent, &partial, &oversized, &quitter]
        .iter()
        .map(|peer| peer.addr())
        .collect();
    broadcast_numbered(&hub, 0..10, MSG_LEN);
    for member in &members {
        member.expect_numbered(0..10, MSG_LEN);
    }

    events.wait_until("four failed handshakes", || {
        hub.stats().handshake_failed == 4
    });
    silent.expect_fin();
    for peer in [&mut partial, &mut oversized, &mut quitter] {
        let data = peer.read_to_close();
        assert!(data.is_empty(), "got {data:?} before authenticating");
    }
    healthy_still_served(&hub, &members, 10);
    events.drain();
    for addr in addrs {
        assert!(!events.saw_connected(addr));
    }
    assert_counters(&hub, &[(Counter::Accepted, 2), (Counter::Rejected, 0)]);
    assert_eq!(hub.clients().len(), 2);
    assert_stats_add_up(&hub, &[]);
}

#[test]
fn accept_filter_refuses_before_anything_else() {
    let banned: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let filter_banned = Arc::clone(&banned);
    let hub = Hub::builder()
        .accept_filter(move |addr| !filter_banned.lock().expect("lock").contains(&addr))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let welcome = Healthy::join(&hub, &mut events, Framing::Lines);

    // The client's address is known before it connects, so it can be banned in advance.
    let socket = client_socket(hub.local_addr(), None, None);
    let banned_addr = socket
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    banned.lock().expect("lock").insert(banned_addr);
    let mut refused = Peer::connect_socket(socket, hub.local_addr());
    events.wait_until("the refusal", || hub.stats().refused == 1);
    hub.broadcast("welcome").expect("broadcast");
    welcome.expect(&[b"welcome"]);
    // Closed cleanly, with nothing sent to it.
    refused.expect_fin();

    let also_welcome = Healthy::join(&hub, &mut events, Framing::Lines);
    hub.broadcast("again").expect("broadcast");
    welcome.expect(&[b"again"]);
    also_welcome.expect(&[b"again"]);
    events.drain();
    assert!(!events.saw_connected(banned_addr));
    assert_counters(&hub, &[(Counter::Accepted, 2), (Counter::Refused, 1)]);
    assert_stats_add_up(&hub, &[]);
}

#[test]
fn max_clients_per_ip_refuses_the_extra_connection_until_one_leaves() {
    let hub = Hub::builder()
        .max_clients_per_ip(Some(2))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let first = Healthy::join(&hub, &mut events, Framing::Lines);
    let second = Healthy::join(&hub, &mut events, Framing::Lines);

    let mut third = Peer::connect(hub.local_addr());
    events.wait_until("the refusal", || hub.stats().refused == 1);
    third.expect_fin();
    assert!(!events.saw_connected(third.addr()));

    // Once one leaves, there is room again.
    first
        .stream
        .shutdown(std::net::Shutdown::Write)
        .expect("close");
    assert_eq!(events.disconnected(first.id), DisconnectReason::PeerClosed);
    let fourth = Healthy::join(&hub, &mut events, Framing::Lines);
    hub.broadcast("two of us").expect("broadcast");
    second.expect(&[b"two of us"]);
    fourth.expect(&[b"two of us"]);
    assert_counters(&hub, &[(Counter::Accepted, 3), (Counter::Refused, 1)]);
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, 1)]);
}

/// Connections still in their handshake count against `max_clients_per_ip`: silent
/// connections cannot get around the limit by never authenticating.
#[test]
fn max_clients_per_ip_counts_connections_in_their_handshake() {
    let hub = authenticating()
        .max_clients_per_ip(Some(2))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let _silent: Vec<_> = (0..2).map(|_| Peer::connect(hub.local_addr())).collect();
    let mut third = Peer::connect(hub.local_addr());
    events.wait_until("the refusal", || hub.stats().refused == 1);
    third.expect_fin();
    assert_counters(&hub, &[(Counter::Accepted, 0), (Counter::Refused, 1)]);
    assert!(events.seen.is_empty(), "{:?}", events.seen);
}
