//! A real browser as a WebSocket client: headless Chromium opens the chat page,
//! `examples/ws_chat/index.html`, served by a hub in this process set up as
//! `examples/ws_chat_server.rs` is (the page at `/`, WebSocket at `/ws`, the protocol,
//! rooms, every client put in `lobby`), which also has a TCP client. Loaded from the hub,
//! the page has the hub's origin: the default same-origin check lets it in. What one says
//! in `lobby` reaches the other both ways; when the hub kicks the browser, the page
//! reconnects by itself and resumes its streams, so what was said while it was away
//! reaches it, exactly once.
//!
//! The page's test hooks do the talking: it says [`HELLO`] in its room on every connect,
//! and sends back every message it shows as `ack:` + message, so the TCP client hears what
//! the page has shown, in order.
//!
//! Read-only, over server-sent events (`?transport=sse`, what the page falls back to when
//! its WebSocket cannot connect): the page reads `lobby` through an `EventSource`, the hub
//! cuts it while the host publishes, and the browser reconnects by itself, sending the last
//! id it saw (`Last-Event-ID`): the hub sends exactly what it missed, with no resume code
//! in the page. Read-only, the page cannot say anything in the room, so its hooks report
//! over a WebSocket of their own (`?ack=ws://…`, the same hub here): the host hears, in
//! order, what the page has shown.
//!
//! Who is here: in a room with presence (`TopicOptions::presence`, lobby as in
//! `ws_chat_server`), the page opened as `?user=alice` lists the room's members by the
//! protocol's client rule, from `#members` and `#presence`: alice alone, then alice and
//! bob (two TCP connections of user bob, one member), then alice alone again once both
//! are gone. The page reports its list's text each time it changes (`members=1`).
//!
//! And the page's words for a refused resume (`#noresume`), run in Chromium on their own:
//! after a hub restart it says the hub restarted, and whether anything was said since,
//! not that messages were missed.
//!
//! Needs `chromium` (`scripts/install-test-deps.sh` installs it). About 3 s, most of it
//! Chromium starting and the page's reconnect backoff.
#![cfg(feature = "websocket")]

mod util;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubcast::{
    Admit, ClientId, DisconnectReason, Event, Hub, Protocol, Relay, TopicOptions, Transport,
};
use util::{require_program, ChildProcess, EventLog, Peer, TempDir, LOCAL, PACE, TIMEOUT};

/// How long Chromium may take to start and connect: its first start on a busy machine is
/// slow, and this wait is never reached on success.
const BROWSER_START: Duration = Duration::from_secs(60);
/// What the page sends on every connect (its `autosend` parameter).
const HELLO: &[u8] = b"hello-from-browser";
/// The room every client is put in, as `ws_chat_server` does, and the page's room.
const LOBBY: &str = "lobby";
/// The chat page, served by the test's hubs at `/` as `ws_chat_server` serves it.
const PAGE: &str = include_str!("../examples/ws_chat/index.html");

/// The chat page served by the hub listening on `web`, with the test hooks: send [`HELLO`]
/// on every connect, send back each message as `ack:` + it. It connects to the hub that
/// served it (`ws://<web>/ws`) by itself.
fn page_url(web: SocketAddr) -> String {
    let hello = std::str::from_utf8(HELLO).expect("ASCII");
    format!("http://{web}/?autosend={hello}&echo=1")
}

/// Headless Chromium on a page, with everything it writes in a directory of its own: its
/// profile and, through `HOME`, what it keeps outside the profile (its crash reporter's
/// database). Dropping it kills the browser's process group, waits for the crash reporter's
/// handlers, which leave that group and end by themselves once the browser is gone, and
/// removes the directory.
struct Browser {
    process: Option<ChildProcess>,
    dir: TempDir,
}

impl Browser {
    fn launch(url: &str) -> Browser {
        Browser::launch_with(url, &[])
    }

    /// Chromium on `url` with `extra` flags as well (`--dump-dom`).
    fn launch_with(url: &str, extra: &[&str]) -> Browser {
        let dir = TempDir::new("chromium");
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                // Straight to the hub even if the environment names a proxy.
                "--no-proxy-server",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(extra)
            .arg(url)
            .env("HOME", dir.path());
        Browser {
            process: Some(ChildProcess::spawn_group(command)),
            dir,
        }
    }

