//! The WebSocket opening handshake (RFC 6455 section 4.2), server side: parsing a client's
//! upgrade request, deciding whether to accept it, and the HTTP response either way.
//!
//! tungstenite parses and validates the request and derives the accept key; what a hub adds
//! (path, origin policy, subprotocol choice, the size limit, a status for each refusal)
//! is here. Nothing is kept between calls: the caller keeps the bytes until the head is
//! complete, as it keeps a partial frame.

use std::fmt;

use tungstenite::error::{CapacityError, Error, ProtocolError};
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};
use tungstenite::http::header::{HOST, ORIGIN, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL};
use tungstenite::http::{HeaderValue, StatusCode};

use crate::options::WebSocketSettings;
use crate::wire::http::Head;
use crate::Origins;

/// A valid upgrade request, kept so the host's authenticator can see it.
pub(crate) struct Upgrade {
    /// The request as tungstenite parsed it; boxed, as it is large and short-lived.
    request: Box<Request>,
    /// The subprotocol chosen, also named in `response`.
    protocol: Option<String>,
    /// The `101 Switching Protocols` response, with the accept key (or, for an event
    /// stream, its `200`).
    response: Vec<u8>,
    /// A WebSocket upgrade; `false`: the `GET` of an event stream (see `wire::http`).
    websocket: bool,
    /// `permessage-deflate` was negotiated (feature `deflate`), with the window the hub
    /// compresses with, in bits: the `101` says so.
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    deflate: Option<u8>,
}

impl Upgrade {
    /// The `GET` of an event stream, answered with `response`.
    pub(crate) fn events(request: Request, response: Vec<u8>) -> Upgrade {
        Upgrade {
            request: Box::new(request),
            protocol: None,
            response,
            websocket: false,
            deflate: None,
        }
    }

    /// The wire its client gets once answered: compressed WebSocket where the `101`
    /// accepted `permessage-deflate`, else plain.
    pub(crate) fn wire(&self) -> crate::wire::Wire {
        #[cfg(feature = "deflate")]
        match self.deflate {
            Some(15) => return crate::wire::Wire::WebSocketDeflate,
            Some(_) => return crate::wire::Wire::WebSocketDeflateNarrow,
            None => {}
        }
        crate::wire::Wire::WebSocket
    }

    /// Whether it is a WebSocket upgrade (not an event stream's `GET`).
    pub(crate) fn is_websocket(&self) -> bool {
        self.websocket
    }

    /// The path requested, without the query string (not percent-decoded).
    pub(crate) fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// The query string, without the `?`.
    pub(crate) fn query(&self) -> Option<&str> {
        self.request.uri().query()
    }

    /// The first value of header `name`, which is compared case-insensitively.
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.request.headers().get(name).map(HeaderValue::as_bytes)
    }

    /// Every header, names in lowercase; the values of a repeated header come together, in
    /// the order of the name's first appearance.
    #[cfg(test)]
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
    }

    /// The subprotocol chosen.
    #[cfg(test)]
    pub(crate) fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The complete `101 Switching Protocols` response (with Sec-WebSocket-Accept and, if
    /// chosen, Sec-WebSocket-Protocol and Sec-WebSocket-Extensions). The only extension it
    /// ever accepts is `permessage-deflate`, where the host enabled compression.
    pub(crate) fn response(&self) -> Vec<u8> {
        self.response.clone()
    }
}

impl fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers may carry cookies and tokens: not in logs.
        f.debug_struct("Upgrade")
            .field("path", &self.path())
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// A refused upgrade and the HTTP response that says so.
pub(crate) struct Refused {
    /// What was refused, for the log's counts.
    pub(crate) kind: &'static str,
    /// The HTTP status.
    pub(crate) status: u16,
    /// Why, for the log and the response body.
    pub(crate) why: &'static str,
    /// A complete HTTP/1.1 response with `Connection: close` and `why` as a text body.
    pub(crate) response: Vec<u8>,
}

impl fmt::Debug for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("status", &self.status)
            .field("why", &self.why)
            .finish_non_exhaustive()
    }
}

