//! File-descriptor exhaustion. The test binary runs itself again as a child process with
//! `RLIMIT_NOFILE` lowered to 64, where a hub serves clients that this (parent) process
//! connects with its normal limit. The child reports what its hub sees on stdout and
//! takes commands on stdin, one line each way.
//!
//! At the limit the hub must keep serving the clients it has, shed the connections it has
//! no descriptor for (they are closed, not left hanging), not spin, and accept again once
//! clients leave.
//!
//! Kept alone in its binary so no other test's sockets share the child's descriptors.

// `setrlimit` and `getrusage` are FFI calls, unsafe by definition; they only touch this
// (child) process's own limit and counters.
#![allow(unsafe_code)]

mod util;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use hubcast::{DisconnectReason, Framing, Hub};
use util::{assert_stats_add_up, ChildProcess, EventLog, Peer, LOCAL, TIMEOUT};

const TEST_NAME: &str = "hub_keeps_serving_at_the_fd_limit";
/// Set in the child's environment: run the hub side.
const CHILD_ENV: &str = "HUBCAST_FD_CHILD";
/// What marks the child's lines to the parent (libtest writes to stdout too).
const TAG: &str = "HUBCAST ";
const FD_LIMIT: u64 = 64;
/// Connections the parent opens at first: far more than 64 descriptors allow.
const CLIENTS: usize = 100;
/// Connections opened while the hub is at its limit.
const LATE: usize = 20;
/// Clients the parent closes to give the hub room again.
const LEAVERS: usize = 10;
/// The least wall time over which the child measures its CPU use while saturated.
const WINDOW: Duration = Duration::from_secs(1);
/// CPU time over wall time during that window above which the hub is spinning. A busy
/// loop uses a whole core (1.0), or at least about half of one on a loaded two-core
/// machine; the idle hub uses a few milliseconds.
const SPIN: f64 = 0.25;

#[test]
fn hub_keeps_serving_at_the_fd_limit() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
    } else {
        parent();
    }
}

// ---------------------------------------------------------------- the child: the hub side

fn child() {
    set_fd_limit(FD_LIMIT);
    let hub = Hub::builder().bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let commands = stdin_lines();
    println!("{TAG}addr {}", hub.local_addr());

    // Round 1: the parent connects CLIENTS clients; each is either a client or shed.
    let made: usize = command(&commands, "connected").parse().expect("count");
    account_for(&hub, &mut events, made);
    hub.broadcast("hello 1").expect("broadcast");
    report(&hub, "round 1");

    // Round 2, at the limit: more connections arrive. Measure CPU use meanwhile.
    let (start, cpu_start) = (Instant::now(), cpu_time());
    let made: usize = command(&commands, "connected").parse().expect("count");
    account_for(&hub, &mut events, made);
    hub.broadcast("hello 2").expect("broadcast");
    report(&hub, "round 2");
    command(&commands, "checked");
    // Nothing comes from the parent until this child has reported its CPU use: this only
    // stretches the measuring window to its length.
    while start.elapsed() < WINDOW {
        let _ = commands.recv_timeout(WINDOW - start.elapsed());
    }
    let (wall, cpu) = (start.elapsed(), cpu_time() - cpu_start);
    println!(
        "{TAG}cpu {} ms over {} ms",
        cpu.as_millis(),
        wall.as_millis()
    );
    assert!(
        cpu.as_secs_f64() < SPIN * wall.as_secs_f64(),
        "the hub is spinning at the fd limit: {cpu:?} CPU in {wall:?}"
    );

    // Round 3: some clients leave; the hub accepts again.
    let left: u64 = command(&commands, "closed").parse().expect("count");
    events.wait_until("the leavers to be noticed", || {
        hub.stats().disconnects(DisconnectReason::PeerClosed) == left
    });
    println!("{TAG}noticed");
    let made: usize = command(&commands, "connected").parse().expect("count");
    account_for(&hub, &mut events, made);
    hub.broadcast("hello 3").expect("broadcast");
    report(&hub, "round 3");

    command(&commands, "done");
    assert_stats_add_up(&hub, &[(DisconnectReason::PeerClosed, left)]);
    hub.shutdown(Duration::from_secs(5)).expect("shutdown");
    println!("{TAG}done");
}

fn set_fd_limit(limit: u64) {
    let mut rlim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain FFI calls with a valid pointer to a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim), 0);
        rlim.rlim_cur = limit.min(rlim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rlim), 0);
    }
}