    /// The end of what Chromium wrote to stderr, for failure messages.
    fn log(&self) -> String {
        let stderr = self
            .process
            .as_ref()
            .map(ChildProcess::stderr)
            .unwrap_or_default();
        let lines: Vec<&str> = stderr.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        drop(self.process.take());
        // The crash reporter's handlers name the directory on their command line. Only
        // waited for: nothing here signals a process it did not start itself.
        let needle = self.dir.path().as_os_str().as_encoded_bytes().to_vec();
        let names_dir = |entry: std::fs::DirEntry| -> bool {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        };
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            let Ok(procs) = std::fs::read_dir("/proc") else {
                return;
            };
            if !procs.filter_map(Result::ok).any(names_dir) {
                return;
            }
            // Nothing announces their end to this process: look again soon.
            std::thread::sleep(PACE);
        }
        eprintln!(
            "processes still use {} after {TIMEOUT:?}",
            self.dir.path().display()
        );
    }
}

/// Receives events until `pick` picks one, for at most `limit`; fails the test, with
/// Chromium's log, if none does.
fn wait_event<T>(
    events: &mut EventLog,
    browser: &Browser,
    limit: Duration,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.next_within(left) {
            Some(event) => {
                if let Some(picked) = pick(&event) {
                    return picked;
                }
            }
            None => panic!(
                "no event for {what} within {limit:?}; events: {:?}\nChromium's stderr \
                 (end):\n{}",
                events.seen,
                browser.log()
            ),
        }
    }
}

/// Waits for a client other than `known` to connect, and puts it in [`LOBBY`], as
/// `ws_chat_server` does: the page (re)connected.
fn page_connects(
    hub: &Hub,
    events: &mut EventLog,
    browser: &Browser,
    limit: Duration,
    known: &[ClientId],
) -> ClientId {
    let id = wait_event(events, browser, limit, "the page to connect", |e| match e {
        Event::Connected { client, .. } if !known.contains(client) => Some(*client),
        _ => None,
    });
    hub.join(id, LOBBY).expect("join lobby");
    id
}

/// The TCP client's next line; fails the test, with Chromium's log, if none comes.
fn tcp_line(tcp: &mut Peer, browser: &Browser) -> String {
    let line = tcp.read_line_within(TIMEOUT).unwrap_or_else(|| {
        panic!(
            "no line for the TCP client within {TIMEOUT:?}; Chromium's stderr (end):\n{}",
            browser.log()
        )
    });
    String::from_utf8(line).expect("UTF-8")
}

/// What the TCP client next hears, past the `#own` markers of its own lines: the stream
/// (`*` or `@lobby`) and the payload of `<seq> <payload>` or `<seq>@lobby <payload>`.
fn tcp_heard(tcp: &mut Peer, browser: &Browser) -> (String, String) {
    loop {
        let line = tcp_line(tcp, browser);
        if line.starts_with("#own @lobby ") {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(head, payload)| {
            let (seq, stream) = match head.split_once('@') {
                Some((seq, topic)) => (seq, format!("@{topic}")),
                None => (head, "*".to_owned()),
            };
            let known = stream == "*" || stream == "@lobby";
            (known && seq.parse::<u64>().is_ok()).then(|| (stream, payload.to_owned()))
        });
        return parsed.unwrap_or_else(|| panic!("expected a message, got {line:?}"));
    }
}

/// A message of `lobby`, as [`tcp_heard`] gives it.
fn in_lobby(payload: impl AsRef<[u8]>) -> (String, String) {
    let text = std::str::from_utf8(payload.as_ref()).expect("UTF-8");
    ("@lobby".to_owned(), text.to_owned())
}

