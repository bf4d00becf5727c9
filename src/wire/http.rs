//! The HTTP front of WebSocket listeners (feature `websocket`): what a request head asks
//! for, sans I/O. An upgrade goes to the WebSocket handshake (`websocket::handshake`); a
//! `GET` of the event-stream path opens an event stream (`sse`); the host's pages, the
//! metrics and health are fixed answers; anything else is 404 (or 405 for a method a
//! path does not take).
//!
//! ```text
//! request head ──► Upgrade: websocket ───────────────► handshake ──► 101 or a refusal
//!              ──► GET <sse_path>[/<topic>] ─────────► Events (Origin, Accept checked) ──► 200
//!              ──► GET|HEAD <page|metrics|health> ───► Serve (the dispatcher answers, closes)
//!              ──► websocket_path, not an upgrade ──► handshake's refusal (400, 426)
//!              ──► anything else ────────────────────► 404 / 405, closed
//! ```
//!
//! One request per connection: every answer but an upgrade or an event stream says
//! `Connection: close`. With no page, event stream, metrics or health configured, every
//! request goes to the handshake as before.

use std::fmt;

use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::Request;

use super::websocket::{handshake, refusal, Refused, Upgrade};
use crate::options::{HttpSettings, WebSocketSettings};

/// The most header lines a request may have (as the handshake allows).
const MAX_HEADERS: usize = 124;

/// What the request head received so far amounts to.
#[derive(Debug)]
pub(crate) enum Head {
    /// The head is not complete yet (and within `max_head`).
    Partial,
    /// A valid WebSocket upgrade; the head was the first `len` bytes.
    Upgrade {
        /// The request, for the authenticator, and the `101` to send.
        upgrade: Upgrade,
        /// Bytes of the head.
        len: usize,
    },
    /// A valid request for an event stream.
    Events(Events),
    /// A request the dispatcher answers with a fixed or computed response, then closes.
    Serve(Serve),
    /// Refused: write `response` and close.
    Refused(Refused),
}

/// A request for an event stream.
#[derive(Debug)]
pub(crate) struct Events {
    /// The request, for the authenticator, and the `200` (with `retry:`) to send.
    pub(crate) request: Upgrade,
    /// The topic (percent-decoded, not yet checked as a name), or `None` for the hub-wide
    /// stream.
    pub(crate) topic: Option<String>,
    /// The position the client has (`Last-Event-ID`, or the `lastEventId` query
    /// parameter): `Some(None)` if it is not one the hub gave.
    pub(crate) last_event: Option<Option<(u64, u64)>>,
}

/// What a plain `GET` or `HEAD` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Serve {
    /// Which answer.
    pub(crate) what: Served,
    /// A `HEAD`: the head only.
    pub(crate) head_only: bool,
}

/// The answers the dispatcher serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// The host's page at this index of `HttpSettings::pages`.
    Page(usize),
    /// The Prometheus text.
    Metrics,
    /// Liveness.
    Live,
    /// Readiness.
    Ready,
    /// No such path: 404.
    NotFound,
    /// A path that does not take this method: 405, with `Allow`.
    Method(&'static str),
}

/// Decides on the request head at the front of `buf`.
pub(crate) fn route(buf: &[u8], settings: &WebSocketSettings) -> Head {
    let http = &settings.http;
    if !http.serves_http() {
        return handshake::parse_head(buf, settings);
    }
    let window = &buf[..buf.len().min(settings.max_head)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(window) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if buf.len() > settings.max_head => {
            return Head::Refused(refusal(431, "request head too large"));
        }
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Head::Refused(refusal(431, "too many header lines"))
        }
        Err(_) => return Head::Refused(refusal(400, "malformed HTTP request")),
    }
    let method = request.method.unwrap_or_default();
    let target = request.path.unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let upgrade = request.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && h.value
                .split(|&b| b == b',')
                .any(|token| trim(token).eq_ignore_ascii_case(b"websocket"))
    });
    if upgrade {
        return handshake::parse_head(buf, settings);
    }
    if let Some(what) = fixed(http, path) {
        let head_only = match method {
            "GET" => false,
            "HEAD" => true,
            _ => return serve(Served::Method("GET, HEAD"), false),
        };
        return serve(what, head_only);
    }
    if let Some(topic) = events_path(http, path) {
        if method != "GET" {
            return serve(Served::Method("GET"), false);
        }
        return events(window, settings, topic, query);
    }
    if settings.path.as_deref() == Some(path) {
        // The WebSocket endpoint, not asked for an upgrade: the handshake says why.
        return handshake::parse_head(buf, settings);
    }
    serve(Served::NotFound, method == "HEAD")
}

