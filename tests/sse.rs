//! Server-sent events (feature `websocket`), read as `curl -N` reads them: the response
//! headers, events framed once per broadcast (multi-line payloads, ids under the protocol),
//! heartbeats, `Last-Event-ID` resumes (replayed with their ids, or a `reset` past the
//! ring), topic streams and who may open them, slow event streams under each policy,
//! binary messages, and what else an HTTP listener answers (pages, 404, 405).
#![cfg(feature = "websocket")]

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use hubcast::{
    Auth, ClientId, DisconnectReason, Hub, HubBuilder, Message, Protocol, SlowClientPolicy,
    Transport,
};
use util::{header, http_exchange, stats_when, EventLog, Peer, SseClient};

/// A hub with an HTTP listener serving event streams at `/events`, beside its TCP listener.
fn builder() -> HubBuilder {
    Hub::builder()
        .listen("127.0.0.1:0", Transport::WebSocket)
        .websocket_path(Some("/ws"))
        .sse_path(Some("/events"))
}

/// The HTTP listener's address.
fn http_addr(hub: &Hub) -> SocketAddr {
    util::ws_addr(hub)
}

/// Opens the hub-wide stream and waits until the hub counts it as connected; returns it
/// after its opening (`retry:`, and under the protocol its position).
fn open(hub: &Hub, events: &mut EventLog, target: &str, extra: &[&str]) -> SseClient {
    open_id(hub, events, target, extra).0
}

/// [`open`], with the client's id.
fn open_id(
    hub: &Hub,
    events: &mut EventLog,
    target: &str,
    extra: &[&str],
) -> (SseClient, ClientId) {
    let mut client = SseClient::open(http_addr(hub), target, extra);
    let id = events.connected(client.peer.addr());
    let first = client.next();
    assert_eq!(first.retry.as_deref(), Some("2000"), "{first:?}");
    (client, id)
}

#[test]
fn the_response_keeps_proxies_from_buffering() {
    let hub = builder().bind("127.0.0.1:0").unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut client = open(&hub, &mut events, "/events", &[]);
    let head = &client.head;
    assert_eq!(
        header(head, "cache-control"),
        Some("no-cache, no-transform")
    );
    assert_eq!(header(head, "x-accel-buffering"), Some("no"));
    assert_eq!(header(head, "content-length"), None);
    // Without the protocol: data only, no ids; each line of a message its own data line.
    hub.broadcast("one").unwrap();
    hub.broadcast("two\nlines\r\nand\rmore").unwrap();
    hub.broadcast(Message::text("")).unwrap();
    let one = client.next_event();
    assert_eq!((one.id, one.data.as_deref()), (None, Some("one")));
    assert_eq!(
        client.next_event().data.as_deref(),
        Some("two\nlines\nand\nmore")
    );
    let empty = client.next_event();
    assert_eq!(empty.data.as_deref(), Some(""));
    assert!(!empty.dispatched(), "browsers dispatch no empty event");
    let stats = hub.stats();
    assert_eq!((stats.sse_opened, stats.connected), (1, 1));
}

#[test]
fn heartbeats_are_comments() {
    let hub = builder()
        .sse_keepalive(Some(Duration::from_millis(20)))
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut client = open(&hub, &mut events, "/events", &[]);
    for _ in 0..3 {
        let ping = client.next();
        assert_eq!(ping.comments, vec![String::new()], "{ping:?}");
        assert_eq!((ping.data, ping.id), (None, None));
    }
    // An event stream never answers, and is never cut for it.
    assert!(hub.clients().len() == 1);
}

/// Reads up to a new stream's position under the protocol (an id without data, after the
/// control events of its opening, `#at` and any `#joined`), and returns it.
fn position(client: &mut SseClient) -> (u64, u64) {
    loop {
        let event = client.next_event();
        if event.event.as_deref() == Some("control") {
            continue;
        }
        assert!(!event.dispatched(), "{event:?}");
        return event.position().expect("a position");
    }
}

/// Reads `n` events and returns their (position, data).
fn read_numbered(client: &mut SseClient, n: usize) -> Vec<((u64, u64), String)> {
    (0..n)
        .map(|_| {
            let event = client.next_event();
            let position = event.position().expect("an id");
            (position, event.data.expect("data"))
        })
        .collect()
}