/// What was refused and why, for the log.
impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {} {}", self.kind, self.status, self.why)
    }
}

/// Parses the request head at the front of `buf` and decides on it.
///
/// Statuses: 400 for malformed HTTP, a request without exactly one `Host`, or a request
/// that is not a WebSocket upgrade, 404 for
/// a path other than `settings.path`, 426 (with `Sec-WebSocket-Version: 13`) for another
/// protocol version, 403 for a refused `Origin`, 431 for a head over `settings.max_head`
/// or over 124 header lines. Only the first `max_head` bytes are ever parsed, so a head's
/// fate does not depend on how it was split into reads.
pub(crate) fn parse_head(buf: &[u8], settings: &WebSocketSettings) -> Head {
    let window = &buf[..buf.len().min(settings.max_head)];
    match Request::try_parse(window) {
        Ok(Some((len, request))) => match accept(request, settings) {
            Ok(upgrade) => Head::Upgrade { upgrade, len },
            Err(refused) => Head::Refused(refused),
        },
        Ok(None) if buf.len() > settings.max_head => {
            Head::Refused(refusal(431, "request head too large"))
        }
        Ok(None) => Head::Partial,
        Err(err) => {
            let (status, why) = refused_because(&err);
            Head::Refused(refusal(status, why))
        }
    }
}

/// Checks a complete request against the settings and makes the 101 response.
fn accept(request: Request, settings: &WebSocketSettings) -> Result<Upgrade, Refused> {
    if settings
        .path
        .as_deref()
        .is_some_and(|path| path != request.uri().path())
    {
        return Err(refusal(404, "no WebSocket endpoint at this path"));
    }
    let Answer {
        response,
        protocol,
        deflate,
    } = answer(&request, settings)?;
    let mut bytes = Vec::with_capacity(160);
    // Writing to a Vec fails only on a header value that is not visible ASCII: none is.
    write_response(&mut bytes, &response).map_err(|_| refusal(500, "invalid response"))?;
    Ok(Upgrade {
        request: Box::new(request),
        protocol: protocol.map(str::to_owned),
        response: bytes,
        websocket: true,
        deflate,
    })
}

/// The `101` for an upgrade, and what it chose.
pub(crate) struct Answer<'s> {
    /// With the accept key, the subprotocol and the extension, if any.
    pub(crate) response: tungstenite::handshake::server::Response,
    /// The subprotocol chosen.
    pub(crate) protocol: Option<&'s str>,
    /// The window `permessage-deflate` was accepted with, in bits, if it was.
    pub(crate) deflate: Option<u8>,
}

/// What every upgrade is checked for, wherever it was received (the hub's listener, or a
/// host answering it itself, see `hub::adopt`): exactly one `Host`, the upgrade headers,
/// the version and the key (tungstenite's), the `Origin` policy; then the `101` response
/// (with the accept key, the subprotocol chosen and the extension accepted, which are also
/// returned).
pub(crate) fn answer<'s>(
    request: &Request,
    settings: &'s WebSocketSettings,
) -> Result<Answer<'s>, Refused> {
    // RFC 6455 4.1 (and HTTP/1.1): exactly one Host.
    if request.headers().get_all(HOST).iter().count() != 1 {
        return Err(refusal(400, "one Host header is required"));
    }
    // The upgrade headers, the version and the key, checked and answered by tungstenite.
    let mut response = create_response(request).map_err(|err| {
        let (status, why) = refused_because(&err);
        refusal(status, why)
    })?;
    if !origin_allowed(&settings.origins, request) {
        return Err(refusal(403, "origin not allowed"));
    }
    let protocol = choose_protocol(&settings.protocols, request);
    if let Some(protocol) = protocol {
        // A substring of a header value that was visible ASCII, so always a valid value.
        let value = HeaderValue::from_str(protocol)
            .map_err(|_| refusal(500, "invalid subprotocol name"))?;
        response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    let deflate = offers_deflate(request, settings);
    if let Some(window) = deflate {
        response.headers_mut().insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(deflate_answer(window)),
        );
    }
    Ok(Answer {
        response,
        protocol,
        deflate,
    })
}

