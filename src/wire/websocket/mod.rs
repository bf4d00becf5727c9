//! The WebSocket wire ([`Wire::WebSocket`](super::Wire::WebSocket), RFC 6455), sans I/O:
//! the opening handshake, the frames, and a client's session over byte buffers only, for
//! the dispatcher to drive. No socket, thread or clock here, so all of it is unit-tested and
//! fuzzed; tungstenite supplies the HTTP parsing, the accept key and the frame headers.
//!
//! ```text
//! client bytes ──► parse_head ──► Upgrade ──(authenticator)──► response() 101
//!                       └──► Refused (4xx response, close)
//! then         ──► Session::read ──► Input: Message / Reply (pong) / Nothing / Closed
//!                       └──► Broken (a close code, then the client leaves)
//! broadcasts   ──► encode_into (unmasked, final frames; Session::close for Close)
//! ```

use bytes::{Bytes, BytesMut};

use super::{Kind, Settings};
use crate::queue::Chunk;
use crate::{DisconnectReason, MessageKind};

mod frame;
pub(crate) mod handshake;
mod session;

use frame::encode_into;
#[cfg(feature = "deflate")]
pub(crate) use frame::{encode_frame, WsError};
pub(crate) use frame::{encoded_len, Opcode};
#[cfg(fuzzing)]
pub(crate) use frame::{Decoder, Inbound};
pub(crate) use handshake::{refusal, Refused, Upgrade};
pub(crate) use session::{Broken, Input, Session};

/// The WebSocket wire's [`Kind`].
pub(super) struct WebSocket;

impl Kind for WebSocket {
    const LOG_TARGET: &'static str = "hubcast::websocket";
    const OPENS_WITH_HTTP: bool = true;
    /// Clients answer pings with pongs (browsers do it themselves).
    const LISTEN_ONLY: bool = false;

    fn encoded_len(_: &Settings<'_>, payload: &[u8]) -> Option<usize> {
        Some(encoded_len(payload.len()))
    }

    /// One unmasked final frame: of the message's kind if it has one; without, a text
    /// frame for a payload that is UTF-8 (unless `websocket_binary`), a binary frame
    /// otherwise, so no text frame carries anything else. With `Framing::Lines` a
    /// message's payload is its line, so a message that itself ends in `\n` reaches
    /// WebSocket clients without it.
    fn encode_into(
        s: &Settings<'_>,
        payload: &[u8],
        kind: Option<MessageKind>,
        out: &mut BytesMut,
    ) {
        let opcode = Opcode::for_message(payload, kind, s.websocket.binary);
        encode_into(out, opcode, payload);
    }

    /// A ping frame: protocol, not a message (counted as no frame).
    fn ping(_: &Settings<'_>) -> Chunk {
        Chunk::raw(control_frame(Opcode::Ping, b""))
    }

    /// An upgrade, or what else the listener serves over HTTP (see `http`).
    fn open(s: &Settings<'_>, data: &[u8]) -> super::http::Head {
        super::http::route(data, s.websocket)
    }

    fn session() -> Option<Box<Session>> {
        Some(Box::default())
    }
}

/// One control frame (a ping, a pong, a close), whole, as shareable bytes.
fn control_frame(opcode: Opcode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(encoded_len(payload.len()));
    encode_into(&mut out, opcode, payload);
    out.freeze()
}

/// A close frame with `code` and `why`, for a connection that never became a client (an
/// adopted one its host answered `101` before the authenticator rejected it).
pub(crate) fn close_frame(code: u16, why: &str) -> Bytes {
    control_frame(Opcode::Close, &frame::close_payload(code, why))
}

