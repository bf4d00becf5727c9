//! The hubcast protocol (`Protocol::Sequenced`, docs/PROTOCOL.md) over lines, as `nc`
//! would see it: numbered streams, `#own` markers, direct messages, topics, resume and its
//! refusals, client-side joins, escaping.

mod util;

use hubcast::{Event, Hub, Relay, ResumeRefusal};
use util::{join, read_at as at, sequenced, EventLog, Peer, LOCAL};

fn text(peer: &mut Peer) -> String {
    peer.read_text_line()
}

#[test]
fn messages_are_numbered_per_stream() {
    let hub = sequenced().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    let (_epoch, start) = at(&mut peer);
    assert_eq!(start, 0);
    hub.broadcast("hello").unwrap();
    hub.broadcast("world").unwrap();
    assert_eq!(text(&mut peer), "1 hello");
    assert_eq!(text(&mut peer), "2 world");
    hub.join(id, "room").unwrap();
    let joined = text(&mut peer);
    assert!(
        joined.starts_with("#joined @room ") && joined.ends_with(" 0"),
        "{joined}"
    );
    hub.publish("room", "in the room").unwrap();
    hub.send_to(id, "just you").unwrap();
    hub.broadcast("all").unwrap();
    assert_eq!(text(&mut peer), "1@room in the room");
    assert_eq!(text(&mut peer), "- just you");
    assert_eq!(text(&mut peer), "3 all");
    hub.broadcast_except(id, "not you").unwrap();
    assert_eq!(text(&mut peer), "#own * 4");
    hub.leave(id, "room").unwrap();
    assert_eq!(text(&mut peer), "#left @room");
}

#[test]
fn a_client_resumes_the_hub_wide_stream_without_gap_or_duplicate() {
    let hub = sequenced().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut first, first_id) = join(&hub, &mut events);
    let (epoch, _) = at(&mut first);
    for i in 1..=3 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    for i in 1..=3 {
        assert_eq!(text(&mut first), format!("{i} m{i}"));
    }
    drop(first);
    events.disconnected(first_id);
    hub.broadcast("m4").unwrap();
    hub.broadcast("m5").unwrap();
    // The same client, back: it starts live after 5 and asks for what follows 3.
    let (mut back, back_id) = join(&hub, &mut events);
    assert_eq!(at(&mut back), (epoch, 5));
    hub.broadcast("m6").unwrap();
    back.write(format!("#resume * {epoch} 3\n").as_bytes());
    assert_eq!(text(&mut back), "6 m6");
    assert_eq!(text(&mut back), format!("#resumed * {epoch} 4 5"));
    assert_eq!(text(&mut back), "4 m4");
    assert_eq!(text(&mut back), "5 m5");
    let replayed = events.wait_for("the resume", |e| match e {
        Event::Resumed {
            client, replayed, ..
        } if *client == back_id => Some(*replayed),
        _ => None,
    });
    assert_eq!(replayed, 2);
    let stats = hub.stats();
    assert_eq!((stats.resumes, stats.replayed), (1, 2));
}

#[test]
fn resume_refusals_say_why_and_where_the_stream_is() {
    let hub = sequenced().replay_messages(3).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    for i in 1..=10 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    let (mut peer, _) = join(&hub, &mut events);
    let (epoch, at_seq) = at(&mut peer);
    assert_eq!(at_seq, 10);
    peer.write(format!("#resume * {} 3\n", epoch + 1).as_bytes());
    assert_eq!(text(&mut peer), format!("#noresume * epoch {epoch} 10"));
    peer.write(format!("#resume * {epoch} 3\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#noresume * old {epoch} 10"));
    peer.write(format!("#resume * {epoch} 7\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#resumed * {epoch} 8 10"));
    for i in 8..=10 {
        assert_eq!(text(&mut peer), format!("{i} m{i}"));
    }
    let refused = events.wait_for("a refusal", |e| match e {
        Event::ResumeRefused { reason, .. } => Some(*reason),
        _ => None,
    });
    assert_eq!(refused, ResumeRefusal::Epoch);
    assert_eq!(hub.stats().resumes_refused, 2);
}

