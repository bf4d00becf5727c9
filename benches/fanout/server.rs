//! `--serve SYSTEM`: the child process that runs one in-process system under test, so that
//! its memory and CPU time are its own, and the publisher that drives it.
//!
//! Systems: `hubcast` (a `Hub` with length-prefixed framing and `flow_control(true)`,
//! publisher = `Hub::broadcast` on a thread of this process, as fast as it returns),
//! `hubcast-default` (the same with default settings: `broadcast` never waits), `thread` (the tutorial's design: a thread per client and
//! blocking writes to every client in a loop), `ceiling` (one event loop writing the same
//! frames to every socket in 64 KiB batches, no hub logic), and the relay servers of
//! [`crate::relay`] (`hubcast-relay`, `hubcast-hostrelay`, `thread-relay`,
//! `ceiling-relay`), whose publisher is a client and which refuse `publish`.
//!
//! WebSocket systems: `hubcast-ws` (the `hubcast` hub with `Transport::WebSocket`, feature
//! `websocket`), `ceiling-ws` (the ceiling writing WebSocket binary frames after answering
//! the upgrade) and `tokio-ws` ([`crate::tokio_ws`]); `node-ws` is `node/server.js`, which
//! speaks the same control protocol. `hubcast-topics` is the `hubcast` hub, and
//! `hubcast-seq` the same with `Protocol::Sequenced` and `--replay-messages R`.
//! `hubcast-limit` is the relay-mode chat hub with a rate limit ([`crate::limit`]).
//! `hubcast-adopt` is `hubcast-ws` whose clients a std listener of this process accepts,
//! answers with `Hub::websocket_answer`'s headers and hands over with `Hub::adopt`, as an
//! axum app does ([`adopting`]).
//!
//! Server-sent events (`--mode sse`, feature `websocket`): one hub configuration,
//! [`sse_hub`] (line framing, a WebSocket listener serving event streams on `/events`, and
//! a TCP listener beside it), run as `hubcast-sse` (its clients open event streams; the
//! child reports the WebSocket listener's port), `hubcast-sse-ws` (the same hub, its
//! clients WebSocket, the same port) and `hubcast-sse-tcp` (the same hub, its clients TCP
//! line clients: the TCP listener's port). Their payloads are line-safe ([`Stamp::Text`]).
//! `sse-ceiling` is the ceiling answering each client's `GET` with a `200` and writing
//! each message once into the shared batches as `data: <payload>\n\n`.
//!
//! Control protocol, one line each way on stdin/stdout:
//! - at start the child prints `port P`;
//! - `expect N MS` → `connected N` once N clients are registered (`error ...` after MS);
//! - `topics SIZE` (hubs only) → `topics T`: puts the connected clients, in id order, in
//!   topics `t0`, `t1`, … of SIZE clients each; from then on `publish` publishes each
//!   message to every topic in turn (`Hub::publish`), instead of broadcasting it;
//! - `publish START COUNT SIZE RATE` → starts publishing messages START..START+COUNT of
//!   SIZE bytes, RATE per second (0: as fast as possible); prints `published COUNT NS`
//!   when the last one is handed to the system;
//! - `stats` → `stats key=value ...`;
//! - `quit` or end of input → exit.

use std::collections::VecDeque;
use std::io::{self, BufRead, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubcast::{DisconnectReason, Framing, Hub, Origins, Protocol, Transport};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::hist::Hist;
use crate::proto::{payload, stamp, Stamp};
use crate::relay::Running;
use crate::sys::{fine_timer_slack, now_ns};

/// Name of the publisher thread, so its CPU time can be told apart.
pub(crate) const PUB_THREAD: &str = "fanout-pub";
/// hubcast's send buffer default, also used by the ceiling so both see the same sockets.
const SEND_BUFFER: usize = 128 * 1024;
/// The ceiling's batches: as large as hubcast's coalesced runs.
const BATCH: usize = 64 * 1024;

/// One publishing job.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Job {
    pub(crate) start: u64,
    pub(crate) count: u64,
    pub(crate) size: usize,
    /// Messages per second; 0 for as fast as possible.
    pub(crate) rate: f64,
}

impl Job {
    /// When message `i` of the job is meant to be sent, `t0` being the first.
    pub(crate) fn intended(&self, t0: u64, i: u64) -> u64 {
        t0 + (i as f64 * 1e9 / self.rate) as u64
    }
}