/// A served answer.
fn serve(what: Served, head_only: bool) -> Head {
    Head::Serve(Serve { what, head_only })
}

/// The fixed answer at exactly `path`, if any.
fn fixed(http: &HttpSettings, path: &str) -> Option<Served> {
    let is = |p: &Option<String>| p.as_deref() == Some(path);
    if let Some(i) = http.pages.iter().position(|page| page.path == path) {
        Some(Served::Page(i))
    } else if is(&http.metrics_path) {
        Some(Served::Metrics)
    } else if is(&http.live_path) {
        Some(Served::Live)
    } else if is(&http.ready_path) {
        Some(Served::Ready)
    } else {
        None
    }
}

/// Whether `path` is an event stream's: `Some(None)` for the hub-wide stream (the path
/// itself), `Some(Some(topic))` for one below it (not decoded yet).
fn events_path<'p>(http: &HttpSettings, path: &'p str) -> Option<Option<&'p str>> {
    let base = http.sse_path.as_deref()?;
    let rest = path.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(None);
    }
    // `/events/` + topic; with a base ending in `/`, the topic follows it at once.
    let topic = if base.ends_with('/') {
        rest
    } else {
        rest.strip_prefix('/')?
    };
    Some(Some(topic))
}

/// A `GET` of an event stream: checked as an upgrade is (HTTP/1.1, one `Host`, `Origin`),
/// then answered `200` with the headers that keep proxies from buffering it.
fn events(window: &[u8], settings: &WebSocketSettings, topic: Option<&str>, query: &str) -> Head {
    let request = match Request::try_parse(window) {
        Ok(Some((_, request))) => request,
        Ok(None) => return Head::Partial,
        Err(_) => return Head::Refused(refusal(400, "HTTP/1.1 GET is required")),
    };
    if request.headers().get_all("host").iter().count() != 1 {
        return Head::Refused(refusal(400, "one Host header is required"));
    }
    if !handshake::origin_allowed(&settings.origins, &request) {
        return Head::Refused(refusal(403, "origin not allowed"));
    }
    let accepts = request.headers().get_all("accept").iter().all(|value| {
        let value = value.as_bytes().to_ascii_lowercase();
        value
            .split(|&b| b == b',')
            .map(|media| trim(media.split(|&b| b == b';').next().unwrap_or_default()))
            .any(|media| matches!(media, b"text/event-stream" | b"text/*" | b"*/*"))
    });
    if !accepts {
        return Head::Refused(refusal(406, "this path serves text/event-stream"));
    }
    let topic = match topic.map(percent_decoded) {
        None => None,
        Some(Some(topic)) => Some(topic),
        Some(None) => return Head::Refused(refusal(404, "not a topic name")),
    };
    let header = request
        .headers()
        .get("last-event-id")
        .map(|value| value.as_bytes().to_vec());
    let param = || {
        query.split('&').find_map(|pair| {
            let value = pair.strip_prefix("lastEventId=")?;
            percent_decoded(value).map(String::into_bytes)
        })
    };
    let last_event = header.or_else(param).map(|id| position(&id));
    let response = response_head(settings, &request);
    Head::Events(Events {
        request: Upgrade::events(request, response),
        topic,
        last_event,
    })
}

