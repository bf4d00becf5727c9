//! Inbound rate limits (`HubBuilder::rate_limit`): a client held back is read again later
//! and loses nothing, never faster than its limit; dropped messages are counted and reach
//! nobody; a client over its limit under `Disconnect` leaves as `RateLimited` (WebSocket
//! close 1008); and bad limits are refused at `bind`.
//!
//! Rates are checked only from above (never more than the burst plus the rate times the
//! time the test itself measured), so a slow machine cannot fail them.

mod util;

use std::time::Instant;

use hubcast::{DisconnectReason, Error, Event, Framing, Hub, RateLimit, RateLimitPolicy, Relay};
use util::{join, stats_when, EventLog, LOCAL};

/// Payload `i` of a numbered stream, padded to `len` bytes (at least 6).
fn numbered_payload(i: usize, len: usize) -> Vec<u8> {
    let mut p = format!("m{i:05}").into_bytes();
    p.resize(len.max(6), b'.');
    p
}

/// `n` numbered lines of `len` bytes each, in one buffer.
fn lines(n: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(&numbered_payload(i, len));
        out.push(b'\n');
    }
    out
}

/// Receives the next `n` messages of `id` (skipping other events), with when each came
/// by the test's clock.
fn timed_messages(
    events: &mut EventLog,
    id: hubcast::ClientId,
    n: usize,
) -> Vec<(Vec<u8>, Instant)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let payload = events.wait_for("a message", |event| match event {
            Event::Message {
                client, payload, ..
            } if *client == id => Some(payload.to_vec()),
            _ => None,
        });
        got.push((payload, Instant::now()));
    }
    got
}

/// A rate and its burst, if limited.
type Limit = Option<(f64, u64)>;

/// Asserts that the messages came in order, none lost, and never more (in count and in
/// bytes) than `burst` plus `rate` times the time since `start`, give or take one message.
fn assert_in_order_within(
    got: &[(Vec<u8>, Instant)],
    len: usize,
    start: Instant,
    (messages, bytes): (Limit, Limit),
) {
    let mut total = 0usize;
    for (i, (payload, at)) in got.iter().enumerate() {
        assert_eq!(payload, &numbered_payload(i, len), "message {i}");
        total += payload.len();
        let secs = at.duration_since(start).as_secs_f64();
        if let Some((rate, burst)) = messages {
            let allowed = burst as f64 + rate * secs + 1.0;
            assert!(
                (i + 1) as f64 <= allowed,
                "{} messages after {secs:.3} s, over {allowed:.1}",
                i + 1
            );
        }
        if let Some((rate, burst)) = bytes {
            let allowed = burst as f64 + rate * secs + len as f64;
            assert!(
                total as f64 <= allowed,
                "{total} bytes after {secs:.3} s, over {allowed:.1}"
            );
        }
    }
}

#[test]
fn held_back_client_loses_nothing_and_never_beats_its_message_rate() {
    let (rate, burst) = (200.0, 20);
    let limit = RateLimit::new().messages(rate, burst);
    let hub = Hub::builder().rate_limit(limit).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);

    // Ten bursts at once.
    let n = 10 * burst as usize;
    let start = Instant::now();
    peer.write(&lines(n, 10));
    let got = timed_messages(&mut events, id, n);
    assert_in_order_within(&got, 10, start, (Some((rate, burst)), None));

    // Counters are published at the end of a round: wait for the last one.
    let stats = stats_when(&hub, |s| s.rate_held >= 1 && s.frames_in == n as u64);
    assert!(stats.rate_held >= 1, "{stats:?}");
    assert_eq!(stats.rate_dropped, 0);
    assert_eq!(stats.frames_in, n as u64);
    // Still a client in good standing.
    assert!(!events.has_left(id));
}

#[test]
fn held_back_client_loses_nothing_and_never_beats_its_byte_rate() {
    let (rate, burst) = (100_000.0, 10_000);
    let len = 1000;
    let limit = RateLimit::new()
        .bytes(rate, burst)
        .policy(RateLimitPolicy::HoldBack);
    let hub = Hub::builder().rate_limit(limit).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);

    let n = 100;
    let start = Instant::now();
    peer.write(&lines(n, len));
    let got = timed_messages(&mut events, id, n);
    assert_in_order_within(&got, len, start, (None, Some((rate, burst))));
    assert!(hub.stats().rate_held >= 1);
}

