//! The hub's memory stays within its stated bounds under the replay attacks of the
//! numbered-stream protocol (`Protocol::Sequenced`): clients × (`queue_bytes` + `max_frame`)
//! + `replay_total_bytes` + fixed costs.
//!
//! - A client that sends many `#resume`s and never reads is answered `much` once its queue
//!   is full. (Cut as slow once the answers themselves pile up, with nothing of it after
//!   its cut: in `tests/slow_client.rs`, for every wire.)
//! - An honest client resuming more than its queue holds gets `much` for the rest, and
//!   gets them all by asking again once it has read the first.
//! - Connections that each fill the rings of rooms of their own cannot make all rings
//!   together pass `replay_total_bytes`; an honest room's small ring is left alone.
//!
//! Memory is read from the test's own process (`VmRSS`, sampled while the attack runs), so
//! the tests of this file run one at a time.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use hubcast::{DisconnectReason, Hub, Protocol};
use util::{read_at, rooms, EventLog, Peer, LOCAL, PACE, TINY};

/// One test at a time: each reads the process's memory.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// The process's largest resident memory while `f` runs, sampled every [`PACE`], less what
/// it held before.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = rss_bytes();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut peak = rss_bytes();
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                thread::sleep(PACE);
            }
            peak.max(rss_bytes())
        })
    };
    let value = f();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    (value, peak.saturating_sub(before))
}

const MIB: u64 = 1 << 20;

/// Reads lines until one starts with `prefix`; returns it.
fn until(peer: &mut Peer, prefix: &str) -> String {
    loop {
        let line = peer.read_text_line();
        if line.starts_with(prefix) {
            return line;
        }
        assert!(
            !line.starts_with("#error") && !line.starts_with("#refused"),
            "waiting for {prefix:?}, got {line:?}"
        );
    }
}

/// `#join @room`: the topic's epoch.
fn join(peer: &mut Peer, room: &str) -> u64 {
    peer.write(format!("#join @{room}\n").as_bytes());
    let joined = until(peer, &format!("#joined @{room} "));
    joined.split(' ').nth(2).unwrap().parse().unwrap()
}

#[test]
fn a_client_that_asks_for_replays_and_never_reads_holds_one_queue() {
    let _serial = serial();
    const MESSAGES: usize = 1024;
    // Cut for what it asked, not for writes that made no progress.
    let hub = rooms().write_timeout(None).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    // A topic holding 1,024 messages of 900 bytes: a ring of about 1 MiB.
    let mut member = Peer::connect(hub.local_addr());
    until(&mut member, "#at * ");
    let epoch = join(&mut member, "amp");
    let payload = "m".repeat(900);
    for _ in 0..MESSAGES {
        hub.publish("amp", payload.clone()).unwrap();
    }
    until(&mut member, &format!("{MESSAGES}@amp "));

    // One write of 1,000 resumes of the whole ring, from a client that never reads: unbounded,
    // a million messages would be queued (about 1 GB).
    let (hostile, growth) = peak_growth(|| {
        let mut hostile = Peer::connect_rcvbuf(hub.local_addr(), TINY);
        let id = events.connected(hostile.addr());
        let request = format!("#resume @amp {epoch} 0\n").repeat(1000);
        hostile.write(request.as_bytes());
        events.wait_until("every resume to be answered", || {
            let stats = hub.stats();
            stats.resumes + stats.resumes_refused == 1000
        });
        (hostile, id)
    });
    // Its queue filled with a few replays; the rest were answered `much`, and their answers
    // fit in its allowance: it is still connected, holding one queue.
    let stats = hub.stats();
    assert!(
        (1..=4).contains(&stats.resumes),
        "a queue's worth of replays: {stats:?}"
    );
    assert!(!events.has_left(hostile.1));
    assert_eq!(stats.replayed, stats.resumes * MESSAGES as u64);
    assert!(
        growth < 32 * MIB,
        "one non-reading client grew the process by {} MiB",
        growth / MIB
    );
    // The member is served as before.
    hub.publish("amp", "after").unwrap();
    assert_eq!(
        until(&mut member, &format!("{}@amp ", MESSAGES + 1)),
        format!("{}@amp after", MESSAGES + 1)
    );
    drop(hostile);
}