#[test]
fn clients_join_topics_when_the_host_allows_it() {
    let hub = sequenced()
        .relay(Relay::Topics)
        .client_topics(|request| request.topic() != "admin")
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut alice, _) = join(&hub, &mut events);
    let (mut bob, _) = join(&hub, &mut events);
    at(&mut alice);
    at(&mut bob);
    alice.write(b"#join @lobby\n#join @admin\n#join @bad name\n");
    assert!(text(&mut alice).starts_with("#joined @lobby "));
    assert_eq!(text(&mut alice), "#refused join @admin denied");
    assert_eq!(
        text(&mut alice),
        "#error join needs one @topic, then optionally a count of messages"
    );
    bob.write(b"#join @lobby\n");
    assert!(text(&mut bob).starts_with("#joined @lobby "));
    alice.write(b"hello lobby\n##hash is data\n");
    assert_eq!(text(&mut bob), "1@lobby hello lobby");
    assert_eq!(text(&mut alice), "#own @lobby 1");
    assert_eq!(text(&mut bob), "2@lobby #hash is data");
    assert_eq!(text(&mut alice), "#own @lobby 2");
    bob.write(b"#leave @lobby\n#bogus\n");
    assert_eq!(text(&mut bob), "#left @lobby");
    assert!(text(&mut bob).starts_with("#error unknown request"));
}

/// A client's data message and its control message in one write keep their order: the
/// line is numbered in the topic (and its sender gets the `#own` marker) before the
/// `#leave` after it takes the sender out. Short lines wait in the relay batch, long ones
/// do not: both sizes behave the same.
#[test]
fn a_line_then_a_leave_in_one_write_stay_in_order() {
    let hub = sequenced()
        .relay(Relay::Topics)
        .client_topics(|_| true)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut alice, _) = join(&hub, &mut events);
    let (mut bob, _) = join(&hub, &mut events);
    at(&mut alice);
    at(&mut bob);
    let long = "x".repeat(5000);
    for (round, line) in ["short", long.as_str()].into_iter().enumerate() {
        let n = round + 1;
        alice.write(b"#join @room\n");
        assert!(text(&mut alice).starts_with("#joined @room "));
        if round == 0 {
            bob.write(b"#join @room\n");
            assert!(text(&mut bob).starts_with("#joined @room "));
        }
        alice.write(format!("{line}\n#leave @room\n#join @next{n}\n").as_bytes());
        assert_eq!(text(&mut bob), format!("{n}@room {line}"));
        assert_eq!(text(&mut alice), format!("#own @room {n}"));
        assert_eq!(text(&mut alice), "#left @room");
        assert!(text(&mut alice).starts_with(&format!("#joined @next{n} ")));
        alice.write(format!("#leave @next{n}\n").as_bytes());
        assert_eq!(text(&mut alice), format!("#left @next{n}"));
    }
}

/// Control messages are UTF-8: a topic name that is not is refused, never read leniently
/// (two different byte strings would name the same topic).
#[test]
fn a_control_message_that_is_not_utf8_is_an_error() {
    let hub = sequenced().client_topics(|_| true).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    at(&mut peer);
    peer.write(b"#join @\xff\n#join @\xfe\n");
    assert_eq!(text(&mut peer), "#error control messages are UTF-8");
    assert_eq!(text(&mut peer), "#error control messages are UTF-8");
    assert!(hub.client(id).unwrap().topics.is_empty());
    assert!(hub.topics().is_empty());
}

