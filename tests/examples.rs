//! Smoke tests of the chat examples, each run as `cargo run --example` would: it starts on
//! port 0, says where it listens, chats between clients, and exits cleanly on SIGTERM.
//!
//! - `chat_server`: a line reaches the other client.
//! - `rooms`: clients start in `lobby`, chat there, and one that moves to another room
//!   hears nothing more of `lobby`; all over plain lines, as with `nc`. `lobby` has
//!   presence (`#members` as each arrives, `#presence` as others come and go, `#who`) and
//!   gives a newcomer its last messages. `news` is
//!   read-only: a client there reads the host's time posts, and what it writes is refused
//!   (`#refused publish @news denied`).
//! - `axum_app` (features `websocket`, `stream`): an axum app's page, JSON API and the hub's WebSocket
//!   (adopted connections) on one port; two WebSocket clients chat, an announcement
//!   posted to the API reaches both.
//! - `ws_chat_server` (feature `websocket`): an `nc`-like client and a WebSocket client
//!   meet in `lobby` and chat both ways; its web listener serves the chat page at `/` (the
//!   bytes of `examples/ws_chat/index.html`), Prometheus text at `/metrics`, health at
//!   `/livez` and `/readyz`, and event streams at `/events`.
//!
//! And the command line of every example (`examples/common`): `--help` and `-h` print the
//! usage and exit 0 before anything starts; an unknown option, one argument too many or an
//! address without a port exit 2 with the usage. `tls_chat_server` writes its self-signed
//! certificate only once it listens, whole, and never on `--help` or a taken port, and
//! names the file that lacks what it should hold; `cluster_chat` without a NATS server
//! says why it cannot reach it, once.

mod util;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use util::{example_path, ChildProcess, Peer, TempDir, LOCAL, TIMEOUT};

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

