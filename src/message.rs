//! A message's kind (text or binary) and the host's typed [`Message`]; [`AsMessage`], what
//! every sending method of the `Hub` takes: any bytes (untyped) or a `Message`.
//!
//! Plain data, at the bottom of the crate: the kind rides with each frame of a batch
//! (`command::Frames`), each message kept in a replay ring (`topics::stream`) and each
//! message sent through the backplane (`cluster`); only the WebSocket wire reads it.

use std::fmt;

use bytes::Bytes;

/// Whether a message is text or binary: what WebSocket frames carry (RFC 6455's opcodes 1
/// and 2), and what hubcast keeps with a message from end to end.
///
/// A WebSocket client's message has the kind of the frames it came in
/// ([`Event::Message`](crate::Event::Message)'s `kind`); a framed TCP or TLS client's
/// message has none, as its wire has no kind. A host message has the kind of its
/// [`Message`], or none when sent as plain bytes. Each message goes to WebSocket clients
/// with its kind; one without a kind goes as text if it is valid UTF-8 (unless
/// [`websocket_binary`](crate::HubBuilder::websocket_binary)), else as binary. TCP and TLS
/// clients get the bytes alone.
///
/// ```
/// use hubcast::{Message, MessageKind};
///
/// assert_eq!(Message::text("hi").kind(), MessageKind::Text);
/// assert_eq!(Message::binary(vec![0xff]).kind(), MessageKind::Binary);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// Text: the payload is UTF-8 (a WebSocket text frame, opcode 1).
    Text,
    /// Binary: any bytes (a WebSocket binary frame, opcode 2).
    Binary,
}

/// A message with its kind, for the host to send: text that is UTF-8 by construction, or
/// binary bytes. Every sending method of the [`Hub`](crate::Hub) takes one
/// ([`broadcast`](crate::Hub::broadcast), [`send_to`](crate::Hub::send_to),
/// [`publish`](crate::Hub::publish)…), as well as plain bytes, which have no kind.
///
/// WebSocket clients get it in a frame of its kind, whatever
/// [`websocket_binary`](crate::HubBuilder::websocket_binary) says (it only applies to
/// messages without a kind); TCP and TLS clients get its bytes, framed as any other.
/// Cloning it is cheap: the payload is shared.
///
/// ```
/// use hubcast::{Hub, Message};
///
/// let hub = Hub::bind("127.0.0.1:0")?;
/// // ASCII that browsers must get as binary (an `ArrayBuffer` or a `Blob`).
/// hub.broadcast(Message::binary(&b"\x08\x96\x01"[..]))?;
/// hub.broadcast(Message::text("héllo"))?;
/// // Plain bytes: text to WebSocket clients if valid UTF-8, as before.
/// hub.broadcast("hello")?;
/// # Ok::<(), hubcast::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Message {
    kind: MessageKind,
    payload: Bytes,
}

impl Message {
    /// A text message. Never fails: a `String` is UTF-8 already, so it is not checked again.
    ///
    /// ```
    /// let msg = hubcast::Message::text(format!("{} joined", "ada"));
    /// assert_eq!(msg.payload(), b"ada joined");
    /// ```
    pub fn text(text: impl Into<String>) -> Message {
        Message {
            kind: MessageKind::Text,
            payload: Bytes::from(text.into()),
        }
    }

    /// A binary message: any bytes, even ones that happen to be UTF-8 or are empty.
    ///
    /// ```
    /// use hubcast::{Bytes, Message, MessageKind};
    ///
    /// let msg = Message::binary(Bytes::from_static(b""));
    /// assert_eq!((msg.kind(), msg.payload()), (MessageKind::Binary, &b""[..]));
    /// ```
    pub fn binary(payload: impl Into<Bytes>) -> Message {
        Message {
            kind: MessageKind::Binary,
            payload: payload.into(),
        }
    }