/// The `200` that opens an event stream, with the first event: `retry:`.
fn response_head(settings: &WebSocketSettings, request: &Request) -> Vec<u8> {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/event-stream; charset=utf-8\r\n\
         Cache-Control: no-cache, no-transform\r\n\
         X-Accel-Buffering: no\r\n\
         Connection: close\r\n",
    );
    // Allowed by the origin check: a page of another origin reads it only with these.
    if let Some(origin) = request
        .headers()
        .get("origin")
        .and_then(|o| o.to_str().ok())
    {
        head.push_str(&format!(
            "Access-Control-Allow-Origin: {origin}\r\n\
             Access-Control-Allow-Credentials: true\r\n\
             Vary: Origin\r\n"
        ));
    }
    head.push_str(&format!(
        "\r\nretry: {}\n\n",
        settings.http.sse_retry.as_millis()
    ));
    head.into_bytes()
}

/// `bytes` without the ASCII white space at either end (`<[u8]>::trim_ascii` is newer
/// than the crate's MSRV).
fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !first.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !last.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// `<epoch>-<seq>` as the hub writes ids, or `None`.
fn position(id: &[u8]) -> Option<(u64, u64)> {
    let id = std::str::from_utf8(id).ok()?.trim();
    let (epoch, seq) = id.split_once('-')?;
    let number = |s: &str| {
        let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits && (s == "0" || !s.starts_with('0')))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((number(epoch)?, number(seq)?))
}