/// Sends SIGTERM, expects the example to exit with success, and returns its stderr.
fn stops_on_sigterm(mut server: ChildProcess) -> String {
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.finish();
    assert!(
        status.success(),
        "the example exited with {status}; its stderr:\n{stderr}"
    );
    stderr
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

/// Reads what a client of `rooms` gets as the host puts it in lobby: `#at`, `#joined
/// @lobby`, the members (`#members`, lobby has presence), lobby's last messages
/// (`#resumed` and the messages it names: lobby has history). Returns the join's epoch and
/// position, the members listed, and the lines replayed.
fn lobby_greeting(peer: &mut Peer) -> (u64, u64, Vec<String>, Vec<String>) {
    expect_at(peer);
    let (epoch, seq) = expect_joined(peer, "lobby");
    let members = words(peer);
    assert!(
        members.len() >= 6
            && members[..4] == ["#members", "@lobby", &epoch.to_string(), &seq.to_string()]
            && members[4] == "all"
            && members[5].parse() == Ok(members.len() - 6),
        "{members:?}"
    );
    let resumed = words(peer);
    assert!(
        resumed.len() == 5
            && resumed[..3] == ["#resumed", "@lobby", &epoch.to_string()]
            && resumed[4] == seq.to_string(),
        "{resumed:?}"
    );
    let from: u64 = resumed[3].parse().expect("from");
    let replayed = (from..=seq).map(|_| peer.read_text_line()).collect();
    (epoch, seq, members[6..].to_vec(), replayed)
}

/// The peer's next line that is not a `#presence` line of lobby; those before it are
/// added to `presence`.
fn next_said(peer: &mut Peer, presence: &mut Vec<String>) -> String {
    loop {
        let line = peer.read_text_line();
        match line.strip_prefix("#presence @lobby ") {
            Some(rest) => presence.push(rest.to_owned()),
            None => return line,
        }
    }
}

#[test]
fn rooms_keeps_rooms_apart_and_exits_on_sigterm() {
    let mut server = start("rooms", &[LOCAL]);
    let addr = listening(&mut server, "listening on ", "");

    // The host puts each in lobby as it connects: the same lobby (one epoch), each
    // arrival a `#presence` message of lobby, so each starts one further; each is told
    // who is there, itself included; nothing has been said, so no history.
    let mut alice = Peer::connect(addr);
    let (epoch, seq, members, replayed) = lobby_greeting(&mut alice);
    assert_eq!((seq, members.len(), replayed.len()), (1, 1, 0));
    let alice_is = members[0].clone();
    let mut bob = Peer::connect(addr);
    let (bob_epoch, seq, members, _) = lobby_greeting(&mut bob);
    assert_eq!((bob_epoch, seq, members.len()), (epoch, 2, 2));
    let bob_is = members
        .iter()
        .find(|m| **m != alice_is)
        .expect("bob")
        .clone();
    let mut carol = Peer::connect(addr);
    let (carol_epoch, seq, members, _) = lobby_greeting(&mut carol);
    assert_eq!((carol_epoch, seq, members.len()), (epoch, 3, 3));
    let carol_is = members
        .iter()
        .find(|m| **m != alice_is && **m != bob_is)
        .expect("carol")
        .clone();
    assert!(
        alice_is.starts_with("c:") && bob_is.starts_with("c:"),
        "{members:?}"
    );
    // Alice is told of bob and carol, bob of carol.
    assert_eq!(
        alice.read_text_line(),
        format!("#presence @lobby 2 join {bob_is}")
    );
    assert_eq!(
        alice.read_text_line(),
        format!("#presence @lobby 3 join {carol_is}")
    );
    assert_eq!(
        bob.read_text_line(),
        format!("#presence @lobby 3 join {carol_is}")
    );

    // `#who @lobby`: who is there now, at lobby's position.
    alice.write(b"#who @lobby\n");
    let who = words(&mut alice);
    assert_eq!(
        who[..6],
        ["#members", "@lobby", &epoch.to_string(), "3", "all", "3"]
    );
    let mut listed = who[6..].to_vec();
    listed.sort();
    let mut all = vec![alice_is.clone(), bob_is.clone(), carol_is.clone()];
    all.sort();
    assert_eq!(listed, all);

    // Carol moves to another room, as typed in nc: the others see her leave.
    carol.write(b"#leave @lobby\n#join @other\n");
    assert_eq!(carol.read_text_line(), "#left @lobby");
    assert_eq!(expect_joined(&mut carol, "other").1, 0);
    let (mut alice_saw, mut bob_saw) = (Vec::new(), Vec::new());

    // Alice and bob chat in lobby; each is told its own line's number instead of getting
    // it back.
    alice.write(b"hello from alice\n");
    assert_eq!(next_said(&mut alice, &mut alice_saw), "#own @lobby 5");
    assert_eq!(
        next_said(&mut bob, &mut bob_saw),
        "5@lobby hello from alice"
    );
    bob.write(b"hi alice\n");
    assert_eq!(next_said(&mut bob, &mut bob_saw), "#own @lobby 6");
    assert_eq!(next_said(&mut alice, &mut alice_saw), "6@lobby hi alice");
    let left = [format!("4 leave {carol_is}")];
    assert_eq!((&alice_saw[..], &bob_saw[..]), (&left[..], &left[..]));

    // Bob joins carol's room too, and what he says reaches both rooms ("##" escapes a
    // leading '#'). Carol's next line is his: the lobby lines went out before it, in the
    // hub's one order, so had they reached her they would have come first. `other` has no
    // presence: nobody is told bob came.
    bob.write(b"#join @other\n##both rooms\n");
    assert_eq!(expect_joined(&mut bob, "other").1, 0);
    assert_eq!(bob.read_text_line(), "#own @lobby 7");
    assert_eq!(bob.read_text_line(), "#own @other 1");
    assert_eq!(alice.read_text_line(), "7@lobby #both rooms");
    assert_eq!(carol.read_text_line(), "1@other #both rooms");

    // Dave asks for lobby himself as he connects, as the Python client with
    // `topics=["lobby"]` does: in lobby once, at its position, as the host put him there
    // before reading his request (which is answered where he already is). Either way he
    // gets lobby's last messages: the three lines said there, and who came and went.
    let mut dave = Peer::connect(addr);
    dave.write(b"#join @lobby\n");
    let (_, seq, members, replayed) = lobby_greeting(&mut dave);
    assert_eq!((seq, members.len()), (8, 3));
    let said: Vec<&String> = replayed.iter().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        said,
        [
            "5@lobby hello from alice",
            "6@lobby hi alice",
            "7@lobby #both rooms"
        ],
        "{replayed:?}"
    );
    assert_eq!(expect_joined(&mut dave, "lobby").1, 8);
    assert_eq!(alice.read_text_line(), "#presence @lobby 8 join c:4");
    server.wait_for_stderr("#4 connected from");

    // Each arrival logged once, with where the host put it; the moves as asked.
    let stderr = stops_on_sigterm(server);
    assert_eq!(stderr.matches("put in @lobby").count(), 4, "{stderr}");
    assert!(!stderr.contains("joins @lobby"), "{stderr}");
    assert_eq!(stderr.matches("leaves @lobby").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("joins @other").count(), 2, "{stderr}");
    assert!(stderr.contains("stopped: 4 clients served"), "{stderr}");
}