/// The close code a client leaving for `reason` is told, if it can be told anything.
/// 1000–1015 are RFC 6455's; 4000–4999 are private, for reasons without an RFC code.
pub(crate) fn close_code(reason: DisconnectReason) -> Option<u16> {
    match reason {
        DisconnectReason::PeerClosed => Some(1000),
        DisconnectReason::Shutdown | DisconnectReason::Idle => Some(1001),
        DisconnectReason::Protocol => Some(1002),
        DisconnectReason::RateLimited => Some(1008),
        DisconnectReason::FrameTooLarge => Some(1009),
        DisconnectReason::Slow => Some(4000),
        DisconnectReason::Kicked => Some(4001),
        DisconnectReason::Unresponsive => Some(4002),
        // The connection is gone: nothing can be sent.
        DisconnectReason::Reset | DisconnectReason::Io(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::frame::{close_payload, Decoder, Inbound, WsError};
    use super::*;
    use crate::options::WebSocketSettings;
    use crate::Origins;

    /// The upgrade in `read`, which must be accepted.
    fn accept(read: &[u8], settings: &WebSocketSettings) -> (Upgrade, usize) {
        match handshake::parse_head(read, settings) {
            super::super::http::Head::Upgrade { upgrade, len } => (upgrade, len),
            other => panic!("not accepted: {other:?}"),
        }
    }

    /// The first byte of every frame in `frames`: FIN and the opcode.
    fn first_bytes(frames: &crate::command::Frames) -> Vec<u8> {
        (0..frames.ends.len()).map(|i| frames.frame(i)[0]).collect()
    }

    /// Each message goes in a frame of its kind; one without a kind is guessed from its
    /// bytes, unless `websocket_binary`, which an explicit kind overrides. Replays too.
    #[test]
    fn messages_are_framed_as_their_kind() {
        use crate::command::{Batch, Target};
        use crate::wire::{codec, Settings, Wire};
        use crate::{Framing, MessageKind::*};

        let (text, binary) = (0x81, 0x82);
        for forced in [false, true] {
            let websocket = Box::leak(Box::new(WebSocketSettings {
                binary: forced,
                ..WebSocketSettings::default()
            }));
            let s = Settings {
                websocket,
                ..Settings::with(Framing::LengthPrefixed)
            };
            let messages: [(&[u8], _); 6] = [
                (b"", Some(Binary)),
                (b"****", Some(Binary)),
                (b"hi", Some(Text)),
                (b"", Some(Text)),
                (b"plain", None),
                (b"\xff", None),
            ];
            let guess = if forced { binary } else { text };
            let expected = [binary, binary, text, text, guess, binary];
            let mut batch = Batch::with_capacity(64);
            for (payload, kind) in messages {
                batch.push(s.framing, payload, Target::All, kind);
            }
            let frames = Wire::WebSocket.reframe(&s, &batch.take()).unwrap();
            assert_eq!(first_bytes(&frames), expected, "forced binary: {forced}");

            let kept: Vec<_> = messages
                .iter()
                .map(|(payload, kind)| {
                    (codec::encode(s.framing, payload, payload.len() + 4), *kind)
                })
                .collect();
            let len = kept
                .iter()
                .map(|(k, _)| Wire::WebSocket.replay_len(&s, k))
                .sum();
            let parts = Wire::WebSocket.replay(&s, kept.iter().map(|(k, kind)| (k, *kind)), len);
            let mut replayed = Vec::new();
            for part in &parts {
                let bytes = part.bytes();
                let mut at = 0;
                while at < bytes.len() {
                    replayed.push(bytes[at]);
                    at += 2 + usize::from(bytes[at + 1]);
                }
            }
            assert_eq!(replayed, expected, "replayed, forced binary: {forced}");
        }
    }

    /// A browser's whole opening: the head and its first frames in one read, as the
    /// dispatcher will see them, then the server's answers.
    #[test]
    fn a_head_followed_by_frames() {
        let settings = WebSocketSettings {
            path: Some("/feed".into()),
            origins: Origins::List(vec!["https://app.example".into()]),
            protocols: vec!["chat".into()],
            max_head: 4096,
            binary: false,
            ..Default::default()
        };
        let mut read = b"GET /feed?since=42 HTTP/1.1\r\n\
            Host: hub.example:9000\r\n\
            Origin: https://app.example\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n\
            Sec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Protocol: chat\r\n\r\n"
            .to_vec();
        let head_len = read.len();
        // "Hi" masked with 1 2 3 4, then a close with code 1001.
        read.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2]);
        read.extend_from_slice(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9]);
        let (upgrade, len) = accept(&read, &settings);
        assert_eq!((len, upgrade.protocol()), (head_len, Some("chat")));
        assert_eq!(upgrade.query(), Some("since=42"));

        let (mut decoder, mut unmasked) = (Decoder::default(), Vec::new());
        let mut rest = &read[len..];
        let (inbound, used) = decoder.decode(rest, 1024, &mut unmasked).unwrap().unwrap();
        assert_eq!(
            inbound,
            Inbound::Message {
                text: true,
                payload: b"Hi"
            }
        );
        rest = &rest[used..];
        let (inbound, used) = decoder.decode(rest, 1024, &mut unmasked).unwrap().unwrap();
        assert_eq!(
            inbound,
            Inbound::Close {
                code: Some(1001),
                reason: ""
            }
        );
        assert_eq!(used, rest.len());
        assert!(decoder.is_idle());

        let mut out = BytesMut::new();
        encode_into(&mut out, Opcode::Text, b"Hi yourself");
        encode_into(&mut out, Opcode::Close, &close_payload(1001, "going away"));
        assert_eq!(out.len(), encoded_len(11) + encoded_len(12));
        assert_eq!(&out[..2], &[0x81, 11]);

        let refused: Refused = refusal(403, "authentication failed");
        assert_eq!(refused.status, 403);
        let mut head = read[..len].to_vec();
        head.splice(0..9, b"GET /else".iter().copied());
        assert!(matches!(
            handshake::parse_head(&head, &settings),
            super::super::http::Head::Refused(Refused { status: 404, .. })
        ));
        assert_eq!(WsError::TooBig.close_code(), 1009);
    }
}
