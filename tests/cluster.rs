//! Hubs in a cluster through NATS (feature `nats`), against real nats-servers that each
//! test starts for itself on ports the OS chooses: broadcasts, relayed client messages and
//! topics across hubs, a broker killed and restarted on its port, a broker frozen, two
//! brokers joined by a route, bad settings, shutdown, and the `cluster_chat` example.
//!
//! Nothing here guesses when something is ready. A hub is connected when it says so
//! (`stats().cluster.connected`, `Event::Cluster`); its subscriptions are in place when the
//! broker lists them (the server's monitoring endpoint, polled with a deadline): a hub
//! subscribes asynchronously, so a message published by another hub before the broker
//! has the subscription is, as in any NATS pub/sub, not for it. Every wait is bounded by
//! `TIMEOUT`, which success never reaches.

#![cfg(feature = "nats")]

mod util;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use hubcast::{
    Cluster, ClusterState, ClusterStats, Error, Event, Framing, Hub, HubBuilder, Protocol, Relay,
};
use util::{
    broadcast_numbered, example_path, frame, require_program, seq_of, tag_seq_of, tagged,
    ChildProcess, EventLog, Got, Healthy, Peer, TempDir, LOCAL, MSG_LEN, PACE, TIMEOUT,
};

/// The cluster's default subject prefix, which the hubs here use unless a test says.
const ALL: &str = "hubcast.all";

// ------------------------------------------------------------------------ nats-server

/// A nats-server of the test's own, on 127.0.0.1 with OS-chosen ports (client, monitoring
/// and, if asked for, cluster), read from the ports file it writes. Killed when dropped,
/// panics included (thawed first if frozen), and only ever signalled by its own pid.
struct Nats {
    /// `None` between [`kill`](Self::kill) and [`restart`](Self::restart).
    process: Option<ChildProcess>,
    dir: TempDir,
    port: u16,
    monitor: u16,
    cluster: Option<u16>,
    /// The options after the standard ones, given again on a restart.
    extra: Vec<String>,
    frozen: bool,
}

/// The ports a nats-server reports in its ports file.
struct Ports {
    client: u16,
    monitor: u16,
    cluster: Option<u16>,
}

impl Nats {
    /// Whether nats-server is installed; if not, the test should return (see
    /// `require_program`: it says so, and fails under CI).
    fn available() -> bool {
        require_program("nats-server")
    }

    fn start() -> Nats {
        Nats::start_with(&[])
    }

    /// A server with these options besides the client, monitoring and ports-file ones.
    fn start_with(extra: &[&str]) -> Nats {
        let dir = TempDir::new("nats");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (process, ports) = launch(dir.path(), None, &extra);
        Nats {
            process: Some(process),
            dir,
            port: ports.client,
            monitor: ports.monitor,
            cluster: ports.cluster,
            extra,
            frozen: false,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The URL other servers connect their routes to.
    fn route_url(&self) -> String {
        let port = self.cluster.expect("started with --cluster");
        format!("nats://127.0.0.1:{port}")
    }

    fn process(&mut self) -> &mut ChildProcess {
        self.process.as_mut().expect("nats-server is running")
    }

    /// SIGKILL: the broker vanishes without a word to its clients, as a crash does.
    fn kill(&mut self) {
        let mut process = self.process.take().expect("nats-server is running");
        process.signal(libc::SIGKILL);
        process.wait();
        self.frozen = false;
    }

    /// Starts the server again on the client port it had (the OS chose it the first time).
    fn restart(&mut self) {
        assert!(self.process.is_none(), "kill it first");
        let (process, ports) = launch(self.dir.path(), Some(self.port), &self.extra);
        assert_eq!(ports.client, self.port);
        self.process = Some(process);
        self.monitor = ports.monitor;
        self.cluster = ports.cluster;
    }

    /// SIGSTOP: the broker freezes with every connection open.
    fn freeze(&mut self) {
        self.process().signal(libc::SIGSTOP);
        self.frozen = true;
    }

    fn thaw(&mut self) {
        self.process().signal(libc::SIGCONT);
        self.frozen = false;
    }

    /// The monitoring endpoint's answer to `GET path` (the server must not be frozen).
    fn monitor(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.monitor))
            .unwrap_or_else(|err| panic!("connect to the monitoring port: {err}"));
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(TIMEOUT)).expect("timeout");
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .unwrap_or_else(|err| panic!("GET {path}: {err}"));
        response
    }

    /// Polls `path` until `cond` holds for its answer. The broker raises no event a test
    /// could wait on, so this asks again every [`PACE`], up to [`TIMEOUT`].
    fn wait_monitor(&self, what: &str, path: &str, cond: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let body = self.monitor(path);
            if cond(&body) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; GET {path}:\n{body}"
            );
            thread::sleep(PACE);
        }
    }

    /// Waits until exactly `n` client connections hold a subscription to `subject`.
    fn wait_subscribed(&self, subject: &str, n: usize) {
        self.wait_monitor(
            &format!("{n} subscriptions to {subject}"),
            "/connz?subs=1",
            |body| mentions(body, subject) == n,
        );
    }

    /// Waits until exactly `n` clients are connected.
    fn wait_connections(&self, n: u64) {
        self.wait_monitor(&format!("{n} connections"), "/connz", |body| {
            json_number(body, "num_connections") == Some(n)
        });
    }

    /// Waits until a route to another server carries interest in `subject`: a
    /// subscriber on the other side will get what is published here.
    fn wait_route_interest(&self, subject: &str) {
        self.wait_monitor(
            &format!("interest in {subject} over a route"),
            "/routez?subs=1",
            |body| mentions(body, subject) > 0,
        );
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            if self.frozen {
                process.signal(libc::SIGCONT);
            }
            // Dropping the guard kills and reaps it.
            drop(process);
        }
    }
}

/// Starts nats-server on `port` (or one the OS chooses) and waits for its ports file.
fn launch(dir: &Path, port: Option<u16>, extra: &[String]) -> (ChildProcess, Ports) {
    let mut command = Command::new(util::find_program("nats-server").expect("nats-server"));
    // `-p 0` would mean the default port, 4222; -1 asks for a random one.
    let port = port.map_or("-1".to_owned(), |p| p.to_string());
    command
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port,
            "-m",
            "-1",
            "--ports_file_dir",
        ])
        .arg(dir)
        .args(extra);
    let mut process = ChildProcess::spawn(command);
    let name = format!("nats-server_{}.ports", process.id());
    let wants_cluster = extra.iter().any(|arg| arg == "--cluster");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        // Written once every listener is up; read until whole (it is not written atomically).
        if let Ok(json) = std::fs::read_to_string(dir.join(&name)) {
            let ports = (
                url_port(&json, "nats"),
                url_port(&json, "monitoring"),
                url_port(&json, "cluster"),
            );
            if let (Some(client), Some(monitor), cluster) = ports {
                if cluster.is_some() || !wants_cluster {
                    return (
                        process,
                        Ports {
                            client,
                            monitor,
                            cluster,
                        },
                    );
                }
            }
        }
        if let Some(status) = process.try_wait() {
            panic!(
                "nats-server exited with {status}; its stderr:\n{}",
                process.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no ports file from nats-server; its stderr:\n{}",
            process.stderr()
        );
        // Nothing to block on: the file appears when it appears.
        thread::sleep(PACE);
    }
}