#[test]
fn rooms_news_is_read_only_and_gets_the_time() {
    // Posts every 50 ms, not every 10 s.
    let mut server = start("rooms", &["--news-every", "0.05", LOCAL]);
    let addr = listening(&mut server, "listening on ", "");
    let mut reader = Peer::connect(addr);
    lobby_greeting(&mut reader);
    reader.write(b"#leave @lobby\n#join @news\n");
    assert_eq!(reader.read_text_line(), "#left @lobby");
    expect_joined(&mut reader, "news");
    // In news only, it may not write there: told so, between the host's posts.
    reader.write(b"can I post here?\n");
    let (mut refused, mut posts) = (false, 0);
    while !refused || posts == 0 {
        let line = reader.read_text_line();
        if line == "#refused publish @news denied" {
            assert!(!refused, "refused twice");
            refused = true;
            continue;
        }
        let (head, text) = line.split_once(' ').unwrap_or_default();
        assert!(
            head.ends_with("@news") && text.starts_with("the time is ") && text.ends_with(" UTC"),
            "{line}"
        );
        posts += 1;
    }
    let stderr = stops_on_sigterm(server);
    assert!(
        stderr.contains("stopped: 1 client served") && stderr.contains("1 not relayed to news"),
        "{stderr}"
    );
}

