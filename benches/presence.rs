//! What presence costs a topic's message fan-out: `cargo bench --bench presence [-- M C S R P]`
//! (defaults: 1,000 members, 100 joins and 100 leaves a second, 4 s a run, 5 rounds, 3,000
//! messages a second published).
//!
//! Each round runs the same load twice on fresh hubs (`Protocol::Sequenced`), presence off
//! then on (`TopicOptions::presence`), in alternating order from round to round:
//!
//! - M members in topic `room` (put there as they connect, `Admit::topic`), one socket each,
//!   all read by one thread (mio), which counts the data messages it receives (lines that
//!   start with a digit: `<seq>@room ...`) and, apart, the `#presence` lines;
//! - 2C churning clients: every 1/C s the host takes one of those in the room out
//!   (`Hub::leave`) and puts one that is out in (`Hub::join`), so C joins and C leaves a
//!   second (each one presence change, told to every member);
//! - one host thread publishing P 64-byte messages a second to `room` (paced every
//!   millisecond), so about P × (M + C) deliveries a second, which every client reads.
//!
//! The fan-out's capacity is what the dispatcher spends on it: reports, per run, data
//! deliveries per second of the dispatcher thread's CPU time (`hubcast-loop`, from
//! `/proc/self/task`) over the run after a 0.5 s warm-up, deliveries a second (the load
//! held), and the presence lines received per member per change; then the median on/off
//! ratio of deliveries per CPU-second (issue 19's target: at least 0.9). A flood would
//! measure the reader and the queues instead (and with flow control, hold every join
//! behind seconds of queued publishes). Loopback only; every run is bounded by its
//! duration, and every wait by a 60 s deadline.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hubcast::{Admit, Event, Hub, Protocol, TopicOptions};
use mio::{Events, Interest, Poll, Token};

const DEADLINE: Duration = Duration::from_secs(60);
const WARM_UP: Duration = Duration::from_millis(500);
const TOPIC: &str = "room";

/// What one run measured.
struct Run {
    deliveries_per_cpu_sec: f64,
    deliveries_per_sec: f64,
    presence_lines: u64,
    changes: u64,
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let members = args.first().copied().unwrap_or(1_000) as usize;
    let churn = args.get(1).copied().unwrap_or(100).max(1);
    let secs = args.get(2).copied().unwrap_or(4).max(1);
    let rounds = args.get(3).copied().unwrap_or(5).max(1);
    let rate = args.get(4).copied().unwrap_or(3_000).max(1);
    println!(
        "presence bench: {members} members, {churn} joins and {churn} leaves a second, \
         {rate} messages a second, {secs} s a run, {rounds} rounds"
    );
    let (mut ratios, mut delivered) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut runs = [None, None];
        for on in order {
            let length = Duration::from_secs(secs);
            let run = run(members, churn as usize, rate, length, on);
            println!(
                "round {round} presence {:3}: {:>10.0} deliveries per dispatcher CPU-s, \
                 {:>9.0} deliveries/s, {} presence lines for {} changes ({:.2} per member \
                 per change)",
                if on { "on" } else { "off" },
                run.deliveries_per_cpu_sec,
                run.deliveries_per_sec,
                run.presence_lines,
                run.changes,
                // In the room: the members and half the churning clients.
                run.presence_lines as f64
                    / (run.changes.max(1) as f64 * (members as u64 + churn) as f64),
            );
            runs[on as usize] = Some((run.deliveries_per_cpu_sec, run.deliveries_per_sec));
        }
        if let [Some(off), Some(on)] = runs {
            ratios.push(on.0 / off.0);
            delivered.push(on.1 / off.1);
        }
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    let median = ratios[ratios.len() / 2];
    println!(
        "median on/off ratio of deliveries per dispatcher CPU-second: {median:.3} (rounds: \
         {ratios:.3?})"
    );
    delivered.sort_by(|a, b| a.total_cmp(b));
    println!(
        "median on/off ratio of deliveries per second: {:.3}",
        delivered[delivered.len() / 2]
    );
}