/// The port of the first URL under `key` in a ports file: `{"nats":["nats://h:p"],…}`.
fn url_port(json: &str, key: &str) -> Option<u16> {
    let head = format!("\"{key}\":[\"");
    let start = json.find(&head)? + head.len();
    let url = &json[start..][..json[start..].find('"')?];
    url.rsplit(':').next()?.parse().ok()
}

/// How many times `subject` appears as a JSON string in `body`.
fn mentions(body: &str, subject: &str) -> usize {
    body.matches(&format!("\"{subject}\"")).count()
}

/// The number after `"key":` in `body`.
fn json_number(body: &str, key: &str) -> Option<u64> {
    let head = format!("\"{key}\":");
    let rest = body[body.find(&head)? + head.len()..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

// ------------------------------------------------------------------------------ nodes

/// A hub of the cluster and the log of its events.
struct Node {
    hub: Hub,
    events: EventLog,
}

impl Node {
    fn start(builder: HubBuilder) -> Node {
        let hub = builder.bind(LOCAL).expect("bind a clustered hub");
        let events = EventLog::subscribe(&hub);
        Node { hub, events }
    }

    /// A hub with default settings on the cluster reached through `nats`.
    fn on(nats: &Nats) -> Node {
        Node::start(Hub::builder().cluster(Cluster::nats([nats.url()])))
    }

    /// A client reading on a thread, connected once the hub has announced it.
    fn join(&mut self) -> Healthy {
        Healthy::join(&self.hub, &mut self.events, Framing::Lines)
    }

    /// A client the test reads itself, connected once the hub has announced it.
    fn peer(&mut self) -> (Peer, hubcast::ClientId) {
        util::join(&self.hub, &mut self.events)
    }

    fn cluster(&self) -> ClusterStats {
        self.hub.stats().cluster
    }

    /// Where the events received from now on start, for [`Node::wait_state`].
    fn mark(&self) -> usize {
        self.events.seen.len()
    }

    /// Waits until `cond` holds for the events received since `since` and the cluster
    /// counters, checked again after each event or [`PACE`] without one.
    fn wait(&mut self, what: &str, since: usize, cond: impl Fn(&[Event], &ClusterStats) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !cond(&self.events.seen[since..], &self.cluster()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; cluster {:?}; events since: {:?}",
                self.cluster(),
                &self.events.seen[since..]
            );
            self.events.next_within(PACE);
        }
    }

    /// Waits for `stats().cluster.connected` (the event may have come before the log
    /// subscribed).
    fn wait_connected(&mut self) {
        self.wait("the cluster connection", 0, |_, stats| stats.connected);
    }

    /// Waits for an `Event::Cluster` with `state` received since `since`, and returns
    /// where the events after it start.
    fn wait_state(&mut self, since: usize, state: ClusterState) -> usize {
        self.wait(&format!("{state:?}"), since, |events, _| {
            events.iter().any(|e| is_state(e, state))
        });
        since
            + self.events.seen[since..]
                .iter()
                .position(|e| is_state(e, state))
                .expect("seen")
            + 1
    }
}

fn is_state(event: &Event, want: ClusterState) -> bool {
    matches!(event, Event::Cluster { state, .. } if *state == want)
}

/// The state an `Event::Cluster` reports.
fn state_of(event: &Event) -> Option<ClusterState> {
    match event {
        Event::Cluster { state, .. } => Some(*state),
        _ => None,
    }
}

/// The state the last `Event::Cluster` among `events` reported.
fn last_state(events: &[Event]) -> Option<ClusterState> {
    events.iter().rev().find_map(state_of)
}

/// A hub with default settings in `cluster`.
fn plain(cluster: Cluster) -> HubBuilder {
    Hub::builder().cluster(cluster)
}

/// `n` hubs on `nats`, made by `builder` from the cluster settings, each connected, and
/// each one's broadcast subscription held by the broker.
fn nodes(nats: &Nats, n: usize, builder: impl Fn(Cluster) -> HubBuilder) -> Vec<Node> {
    let mut nodes: Vec<Node> = (0..n)
        .map(|_| Node::start(builder(Cluster::nats([nats.url()]))))
        .collect();
    for node in &mut nodes {
        node.wait_connected();
    }
    nats.wait_subscribed(ALL, n);
    nodes
}

// ---------------------------------------------------------------------------- frames

/// The frames `client` receives until each of `markers` has come once, in arrival
/// order, the markers left out.
fn frames_until(client: &Healthy, markers: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut left: Vec<&[u8]> = markers.to_vec();
    let mut frames = Vec::new();
    while !left.is_empty() {
        match client.next() {
            Got::Frame(frame) => match left.iter().position(|m| *m == frame.as_slice()) {
                Some(i) => {
                    left.swap_remove(i);
                }
                None => {
                    assert!(
                        !markers.contains(&frame.as_slice()),
                        "client {}: marker {:?} twice",
                        client.id,
                        String::from_utf8_lossy(&frame)
                    );
                    frames.push(frame);
                }
            },
            end => panic!(
                "client {}: {end:?} while waiting for {:?}",
                client.id,
                left.iter()
                    .map(|m| String::from_utf8_lossy(m))
                    .collect::<Vec<_>>()
            ),
        }
    }
    frames
}

/// The sequence numbers of numbered `frames` (see `util::tagged`), by stream, in arrival
/// order; fails the test on any other frame.
fn by_stream(frames: &[Vec<u8>]) -> BTreeMap<usize, Vec<usize>> {
    let mut streams: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for frame in frames {
        let (stream, seq) = tag_seq_of(frame);
        streams.entry(stream).or_default().push(seq);
    }
    streams
}

/// Asserts that `frames` are the streams `streams`, each `0..n` in order and once,
/// interleaved in any way, and nothing else; else says where the first one goes wrong.
fn assert_complete(who: &str, frames: &[Vec<u8>], streams: &[usize], n: usize) {
    let got = by_stream(frames);
    for &stream in streams {
        let seqs = got.get(&stream).map_or(&[][..], Vec::as_slice);
        if let Some(i) = (0..n.max(seqs.len())).find(|&i| i >= n || seqs.get(i) != Some(&i)) {
            let around = &seqs[i.saturating_sub(3)..(i + 3).min(seqs.len())];
            panic!(
                "{who}: stream {stream} has {} of {n} messages; message {i} is {:?} \
                 (around it: {around:?})",
                seqs.len(),
                seqs.get(i)
            );
        }
    }
    let others: Vec<&usize> = got.keys().filter(|s| !streams.contains(s)).collect();
    assert!(others.is_empty(), "{who}: streams {others:?} too");
}

/// Writes numbered message `seq` of `stream` as a client.
fn send_numbered(client: &Healthy, stream: usize, seq: usize) {
    (&client.stream)
        .write_all(&frame(Framing::Lines, &tagged(stream, seq, MSG_LEN)))
        .expect("client write");
}

/// Runs `f` on a thread of its own and returns what it returns (or its panic), failing
/// the test if that takes longer than `bound` (the thread is left behind, stuck where it
/// hung).
fn within<T: Send + 'static>(
    what: &str,
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(bound) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} took more than {bound:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(thread.join().expect_err("it panicked"))
        }
    }
}

