//! A chat with rooms between `nc` clients on TCP and browsers on WebSocket: a line typed in
//! `nc` reaches every browser in the same room, and a message typed in a browser reaches
//! every `nc` client there.
//!
//! ```text
//! cargo run --release --features websocket --example ws_chat_server -- [TCP_ADDR [WS_ADDR]]
//! nc 127.0.0.1 9999                                 # in a terminal
//! # and open the page it prints, http://127.0.0.1:8080/, in a browser
//! ```
//!
//! Defaults: TCP on `127.0.0.1:9999`, HTTP and WebSocket on `127.0.0.1:8080` (port 0 lets
//! the OS choose). Prints `listening on ADDR` for the TCP listener and `listening on
//! ws://ADDR/ws` for the WebSocket one once it is ready, then the page to open, `open
//! http://ADDR/`, and exits cleanly on Ctrl-C or SIGTERM.
//!
//! The second listener serves, beside WebSocket upgrades at `/ws`:
//!
//! - `/`: the chat page, `examples/ws_chat/index.html`, built into the program
//!   (`HubBuilder::page`). Served by the hub, the page has the hub's origin, so the default
//!   same-origin check of upgrades lets it in and nothing else needs allowing;
//! - `/events/ROOM` (and `/events`, the hub-wide stream): the room as server-sent events,
//!   read-only (`HubBuilder::sse_path`). The page falls back to it when its WebSocket cannot
//!   connect (a proxy that refuses upgrades); `curl -N http://127.0.0.1:8080/events/lobby`
//!   shows it too;
//! - `/metrics` (Prometheus text), `/livez` and `/readyz` (liveness and readiness).
//!
//! The hub speaks its protocol (`Protocol::Sequenced`, `docs/PROTOCOL.md`) on both
//! listeners, so the page numbers what it gets and, after a dropped connection, resumes
//! every stream it had: a browser that loses its connection for a moment misses nothing
//! (the hub keeps the last 1,024 messages of each stream, for up to 2 minutes, by default).
//! An event stream resumes by itself: the browser sends the last id it saw
//! (`Last-Event-ID`) as it reconnects.
//! Rooms are topics: every client starts in `lobby` (put there as it is admitted:
//! `HubBuilder::admit`, so even a message sent with the upgrade request reaches the room),
//! and `nc` users chat with browsers at once; any client may join or leave any room (`#join @rust`, `#leave @lobby` in `nc`;
//! the page's room picker), and what it says reaches the other members of its rooms
//! (`Relay::Topics`). `examples/rooms.rs` shows an `nc` session. An event stream is in the
//! room of its path only (none for `/events`).
//!
//! A browser that connects to `ws://HOST:PORT/ws?user=NAME` is admitted as user `NAME`
//! (`Admit::user`): its tabs are one user, at most 8 of them at once
//! (`max_clients_per_user`; a ninth tab's upgrade is answered `429 Too Many Requests`), and
//! the log says whose each client is. Open the page as `http://127.0.0.1:8080/?user=alice`
//! in several tabs to see it.
//!
//! `lobby` has presence (`TopicOptions::presence`): the page shows who is in it, a user's
//! tabs as one name, clients without a user as `guest <id>`; in `nc`, `#members` and
//! `#presence` lines say the same, and `#who @lobby` asks again. The name is taken as the query gives it (1 to 256 bytes); a
//! real server would take the user from its session cookie instead.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hubcast::{Admit, Event, Hub, Protocol, RateLimit, Relay, TopicOptions, Transport};

/// The room every client is put in when it connects.
const LOBBY: &str = "lobby";
/// The most tabs (connections) of one user at once.
const MAX_TABS: usize = 8;
/// The chat page, served at `/`.
const PAGE: &str = include_str!("ws_chat/index.html");

mod common;

/// The usage, for `--help` and for a bad command line.
const USAGE: &str = "usage: ws_chat_server [--rate MSGS] [TCP_ADDR [WS_ADDR]]
  TCP_ADDR    where `nc` clients connect, HOST:PORT (default 127.0.0.1:9999)
  WS_ADDR     the page, WebSocket, events and metrics, HOST:PORT (default 127.0.0.1:8080)
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
        // An event stream is in the room its path names only (`/events/ROOM`, joined as
        // a `#join` is), or in none (`/events`): it shows one room.
        .admit(|request| {
            let admit = if request.is_event_stream() {
                Admit::new()
            } else {
                Admit::new().topic(LOBBY)
            };
            match user_of(request.query()) {
                Some(user) => admit.user(user),
                None => admit,
            }
        })
        .max_clients_per_user(Some(MAX_TABS))
        // Any room, for anyone (the hub still checks names and the per-client limit). The
        // closure runs on the hub's thread: it only decides and logs.
        .client_topics(|request| common::any_room(request, LOBBY))
        // lobby tells its members who is in it: the page lists them (a `#members` as it
        // joins, then a `#presence` line for each arrival and departure, numbered with the
        // room's messages so a resume brings the changes too). A user's tabs are one
        // member. Other rooms have no presence. Asked on the hub's thread as each room is
        // made: it only decides.
        .topic_options(|room| TopicOptions::new().presence(room == LOBBY))
        // Per client, 50 messages a second unless `--rate` says otherwise: see
        // `common::Args::rate_limit` and the README's "Rate limits".
        .rate_limit(rate)
        // One listener for browsers: the page, its WebSocket, its read-only fallback
        // (server-sent events), and what a monitoring system reads. Browsers get the page
        // from here, so the default origin check (same origin) is the right one.
        .listen(ws, Transport::WebSocket)
        .page("/", "text/html; charset=utf-8", PAGE)
        .websocket_path(Some("/ws"))
        // With the `deflate` feature, browsers (which all offer permessage-deflate) get
        // messages of 256 bytes or more compressed, once per broadcast for all of them.
        .websocket_compression(cfg!(feature = "deflate"))
        .sse_path(Some("/events"))
        .metrics_path(Some("/metrics"))
        .liveness_path(Some("/livez"))
        .readiness_path(Some("/readyz"))
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
    let web = addrs[1].addr;
    println!("listening on ws://{web}/ws");
    println!("open http://{web}/");
    log::info!("events at http://{web}/events/ROOM, metrics at http://{web}/metrics");

    for event in events {
        match event {
            Event::Connected {
                client, addr, user, ..
            } => match user {
                Some(user) => log::info!(
                    "{client} connected from {addr} as user {user} ({} of theirs)",
                    common::count(hub.user_clients(&user).len() as u64, "tab", "tabs")
                ),
                None => log::info!("{client} connected from {addr}"),
            },
            // Right after `Connected`, the room it was put in as it was admitted: lobby, or
            // for an event stream the room of its path (`any_room` logs other rooms).
            Event::TopicJoined { client, topic, .. } if topic == LOBBY => {
                log::info!("{client} in @{LOBBY}");
            }
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

/// The `user=` parameter of an upgrade request's (or event stream's) query string, as it
/// is (not percent-decoded): `/ws?user=alice` is user `alice`.
fn user_of(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("user="))
        .filter(|user| !user.is_empty())
}
