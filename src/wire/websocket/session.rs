//! A WebSocket client once upgraded: what its bytes amount to for the hub (messages, the
//! answers it is owed, the rules it broke) and its close frame. The dispatcher does the
//! I/O and acts on what [`Session::read`] says.

use std::fmt;

use bytes::Bytes;

use super::control_frame;
use super::frame::{close_payload, Decoder, Inbound, Opcode, WsError};
use crate::wire::Settings;
use crate::{DisconnectReason, Framing, MessageKind};

/// A WebSocket client's protocol state: a few bytes while idle.
#[derive(Debug, Default)]
pub(crate) struct Session {
    decoder: Decoder,
    /// A close frame is queued for it: nothing may follow.
    close_sent: bool,
    /// It negotiated `permessage-deflate`: its messages may come compressed (RSV1).
    deflate: bool,
}

/// What [`Session::read`] took from a client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Input<'a> {
    /// A message for the hub: its payload, and its kind (the opcode it came with; a text
    /// message's payload was checked to be UTF-8).
    Message(&'a [u8], MessageKind),
    /// Bytes to queue for the client, a protocol answer (a pong to its ping).
    Reply(Bytes),
    /// Nothing to act on: a pong (a sign of life; reading it was enough), or a fragment taken
    /// into the session, to make a message with those that follow.
    Nothing,
    /// The client closed: queue it these bytes (its close echoed, RFC 6455 5.5.1), then it
    /// leaves ([`DisconnectReason::PeerClosed`]) once they are out.
    Closed(Bytes),
}

/// A rule a client broke: it leaves at once with `reason`, told `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Broken {
    pub(crate) reason: DisconnectReason,
    /// The close code it is sent.
    pub(crate) code: u16,
    /// What it did, for the log's counts.
    pub(crate) kind: &'static str,
    why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Frame(WsError),
    Newline,
}

impl Broken {
    fn frame(err: WsError) -> Broken {
        Broken {
            reason: match err {
                WsError::TooBig => DisconnectReason::FrameTooLarge,
                WsError::Protocol(_) | WsError::InvalidUtf8 => DisconnectReason::Protocol,
            },
            code: err.close_code(),
            kind: "broke the WebSocket protocol",
            why: Why::Frame(err),
        }
    }

    /// A line-framed hub's message is one line: with a newline in it, a TCP client would
    /// read several, in which numbers and control lines of the protocol could be forged.
    /// One that ends in '\r' would reach line clients as a line ending "\r\n", which they
    /// read without its '\r': a TCP client cannot send it either.
    const NEWLINE: Broken = Broken {
        reason: DisconnectReason::Protocol,
        code: 1007,
        kind: "WebSocket message with a newline",
        why: Why::Newline,
    };
}

/// What it did, after "client 7 " in the log.
impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.why {
            Why::Frame(err) => write!(f, "broke the WebSocket protocol: {err:?}"),
            Why::Newline => f.write_str("sent a WebSocket message with a newline or a final \\r"),
        }
    }
}

impl Session {
    /// The session of a client that negotiated `permessage-deflate` (feature `deflate`).
    #[cfg(feature = "deflate")]
    pub(crate) fn deflate() -> Session {
        Session {
            deflate: true,
            ..Session::default()
        }
    }