// ------------------------------------------------------------------------- broadcasts

/// A broadcast on one hub reaches every client of every hub exactly once, in order; the
/// node's own broadcasts never come back to it from the broker.
#[test]
fn a_broadcast_reaches_every_client_of_every_hub_once_in_order() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let mut nodes = nodes(&nats, 3, plain);
    let clients: Vec<Healthy> = nodes
        .iter_mut()
        .flat_map(|node| [node.join(), node.join()])
        .collect();

    const N: usize = 2_000;
    broadcast_numbered(&nodes[0].hub, 0..N, MSG_LEN);
    // The same subject from the same connection: it comes after every one of them, so a
    // duplicate would have come before it.
    nodes[0].hub.broadcast("end").unwrap();
    for client in &clients {
        client.expect_numbered(0..N, MSG_LEN);
        client.expect(&[b"end"]);
    }

    let n = N as u64 + 1;
    nodes[0].wait("every broadcast to be published", 0, |_, stats| {
        stats.sent == n
    });
    let a = nodes[0].cluster();
    assert_eq!((a.sent, a.received, a.lost), (n, 0, 0), "{a:?}");
    for node in &nodes[1..] {
        let stats = node.cluster();
        assert!(stats.connected, "{stats:?}");
        assert_eq!(
            (stats.sent, stats.received, stats.lost),
            (0, n, 0),
            "{stats:?}"
        );
    }
}

/// Relay mode across hubs: every client gets every other client's messages once, each
/// sender's in order, never its own.
#[test]
fn relayed_messages_reach_every_other_client_across_hubs() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let mut nodes = nodes(&nats, 3, |c| plain(c).relay(Relay::Others));
    // Client k is on hub k / 2 and numbers stream k.
    let clients: Vec<Healthy> = nodes
        .iter_mut()
        .flat_map(|node| [node.join(), node.join()])
        .collect();

    const N: usize = 300;
    for seq in 0..N {
        for (stream, client) in clients.iter().enumerate() {
            send_numbered(client, stream, seq);
        }
    }
    // Each hub's `end` follows, on every client, everything that hub relayed.
    let ends: Vec<Vec<u8>> = (0..nodes.len())
        .map(|i| format!("end {i}").into_bytes())
        .collect();
    // Only once every client has everything, so that nothing relayed is still on its way
    // into a hub when its `end` is sent.
    let mut got: Vec<Vec<Vec<u8>>> = vec![Vec::new(); clients.len()];
    for (k, client) in clients.iter().enumerate() {
        while got[k].len() < N * (clients.len() - 1) {
            match client.next() {
                Got::Frame(frame) => got[k].push(frame),
                end => panic!("client {k}: {end:?} after {} frames", got[k].len()),
            }
        }
    }
    for (node, end) in nodes.iter().zip(&ends) {
        node.hub.broadcast(end).unwrap();
    }
    let markers: Vec<&[u8]> = ends.iter().map(Vec::as_slice).collect();
    for (k, client) in clients.iter().enumerate() {
        let rest = frames_until(client, &markers);
        assert!(
            rest.is_empty(),
            "client {k}: more than expected: {} frames",
            rest.len()
        );
        let others: Vec<usize> = (0..clients.len()).filter(|&s| s != k).collect();
        assert_complete(&format!("client {k}"), &got[k], &others, N);
    }

    let n = N as u64;
    for node in &nodes {
        let stats = node.cluster();
        // Two clients' messages out, four in, plus the `end`s.
        assert_eq!((stats.sent, stats.lost), (2 * n + 1, 0), "{stats:?}");
        assert_eq!(stats.received, 4 * n + 2, "{stats:?}");
    }
}

// ---------------------------------------------------------------------------- topics

/// Topic messages reach the members on every hub, from a hub with members or without;
/// non-members get none; a hub whose last member leaves stops receiving the topic.
#[test]
fn topics_reach_members_on_every_hub_and_only_them() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let mut nodes = nodes(&nats, 3, plain);
    let [a1, a2] = [nodes[0].join(), nodes[0].join()];
    let [b1, b2] = [nodes[1].join(), nodes[1].join()];
    let c1 = nodes[2].join();
    nodes[0].hub.join(a1.id, "red").unwrap();
    nodes[1].hub.join(b1.id, "red").unwrap();
    nodes[1].hub.join(b2.id, "blue").unwrap();
    nats.wait_subscribed("hubcast.t.red", 2);
    nats.wait_subscribed("hubcast.t.blue", 1);

    // Stream 0: red from A (members there and on B); stream 1: red from C (no member
    // there); stream 2: blue from B (its only member is on B itself).
    const N: usize = 500;
    for seq in 0..N {
        nodes[0]
            .hub
            .publish("red", tagged(0, seq, MSG_LEN))
            .unwrap();
        nodes[2]
            .hub
            .publish("red", tagged(1, seq, MSG_LEN))
            .unwrap();
        nodes[1]
            .hub
            .publish("blue", tagged(2, seq, MSG_LEN))
            .unwrap();
    }
    nodes[0].hub.publish("red", "end red A").unwrap();
    nodes[2].hub.publish("red", "end red C").unwrap();
    nodes[1].hub.publish("blue", "end blue B").unwrap();
    for member in [&a1, &b1] {
        let frames = frames_until(member, &[b"end red A", b"end red C"]);
        assert_complete(&format!("client {}", member.id), &frames, &[0, 1], N);
    }
    let frames = frames_until(&b2, &[b"end blue B"]);
    assert_complete("b2", &frames, &[2], N);
    // Every client, member or not, then gets exactly the three broadcasts: nothing of a
    // topic it is not in.
    let fins: [&[u8]; 3] = [b"fin A", b"fin B", b"fin C"];
    for (node, fin) in nodes.iter().zip(fins) {
        node.hub.broadcast(fin).unwrap();
    }
    for client in [&a1, &a2, &b1, &b2, &c1] {
        let extra = frames_until(client, &fins);
        assert!(
            extra.is_empty(),
            "client {}: {} frames too many",
            client.id,
            extra.len()
        );
    }
    let c = nodes[2].cluster();
    // C has no member: it published red, and took only the broadcasts in.
    assert_eq!((c.sent, c.received, c.lost), (N as u64 + 2, 2, 0), "{c:?}");

    // B's last member of red leaves: B unsubscribes, and the broker stops sending it red.
    nodes[1].hub.leave(b1.id, "red").unwrap();
    nats.wait_subscribed("hubcast.t.red", 1);
    let before = nodes[1].cluster().received;
    for seq in 0..100 {
        nodes[0]
            .hub
            .publish("red", tagged(0, seq, MSG_LEN))
            .unwrap();
    }
    nodes[0].hub.publish("red", "end red A").unwrap();
    nodes[0].hub.broadcast("fin A").unwrap();
    let frames = frames_until(&a1, &[b"end red A", b"fin A"]);
    assert_complete("a1", &frames, &[0], 100);
    for client in [&b1, &b2] {
        let extra = frames_until(client, &[b"fin A"]);
        assert!(
            extra.is_empty(),
            "client {}: {} frames too many",
            client.id,
            extra.len()
        );
    }
    // Only the broadcast reached B.
    assert_eq!(nodes[1].cluster().received, before + 1);
}