#[test]
fn resuming_a_topic_joins_it_and_replays_in_one_step() {
    let hub = sequenced().client_topics(|_| true).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    at(&mut peer);
    hub.join(id, "news").unwrap();
    let joined = text(&mut peer);
    let epoch: u64 = joined.split(' ').nth(2).unwrap().parse().unwrap();
    hub.publish("news", "n1").unwrap();
    assert_eq!(text(&mut peer), "1@news n1");
    drop(peer);
    events.disconnected(id);
    // The topic has no member now, but keeps its numbers and ring.
    hub.publish("news", "n2").unwrap();
    hub.publish("news", "n3").unwrap();
    let (mut back, _) = join(&hub, &mut events);
    at(&mut back);
    back.write(format!("#resume @news {epoch} 1\n").as_bytes());
    assert_eq!(text(&mut back), format!("#joined @news {epoch} 3"));
    assert_eq!(text(&mut back), format!("#resumed @news {epoch} 2 3"));
    assert_eq!(text(&mut back), "2@news n2");
    assert_eq!(text(&mut back), "3@news n3");
    hub.publish("news", "n4").unwrap();
    assert_eq!(text(&mut back), "4@news n4");
}

#[test]
fn a_gap_on_a_live_connection_is_repaired_with_exactly_what_it_lacks() {
    let hub = sequenced().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    let (epoch, _) = at(&mut peer);
    hub.join(id, "news").unwrap();
    let joined = text(&mut peer);
    let news: u64 = joined.split(' ').nth(2).unwrap().parse().unwrap();
    for i in 1..=5 {
        hub.broadcast(format!("m{i}")).unwrap();
        hub.publish("news", format!("n{i}")).unwrap();
    }
    for i in 1..=5 {
        assert_eq!(text(&mut peer), format!("{i} m{i}"));
        assert_eq!(text(&mut peer), format!("{i}@news n{i}"));
    }
    // As if 3 and 4 of each stream had been dropped: the client has 2, then 5. The hub-wide
    // stream started at connect (#at 0), yet the gap is after that: it is replayed too.
    peer.write(format!("#resume * {epoch} 2 5\n#resume @news {news} 2 5\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#resumed * {epoch} 3 4"));
    assert_eq!(text(&mut peer), "3 m3");
    assert_eq!(text(&mut peer), "4 m4");
    assert_eq!(text(&mut peer), format!("#resumed @news {news} 3 4"));
    assert_eq!(text(&mut peer), "3@news n3");
    assert_eq!(text(&mut peer), "4@news n4");
    // <next> past the stream's end stops at the end; the live stream goes on after it.
    peer.write(format!("#resume * {epoch} 4 99\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#resumed * {epoch} 5 5"));
    assert_eq!(text(&mut peer), "5 m5");
    hub.broadcast("m6").unwrap();
    assert_eq!(text(&mut peer), "6 m6");
    peer.write(b"#resume * 1 2 x\n");
    assert!(text(&mut peer).starts_with("#error resume needs"));
}

#[test]
fn a_topic_the_host_empties_keeps_its_ring_for_members_that_come_back() {
    let hub = sequenced().client_topics(|_| true).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut gone, gone_id) = join(&hub, &mut events);
    let (mut kept, kept_id) = join(&hub, &mut events);
    at(&mut gone);
    at(&mut kept);
    hub.join(gone_id, "room").unwrap();
    hub.join(kept_id, "room").unwrap();
    let joined = text(&mut gone);
    let epoch: u64 = joined.split(' ').nth(2).unwrap().parse().unwrap();
    hub.publish("room", "r1").unwrap();
    assert_eq!(text(&mut gone), "1@room r1");
    drop(gone);
    events.disconnected(gone_id);
    hub.publish("room", "r2").unwrap();
    // The host takes the last member out, as the client's own #leave or its leaving would:
    // the ring still holds r1 and r2.
    hub.leave(kept_id, "room").unwrap();
    let (mut back, _) = join(&hub, &mut events);
    at(&mut back);
    back.write(format!("#resume @room {epoch} 1\n").as_bytes());
    assert_eq!(text(&mut back), format!("#joined @room {epoch} 2"));
    assert_eq!(text(&mut back), format!("#resumed @room {epoch} 2 2"));
    assert_eq!(text(&mut back), "2@room r2");
}

