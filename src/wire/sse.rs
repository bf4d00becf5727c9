//! Server-sent events (the HTML standard's `text/event-stream`; feature `websocket`): a
//! receive-only client opened by a `GET` on a WebSocket listener (see `http`), each message
//! one event.
//!
//! An event stream is bound to one stream of the hub: the hub-wide stream
//! ([`Sse<false>`](Sse)) or a topic ([`Sse<true>`](Sse)), two wire kinds so that each is
//! framed once per batch like any other wire. Under `Protocol::Sequenced` the messages of
//! the bound kind of stream carry `id: <epoch>-<seq>`: a browser keeps the last id it saw
//! and sends it back as `Last-Event-ID` when it reconnects, which the hub answers as a
//! `#resume` (`dispatcher::websocket`). Messages of other streams reach it without an id,
//! so they never move its position. The whole mapping is `docs/PROTOCOL.md`, "Server-sent
//! events":
//!
//! ```text
//! 17 hello                 id: E-17\ndata: hello\n\n        (E: the stream's epoch)
//! 3@room a\nb              id: E-3\ndata: a\ndata: b\n\n     (a topic-bound stream)
//! - to you                 data: to you\n\n
//! #own * 18                id: E-18\n\n                       (moves the id, no event)
//! #noresume * old E 40     event: reset\nid: E-40\ndata: #noresume * old E 40\n\n
//! #presence @room 19 ...   id: E-19\nevent: presence\ndata: #presence @room 19 ...\n\n
//! #joined @room E 9        event: control\ndata: #joined @room E 9\n\n
//! a binary message         : binary\n\n  (or, opted in, event: binary\ndata: <base64>\n\n)
//! ```
//!
//! A message grows by its id and `data: ` before each of its lines, so a payload of line
//! breaks grows sevenfold: [`Kind::check`] keeps what a queue may hold within the 32-bit
//! frame ends.

use base64::Engine;
use bytes::{Bytes, BytesMut};

use super::{frame_end, Kind, Settings};
use crate::command::{Frames, Target};
use crate::queue::Chunk;
use crate::MessageKind;

/// The wire of event streams bound to the hub-wide stream (`TOPIC = false`) or to a topic.
#[derive(Debug)]
pub(crate) struct Sse<const TOPIC: bool>;

/// The most a message grows by, per byte of its payload: a line break becomes
/// `\ndata: ` (7 bytes).
const GROWTH: usize = 7;

/// The comment sent as a heartbeat.
const PING: &[u8] = b":\n\n";

impl<const TOPIC: bool> Kind for Sse<TOPIC> {
    const LOG_TARGET: &'static str = "hubcast::sse";
    // Opened by its listener's wire (WebSocket), which routes the request here.
    const OPENS_WITH_HTTP: bool = false;
    const LISTEN_ONLY: bool = true;

    fn encoded_len(s: &Settings<'_>, payload: &[u8]) -> Option<usize> {
        let mut count = Count(0);
        write::<TOPIC>(s, payload, None, s.replaying, &mut count);
        Some(count.0)
    }

    fn encode_into(
        s: &Settings<'_>,
        payload: &[u8],
        kind: Option<MessageKind>,
        out: &mut BytesMut,
    ) {
        write::<TOPIC>(s, payload, kind, s.replaying, out);
    }

    fn ping(_s: &Settings<'_>) -> Chunk {
        Chunk::raw(Bytes::from_static(PING))
    }