/// Members join and leave on several hubs while two hubs publish to the topic: members
/// there all along get every message of both publishers in order; the others get, of
/// each publisher, an ordered subset with no repeats. One publishing hub's only member
/// comes and goes, so its subscription does too, and its messages go out now with a
/// member there, now without.
#[test]
fn topic_churn_across_hubs_keeps_steady_members_whole() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let mut nodes = nodes(&nats, 3, plain);
    let steady = [nodes[0].join(), nodes[1].join()];
    let churners = [
        (0, nodes[0].join()),
        (1, nodes[1].join()),
        (2, nodes[2].join()),
    ];
    nodes[0].hub.join(steady[0].id, "news").unwrap();
    nodes[1].hub.join(steady[1].id, "news").unwrap();
    nats.wait_subscribed("hubcast.t.news", 2);

    const N: usize = 2_000;
    let nodes = &nodes;
    let publishing = AtomicUsize::new(2);
    let publishing = &publishing;
    thread::scope(|scope| {
        // Stream 0 from A, which always has a member; stream 1 from C, which has one only
        // while a churner of C is in.
        for (stream, node) in [(0, 0), (1, 2)] {
            scope.spawn(move || {
                for seq in 0..N {
                    nodes[node]
                        .hub
                        .publish("news", tagged(stream, seq, MSG_LEN))
                        .unwrap();
                }
                publishing.fetch_sub(1, Ordering::SeqCst);
            });
        }
        // Churning for as long as messages are published, however fast each goes.
        for (node, churner) in &churners {
            let (hub, id) = (&nodes[*node].hub, churner.id);
            scope.spawn(move || {
                while publishing.load(Ordering::SeqCst) > 0 {
                    hub.join(id, "news").unwrap();
                    hub.leave(id, "news").unwrap();
                }
            });
        }
    });
    nodes[0].hub.publish("news", "end A").unwrap();
    nodes[2].hub.publish("news", "end C").unwrap();
    for member in &steady {
        let frames = frames_until(member, &[b"end A", b"end C"]);
        assert_complete(&format!("client {}", member.id), &frames, &[0, 1], N);
    }
    for (node, churner) in &churners {
        // Out of the topic now: a direct message comes after whatever it got.
        nodes[*node].hub.send_to(churner.id, "fin").unwrap();
        let frames: Vec<Vec<u8>> = frames_until(churner, &[b"fin"])
            .into_iter()
            .filter(|f| !f.starts_with(b"end "))
            .collect();
        for (stream, seqs) in by_stream(&frames) {
            assert!(stream < 2, "client {}: stream {stream}", churner.id);
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "client {}: stream {stream} out of order or repeated: {seqs:?}",
                churner.id
            );
        }
    }
    for node in nodes {
        assert_eq!(node.cluster().lost, 0, "{:?}", node.cluster());
    }
    // C's churners have left: C no longer subscribes.
    nats.wait_subscribed("hubcast.t.news", 2);
}

// ---------------------------------------------------------------------------- faults

/// The broker is killed: hubs keep serving their own clients, say they are disconnected
/// and count what they could not propagate; the broker comes back on its port, the hubs
/// reconnect by themselves and messages cross again (none of those lost meanwhile).
#[test]
fn a_killed_broker_is_survived_and_rejoined() {
    if !Nats::available() {
        return;
    }
    let mut nats = Nats::start();
    let mut nodes = nodes(&nats, 2, plain);
    let (a1, b1) = (nodes[0].join(), nodes[1].join());
    nodes[0].hub.broadcast("before").unwrap();
    a1.expect(&[b"before"]);
    b1.expect(&[b"before"]);

    let marks: Vec<usize> = nodes.iter().map(Node::mark).collect();
    nats.kill();
    let mut after_down = Vec::new();
    for (node, mark) in nodes.iter_mut().zip(&marks) {
        after_down.push(node.wait_state(*mark, ClusterState::Disconnected));
        assert!(!node.cluster().connected);
    }

    // Local delivery goes on; what could not reach the other hub is counted.
    const K: usize = 50;
    broadcast_numbered(&nodes[0].hub, 0..K, MSG_LEN);
    a1.expect_numbered(0..K, MSG_LEN);
    nodes[0].wait("the lost messages to be counted", 0, |_, stats| {
        stats.lost == K as u64
    });
    assert_eq!(nodes[0].cluster().sent, 1, "{:?}", nodes[0].cluster());

    nats.restart();
    for (node, mark) in nodes.iter_mut().zip(&after_down) {
        node.wait_state(*mark, ClusterState::Connected);
        let stats = node.cluster();
        assert!(stats.connected && stats.disconnects >= 1, "{stats:?}");
    }
    nats.wait_subscribed(ALL, 2);

    broadcast_numbered(&nodes[0].hub, K..2 * K, MSG_LEN);
    nodes[0].hub.broadcast("end A").unwrap();
    nodes[1].hub.broadcast("from B").unwrap();
    // Each hub's own broadcast comes first or last (it takes no detour through the
    // broker); A's come in order, and B's client never gets those sent while the broker
    // was away.
    for client in [&a1, &b1] {
        let seqs: Vec<usize> = frames_until(client, &[b"end A", b"from B"])
            .iter()
            .map(|frame| seq_of(frame))
            .collect();
        assert_eq!(seqs, (K..2 * K).collect::<Vec<_>>(), "client {}", client.id);
    }
    // `before`, K messages and `end A` crossed; K did not.
    let a = nodes[0].cluster();
    assert_eq!((a.sent, a.lost), (K as u64 + 2, K as u64), "{a:?}");
    assert_eq!(nodes[1].cluster().received, K as u64 + 2);
}

