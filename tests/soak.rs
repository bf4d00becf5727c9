//! Churn soak: for `HUBCAST_SOAK_SECS` seconds (default 5), actors connect, read for a
//! while, then leave cleanly, reset, or stall, at random (seeded by `HUBCAST_SOAK_SEED`),
//! while the host broadcasts numbered messages.
//!
//! Every client must receive, in order and without gaps, every message from the one the
//! host broadcast right after it connected; leavers, resetters and stallers must leave
//! with `PeerClosed`, `Reset` and `Slow`; and at the end the hub must be empty, its
//! counters must add up, and the process's memory must be back near where it started.

mod util;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hubcast::{ClientId, DisconnectReason, Event, Framing, Hub};
use util::{
    assert_stats_add_up, numbered, receive, seq_of, Peer, Received, LOCAL, ROOMY, TIMEOUT, TINY,
};

const ACTORS: u64 = 12;
/// Broadcasts per burst; the host waits 5 ms between bursts (up to 2,000 a second).
const BURST: u64 = 10;
const BURST_EVERY: Duration = Duration::from_millis(5);
/// The length of each broadcast. At about 100 KB/s, a staller's kernel buffers and its
/// 64 KiB queue fill within a second or two, while a reader with a roomy receive buffer
/// could be descheduled for over a minute before it fell as far behind.
const LEN: usize = 50;
/// How much the process's resident memory may grow over the run: generous, since RSS is
/// process-wide and the allocator keeps freed memory. A leak of even a few bytes per
/// message or a queue per departed client would be far above it.
const RSS_MARGIN_KB: u64 = 64 * 1024;

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Reads, then half-closes and reads what is left until the hub closes.
    Leave,
    /// Reads, then resets the connection.
    Reset,
    /// Reads, then stops reading and waits to be disconnected.
    Stall,
}

impl Behaviour {
    fn expected(self) -> DisconnectReason {
        match self {
            Behaviour::Leave => DisconnectReason::PeerClosed,
            Behaviour::Reset => DisconnectReason::Reset,
            Behaviour::Stall => DisconnectReason::Slow,
        }
    }
}

/// What the collector learned about one connection, by the tag the client sent first.
#[derive(Debug, Clone)]
struct Record {
    id: ClientId,
    /// Messages the host had finished broadcasting when the collector saw `Connected`.
    broadcast_before: u64,
    reason: Option<DisconnectReason>,
}

/// What the collector learned, by tag, and a condition variable signalled on each change.
#[derive(Default)]
struct Ledger {
    records: Mutex<HashMap<String, Record>>,
    changed: Condvar,
}

impl Ledger {
    fn update(&self, f: impl FnOnce(&mut HashMap<String, Record>)) {
        f(&mut self.records.lock().expect("lock"));
        self.changed.notify_all();
    }

    /// Waits until every record satisfies `done` (and `tag`, if given, has one); fails the
    /// test after [`TIMEOUT`].
    fn wait(&self, tag: Option<&str>, done: impl Fn(&Record) -> bool) -> HashMap<String, Record> {
        let what = tag.unwrap_or("every connection");
        let records = self.records.lock().expect("lock");
        let (records, timeout) = self
            .changed
            .wait_timeout_while(records, TIMEOUT, |records| match tag {
                Some(tag) => !records.get(tag).is_some_and(&done),
                None => !records.values().all(&done),
            })
            .expect("lock");
        assert!(!timeout.timed_out(), "no word from the hub on {what}");
        records.clone()
    }
}

/// One connection's life as its actor saw it.
#[derive(Debug)]
struct Lifetime {
    tag: String,
    behaviour: Behaviour,
    first: Option<u64>,
    count: u64,
}

/// The numbered messages a client read: each must follow the one before.
struct Sequence {
    first: Option<u64>,
    last: Option<u64>,
    count: u64,
}

impl Sequence {
    fn new() -> Self {
        Sequence {
            first: None,
            last: None,
            count: 0,
        }
    }