/// Sleeps until `t` (`CLOCK_MONOTONIC` ns). With the thread's timer slack at 1 ns
/// ([`fine_timer_slack`]) `nanosleep` wakes within some microseconds; no spinning, so the
/// publisher does not take a core from the system under test. The overshoot is measured
/// (see [`publish_loop`]) and, as the message carries its intended time, counts as latency
/// for every system alike.
pub(crate) fn wait_until(t: u64) {
    loop {
        let now = now_ns();
        if now >= t {
            return;
        }
        std::thread::sleep(Duration::from_nanos(t - now));
    }
}

/// What a publisher reports: how late a fixed-rate publisher handed messages over against
/// their intended times, and how long it took to hand over the whole job.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PubReport {
    pub(crate) late_p50: u64,
    pub(crate) late_p99: u64,
    pub(crate) late_max: u64,
    /// From the first message to the last one accepted by the system, in ns.
    pub(crate) elapsed: u64,
}

impl PubReport {
    fn new(late: &Hist, elapsed: u64) -> Self {
        PubReport {
            late_p50: late.quantile(0.5),
            late_p99: late.quantile(0.99),
            late_max: late.max(),
            elapsed,
        }
    }

    pub(crate) fn to_words(self) -> String {
        format!(
            "{} {} {} {}",
            self.late_p50, self.late_p99, self.late_max, self.elapsed
        )
    }

    pub(crate) fn from_words(words: &[&str]) -> Option<PubReport> {
        let v: Vec<u64> = words.iter().filter_map(|w| w.parse().ok()).collect();
        (v.len() == 4).then(|| PubReport {
            late_p50: v[0],
            late_p99: v[1],
            late_max: v[2],
            elapsed: v[3],
        })
    }
}

