//! Smoke test of `examples/chat_server.rs`: it starts, relays a line between two clients
//! and exits cleanly on SIGTERM.

mod util;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use util::{ChildProcess, Peer, LOCAL, TIMEOUT};

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

#[test]
fn chat_server_relays_between_clients_and_exits_on_sigterm() {
    let mut command = Command::new(example_path("chat_server"));
    command.arg(LOCAL);
    let mut server = ChildProcess::spawn(command);
    let line = server.next_line();
    let addr: SocketAddr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"))
        .parse()
        .expect("a socket address");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);

    // The server reports no connections, so make sure both are registered before the
    // real message: bob pings until alice hears one (relayed to alice, so alice is in;
    // read by the server, so bob is in). The read window only sets how often bob pings; a
    // slow machine just pings more often.
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

    server.signal(libc::SIGTERM);
    let status = server.wait();
    assert!(
        status.success(),
        "chat_server exited with {status}; its stderr:\n{}",
        server.stderr()
    );
}
