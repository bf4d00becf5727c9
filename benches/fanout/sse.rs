//! The few pieces of server-sent events (the HTML standard's `text/event-stream`) the bench
//! speaks itself, for `--mode sse`: the subscriber's `GET /events` and the check of the
//! server's `200`, and for the `sse-ceiling` server the answer to that request and the
//! framing of one event. The parser of the event stream is [`crate::proto`]'s `Proto::Sse`.
//!
//! Every payload of the mode is line-safe ([`crate::proto::Stamp::Text`] and `.` filler),
//! so one message is one event of exactly one `data:` line:
//! `data: <payload>\n\n`.

use std::net::SocketAddr;

/// The path event streams are opened on (`HubBuilder::sse_path`).
pub(crate) const PATH: &str = "/events";

/// What goes before a payload in its event.
pub(crate) const DATA: &[u8] = b"data: ";

/// What ends an event of one line: its line's end, then the blank line.
pub(crate) const END: &[u8] = b"\n\n";

/// The subscriber's request for the hub-wide event stream, as `EventSource` sends it.
pub(crate) fn request(addr: SocketAddr) -> Vec<u8> {
    format!(
        "GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n\r\n"
    )
    .into_bytes()
}

/// The value of header `name` (case-insensitive) in an HTTP head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Checks a server's answer to [`request`]: status 200 and an event-stream content type.
pub(crate) fn check_response(head: &[u8]) -> Result<(), String> {
    let head = String::from_utf8_lossy(head);
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("event stream refused: {status:?}"));
    }
    match header(&head, "content-type") {
        Some(t) if t.starts_with("text/event-stream") => Ok(()),
        got => Err(format!("not an event stream: Content-Type {got:?}")),
    }
}

/// The `sse-ceiling`'s answer to a request head: the `200` and the headers an event stream
/// needs, or why not.
pub(crate) fn accept_response(head: &[u8]) -> Result<Vec<u8>, String> {
    if !head.starts_with(b"GET ") {
        return Err("not a GET request".into());
    }
    Ok(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
          Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
        .to_vec())
}

/// Checks the request against the ceiling's answer (run by `--self-test`).
pub(crate) fn self_test() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let req = request(addr);
    assert_eq!(crate::ws::head_end(&req), Some(req.len()));
    let answer = accept_response(&req).expect("a GET");
    check_response(&answer).expect("an event stream");
    assert!(accept_response(b"POST / HTTP/1.1\r\n\r\n").is_err());
    assert!(check_response(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
    assert!(check_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n").is_err());
}