/// Publishes `job` through `send`: each payload carries its sequence number and its send
/// time: the time of the call (flood) or the intended time on the fixed-rate schedule, so
/// that a publisher held back by the system counts that as latency.
pub(crate) fn publish_loop(
    job: &Job,
    send: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<PubReport> {
    publish_loop_with(job, Stamp::Bin, send)
}

/// [`publish_loop`] with payloads stamped as `kind`.
pub(crate) fn publish_loop_with(
    job: &Job,
    kind: Stamp,
    mut send: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<PubReport> {
    if job.rate > 0.0 {
        fine_timer_slack();
    }
    let mut late = Hist::new();
    let mut buf = kind.payload(job.size);
    let t0 = now_ns();
    for i in 0..job.count {
        let ts = if job.rate > 0.0 {
            let t = job.intended(t0, i);
            wait_until(t);
            late.record(now_ns() - t);
            t
        } else {
            now_ns()
        };
        kind.write(&mut buf, job.start + i, ts);
        send(&buf)?;
    }
    Ok(PubReport::new(&late, now_ns() - t0))
}

/// Publishes `job` to every topic in turn: message `i` goes to `topics[0]`, then
/// `topics[1]`, …, each a separate publish stamped with sequence `job.start + i`, so every
/// subscriber of one topic sees consecutive numbers, as with a broadcast. `job.count`
/// messages per topic: as many deliveries as a broadcast of `job.count` to the same clients.
/// Flood only (the rate is ignored).
pub(crate) fn publish_topics_loop(
    job: &Job,
    topics: &[String],
    mut send: impl FnMut(&str, &[u8]) -> io::Result<()>,
) -> io::Result<PubReport> {
    let mut buf = payload(job.size);
    let t0 = now_ns();
    for i in 0..job.count {
        for topic in topics {
            stamp(&mut buf, job.start + i, now_ns());
            send(topic, &buf)?;
        }
    }
    Ok(PubReport::new(&Hist::new(), now_ns() - t0))
}

pub(crate) type Out = Arc<Mutex<io::Stdout>>;

/// What `--serve` is told on its command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeOpts {
    pub(crate) max_clients: usize,
    pub(crate) queue_bytes: usize,
    /// `hubcast-seq`: the replay ring's length in messages (0: no ring).
    pub(crate) replay_messages: usize,
    /// `hubcast-seq`: the replay ring's bound in bytes.
    pub(crate) replay_bytes: usize,
    /// `hubcast-limit`: the rate limit and relay of the hub.
    pub(crate) limit: crate::limit::ServeLimit,
}

pub(crate) fn say(out: &Out, line: &str) {
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The tutorial's server: every client's stream in a shared list, a thread per client.
struct Tutorial {
    clients: Mutex<Vec<Arc<TcpStream>>>,
    connected: AtomicU64,
    spawn_failures: AtomicU64,
}

enum System {
    /// A hub and its publisher; the topics `publish` goes to, once `topics` made them.
    Hub(Arc<Hub>, Sender<Job>, Arc<Mutex<Vec<String>>>),
    /// An async server (`tokio-ws`): its client count and publisher; the runtime is kept
    /// alive here.
    Async(crate::tokio_ws::Running),
    /// A relay server: its publisher is a client.
    Relay(crate::relay::Running),
    Tutorial(Arc<Tutorial>, Sender<Job>),
    Ceiling {
        connected: Arc<AtomicU64>,
        jobs: Sender<Job>,
        waker: Arc<Waker>,
    },
}

impl System {
    fn connected(&self) -> u64 {
        match self {
            System::Hub(hub, ..) => hub.stats().connected,
            System::Async(a) => a.connected.load(Relaxed),
            System::Tutorial(t, _) => t.connected.load(Relaxed),
            System::Ceiling { connected, .. } => connected.load(Relaxed),
            System::Relay(Running::Hub(hub)) => hub.stats().connected,
            System::Relay(Running::Counted(connected)) => connected.load(Relaxed),
        }
    }

    fn publish(&self, job: Job) {
        match self {
            System::Hub(_, tx, _) | System::Tutorial(_, tx) => {
                let _ = tx.send(job);
            }
            System::Async(a) => {
                let _ = a.jobs.send(job);
            }
            System::Ceiling { jobs, waker, .. } => {
                let _ = jobs.send(job);
                let _ = waker.wake();
            }
            System::Relay(_) => {}
        }
    }

    fn stats(&self) -> String {
        match self {
            System::Hub(hub, ..) | System::Relay(Running::Hub(hub)) => {
                let s = hub.stats();
                format!(
                    "stats connected={} accepted={} refused={} frames_out={} bytes_out={} dropped={} slow={} reset={} peer_closed={} io={} resumes={} resumes_refused={} replayed={} rate_held={} rate_dropped={} rate_limited={}",
                    s.connected,
                    s.accepted,
                    s.refused,
                    s.frames_out,
                    s.bytes_out,
                    s.dropped,
                    s.disconnects(DisconnectReason::Slow),
                    s.disconnects(DisconnectReason::Reset),
                    s.disconnects(DisconnectReason::PeerClosed),
                    s.disconnects(DisconnectReason::Io(io::ErrorKind::Other)),
                    s.resumes,
                    s.resumes_refused,
                    s.replayed,
                    s.rate_held,
                    s.rate_dropped,
                    s.disconnects(DisconnectReason::RateLimited),
                )
            }
            System::Async(a) => format!(
                "stats connected={} lagged={}",
                a.connected.load(Relaxed),
                a.lagged.load(Relaxed)
            ),
            _ => format!("stats connected={}", self.connected()),
        }
    }
}

/// Puts the hub's clients, in id order, in topics of `size` clients; returns the topics.
fn make_topics(hub: &Hub, size: usize) -> Result<Vec<String>, String> {
    let mut clients = hub.clients();
    clients.sort_by_key(|c| c.id);
    let mut names = Vec::new();
    for (k, client) in clients.iter().enumerate() {
        if k % size == 0 {
            names.push(format!("t{}", k / size));
        }
        let name = names.last().expect("pushed above");
        hub.join(client.id, name)
            .map_err(|e| format!("join {} {name}: {e}", client.id))?;
    }
    Ok(names)
}

/// Runs the child. Returns the exit code.
pub(crate) fn serve(system: &str, opts: ServeOpts) -> i32 {
    let out: Out = Arc::new(Mutex::new(io::stdout()));
    let (system, port) = match start(system, opts, &out) {
        Ok(v) => v,
        Err(e) => {
            say(&out, &format!("error {e}"));
            return 1;
        }
    };
    say(&out, &format!("port {port}"));
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["expect", n, ms] => {
                let (n, ms): (u64, u64) = (n.parse().unwrap_or(0), ms.parse().unwrap_or(0));
                let deadline = now_ns() + ms * 1_000_000;
                loop {
                    let c = system.connected();
                    if c == n {
                        say(&out, &format!("connected {c}"));
                        break;
                    }
                    if now_ns() > deadline {
                        say(&out, &format!("error expected {n} clients, have {c}"));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            ["publish", ..] if matches!(system, System::Relay(_)) => say(
                &out,
                "error a relay server is published to by a client, not by `publish`",
            ),
            ["publish", start, count, size, rate] => {
                let job = Job {
                    start: start.parse().unwrap_or(0),
                    count: count.parse().unwrap_or(0),
                    size: size.parse().unwrap_or(64),
                    rate: rate.parse().unwrap_or(0.0),
                };
                system.publish(job);
            }
            ["topics", size] => match (&system, size.parse::<usize>()) {
                (System::Hub(hub, _, topics), Ok(size)) if size > 0 => {
                    match make_topics(hub, size) {
                        Ok(names) => {
                            let t = names.len();
                            *topics.lock().unwrap_or_else(|e| e.into_inner()) = names;
                            say(&out, &format!("topics {t}"));
                        }
                        Err(e) => say(&out, &format!("error {e}")),
                    }
                }
                _ => say(&out, "error `topics SIZE` needs a hub and SIZE > 0"),
            },
            ["stats"] => say(&out, &system.stats()),
            ["quit"] => break,
            _ => say(&out, &format!("error unknown command {line:?}")),
        }
    }
    // Exit without waiting for publisher threads (the tutorial's may be stuck in a write).
    std::process::exit(0)
}

pub(crate) fn spawn_publisher(
    out: &Out,
    mut send: impl FnMut(&[u8]) -> io::Result<()> + Send + 'static,
) -> io::Result<Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let out = Arc::clone(out);
    std::thread::Builder::new()
        .name(PUB_THREAD.into())
        .spawn(move || {
            for job in rx {
                match publish_loop(&job, &mut send) {
                    Ok(late) => say(
                        &out,
                        &format!("published {} {}", job.count, late.to_words()),
                    ),
                    Err(e) => say(&out, &format!("error publishing: {e}")),
                }
            }
        })?;
    Ok(tx)
}

/// The publisher thread of a hub: broadcasts, or once `topics` made topics, publishes to
/// each in turn. Broadcast payloads are stamped as `kind`.
fn spawn_hub_publisher(
    out: &Out,
    hub: Arc<Hub>,
    topics: Arc<Mutex<Vec<String>>>,
    kind: Stamp,
) -> io::Result<Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let out = Arc::clone(out);
    std::thread::Builder::new()
        .name(PUB_THREAD.into())
        .spawn(move || {
            for job in rx {
                let names = topics.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let report = if names.is_empty() {
                    publish_loop_with(&job, kind, |msg| {
                        hub.broadcast(msg).map_err(io::Error::other)
                    })
                } else {
                    publish_topics_loop(&job, &names, |topic, msg| {
                        hub.publish(topic, msg).map_err(io::Error::other)
                    })
                };
                match report {
                    Ok(late) => say(
                        &out,
                        &format!("published {} {}", job.count, late.to_words()),
                    ),
                    Err(e) => say(&out, &format!("error publishing: {e}")),
                }
            }
        })?;
    Ok(tx)
}

fn start(system: &str, opts: ServeOpts, out: &Out) -> io::Result<(System, u16)> {
    let ServeOpts {
        max_clients,
        queue_bytes,
        ..
    } = opts;
    match system {
        #[cfg(feature = "websocket")]
        "hubcast-adopt" => {
            // `hubcast-ws`'s settings; its own listener (TCP) is never used.
            let hub = Hub::builder()
                .framing(Framing::LengthPrefixed)
                .queue_bytes(queue_bytes)
                .max_clients(max_clients)
                .flow_control(true)
                .websocket_origins(Origins::Any)
                .websocket_binary(true)
                .bind("127.0.0.1:0")
                .map_err(io::Error::other)?;
            let hub = Arc::new(hub);
            let port = adopting(Arc::clone(&hub))?;
            let topics = Arc::new(Mutex::new(Vec::new()));
            let tx = spawn_hub_publisher(out, Arc::clone(&hub), Arc::clone(&topics), Stamp::Bin)?;
            Ok((System::Hub(hub, tx, topics), port))
        }
        "hubcast" | "hubcast-default" | "hubcast-topics" | "hubcast-ws" | "hubcast-seq" => {
            // `hubcast` is the configuration we recommend for floods: flow control on, so
            // `broadcast` waits while a client that keeps up catches up. `hubcast-default`
            // keeps the default (broadcast never waits): a flood then meets the policy.
            // The others are `hubcast` with one thing changed: the clients' wire, or the
            // protocol.
            let mut builder = Hub::builder()
                .framing(Framing::LengthPrefixed)
                .queue_bytes(queue_bytes)
                .max_clients(max_clients)
                .flow_control(system != "hubcast-default");
            if system == "hubcast-ws" {
                // Binary frames, as every other WebSocket system sends: the payloads are
                // binary (by default a payload that happens to be valid UTF-8 would go
                // in a text frame).
                builder = builder
                    .transport(Transport::WebSocket)
                    .websocket_origins(Origins::Any)
                    .websocket_binary(true);
            }
            if system == "hubcast-seq" {
                builder = builder
                    .protocol(Protocol::Sequenced)
                    .replay_messages(opts.replay_messages)
                    .replay_bytes(opts.replay_bytes.max(1));
            }
            let hub = builder.bind("127.0.0.1:0").map_err(io::Error::other)?;
            let port = hub.local_addr().port();
            let hub = Arc::new(hub);
            let topics = Arc::new(Mutex::new(Vec::new()));
            let tx = spawn_hub_publisher(out, Arc::clone(&hub), Arc::clone(&topics), Stamp::Bin)?;
            Ok((System::Hub(hub, tx, topics), port))
        }
        // `--mode ws-deflate` (crate::deflate): `hubcast-ws` sending JSON-like text, without
        // and with compression.
        #[cfg(feature = "websocket")]
        "hubcast-ws-json" | "hubcast-ws-deflate" => {
            let hub = Hub::builder()
                .framing(Framing::LengthPrefixed)
                .queue_bytes(queue_bytes)
                .max_clients(max_clients)
                .flow_control(true)
                .transport(Transport::WebSocket)
                .websocket_origins(Origins::Any)
                .websocket_compression(system == "hubcast-ws-deflate")
                .bind("127.0.0.1:0")
                .map_err(io::Error::other)?;
            let port = hub.local_addr().port();
            let hub = Arc::new(hub);
            let topics = Arc::new(Mutex::new(Vec::new()));
            let tx = spawn_hub_publisher(out, Arc::clone(&hub), Arc::clone(&topics), Stamp::Json)?;
            Ok((System::Hub(hub, tx, topics), port))
        }
        "hubcast-sse" | "hubcast-sse-ws" | "hubcast-sse-tcp" => {
            let hub = sse_hub(max_clients, queue_bytes)?;
            // The WebSocket listener (event streams and upgrades) is the one given to
            // `bind`, the TCP listener the one added with `listen`.
            let want = if system == "hubcast-sse-tcp" {
                Transport::Tcp
            } else {
                Transport::WebSocket
            };
            let port = hub
                .local_addrs()
                .iter()
                .find(|l| l.transport == want)
                .map(|l| l.addr.port())
                .ok_or_else(|| io::Error::other("no listener of that transport"))?;
            let hub = Arc::new(hub);
            let topics = Arc::new(Mutex::new(Vec::new()));
            let tx = spawn_hub_publisher(out, Arc::clone(&hub), Arc::clone(&topics), Stamp::Text)?;
            Ok((System::Hub(hub, tx, topics), port))
        }
        "tokio-ws" => {
            let (running, port) = crate::tokio_ws::start(out)?;
            Ok((System::Async(running), port))
        }
        "thread" => {
            let listener = listen()?;
            let port = listener.local_addr()?.port();
            let t = Arc::new(Tutorial {
                clients: Mutex::new(Vec::new()),
                connected: AtomicU64::new(0),
                spawn_failures: AtomicU64::new(0),
            });
            let acceptor = Arc::clone(&t);
            std::thread::Builder::new()
                .name("tutorial-accept".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        let Ok(stream) = stream else { continue };
                        // hubcast and the peers set TCP_NODELAY too; without it Nagle would
                        // hold back small messages.
                        let _ = stream.set_nodelay(true);
                        // One socket shared by the client's thread (reading) and the
                        // publisher (writing), rather than a `try_clone`, so a client costs
                        // one file descriptor as in the other systems.
                        let stream = Arc::new(stream);
                        let reader = Arc::clone(&stream);
                        acceptor
                            .clients
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(stream);
                        acceptor.connected.fetch_add(1, Relaxed);
                        // The client's own thread: reads what it says (nothing, here).
                        let spawned = std::thread::Builder::new()
                            .name("tutorial-client".into())
                            .spawn(move || {
                                let mut buf = [0u8; 1024];
                                while matches!((&*reader).read(&mut buf), Ok(n) if n > 0) {}
                            });
                        if let Err(e) = spawned {
                            // Typically EAGAIN past ~16,000 threads (vm.max_map_count): the
                            // design's limit. Say so once; the cell then fails.
                            if acceptor.spawn_failures.fetch_add(1, Relaxed) == 0 {
                                eprintln!(
                                    "fanout: thread-per-client server could not create thread #{}: {e}",
                                    acceptor.connected.load(Relaxed)
                                );
                            }
                        }
                    }
                })?;
            let pubs = Arc::clone(&t);
            let mut frame = Vec::new();
            let tx = spawn_publisher(out, move |msg| {
                frame.clear();
                frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                frame.extend_from_slice(msg);
                // Blocking writes to every client in turn; a client whose write fails is
                // dropped.
                let mut clients = pubs.clients.lock().unwrap_or_else(|e| e.into_inner());
                clients.retain(|c| (&**c).write_all(&frame).is_ok());
                Ok(())
            })?;
            Ok((System::Tutorial(t, tx), port))
        }
        "ceiling" | "ceiling-ws" | "sse-ceiling" => {
            let std_listener = listen()?;
            let port = std_listener.local_addr()?.port();
            std_listener.set_nonblocking(true)?;
            let listener = mio::net::TcpListener::from_std(std_listener);
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let connected = Arc::new(AtomicU64::new(0));
            let (tx, rx) = mpsc::channel();
            let mut ceiling = Ceiling {
                poll,
                listener,
                conns: Vec::new(),
                connected: Arc::clone(&connected),
                jobs: rx,
                out: Arc::clone(out),
                wire: match system {
                    "ceiling-ws" => CeilingWire::Ws,
                    "sse-ceiling" => CeilingWire::Sse,
                    _ => CeilingWire::Lp,
                },
            };
            std::thread::Builder::new()
                .name(PUB_THREAD.into())
                .spawn(move || ceiling.run())?;
            Ok((
                System::Ceiling {
                    connected,
                    jobs: tx,
                    waker,
                },
                port,
            ))
        }
        "hubcast-limit" => {
            let (running, port) = crate::limit::start(opts.limit, max_clients)?;
            Ok((System::Relay(running), port))
        }
        relay if relay.ends_with("-relay") || relay == "hubcast-hostrelay" => {
            let (running, port) = crate::relay::start(relay, max_clients)?;
            Ok((System::Relay(running), port))
        }
        other => Err(io::Error::other(format!("unknown system {other:?}"))),
    }
}