    /// Reads the frame at the front of `data` (see [`Decoder::decode`]): `Ok(None)` if it is
    /// not complete, else what it amounts to and how many bytes it took. What is returned
    /// borrows `unmasked` (a buffer the caller reuses across clients), never the session,
    /// so acting on it may use the session again (a client that leaves is sent its close
    /// frame through it).
    ///
    /// # Errors
    ///
    /// The rule the client broke. It must leave: the session is not to be read again.
    pub(crate) fn read<'a>(
        &mut self,
        s: &Settings<'_>,
        data: &[u8],
        unmasked: &'a mut Vec<u8>,
    ) -> Result<Option<(Input<'a>, usize)>, Broken> {
        let decoded = self
            .decoder
            .decode_with(data, s.max_frame, unmasked, self.deflate);
        let (inbound, used) = match decoded {
            Ok(None) => return Ok(None),
            Ok(Some(decoded)) => decoded,
            Err(err) => return Err(Broken::frame(err)),
        };
        let input = match inbound {
            Inbound::Message { payload, .. }
                if s.framing == Framing::Lines
                    && (payload.contains(&b'\n') || payload.last() == Some(&b'\r')) =>
            {
                return Err(Broken::NEWLINE);
            }
            Inbound::Message { text, payload } => {
                let kind = if text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                Input::Message(payload, kind)
            }
            Inbound::Ping(payload) => Input::Reply(control_frame(Opcode::Pong, payload)),
            Inbound::Pong | Inbound::Fragment => Input::Nothing,
            Inbound::Close { code, .. } => {
                // Its own code echoed, and nothing after it.
                self.close_sent = true;
                let payload = code.map(|c| close_payload(c, "")).unwrap_or_default();
                Input::Closed(control_frame(Opcode::Close, &payload))
            }
        };
        Ok(Some((input, used)))
    }

    /// The close frame for a client leaving for `reason`, with `code` (see
    /// [`close_code`](super::close_code)), or `None` if it was sent one already.
    pub(crate) fn close(&mut self, code: u16, reason: DisconnectReason) -> Option<Bytes> {
        if self.close_sent {
            return None;
        }
        self.close_sent = true;
        Some(control_frame(
            Opcode::Close,
            &close_payload(code, &reason.to_string()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::websocket::close_code;

    /// A masked client frame (mask 0: the payload as it is).
    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut out = vec![first, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        out.extend_from_slice(payload);
        out
    }

    fn read_one(
        session: &mut Session,
        framing: Framing,
        data: &[u8],
    ) -> Result<Input<'static>, Broken> {
        let s = Settings::with(framing);
        let mut unmasked = Vec::new();
        let read = session.read(&s, data, &mut unmasked)?;
        let (input, used) = read.expect("a whole frame");
        assert_eq!(used, data.len());
        Ok(match input {
            Input::Message(payload, kind) => Input::Message(payload.to_vec().leak(), kind),
            Input::Reply(bytes) => Input::Reply(bytes),
            Input::Nothing => Input::Nothing,
            Input::Closed(bytes) => Input::Closed(bytes),
        })
    }

    #[test]
    fn messages_pings_and_a_close() {
        let mut session = Session::default();
        let lines = Framing::Lines;
        assert_eq!(
            read_one(&mut session, lines, &masked(0x81, b"hi")),
            Ok(Input::Message(b"hi", MessageKind::Text))
        );
        assert_eq!(
            read_one(&mut session, lines, &masked(0x89, b"p")),
            Ok(Input::Reply(control_frame(Opcode::Pong, b"p")))
        );
        assert_eq!(
            read_one(&mut session, lines, &masked(0x8a, b"")),
            Ok(Input::Nothing)
        );
        assert_eq!(
            read_one(&mut session, lines, &masked(0x01, b"a")),
            Ok(Input::Nothing)
        );
        assert_eq!(
            read_one(&mut session, lines, &masked(0x80, b"b")),
            Ok(Input::Message(b"ab", MessageKind::Text))
        );
        // Binary keeps its kind, even empty or ASCII.
        assert_eq!(
            read_one(&mut session, lines, &masked(0x82, b"")),
            Ok(Input::Message(b"", MessageKind::Binary))
        );
        assert_eq!(
            read_one(&mut session, lines, &masked(0x82, b"**")),
            Ok(Input::Message(b"**", MessageKind::Binary))
        );
        let echo = control_frame(Opcode::Close, &close_payload(1001, ""));
        assert_eq!(
            read_one(&mut session, lines, &masked(0x88, &[0x03, 0xe9])),
            Ok(Input::Closed(echo))
        );
        // Closed already: leaving sends nothing more.
        assert_eq!(session.close(1000, DisconnectReason::PeerClosed), None);
    }

    #[test]
    fn broken_rules_say_why_and_with_what_code() {
        let mut session = Session::default();
        let broken = read_one(&mut session, Framing::Lines, &masked(0x81, b"a\nb")).unwrap_err();
        assert_eq!(
            (broken.reason, broken.code),
            (DisconnectReason::Protocol, 1007)
        );
        assert!(broken.to_string().contains("newline"), "{broken}");
        // Not a line-framed hub: a newline is any other byte.
        let mut session = Session::default();
        assert_eq!(
            read_one(
                &mut session,
                Framing::LengthPrefixed,
                &masked(0x81, b"a\nb")
            ),
            Ok(Input::Message(b"a\nb", MessageKind::Text))
        );
        let unmasked = [0x81, 0x01, b'x'];
        let broken = read_one(&mut session, Framing::Lines, &unmasked).unwrap_err();
        assert_eq!(
            (broken.reason, broken.code),
            (DisconnectReason::Protocol, 1002)
        );
        assert_eq!(
            broken.to_string(),
            "broke the WebSocket protocol: Protocol(\"unmasked client frame\")"
        );
    }

    #[test]
    fn a_leaving_client_gets_one_close_frame() {
        let mut session = Session::default();
        let reason = DisconnectReason::Slow;
        let close = session.close(close_code(reason).unwrap(), reason).unwrap();
        assert_eq!(&close[..4], &[0x88, 2 + 16, 0x0f, 0xa0]);
        assert_eq!(&close[4..], b"too slow to read");
        assert_eq!(session.close(4000, reason), None);
    }
}
