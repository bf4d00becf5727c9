//! WebSocket compression (`permessage-deflate` without context takeover, feature
//! `deflate`) with raw clients on real sockets: what the upgrade answers to each offer, a
//! broadcast compressed once and inflated by every client that negotiated it while the
//! others get it plain, compressed client messages inflated, zip bombs cut with 1009 while
//! memory stays flat, RSV1 where it does not belong closed with 1002, a resume replayed
//! compressed, and an adopted connection's answer. The client's side of the extension is
//! `miniz_oxide` (a dev-dependency): raw deflate, sync flushed, the tail cut.
#![cfg(feature = "deflate")]

mod util;

use std::sync::Mutex;

use hubcast::{DisconnectReason, Hub, HubBuilder, Protocol, Transport};
use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
use miniz_oxide::{DataFormat, MZFlush};
use util::{
    client_frame, expect_close, masked, read_head, request, ws_addr, EventLog, Peer, Response,
    LOCAL, MASK, PING, TEXT,
};

/// The answer the hub gives an offer it accepts.
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// One test at a time where memory is read.
static SERIAL: Mutex<()> = Mutex::new(());

/// A hub with a TCP listener and a WebSocket one, compression on.
fn hub_with(builder: HubBuilder) -> Hub {
    builder
        .websocket_compression(true)
        .listen(LOCAL, Transport::WebSocket)
        .bind(LOCAL)
        .expect("bind")
}

/// Upgrades a raw client with `offer` as its `Sec-WebSocket-Extensions` (none if `None`).
fn upgrade(hub: &Hub, offer: Option<&str>) -> (Peer, Response) {
    let mut peer = Peer::connect(ws_addr(hub));
    let line = offer.map(|o| format!("Sec-WebSocket-Extensions: {o}"));
    let extra: Vec<&str> = line.iter().map(String::as_str).collect();
    let request = request("/", &ws_addr(hub).to_string(), &[], &extra);
    peer.write(request.as_bytes());
    let response = read_head(&mut peer);
    response.assert_switching();
    (peer, response)
}

/// A client that negotiated compression, with its `Connected` event.
fn join_deflate(hub: &Hub, events: &mut EventLog) -> (Peer, hubcast::ClientId) {
    let (peer, response) = upgrade(hub, Some("permessage-deflate; client_max_window_bits"));
    assert_eq!(response.header("sec-websocket-extensions"), Some(ANSWER));
    let id = events.connected(peer.addr());
    (peer, id)
}

/// A plain client (no offer), with its `Connected` event.
fn join_plain(hub: &Hub, events: &mut EventLog) -> (Peer, hubcast::ClientId) {
    let (peer, response) = upgrade(hub, None);
    assert_eq!(response.header("sec-websocket-extensions"), None);
    let id = events.connected(peer.addr());
    (peer, id)
}

/// A frame from the hub, reserved bits allowed: its first byte and payload.
fn read_any_frame(peer: &mut Peer) -> (u8, Vec<u8>) {
    let head = peer.read_exact(2);
    assert_eq!(head[1] & 0x80, 0, "a masked server frame");
    let len = match head[1] & 0x7f {
        126 => peer
            .read_exact(2)
            .iter()
            .fold(0, |n, &b| n << 8 | usize::from(b)),
        127 => peer
            .read_exact(8)
            .iter()
            .fold(0, |n, &b| n << 8 | usize::from(b)),
        n => usize::from(n),
    };
    assert_eq!(
        head[0] & 0x30,
        0,
        "RSV2 or RSV3 from the hub: {:#x}",
        head[0]
    );
    (head[0], peer.read_exact(len))
}

/// The next data message: `(compressed, payload inflated)`.
fn read_message(peer: &mut Peer) -> (bool, Vec<u8>) {
    let (first, payload) = read_any_frame(peer);
    assert_eq!(first & 0x80, 0x80, "a fragment from the hub");
    assert!(matches!(first & 0x0f, 1 | 2), "not data: {first:#x}");
    if first & 0x40 != 0 {
        (true, inflate(&payload))
    } else {
        (false, payload)
    }
}