#[test]
fn a_resume_past_the_queue_is_answered_much_and_can_be_asked_again() {
    let _serial = serial();
    const ROOMS: usize = 20;
    const MESSAGES: usize = 60;
    // 20 rooms of 60 messages of 900 bytes: over 1 MB to replay, four times the queue.
    let hub = rooms().queue_bytes(256 * 1024).bind(LOCAL).unwrap();
    let mut member = Peer::connect(hub.local_addr());
    until(&mut member, "#at * ");
    let epochs: Vec<u64> = (0..ROOMS)
        .map(|r| join(&mut member, &format!("r{r}")))
        .collect();
    let body = |r: usize, i: usize| format!("{r}-{i}-{}", "x".repeat(900));
    // A round at a time, read before the next: the member's queue is small too.
    for i in 1..=MESSAGES {
        for r in 0..ROOMS {
            hub.publish(&format!("r{r}"), body(r, i)).unwrap();
        }
        until(&mut member, &format!("{i}@r{} ", ROOMS - 1));
    }
    drop(member);

    // It comes back and resumes every room at once; then asks again for those answered
    // `much`, after reading everything the previous round sent.
    let mut back = Peer::connect(hub.local_addr());
    until(&mut back, "#at * ");
    let mut got: Vec<Vec<String>> = vec![Vec::new(); ROOMS];
    let mut pending: Vec<usize> = (0..ROOMS).collect();
    let (mut rounds, mut refused_much) = (0, 0);
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= ROOMS, "no progress: {pending:?} still to resume");
        let asked: String = pending
            .iter()
            .map(|&r| format!("#resume @r{r} {} 0\n", epochs[r]))
            .collect();
        back.write(asked.as_bytes());
        let mut again = Vec::new();
        // Answered in order: the implicit join's `#joined` (first round), then
        // `#resumed` and the messages, or `#noresume ... much`.
        for &r in &pending {
            let (epoch, room) = (epochs[r], format!("@r{r}"));
            loop {
                let line = back.read_text_line();
                let words: Vec<&str> = line.split(' ').collect();
                match words[..] {
                    ["#joined", s, ..] if s == room => continue,
                    ["#resumed", s, e, from, to] if s == room => {
                        assert_eq!([e, from, to], [&*epoch.to_string(), "1", "60"]);
                        for _ in 1..=MESSAGES {
                            got[r].push(back.read_text_line());
                        }
                    }
                    ["#noresume", s, "much", e, seq] if s == room => {
                        assert_eq!([e, seq], [&*epoch.to_string(), "60"]);
                        refused_much += 1;
                        again.push(r);
                    }
                    _ => panic!("not an answer to the resume of {room}: {line:?}"),
                }
                break;
            }
        }
        pending = again;
    }
    for (r, lines) in got.iter().enumerate() {
        let want: Vec<String> = (1..=MESSAGES)
            .map(|i| format!("{i}@r{r} {}", body(r, i)))
            .collect();
        assert_eq!(lines, &want, "room r{r}");
    }
    assert!(refused_much > 0, "the first round did not fit the queue");
}

#[test]
fn rooms_of_their_own_cannot_take_the_ring_memory() {
    let _serial = serial();
    const BOUND: usize = 8 << 20;
    const ATTACKERS: usize = 4;
    const ROOMS: usize = 16;
    const LINES: usize = 1000;
    let hub = rooms().replay_total_bytes(BOUND).bind(LOCAL).unwrap();
    // An honest room with a few messages, before the attack.
    let mut honest = Peer::connect(hub.local_addr());
    until(&mut honest, "#at * ");
    let epoch = join(&mut honest, "honest");
    for i in 1..=10 {
        hub.publish("honest", format!("honest {i}")).unwrap();
    }
    until(&mut honest, "10@honest ");
    drop(honest);

    // Each attacker joins rooms of its own and says 1,000 lines of 1 KB: each line is kept
    // in all of its rooms' rings, 64 MB in all, eight times the bound.
    let ((), growth) = peak_growth(|| {
        let attackers: Vec<_> = (0..ATTACKERS)
            .map(|a| {
                let addr = hub.local_addr();
                thread::spawn(move || {
                    let mut peer = Peer::connect(addr);
                    until(&mut peer, "#at * ");
                    for r in 0..ROOMS {
                        join(&mut peer, &format!("a{a}-r{r}"));
                    }
                    let line = format!("{}\n", "z".repeat(1024));
                    for _ in 0..LINES / 10 {
                        peer.write(line.repeat(10).as_bytes());
                    }
                    // Handled after every line before it: when answered, all are kept.
                    join(&mut peer, &format!("a{a}-done"));
                })
            })
            .collect();
        for attacker in attackers {
            attacker.join().unwrap();
        }
    });
    let stats = hub.stats();
    assert!(
        stats.replay_bytes <= BOUND as u64,
        "rings hold {} bytes, past {BOUND}",
        stats.replay_bytes
    );
    assert!(stats.replay_trimmed > 0, "{stats:?}");
    assert!(
        growth < 40 * MIB,
        "rooms of their own grew the process by {} MiB",
        growth / MIB
    );

    // The honest room's small ring is below the level the large ones were trimmed to.
    let mut back = Peer::connect(hub.local_addr());
    until(&mut back, "#at * ");
    back.write(format!("#resume @honest {epoch} 0\n").as_bytes());
    assert_eq!(
        until(&mut back, "#resumed @honest "),
        format!("#resumed @honest {epoch} 1 10")
    );
    for i in 1..=10 {
        assert_eq!(back.read_text_line(), format!("{i}@honest honest {i}"));
    }
}