/// One run: a fresh hub, its members, the churn and the publisher, for `length`.
fn run(members: usize, churn: usize, rate: u64, length: Duration, presence: bool) -> Run {
    let hub = Arc::new(
        Hub::builder()
            .protocol(Protocol::Sequenced)
            .admit(|_| Admit::new().topic(TOPIC))
            .topic_options(move |_| {
                // Names for every member (the default limit is 1,000 entries).
                TopicOptions::new()
                    .presence(presence)
                    .presence_limit(members + 2 * churn)
            })
            .max_clients(members + 2 * churn + 16)
            .bind("127.0.0.1:0")
            .expect("bind"),
    );
    let events = hub.subscribe();
    let total = members + 2 * churn;
    let sockets: Vec<TcpStream> = (0..total)
        .map(|_| TcpStream::connect(hub.local_addr()).expect("connect"))
        .collect();
    // The churning clients are the last 2C to connect.
    let mut ids = Vec::with_capacity(total);
    let until = Instant::now() + DEADLINE;
    while ids.len() < total {
        let left = until.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Connected { client, .. }) => ids.push(client),
            Ok(_) => {}
            Err(err) => panic!("only {} of {total} clients connected: {err}", ids.len()),
        }
    }
    // Events are not read from here on: no subscriber may hold the hub back.
    drop(events);
    ids.sort_unstable();
    let pool: Vec<_> = ids[members..].to_vec();
    let (mut inside, mut outside) = (pool[..churn].to_vec(), pool[churn..].to_vec());
    for &id in &outside {
        hub.leave(id, TOPIC).expect("leave");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let data = Arc::new(AtomicU64::new(0));
    let presence_lines = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, data, presence_lines) = (stop.clone(), data.clone(), presence_lines.clone());
        thread::spawn(move || read_all(sockets, &stop, &data, &presence_lines))
    };
    let publisher = {
        let (hub, stop) = (hub.clone(), stop.clone());
        thread::spawn(move || {
            let payload = [b'x'; 64];
            let start = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Relaxed) {
                // Paced every millisecond: what is due by now.
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due {
                    if hub.publish(TOPIC, &payload[..]).is_err() {
                        return;
                    }
                    sent += 1;
                }
                thread::sleep(Duration::from_millis(1));
            }
        })
    };

    let start = Instant::now();
    let mut measured = None;
    let mut tick = 0u32;
    let period = Duration::from_secs(1) / churn as u32;
    while start.elapsed() < length + WARM_UP {
        if measured.is_none() && start.elapsed() >= WARM_UP {
            let lines = presence_lines.load(Relaxed);
            let changes = hub.stats().presence_changes;
            measured = Some((
                Instant::now(),
                data.load(Relaxed),
                dispatcher_cpu(),
                lines,
                changes,
            ));
        }
        // One leave and one join: the pool's halves trade a client.
        let (leaving, joining) = (inside.remove(0), outside.remove(0));
        // A client cut meanwhile (see `Stats::disconnects`) just stops churning.
        let _ = hub.leave(leaving, TOPIC);
        let _ = hub.join(joining, TOPIC);
        inside.push(joining);
        outside.push(leaving);
        tick += 1;
        // Paced: the load is a rate, not a flood.
        let next = start + period * tick;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let (from, data_from, cpu_from, lines_from, changes_from) =
        measured.unwrap_or((start, 0, 0.0, 0, 0));
    let deliveries = data.load(Relaxed) - data_from;
    let cpu = dispatcher_cpu() - cpu_from;
    let elapsed = from.elapsed().as_secs_f64();
    let stats = hub.stats();
    let changes = stats.presence_changes - changes_from;
    let lines = presence_lines.load(Relaxed) - lines_from;
    if stats.disconnects.total() > 0 {
        println!("  (clients left during the run: {:?})", stats.disconnects);
    }
    stop.store(true, Relaxed);
    hub.shutdown(Duration::from_secs(5)).expect("shutdown");
    publisher.join().expect("publisher");
    reader.join().expect("reader");
    Run {
        deliveries_per_cpu_sec: deliveries as f64 / cpu.max(0.01),
        deliveries_per_sec: deliveries as f64 / elapsed,
        presence_lines: lines,
        changes,
    }
}

/// The CPU time the dispatcher thread (`hubcast-loop`) has used, in seconds: the only one
/// while one hub runs. From its `schedstat` (nanoseconds on the CPU), else its `stat`
/// (clock ticks, 100 a second); 0 where `/proc` cannot tell.
fn dispatcher_cpu() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "hubcast-loop" {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        if let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        {
            return ns as f64 / 1e9;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (ticks(14), ticks(15)) {
            return (user + system) as f64 / 100.0;
        }
    }
    0.0
}

/// Reads every socket until `stop` (or each has closed), counting data lines and
/// `#presence` lines.
fn read_all(sockets: Vec<TcpStream>, stop: &AtomicBool, data: &AtomicU64, presence: &AtomicU64) {
    let mut poll = Poll::new().expect("poll");
    let mut streams: Vec<(mio::net::TcpStream, At)> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.set_nonblocking(true).expect("nonblocking");
            let mut s = mio::net::TcpStream::from_std(s);
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE)
                .expect("register");
            (s, At::LineStart)
        })
        .collect();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut open = streams.len();
    let until = Instant::now() + DEADLINE;
    while open > 0 && Instant::now() < until {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        if stop.load(Relaxed) && events.is_empty() {
            break;
        }
        for event in events.iter() {
            let (stream, line_start) = &mut streams[event.token().0];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        open -= 1;
                        break;
                    }
                    Ok(n) => {
                        let (d, p) = count_lines(&buf[..n], line_start);
                        data.fetch_add(d, Relaxed);
                        presence.fetch_add(p, Relaxed);
                    }
                    Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        open -= 1;
                        break;
                    }
                }
            }
        }
    }
}

/// Where a read left a socket's stream of lines.
#[derive(Clone, Copy, PartialEq)]
enum At {
    LineStart,
    /// After a `#` that starts a line.
    Hash,
    Inside,
}

/// Counts the lines of `bytes` that start with a digit (data messages) and with `#p`
/// (`#presence`), from where the last read left the socket (`at`, updated).
fn count_lines(bytes: &[u8], at: &mut At) -> (u64, u64) {
    let (mut data, mut presence) = (0, 0);
    for &b in bytes {
        *at = match (*at, b) {
            (_, b'\n') => At::LineStart,
            (At::LineStart, b'#') => At::Hash,
            (At::LineStart, b) => {
                data += u64::from(b.is_ascii_digit());
                At::Inside
            }
            (At::Hash, b) => {
                presence += u64::from(b == b'p');
                At::Inside
            }
            (At::Inside, _) => At::Inside,
        };
    }
    (data, presence)
}
