//! User identity (`Admit::user`; issue 16): the tabs of one user are listed, sent to and
//! disconnected together and no other client is; `Event::Connected` and `ClientInfo` carry
//! the key; `max_clients_per_user` admits exactly its cap of simultaneous connections and
//! refuses the rest (closed on TCP, `429` on WebSocket), counted; the index is freed as
//! clients leave; invalid keys are rejected as by the authenticator (`403` on WebSocket).

mod util;

use std::collections::HashSet;

use hubcast::{Admit, Auth, AuthRequest, ClientId, DisconnectReason, Error, Event, Hub};
use util::*;

/// Tabs of one user in the scenarios.
const TABS: usize = 3;

/// The user key a token names: `user:<key>`, `empty` for an empty key, `long` for one byte
/// over the limit, `max` for exactly the limit; any other token is a client without user.
fn key_of(token: &str) -> Option<String> {
    match token {
        "empty" => Some(String::new()),
        "long" => Some("x".repeat(Admit::MAX_USER_LEN + 1)),
        "max" => Some("é".repeat(Admit::MAX_USER_LEN / 2)),
        _ => token.strip_prefix("user:").map(str::to_owned),
    }
}

/// An authenticator that admits every connection under the user its token names.
fn by_token(request: &AuthRequest<'_>) -> Auth {
    let token = Wire::token_of(request).unwrap_or_default();
    match key_of(&token) {
        Some(key) => Auth::Admit(Admit::new().user(key)),
        None => Auth::Accept,
    }
}

/// The user key `Connected` gave for `id`, among the events received so far.
fn connected_user(events: &EventLog, id: ClientId) -> Option<String> {
    events
        .seen
        .iter()
        .find_map(|event| match event {
            Event::Connected { client, user, .. } if *client == id => Some(user.clone()),
            _ => None,
        })
        .expect("a Connected event")
}

/// The tabs of `alice`, a client of `bob` and one without user: each lists, receives and
/// leaves as its user does, and no other.
fn tabs_of_one_user(wire: Wire) {
    let hub = wire.bind(Hub::builder().authenticate(by_token));
    let mut events = EventLog::subscribe(&hub);
    let mut tabs = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..TABS {
        let (tab, id) = wire.join_with_token(&hub, &mut events, "user:alice");
        tabs.push(tab);
        ids.push(id);
    }
    let (mut bob, bob_id) = wire.join_with_token(&hub, &mut events, "user:bob");
    let (mut anon, anon_id) = wire.join_with_token(&hub, &mut events, "anonymous");

    // Who is who, in events and in the registry.
    for &id in &ids {
        assert_eq!(connected_user(&events, id).as_deref(), Some("alice"));
        assert_eq!(hub.client(id).expect("connected").user(), Some("alice"));
    }
    assert_eq!(connected_user(&events, bob_id).as_deref(), Some("bob"));
    assert_eq!(connected_user(&events, anon_id), None);
    assert_eq!(hub.client(anon_id).expect("connected").user, None);
    ids.sort();
    assert_eq!(hub.user_clients("alice"), ids);
    assert_eq!(hub.user_clients("bob"), [bob_id]);
    assert!(hub.user_clients("carol").is_empty());
    assert!(hub.user_clients("").is_empty());

    // To alice's tabs, and nobody else: the broadcast after it is the next thing the
    // others read.
    assert_eq!(hub.send_to_user("alice", "for alice").expect("send"), TABS);
    assert_eq!(hub.send_to_user("carol", "for nobody").expect("send"), 0);
    hub.broadcast("for all").expect("broadcast");
    for tab in &mut tabs {
        tab.expect_messages(&[b"for alice", b"for all"]);
    }
    bob.expect_messages(&[b"for all"]);
    anon.expect_messages(&[b"for all"]);

    // Alice's tabs leave, kicked; the others stay.
    assert_eq!(hub.disconnect_user("alice").expect("disconnect"), TABS);
    for &id in &ids {
        assert_eq!(events.disconnected(id), DisconnectReason::Kicked);
    }
    for mut tab in tabs {
        tab.expect_close(DisconnectReason::Kicked);
    }
    assert!(hub.user_clients("alice").is_empty());
    assert_eq!(hub.disconnect_user("alice").expect("disconnect"), 0);
    hub.broadcast("still here").expect("broadcast");
    bob.expect_messages(&[b"still here"]);
    anon.expect_messages(&[b"still here"]);
    assert!(!events.has_left(bob_id) && !events.has_left(anon_id));
    assert_stats_add_up(&hub, &[(DisconnectReason::Kicked, TABS as u64)]);
}