#[test]
fn last_event_id_resumes_with_no_gap_and_no_duplicate() {
    let hub = builder()
        .protocol(Protocol::Sequenced)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut client, id) = open_id(&hub, &mut events, "/events", &[]);
    // Its position first: an id without data, so a reconnect resumes from there.
    let (epoch, at) = position(&mut client);
    for i in 1..=5 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    let got = read_numbered(&mut client, 5);
    for (i, ((e, seq), data)) in got.iter().enumerate() {
        assert_eq!((*e, *seq), (epoch, at + 1 + i as u64));
        assert_eq!(data, &format!("m{}", i + 1));
    }
    drop(client);
    events.disconnected(id);
    for i in 6..=10 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    let last = format!("Last-Event-ID: {epoch}-{}", at + 5);
    let mut again = open(&hub, &mut events, "/events", &[&last]);
    let at_event = again.next_event();
    assert!(at_event.data.unwrap().starts_with("#at * "));
    let resumed = again.next_event();
    assert_eq!(
        resumed.data.as_deref(),
        Some(format!("#resumed * {epoch} {} {}", at + 6, at + 10).as_str())
    );
    let replayed = read_numbered(&mut again, 5);
    hub.broadcast("m11").unwrap();
    let live = read_numbered(&mut again, 1);
    let all: Vec<_> = replayed.into_iter().chain(live).collect();
    for (i, ((e, seq), data)) in all.iter().enumerate() {
        assert_eq!((*e, *seq), (epoch, at + 6 + i as u64), "{all:?}");
        assert_eq!(data, &format!("m{}", i + 6));
    }
    // The query parameter does the same for a first connect.
    let query = format!("/events?lastEventId={epoch}-{}", at + 9);
    let mut third = open(&hub, &mut events, &query, &[]);
    third.next_event();
    third.next_event();
    let got = read_numbered(&mut third, 2);
    assert_eq!(got[0].0, (epoch, at + 10));
    assert_eq!(got[1].1, "m11");
}

#[test]
fn a_resume_the_ring_cannot_serve_is_a_reset_event() {
    let hub = builder()
        .protocol(Protocol::Sequenced)
        .replay_messages(2)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut first = open(&hub, &mut events, "/events", &[]);
    let (epoch, at) = position(&mut first);
    for i in 1..=5 {
        hub.broadcast(format!("m{i}")).unwrap();
    }
    read_numbered(&mut first, 5);
    let last = format!("Last-Event-ID: {epoch}-{at}");
    let mut late = open(&hub, &mut events, "/events", &[&last]);
    late.next_event(); // #at
    let reset = late.next_event();
    assert_eq!(reset.event.as_deref(), Some("reset"), "{reset:?}");
    assert_eq!(
        reset.position(),
        Some((epoch, at + 5)),
        "moves to where the stream is"
    );
    let data = reset.data.unwrap();
    assert_eq!(data, format!("#noresume * old {epoch} {}", at + 5));
    // Another epoch (a restarted hub), and an id the hub never gave: reset too.
    for id in [format!("{}-3", epoch + 1), "nonsense".to_owned()] {
        let header = format!("Last-Event-ID: {id}");
        let mut other = open(&hub, &mut events, "/events", &[&header]);
        other.next_event(); // #at
        let reset = other.next_event();
        assert_eq!(reset.event.as_deref(), Some("reset"), "{id}: {reset:?}");
        assert!(reset
            .data
            .as_deref()
            .unwrap()
            .starts_with("#noresume * epoch "));
        assert_eq!(reset.position(), Some((epoch, at + 5)));
    }
    hub.broadcast("m6").unwrap();
    let live = read_numbered(&mut late, 1);
    assert_eq!(live[0], ((epoch, at + 6), "m6".to_owned()));
}