impl Upgrade {
    /// An upgrade the host answered itself (an adopted connection): `request` as it gave
    /// it, with the subprotocol the settings choose, and no response of its own to send.
    pub(crate) fn adopted(request: Request, settings: &WebSocketSettings) -> Upgrade {
        let protocol = choose_protocol(&settings.protocols, &request).map(str::to_owned);
        // As `answer` said to the host, which answered with it.
        let deflate = offers_deflate(&request, settings);
        Upgrade {
            request: Box::new(request),
            protocol,
            response: Vec::new(),
            websocket: true,
            deflate,
        }
    }
}

/// The window the hub compresses with for this request, if it offers `permessage-deflate`
/// as the hub can honour it and the host enabled compression (see
/// `wire::deflate::accepts`).
#[cfg(feature = "deflate")]
fn offers_deflate(request: &Request, settings: &WebSocketSettings) -> Option<u8> {
    let offers = request.headers().get_all(SEC_WEBSOCKET_EXTENSIONS);
    crate::wire::deflate::accepts(
        &settings.compression,
        offers.iter().map(HeaderValue::as_bytes),
    )
}

/// Without the `deflate` feature no extension is ever accepted.
#[cfg(not(feature = "deflate"))]
fn offers_deflate(_request: &Request, _settings: &WebSocketSettings) -> Option<u8> {
    None
}

/// The `Sec-WebSocket-Extensions` value of a `101` that accepts compression (feature
/// `deflate`) with a window of `bits` (15: 32 KiB; 8 to 14 where the client offered less,
/// echoed as RFC 7692 section 7.1.2.1 asks): the server imposes no context takeover both
/// ways (sections 7.1.1.1 and 7.1.1.2 let it, offered or not), so a message compressed
/// once is the same bytes for every client of a window.
pub(crate) fn deflate_answer(bits: u8) -> &'static str {
    const ANSWERS: [&str; 8] = [
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=13",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=14",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    ];
    ANSWERS[usize::from(bits.clamp(8, 15) - 8)]
}

/// The status and reason for a request tungstenite could not parse or accept.
fn refused_because(err: &Error) -> (u16, &'static str) {
    match err {
        Error::Capacity(CapacityError::TooManyHeaders) => (431, "too many header lines"),
        Error::Protocol(ProtocolError::WrongHttpMethod) => (400, "the method must be GET"),
        Error::Protocol(ProtocolError::WrongHttpVersion) => (400, "HTTP/1.1 is required"),
        Error::Protocol(ProtocolError::MissingConnectionUpgradeHeader) => {
            (400, "missing Connection: Upgrade")
        }
        Error::Protocol(ProtocolError::MissingUpgradeWebSocketHeader) => {
            (400, "missing Upgrade: websocket")
        }
        // Absent or another version: either way the client learns which one to speak.
        Error::Protocol(ProtocolError::MissingSecWebSocketVersionHeader) => {
            (426, "Sec-WebSocket-Version must be 13")
        }
        Error::Protocol(ProtocolError::MissingSecWebSocketKey) => {
            (400, "missing Sec-WebSocket-Key")
        }
        Error::Protocol(ProtocolError::InvalidSecWebSocketKey) => {
            (400, "invalid Sec-WebSocket-Key")
        }
        _ => (400, "malformed HTTP request"),
    }
}

