//! WebSocket clients (feature `websocket`) beside TCP clients, driven by tungstenite's
//! client: relay both ways, the handshake's refusals, the authenticator seeing the request,
//! protocol duties (ping, close codes, fragments, limits), slow clients, heartbeats, wss.
#![cfg(feature = "websocket")]

mod util;

use std::net::{SocketAddr, TcpStream};

use hubcast::{Hub, HubBuilder, Relay, Transport};
use tungstenite::{Message, WebSocket};
use util::{EventLog, Peer, LOCAL};

type Ws = WebSocket<TcpStream>;

/// Connects a WebSocket client to `addr` (path `/`, no Origin).
fn ws_connect(addr: SocketAddr) -> Ws {
    let stream = Peer::connect(addr).stream;
    let (ws, _) = tungstenite::client::client(format!("ws://{addr}/"), stream)
        .unwrap_or_else(|err| panic!("WebSocket handshake with {addr}: {err}"));
    ws
}

/// A hub with a TCP listener (the first address) and a WebSocket one (the second).
fn mixed(builder: HubBuilder) -> Hub {
    builder
        .listen(LOCAL, Transport::WebSocket)
        .bind(LOCAL)
        .expect("bind")
}

fn ws_addr(hub: &Hub) -> SocketAddr {
    hub.local_addrs()[1].addr
}

/// The next data message; answers nothing else (tungstenite answers pings by itself).
fn next_message(ws: &mut Ws) -> Message {
    loop {
        let msg = ws.read().expect("a message");
        if let Message::Text(_) | Message::Binary(_) | Message::Close(_) = msg {
            return msg;
        }
    }
}

fn text(ws: &mut Ws) -> String {
    match next_message(ws) {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[test]
fn tcp_and_websocket_clients_talk_both_ways() {
    let hub = mixed(Hub::builder().relay(Relay::Others));
    let mut events = EventLog::subscribe(&hub);
    let mut nc = Peer::connect(hub.local_addr());
    let nc_id = events.expect_connected();
    let mut browser = ws_connect(ws_addr(&hub));
    let ws_id = events.expect_connected();

    browser
        .send(Message::text("hello from the browser"))
        .unwrap();
    assert_eq!(events.expect_message(ws_id), b"hello from the browser");
    assert_eq!(nc.read_line(), b"hello from the browser");

    nc.write(b"hello from nc\n");
    assert_eq!(events.expect_message(nc_id), b"hello from nc");
    assert_eq!(text(&mut browser), "hello from nc");

    hub.broadcast("to everyone").unwrap();
    assert_eq!(nc.read_line(), b"to everyone");
    assert_eq!(text(&mut browser), "to everyone");
    // Not UTF-8: a binary frame, never a text frame.
    hub.broadcast([0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        next_message(&mut browser),
        Message::binary(vec![0xff, 0xfe, 0x00])
    );
    assert_eq!(nc.read_line(), [0xff, 0xfe, 0x00]);
}
