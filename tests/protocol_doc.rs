//! What docs/PROTOCOL.md states, one test per statement, over lines as `nc` would see
//! them; and the race between a host's `Hub::join` on connect and the client's own
//! `#leave`, run a thousand times.

mod util;

use hubcast::{Event, Hub, HubBuilder};
use util::{read_at as at, sequenced, Peer, LOCAL, TIMEOUT};

fn text(peer: &mut Peer) -> String {
    peer.read_text_line()
}

/// The race of the `rooms` example: the host puts every client in `lobby` on `Connected`
/// while the client sends `#leave @lobby` right after `#at`. The last decided wins: the
/// client's leave, read after the host's join was decided, keeps it out (even if the
/// join's command had not reached it: it is never told `#joined`), and the host gets
/// `Event::TopicLeft`; read before, it finds the client in no topic and changes nothing,
/// and the host's join puts it in. Every time, the host's table (`Hub::client`,
/// `Hub::topics`), the client's last `#joined`/`#left` and what it is sent agree.
#[test]
fn a_host_join_on_connect_and_the_clients_own_leave_agree_every_time() {
    const TRIES: usize = 1000;
    let hub = sequenced().client_topics(|_| true).bind(LOCAL).unwrap();
    let events = hub.subscribe();
    let addr = hub.local_addr();
    // Tries that ended out of lobby, and in it.
    let mut outcomes = [0usize; 2];
    for _ in 0..TRIES {
        let client = std::thread::spawn(move || {
            let mut peer = Peer::connect(addr);
            at(&mut peer);
            peer.write(b"#leave @lobby\n");
            // Until its own answer (the host's #joined may come first).
            let mut told = Vec::new();
            loop {
                let line = text(&mut peer);
                let done = line == "#left @lobby";
                told.push(line);
                if done {
                    return (peer, told);
                }
            }
        });
        let id = loop {
            if let Event::Connected { client, .. } = events.recv_timeout(TIMEOUT).unwrap() {
                break client;
            }
        };
        hub.join(id, "lobby").unwrap();
        let (mut peer, mut told) = client.join().unwrap();
        // Both are decided. The host's join, if it is applied, reaches the client before
        // the probe, and the probe before the end.
        let member = hub.client(id).unwrap().topics == ["lobby"];
        let members = hub
            .topics()
            .iter()
            .find(|t| t.name == "lobby")
            .map(|t| t.members);
        hub.publish("lobby", "probe").unwrap();
        hub.broadcast("end").unwrap();
        let mut probed = false;
        loop {
            let line = text(&mut peer);
            if line.ends_with(" end") {
                break;
            }
            probed |= line.ends_with("@lobby probe");
            if line.starts_with('#') {
                told.push(line);
            }
        }
        drop(peer);
        let mut left_itself = false;
        loop {
            match events.recv_timeout(TIMEOUT).unwrap() {
                Event::TopicLeft { client, topic, .. } if client == id && topic == "lobby" => {
                    left_itself = true;
                }
                Event::Disconnected { client, .. } if client == id => break,
                _ => {}
            }
        }
        let last = told
            .iter()
            .rev()
            .find(|l| l.starts_with("#joined @lobby ") || *l == "#left @lobby");
        let told_in = last.is_some_and(|l| l.starts_with("#joined"));
        assert_eq!(
            member, told_in,
            "the table and the client disagree: {told:?}"
        );
        assert_eq!(
            member, probed,
            "the table and the deliveries disagree: {told:?}"
        );
        assert_eq!(members.unwrap_or(0), usize::from(member), "{told:?}");
        // The documented outcome: out of lobby exactly when its own leave took it out
        // (the host was told); in it when the leave, read first, changed nothing.
        assert_eq!(member, !left_itself, "{told:?}");
        let expected: &[&[&str]] = if member {
            &[&["#left", "#joined"]]
        } else {
            &[&["#left"], &["#joined", "#left"]]
        };
        let kinds: Vec<&str> = told.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert!(expected.contains(&kinds.as_slice()), "{told:?}");
        outcomes[usize::from(member)] += 1;
    }
    eprintln!("out of lobby {}, in lobby {}", outcomes[0], outcomes[1]);
}