#[test]
fn topic_streams_carry_their_topic_ids_and_are_joined_as_a_join_is() {
    let hub = builder()
        .protocol(Protocol::Sequenced)
        .client_topics(|request| request.topic() != "secret")
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut room = open(&hub, &mut events, "/events/caf%C3%A9", &[]);
    let at = room.next_event();
    assert!(at.data.unwrap().starts_with("#at * "));
    let joined = room.next_event();
    assert_eq!(joined.event.as_deref(), Some("control"), "{joined:?}");
    let joined = joined.data.unwrap();
    assert!(joined.starts_with("#joined @café "), "{joined}");
    let (epoch, at) = position(&mut room);
    assert!(joined.ends_with(&format!(" {epoch} {at}")), "{joined}");
    hub.publish("café", "in the room").unwrap();
    hub.broadcast("to everyone").unwrap();
    hub.publish("café", "again").unwrap();
    let first = room.next_event();
    assert_eq!(first.position(), Some((epoch, at + 1)));
    assert_eq!(first.data.as_deref(), Some("in the room"));
    let everyone = room.next_event();
    assert_eq!(
        (everyone.id, everyone.data.as_deref()),
        (None, Some("to everyone")),
        "another stream's message moves no id"
    );
    assert_eq!(room.next_event().position(), Some((epoch, at + 2)));
    // Refused as a join would be: no 200, so a browser does not retry.
    let addr = http_addr(&hub);
    let (_, head) = http_exchange(addr, &util::sse_request("/events/secret", &[]));
    assert!(head[0].starts_with("HTTP/1.1 403"), "{head:?}");
    let (_, head) = http_exchange(addr, &util::sse_request("/events/a%20b", &[]));
    assert!(head[0].starts_with("HTTP/1.1 404"), "{head:?}");
}

#[test]
fn without_client_topics_only_the_hosts_admission_opens_a_topic() {
    let hub = builder()
        .protocol(Protocol::Sequenced)
        .admit(|request| {
            let mut admit = hubcast::Admit::new();
            if request.query() == Some("ticket=news") {
                admit = admit.topic("news");
            }
            admit
        })
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let addr = http_addr(&hub);
    let (_, head) = http_exchange(addr, &util::sse_request("/events/news", &[]));
    assert!(head[0].starts_with("HTTP/1.1 403"), "{head:?}");
    let mut news = open(&hub, &mut events, "/events/news?ticket=news", &[]);
    position(&mut news);
    hub.publish("news", "headline").unwrap();
    assert_eq!(news.next_event().data.as_deref(), Some("headline"));
}

#[test]
fn the_authenticator_sees_the_query_string_and_cookies() {
    let hub = builder()
        .authenticate(|request| {
            let cookie = request.header("cookie") == Some(&b"session=ok"[..]);
            let query = request.query() == Some("token=ok");
            if request.is_event_stream() && !request.is_websocket() && (cookie || query) {
                Auth::Accept
            } else {
                Auth::Reject
            }
        })
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let addr = http_addr(&hub);
    let (_, head) = http_exchange(addr, &util::sse_request("/events", &[]));
    assert!(head[0].starts_with("HTTP/1.1 403"), "{head:?}");
    open(&hub, &mut events, "/events?token=ok", &[]);
    open(&hub, &mut events, "/events", &["Cookie: session=ok"]);
    let stats = stats_when(&hub, |s| s.rejected == 1 && s.accepted == 2);
    assert_eq!(
        (stats.rejected, stats.accepted, stats.sse_opened),
        (1, 2, 2)
    );
}

#[test]
fn binary_messages_are_skipped_and_counted_or_sent_as_base64() {
    for base64 in [false, true] {
        let hub = builder()
            .protocol(Protocol::Sequenced)
            .sse_binary_base64(base64)
            .bind("127.0.0.1:0")
            .unwrap();
        let mut events = EventLog::subscribe(&hub);
        let mut client = open(&hub, &mut events, "/events", &[]);
        let (epoch, at) = position(&mut client);
        hub.broadcast(Message::binary(&b"\x00\x01hi"[..])).unwrap();
        hub.broadcast(&b"\xff\xfe"[..]).unwrap();
        hub.broadcast("text").unwrap();
        let first = client.next();
        let second = client.next();
        assert_eq!(
            first.position(),
            Some((epoch, at + 1)),
            "its id still moves"
        );
        assert_eq!(second.position(), Some((epoch, at + 2)));
        if base64 {
            assert_eq!(first.event.as_deref(), Some("binary"));
            assert_eq!(first.data.as_deref(), Some("AAFoaQ=="));
            assert_eq!(second.data.as_deref(), Some("//4="));
        } else {
            assert_eq!(
                (first.data, first.comments),
                (None, vec!["binary".to_owned()])
            );
            assert!(!second.dispatched());
        }
        assert_eq!(client.next_event().data.as_deref(), Some("text"));
        let skipped = if base64 { 0 } else { 2 };
        assert_eq!(hub.stats().sse_binary_skipped, skipped);
    }
}

/// An event stream that does not read, on a socket with small buffers.
fn stalled(hub: &Hub, events: &mut EventLog) -> (Peer, hubcast::ClientId) {
    let mut peer = Peer::connect_rcvbuf(http_addr(hub), 4096);
    peer.write(&util::sse_request("/events", &[]));
    let id = events.connected(peer.addr());
    (peer, id)
}