    /// A message of `kind`, for example to send on what a client sent with the kind it
    /// came with ([`Event::Message`](crate::Event::Message)).
    ///
    /// # Errors
    ///
    /// A text `kind` with a payload that is not UTF-8: the error says where it stops being.
    ///
    /// ```
    /// use hubcast::{Message, MessageKind};
    ///
    /// assert!(Message::new(MessageKind::Text, &b"ok"[..]).is_ok());
    /// assert!(Message::new(MessageKind::Text, &b"\xff"[..]).is_err());
    /// assert!(Message::new(MessageKind::Binary, &b"\xff"[..]).is_ok());
    /// ```
    pub fn new(
        kind: MessageKind,
        payload: impl Into<Bytes>,
    ) -> Result<Message, std::str::Utf8Error> {
        let payload = payload.into();
        if kind == MessageKind::Text {
            std::str::from_utf8(&payload)?;
        }
        Ok(Message { kind, payload })
    }

    /// Its kind.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Its bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Its bytes, shared.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }
}

/// `Message { kind: Text, len: 5 }`: the payload's length, not its bytes.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("len", &self.payload.len())
            .finish()
    }
}

/// What the `Hub`'s sending methods take: a [`Message`] (or a reference to one), with its
/// kind, or any bytes (`&str`, `String`, `Vec<u8>`, `&[u8]`, `&[u8; N]`, [`Bytes`]…:
/// every `AsRef<[u8]>`), without one.
///
/// Sealed: it is implemented here for those types and no others, so that a method taking
/// it accepts both without a conversion call, and plain bytes cost no allocation (they are
/// copied into the shared batch once, as always). A message without a kind goes to
/// WebSocket clients as text if it is valid UTF-8 (unless
/// [`websocket_binary`](crate::HubBuilder::websocket_binary)), else as binary.
///
/// ```
/// use hubcast::{AsMessage, Hub, Message};
///
/// fn announce(hub: &Hub, msg: impl AsMessage) -> hubcast::Result<()> {
///     hub.broadcast(msg)
/// }
/// let hub = Hub::bind("127.0.0.1:0")?;
/// announce(&hub, "plain")?;
/// announce(&hub, vec![1, 2, 3])?;
/// announce(&hub, Message::binary(vec![1, 2, 3]))?;
/// # Ok::<(), hubcast::Error>(())
/// ```
pub trait AsMessage: sealed::Sealed {}

impl<T: AsRef<[u8]> + ?Sized> AsMessage for T {}
impl AsMessage for Message {}
impl AsMessage for &Message {}

pub(crate) mod sealed {
    use super::{Message, MessageKind};

    /// What [`AsMessage`](super::AsMessage) gives the hub: the bytes, and the kind if any.
    /// Private: nobody outside the crate can implement `AsMessage`.
    pub trait Sealed {
        /// The payload and its kind (`None`: untyped).
        fn parts(&self) -> (&[u8], Option<MessageKind>);
    }

    impl<T: AsRef<[u8]> + ?Sized> Sealed for T {
        fn parts(&self) -> (&[u8], Option<MessageKind>) {
            (self.as_ref(), None)
        }
    }

    impl Sealed for Message {
        fn parts(&self) -> (&[u8], Option<MessageKind>) {
            (&self.payload, Some(self.kind))
        }
    }

    impl Sealed for &Message {
        fn parts(&self) -> (&[u8], Option<MessageKind>) {
            (&self.payload, Some(self.kind))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sealed::Sealed;
    use super::*;

    /// The kind `msg` is sent with.
    fn kind_of(msg: impl AsMessage) -> Option<MessageKind> {
        msg.parts().1
    }

    #[test]
    fn bytes_have_no_kind_and_messages_keep_theirs() {
        assert_eq!(kind_of("a"), None);
        assert_eq!(kind_of(String::from("a")), None);
        assert_eq!(kind_of(vec![1u8]), None);
        assert_eq!(kind_of(&b"ab"[..]), None);
        assert_eq!(kind_of(b"ab"), None);
        assert_eq!(kind_of(Bytes::from_static(b"a")), None);
        let text = Message::text("a");
        assert_eq!(kind_of(&text), Some(MessageKind::Text));
        assert_eq!(kind_of(text), Some(MessageKind::Text));
        let binary = Message::binary(&b""[..]);
        assert_eq!(binary.parts(), (&b""[..], Some(MessageKind::Binary)));
        assert_eq!(format!("{binary:?}"), "Message { kind: Binary, len: 0 }");
        assert_eq!(
            Message::new(MessageKind::Text, &b"ok"[..]),
            Ok(Message::text("ok"))
        );
        assert_eq!(
            Message::binary(vec![7]).into_payload(),
            Bytes::from(vec![7])
        );
    }
}