/// The hub of `--mode sse`, the same for its three systems: the `hubcast` configuration
/// (`queue_bytes`, `flow_control(true)`) with `Framing::Lines` (what a TCP client of a
/// text protocol reads; event streams and WebSocket text frames carry the line without its
/// `\n`), a WebSocket listener on 127.0.0.1 serving event streams on `/events` (any
/// origin; no keepalive, which a flood does not need) and a TCP listener beside it.
fn sse_hub(max_clients: usize, queue_bytes: usize) -> io::Result<Hub> {
    Hub::builder()
        .framing(Framing::Lines)
        .queue_bytes(queue_bytes)
        .max_clients(max_clients)
        .flow_control(true)
        .transport(Transport::WebSocket)
        .websocket_origins(Origins::Any)
        .sse_path(Some(crate::sse::PATH))
        .sse_keepalive(None)
        .listen("127.0.0.1:0", Transport::Tcp)
        .bind("127.0.0.1:0")
        .map_err(io::Error::other)
}

/// A listener on 127.0.0.1 with an OS-chosen port and hubcast's default backlog (std's
/// `TcpListener::bind` uses 128, which drops connections in a 10,000-client connect burst).
pub(crate) fn listen() -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

struct Conn {
    stream: mio::net::TcpStream,
    /// Absolute index of the next batch to write, and bytes of it already written.
    idx: u64,
    off: usize,
    writable: bool,
    dead: bool,
    /// `ceiling-ws`, `sse-ceiling`: the request read so far, until it is answered.
    upgrade: Option<Vec<u8>>,
}

