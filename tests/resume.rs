//! The Python client (`clients/python/hubcast_client.py`) against a hub in this process with
//! `Protocol::Sequenced`: resume without gap or duplicate after disconnects at any point of
//! a stream, every reason a resume is refused, gaps from a slow client repaired on the same
//! connection, the replay ring's bounds, several topics at once, `#own` markers, direct
//! messages and escaping over length-prefixed frames with authentication, a reconnect storm
//! of 1,000 clients, and the client's own unit tests.
//!
//! The clients are Python scripts in `tests/python/`, run as child processes that print one
//! line per event; `driver.py` runs one client command by command. Needs `python3`. Nothing
//! here sleeps to synchronise: the host waits on the clients' lines and the hub's events,
//! and paces its publishing on what the clients report.

mod util;

use hubcast::{ClientId, Error};
use util::{python, require_program, sequenced, ChildProcess, Driver, EventLog, LOCAL};

/// The messages of `stream` among a driver's lines, as (seq, payload).
fn messages(lines: &[String], stream: &str) -> Vec<(u64, String)> {
    let prefix = format!("message {stream} ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (seq, payload) = rest.split_once(' ').unwrap_or((rest, ""));
            (seq.parse().expect("a number"), payload.to_owned())
        })
        .collect()
}

/// The lines of one kind (`noresume`, `gap`, ...), without the kind.
fn lines_of<'a>(lines: &'a [String], kind: &str) -> Vec<&'a str> {
    let prefix = format!("{kind} ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// (seq, payload) for payloads `{tag}{seq}`, seq in `range`.
fn expected(tag: &str, range: std::ops::RangeInclusive<u64>) -> Vec<(u64, String)> {
    range.map(|i| (i, format!("{tag}{i}"))).collect()
}

#[test]
fn a_client_that_drops_its_connection_resumes_where_it_was() {
    if !require_program("python3") {
        return;
    }
    let hub = sequenced().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut client = Driver::start(&hub, &[]);
    let (_, addr) = client.connect();
    let id = events.connected(addr.parse().unwrap());
    for i in 1..=3 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    let mut lines = client.run("until * 3");
    lines.extend(client.run("drop"));
    events.disconnected(id);
    hub.broadcast("m4").unwrap();
    hub.broadcast("m5").unwrap();
    let ((_, at), _) = client.connect();
    assert_eq!(at, 5);
    hub.broadcast("m6").unwrap();
    lines.extend(client.run("until * 6"));
    assert_eq!(messages(&lines, "*"), expected("m", 1..=6), "{lines:#?}");
    client.run("quit");
}

/// A small seeded generator (xorshift64*), so a failing plan can be run again.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The seed of the random tests: `HUBCAST_SEED` if set, to replay a failure.
fn seed() -> u64 {
    std::env::var("HUBCAST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe)
}

#[test]
fn resume_has_no_gap_and_no_duplicate_whatever_the_disconnect_point() {
    if !require_program("python3") {
        return;
    }
    const COUNT: u64 = 2000;
    const POINTS: usize = 30;
    // The host publishes at most this far ahead of what the client has shown, so it keeps
    // publishing while the client disconnects and resumes, and the ring (1,024) holds all
    // the client can miss.
    const AHEAD: u64 = 64;
    let seed = seed();
    let mut rng = Rng(seed.max(1));
    let mut points = std::collections::BTreeMap::new();
    while points.len() < POINTS {
        let mode = ["c", "k", "r"][rng.below(3) as usize];
        points.insert(rng.below(COUNT), mode);
    }
    let plan: Vec<String> = points.iter().map(|(k, m)| format!("{m}:{k}")).collect();
    let hub = sequenced().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut child = python(
        "resume_points.py",
        &[
            hub.local_addr().to_string(),
            COUNT.to_string(),
            plan.join(","),
        ],
    );
    let mut published = 0;
    let mut publish_to = |upto: u64| {
        while published < upto.min(COUNT) {
            published += 1;
            hub.broadcast(format!("p{published}")).unwrap();
        }
    };
    let mut got = Vec::new();
    let mut current: Option<ClientId> = None;
    let (mut connects, mut kicks) = (0, 0);
    let context = |got: &Vec<(u64, String)>| {
        format!("seed {seed}, plan {plan:?}, got {} messages", got.len())
    };
    loop {
        let line = child.next_line();
        let (kind, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match kind {
            "connected" => {
                current = Some(events.connected(rest.parse().unwrap()));
                if connects == 0 {
                    // The stream starts for the client at its first #at: publish only now.
                    publish_to(AHEAD);
                }
                connects += 1;
            }
            "message" => {
                let (seq, payload) = rest.split_once(' ').unwrap();
                let seq: u64 = seq.parse().unwrap();
                got.push((seq, payload.to_owned()));
                publish_to(seq + AHEAD);
            }
            "kick" => {
                let id = current.take().expect("kicked while connected");
                // The client may have reset the connection at a later point already.
                match hub.disconnect(id) {
                    Ok(()) => kicks += 1,
                    Err(Error::UnknownClient(_)) => {}
                    Err(err) => panic!("{err}"),
                }
            }
            "noresume" | "gap" => panic!("{line}: {}", context(&got)),
            "done" => break,
            _ => {}
        }
    }
    assert!(child.wait().success(), "{}", child.stderr());
    assert_eq!(got, expected("p", 1..=COUNT), "{}", context(&got));
    assert!(kicks > 0, "no kick: {}", context(&got));
    // About one connection per point: fewer when a point falls on a connection that is
    // ending already (a kick not yet done), more for the second reset of "r" points.
    assert!(
        connects > POINTS * 2 / 3,
        "{connects} connections: {}",
        context(&got)
    );
    let stats = hub.stats();
    assert_eq!(stats.resumes_refused, 0);
    assert!(stats.resumes > 0 && stats.replayed > 0, "{stats:?}");
}

/// The `noresume` lines among a driver's lines, as (stream, reason, old, new).
fn refusals(lines: &[String]) -> Vec<(String, String, String, String)> {
    lines_of(lines, "noresume")
        .iter()
        .map(|rest| {
            let w: Vec<&str> = rest.split(' ').collect();
            (
                w[0].to_owned(),
                w[1].to_owned(),
                format!("{} {}", w[2], w[3]),
                format!("{} {}", w[4], w[5]),
            )
        })
        .collect()
}

/// The client comes back to a new hub (another process's life): the epoch differs.
#[test]
fn a_new_hub_refuses_a_resume_for_its_epoch() {
    if !require_program("python3") {
        return;
    }
    let first = sequenced().bind(LOCAL).unwrap();
    let mut client = Driver::start(&first, &[]);
    let ((epoch, _), _) = client.connect();
    for i in 1..=3 {
        first.broadcast(format!("m{i}")).unwrap();
    }
    client.run("until * 3");
    drop(first);
    let second = sequenced().bind(LOCAL).unwrap();
    second.broadcast("before").unwrap();
    client.run(&format!("address {}", second.local_addr()));
    // The client finds the first hub gone, reconnects to the second and resumes there.
    let lines = client.run("until-event noresume *");
    let new_epoch: u64 = lines_of(&lines, "connected")[0]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new_epoch, epoch);
    assert_eq!(
        refusals(&lines),
        [(
            "*".into(),
            "epoch".into(),
            format!("{epoch} 3"),
            format!("{new_epoch} 1")
        )]
    );
    // It goes on from the position it was given.
    second.broadcast("after").unwrap();
    let lines = client.run("until * 2");
    assert_eq!(messages(&lines, "*"), [(2, "after".to_owned())]);
}

#[test]
fn a_resume_past_the_ring_is_refused_as_old() {
    if !require_program("python3") {
        return;
    }
    let hub = sequenced().replay_messages(10).bind(LOCAL).unwrap();
    let mut client = Driver::start(&hub, &[]);
    let ((epoch, _), _) = client.connect();
    for i in 1..=5 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    client.run("until * 5");
    client.run("drop");
    for i in 6..=55 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    client.connect();
    // The refusal first: a message published before the hub reads the resume would move
    // the position it gives.
    let mut lines = client.run("until-event noresume *");
    hub.broadcast("m56").unwrap();
    lines.extend(client.run("until * 56"));
    assert_eq!(
        refusals(&lines),
        [(
            "*".into(),
            "old".into(),
            format!("{epoch} 5"),
            format!("{epoch} 55")
        )]
    );
    assert_eq!(messages(&lines, "*"), expected("m", 56..=56), "{lines:#?}");
}

#[test]
fn a_resume_over_the_queue_bound_is_refused_as_much() {
    if !require_program("python3") {
        return;
    }
    let hub = sequenced().queue_bytes(4096).bind(LOCAL).unwrap();
    let mut client = Driver::start(&hub, &[]);
    let ((epoch, _), _) = client.connect();
    hub.broadcast("m1").unwrap();
    client.run("until * 1");
    client.run("drop");
    // 100 messages of 100 bytes: more than the client's queue may hold at once.
    let long = "x".repeat(100);
    for _ in 2..=101 {
        hub.broadcast(&long).unwrap();
    }
    client.connect();
    let mut lines = client.run("until-event noresume *");
    hub.broadcast("m102").unwrap();
    lines.extend(client.run("until * 102"));
    assert_eq!(
        refusals(&lines),
        [(
            "*".into(),
            "much".into(),
            format!("{epoch} 1"),
            format!("{epoch} 101")
        )]
    );
    assert_eq!(messages(&lines, "*"), expected("m", 102..=102));
}

#[test]
fn a_topic_the_client_may_not_join_is_refused_as_member() {
    if !require_program("python3") {
        return;
    }
    // Only the host puts clients in topics here (no client_topics).
    let hub = sequenced().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut client = Driver::start(&hub, &[]);
    let (_, addr) = client.connect();
    let id = events.connected(addr.parse().unwrap());
    hub.join(id, "news").unwrap();
    hub.publish("news", "n1").unwrap();
    let lines = client.run("until @news 1");
    let joined = lines_of(&lines, "joined")[0].to_owned();
    let epoch = joined.split(' ').nth(1).unwrap().to_owned();
    client.run("drop");
    hub.publish("news", "n2").unwrap();
    let mut lines = client.run("connect");
    lines.extend(client.run("until-event noresume @news"));
    // The hub says why the implicit join failed, then refuses the resume with no position.
    assert_eq!(lines_of(&lines, "refused"), ["join @news off"]);
    assert_eq!(
        refusals(&lines),
        [(
            "@news".into(),
            "member".into(),
            format!("{epoch} 1"),
            "0 0".into()
        )]
    );
    // The client stops following the topic: its next connection does not ask again.
    let positions = client.run("positions");
    assert!(
        positions[0].starts_with("positions *=") && !positions[0].contains("@news"),
        "{positions:?}"
    );
}

#[test]
fn a_gap_from_drop_oldest_is_repaired_on_the_same_connection() {
    if !require_program("python3") {
        return;
    }
    use hubcast::SlowClientPolicy;
    // The client stops reading while the host publishes 1.5 MB: the socket buffers take
    // about 100 KB, the client's queue 1 MiB, and DropOldest drops the oldest of the rest,
    // about 0.4 MB: a gap well under the queue bound, so its replay is not `much`.
    const COUNT: u64 = 15_000;
    let hub = sequenced()
        .slow_client_policy(SlowClientPolicy::DropOldest)
        .queue_bytes(1 << 20)
        .send_buffer(Some(64 * 1024))
        .replay_messages(COUNT as usize)
        .replay_bytes(4 << 20)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut client = Driver::start(&hub, &["--rcvbuf", "4096"]);
    let (_, addr) = client.connect();
    let id = events.connected(addr.parse().unwrap());
    let pad = "x".repeat(94);
    for i in 1..=COUNT {
        hub.broadcast(format!("m{i}-{pad}")).unwrap();
    }
    events.wait_until("messages dropped for the client", || {
        hub.client(id).is_some_and(|c| c.dropped > 0)
    });
    let lines = client.run(&format!("until * {COUNT}"));
    let want: Vec<(u64, String)> = (1..=COUNT).map(|i| (i, format!("m{i}-{pad}"))).collect();
    let got = messages(&lines, "*");
    let others: Vec<&String> = lines.iter().filter(|l| !l.starts_with("message")).collect();
    assert!(
        got == want,
        "{} messages; other lines: {others:?}",
        got.len()
    );
    let gaps = lines_of(&lines, "gap");
    assert!(!gaps.is_empty(), "the client saw no jump");
    assert_eq!(lines_of(&lines, "resumed").len(), gaps.len());
    assert!(refusals(&lines).is_empty());
    // All of it on one connection.
    assert!(lines_of(&lines, "disconnected").is_empty());
    assert!(hub.stats().replayed > 0);
}

#[test]
fn the_replay_ring_keeps_replay_messages_messages() {
    if !require_program("python3") {
        return;
    }
    let hub = sequenced().replay_messages(20).bind(LOCAL).unwrap();
    let mut client = Driver::start(&hub, &[]);
    let ((epoch, _), _) = client.connect();
    let publish = |range: std::ops::RangeInclusive<u64>| {
        for i in range {
            hub.broadcast(format!("m{i}")).unwrap();
        }
    };
    publish(1..=5);
    client.run("until * 5");
    client.run("drop");
    // Away for 20 messages: the ring holds them all.
    publish(6..=25);
    client.connect();
    let lines = client.run("until * 25");
    assert_eq!(lines_of(&lines, "resumed"), [format!("* {epoch} 6 25")]);
    assert_eq!(messages(&lines, "*"), expected("m", 6..=25));
    client.run("drop");
    // Away for 21: the first of them is gone.
    publish(26..=46);
    client.connect();
    let mut lines = client.run("until-event noresume *");
    publish(47..=47);
    lines.extend(client.run("until * 47"));
    assert_eq!(
        refusals(&lines),
        [(
            "*".into(),
            "old".into(),
            format!("{epoch} 25"),
            format!("{epoch} 46")
        )]
    );
    assert_eq!(messages(&lines, "*"), expected("m", 47..=47));
}

#[test]
fn the_replay_ring_keeps_replay_bytes_of_messages_with_their_bookkeeping() {
    if !require_program("python3") {
        return;
    }
    // Messages 10 to 99 of `*` are framed as "NN " + 100 bytes + "\n": 104 bytes each,
    // which a ring counts as 160 (`HubBuilder::replay_bytes`: rounded up to 16, plus 48).
    const COST: usize = 160;
    let hub = sequenced().replay_bytes(10 * COST).bind(LOCAL).unwrap();
    let mut client = Driver::start(&hub, &[]);
    let ((epoch, _), _) = client.connect();
    let long = |i: u64| format!("{i:0>100}");
    for i in 1..=12 {
        hub.broadcast(long(i)).unwrap();
    }
    client.run("until * 12");
    client.run("drop");
    // Ten messages fill the ring exactly.
    for i in 13..=22 {
        hub.broadcast(long(i)).unwrap();
    }
    client.connect();
    let lines = client.run("until * 22");
    assert_eq!(lines_of(&lines, "resumed"), [format!("* {epoch} 13 22")]);
    let want: Vec<(u64, String)> = (13..=22).map(|i| (i, long(i))).collect();
    assert_eq!(messages(&lines, "*"), want);
    client.run("drop");
    // Eleven do not fit: the first of them is gone.
    for i in 23..=33 {
        hub.broadcast(long(i)).unwrap();
    }
    client.connect();
    let mut lines = client.run("until-event noresume *");
    hub.broadcast(long(34)).unwrap();
    lines.extend(client.run("until * 34"));
    assert_eq!(
        refusals(&lines),
        [(
            "*".into(),
            "old".into(),
            format!("{epoch} 22"),
            format!("{epoch} 33")
        )]
    );
    assert_eq!(messages(&lines, "*"), [(34, long(34))]);
}

#[test]
fn the_replay_ring_keeps_messages_for_replay_age_and_then_frees_empty_topics() {
    if !require_program("python3") {
        return;
    }
    use std::time::{Duration, Instant};
    const AGE: Duration = Duration::from_millis(200);
    let hub = sequenced()
        .replay_age(AGE)
        .client_topics(|_| true)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    // A client in this process that sees every message of `*` as soon as it is numbered.
    let mut observer = util::Peer::connect(hub.local_addr());
    events.connected(observer.addr());
    observer.read_text_line(); // #at
    let mut client = Driver::start(&hub, &[]);
    let ((epoch, _), _) = client.connect();
    let joined = client.run("join @t");
    let topic_epoch = lines_of(&joined, "joined")[0]
        .split(' ')
        .nth(1)
        .unwrap()
        .to_owned();
    hub.broadcast("m1").unwrap();
    hub.publish("t", "t1").unwrap();
    client.run("until * 1");
    client.run("until @t 1");
    client.run("drop");
    // Missed while away. The topic has no member left; its ring keeps it for now.
    hub.publish("t", "t2").unwrap();
    hub.broadcast("m2").unwrap();
    for want in ["1 m1", "2 m2"] {
        assert_eq!(observer.read_text_line(), want);
    }
    // Only time makes a message old: wait, bounded by AGE, on the clock from when the last
    // one was numbered (before the observer got it; t2 came before m2).
    let numbered = Instant::now();
    while numbered.elapsed() < AGE + Duration::from_millis(20) {
        std::thread::sleep(util::PACE);
    }
    hub.broadcast("m3").unwrap();
    assert_eq!(observer.read_text_line(), "3 m3");
    client.connect();
    // Both answers first (the hub answers in order: `*`, then the topic), then m4 live.
    let mut lines = client.run("until-event noresume @t");
    hub.broadcast("m4").unwrap();
    lines.extend(client.run("until * 4"));
    // `*` lost m2 to age; the topic was freed once its ring emptied, and the resume made
    // it anew, with a new epoch.
    let refused = refusals(&lines);
    assert_eq!(refused.len(), 2, "{lines:#?}");
    assert_eq!(
        refused[0],
        (
            "*".into(),
            "old".into(),
            format!("{epoch} 1"),
            format!("{epoch} 3")
        )
    );
    let (stream, reason, old, new) = &refused[1];
    assert_eq!(
        (&stream[..], &reason[..], &old[..]),
        ("@t", "epoch", &*format!("{topic_epoch} 1"))
    );
    assert!(
        new.ends_with(" 0") && !new.starts_with(&topic_epoch),
        "{new}"
    );
    assert_eq!(messages(&lines, "*"), expected("m", 4..=4));
    assert!(messages(&lines, "@t").is_empty());
}

#[test]
fn several_topics_resume_at_once() {
    if !require_program("python3") {
        return;
    }
    let hub = sequenced().client_topics(|_| true).bind(LOCAL).unwrap();
    let mut client = Driver::start(&hub, &[]);
    client.connect();
    let topics = ["a", "b", "c"];
    for topic in topics {
        client.run(&format!("join @{topic}"));
    }
    // A host thread per topic, and broadcasts from this one.
    let publish = |range: std::ops::RangeInclusive<u64>| {
        std::thread::scope(|scope| {
            for topic in topics {
                let (hub, range) = (&hub, range.clone());
                scope.spawn(move || {
                    for i in range {
                        hub.publish(topic, format!("{topic}{i}")).unwrap();
                    }
                });
            }
            for i in range {
                hub.broadcast(format!("m{i}")).unwrap();
            }
        });
    };
    publish(1..=5);
    let mut lines = Vec::new();
    for stream in ["*", "@a", "@b", "@c"] {
        lines.extend(client.run(&format!("until {stream} 5")));
    }
    client.run("drop");
    publish(6..=40);
    client.connect();
    publish(41..=50);
    for stream in ["*", "@a", "@b", "@c"] {
        lines.extend(client.run(&format!("until {stream} 50")));
    }
    assert_eq!(messages(&lines, "*"), expected("m", 1..=50));
    for topic in topics {
        assert_eq!(
            messages(&lines, &format!("@{topic}")),
            expected(topic, 1..=50),
            "{topic}"
        );
    }
    let mut resumed: Vec<&str> = lines_of(&lines, "resumed")
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    resumed.sort_unstable();
    assert_eq!(resumed, ["*", "@a", "@b", "@c"]);
    assert!(refusals(&lines).is_empty());
}

#[test]
fn own_messages_direct_messages_escaping_and_refusals_over_length_prefixed_frames() {
    if !require_program("python3") {
        return;
    }
    use hubcast::{Auth, Event, Framing, Relay};
    let hub = sequenced()
        .framing(Framing::LengthPrefixed)
        .relay(Relay::Others)
        .authenticate(|request| match request.frame() {
            Some(b"token secret") => Auth::Accept,
            _ => Auth::Reject,
        })
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let lp = ["--framing", "length-prefixed"];
    // A wrong token: the hub closes the connection before #at, every attempt.
    let mut intruder = Driver::start(
        &hub,
        &[&lp[..], &["--auth", "token guess", "--timeout", "1"]].concat(),
    );
    assert!(intruder.fails("connect").starts_with("Timeout"));
    assert!(hub.stats().rejected > 0);
    let mut client = Driver::start(&hub, &[&lp[..], &["--auth", "token secret"]].concat());
    let (_, addr) = client.connect();
    let id = events.connected(addr.parse().unwrap());
    hub.broadcast("m1").unwrap();
    let mut lines = client.run("until * 1");
    // A message that starts with '#' goes out escaped and reaches the host as written;
    // relayed to the others, it comes back to its sender as an #own marker.
    client.run("send #hash is data");
    assert_eq!(events.expect_message(id), b"#hash is data");
    lines.extend(client.run("until * 2"));
    hub.send_to(id, "just you").unwrap();
    hub.broadcast_except(id, "not you").unwrap();
    hub.broadcast("m4").unwrap();
    lines.extend(client.run("until * 4"));
    let shown: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("message") || l.starts_with("own"))
        .collect();
    assert_eq!(
        shown,
        [
            "message * 1 m1",
            "own * 2",
            "message - - just you",
            "own * 3",
            "message * 4 m4"
        ]
    );
    let refused = client.run("join @room");
    assert_eq!(lines_of(&refused, "refused"), ["join @room off"]);
    // A resume after the markers: nothing is missing, and nothing of its own comes back.
    client.run("drop");
    events.disconnected(id);
    hub.broadcast("m5").unwrap();
    client.connect();
    let lines = client.run("until * 5");
    assert_eq!(messages(&lines, "*"), expected("m", 5..=5));
    assert!(!events
        .seen
        .iter()
        .any(|e| matches!(e, Event::ResumeRefused { .. })));
}

#[test]
fn a_reconnect_storm_of_a_thousand_clients_resumes_every_one_exactly() {
    if !require_program("python3") {
        return;
    }
    use hubcast::Event;
    use std::time::{Duration, Instant};
    const PROCESSES: usize = 4;
    const CLIENTS: usize = 250;
    const COUNT: u64 = 2000;
    // Every client drops its connection when it has this message, all at once.
    const DROP_AT: u64 = 1000;
    // Clients report every REPORT messages; the host publishes up to AHEAD past the
    // furthest report. So when any client gets to DROP_AT the host is past it, and every
    // client misses messages and resumes; and the first clients back keep the host
    // publishing while the others reconnect. The ring holds the whole stream.
    const REPORT: u64 = 100;
    const AHEAD: u64 = 400;
    const BOUND: Duration = Duration::from_secs(60);
    let hub = sequenced()
        .replay_messages(COUNT as usize + 1)
        .bind(LOCAL)
        .unwrap();
    let progress = hub.subscribe();
    let started = Instant::now();
    let mut processes: Vec<ChildProcess> = (0..PROCESSES)
        .map(|p| {
            let args = [
                hub.local_addr().to_string(),
                format!("p{p}"),
                CLIENTS.to_string(),
                DROP_AT.to_string(),
                REPORT.to_string(),
                BOUND.as_secs().to_string(),
            ];
            python("storm.py", &args)
        })
        .collect();
    for process in &mut processes {
        assert_eq!(process.next_line(), "ready", "{}", process.stderr());
    }
    let connected = started.elapsed();
    let clients = PROCESSES * CLIENTS;
    // The furthest any client has said it is.
    let mut furthest = 0;
    let mut published = 0;
    while published < COUNT {
        let upto = (furthest + AHEAD).min(COUNT);
        while published < upto {
            published += 1;
            hub.broadcast(format!("m{published}")).unwrap();
        }
        if published == COUNT {
            break;
        }
        match progress.recv_timeout(util::TIMEOUT) {
            Ok(Event::Message { payload, .. }) => {
                // "progress <client> <seq>"
                let text = std::str::from_utf8(&payload).unwrap();
                let seq = text.rsplit(' ').next().unwrap().parse().unwrap();
                furthest = furthest.max(seq);
            }
            Ok(_) => {}
            Err(err) => panic!("no progress past {furthest} ({err}): {:?}", hub.stats()),
        }
    }
    hub.broadcast("end").unwrap();
    drop(progress);
    for (p, process) in processes.iter_mut().enumerate() {
        let mut line = process.next_line();
        if line == "resumed" {
            line = process.next_line();
        }
        let words: Vec<&str> = line.split(' ').collect();
        let mut bad = Vec::new();
        if words[..3] != ["result", &CLIENTS.to_string(), "0"] {
            for _ in 0..words
                .get(2)
                .and_then(|w| w.parse().ok())
                .unwrap_or(0)
                .min(5)
            {
                bad.push(process.next_line());
            }
            panic!(
                "process {p}: {line}: {bad:#?}; stderr:\n{}",
                process.stderr()
            );
        }
        assert!(process.wait().success(), "{}", process.stderr());
    }
    let took = started.elapsed();
    let stats = hub.stats();
    eprintln!(
        "{clients} clients: connected in {connected:?}, all done in {took:?}; {} resumes, {} replayed",
        stats.resumes, stats.replayed
    );
    assert!(took < BOUND, "{took:?}");
    assert!(stats.resumes >= clients as u64, "{stats:?}");
    assert_eq!(stats.resumes_refused, 0);
    assert_eq!(stats.accepted, 2 * clients as u64);
}

/// The client's own unit tests (`tests/python/test_client.py`): the protocol state fed by
/// hand with what a hub sends only in rare conditions, the framings, and the timeouts.
#[test]
fn the_python_client_passes_its_unit_tests() {
    if !require_program("python3") {
        return;
    }
    let mut tests = python("test_client.py", &[]);
    let status = tests.wait();
    assert!(status.success(), "{}", tests.stderr());
}
