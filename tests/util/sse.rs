//! A server-sent events client as `curl -N` is one: a `GET` on a plain socket, the
//! response head read, then events parsed as the HTML standard's event-stream parser does
//! (fields by line, an event at each blank line, comments kept apart).

use std::net::SocketAddr;

use super::Peer;

/// One block of an event stream up to its blank line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `id:` field, if any.
    pub(crate) id: Option<String>,
    /// The `event:` field, if any.
    pub(crate) event: Option<String>,
    /// The `data:` lines, joined with `\n` (`None`: no data line).
    pub(crate) data: Option<String>,
    /// The `retry:` field, if any.
    pub(crate) retry: Option<String>,
    /// Comment lines (after their `:`).
    pub(crate) comments: Vec<String>,
}

impl SseEvent {
    /// Whether a browser would dispatch it (it has data that is not empty).
    pub(crate) fn dispatched(&self) -> bool {
        self.data.as_deref().is_some_and(|d| !d.is_empty())
    }

    /// Its id as the hub writes them: (epoch, seq).
    pub(crate) fn position(&self) -> Option<(u64, u64)> {
        let (epoch, seq) = self.id.as_deref()?.split_once('-')?;
        Some((epoch.parse().ok()?, seq.parse().ok()?))
    }
}

/// An open event stream.
pub(crate) struct SseClient {
    pub(crate) peer: Peer,
    /// The response's status line and header lines.
    pub(crate) head: Vec<String>,
}

/// The request for `target` with `extra` header lines.
pub(crate) fn sse_request(target: &str, extra: &[&str]) -> Vec<u8> {
    let mut head =
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n");
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Sends `request` and reads the response head: (the peer, its lines).
pub(crate) fn http_exchange(addr: SocketAddr, request: &[u8]) -> (Peer, Vec<String>) {
    let mut peer = Peer::connect(addr);
    peer.write(request);
    let mut head = Vec::new();
    loop {
        let line = peer.read_text_line();
        let line = line.strip_suffix('\r').unwrap_or(&line).to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    (peer, head)
}

/// The value of header `name` in `head`, compared without regard to case.
pub(crate) fn header<'h>(head: &'h [String], name: &str) -> Option<&'h str> {
    head.iter().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

impl SseClient {
    /// Opens `target` (`/events`, `/events/room?x=1`) with `extra` header lines; the
    /// response must be `200` with an event stream.
    pub(crate) fn open(addr: SocketAddr, target: &str, extra: &[&str]) -> SseClient {
        let (peer, head) = http_exchange(addr, &sse_request(target, extra));
        assert_eq!(head[0], "HTTP/1.1 200 OK", "{head:?}");
        assert_eq!(
            header(&head, "content-type"),
            Some("text/event-stream; charset=utf-8")
        );
        SseClient { peer, head }
    }

    /// The next block up to a blank line (an event, an id alone, a comment, `retry:`).
    pub(crate) fn next(&mut self) -> SseEvent {
        let mut event = SseEvent::default();
        loop {
            let line = self.peer.read_text_line();
            if line.is_empty() {
                return event;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_str(), ""),
            };
            match field {
                "" => event.comments.push(value.to_owned()),
                "id" => event.id = Some(value.to_owned()),
                "event" => event.event = Some(value.to_owned()),
                "retry" => event.retry = Some(value.to_owned()),
                "data" => {
                    event.data = Some(match event.data.take() {
                        None => value.to_owned(),
                        Some(data) => format!("{data}\n{value}"),
                    });
                }
                other => panic!("unknown field {other:?} in {line:?}"),
            }
        }
    }

    /// The next event that is not a comment alone (heartbeats are skipped).
    pub(crate) fn next_event(&mut self) -> SseEvent {
        loop {
            let event = self.next();
            if event
                != (SseEvent {
                    comments: event.comments.clone(),
                    ..SseEvent::default()
                })
                || event.comments.is_empty()
            {
                return event;
            }
        }
    }
}