#[test]
fn a_slow_event_stream_obeys_the_queue_bound_and_policy() {
    for policy in [
        SlowClientPolicy::Disconnect,
        SlowClientPolicy::DropOldest,
        SlowClientPolicy::DropNewest,
    ] {
        let hub = builder()
            .protocol(Protocol::Sequenced)
            .queue_bytes(64 * 1024)
            .slow_client_policy(policy)
            .write_timeout(None)
            .bind("127.0.0.1:0")
            .unwrap();
        let mut events = EventLog::subscribe(&hub);
        let (peer, id) = stalled(&hub, &mut events);
        let payload = "x".repeat(1000);
        // Far more than the queue and the socket buffers hold, in a bounded loop.
        for _ in 0..2_000 {
            hub.broadcast(payload.as_str()).unwrap();
            if policy == SlowClientPolicy::Disconnect && events.has_left(id) {
                break;
            }
        }
        match policy {
            SlowClientPolicy::Disconnect => {
                assert_eq!(events.disconnected(id), DisconnectReason::Slow);
            }
            _ => {
                let stats = stats_when(&hub, |s| s.dropped > 0);
                assert!(stats.dropped > 0, "{policy:?}: {stats:?}");
                // Still there; what it reads, until the hub shuts down once its queue is
                // written out, has ids that only go up.
                assert_eq!(hub.clients().len(), 1, "{policy:?}");
                let reader = std::thread::spawn(move || {
                    let mut peer = peer;
                    let mut all = Vec::new();
                    while let Some(bytes) = peer.next_frame(hubcast::Framing::Raw) {
                        all.extend(bytes);
                    }
                    all
                });
                let report = hub.shutdown(util::TIMEOUT).unwrap();
                assert!(report.is_complete(), "{policy:?}: {report:?}");
                let text = String::from_utf8(reader.join().unwrap()).unwrap();
                let ids: Vec<u64> = text
                    .lines()
                    .filter_map(|line| line.strip_prefix("id: "))
                    .map(|id| id.split_once('-').unwrap().1.parse().unwrap())
                    .collect();
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "{policy:?}: {ids:?}");
                assert!(ids.len() < 2_000, "{policy:?}: some were dropped");
                if policy == SlowClientPolicy::DropOldest {
                    assert_eq!(ids.last(), Some(&2_000), "the newest stay");
                }
                continue;
            }
        }
        drop(peer);
    }
}