#[test]
fn a_held_back_client_holds_nobody_else_back() {
    // The third message waits 100 s: far longer than the test.
    let limit = RateLimit::new().messages(0.01, 2);
    let hub = Hub::builder()
        .rate_limit(limit)
        .relay(Relay::Others)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut held, held_id) = join(&hub, &mut events);
    let (mut other, other_id) = join(&hub, &mut events);

    held.write(&lines(3, 10));
    let first = events.messages(held_id, 2);
    assert_eq!(first[1].as_ref(), numbered_payload(1, 10));
    stats_when(&hub, |s| s.rate_held == 1);

    // Another client is read, relayed to, and relays as usual meanwhile.
    other.write(b"from the other\n");
    assert_eq!(events.expect_message(other_id), b"from the other");
    assert_eq!(held.read_line(), b"from the other");
    assert_eq!(other.read_line(), numbered_payload(0, 10));
    assert_eq!(other.read_line(), numbered_payload(1, 10));
    // The third is still waiting in its socket.
    assert_eq!(events.messages_from(held_id).len(), 2);
    let stats = hub.stats();
    assert_eq!((stats.rate_held, stats.frames_in), (1, 3), "{stats:?}");

    // A held client whose connection breaks leaves at once (one that only hangs up
    // leaves once what it sent before has been read).
    held.reset();
    assert_eq!(events.disconnected(held_id), DisconnectReason::Reset);
}

#[test]
fn dropped_messages_are_counted_and_reach_nobody() {
    let limit = RateLimit::new()
        .messages(0.01, 5)
        .policy(RateLimitPolicy::Drop);
    let hub = Hub::builder()
        .rate_limit(limit)
        .relay(Relay::Others)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut sender, sender_id) = join(&hub, &mut events);
    let (mut other, other_id) = join(&hub, &mut events);

    sender.write(&lines(20, 10));
    let stats = stats_when(&hub, |s| s.rate_dropped == 15);
    assert_eq!(stats.rate_dropped, 15, "{stats:?}");
    assert_eq!(stats.rate_held, 0);

    // Everything the sender's excess could have caused comes before this.
    other.write(b"after\n");
    assert_eq!(events.messages(other_id, 1)[0].as_ref(), b"after");
    let got = events.messages_from(sender_id);
    let expected: Vec<Vec<u8>> = (0..5).map(|i| numbered_payload(i, 10)).collect();
    assert_eq!(got, expected);
    // Relayed: the first five only, then what came after.
    for payload in &expected {
        assert_eq!(&other.read_line(), payload);
    }
    assert_eq!(sender.read_line(), b"after");
    hub.broadcast(&b"end"[..]).unwrap();
    assert_eq!(other.read_line(), b"end");
    assert!(!events.has_left(sender_id));
}

#[test]
fn control_requests_count_but_are_never_dropped() {
    let limit = RateLimit::new()
        .messages(0.01, 1)
        .policy(RateLimitPolicy::Drop);
    let hub = util::rooms().rate_limit(limit).bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    util::read_at(&mut peer);

    // The one message allowed, then a request over the limit (answered, and paid for), then
    // data over the limit (dropped), then a data message that starts with '#' (data: dropped).
    peer.write(b"hello\n#join @room\nmore\n##hash\n");
    assert_eq!(events.expect_message(id), b"hello");
    let joined = peer.read_text_line();
    assert!(joined.starts_with("#joined @room "), "{joined}");
    let stats = stats_when(&hub, |s| s.rate_dropped == 2);
    assert_eq!(stats.rate_dropped, 2, "{stats:?}");
    assert_eq!(events.messages_from(id).len(), 1);
}

#[test]
fn a_client_over_its_limit_is_disconnected_as_rate_limited() {
    let limit = RateLimit::new()
        .bytes(1.0, 100)
        .messages(0.01, 3)
        .policy(RateLimitPolicy::Disconnect);
    let hub = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .rate_limit(limit)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);

    for i in 0..5 {
        peer.send(Framing::LengthPrefixed, &numbered_payload(i, 10));
    }
    assert_eq!(events.disconnected(id), DisconnectReason::RateLimited);
    let expected: Vec<Vec<u8>> = (0..3).map(|i| numbered_payload(i, 10)).collect();
    assert_eq!(events.messages_from(id), expected);
    peer.expect_closed();
    let stats = stats_when(&hub, |s| s.disconnects(DisconnectReason::RateLimited) == 1);
    assert_eq!(
        stats.disconnects(DisconnectReason::RateLimited),
        1,
        "{stats:?}"
    );
    assert_eq!(format!("{:?}", stats.disconnects), "{RateLimited: 1}");
    assert_eq!(
        DisconnectReason::RateLimited.to_string(),
        "sent too fast (rate limit)"
    );
}