#[test]
fn chromium_chats_with_a_tcp_client_and_resumes_after_a_kick() {
    if !require_program("chromium") {
        return;
    }
    let started = Instant::now();
    // As examples/ws_chat_server.rs (the page served at `/`, WebSocket at `/ws`, the
    // default origin check), with a gate: while `away` is set, new connections are
    // refused, so the page stays away for as long as the test needs, whatever its backoff.
    let away = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&away);
    let hub = Hub::builder()
        .protocol(Protocol::Sequenced)
        .relay(Relay::Topics)
        .client_topics(|_| true)
        .accept_filter(move |_| !gate.load(SeqCst))
        .listen(LOCAL, Transport::WebSocket)
        .page("/", "text/html; charset=utf-8", PAGE)
        .websocket_path(Some("/ws"))
        .bind(LOCAL)
        .expect("bind");
    let ws = hub.local_addrs()[1].addr;
    let mut events = EventLog::subscribe(&hub);
    let mut tcp = Peer::connect(hub.local_addr());
    let tcp_id = events.connected(tcp.addr());
    hub.join(tcp_id, LOBBY).expect("join lobby");
    assert!(tcp.read_text_line().starts_with("#at * "));
    assert!(tcp.read_text_line().starts_with("#joined @lobby "));

    let browser = Browser::launch(&page_url(ws));
    let first = page_connects(&hub, &mut events, &browser, BROWSER_START, &[tcp_id]);
    let connected_after = started.elapsed();
    // Once in lobby, the page says hello there: its first message.
    let page_said = |events: &mut EventLog, id: ClientId| {
        wait_event(
            events,
            &browser,
            TIMEOUT,
            "a message from the page",
            |e| match e {
                Event::Message {
                    client, payload, ..
                } if *client == id => Some(payload.clone()),
                _ => None,
            },
        )
    };
    assert_eq!(page_said(&mut events, first), HELLO);
    assert_eq!(tcp_heard(&mut tcp, &browser), in_lobby(HELLO));

    // A line from TCP reaches the page, which sends it back: the hub sees the answer and
    // relays it to the TCP client (never to the page itself).
    tcp.write(b"line from tcp\n");
    assert_eq!(tcp_heard(&mut tcp, &browser), in_lobby("ack:line from tcp"));
    assert_eq!(page_said(&mut events, first), "ack:line from tcp");

    // Kicked, the page is away until the gate opens: meanwhile the TCP client says three
    // lines in lobby and the host broadcasts one. The TCP client hears its lines' `#own`
    // markers and the broadcast: all are numbered, kept for replay, and missed by the page.
    away.store(true, SeqCst);
    hub.disconnect(first).expect("disconnect");
    assert_eq!(events.disconnected(first), DisconnectReason::Kicked);
    let kicked_at = Instant::now();
    let missed = ["missed 1", "missed 2", "missed 3"];
    for line in missed {
        tcp.write(format!("{line}\n").as_bytes());
    }
    hub.broadcast("news while away").expect("broadcast");
    let (mut own, mut news) = (0, false);
    while own < missed.len() || !news {
        let line = tcp_line(&mut tcp, &browser);
        if line.starts_with("#own @lobby ") {
            own += 1;
        } else if line
            .split_once(' ')
            .is_some_and(|(seq, text)| seq.parse::<u64>().is_ok() && text == "news while away")
        {
            news = true;
        } else {
            panic!("unexpected line for the TCP client: {line:?}");
        }
    }
    away.store(false, SeqCst);

    // Back, the page resumes both streams it had: `*` (the broadcast) and `@lobby` (the
    // three lines). Live messages race with its resumes: they reach it before or after the
    // answers, as the hub's order has it, and the page must show each once, in order.
    let second = page_connects(&hub, &mut events, &browser, TIMEOUT, &[tcp_id, first]);
    let reconnected_after = kicked_at.elapsed();
    hub.broadcast("live news").expect("broadcast");
    tcp.write(b"live line\n");
    // `*` gets back the one broadcast before the page's new connection; `@lobby` the
    // three lines, and the live one if the hub took it before the resume.
    let mut replayed = Vec::new();
    while replayed.len() < 2 {
        let resumed = wait_event(
            &mut events,
            &browser,
            TIMEOUT,
            "the page to resume its streams",
            |e| match e {
                Event::Resumed {
                    client,
                    stream,
                    replayed,
                    ..
                } if *client == second => Some((stream.clone(), *replayed)),
                Event::ResumeRefused { client, .. } if *client == second => {
                    panic!("the page could not resume: {e:?}")
                }
                _ => None,
            },
        );
        replayed.push(resumed);
    }
    replayed.sort();
    assert!(
        matches!(&replayed[..], [(all, 1), (lobby, 3..=4)] if all == "*" && lobby == "@lobby"),
        "replayed: {replayed:?}"
    );

    // The page says hello again and acks each message it shows. Once the TCP client has
    // heard the live broadcast, the page has been sent it too, so the ack of a line the
    // TCP client says then comes after every other: a message shown twice would be acked
    // twice before it, one never shown never acked.
    let mut heard = Vec::new();
    loop {
        let (stream, said) = tcp_heard(&mut tcp, &browser);
        if stream == "*" {
            assert_eq!(said, "live news");
            tcp.write(b"once more\n");
        } else if said == "ack:once more" {
            break;
        } else {
            heard.push(said);
        }
    }
    let hello = std::str::from_utf8(HELLO).expect("ASCII");
    // Each stream's messages in order; the two streams, and the hello, interleaved as
    // they came.
    let lobby = ["missed 1", "missed 2", "missed 3", "live line"].map(|m| format!("ack:{m}"));
    let hub_wide = ["news while away", "live news"].map(|m| format!("ack:{m}"));
    for stream in [&lobby[..], &hub_wide[..]] {
        let order: Vec<&String> = heard.iter().filter(|said| stream.contains(said)).collect();
        assert!(
            order.into_iter().eq(stream.iter()),
            "acks of one stream out of order: {heard:?}"
        );
    }
    let mut expected: Vec<String> = lobby.iter().chain(&hub_wide).cloned().collect();
    expected.push(hello.to_owned());
    expected.sort();
    heard.sort();
    assert_eq!(heard, expected, "what the page said after it came back");

    // Killing the browser closes its connection.
    drop(browser);
    let reason = events.disconnected(second);
    assert!(
        matches!(
            reason,
            DisconnectReason::PeerClosed | DisconnectReason::Reset
        ),
        "the page left with {reason:?}"
    );
    println!(
        "Chromium connected after {connected_after:.1?}, came back {reconnected_after:.1?} \
         after the kick; {:.1?} in all",
        started.elapsed()
    );
}

