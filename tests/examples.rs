//! Smoke tests of the chat examples, each run as `cargo run --example` would: it starts on
//! port 0, says where it listens, chats between clients, and exits cleanly on SIGTERM.
//!
//! - `chat_server`: a line reaches the other client.
//! - `rooms`: clients start in `lobby`, chat there, and one that moves to another room
//!   hears nothing more of `lobby`; all over plain lines, as with `nc`.
//! - `ws_chat_server` (feature `websocket`): an `nc`-like client and a WebSocket client
//!   meet in `lobby` and chat both ways.

mod util;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use util::{example_path, ChildProcess, Peer, LOCAL, TIMEOUT};

/// Starts example `name` with `args`; the child process is killed if the test fails.
fn start(name: &str, args: &[&str]) -> ChildProcess {
    let mut command = Command::new(example_path(name));
    command.args(args);
    ChildProcess::spawn(command)
}

/// Reads the example's next stdout line, `<prefix>ADDR<suffix>`, and returns ADDR: a
/// loopback address with the port the OS chose.
fn listening(server: &mut ChildProcess, prefix: &str, suffix: &str) -> SocketAddr {
    let line = server.next_line();
    let addr: SocketAddr = line
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("expected `{prefix}ADDR{suffix}`, got {line:?}"))
        .parse()
        .expect("a socket address");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    addr
}

/// Sends SIGTERM and expects the example to exit with success.
fn stops_on_sigterm(mut server: ChildProcess) {
    server.signal(libc::SIGTERM);
    let status = server.wait();
    assert!(
        status.success(),
        "the example exited with {status}; its stderr:\n{}",
        server.stderr()
    );
}

#[test]
fn chat_server_relays_between_clients_and_exits_on_sigterm() {
    let mut server = start("chat_server", &[LOCAL]);
    let addr = listening(&mut server, "listening on ", "");

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

    stops_on_sigterm(server);
}

/// The words of the peer's next line.
fn words(peer: &mut Peer) -> Vec<String> {
    peer.read_text_line()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

/// Reads `#at * <epoch> 0`: the hub-wide stream starts for the client, and nothing has
/// been broadcast.
fn expect_at(peer: &mut Peer) {
    let line = words(peer);
    assert!(
        line.len() == 4 && line[..2] == ["#at", "*"] && line[3] == "0",
        "{line:?}"
    );
}

/// Reads `#joined @<room> <epoch> <seq>` and returns the epoch and seq.
fn expect_joined(peer: &mut Peer, room: &str) -> (u64, u64) {
    let line = words(peer);
    assert!(
        line.len() == 4 && line[0] == "#joined" && line[1] == format!("@{room}"),
        "expected #joined @{room}, got {line:?}"
    );
    (
        line[2].parse().expect("epoch"),
        line[3].parse().expect("seq"),
    )
}

#[test]
fn rooms_keeps_rooms_apart_and_exits_on_sigterm() {
    let mut server = start("rooms", &[LOCAL]);
    let addr = listening(&mut server, "listening on ", "");

    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);
    let mut carol = Peer::connect(addr);
    // The host puts each in lobby as it connects, before anyone has said anything: the
    // same lobby (one epoch), at its start.
    let mut epochs = Vec::new();
    for peer in [&mut alice, &mut bob, &mut carol] {
        expect_at(peer);
        let (epoch, seq) = expect_joined(peer, "lobby");
        assert_eq!(seq, 0);
        epochs.push(epoch);
    }
    assert!(epochs.iter().all(|&e| e == epochs[0]), "{epochs:?}");

    // Carol moves to another room, as typed in nc.
    carol.write(b"#leave @lobby\n#join @other\n");
    assert_eq!(carol.read_text_line(), "#left @lobby");
    assert_eq!(expect_joined(&mut carol, "other").1, 0);

    // Alice and bob chat in lobby; each is told its own line's number instead of getting
    // it back.
    alice.write(b"hello from alice\n");
    assert_eq!(alice.read_text_line(), "#own @lobby 1");
    assert_eq!(bob.read_text_line(), "1@lobby hello from alice");
    bob.write(b"hi alice\n");
    assert_eq!(bob.read_text_line(), "#own @lobby 2");
    assert_eq!(alice.read_text_line(), "2@lobby hi alice");

    // Bob joins carol's room too, and what he says reaches both rooms ("##" escapes a
    // leading '#'). Carol's next line is his: the lobby lines went out before it, in the
    // hub's one order, so had they reached her they would have come first.
    bob.write(b"#join @other\n##both rooms\n");
    assert_eq!(expect_joined(&mut bob, "other").1, 0);
    assert_eq!(bob.read_text_line(), "#own @lobby 3");
    assert_eq!(bob.read_text_line(), "#own @other 1");
    assert_eq!(alice.read_text_line(), "3@lobby #both rooms");
    assert_eq!(carol.read_text_line(), "1@other #both rooms");

    stops_on_sigterm(server);
}

#[cfg(feature = "websocket")]
#[test]
fn ws_chat_server_puts_nc_and_browsers_in_one_lobby_and_exits_on_sigterm() {
    use tungstenite::Message;

    let mut server = start("ws_chat_server", &[LOCAL, LOCAL]);
    let tcp = listening(&mut server, "listening on ", "");
    let ws = listening(&mut server, "listening on ws://", "/");

    let mut nc = Peer::connect(tcp);
    expect_at(&mut nc);
    let (epoch, _) = expect_joined(&mut nc, "lobby");

    // A WebSocket client as the page is one (without an Origin: not a browser's page).
    let stream = Peer::connect(ws).stream;
    let (mut browser, _) = tungstenite::client::client(format!("ws://{ws}/"), stream)
        .unwrap_or_else(|err| panic!("WebSocket handshake with {ws}: {err}"));
    // Its next text message (tungstenite answers pings by itself).
    let next_text = |browser: &mut tungstenite::WebSocket<std::net::TcpStream>| loop {
        match browser.read().expect("a WebSocket message") {
            Message::Text(text) => return text.to_string(),
            other @ (Message::Binary(_) | Message::Close(_)) => panic!("expected text: {other:?}"),
            _ => {}
        }
    };
    assert!(next_text(&mut browser).starts_with("#at * "));
    assert_eq!(next_text(&mut browser), format!("#joined @lobby {epoch} 0"));
    browser
        .send(Message::text("hi from a browser"))
        .expect("send");
    assert_eq!(next_text(&mut browser), "#own @lobby 1");
    assert_eq!(nc.read_text_line(), "1@lobby hi from a browser");
    nc.write(b"hi from nc\n");
    assert_eq!(next_text(&mut browser), "2@lobby hi from nc");
    assert_eq!(nc.read_text_line(), "#own @lobby 2");

    stops_on_sigterm(server);
}