/// Inflates a message as a client does: the tail appended, raw deflate.
fn inflate(compressed: &[u8]) -> Vec<u8> {
    let data = [compressed, &[0, 0, 0xff, 0xff]].concat();
    let mut state = miniz_oxide::inflate::stream::InflateState::new_boxed(DataFormat::Raw);
    let mut out = vec![0; 1 << 20];
    let result = miniz_oxide::inflate::stream::inflate(&mut state, &data, &mut out, MZFlush::Sync);
    assert!(result.status.is_ok(), "{:?}", result.status);
    assert_eq!(result.bytes_consumed, data.len());
    out.truncate(result.bytes_written);
    out
}

/// `payload` compressed as a client sends it: raw deflate, sync flushed, the tail cut.
fn compress(payload: &[u8]) -> Vec<u8> {
    compress_at(1, payload)
}

/// [`compress`] at deflate `level`.
fn compress_at(level: i32, payload: &[u8]) -> Vec<u8> {
    let flags = create_comp_flags_from_zip_params(level, -15, 0);
    let mut state = Box::new(CompressorOxide::new(flags));
    let mut out = vec![0; payload.len() + 1024];
    let result =
        miniz_oxide::deflate::stream::deflate(&mut state, payload, &mut out, MZFlush::Sync);
    assert_eq!(result.bytes_consumed, payload.len());
    assert!(result.bytes_written < out.len());
    out.truncate(result.bytes_written);
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A JSON-like payload of `len` bytes.
fn json(len: usize) -> String {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user{}\",\"text\":\"message number {i}\",\"ts\":{}}},",
            i % 17,
            1_700_000_000 + i * 37
        ));
        i += 1;
    }
    s.truncate(len);
    s
}

/// A masked client frame with RSV1 (compressed) if `rsv1`.
fn client_message(rsv1: bool, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, if rsv1 { 4 } else { 0 }, opcode, payload, Some(MASK))
}

#[test]
fn offers_are_accepted_declined_or_ignored() {
    let hub = hub_with(Hub::builder());
    let narrow = |bits: u8| format!("{ANSWER}; server_max_window_bits={bits}");
    let cases = [
        (Some("permessage-deflate"), Some(ANSWER.to_owned())),
        (
            Some("permessage-deflate; client_max_window_bits"),
            Some(ANSWER.to_owned()),
        ),
        (
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            Some(ANSWER.to_owned()),
        ),
        (
            Some("permessage-deflate; server_max_window_bits=15"),
            Some(ANSWER.to_owned()),
        ),
        // A smaller window: accepted, echoed (compressed with run lengths only).
        (
            Some("permessage-deflate; server_max_window_bits=10"),
            Some(narrow(10)),
        ),
        // Declined, never failed: the client gets plain frames.
        (Some("permessage-deflate; server_max_window_bits=7"), None),
        (Some("permessage-deflate; client_max_window_bits=20"), None),
        (Some("permessage-deflate; made_up_param"), None),
        (Some("x-webkit-deflate-frame"), None),
        // The first offer it can honour is taken.
        (
            Some("permessage-deflate; made_up_param, permessage-deflate; server_max_window_bits=9"),
            Some(narrow(9)),
        ),
        (None, None),
    ];
    for (offer, expected) in cases {
        let (_, response) = upgrade(&hub, offer);
        assert_eq!(
            response.header("sec-websocket-extensions"),
            expected.as_deref(),
            "{offer:?}"
        );
    }
    // Compression off (the default): never accepted.
    let off = Hub::builder()
        .listen(LOCAL, Transport::WebSocket)
        .bind(LOCAL)
        .unwrap();
    let (_, response) = upgrade(&off, Some("permessage-deflate"));
    assert_eq!(response.header("sec-websocket-extensions"), None);
}

#[test]
fn bad_knobs_are_refused_at_bind() {
    for level in [0, 10] {
        let err = Hub::builder()
            .websocket_compression(true)
            .websocket_compression_level(level)
            .bind(LOCAL)
            .expect_err("refused");
        assert!(
            err.to_string().contains("websocket_compression_level"),
            "{err}"
        );
    }
}