    /// Reads one message; `false` once the hub has closed the connection.
    fn read(&mut self, peer: &mut Peer, tag: &str) -> bool {
        let Some(msg) = peer.next_frame(Framing::Lines) else {
            return false;
        };
        assert_eq!(msg.len(), LEN, "{tag}: torn message {msg:?}");
        let n = seq_of(&msg) as u64;
        if let Some(last) = self.last {
            assert_eq!(n, last + 1, "{tag}: gap or reordering after {last}");
        }
        self.first.get_or_insert(n);
        self.last = Some(n);
        self.count += 1;
        true
    }
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn live(
    hub_addr: SocketAddr,
    tag: String,
    behaviour: Behaviour,
    rng: &mut Rng,
    ledger: &Ledger,
) -> Lifetime {
    let rcvbuf = match behaviour {
        Behaviour::Stall => TINY,
        _ => ROOMY,
    };
    let mut peer = Peer::connect_rcvbuf(hub_addr, rcvbuf);
    peer.write(format!("hello {tag}\n").as_bytes());
    ledger.wait(Some(&tag), |_| true);
    let mut seq = Sequence::new();
    let target = 20 + rng.below(500);
    while seq.count < target {
        assert!(seq.read(&mut peer, &tag), "{tag}: closed early");
    }
    match behaviour {
        Behaviour::Leave => {
            peer.shutdown_write();
            // What was queued still arrives, in order, then the hub closes.
            while seq.read(&mut peer, &tag) {}
        }
        Behaviour::Reset => peer.reset(),
        Behaviour::Stall => {
            ledger.wait(Some(&tag), |r| r.reason.is_some());
        }
    }
    Lifetime {
        tag,
        behaviour,
        first: seq.first,
        count: seq.count,
    }
}

/// Tells how to replay the run, if it fails.
struct ReplayHint(String);

impl Drop for ReplayHint {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.0);
        }
    }
}