/// The user key the read-only tests' hubs give event streams, to tell them from the page's
/// report socket (a WebSocket) in `Event::Connected`.
const EVENT_STREAM: &str = "event-stream";
/// The user key of the page's report socket.
const REPORTS: &str = "reports";

/// A hub for the page read-only, as `ws_chat_server`'s web listener (the page at `/`,
/// WebSocket at `/ws`, event streams at `/events`), keeping `replay` messages a stream, with
/// a browser's retry delay of 200 ms and a gate: while `away` is set, new connections are
/// refused, so the browser stays away for as long as the test needs. It gives event
/// streams the user key [`EVENT_STREAM`], and WebSocket clients [`REPORTS`].
fn read_only_hub(away: &Arc<AtomicBool>, replay: usize) -> Hub {
    let gate = Arc::clone(away);
    Hub::builder()
        .transport(Transport::WebSocket)
        .protocol(Protocol::Sequenced)
        .relay(Relay::Topics)
        .replay_messages(replay)
        .client_topics(|_| true)
        .admit(|request| {
            let user = if request.is_event_stream() {
                EVENT_STREAM
            } else {
                REPORTS
            };
            Admit::new().user(user)
        })
        .accept_filter(move |_| !gate.load(SeqCst))
        .page("/", "text/html; charset=utf-8", PAGE)
        .websocket_path(Some("/ws"))
        .sse_path(Some("/events"))
        .sse_retry(Duration::from_millis(200))
        .bind(LOCAL)
        .expect("bind")
}

/// The page read-only in Chromium, seen from the host: its event stream and its report
/// socket, and what it has reported, in order, kept whatever the test waits for meanwhile.
struct ReadOnlyPage {
    browser: Browser,
    stream: ClientId,
    reports: ClientId,
    heard: Vec<String>,
}