/// Whether the request's `Origin` passes the policy. Browsers always send one, so this is
/// what keeps other sites' pages from connecting with the user's cookies.
pub(crate) fn origin_allowed(origins: &Origins, request: &Request) -> bool {
    let mut values = request.headers().get_all(ORIGIN).iter();
    let Some(origin) = values.next() else {
        return true;
    };
    match origins {
        Origins::Any => true,
        // A browser sends one Origin (RFC 6454 section 7.3); two are not a browser's.
        _ if values.next().is_some() => false,
        Origins::List(list) => origin
            .to_str()
            .is_ok_and(|origin| list.iter().any(|o| o.eq_ignore_ascii_case(origin))),
        Origins::SameOrigin => match (origin.to_str(), request.headers().get(HOST)) {
            (Ok(origin), Some(host)) => host.to_str().is_ok_and(|h| same_origin(origin, h)),
            _ => false,
        },
    }
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (a Host header value). A port
/// equal to the origin scheme's default may be left out on either side, as browsers do.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        // "null" (a sandboxed or file page) is nobody's origin.
        return false;
    };
    let default_port = if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        ":80"
    } else if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        ":443"
    } else {
        return false;
    };
    let strip = |s| without_suffix(s, default_port);
    !authority.is_empty() && strip(authority).eq_ignore_ascii_case(strip(host))
}

/// `s` without `suffix` at its end, if it ends so.
fn without_suffix<'s>(s: &'s str, suffix: &str) -> &'s str {
    s.strip_suffix(suffix).unwrap_or(s)
}

/// The first of the server's subprotocols (its order of preference) that the client
/// offered, in any of its `Sec-WebSocket-Protocol` headers.
fn choose_protocol<'s>(protocols: &'s [String], request: &Request) -> Option<&'s str> {
    if protocols.is_empty() {
        return None;
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    protocols
        .iter()
        .map(String::as_str)
        .find(|protocol| offered.contains(protocol))
}