/// The epoch of a `#joined @<topic> <epoch> <seq>` line, and its position.
fn joined(line: &str, topic: &str) -> (u64, u64) {
    let rest = line
        .strip_prefix(&format!("#joined @{topic} "))
        .unwrap_or_else(|| panic!("{line}"));
    let (epoch, seq) = rest.split_once(' ').unwrap();
    (epoch.parse().unwrap(), seq.parse().unwrap())
}

/// A hub where clients choose their topics, and one client of it past its `#at`.
fn with_client(builder: HubBuilder) -> (Hub, Peer, hubcast::ClientId, u64) {
    let hub = builder.bind(LOCAL).unwrap();
    let mut events = util::EventLog::subscribe(&hub);
    let (mut peer, id) = util::join(&hub, &mut events);
    let (epoch, _) = at(&mut peer);
    (hub, peer, id, epoch)
}

/// Item 1: `#resumed <stream> <epoch> <from> <to>`: `<from>` is `<seq>+1`; `<to>` is
/// `min(<next>-1, last)` with `<next>`, and without it where this connection's live
/// messages began (its `#at` for `*`, its `#joined` for a topic it is in, the last
/// message for a topic the resume joins). Messages the client holds (live ones) are all
/// numbered after `<to>` (item 3).
#[test]
fn resumed_to_is_next_minus_one_or_the_last_or_where_live_messages_began() {
    let (hub, mut peer, id, epoch) = with_client(sequenced().client_topics(|_| true));
    for i in 1..=6 {
        hub.broadcast(format!("m{i}")).unwrap();
        assert_eq!(text(&mut peer), format!("{i} m{i}"));
    }
    // With <next>: min(next - 1, last).
    peer.write(format!("#resume * {epoch} 2 5\n#resume * {epoch} 4 99\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#resumed * {epoch} 3 4"));
    assert_eq!(text(&mut peer), "3 m3");
    assert_eq!(text(&mut peer), "4 m4");
    assert_eq!(text(&mut peer), format!("#resumed * {epoch} 5 6"));
    assert_eq!(text(&mut peer), "5 m5");
    assert_eq!(text(&mut peer), "6 m6");
    // Without: up to the #at position (0 here: nothing), however far the stream is.
    peer.write(format!("#resume * {epoch} 0\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#resumed * {epoch} 1 0"));

    hub.join(id, "room").unwrap();
    let (room, _) = joined(&text(&mut peer), "room");
    hub.publish("room", "r1").unwrap();
    assert_eq!(text(&mut peer), "1@room r1");
    // Out of it, the room kept for its ring.
    hub.leave(id, "room").unwrap();
    assert_eq!(text(&mut peer), "#left @room");
    for i in 2..=3 {
        hub.publish("room", format!("r{i}")).unwrap();
    }
    // Not in it: the resume joins it, and replays up to the last message.
    peer.write(format!("#resume @room {room} 1\n").as_bytes());
    assert_eq!(joined(&text(&mut peer), "room"), (room, 3));
    assert_eq!(text(&mut peer), format!("#resumed @room {room} 2 3"));
    assert_eq!(text(&mut peer), "2@room r2");
    assert_eq!(text(&mut peer), "3@room r3");
    hub.publish("room", "r4").unwrap();
    assert_eq!(text(&mut peer), "4@room r4");
    // In it, joined at 3: up to 3, not to the last (4, which it has live).
    peer.write(format!("#resume @room {room} 1\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#resumed @room {room} 2 3"));
    assert_eq!(text(&mut peer), "2@room r2");
    assert_eq!(text(&mut peer), "3@room r3");
}