#[test]
fn no_limit_by_default() {
    let hub = Hub::builder().bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    peer.write(&lines(2000, 10));
    assert_eq!(events.messages(id, 2000).len(), 2000);
    let stats = hub.stats();
    assert_eq!((stats.rate_held, stats.rate_dropped), (0, 0));
}

#[test]
fn bad_limits_are_refused_at_bind_naming_the_setting() {
    let cases = [
        (RateLimit::new(), "neither messages nor bytes"),
        (
            RateLimit::new().messages(0.0, 10),
            "messages per second is 0",
        ),
        (
            RateLimit::new().messages(f64::NAN, 10),
            "messages per second is NaN",
        ),
        (
            RateLimit::new().messages(-1.0, 10),
            "messages per second is -1",
        ),
        (
            RateLimit::new().messages(f64::INFINITY, 10),
            "messages per second is inf",
        ),
        (
            RateLimit::new().messages(1e10, 10),
            "messages per second is 10000000000",
        ),
        (
            RateLimit::new().messages(10.0, 0),
            "the messages burst is 0",
        ),
        (
            RateLimit::new().messages(10.0, u64::MAX),
            "the messages burst is",
        ),
        (
            RateLimit::new().bytes(0.0001, 10),
            "bytes per second is 0.0001",
        ),
        (RateLimit::new().bytes(1e16, 10), "bytes per second is"),
        (RateLimit::new().bytes(1e3, 0), "the bytes burst is 0"),
        (RateLimit::new().bytes(1e3, 1 << 51), "the bytes burst is"),
        (
            RateLimit::new().messages(1.0, 1).bytes(0.0, 1),
            "bytes per second is 0",
        ),
    ];
    for (limit, needle) in cases {
        match Hub::builder().rate_limit(limit).bind(LOCAL) {
            Err(Error::Config(msg)) => {
                assert!(msg.starts_with("rate_limit: "), "{msg}");
                assert!(msg.contains(needle), "{msg:?} should say {needle:?}");
            }
            Err(other) => panic!("{limit:?}: expected a config error, got {other}"),
            Ok(_) => panic!("{limit:?}: accepted"),
        }
    }
    // The extremes are fine, and `None` turns it off.
    let fine = RateLimit::new()
        .messages(1e9, 1 << 32)
        .bytes(0.001, 1 << 50);
    let _hub = Hub::builder().rate_limit(fine).bind(LOCAL).unwrap();
    let _off = Hub::builder().rate_limit(None).bind(LOCAL).unwrap();
}

#[cfg(feature = "websocket")]
mod websocket {
    use super::*;
    use tungstenite::Message;
    use util::{close_for, close_of, mixed, ws_join};

    #[test]
    fn a_websocket_client_over_its_limit_is_closed_with_1008() {
        let limit = RateLimit::new()
            .messages(0.01, 2)
            .policy(RateLimitPolicy::Disconnect);
        let hub = mixed(Hub::builder().rate_limit(limit));
        let mut events = EventLog::subscribe(&hub);
        let (mut ws, id) = ws_join(&hub, &mut events);
        for i in 0..4 {
            let text = String::from_utf8(numbered_payload(i, 10)).unwrap();
            ws.send(Message::text(text)).unwrap();
        }
        // Pings and pongs are not messages: they never count.
        assert_eq!(events.disconnected(id), DisconnectReason::RateLimited);
        assert_eq!(events.messages_from(id).len(), 2);
        let (code, reason) = close_of(&mut ws);
        assert_eq!(
            (code, reason.as_str()),
            close_for(DisconnectReason::RateLimited)
        );
        assert_eq!(code, 1008);
    }

    #[test]
    fn a_held_back_websocket_client_loses_nothing() {
        let (rate, burst) = (100.0, 10);
        let hub = mixed(Hub::builder().rate_limit(RateLimit::new().messages(rate, burst)));
        let mut events = EventLog::subscribe(&hub);
        let (mut ws, id) = ws_join(&hub, &mut events);
        let n = 5 * burst as usize;
        let start = Instant::now();
        for i in 0..n {
            let text = String::from_utf8(numbered_payload(i, 10)).unwrap();
            ws.write(Message::text(text)).unwrap();
        }
        ws.flush().unwrap();
        let got = timed_messages(&mut events, id, n);
        assert_in_order_within(&got, 10, start, (Some((rate, burst)), None));
        assert!(hub.stats().rate_held >= 1);
        // Still served: a broadcast reaches it.
        hub.broadcast(&b"still here"[..]).unwrap();
        assert_eq!(util::text(&mut ws), "still here");
    }
}