impl ReadOnlyPage {
    /// Chromium on the page of the hub at `web` with `query` (which makes it read-only),
    /// told to report over `ws://<web>/ws`; returns once both its connections are in.
    fn open(web: SocketAddr, query: &str, events: &mut EventLog) -> ReadOnlyPage {
        let hello = std::str::from_utf8(HELLO).expect("ASCII");
        let url = format!("http://{web}/?{query}&ack=ws://{web}/ws&autosend={hello}&echo=1");
        let browser = Browser::launch(&url);
        let (mut stream, mut reports) = (None, None);
        while stream.is_none() || reports.is_none() {
            let (id, user) = wait_event(
                events,
                &browser,
                BROWSER_START,
                "the page's connections",
                |e| match e {
                    Event::Connected { client, user, .. } => Some((*client, user.clone())),
                    _ => None,
                },
            );
            match user.as_deref() {
                Some(EVENT_STREAM) => stream = Some(id),
                Some(REPORTS) => reports = Some(id),
                other => panic!("a connection of user {other:?}"),
            }
        }
        ReadOnlyPage {
            browser,
            stream: stream.expect("stream"),
            reports: reports.expect("reports"),
            heard: Vec::new(),
        }
    }

    /// Receives events until `pick` picks one (for at most [`TIMEOUT`]), keeping the
    /// page's reports on the way.
    fn wait<T>(
        &mut self,
        events: &mut EventLog,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let (reports, heard) = (self.reports, &mut self.heard);
        wait_event(events, &self.browser, TIMEOUT, what, |e| {
            if let Event::Message {
                client, payload, ..
            } = e
            {
                if *client == reports {
                    heard.push(String::from_utf8(payload.to_vec()).expect("UTF-8"));
                }
            }
            pick(e)
        })
    }

    /// Waits until the page has reported `n` things in all.
    fn reported(&mut self, events: &mut EventLog, n: usize) {
        if self.heard.len() >= n {
            return;
        }
        let reports = self.reports;
        let mut count = self.heard.len();
        self.wait(events, "the page's reports", |e| {
            if matches!(e, Event::Message { client, .. } if *client == reports) {
                count += 1;
            }
            (count >= n).then_some(())
        });
    }

    /// Cuts the page's event stream while `away` refuses new connections and `meanwhile`
    /// runs; waits for the browser to open a new one by itself, and returns it with the
    /// hub's answer to its `Last-Event-ID`: the messages replayed, or why not.
    fn cut(
        &mut self,
        hub: &Hub,
        events: &mut EventLog,
        away: &AtomicBool,
        meanwhile: impl FnOnce(),
    ) -> Result<u64, String> {
        away.store(true, SeqCst);
        hub.disconnect(self.stream).expect("disconnect");
        assert_eq!(events.disconnected(self.stream), DisconnectReason::Kicked);
        meanwhile();
        away.store(false, SeqCst);
        let old = self.stream;
        self.stream = self.wait(events, "a new event stream", |e| match e {
            Event::Connected {
                client,
                user: Some(user),
                ..
            } if user == EVENT_STREAM && *client != old => Some(*client),
            _ => None,
        });
        let new = self.stream;
        self.wait(events, "the event stream to resume", |e| match e {
            Event::Resumed {
                client,
                stream,
                replayed,
                ..
            } if *client == new => {
                assert_eq!(stream, "@lobby");
                Some(Ok(*replayed))
            }
            Event::ResumeRefused { client, reason, .. } if *client == new => {
                Some(Err(format!("{reason:?}")))
            }
            _ => None,
        })
    }

    /// Closes the browser and checks that its connections closed, and that it reported
    /// nothing more than the test has seen.
    fn close(self, events: &mut EventLog) {
        let ReadOnlyPage {
            browser,
            stream,
            reports,
            heard,
        } = self;
        drop(browser);
        for id in [stream, reports] {
            let reason = events.disconnected(id);
            assert!(
                matches!(
                    reason,
                    DisconnectReason::PeerClosed | DisconnectReason::Reset
                ),
                "{id} left with {reason:?}"
            );
        }
        assert_eq!(
            events.messages_from(reports).len(),
            heard.len(),
            "{heard:?}"
        );
    }
}