#[cfg(feature = "websocket")]
#[test]
fn ws_chat_server_puts_nc_and_browsers_in_one_lobby_and_exits_on_sigterm() {
    use tungstenite::Message;

    let mut server = start("ws_chat_server", &[LOCAL, LOCAL]);
    let tcp = listening(&mut server, "listening on ", "");
    let ws = listening(&mut server, "listening on ws://", "/ws");
    assert_eq!(listening(&mut server, "open http://", "/"), ws);

    // lobby has presence: each arrival is told who is there (itself included), and the
    // members already there are told of it, a numbered message of lobby.
    let mut nc = Peer::connect(tcp);
    expect_at(&mut nc);
    let (epoch, seq) = expect_joined(&mut nc, "lobby");
    assert_eq!(seq, 1);
    let members = words(&mut nc);
    assert_eq!(
        members[..6],
        ["#members", "@lobby", &epoch.to_string(), "1", "all", "1"]
    );
    let nc_is = members[6].clone();

    // A WebSocket client as the page is one (without an Origin: not a browser's page).
    let mut browser = ws_at(ws, "/ws");
    assert!(util::text(&mut browser).starts_with("#at * "));
    assert_eq!(
        util::text(&mut browser),
        format!("#joined @lobby {epoch} 2")
    );
    let members = util::text(&mut browser);
    let listed: Vec<&str> = members.split(' ').collect();
    assert_eq!(
        listed[..6],
        ["#members", "@lobby", &epoch.to_string(), "2", "all", "2"]
    );
    assert!(listed[6..].contains(&nc_is.as_str()), "{members}");
    let browser_is = listed[6..]
        .iter()
        .find(|m| **m != nc_is)
        .expect("the browser");
    assert_eq!(
        nc.read_text_line(),
        format!("#presence @lobby 2 join {browser_is}")
    );
    browser
        .send(Message::text("hi from a browser"))
        .expect("send");
    assert_eq!(util::text(&mut browser), "#own @lobby 3");
    assert_eq!(nc.read_text_line(), "3@lobby hi from a browser");
    nc.write(b"hi from nc\n");
    assert_eq!(util::text(&mut browser), "4@lobby hi from nc");
    assert_eq!(nc.read_text_line(), "#own @lobby 4");

    // A refused upgrade is logged under `hubcast::websocket`, and each arrival once.
    Peer::connect(ws).write(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
    let stderr = server.wait_for_stderr("WebSocket upgrade refused");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("hubcast::websocket]") && l.contains("refused")),
        "{stderr}"
    );

    // Two tabs of one user (`?user=`), each logged as theirs once the hub has it.
    let request = util::request("/ws?user=alice", &ws.to_string(), &[], &[]);
    let mut tabs = Vec::new();
    for logged in ["(1 tab of theirs)", "(2 tabs of theirs)"] {
        let mut tab = Peer::connect(ws);
        util::send_request(&mut tab, &request).assert_switching();
        server.wait_for_stderr(&format!("as user alice {logged}"));
        tabs.push(tab);
    }
    // Her two tabs are one member: nc is told she came once, and then what is said next.
    browser.send(Message::text("two tabs in")).expect("send");
    assert_eq!(nc.read_text_line(), "#presence @lobby 5 join u:alice");
    assert_eq!(nc.read_text_line(), "6@lobby two tabs in");

    // Each arrival logged once, with where the host put it.
    let stderr = stops_on_sigterm(server);
    assert_eq!(stderr.matches(" in @lobby\n").count(), 4, "{stderr}");
    assert!(!stderr.contains("joins @lobby"), "{stderr}");
    assert!(
        stderr.contains("stopped after serving 4 clients"),
        "{stderr}"
    );
}