/// A frozen broker (SIGSTOP) keeps its connections open, so only the probe notices:
/// hubs report a partition while their own clients are served; thawed, they report it
/// healed, and what was published meanwhile arrives.
#[test]
fn a_frozen_broker_is_reported_as_a_partition_and_healed() {
    if !Nats::available() {
        return;
    }
    let mut nats = Nats::start();
    let probe = Duration::from_millis(200);
    let mut nodes = nodes(&nats, 2, |c| plain(c.probe_interval(probe)));
    let (a1, b1) = (nodes[0].join(), nodes[1].join());
    for node in &mut nodes {
        // Nothing is reported before the hub is connected: the probe waits for the
        // connections (which take longer than an interval here) and its subscription.
        let first = node.events.seen.iter().find_map(state_of);
        assert_eq!(
            first,
            Some(ClusterState::Connected),
            "{:?}",
            node.events.seen
        );
        // Healthy to begin with: on a loaded machine a probe can be late with no fault.
        node.wait("no partition", 0, |_, stats| !stats.partitioned);
    }

    let marks: Vec<usize> = nodes.iter().map(Node::mark).collect();
    nats.freeze();
    for (node, mark) in nodes.iter_mut().zip(&marks) {
        node.wait("a partition", *mark, |events, stats| {
            stats.partitioned && last_state(events) == Some(ClusterState::Partitioned)
        });
    }
    const K: usize = 20;
    broadcast_numbered(&nodes[0].hub, 0..K, MSG_LEN);
    a1.expect_numbered(0..K, MSG_LEN);
    for node in &nodes {
        let stats = node.cluster();
        // TCP says nothing of a frozen peer.
        assert!(stats.connected && stats.partitioned, "{stats:?}");
    }

    let marks: Vec<usize> = nodes.iter().map(Node::mark).collect();
    nats.thaw();
    for (node, mark) in nodes.iter_mut().zip(&marks) {
        node.wait("the partition to heal", *mark, |events, stats| {
            !stats.partitioned && last_state(events) == Some(ClusterState::Healed)
        });
    }
    nodes[0].hub.broadcast("after").unwrap();
    // Held in the sockets while the broker was frozen, not lost.
    b1.expect_numbered(0..K, MSG_LEN);
    b1.expect(&[b"after"]);
    a1.expect(&[b"after"]);
    for node in &nodes {
        let stats = node.cluster();
        assert_eq!((stats.lost, stats.disconnects), (0, 0), "{stats:?}");
    }
}

/// Numbers are each hub's own (`Protocol::Sequenced`): a client that comes back to its hub
/// resumes with exactly what it missed, other hubs' messages included; one that resumes
/// on another hub is told the epoch differs, and where that hub's stream is.
#[test]
fn a_client_resumes_on_its_own_hub_and_is_refused_elsewhere() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let mut nodes = nodes(&nats, 2, |c| plain(c).protocol(Protocol::Sequenced));
    let words = |line: String| -> Vec<String> { line.split(' ').map(str::to_owned).collect() };

    let (mut first, first_id) = nodes[0].peer();
    let at = words(first.read_text_line());
    assert_eq!(&at[..2], ["#at", "*"], "{at:?}");
    let epoch_a: u64 = at[2].parse().unwrap();
    // From the other hub, numbered by this one as they arrive.
    for i in 1..=3 {
        nodes[1].hub.broadcast(format!("b{i}")).unwrap();
    }
    for i in 1..=3 {
        assert_eq!(first.read_text_line(), format!("{i} b{i}"));
    }
    drop(first);
    nodes[0].events.disconnected(first_id);
    // Missed while away, from both hubs.
    nodes[1].hub.broadcast("b4").unwrap();
    nodes[0].wait("b4 to arrive", 0, |_, stats| stats.received == 4);
    nodes[0].hub.broadcast("a5").unwrap();

    let (mut back, _) = nodes[0].peer();
    back.read_text_line();
    back.write(format!("#resume * {epoch_a} 3\n").as_bytes());
    assert_eq!(back.read_text_line(), format!("#resumed * {epoch_a} 4 5"));
    assert_eq!(back.read_text_line(), "4 b4");
    assert_eq!(back.read_text_line(), "5 a5");

    // On the other hub the position means nothing: refused, with that hub's own (a5
    // counted in it first, so nothing arrives live before the answer).
    nodes[1].wait("a5 to arrive", 0, |_, stats| stats.received == 1);
    let (mut elsewhere, _) = nodes[1].peer();
    let at_b = words(elsewhere.read_text_line());
    let epoch_b: u64 = at_b[2].parse().unwrap();
    assert_ne!(epoch_a, epoch_b);
    elsewhere.write(format!("#resume * {epoch_a} 3\n").as_bytes());
    assert_eq!(
        elsewhere.read_text_line(),
        format!("#noresume * epoch {epoch_b} {}", at_b[3])
    );
}

/// Presence is per hub: each hub tells a topic's members of its own clients only, numbered
/// in its own stream of the topic, while the topic's messages still reach every hub.
#[test]
fn presence_is_per_hub() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let mut nodes = nodes(&nats, 2, |c| {
        plain(c)
            .protocol(Protocol::Sequenced)
            .client_topics(|_| true)
            .topic_options(|_| hubcast::TopicOptions::new().presence(true))
    });
    let (mut a, a_id) = nodes[0].peer();
    let (mut b, b_id) = nodes[1].peer();
    for peer in [&mut a, &mut b] {
        peer.read_text_line();
        peer.write(b"#join @room\n");
        assert!(peer.read_text_line().starts_with("#joined @room "));
    }
    let members = |peer: &mut Peer| peer.read_text_line();
    assert!(members(&mut a).ends_with(&format!(" all 1 c:{}", a_id.as_u64())));
    assert!(members(&mut b).ends_with(&format!(" all 1 c:{}", b_id.as_u64())));
    nats.wait_subscribed("hubcast.t.room", 2);
    // A message from B's hub reaches A; no presence line of B's hub comes before it.
    nodes[1].hub.publish("room", "from b").unwrap();
    let line = a.read_text_line();
    assert!(line.ends_with("@room from b"), "{line}");
    a.write(b"#who @room\n");
    assert!(a
        .read_text_line()
        .ends_with(&format!(" all 1 c:{}", a_id.as_u64())));
    let listed = |i: usize| -> Vec<_> {
        nodes[i]
            .hub
            .members("room")
            .into_iter()
            .map(|m| m.client)
            .collect()
    };
    assert_eq!((listed(0), listed(1)), (vec![a_id], vec![b_id]));
}