/// What the ceiling's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CeilingWire {
    /// Length-prefixed frames, from the first byte.
    Lp,
    /// WebSocket: the upgrade answered, then binary frames.
    Ws,
    /// Server-sent events: the `GET` answered with a `200`, then `data: <payload>\n\n`
    /// per message (line-safe payloads).
    Sse,
}

/// The ceiling: accept, then write the same batches of frames to every socket.
struct Ceiling {
    poll: Poll,
    listener: mio::net::TcpListener,
    conns: Vec<Conn>,
    connected: Arc<AtomicU64>,
    jobs: Receiver<Job>,
    out: Out,
    /// WebSocket: answer each client's upgrade, then write binary frames (a 2-, 4- or
    /// 10-byte header instead of the 4-byte length); event streams: answer each `GET`,
    /// then write events.
    wire: CeilingWire,
}

impl Ceiling {
    fn run(&mut self) {
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut self.listener, LISTENER, Interest::READABLE)
        {
            say(&self.out, &format!("error {e}"));
            return;
        }
        let mut events = Events::with_capacity(1024);
        loop {
            if self
                .poll
                .poll(&mut events, Some(Duration::from_millis(10)))
                .is_err()
            {
                continue;
            }
            for e in events.iter() {
                let t = e.token().0;
                if t < self.conns.len() && e.is_writable() {
                    self.conns[t].writable = true;
                }
                if t < self.conns.len() && e.is_readable() && self.conns[t].upgrade.is_some() {
                    self.upgrade(t);
                }
            }
            self.accept();
            while let Ok(job) = self.jobs.try_recv() {
                let late = self.publish(&job, &mut events);
                say(
                    &self.out,
                    &format!("published {} {}", job.count, late.to_words()),
                );
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let sock = socket2::SockRef::from(&stream);
                    let _ = sock.set_nodelay(true);
                    let _ = sock.set_send_buffer_size(SEND_BUFFER);
                    let token = Token(self.conns.len());
                    let answers = self.wire != CeilingWire::Lp;
                    let interest = if answers {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::WRITABLE
                    };
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, interest)
                        .is_err()
                    {
                        continue;
                    }
                    self.conns.push(Conn {
                        stream,
                        idx: 0,
                        off: 0,
                        writable: true,
                        dead: false,
                        upgrade: answers.then(Vec::new),
                    });
                    if answers {
                        // The request may be here already; edge-triggered, so look now.
                        self.upgrade(self.conns.len() - 1);
                    } else {
                        self.connected.fetch_add(1, Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return,
            }
        }
    }