/// `ws_chat_server`'s web listener answers plain HTTP: the page it serves is the file's
/// bytes, the metrics are Prometheus text, health is `ok`, and `/events/lobby` is an event
/// stream in lobby (read-only: it gets what is said there, without the room's prefix).
#[cfg(feature = "websocket")]
#[test]
fn ws_chat_server_serves_its_page_events_metrics_and_health() {
    let mut server = start("ws_chat_server", &[LOCAL, LOCAL]);
    let tcp = listening(&mut server, "listening on ", "");
    let web = listening(&mut server, "listening on ws://", "/ws");
    listening(&mut server, "open http://", "/");

    let page = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ws_chat/index.html"),
    )
    .expect("the page");
    let (head, body) = get(web, "/");
    assert_eq!(head[0], "HTTP/1.1 200 OK", "{head:?}");
    assert_eq!(
        util::header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(body == page, "the page served is not the file");

    let (head, body) = get(web, "/metrics");
    assert_eq!(head[0], "HTTP/1.1 200 OK", "{head:?}");
    assert!(
        util::header(&head, "content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{head:?}"
    );
    let text = String::from_utf8(body).expect("UTF-8");
    assert!(
        text.contains("# TYPE hubcast_clients_accepted_total counter\n")
            && text
                .lines()
                .any(|l| l.starts_with("hubcast_clients_connected ")),
        "{text}"
    );
    for path in ["/livez", "/readyz"] {
        let (head, _) = get(web, path);
        assert_eq!(head[0], "HTTP/1.1 200 OK", "{path}: {head:?}");
    }

    // The hub-wide stream, and lobby's, whose messages carry their ids.
    let (_hub_wide, head) = util::http_exchange(web, &util::sse_request("/events", &[]));
    assert_eq!(head[0], "HTTP/1.1 200 OK", "{head:?}");
    assert_eq!(
        util::header(&head, "content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let mut lobby = util::SseClient::open(web, "/events/lobby", &[]);
    // Ready once it has the position its live messages start after (an id, no data).
    loop {
        let event = lobby.next_event();
        if event.id.is_some() && event.data.is_none() {
            break;
        }
    }
    let mut nc = Peer::connect(tcp);
    expect_at(&mut nc);
    expect_joined(&mut nc, "lobby");
    nc.write(b"hi from nc\n");
    // The event stream is a member of lobby, which has presence: nc's arrival is its
    // message 2 (an event `presence` with its id), nc's line message 3.
    let mut presence = Vec::new();
    let event = loop {
        let event = lobby.next_event();
        match event.event.as_deref() {
            None => break event,
            Some("presence") => presence.push(event),
            Some(_) => {}
        }
    };
    assert_eq!(event.data.as_deref(), Some("hi from nc"), "{event:?}");
    assert!(
        event.position().is_some_and(|(_, seq)| seq == 3),
        "{event:?}"
    );
    assert!(
        presence.len() == 1
            && presence[0].position().is_some_and(|(_, seq)| seq == 2)
            && presence[0]
                .data
                .as_deref()
                .is_some_and(|d| d.starts_with("#presence @lobby 2 join c:")),
        "{presence:?}"
    );

    let stderr = stops_on_sigterm(server);
    // Each logged as it came: the event streams and nc; lobby's stream and nc in lobby.
    assert_eq!(stderr.matches(" connected from ").count(), 3, "{stderr}");
    assert_eq!(stderr.matches(" in @lobby\n").count(), 2, "{stderr}");
}

/// A WebSocket client of `addr` at `path` (no Origin: not a browser's page).
#[cfg(feature = "websocket")]
fn ws_at(addr: SocketAddr, path: &str) -> util::Ws {
    let stream = Peer::connect(addr).stream;
    let (ws, _) = tungstenite::client::client(format!("ws://{addr}{path}"), stream)
        .unwrap_or_else(|err| panic!("WebSocket handshake with {addr}{path}: {err}"));
    ws
}

/// `GET path` of `addr`: the response's head lines and its body (`Content-Length` bytes).
#[cfg(feature = "websocket")]
fn get(addr: SocketAddr, path: &str) -> (Vec<String>, Vec<u8>) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let (mut peer, head) = util::http_exchange(addr, request.as_bytes());
    let len: usize = util::header(&head, "content-length")
        .and_then(|len| len.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
    let body = peer.read_exact(len);
    (head, body)
}

/// `axum_app` serves its page, its API and the hub's WebSocket on one port: a real HTTP
/// `GET` of the page, two real WebSocket clients at `/ws` (adopted by the hub) that chat,
/// a `POST /api/announce` that reaches both, and the stats as JSON.
#[cfg(all(feature = "websocket", feature = "stream"))]
#[test]
fn axum_app_mounts_the_hub_at_ws_on_its_own_port() {
    use tungstenite::Message;

    let mut server = start("axum_app", &[LOCAL]);
    let addr = listening(&mut server, "open http://", "/");

    let (head, body) = get(addr, "/");
    assert_eq!(head[0], "HTTP/1.1 200 OK", "{head:?}");
    assert!(
        util::header(&head, "content-type").is_some_and(|t| t.starts_with("text/html")),
        "{head:?}"
    );
    let page = String::from_utf8(body).expect("UTF-8");
    assert!(page.contains("/ws"), "{page}");

    let mut alice = ws_at(addr, "/ws");
    server.wait_for_stderr("#1 connected from");
    let mut bob = ws_at(addr, "/ws");
    server.wait_for_stderr("#2 connected from");

    alice.send(Message::text("hi bob")).expect("send");
    assert_eq!(util::text(&mut bob), "hi bob");
    bob.send(Message::text("hi alice")).expect("send");
    assert_eq!(util::text(&mut alice), "hi alice");

    let (head, body) = post(addr, "/api/announce", "tea is ready");
    assert_eq!(head[0], "HTTP/1.1 202 Accepted", "{head:?} {body:?}");
    assert_eq!(util::text(&mut alice), "announcement: tea is ready");
    assert_eq!(util::text(&mut bob), "announcement: tea is ready");

    let (head, body) = get(addr, "/api/stats");
    assert_eq!(
        util::header(&head, "content-type"),
        Some("application/json")
    );
    let json = String::from_utf8(body).expect("UTF-8");
    assert!(
        json.starts_with("{\"connected\":2,\"adopted\":2,\"accepted\":2,"),
        "{json}"
    );

    let stderr = stops_on_sigterm(server);
    assert!(stderr.contains("#1: hi bob"), "{stderr}");
    assert!(
        stderr.contains("stopped after serving 2 clients"),
        "{stderr}"
    );
}

/// `POST path` of `addr` with `body`: the response's head lines and its body.
#[cfg(all(feature = "websocket", feature = "stream"))]
fn post(addr: SocketAddr, path: &str, body: &str) -> (Vec<String>, Vec<u8>) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (mut peer, head) = util::http_exchange(addr, request.as_bytes());
    let len: usize = util::header(&head, "content-length")
        .and_then(|len| len.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
    let body = peer.read_exact(len);
    (head, body)
}

// ------------------------------------------------------------------------ command lines

/// Each example built with the features on, with how many positional arguments it takes.
fn examples() -> Vec<(&'static str, usize)> {
    let mut all = vec![("chat_server", 1), ("rooms", 1), ("ticker", 1)];
    if cfg!(feature = "websocket") {
        all.extend([("ws_chat_server", 2), ("ws_echo", 1)]);
    }
    if cfg!(all(feature = "websocket", feature = "stream")) {
        all.push(("axum_app", 1));
    }
    if cfg!(feature = "tls") {
        all.push(("tls_chat_server", 3));
    }
    if cfg!(feature = "nats") {
        all.push(("cluster_chat", 1));
    }
    all
}

/// Runs example `name` with `args` (and `TMPDIR` at `tmp`, so that nothing it might write
/// lands anywhere else) to its end: its status, first stdout line and whole stderr.
fn run_to_end(name: &str, args: &[&str], tmp: &TempDir) -> (i32, Option<String>, String) {
    let mut command = Command::new(example_path(name));
    command.args(args).env("TMPDIR", tmp.path());
    let mut child = ChildProcess::spawn(command);
    let (status, stderr) = child.finish();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{name} {args:?} ended by a signal: {status}"));
    (code, child.try_line(), stderr)
}

#[test]
fn every_example_answers_help_and_refuses_a_bad_command_line() {
    let tmp = TempDir::new("example-args");
    for (name, max) in examples() {
        let usage = format!("usage: {name} ");
        for help in ["--help", "-h"] {
            let (code, line, stderr) = run_to_end(name, &[help], &tmp);
            assert_eq!(code, 0, "{name} {help}: {stderr}");
            let line = line.unwrap_or_default();
            assert!(line.starts_with(&usage), "{name} {help}: {line:?}");
        }
        let too_many = vec![LOCAL; max + 1];
        let bad: [(&[&str], &str); 4] = [
            (&["--bogus"], "unknown option \"--bogus\""),
            (&[LOCAL, "-x"], "unknown option \"-x\""),
            (&too_many, "unexpected argument"),
            (&["127.0.0.1"], "give HOST:PORT, such as 127.0.0.1:9999"),
        ];
        for (args, problem) in bad {
            let (code, line, stderr) = run_to_end(name, args, &tmp);
            assert_eq!(code, 2, "{name} {args:?}: {stderr}");
            assert_eq!(line, None, "{name} {args:?} printed on stdout");
            assert!(
                stderr.contains(problem) && stderr.contains(&usage),
                "{name} {args:?}: {stderr}"
            );
        }
    }
    let (code, _, stderr) = run_to_end("chat_server", &["localhost"], &tmp);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("such as localhost:9999"), "{stderr}");
    // Nothing was written for any of them.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;

    /// A certificate file that belongs to a server already running.
    const THEIRS: &[u8] = b"the certificate the clients of another server trust\n";

    fn cert_file(tmp: &TempDir) -> std::path::PathBuf {
        tmp.path().join("hubcast-example-cert.pem")
    }

    #[test]
    fn tls_chat_server_leaves_the_certificate_alone_unless_it_listens() {
        let tmp = TempDir::new("example-tls");
        let cert = cert_file(&tmp);
        std::fs::write(&cert, THEIRS).expect("write");

        let (code, _, stderr) = run_to_end("tls_chat_server", &["--help"], &tmp);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            std::fs::read(&cert).expect("read"),
            THEIRS,
            "--help wrote it"
        );

        let taken = std::net::TcpListener::bind(LOCAL).expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let (code, _, stderr) = run_to_end("tls_chat_server", &[&addr], &tmp);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("failed to bind"), "{stderr}");
        assert_eq!(
            std::fs::read(&cert).expect("read"),
            THEIRS,
            "a failed bind wrote it"
        );
        drop(taken);

        // Listening, it writes its own, whole, and leaves no temporary file.
        let mut server = start_in("tls_chat_server", &[LOCAL], &tmp);
        let addr = listening(&mut server, "listening on ", "");
        let written = std::fs::read_to_string(&cert).expect("read");
        assert!(
            written.starts_with("-----BEGIN CERTIFICATE-----")
                && written.trim_end().ends_with("-----END CERTIFICATE-----"),
            "{written}"
        );
        let files: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").collect();
        assert_eq!(files.len(), 1, "{files:?}");

        // A client that does not speak TLS is logged under `hubcast::tls`.
        Peer::connect(addr).write(b"hello, not TLS\n");
        let stderr = server.wait_for_stderr("handshake failed");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("hubcast::tls]") && l.contains("handshake failed")),
            "{stderr}"
        );
        let stderr = stops_on_sigterm(server);
        assert!(
            stderr.contains("stopped: 0 clients served, 1 failed handshake\n"),
            "{stderr}"
        );
    }

    #[test]
    fn tls_chat_server_says_which_file_lacks_what() {
        let tmp = TempDir::new("example-tls-files");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let cert = tmp.path().join("cert.pem");
        std::fs::write(&cert, made.cert.pem()).expect("write");
        let cert = cert.to_str().expect("utf-8");

        // A certificate without its key.
        let (code, _, stderr) = run_to_end("tls_chat_server", &[LOCAL, cert], &tmp);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(&format!("certificate {cert} given without its key")),
            "{stderr}"
        );

        // The certificate given as the key, and the other way round.
        let (code, _, stderr) = run_to_end("tls_chat_server", &[LOCAL, cert, cert], &tmp);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{cert} holds no private key: expected a PEM block"
            )),
            "{stderr}"
        );
        let key = tmp.path().join("key.pem");
        std::fs::write(&key, made.key_pair.serialize_pem()).expect("write");
        let key = key.to_str().expect("utf-8");
        let (code, _, stderr) = run_to_end("tls_chat_server", &[LOCAL, key, key], &tmp);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("{key} holds no certificate")),
            "{stderr}"
        );
    }
}