/// Many connections of one user at once: exactly the cap is admitted, the rest are refused
/// (closed on TCP, answered 429 on WebSocket) and counted; once one tab leaves, a new one
/// is admitted, and the next is refused again. Clients without a user are not limited.
fn the_cap_admits_exactly_its_count(wire: Wire) {
    const CAP: usize = 3;
    const AT_ONCE: usize = 12;
    let hub = wire.bind(
        Hub::builder()
            .authenticate(by_token)
            .max_clients_per_user(Some(CAP)),
    );
    let mut events = EventLog::subscribe(&hub);
    let addr = wire.addr(&hub);
    // Every connection sends its credentials before any is read.
    let mut peers: Vec<Peer> = (0..AT_ONCE)
        .map(|_| {
            let mut peer = Peer::connect(addr);
            open_with_token(wire, &mut peer, "user:alice");
            peer
        })
        .collect();
    let stats = stats_when(&hub, |s| s.accepted + s.user_cap_refused == AT_ONCE as u64);
    assert_eq!(stats.accepted, CAP as u64, "{stats:#?}");
    assert_eq!(stats.user_cap_refused, (AT_ONCE - CAP) as u64, "{stats:#?}");
    assert_eq!((stats.refused, stats.rejected), (0, 0), "{stats:#?}");
    let mut admitted = HashSet::new();
    let mut ids = Vec::new();
    while admitted.len() < CAP {
        let (id, addr) = events.wait_for("a tab to connect", |event| match event {
            Event::Connected { client, addr, .. } => Some((*client, *addr)),
            _ => None,
        });
        admitted.insert(addr);
        ids.push(id);
    }
    ids.sort();
    assert_eq!(hub.user_clients("alice"), ids);
    for peer in &mut peers {
        if admitted.contains(&peer.addr()) {
            continue;
        }
        refused_with(wire, peer, 429);
    }

    // Others are not limited by alice's cap (kept open to the end).
    let mut others = Vec::new();
    for i in 0..CAP + 1 {
        others.push(wire.join_with_token(&hub, &mut events, &format!("user:bob{i}")));
        others.push(wire.join_with_token(&hub, &mut events, "anonymous"));
    }
    for i in 0..CAP + 1 {
        assert_eq!(hub.user_clients(&format!("bob{i}")).len(), 1);
    }
    assert_eq!(hub.clients().len(), CAP + 2 * (CAP + 1));

    // One tab leaves: the next is admitted, the one after refused.
    hub.disconnect(ids[0]).expect("disconnect");
    assert_eq!(events.disconnected(ids[0]), DisconnectReason::Kicked);
    let (_tab, id) = wire.join_with_token(&hub, &mut events, "user:alice");
    assert_eq!(hub.user_clients("alice"), [ids[1], ids[2], id]);
    wire.expect_refused_with_token(&hub, "user:alice", 429);
    let stats = stats_when(&hub, |s| s.user_cap_refused == (AT_ONCE - CAP + 1) as u64);
    assert_eq!(
        stats.user_cap_refused,
        (AT_ONCE - CAP + 1) as u64,
        "{stats:#?}"
    );
    assert_eq!(hub.user_clients("alice").len(), CAP);
    assert!(others.iter().all(|(_, id)| !events.has_left(*id)));
}

/// What a client sends to be admitted with `token`: its first frame on TCP, the upgrade
/// request's query on WebSocket.
fn open_with_token(wire: Wire, peer: &mut Peer, token: &str) {
    match wire {
        #[cfg(feature = "websocket")]
        Wire::WebSocket => {
            let host = peer.stream.peer_addr().expect("peer addr").to_string();
            peer.write(request(&format!("/?token={token}"), &host, &[], &[]).as_bytes());
        }
        _ => peer.send(wire.framing(), token.as_bytes()),
    }
}

/// Asserts that a connection opened with [`open_with_token`] is refused: on TCP closed
/// with nothing sent, on WebSocket answered `status` and closed cleanly.
fn refused_with(wire: Wire, peer: &mut Peer, status: u16) {
    let (bytes, end) = peer.read_to_end();
    if !wire.is_websocket() {
        assert!(bytes.is_empty(), "sent {bytes:?} before closing");
        return;
    }
    assert_eq!(end, None, "closed with a reset after {bytes:?}");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with(&format!("HTTP/1.1 {status} ")),
        "expected {status}, got {text:?}"
    );
}

