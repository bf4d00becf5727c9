//! Kept topics (`Protocol::Sequenced`): a topic whose last member left is kept with its
//! numbers and replay ring so members can come back and resume, but never at the cost of
//! the hub refusing a new topic, and never past `replay_kept_bytes`. Under pressure the
//! topic left longest ago is evicted, and a resume of it is answered `epoch`; the others
//! still resume exactly. Real clients on 127.0.0.1 speaking the line protocol.

mod util;

use hubcast::{Hub, Stats};
use util::{rooms, EventLog, Peer, LOCAL};

/// Reads lines until one starts with `prefix`; returns it. Fails the test on a
/// `#refused`, `#error` or `#noresume` line that was not asked for.
fn until(peer: &mut Peer, prefix: &str) -> String {
    loop {
        let line = peer.read_text_line();
        if line.starts_with(prefix) {
            return line;
        }
        assert!(
            !line.starts_with("#refused")
                && !line.starts_with("#error")
                && !line.starts_with("#noresume"),
            "waiting for {prefix:?}, got {line:?}"
        );
    }
}

/// A connected client that has read its `#at`.
fn connect(hub: &Hub, events: &mut EventLog) -> (Peer, hubcast::ClientId) {
    let mut peer = Peer::connect(hub.local_addr());
    let id = events.connected(peer.addr());
    until(&mut peer, "#at * ");
    (peer, id)
}

/// `#join @room`: the topic's epoch.
fn join(peer: &mut Peer, room: &str) -> u64 {
    peer.write(format!("#join @{room}\n").as_bytes());
    let joined = until(peer, &format!("#joined @{room} "));
    joined.split(' ').nth(2).unwrap().parse().unwrap()
}

fn leave(peer: &mut Peer, room: &str) {
    peer.write(format!("#leave @{room}\n").as_bytes());
    until(peer, &format!("#left @{room}"));
}

/// Joins `room`, says one line there, leaves: the room is kept with one message. Returns
/// its epoch.
fn visit(peer: &mut Peer, room: &str, line: &str) -> u64 {
    let epoch = join(peer, room);
    peer.write(format!("{line}\n").as_bytes());
    until(peer, &format!("#own @{room} 1"));
    leave(peer, room);
    epoch
}

/// `#resume @room epoch 0` from `peer`, not in the room: the lines of the answer, up to and
/// including `#resumed` and the `n` replayed messages, or the `#noresume`.
fn resume(peer: &mut Peer, room: &str, epoch: u64) -> Vec<String> {
    peer.write(format!("#resume @{room} {epoch} 0\n").as_bytes());
    let mut lines = vec![until(peer, &format!("#joined @{room} "))];
    let answer = peer.read_text_line();
    let replayed = match answer.split(' ').collect::<Vec<_>>()[..] {
        ["#resumed", _, _, from, to] => {
            to.parse::<u64>().unwrap() + 1 - from.parse::<u64>().unwrap()
        }
        ["#noresume", ..] => 0,
        _ => panic!("not an answer to a resume: {answer:?}"),
    };
    lines.push(answer);
    for _ in 0..replayed {
        lines.push(peer.read_text_line());
    }
    lines
}

fn stats_until(hub: &Hub, events: &mut EventLog, what: &str, cond: impl Fn(&Stats) -> bool) {
    events.wait_until(what, || cond(&hub.stats()));
}

#[test]
fn kept_topics_never_make_the_hub_refuse_a_new_topic() {
    const MAX: usize = 8;
    let hub = rooms().max_topics(MAX).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut hostile, _) = connect(&hub, &mut events);
    // The first room, kept; then many more, each joined, said something in, left: far
    // more kept rooms than the table holds. Every join is granted.
    let early = visit(&mut hostile, "early", "first words");
    for i in 0..3 * MAX {
        visit(&mut hostile, &format!("r{i}"), "x");
    }
    let recent = visit(&mut hostile, "recent", "last words");
    stats_until(
        &hub,
        &mut events,
        "the table to be full of kept rooms",
        |s| s.kept_topics == MAX as u64,
    );
    assert_eq!(hub.stats().topics_evicted, (3 * MAX + 2 - MAX) as u64);

    // The host puts a new client in a new room: room is made by evicting a kept one.
    let (mut newcomer, id) = connect(&hub, &mut events);
    hub.join(id, "lobby")
        .expect("a kept room gives up its room");
    until(&mut newcomer, "#joined @lobby ");
    // So does the client's own #join of another new room.
    join(&mut newcomer, "fresh");

    // The first room was evicted long ago: its numbers restarted.
    let (mut returning, _) = connect(&hub, &mut events);
    let lines = resume(&mut returning, "early", early);
    let words: Vec<&str> = lines[1].split(' ').collect();
    assert_eq!(words[..3], ["#noresume", "@early", "epoch"], "{lines:?}");
    assert_ne!(words[3], early.to_string(), "a new epoch");
    assert_eq!(words[4], "0", "the new room has no message");
    // The last room left is still kept: it resumes exactly.
    let lines = resume(&mut returning, "recent", recent);
    assert_eq!(
        lines,
        [
            format!("#joined @recent {recent} 1"),
            format!("#resumed @recent {recent} 1 1"),
            "1@recent last words".to_owned(),
        ]
    );

    // Topics with members still make the hub refuse: fill the table with members.
    let mut i = 0;
    while hub.topics().iter().filter(|t| t.members > 0).count() < MAX {
        join(&mut returning, &format!("m{i}"));
        i += 1;
    }
    returning.write(b"#join @one-too-many\n");
    assert_eq!(
        returning.read_text_line(),
        "#refused join @one-too-many limit"
    );
    assert!(matches!(
        hub.join(id, "one-too-many"),
        Err(hubcast::Error::TopicLimit(_))
    ));
}