    fn check(s: &Settings<'_>) -> Result<(), &'static str> {
        // Frame ends are 32-bit: what one queue may hold, grown, must fit.
        let most = s.queue_bytes.saturating_mul(GROWTH).saturating_add(1 << 20);
        if most > u32::MAX as usize {
            return Err("event streams need queue_bytes of at most 512 MiB");
        }
        Ok(())
    }

    /// Each run's messages with the id of their stream when it is the bound kind.
    fn reframe(s: &Settings<'_>, frames: &Frames) -> Option<Frames> {
        let epoch_of = |target: Target| match (target, s.epochs) {
            (Target::All | Target::AllExcept(_), Some(epochs)) if !TOPIC => Some(epochs.hub()),
            (Target::Topic(t) | Target::TopicExcept(t, _) | Target::Presence(t), Some(epochs))
                if TOPIC =>
            {
                epochs.topic(t)
            }
            _ => None,
        };
        let mut out = BytesMut::with_capacity(frames.bytes.len() + 32 * frames.ends.len());
        let mut ends = Vec::with_capacity(frames.ends.len());
        for run in 0..frames.runs.len() {
            let epoch = epoch_of(frames.runs[run].1);
            for i in frames.run_frames(run) {
                let payload = frames.payload(i, s.framing);
                write::<TOPIC>(s, payload, frames.kinds.get(i), epoch, &mut out);
                ends.push(frame_end(&out));
            }
        }
        Some(Frames {
            bytes: out.freeze(),
            ends: ends.into(),
            runs: frames.runs.clone(),
            kinds: frames.kinds.clone(),
        })
    }
}

/// The id alone, no event: where a new event stream's live messages start, so that its
/// reconnect resumes from there.
pub(crate) fn position(epoch: u64, seq: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(48);
    put_id(&mut out, epoch, seq);
    out.put(b"\n");
    out.freeze()
}

/// How many messages of `frames` an event stream does not get (binary ones, unless the
/// host opted in to base64).
pub(crate) fn skipped(s: &Settings<'_>, frames: &Frames) -> u64 {
    if s.websocket.http.sse_base64 {
        return 0;
    }
    (0..frames.ends.len())
        .filter(|&i| is_binary(frames.payload(i, s.framing), frames.kinds.get(i)))
        .count() as u64
}

/// Where an event is written: a buffer, or a count of its bytes (so that sizes and bytes
/// come from one function and cannot disagree).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts what would be written.
struct Count(usize);

impl Sink for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Writes `n` in decimal.
fn put_number(out: &mut impl Sink, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(&digits[at..]);
}

/// Writes `id: <epoch>-<seq>\n`.
fn put_id(out: &mut impl Sink, epoch: u64, seq: u64) {
    out.put(b"id: ");
    put_number(out, epoch);
    out.put(b"-");
    put_number(out, seq);
    out.put(b"\n");
}

/// A number of the protocol's grammar (`0`, or no leading zero), as `wire::control` reads
/// them.
fn number(word: &[u8]) -> Option<u64> {
    if word.is_empty() || (word.len() > 1 && word[0] == b'0') {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// `payload` (in the hub's framing's terms: no framing) as one event. `epoch` is that of
/// the message's stream when the stream is of the bound kind: its number becomes the id.
fn write<const TOPIC: bool>(
    s: &Settings<'_>,
    payload: &[u8],
    kind: Option<MessageKind>,
    epoch: Option<u64>,
    out: &mut impl Sink,
) {
    if !s.sequenced {
        put_data(s, payload, kind, out);
        return;
    }
    if payload.first() == Some(&b'#') {
        return put_control::<TOPIC>(payload, epoch, out);
    }
    // `<seq> `, `<seq>@<topic> ` or `- `, then the payload.
    let (header, body) = match payload.iter().position(|&b| b == b' ') {
        Some(space) => (&payload[..space], &payload[space + 1..]),
        None => (&b""[..], payload),
    };
    let seq = header.split(|&b| b == b'@').next().and_then(number);
    if let (Some(epoch), Some(seq)) = (epoch, seq) {
        put_id(out, epoch, seq);
    }
    put_data(s, body, kind, out);
}

/// A control message: `#own` of the bound stream moves the id and is no event; `#noresume`
/// of it is a `reset` event that moves the id to where the stream is; `#presence` (a
/// numbered message of a topic) is a `presence` event, with its id if of the bound stream;
/// any other is an event of type `control`.
fn put_control<const TOPIC: bool>(payload: &[u8], epoch: Option<u64>, out: &mut impl Sink) {
    let mut words = payload.split(|&b| b == b' ');
    let verb = words.next().unwrap_or_default();
    let stream = words.next().unwrap_or_default();
    let bound = if TOPIC {
        stream.first() == Some(&b'@')
    } else {
        stream == b"*"
    };
    match verb {
        b"#own" => {
            match (epoch, words.next().and_then(number)) {
                (Some(epoch), Some(seq)) => put_id(out, epoch, seq),
                // Another stream's: nothing to say (a comment keeps the frame whole).
                _ => out.put(b":\n"),
            }
            out.put(b"\n");
        }
        // A message of a topic's stream (presence): its number moves the id, as any.
        b"#presence" => {
            if let (true, Some(epoch), Some(seq)) = (bound, epoch, words.next().and_then(number)) {
                put_id(out, epoch, seq);
            }
            out.put(b"event: presence\n");
            put_lines(payload, out);
        }
        b"#noresume" if bound => {
            let _reason = words.next();
            let position = (words.next().and_then(number), words.next().and_then(number));
            out.put(b"event: reset\n");
            if let (Some(epoch @ 1..), Some(seq)) = position {
                put_id(out, epoch, seq);
            }
            put_lines(payload, out);
        }
        _ => {
            out.put(b"event: control\n");
            put_lines(payload, out);
        }
    }
}

/// A data message: its text, one `data:` line per line, or, if it is binary, base64 (when
/// the host opted in) or a comment saying it was skipped.
fn put_data(s: &Settings<'_>, body: &[u8], kind: Option<MessageKind>, out: &mut impl Sink) {
    if is_binary(body, kind) {
        if s.websocket.http.sse_base64 {
            out.put(b"event: binary\ndata: ");
            let engine = &base64::engine::general_purpose::STANDARD;
            let mut encoded = vec![0; base64::encoded_len(body.len(), true).unwrap_or(0)];
            let len = engine.encode_slice(body, &mut encoded).unwrap_or(0);
            out.put(&encoded[..len]);
            out.put(b"\n\n");
        } else {
            out.put(b": binary\n\n");
        }
        return;
    }
    put_lines(body, out);
}

/// Whether a message cannot go as text: binary by kind, or, without one, not UTF-8.
fn is_binary(body: &[u8], kind: Option<MessageKind>) -> bool {
    match kind {
        Some(MessageKind::Binary) => true,
        Some(_) => false,
        None => std::str::from_utf8(body).is_err(),
    }
}

/// `data: <line>\n` for each line of `text` (ended by `\r\n`, `\r` or `\n`, as the event
/// stream's parser ends them), then the blank line that ends the event.
fn put_lines(text: &[u8], out: &mut impl Sink) {
    let mut rest = text;
    loop {
        out.put(b"data: ");
        match memchr::memchr2(b'\n', b'\r', rest) {
            Some(end) => {
                out.put(&rest[..end]);
                out.put(b"\n");
                let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
                rest = &rest[end + 1 + crlf as usize..];
            }
            None => {
                out.put(rest);
                out.put(b"\n\n");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Batch;
    use crate::topics::TopicId;
    use crate::wire::Epochs;
    use crate::Framing;

    /// Epochs for tests: the hub's is 5, every topic's 9.
    #[derive(Debug)]
    struct Fixed;

    impl Epochs for Fixed {
        fn hub(&self) -> u64 {
            5
        }
        fn topic(&self, _: TopicId) -> Option<u64> {
            Some(9)
        }
    }

    fn text<const TOPIC: bool>(s: &Settings<'_>, payload: &[u8], epoch: Option<u64>) -> String {
        let mut out = BytesMut::new();
        write::<TOPIC>(s, payload, None, epoch, &mut out);
        let mut count = Count(0);
        write::<TOPIC>(s, payload, None, epoch, &mut count);
        assert_eq!(count.0, out.len(), "sized as written");
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn lines_become_data_lines() {
        let s = Settings::with(Framing::Lines);
        assert_eq!(text::<false>(&s, b"hi", None), "data: hi\n\n");
        assert_eq!(
            text::<false>(&s, b"a\nb\r\nc\rd", None),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(text::<false>(&s, b"end\n", None), "data: end\ndata: \n\n");
        assert_eq!(text::<false>(&s, b"", None), "data: \n\n");
        assert_eq!(text::<false>(&s, b" lead", None), "data:  lead\n\n");
        assert_eq!(text::<false>(&s, b"\xff", None), ": binary\n\n");
    }

    #[test]
    fn numbered_messages_carry_ids_of_the_bound_kind_only() {
        let mut s = Settings::with(Framing::Lines);
        s.sequenced = true;
        assert_eq!(
            text::<false>(&s, b"17 hello", Some(5)),
            "id: 5-17\ndata: hello\n\n"
        );
        assert_eq!(text::<false>(&s, b"17 hello", None), "data: hello\n\n");
        assert_eq!(
            text::<true>(&s, b"3@a@b two\nlines", Some(9)),
            "id: 9-3\ndata: two\ndata: lines\n\n"
        );
        assert_eq!(text::<false>(&s, b"- direct", None), "data: direct\n\n");
        assert_eq!(text::<false>(&s, b"#own * 18", Some(5)), "id: 5-18\n\n");
        assert_eq!(text::<false>(&s, b"#own @t 18", None), ":\n\n");
        assert_eq!(
            text::<false>(&s, b"#noresume * old 5 40", None),
            "event: reset\nid: 5-40\ndata: #noresume * old 5 40\n\n"
        );
        assert_eq!(
            text::<true>(&s, b"#noresume @t member 0 0", None),
            "event: reset\ndata: #noresume @t member 0 0\n\n"
        );
        assert_eq!(
            text::<true>(&s, b"#noresume * old 5 40", None),
            "event: control\ndata: #noresume * old 5 40\n\n",
            "not the bound stream"
        );
        assert_eq!(
            text::<false>(&s, b"#at * 5 0", None),
            "event: control\ndata: #at * 5 0\n\n"
        );
        assert_eq!(
            text::<true>(&s, b"#presence @t 19 join u:bob", Some(9)),
            "id: 9-19\nevent: presence\ndata: #presence @t 19 join u:bob\n\n"
        );
        assert_eq!(
            text::<false>(&s, b"#presence @t 19 join u:bob", None),
            "event: presence\ndata: #presence @t 19 join u:bob\n\n",
            "not the bound stream"
        );
    }

    #[test]
    fn binary_is_skipped_or_base64() {
        let mut s = Settings::with(Framing::Lines);
        s.sequenced = true;
        let mut out = BytesMut::new();
        write::<false>(
            &s,
            b"4 \x00\x01",
            Some(MessageKind::Binary),
            Some(5),
            &mut out,
        );
        assert_eq!(&out[..], b"id: 5-4\n: binary\n\n");
        let mut websocket = crate::options::WebSocketSettings::default();
        websocket.http.sse_base64 = true;
        s.websocket = &websocket;
        let mut out = BytesMut::new();
        write::<false>(&s, b"4 hi", Some(MessageKind::Binary), Some(5), &mut out);
        assert_eq!(&out[..], b"id: 5-4\nevent: binary\ndata: aGk=\n\n");
        let mut count = Count(0);
        write::<false>(&s, b"4 hi", Some(MessageKind::Binary), Some(5), &mut count);
        assert_eq!(count.0, out.len());
    }

    #[test]
    fn a_batch_is_reframed_with_each_runs_ids() {
        let mut s = Settings::with(Framing::Lines);
        s.sequenced = true;
        s.epochs = Some(&Fixed);
        let topic = TopicId {
            index: 0,
            generation: 0,
        };
        let mut batch = Batch::with_capacity(256);
        batch.push(s.framing, b"1 hub", Target::All, None);
        batch.push(s.framing, b"2@t topic", Target::Topic(topic), None);
        let frames = batch.take();
        let hub = Sse::<false>::reframe(&s, &frames).unwrap();
        assert_eq!(&hub.bytes[..], b"id: 5-1\ndata: hub\n\ndata: topic\n\n");
        assert_eq!(hub.ends.len(), 2);
        let topics = Sse::<true>::reframe(&s, &frames).unwrap();
        assert_eq!(&topics.bytes[..], b"data: hub\n\nid: 9-2\ndata: topic\n\n");
        assert_eq!(topics.ends[0], 11);
    }

    #[test]
    fn queues_that_could_overflow_frame_ends_are_refused() {
        let mut s = Settings::with(Framing::Lines);
        assert!(Sse::<false>::check(&s).is_ok());
        s.queue_bytes = 1 << 30;
        assert!(Sse::<true>::check(&s).is_err());
    }
}