#[test]
fn churn_soak() {
    let duration = Duration::from_secs_f64(env_or("HUBCAST_SOAK_SECS", 5.0));
    let seed: u64 = env_or("HUBCAST_SOAK_SEED", 0x5eed_cafe);
    let _hint = ReplayHint(format!(
        "soak failed: {duration:?}, seed {seed:#x} (HUBCAST_SOAK_SECS, HUBCAST_SOAK_SEED)"
    ));

    let hub = Arc::new(
        Hub::builder()
            // Small, so that a staller's backlog reaches its queue soon; the host's rate is
            // far below what even delayed-ACK pacing of a 16 KiB buffer would allow.
            .send_buffer(Some(16 * 1024))
            .queue_bytes(64 * 1024)
            // Stallers are found by their full queue alone.
            .write_timeout(None)
            .bind(LOCAL)
            .expect("bind"),
    );
    let events = hub.subscribe();
    let rss_before = rss_kb();

    // The host: numbered broadcasts, `broadcast` counts those done.
    let broadcast = Arc::new(AtomicU64::new(0));
    let (stop_host, host_stopped) = mpsc::channel::<()>();
    let host = {
        let (hub, broadcast) = (Arc::clone(&hub), Arc::clone(&broadcast));
        thread::spawn(move || loop {
            for _ in 0..BURST {
                let n = broadcast.load(SeqCst);
                hub.broadcast(numbered(n as usize, LEN)).expect("broadcast");
                broadcast.store(n + 1, SeqCst);
            }
            // The scenario: a host publishing at a steady rate. The wait ends early when
            // the test drops `stop_host`.
            match host_stopped.recv_timeout(BURST_EVERY) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        })
    };

    // The collector: drains events until the hub shuts down, and learns each connection's
    // tag from its first message.
    let ledger = Arc::new(Ledger::default());
    let collector = {
        let (ledger, broadcast) = (Arc::clone(&ledger), Arc::clone(&broadcast));
        thread::spawn(move || {
            let mut connected_at = HashMap::new();
            let mut tags = HashMap::new();
            let mut untagged = Vec::new();
            loop {
                let event = match receive(&events, TIMEOUT) {
                    Received::Event(event) => event,
                    Received::Closed => return untagged,
                    Received::TimedOut => panic!("no event for {TIMEOUT:?}"),
                };
                match event {
                    Event::Connected { client, .. } => {
                        connected_at.insert(client, broadcast.load(SeqCst));
                    }
                    Event::Message {
                        client, payload, ..
                    } => {
                        let text = String::from_utf8(payload.to_vec()).expect("utf-8");
                        let tag = text.strip_prefix("hello ").expect("hello").to_owned();
                        let record = Record {
                            id: client,
                            broadcast_before: connected_at[&client],
                            reason: None,
                        };
                        ledger.update(|records| {
                            let old = records.insert(tag.clone(), record);
                            assert!(old.is_none(), "tag {tag} twice");
                        });
                        tags.insert(client, tag);
                    }
                    Event::Disconnected { client, reason, .. } => match tags.get(&client) {
                        Some(tag) => ledger.update(|records| {
                            records.get_mut(tag).expect("record").reason = Some(reason);
                        }),
                        None => untagged.push((client, reason)),
                    },
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
    };

    // The actors.
    let start = Instant::now();
    let actors: Vec<_> = (0..ACTORS)
        .map(|a| {
            let (hub_addr, ledger) = (hub.local_addr(), Arc::clone(&ledger));
            let mut rng = Rng::new(seed ^ (a + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            thread::spawn(move || {
                let mut lives = Vec::new();
                while start.elapsed() < duration {
                    let behaviour = match rng.below(4) {
                        0 | 1 => Behaviour::Leave,
                        2 => Behaviour::Reset,
                        _ => Behaviour::Stall,
                    };
                    let tag = format!("{a}.{}", lives.len());
                    lives.push(live(hub_addr, tag, behaviour, &mut rng, &ledger));
                }
                lives
            })
        })
        .collect();
    let lives: Vec<Lifetime> = actors
        .into_iter()
        .flat_map(|a| a.join().expect("actor"))
        .collect();
    drop(stop_host);
    host.join().expect("host");

    // The collector has heard of every departure, so the hub is empty: a shutdown finds no
    // client, and ends the collector's subscription.
    let records = ledger.wait(None, |r| r.reason.is_some());
    let report = hub.shutdown(TIMEOUT).expect("shutdown");
    assert_eq!(report.clients, 0, "{report:?}");
    let untagged = collector.join().expect("collector");
    assert!(
        untagged.is_empty(),
        "left before saying hello: {untagged:?}"
    );

    let mut by_reason: HashMap<DisconnectReason, u64> = HashMap::new();
    assert_eq!(records.len(), lives.len());
    for life in &lives {
        let record = &records[&life.tag];
        let reason = record.reason.expect("reason");
        assert_eq!(
            reason,
            life.behaviour.expected(),
            "{} ({}) behaved {:?}",
            life.tag,
            record.id,
            life.behaviour
        );
        *by_reason.entry(reason).or_default() += 1;
        // Nothing broadcast after it connected was missed at the start.
        let first = life.first.expect("read something");
        assert!(
            first <= record.broadcast_before + 1,
            "{}: first message {first}, but {} had been broadcast when it connected",
            life.tag,
            record.broadcast_before
        );
        assert!(life.count >= 20, "{}: read only {}", life.tag, life.count);
    }

    let stats = hub.stats();
    assert_eq!(stats.accepted, lives.len() as u64, "{stats:#?}");
    assert_eq!(stats.frames_in, lives.len() as u64, "one hello each");
    let expected: Vec<_> = by_reason.iter().map(|(&r, &n)| (r, n)).collect();
    assert_stats_add_up(&hub, &expected);

    let rss_after = rss_kb();
    assert!(
        rss_after <= rss_before + RSS_MARGIN_KB,
        "memory grew from {rss_before} kB to {rss_after} kB over {} connections and {} \
         broadcasts",
        lives.len(),
        broadcast.load(SeqCst),
    );
    assert!(lives.iter().any(|l| l.behaviour == Behaviour::Stall));
    assert!(lives.iter().any(|l| l.behaviour == Behaviour::Reset));
}