/// Clients of a few users come and go: every one leaves the index with its last client.
fn churn_frees_the_index(wire: Wire) {
    const ROUNDS: usize = 60;
    let hub = wire.bind(
        Hub::builder()
            .authenticate(by_token)
            .max_clients_per_user(Some(2)),
    );
    let mut events = EventLog::subscribe(&hub);
    for round in 0..ROUNDS {
        let user = format!("user:u{}", round % 5);
        let (a, first) = wire.join_with_token(&hub, &mut events, &user);
        let (b, second) = wire.join_with_token(&hub, &mut events, &user);
        assert_eq!(hub.user_clients(&user[5..]), [first, second]);
        // One leaves by itself, one is kicked with its user.
        drop(a);
        events.disconnected(first);
        assert_eq!(hub.user_clients(&user[5..]), [second]);
        assert_eq!(hub.disconnect_user(&user[5..]).expect("disconnect"), 1);
        assert_eq!(events.disconnected(second), DisconnectReason::Kicked);
        drop(b);
    }
    for user in 0..5 {
        assert!(hub.user_clients(&format!("u{user}")).is_empty());
    }
    let stats = hub.stats();
    assert_eq!(stats.connected, 0, "{stats:#?}");
    assert_eq!(stats.user_cap_refused, 0, "{stats:#?}");
}

/// An empty key and one over the limit are rejected as by the authenticator; a key of
/// exactly the limit (multi-byte UTF-8) is admitted.
fn invalid_keys_are_rejected(wire: Wire) {
    let hub = wire.bind(Hub::builder().authenticate(by_token));
    let mut events = EventLog::subscribe(&hub);
    wire.expect_refused_with_token(&hub, "empty", 403);
    wire.expect_refused_with_token(&hub, "long", 403);
    let (_tab, id) = wire.join_with_token(&hub, &mut events, "max");
    let key = key_of("max").expect("a key");
    assert_eq!(key.len(), Admit::MAX_USER_LEN);
    assert_eq!(connected_user(&events, id), Some(key.clone()));
    assert_eq!(hub.user_clients(&key), [id]);
    let stats = stats_when(&hub, |s| s.rejected == 2);
    assert_eq!(
        (stats.rejected, stats.accepted, stats.user_cap_refused),
        (2, 1, 0),
        "{stats:#?}"
    );
    assert_eq!(stats.callback_panics, 0);
}

per_wire!(
    tabs_of_one_user,
    the_cap_admits_exactly_its_count,
    churn_frees_the_index,
    invalid_keys_are_rejected,
);

/// Without an authenticator, TCP clients go live as they are accepted: the cap holds there
/// too, with the `admit` hook giving the user.
#[test]
fn the_cap_holds_for_clients_admitted_on_accept() {
    const CAP: usize = 2;
    const AT_ONCE: usize = 10;
    let hub = Hub::builder()
        .admit(|_| Admit::new().user("alice"))
        .max_clients_per_user(Some(CAP))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut peers: Vec<Peer> = (0..AT_ONCE)
        .map(|_| Peer::connect(hub.local_addr()))
        .collect();
    let stats = stats_when(&hub, |s| s.accepted + s.user_cap_refused == AT_ONCE as u64);
    assert_eq!(
        (stats.accepted, stats.user_cap_refused),
        (CAP as u64, (AT_ONCE - CAP) as u64),
        "{stats:#?}"
    );
    let mut admitted = HashSet::new();
    while admitted.len() < CAP {
        admitted.insert(events.wait_for("a tab", |event| match event {
            Event::Connected { addr, user, .. } => {
                assert_eq!(user.as_deref(), Some("alice"));
                Some(*addr)
            }
            _ => None,
        }));
    }
    for peer in peers.iter_mut().filter(|p| !admitted.contains(&p.addr())) {
        peer.expect_closed();
    }
    assert_eq!(hub.user_clients("alice").len(), CAP);
}

#[test]
fn a_cap_of_zero_is_a_config_error() {
    let result = Hub::builder().max_clients_per_user(Some(0)).bind(LOCAL);
    match result {
        Err(Error::Config(msg)) => assert!(msg.contains("max_clients_per_user"), "{msg}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn user_calls_on_a_closed_hub_fail() {
    let hub = Hub::bind(LOCAL).expect("bind");
    hub.shutdown(TIMEOUT).expect("shutdown");
    assert!(matches!(hub.send_to_user("a", "x"), Err(Error::Closed)));
    assert!(matches!(hub.disconnect_user("a"), Err(Error::Closed)));
    assert!(hub.user_clients("a").is_empty());
}