/// Read-only, over server-sent events. The page is told to use them (`transport=sse`) and
/// to report over a WebSocket of its own (`ack=ws://…/ws`): in read-only mode it cannot
/// write to the room, and a WebSocket keeps its reports in the order the page made them,
/// which the host reads as `Event::Message`s of that socket. The hub tells the two
/// connections apart as it admits them (`AuthRequest::is_event_stream`, shown in
/// `Event::Connected` as a user key). The report socket is in no room, so its reports go
/// to the host only.
///
/// The host publishes numbered messages to `lobby`: some live, some while the hub has cut
/// the event stream and refuses new connections, some after the browser reconnected by
/// itself (after the 200 ms `retry:` the hub gave it). The page must show every one exactly
/// once, in order: what it missed comes back because the browser sends `Last-Event-ID`,
/// and the page has no code for it.
#[test]
fn chromium_reads_a_room_over_server_sent_events_and_resumes_by_itself() {
    if !require_program("chromium") {
        return;
    }
    let started = Instant::now();
    let away = Arc::new(AtomicBool::new(false));
    let hub = read_only_hub(&away, 1024);
    let mut events = EventLog::subscribe(&hub);
    let mut page = ReadOnlyPage::open(hub.local_addr(), "transport=sse&room=lobby", &mut events);
    let connected_after = started.elapsed();
    let publish = |range: std::ops::RangeInclusive<u32>| {
        for n in range {
            hub.publish(LOBBY, format!("m{n}")).expect("publish");
        }
    };
    // The page says hello once its event stream is in lobby (`#joined`).
    page.reported(&mut events, 1);
    publish(1..=3);
    page.reported(&mut events, 4);

    // Cut, and kept away while m4 to m8 are said: the browser retries every 200 ms,
    // refused. Back by itself, with the id of m3, it gets them again.
    let cut_at = Instant::now();
    let resumed = page.cut(&hub, &mut events, &away, || publish(4..=8));
    let reconnected_after = cut_at.elapsed();
    assert_eq!(resumed, Ok(5));
    publish(9..=10);
    // Hello again as the new stream joins lobby, before what it missed; then the rest.
    page.reported(&mut events, 12);
    let hello = std::str::from_utf8(HELLO).expect("ASCII");
    let mut expected = vec![hello.to_owned()];
    expected.extend((1..=3).map(|n| format!("ack:m{n}")));
    expected.push(hello.to_owned());
    expected.extend((4..=10).map(|n| format!("ack:m{n}")));
    assert_eq!(page.heard, expected, "what the page showed, in order");
    page.close(&mut events);
    println!(
        "Chromium's event stream opened after {connected_after:.1?}, came back \
         {reconnected_after:.1?} after the cut; {:.1?} in all",
        started.elapsed()
    );
}

/// The page falls back to server-sent events by itself when its WebSocket cannot connect
/// (here an address where the hub refuses upgrades: 404), reads its room, and when the hub
/// cannot send again what it missed (its ring keeps 2 messages, 3 were said), shows the
/// `reset` event (reported as `reset:` + its data), then goes on live.
#[test]
fn chromium_falls_back_to_server_sent_events_and_shows_a_reset() {
    if !require_program("chromium") {
        return;
    }
    let away = Arc::new(AtomicBool::new(false));
    let hub = read_only_hub(&away, 2);
    let web = hub.local_addr();
    let mut events = EventLog::subscribe(&hub);
    let mut page = ReadOnlyPage::open(web, &format!("ws=ws://{web}/nowhere"), &mut events);
    page.reported(&mut events, 1);
    hub.publish(LOBBY, "m1").expect("publish");
    page.reported(&mut events, 2);
    let resumed = page.cut(&hub, &mut events, &away, || {
        for m in ["m2", "m3", "m4"] {
            hub.publish(LOBBY, m).expect("publish");
        }
    });
    assert!(resumed.is_err(), "{resumed:?}");
    hub.publish(LOBBY, "m5").expect("publish");
    page.reported(&mut events, 5);
    let hello = std::str::from_utf8(HELLO).expect("ASCII");
    let (start, end) = (&page.heard[..3], &page.heard[4..]);
    assert_eq!(start, [hello, "ack:m1", hello], "{:?}", page.heard);
    assert!(
        page.heard[3].starts_with("reset:#noresume @lobby old "),
        "{:?}",
        page.heard
    );
    assert_eq!(end, ["ack:m5"], "{:?}", page.heard);
    page.close(&mut events);
}

