//! A chat with rooms over plain lines, for `nc`: the hub speaks its protocol
//! (`Protocol::Sequenced`, see `docs/PROTOCOL.md`), relays what a client says to the other
//! members of its rooms (`Relay::Topics`), and lets clients join and leave any room
//! themselves (`HubBuilder::client_topics`). Every client starts in `lobby`, put there as it
//! is admitted (`HubBuilder::admit`), so a line it sends the moment it connects reaches the
//! room.
//!
//! ```text
//! cargo run --release --example rooms -- [ADDR]     # default 127.0.0.1:9999
//! cargo run --release --example rooms -- --news-every 2 --rate 0 127.0.0.1:0
//! nc 127.0.0.1 9999                                  # in two or more terminals
//! ```
//!
//! `lobby` tells its members who is in it, and gives a client that joins it its last 10
//! messages (`HubBuilder::topic_options`: `TopicOptions::presence` and `history`). A
//! client is a member `c:<its id>` (or `u:<user>` on a hub that admits users, as
//! `ws_chat_server` does): after `#joined @lobby` comes `#members`, the members at the
//! same position, then each arrival and departure as a `#presence` line, numbered with
//! lobby's messages. Any time, a member can ask `#who @lobby` (a request of the protocol
//! itself, not something this example handles: the hub answers it with `#members`). Other
//! rooms have no presence, and no history.
//!
//! A session (`>` from the hub, `<` typed; the long numbers are epochs, random per run):
//!
//! ```text
//! > #at * 5938244913513 0                  the hub-wide stream starts after message 0
//! > #joined @lobby 2784716001147 5         the host put you in lobby as you connected
//! > #members @lobby 2784716001147 5 all 2 c:1 c:3
//!                                          who is there: c:1 and you (c:3)
//! > #resumed @lobby 2784716001147 3 5      lobby's last messages follow: 3 to 5
//! > 3@lobby is anyone here?                (1 and 2 were c:1 and c:2 coming in)
//! > #presence @lobby 4 leave c:2           c:2 left before you came
//! > #presence @lobby 5 join c:3            (your own arrival)
//! < hello, anyone here?
//! > #own @lobby 6                          lobby's message 6 was yours: not sent back
//! > #presence @lobby 7 join c:4            c:4 came in
//! > 8@lobby hi!                            from another client in lobby
//! < #who @lobby                            who is in lobby now?
//! > #members @lobby 2784716001147 8 all 3 c:1 c:3 c:4
//! < #join @rust
//! > #joined @rust 7170368244710 4          rust has had 4 messages: yours start at 5
//! < what you say now reaches lobby and rust
//! > #own @lobby 9
//! > #own @rust 5
//! < #leave @lobby
//! > #left @lobby
//! > 6@rust only rust from here on          from someone in rust
//! < ##hashtag                              a line that starts with '#' is typed '##'
//! > #own @rust 7                           (others in rust get `7@rust #hashtag`)
//! ```
//!
//! `#join @lobby 3` asks for 3 last messages instead of 10 (`#join @rust 3` for rust's,
//! which has no history of its own).
//!
//! `news` is a read-only room: any client may `#join @news` and read it, and the host posts
//! the time there every 10 s (`--news-every SECS`), but what a client says is not relayed
//! there (the `client_topics` closure refuses `TopicAction::Publish` to it). A line sent by
//! a client in `news` only is answered `#refused publish @news denied`; from a client also
//! in `lobby` it reaches `lobby` alone. The host still reads every line (and logs it at
//! `debug`).
//!
//! ```text
//! < #join @news
//! > #joined @news 3310585011322 12
//! > 13@news the time is 21:50:10 UTC
//! < #leave @lobby
//! > #left @lobby
//! < can I post here?
//! > #refused publish @news denied
//! ```
//!
//! What a client says reaches every room it is in (but `news`); `#leave @lobby` to talk in
//! one room only. Room names are 1 to 64 bytes with no whitespace; any room may be joined, up to 64
//! per client. A client that reconnects can get what it missed with `#resume` (see the
//! protocol's docs); `nc` users simply see numbered lines.
//!
//! Prints `listening on ADDR` to stdout once ready (use port 0 to let the OS choose), logs
//! arrivals, departures, joins and leaves to stderr (`RUST_LOG=debug` for messages too),
//! and exits cleanly on Ctrl-C or SIGTERM after flushing what is queued.

