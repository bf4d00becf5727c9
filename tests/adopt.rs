//! Connections the host accepted itself, handed over with `Hub::adopt`: the test plays the
//! host with a std `TcpListener`, answers upgrades by hand with `Hub::websocket_answer`'s
//! headers, and adopts. Adopted clients are ordinary clients (broadcasts, relay both ways
//! with listener-accepted clients, departures and stats, the authenticator, the limits);
//! bytes the host read past the request come before the socket's; `websocket_answer`
//! refuses what the hub's own listener refuses, with the same status.
#![cfg(feature = "websocket")]

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubcast::{Adopted, Auth, DisconnectReason, Error, Hub, Relay};
use tungstenite::Message;
use util::{
    close_of, expect_close, masked, mixed, read_head, refused, request, stats_when, text, ws_addr,
    EventLog, Peer, ACCEPT, LOCAL, TEXT, TIMEOUT,
};

/// The test's own "application": a listener whose connections it hands to the hub.
struct Host {
    listener: TcpListener,
}

/// An upgrade request as the host parsed it.
struct Parsed {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    /// What was read past the head.
    rest: Vec<u8>,
}

impl Host {
    fn new() -> Host {
        Host {
            listener: TcpListener::bind(LOCAL).expect("bind the host's listener"),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("local addr")
    }

    fn accept(&self) -> TcpStream {
        let (stream, _) = self.listener.accept().expect("accept");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream
    }

    /// Accepts a framed connection and adopts it with `read` as what was read already.
    fn adopt_framed(&self, hub: &Hub, read: &[u8]) {
        let stream = self.accept();
        hub.adopt(Adopted::framed(stream).read(read))
            .expect("adopt");
    }

    /// Accepts a connection, reads its request head (and at least `extra` bytes past it),
    /// answers as `websocket_answer` says, and adopts it if it was answered 101. Returns
    /// the refusal's status, if refused.
    fn adopt_websocket(&self, hub: &Hub, extra: usize) -> Option<u16> {
        let mut stream = self.accept();
        let parsed = read_request(&mut stream, extra);
        match hub.websocket_answer(&parsed.method, parsed.headers.iter().map(|(n, v)| (n, v))) {
            Ok(answer) => {
                let mut head = String::from("HTTP/1.1 101 Switching Protocols\r\n");
                for (name, value) in answer.headers() {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                stream.write_all(head.as_bytes()).expect("answer 101");
                let adopted = Adopted::websocket(stream)
                    .read(&parsed.rest)
                    .request(&parsed.target, parsed.headers.iter().map(|(n, v)| (n, v)));
                hub.adopt(adopted).expect("adopt");
                None
            }
            Err(refusal) => {
                let mut head = format!("HTTP/1.1 {} Refused\r\n", refusal.status());
                for (name, value) in refusal.headers() {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("Connection: close\r\nContent-Length: 0\r\n\r\n");
                stream.write_all(head.as_bytes()).expect("answer refusal");
                Some(refusal.status())
            }
        }
    }
}

/// Reads a request head and at least `extra` bytes past it.
fn read_request(stream: &mut impl Read, extra: usize) -> Parsed {
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if buf.len() >= end + 4 + extra {
                break end + 4;
            }
        }
        let n = stream.read(&mut chunk).expect("read the request");
        assert!(n > 0, "end of stream in the request: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = std::str::from_utf8(&buf[..end]).expect("ASCII");
    let mut lines = text.trim_end().split("\r\n");
    let mut first = lines.next().expect("request line").split(' ');
    let method = first.next().expect("method").to_owned();
    let target = first.next().expect("target").to_owned();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header");
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    Parsed {
        method,
        target,
        headers,
        rest: buf[end..].to_vec(),
    }
}

/// A tungstenite client of the host at `addr`, adopted by the hub.
fn ws_client(host: &Host, hub: &Hub, path: &str) -> util::Ws {
    let addr = host.addr();
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let url = format!("ws://{addr}{path}");
    let client = std::thread::spawn(move || {
        tungstenite::client::client(url, stream)
            .map(|(ws, _)| ws)
            .map_err(|err| err.to_string())
    });
    assert_eq!(host.adopt_websocket(hub, 0), None, "refused");
    client.join().expect("client thread").expect("handshake")
}

#[test]
fn adopted_clients_are_ordinary_clients() {
    let hub = mixed(Hub::builder().relay(Relay::Others));
    let mut events = EventLog::subscribe(&hub);
    let host = Host::new();

    let mut listened = Peer::connect(hub.local_addr());
    let listened_id = events.connected(listened.addr());
    let mut browser = ws_client(&host, &hub, "/ws");
    let browser_id = events.connected(browser.get_ref().local_addr().unwrap());
    let mut framed = Peer::connect(host.addr());
    host.adopt_framed(&hub, b"");
    let framed_id = events.connected(framed.addr());

    hub.broadcast("to everyone").unwrap();
    assert_eq!(listened.read_line(), b"to everyone");
    assert_eq!(text(&mut browser), "to everyone");
    assert_eq!(framed.read_line(), b"to everyone");

    browser.send(Message::text("from the browser")).unwrap();
    assert_eq!(events.expect_message(browser_id), b"from the browser");
    assert_eq!(listened.read_line(), b"from the browser");
    assert_eq!(framed.read_line(), b"from the browser");

    framed.write(b"from the framed one\n");
    assert_eq!(events.expect_message(framed_id), b"from the framed one");
    assert_eq!(listened.read_line(), b"from the framed one");
    assert_eq!(text(&mut browser), "from the framed one");

    listened.write(b"from the listener's\n");
    assert_eq!(events.expect_message(listened_id), b"from the listener's");
    assert_eq!(text(&mut browser), "from the listener's");
    assert_eq!(framed.read_line(), b"from the listener's");

    let stats = stats_when(&hub, |s| s.adopted == 2);
    assert_eq!((stats.connected, stats.adopted), (3, 2), "{stats:#?}");
    let metrics = hub.metrics();
    assert!(
        metrics.contains("\nhubcast_adopted_clients 2\n"),
        "{metrics}"
    );

    // Leaving: kicked (its close code), and closed by the peer.
    hub.disconnect(browser_id).unwrap();
    assert_eq!(close_of(&mut browser).0, 4001);
    assert_eq!(events.disconnected(browser_id), DisconnectReason::Kicked);
    drop(framed);
    assert_eq!(events.disconnected(framed_id), DisconnectReason::PeerClosed);
    let stats = stats_when(&hub, |s| s.adopted == 0 && s.connected == 1);
    assert_eq!((stats.connected, stats.adopted, stats.accepted), (1, 0, 3));
    assert!(hub.metrics().contains("\nhubcast_adopted_clients 0\n"));
}

/// What the host read past what it parsed is taken before the socket's bytes: a line, and
/// a WebSocket frame, split between the two.
#[test]
fn bytes_the_host_read_come_first() {
    let hub = Hub::builder().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let host = Host::new();

    let mut framed = Peer::connect(host.addr());
    framed.write(b"lo\nsecond\n");
    host.adopt_framed(&hub, b"hel");
    let framed_id = events.connected(framed.addr());
    assert_eq!(events.expect_message(framed_id), b"hello");
    assert_eq!(events.expect_message(framed_id), b"second");

    let frame = masked(TEXT, b"a frame cut in two");
    let mut raw = Peer::connect(host.addr());
    let upgrade = request("/", &host.addr().to_string(), &[], &[]);
    raw.write(&[upgrade.as_bytes(), &frame[..5]].concat());
    assert_eq!(host.adopt_websocket(&hub, 5), None);
    let response = read_head(&mut raw);
    response.assert_switching();
    let raw_id = events.connected(raw.addr());
    raw.write(&frame[5..]);
    assert_eq!(events.expect_message(raw_id), b"a frame cut in two");
}

/// The authenticator sees an adopted connection's request (path, query, headers) or its
/// authentication frame; a rejected WebSocket one, already answered 101, gets close 1008.
#[test]
fn the_authenticator_sees_adopted_connections() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let hub = Hub::builder()
        .authenticate(move |req| {
            if req.is_websocket() {
                let cookie = req.header("cookie").map(|c| c.to_vec());
                log.lock().unwrap().push((
                    req.path().map(str::to_owned),
                    req.query().map(str::to_owned),
                    cookie,
                ));
                match req.query() {
                    Some("token=good") => Auth::Accept,
                    _ => Auth::Reject,
                }
            } else if req.frame() == Some(b"secret") {
                Auth::Accept
            } else {
                Auth::Reject
            }
        })
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let host = Host::new();
    let hostname = host.addr().to_string();

    let mut good = Peer::connect(host.addr());
    let cookie = ["Cookie: session=42"];
    good.write(request("/ws?token=good", &hostname, &[], &cookie).as_bytes());
    assert_eq!(host.adopt_websocket(&hub, 0), None);
    read_head(&mut good).assert_switching();
    let good_id = events.connected(good.addr());
    hub.broadcast("welcome").unwrap();
    let frame = util::read_frame(&mut good);
    assert_eq!(frame.payload, b"welcome");

    let mut bad = Peer::connect(host.addr());
    bad.write(request("/ws?token=bad", &hostname, &[], &[]).as_bytes());
    assert_eq!(host.adopt_websocket(&hub, 0), None);
    read_head(&mut bad).assert_switching();
    expect_close(&mut bad, 1008);

    let mut framed = Peer::connect(host.addr());
    host.adopt_framed(&hub, b"secr");
    framed.write(b"et\nhi\n");
    let framed_id = events.connected(framed.addr());
    assert_eq!(events.expect_message(framed_id), b"hi");
    let mut refused_framed = Peer::connect(host.addr());
    host.adopt_framed(&hub, b"wrong\n");
    refused_framed.expect_closed();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (
                Some("/ws".to_owned()),
                Some("token=good".to_owned()),
                Some(b"session=42".to_vec())
            ),
            (Some("/ws".to_owned()), Some("token=bad".to_owned()), None),
        ]
    );
    let stats = stats_when(&hub, |s| s.rejected == 2);
    assert_eq!((stats.rejected, stats.accepted), (2, 2), "{stats:#?}");
    drop(good);
    assert_eq!(events.disconnected(good_id), DisconnectReason::PeerClosed);
}