/// A soak: three hubs, each broadcasting numbered messages at a steady pace, while clients
/// come and go on every hub. The clients that stay get every hub's messages once and each
/// hub's in order; every hub counts them exactly; nothing is lost on the way.
#[test]
fn a_cluster_soak_with_client_churn_on_every_hub() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let mut nodes = nodes(&nats, 3, plain);
    let steady: Vec<Vec<Healthy>> = nodes
        .iter_mut()
        .map(|node| vec![node.join(), node.join()])
        .collect();
    const N: usize = 3_000;
    const CHURN: usize = 150;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.hub.local_addr()).collect();
    let hubs: Vec<&Hub> = nodes.iter().map(|n| &n.hub).collect();
    thread::scope(|scope| {
        for (stream, hub) in hubs.iter().enumerate() {
            scope.spawn(move || {
                for seq in 0..N {
                    hub.broadcast(tagged(stream, seq, MSG_LEN)).unwrap();
                    if seq % 50 == 49 {
                        // Paced, so the churn below happens while messages flow.
                        thread::yield_now();
                    }
                }
            });
        }
        for addr in &addrs {
            let addr = *addr;
            scope.spawn(move || {
                for i in 0..CHURN {
                    let mut peer = Peer::connect(addr);
                    // Some read a little, some leave at once, some reset.
                    match i % 3 {
                        0 => {
                            let _ = peer.read_line_within(Duration::from_millis(50));
                        }
                        1 => {}
                        _ => peer.reset(),
                    }
                }
            });
        }
    });
    let markers: Vec<String> = (0..3).map(|i| format!("end {i}")).collect();
    for (i, node) in nodes.iter().enumerate() {
        node.hub.broadcast(&markers[i]).unwrap();
    }
    let markers: Vec<&[u8]> = markers.iter().map(|m| m.as_bytes()).collect();
    for (h, clients) in steady.iter().enumerate() {
        for client in clients {
            let frames = frames_until(client, &markers);
            assert_complete(
                &format!("hub {h}, client {}", client.id),
                &frames,
                &[0, 1, 2],
                N,
            );
        }
    }
    let per_hub = N as u64 + 1;
    for node in &mut nodes {
        node.wait("every hub's messages", 0, |_, stats| {
            stats.sent == per_hub && stats.received == 2 * per_hub
        });
        let stats = node.cluster();
        assert_eq!(
            (stats.lost, stats.slow_consumer, stats.disconnects),
            (0, 0, 0),
            "{stats:?}"
        );
    }
}

/// Two brokers joined by a route: a hub on each, broadcasts cross both ways.
#[test]
fn hubs_on_two_routed_brokers_share_broadcasts() {
    if !Nats::available() {
        return;
    }
    let cluster = [
        "--cluster",
        "nats://127.0.0.1:-1",
        "--cluster_name",
        "hubcast-test",
    ];
    let first = Nats::start_with(&cluster);
    let route = first.route_url();
    let mut second_args = cluster.to_vec();
    second_args.extend(["--routes", &route]);
    let second = Nats::start_with(&second_args);

    let (mut a, mut b) = (Node::on(&first), Node::on(&second));
    a.wait_connected();
    b.wait_connected();
    // Each broker knows of the other hub's subscription through the route.
    first.wait_route_interest(ALL);
    second.wait_route_interest(ALL);

    let (a1, b1) = (a.join(), b.join());
    const N: usize = 1_000;
    for seq in 0..N {
        a.hub.broadcast(tagged(0, seq, MSG_LEN)).unwrap();
        b.hub.broadcast(tagged(1, seq, MSG_LEN)).unwrap();
    }
    a.hub.broadcast("end A").unwrap();
    b.hub.broadcast("end B").unwrap();
    for client in [&a1, &b1] {
        let frames = frames_until(client, &[b"end A", b"end B"]);
        assert_complete(&format!("client {}", client.id), &frames, &[0, 1], N);
    }
    for node in [&a, &b] {
        let stats = node.cluster();
        assert_eq!((stats.received, stats.lost), (N as u64 + 1, 0), "{stats:?}");
    }
}

/// A hub given several URLs connects through one that answers, whichever is first.
#[test]
fn a_hub_given_several_urls_connects_through_a_live_one() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    // A port nothing listens on any more (the OS chose it, then it was closed).
    let closed = std::net::TcpListener::bind(LOCAL)
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = format!("nats://{closed}");
    let mut a = Node::start(plain(Cluster::nats([dead.clone(), nats.url()])));
    let mut b = Node::start(plain(Cluster::nats([nats.url(), dead])));
    a.wait_connected();
    b.wait_connected();
    nats.wait_subscribed(ALL, 2);
    let b1 = b.join();
    a.hub.broadcast("across").unwrap();
    b1.expect(&[b"across"]);
}

// ------------------------------------------------------------------------------ kinds

/// A message's kind crosses the backplane (a one-letter NATS header): a WebSocket client
/// on hub B gets what a WebSocket client on hub A sent, and what A's host broadcast and
/// published (to a topic with no member on A), each in a frame of its kind. A binary
/// message that is UTF-8, empty or ASCII, stays binary; plain bytes keep the guess.
#[cfg(feature = "websocket")]
#[test]
fn kinds_cross_the_backplane() {
    use hubcast::{Message, Transport};
    use tungstenite::Message as Ws;
    use util::{next_message, ws_join};

    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let mut nodes = nodes(&nats, 2, |c| {
        plain(c)
            .relay(Relay::Others)
            .listen(LOCAL, Transport::WebSocket)
    });
    let (mut alice, _) = {
        let a = &mut nodes[0];
        ws_join(&a.hub, &mut a.events)
    };
    let (mut bob, bob_id) = {
        let b = &mut nodes[1];
        ws_join(&b.hub, &mut b.events)
    };

    let relayed = [
        Ws::binary(Vec::new()),
        Ws::binary(b"**".to_vec()),
        Ws::text("t"),
        Ws::binary(vec![0xff]),
        Ws::binary(vec![b'*'; 8 * 1024]),
    ];
    for message in &relayed {
        alice.send(message.clone()).unwrap();
    }
    for message in &relayed {
        assert_eq!(&next_message(&mut bob), message, "relayed across");
    }

    let a = &nodes[0].hub;
    a.broadcast(Message::binary(&b"##"[..])).unwrap();
    a.broadcast(Message::text("text")).unwrap();
    a.broadcast("plain").unwrap();
    assert_eq!(next_message(&mut bob), Ws::binary(b"##".to_vec()));
    assert_eq!(next_message(&mut bob), Ws::text("text"));
    assert_eq!(next_message(&mut bob), Ws::text("plain"));

    nodes[1].hub.join(bob_id, "room").unwrap();
    nats.wait_subscribed("hubcast.t.room", 1);
    let a = &nodes[0].hub;
    a.publish("room", Message::binary(&b""[..])).unwrap();
    a.publish("room", Message::text("pub")).unwrap();
    a.publish("room", vec![0xfe]).unwrap();
    assert_eq!(next_message(&mut bob), Ws::binary(Vec::new()));
    assert_eq!(next_message(&mut bob), Ws::text("pub"));
    assert_eq!(next_message(&mut bob), Ws::binary(vec![0xfe]));
}