#[test]
fn a_resume_never_replays_a_message_past_replay_age() {
    use std::sync::mpsc;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    const AGE: Duration = Duration::from_millis(200);
    // The authenticator runs on the dispatcher thread: holding it there keeps the
    // dispatcher from pruning while the ring's age deadline passes, so the round after it
    // both prunes and reads a resume.
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let hold = Mutex::new((entered_tx, released));
    let hub = sequenced()
        .replay_age(AGE)
        .authenticate(move |request| {
            if request.frame() == Some(&b"hold"[..]) {
                let hold = hold.lock().unwrap();
                hold.0.send(()).unwrap();
                let _ = hold.1.recv_timeout(util::TIMEOUT);
            }
            hubcast::Auth::Accept
        })
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    peer.write(b"ok\n");
    events.connected(peer.addr());
    let (epoch, _) = at(&mut peer);
    hub.broadcast("m1").unwrap();
    assert_eq!(text(&mut peer), "1 m1");
    let received = Instant::now();
    let mut holder = Peer::connect(hub.local_addr());
    holder.write(b"hold\n");
    entered.recv_timeout(util::TIMEOUT).unwrap();
    // Message 1 was numbered before it was received: once AGE has passed since then, it is
    // past its age. Only time makes it so, hence a wait on the clock, bounded by AGE.
    while received.elapsed() < AGE + Duration::from_millis(20) {
        std::thread::sleep(util::PACE);
    }
    peer.write(format!("#resume * {epoch} 0 2\n").as_bytes());
    release.send(()).unwrap();
    assert_eq!(text(&mut peer), format!("#noresume * old {epoch} 1"));
    drop(holder);
}

/// What one client read of `*` and `@room`, by number, until the broadcast `end`.
#[derive(Default)]
struct Seen {
    hub: Vec<(u64, String)>,
    room: Vec<(u64, String)>,
    /// The `#joined @room` position and, after `#left @room`, how many room messages came.
    joined: Option<u64>,
    left_after: Option<usize>,
}

fn read_until_end(peer: &mut Peer) -> Seen {
    let mut seen = Seen::default();
    loop {
        let line = text(peer);
        if let Some(rest) = line.strip_prefix("#joined @room ") {
            seen.joined = Some(rest.split(' ').nth(1).unwrap().parse().unwrap());
        } else if line == "#left @room" {
            seen.left_after = Some(seen.room.len());
        } else if let Some((head, payload)) = line.split_once(' ') {
            match head.split_once('@') {
                Some((seq, "room")) => seen.room.push((seq.parse().unwrap(), payload.into())),
                None if !head.starts_with('#') => {
                    seen.hub.push((head.parse().unwrap(), payload.into()));
                    if payload == "end" {
                        return seen;
                    }
                }
                _ => panic!("{line}"),
            }
        }
    }
}

#[test]
fn every_member_sees_the_same_numbers_whatever_thread_publishes() {
    const THREADS: usize = 3;
    const EACH: usize = 200;
    let hub = sequenced().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peers: Vec<(Peer, hubcast::ClientId)> =
        (0..3).map(|_| join(&hub, &mut events)).collect();
    for (peer, _) in &mut peers {
        at(peer);
    }
    let ids: Vec<_> = peers.iter().map(|p| p.1).collect();
    hub.join(ids[0], "room").unwrap();
    hub.join(ids[1], "room").unwrap();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let hub = &hub;
            scope.spawn(move || {
                for k in 0..EACH {
                    hub.publish("room", format!("t{t}-{k}")).unwrap();
                    if k % 4 == 0 {
                        hub.broadcast(format!("b{t}-{k}")).unwrap();
                    }
                }
            });
        }
        // The third client comes and goes while they publish.
        let hub = &hub;
        let late = ids[2];
        scope.spawn(move || {
            hub.join(late, "room").unwrap();
            hub.broadcast("joined").unwrap();
            hub.leave(late, "room").unwrap();
        });
    });
    hub.broadcast("end").unwrap();
    let seen: Vec<Seen> = peers.iter_mut().map(|(p, _)| read_until_end(p)).collect();
    let total = (THREADS * EACH) as u64;
    for s in &seen[..2] {
        let numbers: Vec<u64> = s.room.iter().map(|m| m.0).collect();
        assert_eq!(numbers, (1..=total).collect::<Vec<_>>());
        // Each thread's messages in its own order.
        for t in 0..THREADS {
            let mine: Vec<String> = s
                .room
                .iter()
                .filter(|m| m.1.starts_with(&format!("t{t}-")))
                .map(|m| m.1.clone())
                .collect();
            let want: Vec<String> = (0..EACH).map(|k| format!("t{t}-{k}")).collect();
            assert_eq!(mine, want);
        }
    }
    // The same number is the same message for everyone, on every stream.
    assert_eq!(seen[0].room, seen[1].room);
    assert_eq!(seen[0].hub, seen[1].hub);
    assert_eq!(seen[0].hub, seen[2].hub);
    let hub_numbers: Vec<u64> = seen[2].hub.iter().map(|m| m.0).collect();
    assert_eq!(
        hub_numbers,
        (1..=hub_numbers.len() as u64).collect::<Vec<_>>()
    );
    // The late client got exactly the run after its join position, up to its leave.
    let late = &seen[2];
    let from = late.joined.expect("joined") as usize;
    let upto = late.left_after.expect("left");
    assert_eq!(late.room[..upto], seen[0].room[from..from + upto]);
    assert_eq!(late.room.len(), upto);
}