/// A refusal made by the caller (e.g. 403 when the authenticator rejects the request):
/// a complete HTTP/1.1 response with `Connection: close` and `why` as a short text body.
/// A status that is not an error (not 400-599) is sent as 500.
pub(crate) fn refusal(status: u16, why: &'static str) -> Refused {
    let (status, reason) = match StatusCode::from_u16(status) {
        Ok(code) if code.is_client_error() || code.is_server_error() => {
            (status, code.canonical_reason().unwrap_or("Error"))
        }
        _ => (500, "Internal Server Error"),
    };
    let mut response = format!("HTTP/1.1 {status} {reason}\r\n");
    if status == 426 {
        // RFC 6455 section 4.2.2 names the version to speak; RFC 9110 section 15.5.22
        // requires Upgrade in a 426, and Connection to list it.
        response.push_str(
            "Connection: close, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        );
    } else {
        response.push_str("Connection: close\r\n");
    }
    response.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{why}\n",
        why.len() + 1
    ));
    Refused {
        kind: "WebSocket upgrade refused",
        status,
        why,
        response: response.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::handshake::client::Response;

    /// The key and accept value from RFC 6455 section 1.3.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// A valid upgrade request's lines, to edit.
    fn lines() -> Vec<String> {
        [
            "GET /chat?room=1 HTTP/1.1",
            "Host: example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            &format!("Sec-WebSocket-Key: {KEY}"),
            "Sec-WebSocket-Version: 13",
        ]
        .iter()
        .map(|line| line.to_string())
        .collect()
    }

    /// A request head of `lines`.
    fn head(lines: &[String]) -> Vec<u8> {
        format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
    }

    /// `lines()` with the header `name` removed and `with` added.
    fn edit(name: &str, with: &[&str]) -> Vec<u8> {
        let mut lines = lines();
        lines.retain(|line| {
            !line
                .to_lowercase()
                .starts_with(&format!("{}:", name.to_lowercase()))
        });
        lines.extend(with.iter().map(|line| line.to_string()));
        head(&lines)
    }

    /// The default settings: same origin, any path, no subprotocol.
    fn settings() -> WebSocketSettings {
        WebSocketSettings::default()
    }

    /// The upgrade in `buf`, which must be accepted.
    #[track_caller]
    fn accepted(buf: &[u8], settings: &WebSocketSettings) -> (Upgrade, usize) {
        match parse_head(buf, settings) {
            Head::Upgrade { upgrade, len } => (upgrade, len),
            other => panic!("not accepted: {other:?}"),
        }
    }

    /// The refusal of `buf`, which must be refused.
    #[track_caller]
    fn refused(buf: &[u8], settings: &WebSocketSettings) -> Refused {
        match parse_head(buf, settings) {
            Head::Refused(refused) => refused,
            other => panic!("not refused: {other:?}"),
        }
    }

    /// The status `buf` is refused with.
    #[track_caller]
    fn status(buf: &[u8], settings: &WebSocketSettings) -> u16 {
        refused(buf, settings).status
    }

    /// The response head parsed back with tungstenite's client side. A 101 has no body.
    fn parse_response(bytes: &[u8]) -> Response {
        let (len, response) = Response::try_parse(bytes).unwrap().unwrap();
        if response.status() == 101 {
            assert_eq!(len, bytes.len(), "nothing after the head");
        }
        response
    }

    #[test]
    fn a_valid_upgrade_is_answered_101() {
        let buf = head(&lines());
        let (upgrade, len) = accepted(&buf, &settings());
        assert_eq!(len, buf.len());
        assert_eq!((upgrade.path(), upgrade.query()), ("/chat", Some("room=1")));
        assert_eq!(upgrade.protocol(), None);
        let bytes = upgrade.response();
        assert!(bytes.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        let response = parse_response(&bytes);
        assert_eq!(response.status(), 101);
        let headers = response.headers();
        assert_eq!(headers["sec-websocket-accept"], ACCEPT);
        assert!(headers["upgrade"]
            .as_bytes()
            .eq_ignore_ascii_case(b"websocket"));
        assert!(headers["connection"]
            .as_bytes()
            .eq_ignore_ascii_case(b"upgrade"));
        assert!(!headers.contains_key("sec-websocket-protocol"));
        assert!(!headers.contains_key("sec-websocket-extensions"));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let buf = head(&[
            "GET / HTTP/1.1".into(),
            "HOST: example.com".into(),
            "uPgRaDe: WebSocket".into(),
            "CONNECTION: keep-alive, upgrade".into(),
            format!("sec-websocket-key: {KEY}"),
            "SEC-WEBSOCKET-VERSION: 13".into(),
            "X-Token: abc".into(),
        ]);
        let (upgrade, _) = accepted(&buf, &settings());
        assert_eq!(upgrade.header("Sec-WebSocket-Key"), Some(KEY.as_bytes()));
        assert_eq!(upgrade.header("x-token"), Some(&b"abc"[..]));
        assert_eq!(upgrade.header("X-TOKEN"), Some(&b"abc"[..]));
        assert_eq!(upgrade.header("missing"), None);
        assert_eq!(upgrade.header("not a header name"), None);
        let headers: Vec<(&str, &[u8])> = upgrade.headers().collect();
        assert_eq!(headers.len(), 6);
        assert!(headers.contains(&("x-token", &b"abc"[..])));
        assert!(headers.contains(&("host", &b"example.com"[..])));
        assert_eq!(parse_response(&upgrade.response()).status(), 101);
    }

    #[test]
    fn a_head_split_across_many_reads() {
        let buf = head(&lines());
        for end in 0..buf.len() {
            assert!(
                matches!(parse_head(&buf[..end], &settings()), Head::Partial),
                "{end} bytes"
            );
        }
        accepted(&buf, &settings());
    }

    #[test]
    fn what_follows_the_head_is_left_alone() {
        let mut buf = head(&lines());
        let len = buf.len();
        buf.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        assert_eq!(accepted(&buf, &settings()).1, len);
    }

    #[test]
    fn not_an_upgrade_is_400() {
        let s = settings();
        let mut post = lines();
        post[0] = "POST /chat HTTP/1.1".into();
        let mut http10 = lines();
        http10[0] = "GET /chat HTTP/1.0".into();
        let cases = [
            (head(&post), "POST"),
            (head(&http10), "HTTP/1.0"),
            (edit("connection", &[]), "no Connection"),
            (
                edit("connection", &["Connection: keep-alive"]),
                "Connection: keep-alive",
            ),
            (edit("upgrade", &[]), "no Upgrade"),
            (edit("upgrade", &["Upgrade: h2c"]), "Upgrade: h2c"),
            (edit("sec-websocket-key", &[]), "no key"),
            (
                edit("sec-websocket-key", &["Sec-WebSocket-Key: short"]),
                "short key",
            ),
            // 24 characters of base64, but 17 bytes.
            (
                edit(
                    "sec-websocket-key",
                    &["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=!"],
                ),
                "not base64",
            ),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
                "a TLS hello",
            ),
            (
                b"GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(),
                "a bad header line",
            ),
        ];
        for (buf, what) in cases {
            let refused = refused(&buf, &s);
            assert_eq!(refused.status, 400, "{what}: {refused:?}");
            assert!(refused
                .response
                .starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        }
    }

    #[test]
    fn the_path_must_match_without_its_query() {
        let mut s = settings();
        s.path = Some("/chat".into());
        accepted(&head(&lines()), &s);
        let mut other = lines();
        other[0] = "GET /chat/more HTTP/1.1".into();
        assert_eq!(status(&head(&other), &s), 404);
        other[0] = "GET /?/chat HTTP/1.1".into();
        assert_eq!(status(&head(&other), &s), 404);
        s.path = None;
        accepted(&head(&other), &s);
    }

    #[test]
    fn another_version_is_426_naming_13() {
        for buf in [
            edit("sec-websocket-version", &["Sec-WebSocket-Version: 8"]),
            edit("sec-websocket-version", &[]),
        ] {
            let refused = refused(&buf, &settings());
            assert_eq!(refused.status, 426);
            let response = parse_response(&refused.response);
            assert_eq!(response.status(), 426);
            assert_eq!(response.headers()["sec-websocket-version"], "13");
            assert_eq!(response.headers()["upgrade"], "websocket");
        }
    }

    #[test]
    fn a_head_over_the_limit_is_431() {
        let buf = head(&lines());
        let mut s = settings();
        s.max_head = buf.len();
        accepted(&buf, &s);
        s.max_head = buf.len() - 1;
        // Incomplete within the limit, refused as soon as it passes it.
        assert!(matches!(
            parse_head(&buf[..buf.len() - 1], &s),
            Head::Partial
        ));
        assert_eq!(status(&buf, &s), 431);
        let mut long = lines();
        long.push(format!("X-Padding: {}", "p".repeat(9000)));
        assert_eq!(status(&head(&long)[..8193], &settings()), 431);
        let mut many = lines();
        many.extend((0..130).map(|i| format!("X-{i}: 1")));
        assert_eq!(status(&head(&many), &settings()), 431);
    }

    /// A valid request with this Host and, if given, this Origin.
    fn with_origin(host: &str, origin: Option<&str>) -> Vec<u8> {
        let mut with = vec![format!("Host: {host}")];
        with.extend(origin.map(|o| format!("Origin: {o}")));
        let with: Vec<&str> = with.iter().map(String::as_str).collect();
        edit("host", &with)
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        let s = settings();
        let ok = [
            ("example.com", None),
            ("example.com", Some("http://example.com")),
            ("example.com", Some("https://EXAMPLE.com")),
            ("example.com:8080", Some("http://example.com:8080")),
            ("example.com", Some("https://example.com:443")),
            ("example.com:443", Some("https://example.com")),
            ("example.com:80", Some("http://example.com")),
            ("[::1]:9000", Some("http://[::1]:9000")),
        ];
        for (host, origin) in ok {
            accepted(&with_origin(host, origin), &s);
        }
        let refused = [
            ("example.com", Some("https://evil.com")),
            ("example.com", Some("http://example.com:8080")),
            ("example.com:8080", Some("http://example.com")),
            ("example.com:80", Some("https://example.com")),
            ("example.com", Some("http://example.com.evil.com")),
            ("example.com", Some("null")),
            ("example.com", Some("file://example.com")),
        ];
        for (host, origin) in refused {
            assert_eq!(
                status(&with_origin(host, origin), &s),
                403,
                "{origin:?} on {host}"
            );
        }
        let twice = edit(
            "origin",
            &["Origin: http://example.com", "Origin: http://example.com"],
        );
        assert_eq!(status(&twice, &s), 403);
    }

    #[test]
    fn any_origin_and_a_list_of_origins() {
        let mut s = settings();
        s.origins = Origins::Any;
        accepted(&with_origin("example.com", Some("https://evil.com")), &s);
        accepted(&with_origin("example.com", Some("null")), &s);
        s.origins = Origins::List(vec!["https://app.example.net".into(), "null".into()]);
        accepted(&with_origin("example.com", None), &s);
        accepted(
            &with_origin("example.com", Some("https://APP.example.net")),
            &s,
        );
        accepted(&with_origin("example.com", Some("null")), &s);
        for origin in [
            "https://app.example.net:444",
            "http://app.example.net",
            "https://example.com",
        ] {
            assert_eq!(status(&with_origin("example.com", Some(origin)), &s), 403);
        }
    }

    #[test]
    fn the_first_protocol_the_server_prefers_is_chosen() {
        let mut s = settings();
        s.protocols = vec!["v2".into(), "v1".into()];
        let choose = |offers: &[&str], s: &WebSocketSettings| {
            let offers: Vec<String> = offers
                .iter()
                .map(|o| format!("Sec-WebSocket-Protocol: {o}"))
                .collect();
            let offers: Vec<&str> = offers.iter().map(String::as_str).collect();
            let (upgrade, _) = accepted(&edit("sec-websocket-protocol", &offers), s);
            let response = parse_response(&upgrade.response());
            let header = response.headers().get("sec-websocket-protocol").cloned();
            assert_eq!(
                header.as_ref().map(|h| h.to_str().unwrap()),
                upgrade.protocol()
            );
            upgrade.protocol().map(str::to_owned)
        };
        assert_eq!(choose(&["v1, v2"], &s).as_deref(), Some("v2"));
        assert_eq!(choose(&["v1"], &s).as_deref(), Some("v1"));
        assert_eq!(choose(&["v1", "x,v2"], &s).as_deref(), Some("v2"));
        assert_eq!(choose(&["x", " v1 ,y"], &s).as_deref(), Some("v1"));
        assert_eq!(choose(&["V2, v3"], &s), None);
        assert_eq!(choose(&[], &s), None);
        s.protocols.clear();
        assert_eq!(choose(&["v1, v2"], &s), None);
    }

    #[test]
    fn permessage_deflate_is_declined() {
        let buf = edit(
            "sec-websocket-extensions",
            &["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"],
        );
        let (upgrade, _) = accepted(&buf, &settings());
        let response = parse_response(&upgrade.response());
        assert!(!response.headers().contains_key("sec-websocket-extensions"));
    }

    #[test]
    fn refusals_are_complete_responses() {
        let refused = refusal(403, "authentication failed");
        assert_eq!(
            (refused.status, refused.why),
            (403, "authentication failed")
        );
        let text = String::from_utf8(refused.response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "authentication failed\n");
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(head.contains("\r\nConnection: close\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        let response = parse_response(text.split_at(head.len() + 4).0.as_bytes());
        assert_eq!(response.status(), 403);
        assert_eq!(
            refusal(431, "x").response.split(|&b| b == b'\r').next(),
            Some(&b"HTTP/1.1 431 Request Header Fields Too Large"[..])
        );
        // Not an error status: sent as one.
        assert_eq!(refusal(200, "x").status, 500);
        assert_eq!(refusal(0, "x").status, 500);
    }

    #[test]
    fn debug_hides_headers() {
        let buf = edit("cookie", &["Cookie: session=secret"]);
        let (upgrade, _) = accepted(&buf, &settings());
        let debug = format!("{upgrade:?}");
        assert!(
            debug.contains("/chat") && !debug.contains("secret"),
            "{debug}"
        );
        let refused = format!("{:?}", refusal(404, "nowhere"));
        assert!(!refused.contains("HTTP"), "{refused}");
    }
}