// -------------------------------------------------------------------------- settings

/// The error `bind` gives for these settings, which must be `Error::Config`.
fn config_error(cluster: Cluster) -> String {
    match Hub::builder().cluster(cluster).bind(LOCAL) {
        Err(Error::Config(text)) => text,
        Ok(_) => panic!("bound with bad cluster settings"),
        Err(other) => panic!("expected Error::Config, got {other:?}"),
    }
}

/// Settings the hub can tell are wrong fail `bind` with `Error::Config` saying which.
#[test]
fn bad_cluster_settings_are_config_errors() {
    // No server is contacted: `bind` fails first.
    let url = "nats://127.0.0.1:4222";
    let text = config_error(Cluster::nats(Vec::<String>::new()));
    assert!(text.contains("URL"), "{text}");
    for prefix in ["a..b", "a b", "*", ">", "a.*", "", ".a", "a.", "ü"] {
        let text = config_error(Cluster::nats([url]).prefix(prefix));
        assert!(text.contains(&format!("{prefix:?}")), "{prefix:?}: {text}");
    }
    for url in ["", " "] {
        let text = config_error(Cluster::nats([url]));
        assert!(text.contains("empty"), "{url:?}: {text}");
    }
    // Files the connection could not read or use, and a seed it could not parse.
    let missing = "/nonexistent/hubcast-test";
    let directory = env!("CARGO_MANIFEST_DIR");
    let not_creds = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for (cluster, says) in [
        (Cluster::nats([url]).credentials_file(missing), missing),
        (Cluster::nats([url]).credentials_file(directory), directory),
        (Cluster::nats([url]).credentials_file(not_creds), not_creds),
        (Cluster::nats([url]).root_certificates(missing), missing),
        (
            Cluster::nats([url]).client_certificate(missing, missing),
            missing,
        ),
        (Cluster::nats([url]).nkey("notaseed"), "nkey"),
    ] {
        let text = config_error(cluster);
        assert!(text.contains(says), "{says}: {text}");
        assert!(
            !text.contains("notaseed"),
            "the seed is never shown: {text}"
        );
    }
    // A topic's subject must fit in the broker's control line.
    let long_topics = Hub::builder()
        .max_topic_len(2000)
        .cluster(Cluster::nats([url]))
        .bind(LOCAL);
    match long_topics {
        Err(Error::Config(text)) => assert!(text.contains("max_topic_len"), "{text}"),
        other => panic!("expected Error::Config, got {other:?}"),
    }
    // One that fits binds (to a port of the test's that never answers).
    let silent = std::net::TcpListener::bind(LOCAL).unwrap();
    let silent_url = format!("nats://{}", silent.local_addr().unwrap());
    drop(
        Hub::builder()
            .max_topic_len(1000)
            .cluster(Cluster::nats([silent_url]))
            .bind(LOCAL)
            .unwrap(),
    );
    for interval in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(9),
    ] {
        let text = config_error(Cluster::nats([url]).probe_interval(interval));
        assert!(text.contains("probe interval"), "{interval:?}: {text}");
    }
}

/// Probe intervals at the ends of the range taken neither panic nor stop the node: one
/// too long to represent means the node never probes again (it reports nothing but
/// `Connected`); the shortest probes every 2.5 ms (on a loaded machine it may report
/// late probes as a partition, which is what it asked for). Broadcasts cross both ways
/// and both nodes stay connected.
#[test]
fn extreme_probe_intervals_are_taken() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    for interval in [Duration::MAX, Duration::from_millis(10)] {
        let mut nodes = nodes(&nats, 2, |c| plain(c.probe_interval(interval)));
        let a = nodes[0].join();
        let b = nodes[1].join();
        for round in 0..3 {
            nodes[0].hub.broadcast(format!("from 0, {round}")).unwrap();
            nodes[1].hub.broadcast(format!("from 1, {round}")).unwrap();
            let from_0 = format!("from 0, {round}");
            let from_1 = format!("from 1, {round}");
            for client in [&a, &b] {
                let got = frames_until(client, &[from_0.as_bytes(), from_1.as_bytes()]);
                assert!(got.is_empty(), "{interval:?}: unexpected frames {got:?}");
            }
        }
        for node in &nodes {
            let stats = node.cluster();
            assert!(stats.connected, "{interval:?}: {stats:?}");
            assert_eq!(stats.lost, 0, "{interval:?}: {stats:?}");
            assert!(!node.hub.is_closed(), "{interval:?}");
            if interval == Duration::MAX {
                let states: Vec<_> = node.events.seen.iter().filter_map(state_of).collect();
                assert_eq!(states, [ClusterState::Connected], "{interval:?}");
            }
        }
        for node in nodes {
            node.hub.shutdown(TIMEOUT).unwrap();
        }
    }
}

/// A URL no NATS client can use fails `bind`, naming it, instead of a hub that never
/// joins its cluster.
#[test]
fn a_malformed_url_is_a_config_error() {
    for url in [
        "nats://127.0.0.1:99999",
        "http://127.0.0.1:4222",
        "nats://[::1",
        "::::",
    ] {
        let text = within("bind with a malformed URL", TIMEOUT, move || {
            config_error(Cluster::nats([url]))
        });
        assert!(text.contains(url), "{url}: {text}");
    }
}

// -------------------------------------------------------------------------- shutdown

/// `shutdown` of a clustered hub returns promptly, delivers what was queued, and closes
/// the hub's connections to the broker.
#[test]
fn shutdown_is_prompt_with_the_broker_up() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let mut node = Node::on(&nats);
    node.wait_connected();
    nats.wait_connections(2);
    let client = node.join();
    broadcast_numbered(&node.hub, 0..100, MSG_LEN);
    client.expect_numbered(0..100, MSG_LEN);
    let hub = Arc::new(node.hub);
    let report = within("shutdown", Duration::from_secs(5), move || {
        hub.shutdown(Duration::from_millis(500))
    })
    .expect("shutdown");
    assert!(report.is_complete(), "{report:?}");
    nats.wait_connections(0);
}

/// With no broker to talk to (a port that takes the connection and never answers),
/// `shutdown(ZERO)` does not wait for one: the backplane gives up at once, not after its
/// one second for a broker that takes nothing, and what was broadcast meanwhile is
/// counted as lost. (The bound is the one second the old code always slept.)
#[test]
fn shutdown_does_not_wait_for_a_broker_that_is_away() {
    let silent = std::net::TcpListener::bind(LOCAL).unwrap();
    let url = format!("nats://{}", silent.local_addr().unwrap());
    let hub = Hub::builder()
        .cluster(Cluster::nats([url]))
        .bind(LOCAL)
        .unwrap();
    for i in 0..10 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    let started = Instant::now();
    let report = hub.shutdown(Duration::ZERO).expect("shutdown");
    let took = started.elapsed();
    assert!(report.is_complete(), "{report:?}");
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    let stats = hub.stats().cluster;
    assert_eq!((stats.sent, stats.lost), (0, 10), "{stats:?}");
}