/// A client put in a topic by the host before its `#resume` of that topic arrives (as the
/// rooms example does on connect) gets the messages it missed up to its `#joined` position,
/// and none of the live ones it already has after it.
#[test]
fn resuming_a_topic_the_host_put_the_client_in_repeats_no_live_message() {
    let hub = sequenced().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut first, first_id) = join(&hub, &mut events);
    at(&mut first);
    hub.join(first_id, "room").unwrap();
    let joined = text(&mut first);
    let epoch: u64 = joined.split(' ').nth(2).unwrap().parse().unwrap();
    hub.publish("room", "m1").unwrap();
    assert_eq!(text(&mut first), "1@room m1");
    drop(first);
    events.disconnected(first_id);
    hub.publish("room", "m2").unwrap();
    hub.publish("room", "m3").unwrap();

    let (mut back, id) = join(&hub, &mut events);
    at(&mut back);
    hub.join(id, "room").unwrap();
    assert_eq!(text(&mut back), format!("#joined @room {epoch} 3"));
    hub.publish("room", "m4 (live)").unwrap();
    assert_eq!(text(&mut back), "4@room m4 (live)");
    back.write(format!("#resume @room {epoch} 1\n").as_bytes());
    assert_eq!(text(&mut back), format!("#resumed @room {epoch} 2 3"));
    assert_eq!(text(&mut back), "2@room m2");
    assert_eq!(text(&mut back), "3@room m3");
    hub.publish("room", "m5").unwrap();
    assert_eq!(text(&mut back), "5@room m5");
}