/// Item 2: a resume is answered in one step: after `#resumed`, the replayed messages of
/// that stream come one after the other, with no live message of the stream between them,
/// however fast the host broadcasts meanwhile.
#[test]
fn no_live_message_of_the_stream_comes_between_resumed_and_the_replay() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Rings that keep all the live messages: the replay is never `old`.
    let roomy = sequenced().replay_messages(100_000).replay_bytes(64 << 20);
    let (hub, mut peer, _, epoch) = with_client(roomy);
    for i in 1..=50 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Bounded, should the reader fail.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) || hub.broadcast("live").is_err() {
                    break;
                }
            }
        });
        for round in 0..20 {
            // As if 2..=49 had been lost: the client has 1, then 50.
            peer.write(format!("#resume * {epoch} 1 50\n").as_bytes());
            loop {
                let line = text(&mut peer);
                assert!(!line.starts_with("#noresume"), "{line}");
                if line.starts_with("#resumed") {
                    assert_eq!(line, format!("#resumed * {epoch} 2 49"), "round {round}");
                    break;
                }
            }
            for i in 2..=49 {
                assert_eq!(text(&mut peer), format!("{i} m{i}"), "round {round}");
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

/// Items 3 and 4: `<to>` is never before where this connection's live messages began: a
/// `#resume` with `<next>` of a topic the client is not in (a `#left` crossed its gap
/// repair) joins the topic and replays everything after `<seq>` up to the join position,
/// `<next>` and the messages the client held after it included (the client drops those
/// it held); the same for a topic it was put back in after `<seq>`, and for `*` after a
/// reconnect. Live messages follow.
#[test]
fn a_gap_repair_of_a_topic_the_client_left_replays_up_to_its_join() {
    let (hub, mut peer, id, _) = with_client(sequenced().client_topics(|_| true));
    hub.join(id, "room").unwrap();
    let (room, _) = joined(&text(&mut peer), "room");
    for i in 1..=4 {
        hub.publish("room", format!("r{i}")).unwrap();
        assert_eq!(text(&mut peer), format!("{i}@room r{i}"));
    }
    hub.leave(id, "room").unwrap();
    assert_eq!(text(&mut peer), "#left @room");
    hub.publish("room", "r5").unwrap();
    // The client "lost" 2 and holds 3 and 4.
    peer.write(format!("#resume @room {room} 1 3\n").as_bytes());
    assert_eq!(joined(&text(&mut peer), "room"), (room, 5));
    assert_eq!(text(&mut peer), format!("#resumed @room {room} 2 5"));
    for i in 2..=5 {
        assert_eq!(text(&mut peer), format!("{i}@room r{i}"));
    }
    hub.publish("room", "r6").unwrap();
    assert_eq!(text(&mut peer), "6@room r6");

    // Put back in (at 7) after a gap it had not repaired yet (it holds 3 and 4 of 1..6).
    hub.leave(id, "room").unwrap();
    assert_eq!(text(&mut peer), "#left @room");
    hub.publish("room", "r7").unwrap();
    hub.join(id, "room").unwrap();
    assert_eq!(joined(&text(&mut peer), "room"), (room, 7));
    hub.publish("room", "r8").unwrap();
    assert_eq!(text(&mut peer), "8@room r8");
    peer.write(format!("#resume @room {room} 1 3\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#resumed @room {room} 2 7"));
    for i in 2..=7 {
        assert_eq!(text(&mut peer), format!("{i}@room r{i}"));
    }

    // `*` on a new connection, the <next> it holds from the one before.
    let mut events = util::EventLog::subscribe(&hub);
    for i in 1..=3 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    let (mut peer, _) = util::join(&hub, &mut events);
    let (epoch, start) = at(&mut peer);
    assert_eq!(start, 3);
    hub.broadcast("m4").unwrap();
    assert_eq!(text(&mut peer), "4 m4");
    peer.write(format!("#resume * {epoch} 0 2\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#resumed * {epoch} 1 3"));
    for i in 1..=3 {
        assert_eq!(text(&mut peer), format!("{i} m{i}"));
    }
}

/// Item 4: `<next>` not after `<seq>` is not a gap: `#error`, and nothing else happens.
/// `<next>` = `<seq>+1` is a gap of nothing: `#resumed` with `<from>` > `<to>`.
#[test]
fn a_gap_whose_next_is_not_after_seq_is_an_error() {
    let (hub, mut peer, _, epoch) = with_client(sequenced());
    for i in 1..=5 {
        hub.broadcast(format!("m{i}")).unwrap();
        assert_eq!(text(&mut peer), format!("{i} m{i}"));
    }
    peer.write(format!("#resume * {epoch} 4 4\n#resume * {epoch} 4 2\n").as_bytes());
    assert_eq!(text(&mut peer), "#error resume needs <next> after <seq>");
    assert_eq!(text(&mut peer), "#error resume needs <next> after <seq>");
    peer.write(format!("#resume * {epoch} 4 5\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#resumed * {epoch} 5 4"));
    hub.broadcast("m6").unwrap();
    assert_eq!(text(&mut peer), "6 m6");
    assert_eq!(hub.stats().resumes, 1);
}

/// Item 4: a `#join` of a topic the client is in, and a `#leave` of one it is not in,
/// change nothing and are not asked of the host: `#joined` with the topic's current
/// position (what came before it has reached the client), `#left`. A request that would
/// change something is asked.
#[test]
fn a_join_of_a_topic_the_client_is_in_changes_nothing() {
    let (hub, mut peer, id, _) = with_client(sequenced().client_topics(|_| false));
    hub.join(id, "room").unwrap();
    let (room, _) = joined(&text(&mut peer), "room");
    hub.publish("room", "r1").unwrap();
    hub.publish("room", "r2").unwrap();
    peer.write(b"#join @room\n#leave @other\n#leave @room\n");
    assert_eq!(text(&mut peer), "1@room r1");
    assert_eq!(text(&mut peer), "2@room r2");
    assert_eq!(text(&mut peer), format!("#joined @room {room} 2"));
    assert_eq!(text(&mut peer), "#left @other");
    assert_eq!(text(&mut peer), "#refused leave @room denied");
    hub.publish("room", "r3").unwrap();
    assert_eq!(text(&mut peer), "3@room r3");
    assert_eq!(hub.client(id).unwrap().topics, ["room"]);
}

/// Item 5: numbers are `0` or a digit 1-9 followed by digits, within a `u64`: anything else
/// (`007`, `+5`, empty, too large) is `#error`, never read leniently.
#[test]
fn numbers_are_strict() {
    let (hub, mut peer, _, epoch) = with_client(sequenced());
    hub.broadcast("m1").unwrap();
    assert_eq!(text(&mut peer), "1 m1");
    let bad = [
        format!("#resume * {epoch} 00"),
        format!("#resume * {epoch} +0"),
        format!("#resume * 0{epoch} 0"),
        format!("#resume * +{epoch} 0"),
        format!("#resume * {epoch}  0"),
        format!("#resume * {epoch} 0 "),
        format!("#resume * {epoch} 0 +1"),
        format!("#resume * {epoch} 0 02"),
        format!("#resume * {epoch} -1"),
        format!("#resume * {epoch} 18446744073709551616"),
        format!("#resume * {epoch} 1e0"),
    ];
    for line in &bad {
        peer.write(format!("{line}\n").as_bytes());
        let answer = text(&mut peer);
        assert!(
            answer.starts_with("#error resume needs"),
            "{line:?}: {answer}"
        );
    }
    peer.write(format!("#resume * {epoch} 0 2\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#resumed * {epoch} 1 1"));
    assert_eq!(text(&mut peer), "1 m1");
    assert_eq!(hub.stats().resumes, 1);
}

/// Item 7: a topic name is 1 to `max_topic_len` bytes of UTF-8 with no White_Space and no
/// control character (Cc, C1 included); `*`, `a@b`, `#x` and other punctuation or format
/// characters are names. `<seq>@<topic>` splits at the first `@`. A refused name is echoed
/// as one bounded word, whitespace, controls and `\` escaped as `\u{<hex>}`.
#[test]
fn topic_names_and_how_a_refused_one_is_echoed() {
    let (hub, mut peer, _, _) = with_client(sequenced().client_topics(|_| true));
    for name in ["*", "a@b", "#x", "a\u{200b}b", "ü"] {
        peer.write(format!("#join @{name}\n").as_bytes());
        let (_, seq) = joined(&text(&mut peer), name);
        assert_eq!(seq, 0);
    }
    hub.publish("a@b", "at the first @").unwrap();
    let line = text(&mut peer);
    assert_eq!(line, "1@a@b at the first @");
    let (head, payload) = line.split_once(' ').unwrap();
    assert_eq!(head.split_once('@'), Some(("1", "a@b")));
    assert_eq!(payload, "at the first @");
    let refused = [
        ("a\tb", "a\\u{9}b"),
        ("a\rb", "a\\u{d}b"),
        ("nbsp\u{a0}", "nbsp\\u{a0}"),
        ("nel\u{85}", "nel\\u{85}"),
        ("csi\u{9b}", "csi\\u{9b}"),
        ("del\u{7f}", "del\\u{7f}"),
        ("ideographic\u{3000}space", "ideographic\\u{3000}space"),
        ("back\\slash\u{2028}", "back\\u{5c}slash\\u{2028}"),
    ];
    for (name, echo) in refused {
        peer.write(format!("#join @{name}\n").as_bytes());
        assert_eq!(text(&mut peer), format!("#refused join @{echo} name"));
    }
    // Too long: the first 64 characters, then "...". The same in a resume's answers.
    let long = "y".repeat(60_000);
    peer.write(format!("#leave @{long}\n#resume @{long}\t 1 0\n").as_bytes());
    let cut = format!("{}...", "y".repeat(64));
    assert_eq!(text(&mut peer), format!("#refused leave @{cut} name"));
    assert_eq!(text(&mut peer), format!("#refused join @{cut} name"));
    assert_eq!(text(&mut peer), format!("#noresume @{cut} member 0 0"));
    // A valid name that may not be joined is echoed as it is.
    peer.write(format!("#join @{}\n", "z".repeat(64)).as_bytes());
    assert!(text(&mut peer).starts_with("#joined @"));
}

/// Item 8: the limits a client meets, each with the refusal the document names:
/// `max_topic_len` (`name`), `max_topics_per_client` and `max_topics` (`limit`),
/// `max_frame` (the connection ends, `FrameTooLarge`). The defaults are those the
/// document lists: 64 topics per client, names of 64 bytes, frames of 64 KiB.
#[test]
fn the_limits_a_client_meets_are_refused_as_documented() {
    let (hub, mut peer, id, _) = with_client(sequenced().client_topics(|_| true));
    for i in 0..64 {
        peer.write(format!("#join @t{i}\n").as_bytes());
        joined(&text(&mut peer), &format!("t{i}"));
    }
    peer.write(b"#join @one-more\n");
    assert_eq!(text(&mut peer), "#refused join @one-more limit");
    let (longest, over) = ("n".repeat(64), "n".repeat(65));
    peer.write(format!("#leave @t0\n#join @{longest}\n#leave @{longest}\n").as_bytes());
    assert_eq!(text(&mut peer), "#left @t0");
    joined(&text(&mut peer), &longest);
    assert_eq!(text(&mut peer), format!("#left @{longest}"));
    peer.write(format!("#join @{over}\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#refused join @{longest}... name"));
    let mut events = util::EventLog::subscribe(&hub);
    peer.write(&vec![b'x'; 64 * 1024]);
    peer.write(b"\n");
    hub.broadcast("marker").unwrap();
    let _ = text(&mut peer);
    let mut big = vec![b'x'; 64 * 1024 + 1];
    big.push(b'\n');
    peer.write(&big);
    assert_eq!(
        events.disconnected(id),
        hubcast::DisconnectReason::FrameTooLarge
    );

    // max_topics: every topic has a member, so a new one is refused.
    let (hub, mut a, _, _) = with_client(sequenced().client_topics(|_| true).max_topics(1));
    a.write(b"#join @only\n");
    joined(&text(&mut a), "only");
    let mut events = util::EventLog::subscribe(&hub);
    let (mut b, _) = util::join(&hub, &mut events);
    at(&mut b);
    b.write(b"#join @second\n#join @only\n");
    assert_eq!(text(&mut b), "#refused join @second limit");
    joined(&text(&mut b), "only");
}

/// Item 10: a resume that joins the topic and is refused keeps the join: the client is a
/// member, and live messages flow, from after the `#noresume` position.
#[test]
fn a_refused_resume_that_joined_keeps_the_client_in_the_topic() {
    let (hub, mut peer, id, _) = with_client(sequenced().client_topics(|_| true));
    peer.write(b"#join @room\n");
    let (room, _) = joined(&text(&mut peer), "room");
    hub.publish("room", "r1").unwrap();
    assert_eq!(text(&mut peer), "1@room r1");
    peer.write(b"#leave @room\n");
    assert_eq!(text(&mut peer), "#left @room");
    hub.publish("room", "r2").unwrap();
    // A wrong epoch: numbers cannot be compared.
    peer.write(format!("#resume @room {} 1\n", room + 1).as_bytes());
    assert_eq!(joined(&text(&mut peer), "room"), (room, 2));
    assert_eq!(text(&mut peer), format!("#noresume @room epoch {room} 2"));
    assert_eq!(hub.client(id).unwrap().topics, ["room"]);
    hub.publish("room", "r3").unwrap();
    assert_eq!(text(&mut peer), "3@room r3");
}

/// A client's own joins and leaves reach the host as `TopicJoined` and `TopicLeft`, in the
/// order of its messages, once per change: not for a request that changes nothing, nor
/// for the host's own `Hub::join`.
#[test]
fn the_host_sees_a_clients_own_changes_in_the_order_of_its_messages() {
    let hub = sequenced().client_topics(|_| true).bind(LOCAL).unwrap();
    let mut events = util::EventLog::subscribe(&hub);
    let (mut peer, id) = util::join(&hub, &mut events);
    at(&mut peer);
    hub.join(id, "host").unwrap();
    joined(&text(&mut peer), "host");
    peer.write(b"a\n#join @r\nb\n#join @r\n#leave @r\n#leave @r\n#resume @s 1 0\nc\n");
    joined(&text(&mut peer), "r");
    joined(&text(&mut peer), "r");
    assert_eq!(text(&mut peer), "#left @r");
    assert_eq!(text(&mut peer), "#left @r");
    joined(&text(&mut peer), "s");
    assert!(text(&mut peer).starts_with("#noresume @s epoch "));
    events.messages(id, 3);
    drop(peer);
    events.disconnected(id);
    let story: Vec<String> = events
        .seen
        .iter()
        .filter_map(|e| match e {
            Event::Message {
                client, payload, ..
            } if *client == id => Some(String::from_utf8_lossy(payload).into_owned()),
            Event::TopicJoined { client, topic, .. } if *client == id => Some(format!("+{topic}")),
            Event::TopicLeft { client, topic, .. } if *client == id => Some(format!("-{topic}")),
            _ => None,
        })
        .collect();
    assert_eq!(story, ["a", "+r", "b", "-r", "+s", "c"]);
}

/// Framing: every `\r` before a line's `\n` is dropped, so no payload from a line client
/// ends in one (a line reader would read it without): the same message on every wire.
#[test]
fn no_payload_from_a_line_ends_in_a_carriage_return() {
    let hub = sequenced().bind(LOCAL).unwrap();
    let mut events = util::EventLog::subscribe(&hub);
    let peer = Peer::connect(hub.local_addr());
    let id = events.connected(peer.addr());
    let mut peer = peer;
    peer.write(b"hi\r\r\n\r\rx\r\n\r\r\n");
    let messages = events.messages(id, 3);
    assert_eq!(messages, [&b"hi"[..], b"\r\rx", b""]);
}

/// "Who may write where", and its example: in a read-only room, a client also in `lobby`
/// reaches `lobby` only (its `#own`, no answer); in the room alone, its message is
/// answered `#refused publish @news denied`; a resume the host refuses is answered
/// `#noresume @news denied` with the room's position, and the client reads on live.
#[test]
fn a_read_only_room_as_the_example_shows() {
    use hubcast::TopicAction;
    let builder = sequenced()
        .relay(hubcast::Relay::Topics)
        .client_topics(|request| match request.action() {
            TopicAction::Publish | TopicAction::Resume => request.topic() != "news",
            _ => true,
        });
    let (hub, mut peer, _, _) = with_client(builder);
    peer.write(b"#join @lobby\n#join @news\n");
    joined(&text(&mut peer), "lobby");
    let (news, _) = joined(&text(&mut peer), "news");
    hub.publish("news", "the time is 21:50:10 UTC").unwrap();
    assert_eq!(text(&mut peer), "1@news the time is 21:50:10 UTC");
    peer.write(b"hello\n#leave @lobby\nhello?\n");
    assert_eq!(text(&mut peer), "#own @lobby 1");
    assert_eq!(text(&mut peer), "#left @lobby");
    assert_eq!(text(&mut peer), "#refused publish @news denied");
    peer.write(format!("#resume @news {news} 0\n").as_bytes());
    assert_eq!(text(&mut peer), format!("#noresume @news denied {news} 1"));
    hub.publish("news", "later").unwrap();
    assert_eq!(text(&mut peer), "2@news later");
    assert_eq!(hub.stats().publish_refused, 2);
}