#[test]
fn the_ring_bound_holds_with_many_small_rings() {
    let _serial = serial();
    // Rings of one message each: trimmed empty, they must give back the room of their
    // entries too, or the total could never get under the bound.
    const TOPICS: usize = 2000;
    const BOUND: usize = 64 * 1024;
    let hub = Hub::builder()
        .protocol(Protocol::Sequenced)
        .replay_total_bytes(BOUND)
        .max_topics_per_client(TOPICS)
        .client_topics(|_| true)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    let id = events.connected(peer.addr());
    for t in 0..TOPICS {
        hub.join(id, &format!("t{t}")).unwrap();
        hub.publish(&format!("t{t}"), "x").unwrap();
    }
    until(&mut peer, &format!("1@t{} x", TOPICS - 1));
    events.wait_until("the rings to be within their bound", || {
        let stats = hub.stats();
        stats.replay_bytes <= BOUND as u64 && stats.replay_trimmed > 0
    });
    // Later messages are kept again (the level is not stuck below every ring).
    let trimmed = hub.stats().replay_trimmed;
    for i in 0..10 {
        hub.publish("t1", format!("y{i}")).unwrap();
    }
    until(&mut peer, "11@t1 y9");
    let mut back = Peer::connect(hub.local_addr());
    read_at(&mut back);
    back.write(b"#resume @t1 0 0\n");
    let joined = until(&mut back, "#joined @t1 ");
    let epoch: u64 = joined.split(' ').nth(2).unwrap().parse().unwrap();
    back.write(format!("#resume @t1 {epoch} 9\n").as_bytes());
    assert_eq!(
        until(&mut back, "#resumed @t1 "),
        format!("#resumed @t1 {epoch} 10 11")
    );
    assert!(hub.stats().replay_trimmed >= trimmed);
}

/// Clients that ask for replays and never read them hold nobody back: flow control weighs
/// what others send a client, not what it asked for. (Counted together, each such client
/// was *busy* for its whole second of busy time, one after another, pausing every read of
/// the hub: five of them stopped a chat between two others for four seconds, until each
/// was cut in turn.)
#[test]
fn clients_that_do_not_read_their_replays_hold_nobody_back() {
    let _serial = serial();
    const ATTACKERS: usize = 5;
    const RESUMES: usize = 5;
    let hub = rooms().write_timeout(None).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    // A room with a ring of about 1 MiB.
    let mut member = Peer::connect(hub.local_addr());
    read_at(&mut member);
    let epoch = join(&mut member, "big");
    for _ in 0..1000 {
        hub.publish("big", "m".repeat(900)).unwrap();
    }
    until(&mut member, "1000@big ");
    drop(member);
    // Attackers resume it several times each and never read: their queues fill with
    // replays up to the bound.
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let mut peer = Peer::connect_rcvbuf(hub.local_addr(), TINY);
        let id = events.connected(peer.addr());
        peer.write(
            format!("#resume @big {epoch} 2\n")
                .repeat(RESUMES)
                .as_bytes(),
        );
        attackers.push((peer, id));
    }
    events.wait_until("every resume to be answered", || {
        let stats = hub.stats();
        stats.resumes + stats.resumes_refused == (ATTACKERS * RESUMES) as u64
    });
    // Two others chat in a room of their own: each line needs the hub to read.
    let (mut a, mut b) = (
        Peer::connect(hub.local_addr()),
        Peer::connect(hub.local_addr()),
    );
    for peer in [&mut a, &mut b] {
        read_at(peer);
        join(peer, "calm");
    }
    for i in 0..20 {
        a.write(format!("line {i}\n").as_bytes());
        let seq = i + 1;
        assert_eq!(
            until(&mut b, &format!("{seq}@calm ")),
            format!("{seq}@calm line {i}")
        );
    }
    // Nobody was held back, and nobody was cut.
    let stats = hub.stats();
    assert_eq!(stats.held_back, 0, "{stats:?}");
    for (_, id) in &attackers {
        assert!(
            !events.has_left(*id),
            "{id} was cut: {:?}",
            events.story_of(*id)
        );
    }
    assert_eq!(stats.disconnects(DisconnectReason::Slow), 0);
}