/// A `Hub::join` updates the shared table at once and reaches the dispatcher later; a
/// client's `#leave` of that topic read in between decides last. Here the host's join is
/// made from inside the `client_topics` closure, so the client's `#leave` in the same read
/// always comes between. The client is answered, stays out, and the table agrees.
#[test]
fn a_client_leave_between_a_host_join_and_its_command_decides_last() {
    use std::sync::{Arc, OnceLock, Weak};
    let me: Arc<OnceLock<Weak<Hub>>> = Arc::new(OnceLock::new());
    let seen = Arc::clone(&me);
    let hub = sequenced()
        .client_topics(move |request| {
            if request.topic() == "zzz" {
                if let Some(hub) = seen.get().and_then(Weak::upgrade) {
                    hub.join(request.client(), "lobby").unwrap();
                }
            }
            true
        })
        .bind(LOCAL)
        .unwrap();
    let hub = Arc::new(hub);
    me.set(Arc::downgrade(&hub)).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    at(&mut peer);
    peer.write(b"#join @zzz\n#leave @lobby\n");
    assert!(text(&mut peer).starts_with("#joined @zzz "));
    assert_eq!(text(&mut peer), "#left @lobby");
    assert_eq!(hub.client(id).unwrap().topics, ["zzz"]);
    // Not in lobby: its message does not come, the marker after it does.
    hub.publish("lobby", "after the leave").unwrap();
    hub.publish("zzz", "marker").unwrap();
    assert_eq!(text(&mut peer), "1@zzz marker");
    // The table made lobby for the join; nothing holds it since: it is not kept.
    assert!(hub.topics().iter().all(|t| t.name != "lobby"));
    // The host learns that its join was overridden.
    events.wait_for("the client's own leave", |e| match e {
        Event::TopicLeft { client, topic, .. } if *client == id && topic == "lobby" => Some(()),
        _ => None,
    });

    // The mirror image: a host leave, then the client's own join, decided last. Whether
    // the host's leave reached the dispatcher before the client's join was read (the
    // client is told `#left`, then `#joined`) or not (its join supersedes the leave on its
    // way: `#joined` only), the client ends in the topic, in the table and the deliveries.
    peer.write(b"#join @lobby\n");
    assert!(text(&mut peer).starts_with("#joined @lobby "));
    hub.leave(id, "lobby").unwrap();
    peer.write(b"#join @lobby\n");
    let mut answer = text(&mut peer);
    if answer == "#left @lobby" {
        answer = text(&mut peer);
    }
    assert!(answer.starts_with("#joined @lobby "), "{answer}");
    assert!(
        hub.client(id).unwrap().topics.contains(&"lobby".to_owned()),
        "the table has the client in the topic it joined last"
    );
    hub.publish("lobby", "probe").unwrap();
    hub.publish("zzz", "marker 2").unwrap();
    assert!(text(&mut peer).ends_with("@lobby probe"));
    assert_eq!(text(&mut peer), "2@zzz marker 2");
}

/// The host and the client toggle the client's membership of one topic at once, from two
/// threads: whatever the interleaving, the table (`Hub::client`) and the deliveries agree
/// at the end.
#[test]
fn host_and_client_toggling_a_topic_end_in_agreement() {
    use std::io::Write;
    const TOGGLES: usize = 400;
    for round in 0..5 {
        let hub = sequenced().client_topics(|_| true).bind(LOCAL).unwrap();
        let mut events = EventLog::subscribe(&hub);
        let (peer, id) = join(&hub, &mut events);
        let mut writer = peer.stream.try_clone().unwrap();
        let (rx, _reader) = util::spawn_reader(peer, hubcast::Framing::Lines);
        let client = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for i in 0..TOGGLES {
                let line: &[u8] = if i % 2 == 0 {
                    b"#join @lobby\n"
                } else {
                    b"#leave @lobby\n"
                };
                requests.extend_from_slice(line);
                if i % 16 == 15 {
                    writer.write_all(&requests).unwrap();
                    requests.clear();
                }
            }
            // Odd rounds end in the topic, even ones out of it.
            if round % 2 == 1 {
                requests.extend_from_slice(b"#join @lobby\n");
            }
            requests.extend_from_slice(b"#join @done\n");
            writer.write_all(&requests).unwrap();
        });
        for i in 0..TOGGLES {
            if i % 2 == 0 {
                hub.join(id, "lobby").unwrap();
            } else {
                hub.leave(id, "lobby").unwrap();
            }
        }
        client.join().unwrap();
        // Every request of the client is applied once `#joined @done` arrives.
        loop {
            match rx.recv_timeout(util::TIMEOUT).expect("#joined @done") {
                util::Got::Frame(f) if f.starts_with(b"#joined @done") => break,
                util::Got::Frame(_) => {}
                other => panic!("{other:?}"),
            }
        }
        let in_table = hub.client(id).unwrap().topics.contains(&"lobby".to_owned());
        hub.publish("lobby", "probe").unwrap();
        hub.broadcast("end").unwrap();
        let mut got_probe = false;
        loop {
            match rx.recv_timeout(util::TIMEOUT).expect("the end") {
                util::Got::Frame(f) if f.ends_with(b" end") => break,
                util::Got::Frame(f) => got_probe |= f.ends_with(b"@lobby probe"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            got_probe, in_table,
            "round {round}: the table and the deliveries disagree"
        );
    }
}