use std::error::Error;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hubcast::{Admit, Event, Hub, Protocol, RateLimit, Relay, TopicAction, TopicOptions};

/// The room every client is put in when it connects.
const LOBBY: &str = "lobby";
/// The read-only room: clients join and read it; only the host writes there.
const NEWS: &str = "news";

mod common;

/// The usage, for `--help` and for a bad command line.
const USAGE: &str = "usage: rooms [--rate MSGS] [--news-every SECS] [ADDR]
  ADDR        where to listen, HOST:PORT (default 127.0.0.1:9999; port 0 lets the system choose)
  --rate MSGS messages a second each client may send, held back past it (default 50; 0: no limit)
  --news-every SECS
              how often the host posts the time to the read-only room news (default 10;
              a decimal number of seconds, over 0)";

/// Runs the example; see `common` for how it answers `--help`, a bad command line and a
/// failure.
fn main() -> ExitCode {
    let args = common::Args::parse(USAGE, 1, &["--rate", "--news-every"]);
    common::init_logging("info");
    let news_every = match args.option("--news-every") {
        None => Duration::from_secs(10),
        Some(secs) => match secs.parse().map(Duration::try_from_secs_f64) {
            Ok(Ok(every)) if !every.is_zero() => every,
            _ => args.refuse("--news-every takes a number of seconds over 0, such as 10 or 0.5"),
        },
    };
    common::exit(run(
        &args.addr(0, "127.0.0.1:9999"),
        args.rate_limit(),
        news_every,
    ))
}