/// Starts example `name` with `args` and `TMPDIR` at `tmp`.
#[cfg(any(feature = "tls", feature = "nats"))]
fn start_in(name: &str, args: &[&str], tmp: &TempDir) -> ChildProcess {
    let mut command = Command::new(example_path(name));
    command.args(args).env("TMPDIR", tmp.path());
    ChildProcess::spawn(command)
}

/// Without a NATS server, `cluster_chat` serves its own clients and says, once and as a
/// warning, which server it cannot reach and why.
#[cfg(feature = "nats")]
#[test]
fn cluster_chat_says_why_nats_cannot_be_reached() {
    let tmp = TempDir::new("example-nats");
    // A port just freed: nothing listens there.
    let free = std::net::TcpListener::bind(LOCAL).expect("bind");
    let url = format!(
        "nats://127.0.0.1:{}",
        free.local_addr().expect("addr").port()
    );
    drop(free);
    let mut chat = start_in("cluster_chat", &["--nats", &url, LOCAL], &tmp);
    listening(&mut chat, "listening on ", "");
    let stderr = chat.wait_for_stderr("cannot reach NATS");
    let line = stderr
        .lines()
        .find(|line| line.contains("cannot reach NATS"))
        .expect("the line");
    assert!(
        line.contains("WARN") && line.contains(&url) && line.contains("refused"),
        "{line}"
    );
    assert!(!stderr.contains("IO error"), "{stderr}");
    stops_on_sigterm(chat);
}