/// With the broker frozen and more queued for it than it will ever take, `shutdown`
/// still returns promptly, and every message is counted as sent or lost.
#[test]
fn shutdown_is_prompt_with_the_broker_frozen() {
    if !Nats::available() {
        return;
    }
    let mut nats = Nats::start();
    let mut node = Node::on(&nats);
    node.wait_connected();
    nats.wait_connections(2);
    nats.freeze();
    // More than the socket buffers and the NATS client's queue hold, until the hub's
    // buffer for the broker overflows: the backplane is stuck on the frozen broker when
    // the shutdown begins.
    let big = vec![b'x'; 16 * 1024];
    let mut broadcasts = 0;
    let hub = &node.hub;
    node.events
        .wait_until("the buffer for the broker to overflow", || {
            for _ in 0..64 {
                hub.broadcast(&big).unwrap();
            }
            broadcasts += 64;
            hub.stats().cluster.lost > 0
        });
    let hub = Arc::new(node.hub);
    let stopping = Arc::clone(&hub);
    within("shutdown", Duration::from_secs(5), move || {
        stopping.shutdown(Duration::from_millis(500))
    })
    .expect("shutdown");
    let stats = hub.stats().cluster;
    assert_eq!(stats.sent + stats.lost, broadcasts, "{stats:?}");
    assert!(!stats.connected, "{stats:?}");
    nats.thaw();
    nats.wait_connections(0);
}

type Slot = Arc<OnceLock<Weak<Hub>>>;

/// The last handle to a clustered hub dropped inside its own closure, on its dispatcher
/// thread: the hub shuts itself down, and its backplane ends and leaves the broker.
#[test]
fn a_clustered_hub_dropped_in_its_own_closure_shuts_down() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let slot: Slot = Arc::default();
    let (holding_tx, holding) = mpsc::channel();
    let (dropped, dropped_rx) = mpsc::channel::<()>();
    let (holding_tx, dropped_rx) = (Mutex::new(holding_tx), Mutex::new(dropped_rx));
    let hub = {
        let slot = Arc::clone(&slot);
        Hub::builder()
            .cluster(Cluster::nats([nats.url()]))
            .accept_filter(move |_| {
                // Holds the hub while the host drops its own handle, so that the last
                // handle goes here, on the dispatcher thread.
                if let Some(hub) = slot.get().and_then(Weak::upgrade) {
                    holding_tx.lock().unwrap().send(()).unwrap();
                    let _ = dropped_rx.lock().unwrap().recv_timeout(TIMEOUT);
                    drop(hub);
                }
                true
            })
            .bind(LOCAL)
            .unwrap()
    };
    let hub = Arc::new(hub);
    slot.set(Arc::downgrade(&hub)).unwrap();
    let mut events = EventLog::subscribe(&hub);
    events.wait_until("the cluster connection", || hub.stats().cluster.connected);
    nats.wait_connections(2);
    let mut peer = Peer::connect(hub.local_addr());
    holding
        .recv_timeout(TIMEOUT)
        .expect("the accept filter ran");
    drop(hub);
    dropped.send(()).unwrap();
    peer.expect_closed();
    events.until_end();
    nats.wait_connections(0);
}

/// A clustered hub dropped by the thread that reads its events, as soon as the cluster
/// is up: the drop returns promptly and the events end.
#[test]
fn a_clustered_hub_dropped_from_its_subscriber_thread() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let hub = Hub::builder()
        .cluster(Cluster::nats([nats.url()]))
        .bind(LOCAL)
        .unwrap();
    let events = hub.subscribe();
    let dropped = within("the subscriber's drop", TIMEOUT, move || {
        use hubcast::RecvTimeoutError::{Closed, Timeout};
        let mut hub = Some(hub);
        let mut took = None;
        loop {
            // Woken by each event, and every PACE without one: the `Connected` event may
            // have been emitted before this subscription was.
            match events.recv_timeout(PACE) {
                Ok(_) | Err(Timeout) => {}
                Err(Closed) => return took,
                Err(other) => panic!("{other:?}"),
            }
            if hub.as_ref().is_some_and(|h| h.stats().cluster.connected) {
                let hub = hub.take().expect("held");
                let started = Instant::now();
                drop(hub);
                took = Some(started.elapsed());
            }
        }
    });
    let took = dropped.expect("the hub connected and was dropped");
    assert!(took < Duration::from_secs(5), "drop took {took:?}");
    nats.wait_connections(0);
}

// -------------------------------------------------------------------------- example

/// Starts `cluster_chat` against `nats` and returns it with its address, once it says it
/// has joined the cluster.
fn cluster_chat(nats: &Nats) -> (ChildProcess, SocketAddr) {
    let mut command = Command::new(example_path("cluster_chat"));
    command.args(["--nats", &nats.url(), "--prefix", "chat", LOCAL]);
    let mut chat = ChildProcess::spawn(command);
    let line = chat.next_line();
    let addr: SocketAddr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"))
        .parse()
        .expect("a socket address");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    assert_eq!(chat.next_line(), "joined the cluster");
    (chat, addr)
}

/// Two `cluster_chat` processes on one broker: a line typed by a client of one reaches
/// a client of the other; both exit with status 0 on SIGTERM.
#[test]
fn cluster_chat_relays_between_processes_and_exits_on_sigterm() {
    if !Nats::available() {
        return;
    }
    let nats = Nats::start();
    let (mut one, one_addr) = cluster_chat(&nats);
    let (mut two, two_addr) = cluster_chat(&nats);
    nats.wait_subscribed("chat.all", 2);

    let mut alice = Peer::connect(one_addr);
    let mut bob = Peer::connect(two_addr);
    // Neither process reports its clients, so bob pings until alice hears one: then bob
    // is in (his line was read), alice is in (she got it) and the way across works. The
    // read window only sets how often bob pings.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "alice never heard bob");
        bob.write(b"ping\n");
        if let Some(line) = alice.read_line_within(Duration::from_millis(250)) {
            assert_eq!(line, b"ping");
            break;
        }
    }
    alice.write(b"hello from alice\n");
    // Relay::Others and no echo from the broker: bob gets alice's line, none of his own.
    assert_eq!(bob.read_line(), b"hello from alice");

    for chat in [&mut one, &mut two] {
        chat.signal(libc::SIGTERM);
        let status = chat.wait();
        assert!(
            status.success(),
            "cluster_chat exited with {status}; its stderr:\n{}",
            chat.stderr()
        );
        // Logged once, by the hub: the example no longer logs it again.
        let stderr = chat.stderr();
        assert_eq!(stderr.matches("cluster: Connected").count(), 1, "{stderr}");
    }
}
