//! WebSocket clients (RFC 6455), sans I/O: the opening handshake and the frames over byte
//! buffers only, for the dispatcher to drive. No socket, thread or clock here, so all of it
//! is unit-tested and fuzzed; tungstenite supplies the HTTP parsing, the accept key and the
//! frame headers.
//!
//! ```text
//! client bytes ──► parse_head ──► Upgrade ──(authenticator)──► response() 101
//!                       └──► Refused (4xx response, close)
//! then         ──► Decoder::decode ──► Inbound: Message / Ping / Pong / Close / Fragment
//! broadcasts   ──► encode_into (unmasked, final frames; close_payload for Close)
//! ```

mod frame;
mod handshake;

pub(crate) use frame::{
    close_payload, encode_into, encoded_len, Decoder, Inbound, Opcode, WsError,
};
pub(crate) use handshake::{parse_head, refusal, Head, Refused, Upgrade};

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::builder::WebSocketSettings;
    use crate::Origins;

    /// The upgrade in `read`, which must be accepted.
    fn accept(read: &[u8], settings: &WebSocketSettings) -> (Upgrade, usize) {
        match parse_head(read, settings) {
            Head::Upgrade { upgrade, len } => (upgrade, len),
            other => panic!("not accepted: {other:?}"),
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
            parse_head(&head, &settings),
            Head::Refused(Refused { status: 404, .. })
        ));
        assert_eq!(WsError::TooBig.close_code(), 1009);
    }
}