#[test]
fn pages_are_served_exactly_and_other_paths_are_404_or_405() {
    let page = "<!doctype html><title>chat</title>\n".repeat(100);
    let hub = builder()
        .page("/", "text/html; charset=utf-8", page.as_str())
        .page("/app.js", "text/javascript", "console.log(1)")
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = http_addr(&hub);
    let get = |target: &str, method: &str| {
        let request = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (mut peer, head) = http_exchange(addr, request.as_bytes());
        let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
        let mut body = Vec::new();
        if method != "HEAD" {
            while body.len() < len {
                body.extend(peer.next_frame(hubcast::Framing::Raw).expect("the body"));
            }
        }
        // One request per connection: closed after the answer.
        assert_eq!(peer.next_frame(hubcast::Framing::Raw), None);
        (head, len, body)
    };
    let (head, len, body) = get("/", "GET");
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!((len, body), (page.len(), page.as_bytes().to_vec()));
    let (head, len, body) = get("/?cache=1", "HEAD");
    assert_eq!(
        (head[0].as_str(), len, body.len()),
        ("HTTP/1.1 200 OK", page.len(), 0)
    );
    let (_, _, body) = get("/app.js", "GET");
    assert_eq!(body, b"console.log(1)");
    let (head, _, _) = get("/missing", "GET");
    assert_eq!(head[0], "HTTP/1.1 404 Not Found");
    let (head, _, _) = get("/", "DELETE");
    assert_eq!(head[0], "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(header(&head, "allow"), Some("GET, HEAD"));
    let stats = stats_when(&hub, |s| s.http_requests == 5);
    assert_eq!(
        (stats.http_requests, stats.accepted, stats.handshake_failed),
        (5, 0, 0)
    );
    // The WebSocket endpoint still upgrades on the same listener.
    let (ws, _) = tungstenite::connect(format!("ws://{addr}/ws")).expect("upgrade");
    drop(ws);
}

#[test]
fn metrics_and_health_are_served_on_the_same_listener() {
    let hub = builder()
        .metrics_path(Some("/metrics"))
        .liveness_path(Some("/livez"))
        .readiness_path(Some("/readyz"))
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let _stream = open(&hub, &mut events, "/events", &[]);
    let addr = http_addr(&hub);
    let body = |target: &str| {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (mut peer, head) = http_exchange(addr, request.as_bytes());
        let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
        let mut body = Vec::new();
        while body.len() < len {
            body.extend(peer.next_frame(hubcast::Framing::Raw).expect("the body"));
        }
        (head, String::from_utf8(body).unwrap())
    };
    let (head, text) = body("/metrics");
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert!(header(&head, "content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert!(text.starts_with("# HELP hubcast_"), "{text}");
    assert!(
        text.contains("\nhubcast_wire_clients{wire=\"sse\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("\nhubcast_sse_opened_total 1\n"), "{text}");
    for path in ["/livez", "/readyz"] {
        let (head, text) = body(path);
        assert_eq!(
            (head[0].as_str(), text.as_str()),
            ("HTTP/1.1 200 OK", "ok\n")
        );
    }
    let stats = stats_when(&hub, |s| s.http_requests == 3);
    assert_eq!(stats.http_requests, 3);
}

#[test]
fn bad_http_settings_are_config_errors() {
    let fails = |builder: HubBuilder, says: &str| match builder.bind("127.0.0.1:0") {
        Err(hubcast::Error::Config(why)) => assert!(why.contains(says), "{why}"),
        other => panic!("{says}: {other:?}"),
    };
    fails(Hub::builder().sse_path(Some("/events")), "add one");
    fails(builder().page("nope", "text/html", ""), "starts with /");
    fails(builder().page("/a?b", "text/html", ""), "starts with /");
    fails(builder().page("/a b", "text/html", ""), "starts with /");
    fails(
        builder().page("/x", "text/html\r\nX: y", ""),
        "visible ASCII",
    );
    fails(builder().page("/x", "", ""), "visible ASCII");
    fails(builder().metrics_path(Some("/events")), "also sse_path's");
    fails(builder().page("/ws", "text/html", ""), "also");
    fails(builder().sse_retry(Duration::ZERO), "sse_retry");
    fails(builder().sse_retry(Duration::from_secs(7200)), "sse_retry");
    fails(
        builder().sse_keepalive(Some(Duration::from_millis(1))),
        "sse_keepalive",
    );
    fails(builder().queue_bytes(1 << 30), "512 MiB");
    // A path registered twice keeps its last body; no knob set, nothing checked.
    let _hub = builder()
        .page("/", "text/plain", "a")
        .page("/", "text/plain", "b")
        .bind("127.0.0.1:0")
        .unwrap();
    let _hub = Hub::builder()
        .sse_keepalive(None)
        .bind("127.0.0.1:0")
        .unwrap();
}

/// `curl -N`, a real client that knows nothing of hubcast: the stream arrives as it is
/// sent (not buffered), and a reconnect with the last id gets what was missed.
#[test]
fn curl_reads_the_stream_and_resumes_with_the_last_id() {
    if !util::require_program("curl") {
        return;
    }
    let hub = builder()
        .protocol(Protocol::Sequenced)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let url = format!("http://{}/events", http_addr(&hub));
    let curl = |extra: &[&str]| {
        let mut command = std::process::Command::new("curl");
        command.args([
            "-sSN",
            "--max-time",
            "60",
            "-H",
            "Accept: text/event-stream",
        ]);
        for header in extra {
            command.args(["-H", header]);
        }
        command.arg(&url);
        util::ChildProcess::spawn(command)
    };
    let mut first = curl(&[]);
    events.wait_for("curl connected", |event| {
        matches!(event, hubcast::Event::Connected { .. }).then_some(())
    });
    hub.broadcast("one").unwrap();
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("data: one") {
        lines.push(first.next_line());
    }
    let id = lines
        .iter()
        .rev()
        .find_map(|line| line.strip_prefix("id: "))
        .expect("an id before the data")
        .to_owned();
    drop(first);
    hub.broadcast("two").unwrap();
    hub.broadcast("three").unwrap();
    let mut again = curl(&[&format!("Last-Event-ID: {id}")]);
    let mut data = Vec::new();
    while data.len() < 2 {
        let line = again.next_line();
        if let Some(payload) = line.strip_prefix("data: ") {
            if !payload.starts_with('#') {
                data.push(payload.to_owned());
            }
        }
    }
    assert_eq!(data, ["two", "three"]);
}

/// Event streams and pages over TLS (`Transport::WebSocketTls`, feature `tls`): `https://`.
#[cfg(feature = "tls")]
mod https {
    use std::io::{BufRead, BufReader, Write};

    use super::*;
    use util::{certificate, client_config, tls_connect, LOCAL};

    #[test]
    fn an_event_stream_over_tls() {
        let cert = certificate(false);
        let hub = Hub::builder()
            .tls_pem(cert.cert_pem.clone(), cert.key_pem.clone())
            .transport(Transport::WebSocketTls)
            .protocol(Protocol::Sequenced)
            .sse_path(Some("/events"))
            .bind(LOCAL)
            .unwrap();
        let mut events = EventLog::subscribe(&hub);
        let mut tls = tls_connect(hub.local_addr(), client_config(Some(&cert)));
        tls.write_all(&util::sse_request("/events", &[])).unwrap();
        let local = tls.sock.local_addr().unwrap();
        let mut reader = BufReader::new(tls);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "HTTP/1.1 200 OK\r\n");
        events.connected(local);
        hub.broadcast("secret news").unwrap();
        let mut lines = Vec::new();
        while lines.last().map(String::as_str) != Some("data: secret news\n") {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "{lines:?}");
            lines.push(line.clone());
        }
        let id = &lines[lines.len() - 2];
        assert!(id.starts_with("id: ") && id.ends_with("-1\n"), "{lines:?}");
    }
}

/// On a topic's event stream, presence changes are events of type `presence` with the
/// topic's ids, after the `#members` snapshot at the `#joined` position, and a reconnect
/// with `Last-Event-ID` replays the changes it missed with their ids.
#[test]
fn presence_changes_are_events_with_ids_and_resume_with_last_event_id() {
    let hub = builder()
        .protocol(Protocol::Sequenced)
        .client_topics(|_| true)
        .topic_options(|_| hubcast::TopicOptions::new().presence(true))
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut room, watcher) = open_id(&hub, &mut events, "/events/room", &[]);
    let mut control = || room.next_event().data.unwrap_or_default();
    assert!(control().starts_with("#at * "));
    let joined = control();
    let members = control();
    let (epoch, at) = position(&mut room);
    assert_eq!(joined, format!("#joined @room {epoch} {at}"));
    assert_eq!(
        members,
        format!("#members @room {epoch} {at} all 1 c:{}", watcher.as_u64())
    );
    // A TCP client joins: one presence event, numbered next.
    let mut peer = Peer::connect(hub.local_addr());
    let tcp = events.connected(peer.addr());
    util::read_at(&mut peer);
    peer.write(b"#join @room\n");
    let change = room.next_event();
    assert_eq!(change.event.as_deref(), Some("presence"), "{change:?}");
    assert_eq!(change.position(), Some((epoch, at + 1)));
    assert_eq!(
        change.data,
        Some(format!(
            "#presence @room {} join c:{}",
            at + 1,
            tcp.as_u64()
        ))
    );
    // The stream breaks (its leave is a change too); the TCP client leaves meanwhile; the
    // browser comes back with the last id it saw and gets both leaves, then its own new
    // arrival.
    drop(room);
    events.disconnected(watcher);
    let gone = watcher;
    peer.write(b"#leave @room\n");
    // After its #joined, #members and the changes it was told of.
    while peer.read_text_line() != "#left @room" {}
    let last = format!("Last-Event-ID: {epoch}-{}", at + 1);
    let (mut again, watcher) = open_id(&hub, &mut events, "/events/room", &[&last]);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = again.next_event();
        if event.event.as_deref() == Some("presence") {
            seen.push((event.position(), event.data.unwrap_or_default()));
        }
    }
    assert_eq!(
        seen,
        [
            (
                Some((epoch, at + 2)),
                format!("#presence @room {} leave c:{}", at + 2, gone.as_u64())
            ),
            (
                Some((epoch, at + 3)),
                format!("#presence @room {} leave c:{}", at + 3, tcp.as_u64())
            ),
            (
                Some((epoch, at + 4)),
                format!("#presence @room {} join c:{}", at + 4, watcher.as_u64())
            ),
        ]
    );
    assert_eq!(hub.stats().presence_changes, 5);
}