/// A broadcast is compressed once, whatever the number of compressed clients, and each
/// inflates it to the payload; a plain client gets it plain; a small message goes plain to
/// all; the counts say so.
#[test]
fn a_broadcast_is_compressed_once_for_every_client() {
    let hub = hub_with(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (mut a, _) = join_deflate(&hub, &mut events);
    let (mut b, _) = join_deflate(&hub, &mut events);
    let (mut plain, _) = join_plain(&hub, &mut events);
    let big = json(4096);
    hub.broadcast(big.as_str()).unwrap();
    hub.broadcast("small").unwrap();
    for peer in [&mut a, &mut b] {
        let (compressed, payload) = read_message(peer);
        assert!(compressed, "a 4 KiB message to a compressed client");
        assert_eq!(payload, big.as_bytes());
        assert_eq!(read_message(peer), (false, b"small".to_vec()));
    }
    assert_eq!(read_message(&mut plain), (false, big.as_bytes().to_vec()));
    assert_eq!(read_message(&mut plain), (false, b"small".to_vec()));
    events.wait_until("the compression counted", || {
        hub.stats().compressed_frames == 1
    });
    let stats = hub.stats();
    assert_eq!(stats.compressed_clients, 2);
    assert_eq!(stats.compressed_bytes_in, big.len() as u64);
    assert!(
        stats.compressed_bytes_out < stats.compressed_bytes_in * 4 / 10,
        "{stats:?}"
    );
    assert!(stats.compress_nanos > 0);
    println!(
        "4 KiB of JSON compressed to {} bytes in {} µs",
        stats.compressed_bytes_out,
        stats.compress_nanos / 1000
    );
    let metrics = hub.metrics();
    for line in [
        "hubcast_wire_clients{wire=\"websocket_deflate\"} 2",
        "hubcast_wire_clients{wire=\"websocket\"} 1",
        "hubcast_compressed_frames_total 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}

/// Compressed messages from a client, whole or fragmented, reach the host inflated.
#[test]
fn compressed_client_messages_are_inflated() {
    let hub = hub_with(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join_deflate(&hub, &mut events);
    let text = json(3000);
    let compressed = compress(text.as_bytes());
    peer.write(&client_message(true, true, TEXT, &compressed));
    let (first, rest) = compressed.split_at(compressed.len() / 3);
    let mut fragmented = client_message(true, false, TEXT, first);
    fragmented.extend(client_message(false, true, 0, rest));
    peer.write(&fragmented);
    // And a plain one in between is fine too.
    peer.write(&masked(TEXT, b"plain"));
    assert_eq!(events.expect_message(id), text.as_bytes());
    assert_eq!(events.expect_message(id), text.as_bytes());
    assert_eq!(events.expect_message(id), b"plain");
    events.wait_until("the inflations counted", || {
        hub.stats().inflated_messages == 2
    });
}

/// The process's resident memory, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// `chunk` (a sync-flushed deflate of zeros, tail kept) repeated so that the stream
/// inflates to `total` bytes: a bomb built without compressing a gigabyte.
fn bomb(total: usize) -> Vec<u8> {
    const CHUNK: usize = 1 << 20;
    let mut chunk = compress_at(9, &vec![0; CHUNK]);
    chunk.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = chunk.repeat(total / CHUNK);
    out.truncate(out.len() - 4);
    out
}

/// A frame of 64 KiB that inflates to 64 MiB (as far as deflate goes, about 1,000 to 1),
/// and one of 1 MiB that inflates to 1 GiB: each closed with 1009 as soon as its output
/// passes `max_frame`, and the process's memory does not grow by anything like it.
#[test]
fn zip_bombs_are_cut_with_1009_and_memory_stays_flat() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let max_frame = 2 << 20;
    let hub = hub_with(Hub::builder().max_frame(max_frame));
    let mut events = EventLog::subscribe(&hub);
    let small = bomb(64 << 20);
    let large = bomb(1 << 30);
    assert!(small.len() <= 80 * 1024, "{}", small.len());
    assert!(large.len() <= max_frame, "{}", large.len());
    let before = rss_bytes();
    for bomb in [&small, &large] {
        let (mut peer, id) = join_deflate(&hub, &mut events);
        peer.write(&client_message(true, true, 2, bomb));
        expect_close(&mut peer, 1009);
        assert_eq!(
            events.expect_disconnected(id),
            DisconnectReason::FrameTooLarge
        );
    }
    let growth = rss_bytes().saturating_sub(before);
    // Buffers of max_frame (the frame read, unmasked, inflated): a few MiB, never 1 GiB.
    assert!(growth < 64 << 20, "RSS grew by {growth} bytes");
    assert_eq!(hub.stats().inflated_messages, 0);
}

/// RSV1 on a control frame, on a continuation frame, or from a client that did not
/// negotiate the extension: closed with 1002.
#[test]
fn rsv1_where_it_does_not_belong_is_1002() {
    let hub = hub_with(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let compressed = compress(b"hello hello hello");
    let cases: Vec<(bool, Vec<u8>)> = vec![
        (true, client_message(true, true, PING, b"")),
        (
            true,
            [
                client_message(false, false, TEXT, b"a"),
                client_message(true, true, 0, b"b"),
            ]
            .concat(),
        ),
        (false, client_message(true, true, TEXT, &compressed)),
    ];
    for (deflate, frames) in cases {
        let (mut peer, id) = if deflate {
            join_deflate(&hub, &mut events)
        } else {
            join_plain(&hub, &mut events)
        };
        peer.write(&frames);
        expect_close(&mut peer, 1002);
        assert_eq!(events.expect_disconnected(id), DisconnectReason::Protocol);
    }
}

/// A resume on the compressed wire replays the kept messages compressed (compressed again
/// for the replay: rings keep the hub's framing).
#[test]
fn a_resume_is_replayed_compressed() {
    let hub = hub_with(Hub::builder().protocol(Protocol::Sequenced));
    let mut events = EventLog::subscribe(&hub);
    let big = json(2000);
    hub.broadcast(big.as_str()).unwrap();
    let (mut peer, _) = join_deflate(&hub, &mut events);
    let (_, at) = read_message(&mut peer);
    let at = String::from_utf8(at).unwrap();
    let epoch = at
        .split(' ')
        .nth(2)
        .expect("#at * <epoch> <seq>")
        .to_owned();
    peer.write(&masked(TEXT, format!("#resume * {epoch} 0").as_bytes()));
    let (_, resumed) = read_message(&mut peer);
    assert_eq!(resumed, format!("#resumed * {epoch} 1 1").as_bytes());
    let (compressed, replayed) = read_message(&mut peer);
    assert!(compressed, "the replay of a 2 KB message");
    assert_eq!(replayed, format!("1 {big}").as_bytes());
}

/// A host answering an upgrade itself is told to accept the extension, and the adopted
/// connection (given its request) gets compressed messages as one of the listener's would.
#[test]
fn an_adopted_connection_negotiates_the_same_way() {
    use std::io::{Read, Write};

    let hub = hub_with(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let listener = std::net::TcpListener::bind(LOCAL).unwrap();
    let addr = listener.local_addr().unwrap();
    let headers = [
        ("host", addr.to_string()),
        ("upgrade", "websocket".into()),
        ("connection", "Upgrade".into()),
        ("sec-websocket-key", util::KEY.into()),
        ("sec-websocket-version", "13".into()),
        ("sec-websocket-extensions", "permessage-deflate".into()),
    ];
    let without = hub
        .websocket_answer("GET", headers[..5].iter().cloned())
        .unwrap();
    assert_eq!(without.extensions(), None);
    let answer = hub
        .websocket_answer("GET", headers.iter().cloned())
        .unwrap();
    assert_eq!(answer.extensions(), Some(ANSWER));

    let mut peer = Peer::connect(addr);
    let extra = "Sec-WebSocket-Extensions: permessage-deflate";
    peer.write(request("/", &addr.to_string(), &[], &[extra]).as_bytes());
    let (mut stream, _) = listener.accept().unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let mut out = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in answer.headers() {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).unwrap();
    let adopted = hubcast::Adopted::websocket(stream).request("/", headers.iter().cloned());
    hub.adopt(adopted).unwrap();
    let response = read_head(&mut peer);
    response.assert_switching();
    assert_eq!(response.header("sec-websocket-extensions"), Some(ANSWER));
    events.connected(peer.addr());
    let big = json(1000);
    hub.broadcast(big.as_str()).unwrap();
    assert_eq!(read_message(&mut peer), (true, big.into_bytes()));
    assert_eq!(hub.stats().compressed_clients, 1);
}