/// `s` with its `%XX` escapes decoded (and `+` kept), if that is UTF-8.
fn percent_decoded(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A complete response: status, `Connection: close`, the extra header lines, then the
/// body's type and length; the body itself follows (unless the request was a `HEAD`).
pub(crate) fn response_head_of(
    status: u16,
    extra: &str,
    content_type: &str,
    len: usize,
) -> Vec<u8> {
    let reason = tungstenite::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Unknown");
    format!(
        "HTTP/1.1 {status} {reason}\r\nConnection: close\r\n{extra}\
         Content-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes()
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Served::Page(i) => write!(f, "page {i}"),
            Served::Metrics => f.write_str("metrics"),
            Served::Live => f.write_str("liveness"),
            Served::Ready => f.write_str("readiness"),
            Served::NotFound => f.write_str("404"),
            Served::Method(_) => f.write_str("405"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Page;

    fn settings() -> WebSocketSettings {
        let mut s = WebSocketSettings {
            path: Some("/ws".into()),
            ..WebSocketSettings::default()
        };
        s.http.sse_path = Some("/events".into());
        s.http.metrics_path = Some("/metrics".into());
        s.http.live_path = Some("/livez".into());
        s.http.pages.push(Page {
            path: "/".into(),
            content_type: "text/html".into(),
            body: "<p>hi</p>".into(),
        });
        s
    }

    fn get(target: &str, extra: &[&str]) -> Vec<u8> {
        let mut head = format!("GET {target} HTTP/1.1\r\nHost: example.com\r\n");
        for line in extra {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    #[track_caller]
    fn served(head: Head) -> Serve {
        match head {
            Head::Serve(serve) => serve,
            other => panic!("not served: {other:?}"),
        }
    }

    #[track_caller]
    fn events_of(head: Head) -> Events {
        match head {
            Head::Events(events) => events,
            other => panic!("not an event stream: {other:?}"),
        }
    }

    #[track_caller]
    fn refused(head: Head) -> u16 {
        match head {
            Head::Refused(refused) => refused.status,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn pages_metrics_and_health_by_exact_path() {
        let s = settings();
        assert_eq!(served(route(&get("/", &[]), &s)).what, Served::Page(0));
        assert_eq!(served(route(&get("/?x=1", &[]), &s)).what, Served::Page(0));
        assert_eq!(
            served(route(&get("/metrics", &[]), &s)).what,
            Served::Metrics
        );
        assert_eq!(served(route(&get("/livez", &[]), &s)).what, Served::Live);
        assert_eq!(
            served(route(&get("/nothing", &[]), &s)).what,
            Served::NotFound
        );
        assert_eq!(
            served(route(&get("/metrics/", &[]), &s)).what,
            Served::NotFound
        );
        let head = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(served(route(head, &s)).head_only);
        let post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(served(route(post, &s)).what, Served::Method("GET, HEAD"));
        let post = b"POST /events HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(served(route(post, &s)).what, Served::Method("GET"));
    }

    #[test]
    fn the_websocket_path_still_upgrades_and_explains() {
        let s = settings();
        let upgrade = get(
            "/ws",
            &[
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ],
        );
        assert!(matches!(route(&upgrade, &s), Head::Upgrade { .. }));
        assert_eq!(refused(route(&get("/ws", &[]), &s)), 400);
    }

    #[test]
    fn event_streams_with_topics_and_positions() {
        let s = settings();
        let hub = events_of(route(&get("/events", &["Accept: text/event-stream"]), &s));
        assert_eq!((hub.topic, hub.last_event), (None, None));
        let response = String::from_utf8(hub.request.response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("Content-Type: text/event-stream"));
        assert!(response.contains("X-Accel-Buffering: no"));
        assert!(response.ends_with("\r\n\r\nretry: 2000\n\n"), "{response}");
        assert!(!hub.request.is_websocket());
        let topic = events_of(route(&get("/events/caf%C3%A9?lastEventId=7-12", &[]), &s));
        assert_eq!(topic.topic.as_deref(), Some("café"));
        assert_eq!(topic.last_event, Some(Some((7, 12))));
        let header = events_of(route(
            &get("/events/a?lastEventId=7-12", &["Last-Event-ID: 8-0"]),
            &s,
        ));
        assert_eq!(header.last_event, Some(Some((8, 0))), "the header wins");
        let bad = events_of(route(&get("/events", &["Last-Event-ID: x"]), &s));
        assert_eq!(bad.last_event, Some(None));
        assert_eq!(
            served(route(&get("/eventsx", &[]), &s)).what,
            Served::NotFound
        );
        assert_eq!(refused(route(&get("/events/%ff", &[]), &s)), 404);
        assert_eq!(
            refused(route(&get("/events", &["Accept: text/html"]), &s)),
            406
        );
        assert_eq!(
            refused(route(&get("/events", &["Origin: https://evil.com"]), &s)),
            403
        );
    }

    #[test]
    fn positions_are_the_hubs_ids_only() {
        assert_eq!(position(b"5-17"), Some((5, 17)));
        assert_eq!(position(b" 5-0 "), Some((5, 0)));
        for bad in [
            &b""[..],
            b"5",
            b"5-",
            b"-5",
            b"05-1",
            b"5-01",
            b"a-1",
            b"5-1-2",
            b"\xff",
        ] {
            assert_eq!(position(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Any bytes, cut anywhere: an answer or a wait for more, never a panic; a head
        /// that passes `max_head` is never left waiting.
        #[test]
        fn any_bytes_get_an_answer(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            prefix in proptest::prop_oneof![
                proptest::strategy::Just(&b""[..]),
                proptest::strategy::Just(&b"GET /events/"[..]),
                proptest::strategy::Just(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]),
                proptest::strategy::Just(&b"HEAD /metrics HTTP/1.1\r\n"[..]),
            ],
        ) {
            let mut s = settings();
            s.max_head = 256;
            let mut buf = prefix.to_vec();
            buf.extend_from_slice(&bytes);
            let head = route(&buf, &s);
            if buf.len() > s.max_head {
                proptest::prop_assert!(!matches!(head, Head::Partial));
            }
        }
    }

    #[test]
    fn heads_are_bounded() {
        let s = settings();
        assert!(matches!(route(b"GET / HTTP/1.1\r\n", &s), Head::Partial));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
        assert_eq!(refused(route(long.as_bytes(), &s)), 431);
        assert_eq!(refused(route(b"\x16\x03\x01\x02\x00\r\n\r\n", &s)), 400);
    }
}
