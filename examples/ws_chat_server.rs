//! A chat with rooms between `nc` clients on TCP and browsers on WebSocket: a line typed in
//! `nc` reaches every browser in the same room, and a message typed in a browser reaches
//! every `nc` client there.
//!
//! ```text
//! cargo run --release --features websocket --example ws_chat_server -- [TCP_ADDR [WS_ADDR]]
//! nc 127.0.0.1 9999                                 # in a terminal
//! # and open the page it prints in a browser (examples/ws_chat/index.html)
//! ```
//!
//! Defaults: TCP on `127.0.0.1:9999`, WebSocket on `127.0.0.1:8080` (port 0 lets the OS
//! choose), upgrades accepted on any path. Prints `listening on ADDR` for the TCP listener
//! and `listening on ws://ADDR/` for the WebSocket one once it is ready, then the page to
//! open, and exits cleanly on Ctrl-C or SIGTERM.
//!
//! The hub speaks its protocol (`Protocol::Sequenced`, `docs/PROTOCOL.md`) on both
//! listeners, so the page numbers what it gets and, after a dropped connection, resumes
//! every stream it had: a browser that loses its connection for a moment misses nothing
//! (the hub keeps the last 1,024 messages of each stream, for up to 2 minutes, by default).
//! Rooms are topics: every client starts in `lobby` (put there as it is admitted:
//! `HubBuilder::admit`, so even a message sent with the upgrade request reaches the room),
//! and `nc` users chat with browsers at once; any client may join or leave any room (`#join @rust`, `#leave @lobby` in `nc`;
//! the page's room picker), and what it says reaches the other members of its rooms
//! (`Relay::Topics`). `examples/rooms.rs` shows an `nc` session.
//!
//! A browser that connects to `ws://HOST:PORT/?user=NAME` is admitted as user `NAME`
//! (`Admit::user`): its tabs are one user, at most 8 of them at once
//! (`max_clients_per_user`; a ninth tab's upgrade is answered `429 Too Many Requests`), and
//! the log says whose each client is. Open the page as
//! `index.html?ws=ws://127.0.0.1:8080/?user=alice` in several tabs to see it. The name is
//! taken as the query gives it (1 to 256 bytes); a real server would take the user from
//! its session cookie instead.
//!
//! The page is opened from a file, so browsers send it as origin `null`; the hub allows that
//! origin here, and requests without an origin (clients that are not browsers). A hub that
//! serves its page from a web site lists that site's origin instead (`Origins::List`).

use std::error::Error;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hubcast::{Admit, Event, Hub, Origins, Protocol, RateLimit, Relay, Transport};

/// The room every client is put in when it connects.
const LOBBY: &str = "lobby";
/// The most tabs (connections) of one user at once.
const MAX_TABS: usize = 8;

mod common;

/// The usage, for `--help` and for a bad command line.
const USAGE: &str = "usage: ws_chat_server [--rate MSGS] [TCP_ADDR [WS_ADDR]]
  TCP_ADDR    where `nc` clients connect, HOST:PORT (default 127.0.0.1:9999)
  WS_ADDR     where browsers connect, HOST:PORT (default 127.0.0.1:8080)
  --rate MSGS messages a second each client may send, held back past it (default 50; 0: no limit)
  (port 0 lets the system choose)";

/// Runs the example; see `common` for how it answers `--help`, a bad command line and a
/// failure.
fn main() -> ExitCode {
    let args = common::Args::parse(USAGE, 2, &["--rate"]);
    let tcp = args.addr(0, "127.0.0.1:9999");
    let ws = args.addr(1, "127.0.0.1:8080");
    common::init_logging("info");
    common::exit(run(&tcp, &ws, args.rate_limit()))
}

fn run(tcp: &str, ws: &str, rate: Option<RateLimit>) -> Result<(), Box<dyn Error>> {
    let hub = Hub::builder()
        .protocol(Protocol::Sequenced)
        .relay(Relay::Topics)
        // TCP and WebSocket clients alike start in lobby, so `nc` users and browsers meet:
        // joined as each is admitted (a WebSocket client at its upgrade), before anything
        // it sent is read. The hub logs a refusal (its topic limits) itself.
        // A browser may say who it is (`?user=NAME`): its tabs are then one user.
        .admit(|request| {
            let admit = Admit::new().topic(LOBBY);
            match user_of(request.query()) {
                Some(user) => admit.user(user),
                None => admit,
            }
        })
        .max_clients_per_user(Some(MAX_TABS))
        // Any room, for anyone (the hub still checks names and the per-client limit). The
        // closure runs on the hub's thread: it only decides and logs.
        .client_topics(|request| common::any_room(request, LOBBY))
        // Per client, 50 messages a second unless `--rate` says otherwise: see
        // `common::Args::rate_limit` and the README's "Rate limits".
        .rate_limit(rate)
        .listen(ws, Transport::WebSocket)
        .websocket_origins(Origins::List(vec!["null".to_owned()]))
        .bind(tcp)?;
    let hub = Arc::new(hub);
    let events = hub.subscribe();

    let signalled = Arc::clone(&hub);
    ctrlc::set_handler(move || {
        // Ends the event stream below once every client is closed; browsers get close code
        // 1001 (going away) and reconnect to whatever serves next.
        match signalled.shutdown(Duration::from_secs(2)) {
            Ok(_) | Err(hubcast::Error::Closed) => {}
            Err(err) => log::error!("shutdown failed: {err}"),
        }
    })?;
    // Only now, with the signal handler in place, tell the world we are ready.
    let addrs = hub.local_addrs();
    println!("listening on {}", addrs[0].addr);
    println!("listening on ws://{}/", addrs[1].addr);
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ws_chat/index.html");
    log::info!(
        "open file://{}?ws=ws://{}/ in a browser",
        page.display(),
        addrs[1].addr
    );

    for event in events {
        match event {
            Event::Connected {
                client, addr, user, ..
            } => match user {
                Some(user) => log::info!(
                    "{client} connected from {addr} as user {user} ({} of theirs), put in @{LOBBY}",
                    common::count(hub.user_clients(&user).len() as u64, "tab", "tabs")
                ),
                None => log::info!("{client} connected from {addr}, put in @{LOBBY}"),
            },
            Event::Disconnected { client, reason, .. } => log::info!("{client} left: {reason}"),
            Event::Message {
                client, payload, ..
            } => {
                log::debug!("{client}: {}", String::from_utf8_lossy(&payload));
            }
            Event::Resumed {
                client,
                stream,
                replayed,
                ..
            } => log::info!("{client} resumed {stream}: {replayed} messages again"),
            Event::ResumeRefused {
                client,
                stream,
                reason,
                ..
            } => log::info!("{client} could not resume {stream}: {reason}"),
            _ => {}
        }
    }
    log::info!(
        "stopped after serving {}",
        common::count(hub.stats().accepted, "client", "clients")
    );
    Ok(())
}

/// The `user=` parameter of an upgrade request's query string, as it is (not
/// percent-decoded): `/?user=alice` is user `alice`.
fn user_of(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("user="))
        .filter(|user| !user.is_empty())
}