fn run(addr: &str, rate: Option<RateLimit>, news_every: Duration) -> Result<(), Box<dyn Error>> {
    let hub = Hub::builder()
        .protocol(Protocol::Sequenced)
        .relay(Relay::Topics)
        // Every client is in lobby from its first line on: the hub joins it as it admits it,
        // before reading anything it sent. (Joining it from the `Connected` event below
        // would come later: lines sent at once would reach nobody.) Should lobby be refused
        // (the hub's topic limits), the hub logs it and the client starts in no room.
        .admit(|_| Admit::new().topic(LOBBY))
        // Any room, for anyone. The closure sees every `#join` and `#leave` (and every
        // `#resume` of a room the client is not in); it runs on the hub's thread, so it only
        // decides and logs. The hub still checks names and the per-client limit, and answers
        // `#refused` if those fail. The events below reach this thread later, so a client
        // that joins a room the moment it connects is logged joining before it arrives.
        //
        // It is also asked, for each line a client sends, about each room the line would go
        // to (`TopicAction::Publish`): `news` is read-only, so a line is not relayed there.
        // The host's own `publish` to it is not asked.
        .client_topics(|request| match request.action() {
            TopicAction::Publish if request.topic() == NEWS => false,
            _ => common::any_room(request, LOBBY),
        })
        // lobby tells its members who is in it (`#members` as one joins, then a `#presence`
        // line for each arrival and departure, numbered with the room's messages), and a
        // client that joins it gets its last 10 messages first. Asked once per room as it
        // is made; other rooms have neither (ask `#who @room` there: `#refused who @room
        // off`). On the hub's thread, like the closures above: it only decides.
        .topic_options(|room| {
            if room == LOBBY {
                TopicOptions::new().presence(true).history(10)
            } else {
                TopicOptions::new()
            }
        })
        // Per client, 50 messages a second unless `--rate` says otherwise: see
        // `common::Args::rate_limit` and the README's "Rate limits".
        .rate_limit(rate)
        .bind(addr)?;
    let hub = Arc::new(hub);
    let events = hub.subscribe();

    let signalled = Arc::clone(&hub);
    ctrlc::set_handler(move || {
        // Ends the event stream below once every client is closed. A second signal finds
        // the hub closed already: nothing more to do.
        match signalled.shutdown(Duration::from_secs(2)) {
            Ok(report) if !report.is_complete() => log::warn!(
                "{} of {} closed with messages undelivered",
                report.undelivered.len(),
                common::count(report.clients as u64, "client", "clients")
            ),
            Ok(_) | Err(hubcast::Error::Closed) => {}
            Err(err) => log::error!("shutdown: {err}"),
        }
    })?;
    // Only now, with the signal handler in place, tell the world we are ready.
    println!("listening on {}", hub.local_addr());
    // The host posts to news until the hub closes, or until this thread drops `stop`.
    let (stop, stopped) = mpsc::channel::<()>();
    let poster = {
        let hub = Arc::clone(&hub);
        thread::Builder::new()
            .name("news".into())
            .spawn(move || post_news(&hub, news_every, &stopped))?
    };

    // The client whose `Connected` came last, while its admission's `TopicJoined` events
    // (which follow it at once) come in: they are logged with its arrival, not again.
    let mut admitting = None;
    for event in events {
        let just_admitted = admitting.take();
        match event {
            Event::Connected { client, addr, .. } => {
                // It was sent `#joined @lobby` first, and may chat at once.
                log::info!("{client} connected from {addr}, put in @{LOBBY}");
                admitting = Some(client);
            }
            Event::TopicJoined { client, .. } if just_admitted == Some(client) => {
                admitting = just_admitted;
            }
            Event::Disconnected { client, reason, .. } => {
                log::info!("{client} left: {reason}");
            }
            // Its own `#join` and `#leave`, as applied. The events come after the client
            // may have changed its rooms again, so the rooms it is in are read from the
            // hub's table, which is always right.
            Event::TopicJoined { client, topic, .. } => {
                log::info!("{client} joined @{topic}; in {}", rooms_of(&hub, client));
            }
            Event::TopicLeft { client, topic, .. } => {
                log::info!("{client} left @{topic}; in {}", rooms_of(&hub, client));
            }
            Event::Message {
                client, payload, ..
            } if log::log_enabled!(log::Level::Debug) => {
                // The rooms the client is in now, as far as the hub's table tells (it may
                // have moved since, or left); the line reached them but news.
                let rooms = rooms_of(&hub, client);
                log::debug!("{client} in {rooms}: {}", String::from_utf8_lossy(&payload));
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
    // The events end once the hub has shut down: the poster ends now, if it has not.
    drop(stop);
    if poster.join().is_err() {
        log::error!("the news thread panicked");
    }
    let stats = hub.stats();
    log::info!(
        "stopped: {} served, {} in, {}, {} not relayed to news",
        common::count(stats.accepted, "client", "clients"),
        common::count(stats.frames_in, "message", "messages"),
        common::count(stats.frames_out, "delivery", "deliveries"),
        stats.publish_refused
    );
    Ok(())
}

/// Posts the time to news every `every`, until the hub closes or `stop` is dropped: each
/// wait is bounded by `every`, and a closed hub ends the loop at its next post.
fn post_news(hub: &Hub, every: Duration, stop: &mpsc::Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        let line = format!("the time is {} UTC", time_of_day(SystemTime::now()));
        match hub.publish(NEWS, line) {
            Ok(()) => {}
            Err(hubcast::Error::Closed) => return,
            Err(err) => {
                log::error!("posting to @{NEWS}: {err}");
                return;
            }
        }
    }
}

/// The time of day of `now` in UTC, `HH:MM:SS` (no date library needed for that).
fn time_of_day(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The rooms a client is in now, as the hub's table says: `@lobby @x`, or `no room`.
fn rooms_of(hub: &Hub, client: hubcast::ClientId) -> String {
    let rooms = hub.client(client).map(|c| c.topics).unwrap_or_default();
    if rooms.is_empty() {
        return "no room".to_owned();
    }
    let rooms: Vec<String> = rooms.iter().map(|room| format!("@{room}")).collect();
    rooms.join(" ")
}