/// User plus system CPU time of the whole process, every thread included.
fn cpu_time() -> Duration {
    // SAFETY: `rusage` is plain data, valid when zeroed; getrusage fills it in.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Stdin lines, read on a thread so that waits for them have deadlines.
fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for the parent's command `name` and returns its argument.
fn command(commands: &Receiver<String>, name: &str) -> String {
    let line = commands
        .recv_timeout(TIMEOUT)
        .unwrap_or_else(|e| panic!("no '{name}' from the parent: {e}"));
    let (got, arg) = line.split_once(' ').unwrap_or((&line, ""));
    assert_eq!(got, name, "unexpected command {line:?}");
    arg.to_owned()
}

/// Waits until every one of the `made` connections the parent opened has been taken in or
/// shed: none may be left waiting in the backlog.
fn account_for(hub: &Hub, events: &mut EventLog, made: usize) {
    let deadline = Instant::now() + TIMEOUT;
    events.wait_until("every connection to be accepted or shed", || {
        let stats = hub.stats();
        let done = stats.accepted + stats.refused == made as u64;
        assert!(
            done || Instant::now() < deadline,
            "{made} connections made, but neither accepted nor shed: {} left waiting, {stats:#?}",
            made as u64 - stats.accepted - stats.refused
        );
        done
    });
}

fn report(hub: &Hub, round: &str) {
    let stats = hub.stats();
    println!(
        "{TAG}{round} {} {} {}",
        stats.connected, stats.refused, stats.accept_errors
    );
}

// ---------------------------------------------------------------- the parent: the clients

/// The child, running the hub side: commands go to its stdin, and its lines (marked with
/// [`TAG`], since libtest writes to stdout too) come back.
struct HubChild(ChildProcess);

impl HubChild {
    fn spawn() -> HubChild {
        let exe = std::env::current_exe().expect("test binary");
        let mut command = Command::new(exe);
        command
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1");
        HubChild(ChildProcess::spawn(command))
    }

    fn send(&mut self, line: &str) {
        self.0.send_line(line);
    }

    /// The child's next tagged line, which must start with `what`; returns the rest.
    fn expect(&mut self, what: &str) -> String {
        let line = loop {
            let line = self.0.next_line();
            // libtest may have begun the line with "test name ... ".
            if let Some(at) = line.find(TAG) {
                break line[at + TAG.len()..].to_owned();
            }
        };
        match line.strip_prefix(what) {
            Some(rest) => rest.trim().to_owned(),
            None => panic!(
                "expected '{what}' from the child, got {line:?}; its stderr:\n{}",
                self.0.stderr()
            ),
        }
    }

    /// The counts the child reported for a round: (connected, refused, accept_errors).
    fn round(&mut self, name: &str) -> (usize, usize, u64) {
        let rest = self.expect(name);
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().expect("number"))
            .collect();
        (fields[0] as usize, fields[1] as usize, fields[2])
    }
}

/// Reads one line from each client: the served ones must get `hello`, the others must have
/// been closed. Returns the served ones and how many were closed.
fn sort_out(clients: Vec<Peer>, hello: &str) -> (Vec<Peer>, usize) {
    let mut served = Vec::new();
    let mut closed = 0;
    for mut client in clients {
        // A connection neither served nor closed fails the test here, after a timeout.
        match client.next_frame(Framing::Lines) {
            Some(line) => {
                assert_eq!(line, hello.as_bytes());
                served.push(client);
            }
            None => closed += 1,
        }
    }
    (served, closed)
}

fn parent() {
    let mut child = HubChild::spawn();
    let addr: SocketAddr = child.expect("addr").parse().expect("address");

    // Round 1: many more connections than the child has descriptors.
    let clients: Vec<Peer> = (0..CLIENTS).map(|_| Peer::connect(addr)).collect();
    child.send(&format!("connected {CLIENTS}"));
    let (connected, refused, errors) = child.round("round 1");
    let (served, closed) = sort_out(clients, "hello 1");
    let held = format!("{connected} clients held, {refused} shed, {errors} accept errors");
    assert_eq!((served.len(), closed), (connected, refused), "{held}");
    assert!(
        connected >= 20,
        "the hub held only {connected} clients: {held}"
    );
    assert!(refused > 0 && errors > 0, "nothing was shed: {held}");

    // Round 2: still at the limit, more connections; the child measures its CPU use.
    let mut clients = served;
    clients.extend((0..LATE).map(|_| Peer::connect(addr)));
    child.send(&format!("connected {}", CLIENTS + LATE));
    let (connected, refused_now, _) = child.round("round 2");
    let (served, closed) = sort_out(clients, "hello 2");
    assert_eq!((served.len(), closed), (connected, refused_now - refused));
    child.send("checked");
    child.expect("cpu");

    // Round 3: some clients leave, and a newcomer is served.
    let mut clients = served;
    clients.truncate(clients.len() - LEAVERS);
    child.send(&format!("closed {LEAVERS}"));
    child.expect("noticed");
    clients.push(Peer::connect(addr));
    child.send(&format!("connected {}", CLIENTS + LATE + 1));
    let (connected, refused_last, _) = child.round("round 3");
    assert_eq!(refused_last, refused_now, "the newcomer was shed");
    let (served, closed) = sort_out(clients, "hello 3");
    assert_eq!((served.len(), closed), (connected, 0));

    child.send("done");
    child.expect("done");
    let status = child.0.wait();
    assert!(status.success(), "child failed: {}", child.0.stderr());
}