/// The page lists the members of its room (lobby has presence here, as in
/// `ws_chat_server`): opened as user alice it shows her alone, then alice and bob when
/// bob's first TCP connection arrives; a second connection of bob, and the first one
/// leaving, change nothing it shows; once both are gone, alice alone again. The page
/// reports the list's text each time it changes (`members=1`), as a message in its room.
#[test]
fn chromium_lists_who_is_in_its_room() {
    if !require_program("chromium") {
        return;
    }
    // As examples/ws_chat_server.rs: every client in lobby, lobby with presence, a browser
    // a user by its `?user=`; here TCP clients are user bob.
    let hub = Hub::builder()
        .protocol(Protocol::Sequenced)
        .relay(Relay::Topics)
        .client_topics(|_| true)
        .topic_options(|room| TopicOptions::new().presence(room == LOBBY))
        .admit(|request| {
            let user = request
                .query()
                .and_then(|q| q.strip_prefix("user="))
                .unwrap_or("bob");
            Admit::new().topic(LOBBY).user(user)
        })
        .listen(LOCAL, Transport::WebSocket)
        .page("/", "text/html; charset=utf-8", PAGE)
        .websocket_path(Some("/ws"))
        .bind(LOCAL)
        .expect("bind");
    let ws = hub.local_addrs()[1].addr;
    let mut events = EventLog::subscribe(&hub);
    let browser = Browser::launch(&format!("http://{ws}/?user=alice&members=1"));
    let page = wait_event(
        &mut events,
        &browser,
        BROWSER_START,
        "the page to connect",
        |e| match e {
            Event::Connected {
                client,
                user: Some(user),
                ..
            } if user == "alice" => Some(*client),
            _ => None,
        },
    );
    let mut shown = Vec::new();
    let mut shows = |events: &mut EventLog, what: &str| {
        let said = wait_event(events, &browser, TIMEOUT, what, |e| match e {
            Event::Message {
                client, payload, ..
            } if *client == page => Some(String::from_utf8(payload.to_vec()).expect("UTF-8")),
            _ => None,
        });
        shown.push(said.clone());
        said
    };
    assert_eq!(shows(&mut events, "alice alone"), "members:1 here: alice");

    let first = Peer::connect(hub.local_addr());
    let first_id = events.connected(first.addr());
    assert_eq!(
        shows(&mut events, "alice and bob"),
        "members:2 here: alice, bob"
    );
    let second = Peer::connect(hub.local_addr());
    let second_id = events.connected(second.addr());
    drop(first);
    events.disconnected(first_id);
    drop(second);
    events.disconnected(second_id);
    assert_eq!(
        shows(&mut events, "alice alone again"),
        "members:1 here: alice",
        "bob's second connection, or his first leaving, changed the list"
    );
    assert_eq!(
        shown,
        [
            "members:1 here: alice",
            "members:2 here: alice, bob",
            "members:1 here: alice"
        ]
    );
    assert_eq!(hub.members(LOBBY).len(), 1);
    drop(browser);
    events.disconnected(page);
}

