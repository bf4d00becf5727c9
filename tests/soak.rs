//! Churn soak: for `HUBCAST_SOAK_SECS` seconds (default 5), actors connect, read for a
//! while, then leave cleanly, reset, or stall, at random (seeded by `HUBCAST_SOAK_SEED`),
//! while the host broadcasts numbered messages.
//!
//! Every client must receive, in order and without gaps, every message from the one the
//! host broadcast right after it connected; leavers, resetters and stallers must leave
//! with `PeerClosed`, `Reset` and `Slow`; and at the end the hub must be empty, its
//! counters must add up, and the process's memory must be back near where it started.

mod hostile_util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hostile_util::*;
use hubcast::{ClientId, DisconnectReason, Event, Hub};

const ACTORS: u64 = 12;
/// Broadcasts per burst; the host pauses `PACE` between bursts (about 5,000 a second).
const BURST: u64 = 10;
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

type Records = Arc<Mutex<HashMap<String, Record>>>;

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

    /// Reads one line; `false` at the end of the stream.
    fn read(&mut self, reader: &mut BufReader<TcpStream>, tag: &str) -> bool {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(err) => panic!("{tag}: read failed: {err}"),
        }
        let n: u64 = line
            .trim_end()
            .parse()
            .unwrap_or_else(|_| panic!("{line:?}"));
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

/// Waits until the collector has a record for `tag` satisfying `done`.
fn wait_for_record(records: &Records, tag: &str, done: impl Fn(&Record) -> bool) -> Record {
    let pacer = Pacer::new();
    let mut found = None;
    pacer.wait_until(&format!("the hub's word on {tag}"), || {
        found = records.lock().expect("lock").get(tag).cloned();
        found.as_ref().is_some_and(&done)
    });
    found.expect("record")
}

fn live(
    hub_addr: std::net::SocketAddr,
    tag: String,
    behaviour: Behaviour,
    rng: &mut Rng,
    records: &Records,
) -> Lifetime {
    let rcvbuf = match behaviour {
        Behaviour::Stall => TINY,
        _ => ROOMY,
    };
    let mut stream = connect_with_rcvbuf(hub_addr, rcvbuf);
    stream
        .write_all(format!("hello {tag}\n").as_bytes())
        .expect("hello");
    wait_for_record(records, &tag, |_| true);
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut seq = Sequence::new();
    let target = 20 + rng.below(500);
    while seq.count < target {
        assert!(seq.read(&mut reader, &tag), "{tag}: closed early");
    }
    match behaviour {
        Behaviour::Leave => {
            stream.shutdown(Shutdown::Write).expect("half-close");
            // What was queued still arrives, in order, then the hub closes.
            while seq.read(&mut reader, &tag) {}
        }
        Behaviour::Reset => {
            set_linger_zero(&stream);
        }
        Behaviour::Stall => {
            wait_for_record(records, &tag, |r| r.reason.is_some());
        }
    }
    Lifetime {
        tag,
        behaviour,
        first: seq.first,
        count: seq.count,
    }
}

#[test]
fn churn_soak() {
    let duration = Duration::from_secs_f64(env_or("HUBCAST_SOAK_SECS", 5.0));
    let seed: u64 = env_or("HUBCAST_SOAK_SEED", 0x5eed_cafe);
    eprintln!("soak: {duration:?}, seed {seed:#x} (HUBCAST_SOAK_SECS, HUBCAST_SOAK_SEED)");

    let hub = Arc::new(
        Hub::builder()
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
                hub.broadcast(n.to_string()).expect("broadcast");
                broadcast.store(n + 1, SeqCst);
            }
            match host_stopped.recv_timeout(PACE) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        })
    };

    // The collector: drains events, learns each connection's tag from its first message.
    let records: Records = Arc::default();
    let stop_collector = Arc::new(AtomicBool::new(false));
    let collector = {
        let (records, broadcast, stop) = (
            Arc::clone(&records),
            Arc::clone(&broadcast),
            Arc::clone(&stop_collector),
        );
        thread::spawn(move || {
            let mut connected_at = HashMap::new();
            let mut tags = HashMap::new();
            let mut untagged = Vec::new();
            while !stop.load(SeqCst) {
                let Ok(event) = events.recv_timeout(PACE) else {
                    continue;
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
                        let old = records.lock().expect("lock").insert(tag.clone(), record);
                        assert!(old.is_none(), "tag {tag} twice");
                        tags.insert(client, tag);
                    }
                    Event::Disconnected { client, reason, .. } => match tags.get(&client) {
                        Some(tag) => {
                            let mut records = records.lock().expect("lock");
                            records.get_mut(tag).expect("record").reason = Some(reason);
                        }
                        None => untagged.push((client, reason)),
                    },
                    other => panic!("unexpected {other:?}"),
                }
            }
            untagged
        })
    };

    // The actors.
    let start = Instant::now();
    let actors: Vec<_> = (0..ACTORS)
        .map(|a| {
            let (hub_addr, records) = (hub.local_addr(), Arc::clone(&records));
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
                    lives.push(live(hub_addr, tag, behaviour, &mut rng, &records));
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

    // Every connection gone, and the collector has heard of every departure.
    let pacer = Pacer::new();
    pacer.wait_until("the hub to empty", || {
        let stats = hub.stats();
        stats.connected == 0
            && hub.clients().is_empty()
            && records
                .lock()
                .expect("lock")
                .values()
                .all(|r| r.reason.is_some())
    });
    stop_collector.store(true, SeqCst);
    let untagged = collector.join().expect("collector");
    assert!(
        untagged.is_empty(),
        "left before saying hello: {untagged:?}"
    );

    let records = records.lock().expect("lock").clone();
    let mut by_reason: HashMap<DisconnectReason, u64> = HashMap::new();
    let mut checked = 0;
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
        checked += life.count;
    }

    let stats = hub.stats();
    assert_eq!(stats.accepted, lives.len() as u64, "{stats:#?}");
    assert_eq!(stats.frames_in, lives.len() as u64, "one hello each");
    let expected: Vec<_> = by_reason.iter().map(|(&r, &n)| (r, n)).collect();
    assert_stats_add_up(&hub, &expected);

    let rss_after = rss_kb();
    eprintln!(
        "soak: {} connections ({:?}), {} broadcasts, {checked} deliveries checked in order, \
         RSS {rss_before} kB -> {rss_after} kB",
        lives.len(),
        by_reason,
        broadcast.load(SeqCst),
    );
    assert!(
        rss_after <= rss_before + RSS_MARGIN_KB,
        "memory grew from {rss_before} kB to {rss_after} kB"
    );
    assert!(lives.iter().any(|l| l.behaviour == Behaviour::Stall));
    assert!(lives.iter().any(|l| l.behaviour == Behaviour::Reset));
}