    /// Reads connection `t`'s upgrade request and answers it once whole; a client that
    /// sends anything else is dropped.
    fn upgrade(&mut self, t: usize) {
        let c = &mut self.conns[t];
        let Some(buf) = c.upgrade.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 2048];
        loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => {
                    c.dead = true;
                    c.upgrade = None;
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    c.dead = true;
                    c.upgrade = None;
                    return;
                }
            }
        }
        let Some(end) = crate::ws::head_end(buf) else {
            if buf.len() > crate::ws::MAX_HEAD {
                c.dead = true;
                c.upgrade = None;
            }
            return;
        };
        // A 129-byte answer into an empty socket buffer: never short.
        let response = if self.wire == CeilingWire::Sse {
            crate::sse::accept_response(&buf[..end])
        } else {
            crate::ws::accept_response(&buf[..end])
        };
        let answered = response
            .ok()
            .and_then(|r| c.stream.write(&r).ok().filter(|&n| n == r.len()));
        c.upgrade = None;
        if answered.is_some() {
            self.connected.fetch_add(1, Relaxed);
        } else {
            c.dead = true;
        }
    }

    /// Writes messages `job.start..` to every connection; returns when all have them all.
    fn publish(&mut self, job: &Job, events: &mut Events) -> PubReport {
        let mut late = Hist::new();
        if job.rate > 0.0 {
            fine_timer_slack();
        }
        // Window of batches not yet written to every connection: as hubcast's queue_bytes.
        const WINDOW: usize = 64 << 20;
        let mut batches: VecDeque<Vec<u8>> = VecDeque::new();
        let mut base = 0u64; // absolute index of batches[0]
        let mut queued = 0usize;
        for c in &mut self.conns {
            c.idx = 0;
            c.off = 0;
            // Not upgraded (never the case once the bench has seen N connected): left out.
            c.dead |= c.upgrade.is_some();
        }
        let kind = if self.wire == CeilingWire::Sse {
            Stamp::Text
        } else {
            Stamp::Bin
        };
        let mut msg = kind.payload(job.size);
        let (ws_head, ws_head_len) = crate::ws::binary_header(msg.len());
        let head: &[u8] = match self.wire {
            CeilingWire::Ws => &ws_head[..ws_head_len],
            CeilingWire::Sse => crate::sse::DATA,
            CeilingWire::Lp => &[],
        };
        let tail: &[u8] = if self.wire == CeilingWire::Sse {
            crate::sse::END
        } else {
            &[]
        };
        let frame_len = match self.wire {
            CeilingWire::Lp => 4,
            _ => head.len(),
        } + msg.len()
            + tail.len();
        let mut produced = 0u64;
        // When the last message was made: the ceiling's "publisher done".
        let mut produced_at = 0u64;
        let t0 = now_ns();
        loop {
            let mut progress = false;
            // Produce: as fast as the window allows (up to 1 MiB between write passes), or
            // what the schedule says is due.
            let now = now_ns();
            let mut made = 0;
            while produced < job.count
                && (if job.rate > 0.0 {
                    job.intended(t0, produced) <= now
                } else {
                    queued < WINDOW && made < 16
                })
            {
                made += 1;
                let mut batch = Vec::with_capacity(BATCH.max(frame_len));
                while produced < job.count && batch.len() + frame_len <= BATCH.max(frame_len) {
                    let ts = if job.rate > 0.0 {
                        job.intended(t0, produced)
                    } else {
                        now_ns()
                    };
                    if job.rate > 0.0 {
                        if ts > now {
                            break;
                        }
                        late.record(now - ts);
                    }
                    kind.write(&mut msg, job.start + produced, ts);
                    if self.wire == CeilingWire::Lp {
                        batch.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                    } else {
                        batch.extend_from_slice(head);
                    }
                    batch.extend_from_slice(&msg);
                    batch.extend_from_slice(tail);
                    produced += 1;
                }
                queued += batch.len();
                batches.push_back(batch);
                progress = true;
            }
            let end = base + batches.len() as u64;
            // Write: every writable connection, as much as its socket takes.
            for c in self.conns.iter_mut() {
                while !c.dead && c.writable && c.idx < end {
                    let first = (c.idx - base) as usize;
                    let mut iov = Vec::with_capacity(64);
                    for (k, b) in batches.iter().skip(first).take(64).enumerate() {
                        iov.push(IoSlice::new(if k == 0 { &b[c.off..] } else { b }));
                    }
                    match c.stream.write_vectored(&iov) {
                        Ok(mut n) => {
                            progress = true;
                            while n > 0 {
                                let left = batches[(c.idx - base) as usize].len() - c.off;
                                if n >= left {
                                    n -= left;
                                    c.idx += 1;
                                    c.off = 0;
                                } else {
                                    c.off += n;
                                    n = 0;
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => c.dead = true,
                    }
                }
            }
            // Retire batches every live connection has.
            let low = self
                .conns
                .iter()
                .filter(|c| !c.dead)
                .map(|c| c.idx)
                .min()
                .unwrap_or(end);
            while base < low {
                if let Some(b) = batches.pop_front() {
                    queued -= b.len();
                }
                base += 1;
            }
            if produced == job.count && produced_at == 0 {
                produced_at = now_ns();
            }
            if produced == job.count && low == end {
                return PubReport::new(&late, produced_at - t0);
            }
            let blocked = self
                .conns
                .iter()
                .any(|c| !c.dead && !c.writable && c.idx < end);
            let timeout = if progress {
                Duration::ZERO
            } else if job.rate > 0.0 && produced < job.count && !blocked {
                // Idle until the next message is due.
                wait_until(job.intended(t0, produced));
                Duration::ZERO
            } else if job.rate > 0.0 && produced < job.count {
                Duration::from_micros(200)
            } else {
                Duration::from_millis(100)
            };
            if self.poll.poll(events, Some(timeout)).is_ok() {
                for e in events.iter() {
                    if e.token().0 < self.conns.len() && e.is_writable() {
                        self.conns[e.token().0].writable = true;
                    }
                }
            }
        }
    }
}

/// The host of `hubcast-adopt`: a std listener whose connections a thread accepts, reads
/// the upgrade request of, answers as `Hub::websocket_answer` says, and hands to `hub`
/// with what it read past the request. Returns the listener's port.
#[cfg(feature = "websocket")]
fn adopting(hub: Arc<Hub>) -> io::Result<u16> {
    let listener = listen()?;
    let port = listener.local_addr()?.port();
    std::thread::Builder::new()
        .name("adopt-accept".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Err(e) = adopt_one(&hub, stream) {
                    eprintln!("fanout: hubcast-adopt could not adopt a connection: {e}");
                }
            }
        })?;
    Ok(port)
}

/// Reads one upgrade request from `stream`, answers it and adopts the connection.
#[cfg(feature = "websocket")]
fn adopt_one(hub: &Hub, mut stream: TcpStream) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = crate::ws::head_end(&buf) {
            break end;
        }
        if buf.len() > crate::ws::MAX_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.trim_end().split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or("/"),
    );
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let answer = hub
        .websocket_answer(method, headers.iter().copied())
        .map_err(io::Error::other)?;
    let mut response = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in answer.headers() {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes())?;
    let adopted = hubcast::Adopted::websocket(stream)
        .read(&buf[end..])
        .request(target, headers);
    hub.adopt(adopted).map_err(io::Error::other)
}