/// The admission limits apply to adopted connections: at `max_clients`, one is refused
/// (closed, counted); after shutdown, `adopt` fails with `Closed`.
#[test]
fn limits_apply_and_a_closed_hub_adopts_nothing() {
    let hub = Hub::builder().max_clients(1).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let host = Host::new();
    let first = Peer::connect(hub.local_addr());
    events.connected(first.addr());

    let mut turned_away = Peer::connect(host.addr());
    host.adopt_framed(&hub, b"");
    turned_away.expect_closed();
    let stats = stats_when(&hub, |s| s.refused == 1);
    assert_eq!((stats.refused, stats.accepted), (1, 1), "{stats:#?}");

    hub.shutdown(Duration::from_secs(5)).unwrap();
    let _late = TcpStream::connect(host.addr()).unwrap();
    let stream = host.accept();
    assert!(matches!(
        hub.adopt(Adopted::framed(stream)),
        Err(Error::Closed)
    ));
}

/// `websocket_answer` refuses what the hub's own listener refuses, with the same status,
/// and accepts with the RFC's accept key.
#[test]
fn websocket_answer_refuses_as_the_listener_does() {
    let hub = mixed(Hub::builder());
    let host = ws_addr(&hub).to_string();
    let cases: [(&[&str], &[&str], u16); 4] = [
        (
            &["Sec-WebSocket-Version"],
            &["Sec-WebSocket-Version: 8"],
            426,
        ),
        (&["Sec-WebSocket-Key"], &[], 400),
        (&[], &["Origin: http://evil.example"], 403),
        (&["Upgrade"], &[], 400),
    ];
    for (omit, extra, status) in cases {
        let text = request("/", &host, omit, extra);
        let (listener, _) = refused(ws_addr(&hub), &text);
        let parsed = read_request(&mut text.as_bytes(), 0);
        let refusal = hub
            .websocket_answer(&parsed.method, parsed.headers.iter().map(|(n, v)| (n, v)))
            .expect_err("refused");
        assert_eq!(
            (refusal.status(), listener.status),
            (status, status),
            "{text}"
        );
        if status == 426 {
            let headers: Vec<_> = refusal.headers().collect();
            assert!(
                headers.contains(&("Sec-WebSocket-Version", "13")),
                "{headers:?}"
            );
        }
    }
    let parsed = read_request(&mut request("/", &host, &[], &[]).as_bytes(), 0);
    let answer = hub
        .websocket_answer("GET", parsed.headers.iter().map(|(n, v)| (n, v)))
        .unwrap();
    assert_eq!(answer.accept(), ACCEPT);
    assert_eq!(answer.protocol(), None);
    assert!(matches!(
        hub.websocket_answer("POST", parsed.headers.iter().map(|(n, v)| (n, v))),
        Err(r) if r.status() == 400
    ));
}
