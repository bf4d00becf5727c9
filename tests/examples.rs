//! Smoke test of `examples/chat_server.rs`: it starts, relays a line between two clients
//! and exits cleanly on SIGTERM.

#[path = "util_old/mod.rs"]
mod util;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use util::{Peer, TIMEOUT};

/// `target/<profile>/examples/<name>`, found from this test binary, which runs as
/// `target/<profile>/deps/examples-<hash>`. `cargo test` builds the examples there.
fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} not found: is examples/{name}.rs missing?",
        path.display()
    );
    path
}

/// A running child process. Its exit status arrives on `exited` from a thread blocked in
/// `wait`; dropping the guard before that kills it, so a failing test leaves nothing
/// running.
struct ChildGuard {
    pid: libc::pid_t,
    exited: Receiver<std::io::Result<ExitStatus>>,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    fn new(mut child: Child) -> ChildGuard {
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        let (tx, exited) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        ChildGuard {
            pid,
            exited,
            status: None,
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if self.status.is_none() && self.exited.is_empty() {
            // The child has not been reaped (its status is not in the channel), so the pid
            // is still its own.
            assert_eq!(kill(self.pid, signal), 0, "kill({}, {signal})", self.pid);
        }
    }

    /// Waits at most `timeout` for the child to exit.
    fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(status) = self.exited.recv_timeout(timeout) {
                self.status = Some(status.expect("wait for the child"));
            }
        }
        self.status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.wait_timeout(TIMEOUT);
        }
    }
}

#[allow(unsafe_code)]
fn kill(pid: libc::pid_t, signal: libc::c_int) -> libc::c_int {
    // SAFETY: kill(2) takes no pointers; `pid` is a child of ours not yet reaped.
    unsafe { libc::kill(pid, signal) }
}

/// Reads one line from the child's stdout, with a timeout (a thread does the blocking
/// read).
fn first_stdout_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut line = String::new();
        let result = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(result);
    });
    rx.recv_timeout(TIMEOUT)
        .expect("no line on stdout in time")
        .expect("reading the child's stdout")
}

#[test]
fn chat_server_relays_between_clients_and_exits_on_sigterm() {
    let mut child = Command::new(example_path("chat_server"))
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn chat_server");
    let line = first_stdout_line(&mut child);
    let mut guard = ChildGuard::new(child);

    let addr: SocketAddr = line
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix("listening on "))
        .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"))
        .parse()
        .expect("a socket address");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);

    // The server reports no connections, so make sure both are registered before the
    // real message: bob pings until alice hears one (relayed to alice, so alice is in;
    // read by the server, so bob is in). The short read window only sets how often bob
    // pings; a slow machine just pings more often.
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
    // Relay::Others: bob gets alice's line, and none of his own pings.
    assert_eq!(bob.read_line(), b"hello from alice");

    guard.signal(libc::SIGTERM);
    let status = guard
        .wait_timeout(TIMEOUT)
        .expect("chat_server did not exit after SIGTERM");
    assert!(status.success(), "chat_server exited with {status}");
}