/// The page's `noresumeText`, run by Chromium on a page of its own: what the chat shows for
/// each `#noresume` reason.
#[test]
fn the_page_says_what_a_refused_resume_means() {
    if !require_program("chromium") {
        return;
    }
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ws_chat/index.html"),
    )
    .expect("the page");
    let start = page
        .find("function noresumeText(")
        .expect("noresumeText in the page");
    let end = start + page[start..].find("\n}\n").expect("its end") + 3;
    let cases = r#"[
        ["epoch", "*", 0], ["epoch", "*", 1], ["epoch", "@lobby", 3],
        ["old", "@lobby", 9], ["much", "*", 9], ["denied", "@news", 9], ["other", "@rust", 9]
    ]"#;
    let script = format!(
        "<!doctype html><body><script>{}\n\
         document.body.textContent = 'RESULT' + JSON.stringify({cases}.map(c => noresumeText(...c)));\
         </script></body>",
        &page[start..end]
    );
    let dir = TempDir::new("page-words");
    let file = dir.path().join("words.html");
    std::fs::write(&file, script).expect("write");
    let mut browser = Browser::launch_with(&format!("file://{}", file.display()), &["--dump-dom"]);
    let process = browser.process.as_mut().expect("running");
    let line = loop {
        let Some(line) = process.try_line() else {
            panic!("no result from Chromium:\n{}", process.stderr());
        };
        if let Some(at) = line.find("RESULT") {
            break line[at + "RESULT".len()..].to_owned();
        }
    };
    let json = line.split("</body>").next().expect("the text");
    let json = json.replace("&amp;", "&");
    assert_eq!(
        json,
        concat!(
            r#"["the hub restarted: earlier history is gone; nothing has been said since","#,
            r#""the hub restarted: earlier history is gone; 1 message said since is not shown","#,
            r#""the hub restarted, or lobby emptied and started again: earlier history is gone; 3 messages said since are not shown","#,
            r#""missed messages in lobby: the hub no longer keeps them","#,
            r#""missed messages: too many for the hub to send again","#,
            r#""missed messages in news: the hub does not let you read them","#,
            r#""missed messages in rust (other)"]"#,
        )
    );
}

/// With compression on (feature `deflate`), Chromium, which offers `permessage-deflate` on
/// every connection, negotiates it: a long line from TCP reaches the page compressed (once,
/// counted in the hub's stats), the page shows it and sends it back, and the TCP client
/// hears it whole.
#[cfg(feature = "deflate")]
#[test]
fn chromium_chats_with_compression_on() {
    if !require_program("chromium") {
        return;
    }
    let hub = Hub::builder()
        .protocol(Protocol::Sequenced)
        .relay(Relay::Topics)
        .client_topics(|_| true)
        .websocket_compression(true)
        .listen(LOCAL, Transport::WebSocket)
        .page("/", "text/html; charset=utf-8", PAGE)
        .websocket_path(Some("/ws"))
        .bind(LOCAL)
        .expect("bind");
    let ws = hub.local_addrs()[1].addr;
    let mut events = EventLog::subscribe(&hub);
    let mut tcp = Peer::connect(hub.local_addr());
    let tcp_id = events.connected(tcp.addr());
    hub.join(tcp_id, LOBBY).expect("join lobby");
    assert!(tcp.read_text_line().starts_with("#at * "));
    assert!(tcp.read_text_line().starts_with("#joined @lobby "));

    let browser = Browser::launch(&page_url(ws));
    let page = page_connects(&hub, &mut events, &browser, BROWSER_START, &[tcp_id]);
    assert_eq!(tcp_heard(&mut tcp, &browser), in_lobby(HELLO));
    assert_eq!(hub.stats().compressed_clients, 1, "Chromium negotiated it");

    // A chat line of JSON, long enough to be compressed.
    let mut long = String::from("{\"orders\":[");
    for i in 0..20 {
        long.push_str(&format!(
            "{{\"id\":{i},\"item\":\"widget\",\"qty\":{}}},",
            i % 7
        ));
    }
    long.push_str("{}]}");
    assert!(long.len() >= 512, "{}", long.len());
    tcp.write(format!("{long}\n").as_bytes());
    assert_eq!(
        tcp_heard(&mut tcp, &browser),
        in_lobby(format!("ack:{long}"))
    );
    let echoed = wait_event(
        &mut events,
        &browser,
        TIMEOUT,
        "the page's ack",
        |e| match e {
            Event::Message {
                client, payload, ..
            } if *client == page && payload.starts_with(b"ack:{") => Some(payload.clone()),
            _ => None,
        },
    );
    assert_eq!(echoed, format!("ack:{long}").as_bytes());
    // The stats are published at the end of the round that wrote the frame.
    events.wait_until("the compression counted", || {
        hub.stats().compressed_frames >= 1
    });
    let stats = hub.stats();
    assert!(
        stats.compressed_bytes_out < stats.compressed_bytes_in,
        "{stats:?}"
    );
    println!(
        "compressed {} messages, {} bytes to {}; inflated {} from Chromium",
        stats.compressed_frames,
        stats.compressed_bytes_in,
        stats.compressed_bytes_out,
        stats.inflated_messages
    );
}
