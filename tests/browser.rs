//! A real browser as a WebSocket client: headless Chromium opens the chat page,
//! `examples/ws_chat/index.html`, from the file system against a hub in this process that
//! also has a TCP client. What one says reaches the other both ways, and when the hub kicks
//! the browser, the page reconnects by itself.
//!
//! Needs `chromium` (`scripts/install-test-deps.sh` installs it). About 2 s, most of it
//! Chromium starting.
#![cfg(feature = "websocket")]

mod util;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hubcast::{ClientId, DisconnectReason, Event, Hub, Origins, Relay, Transport};
use util::{require_program, ChildProcess, EventLog, Peer, TempDir, LOCAL, PACE, TIMEOUT};

/// How long Chromium may take to start and connect: its first start on a busy machine is
/// slow, and this wait is never reached on success.
const BROWSER_START: Duration = Duration::from_secs(60);
/// What the page sends on every connect (its `autosend` parameter).
const HELLO: &[u8] = b"hello-from-browser";

/// The chat page as a `file://` URL (its path percent-encoded), with the test hooks:
/// connect to `ws`, send [`HELLO`] on every connect, send back each message as `ack:` + it.
fn page_url(ws: SocketAddr) -> String {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ws_chat/index.html");
    let path = page.to_str().expect("the page's path is UTF-8");
    let mut url = String::from("file://");
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    let hello = std::str::from_utf8(HELLO).expect("ASCII");
    url + &format!("?ws=ws://{ws}/&autosend={hello}&echo=1")
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

/// Waits for a client other than `known` to connect, and for its first message, which
/// must be [`HELLO`]: the page (re)connected.
fn page_connects(
    events: &mut EventLog,
    browser: &Browser,
    limit: Duration,
    known: &[ClientId],
) -> ClientId {
    let id = wait_event(events, browser, limit, "the page to connect", |e| match e {
        Event::Connected { client, .. } if !known.contains(client) => Some(*client),
        _ => None,
    });
    let hello = wait_event(events, browser, TIMEOUT, "the page's hello", |e| match e {
        Event::Message {
            client, payload, ..
        } if *client == id => Some(payload.clone()),
        _ => None,
    });
    assert_eq!(hello, HELLO, "the page's first message");
    id
}

/// The TCP client's next line; fails the test, with Chromium's log, if none comes.
fn tcp_line(tcp: &mut Peer, browser: &Browser) -> Vec<u8> {
    tcp.read_line_within(TIMEOUT).unwrap_or_else(|| {
        panic!(
            "no line for the TCP client within {TIMEOUT:?}; Chromium's stderr (end):\n{}",
            browser.log()
        )
    })
}

#[test]
fn chromium_chats_with_a_tcp_client_and_reconnects_when_kicked() {
    if !require_program("chromium") {
        return;
    }
    let started = Instant::now();
    // As examples/ws_chat_server.rs: a page opened from a file has the origin `null`.
    let hub = Hub::builder()
        .relay(Relay::Others)
        .listen(LOCAL, Transport::WebSocket)
        .websocket_origins(Origins::List(vec!["null".into()]))
        .bind(LOCAL)
        .expect("bind");
    let ws = hub.local_addrs()[1].addr;
    let mut events = EventLog::subscribe(&hub);
    let mut tcp = Peer::connect(hub.local_addr());
    let tcp_id = events.connected(tcp.addr());

    let browser = Browser::launch(&page_url(ws));
    let first = page_connects(&mut events, &browser, BROWSER_START, &[tcp_id]);
    let connected_after = started.elapsed();
    // Relayed to the TCP client.
    assert_eq!(tcp_line(&mut tcp, &browser), HELLO);

    // A line from TCP reaches the page, which sends it back: the hub sees the answer and
    // relays it to the TCP client (never to the page itself).
    tcp.write(b"line from tcp\n");
    assert_eq!(tcp_line(&mut tcp, &browser), b"ack:line from tcp");
    let ack = wait_event(
        &mut events,
        &browser,
        TIMEOUT,
        "the page's ack",
        |e| match e {
            Event::Message {
                client, payload, ..
            } if *client == first => Some(payload.clone()),
            _ => None,
        },
    );
    assert_eq!(ack, "ack:line from tcp");

    // Kicked, the page reconnects (after 0.25 to 0.5 s) as a new client and says hello
    // again.
    hub.disconnect(first).expect("disconnect");
    assert_eq!(events.disconnected(first), DisconnectReason::Kicked);
    let kicked_at = Instant::now();
    let second = page_connects(&mut events, &browser, TIMEOUT, &[tcp_id, first]);
    let reconnected_after = kicked_at.elapsed();
    assert_eq!(tcp_line(&mut tcp, &browser), HELLO);
    tcp.write(b"once more\n");
    assert_eq!(tcp_line(&mut tcp, &browser), b"ack:once more");

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
        "Chromium connected after {connected_after:.1?}, reconnected {reconnected_after:.1?} \
         after the kick; {:.1?} in all",
        started.elapsed()
    );
}