#[test]
fn kept_rings_stay_within_replay_kept_bytes_and_the_oldest_goes_first() {
    // Each room gets messages that are exactly 1000 bytes as framed (`1@k0 ` + 994 + `\n`),
    // which a ring counts with its bookkeeping (about 1.3 KB for a ring of one): three
    // rooms of one message fit, a fourth does not, and neither do three where one has two.
    const LIMIT: usize = 4500;
    let payload = |c: char| c.to_string().repeat(994);
    let hub = rooms().replay_kept_bytes(LIMIT).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut member, _) = connect(&hub, &mut events);
    let rooms = ["k0", "k1", "k2", "k3"];
    let epochs: Vec<u64> = rooms.iter().map(|r| join(&mut member, r)).collect();
    for room in rooms {
        hub.publish(room, payload('a')).unwrap();
        until(&mut member, &format!("1@{room} "));
    }
    // Left in another order than made: k2 first, then k0, k3, k1.
    leave(&mut member, "k2");
    stats_until(&hub, &mut events, "the room to be kept", |s| {
        s.kept_topics == 1
    });
    let one = hub.stats().kept_bytes;
    assert!(
        (1000..1500).contains(&one),
        "a room of one message costs {one}"
    );
    assert!(3 * one <= LIMIT as u64 && 4 * one > LIMIT as u64);
    let mut kept = 1;
    for room in ["k0", "k3", "k1"] {
        leave(&mut member, room);
        kept += 1;
        let want = kept.min(3);
        stats_until(&hub, &mut events, "the room to be kept", |s| {
            s.kept_topics == want && s.kept_bytes == one * want
        });
    }
    let stats = hub.stats();
    assert!(stats.kept_bytes <= LIMIT as u64, "{stats:?}");
    assert_eq!(stats.topics_evicted, 1);

    // A publish to a kept room (no member) grows its ring: the oldest kept room, k0, goes.
    hub.publish("k3", payload('b')).unwrap();
    stats_until(&hub, &mut events, "k0 to be evicted", |s| {
        s.topics_evicted == 2
    });
    let stats = hub.stats();
    assert_eq!(stats.kept_topics, 2, "{stats:?}");
    assert!(
        stats.kept_bytes > 2 * one && stats.kept_bytes <= LIMIT as u64,
        "{stats:?}"
    );

    // The evicted rooms answer `epoch`; the kept ones resume exactly.
    let (mut back, _) = connect(&hub, &mut events);
    for (room, epoch) in [("k2", epochs[2]), ("k0", epochs[0])] {
        let lines = resume(&mut back, room, epoch);
        let words: Vec<&str> = lines[1].split(' ').collect();
        assert_eq!(words[..3], ["#noresume", &format!("@{room}"), "epoch"]);
        assert_ne!(words[3], epoch.to_string());
    }
    let lines = resume(&mut back, "k3", epochs[3]);
    let k3 = epochs[3];
    assert_eq!(
        lines,
        [
            format!("#joined @k3 {k3} 2"),
            format!("#resumed @k3 {k3} 1 2"),
            format!("1@k3 {}", payload('a')),
            format!("2@k3 {}", payload('b')),
        ]
    );
    let lines = resume(&mut back, "k1", epochs[1]);
    assert_eq!(lines[1], format!("#resumed @k1 {} 1 1", epochs[1]));
    assert_eq!(lines[2], format!("1@k1 {}", payload('a')));
    // Rooms with members again are not kept.
    stats_until(&hub, &mut events, "no room to be kept", |s| {
        s.kept_topics == 0
    });
}

#[test]
fn an_empty_room_is_kept_and_resumes_at_its_position_until_replay_age() {
    let hub = rooms().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    // Left by #leave, and by a client that went away: kept though nothing was said.
    let (mut a, _) = connect(&hub, &mut events);
    let quiet = join(&mut a, "quiet");
    leave(&mut a, "quiet");
    let (mut gone, gone_id) = connect(&hub, &mut events);
    let silent = join(&mut gone, "silent");
    drop(gone);
    events.disconnected(gone_id);
    stats_until(&hub, &mut events, "both rooms to be kept", |s| {
        s.kept_topics == 2
    });
    // A member that missed nothing resumes at its position: no refetch.
    let (mut back, _) = connect(&hub, &mut events);
    for (room, epoch) in [("quiet", quiet), ("silent", silent)] {
        assert_eq!(
            resume(&mut back, room, epoch),
            [
                format!("#joined @{room} {epoch} 0"),
                format!("#resumed @{room} {epoch} 1 0"),
            ]
        );
    }

    // Past replay_age with no member and nothing to replay, a room is freed: a resume
    // makes it anew, with a new epoch.
    let hub = rooms()
        .replay_age(std::time::Duration::from_millis(50))
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut a, _) = connect(&hub, &mut events);
    let epoch = join(&mut a, "brief");
    leave(&mut a, "brief");
    events.wait_until("the empty room to be freed", || hub.topics().is_empty());
    let lines = resume(&mut a, "brief", epoch);
    let words: Vec<&str> = lines[1].split(' ').collect();
    assert_eq!(words[..3], ["#noresume", "@brief", "epoch"], "{lines:?}");
    assert_ne!(words[3], epoch.to_string());
}
