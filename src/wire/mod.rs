//! Kinds of wire: how a message is framed for a kind of client, and framing a whole batch
//! again for another kind, once per batch, never once per client.
//!
//! Host calls and relayed frames are framed in the hub's [`Framing`] (the *framed* wire).
//! WebSocket clients need the same messages as WebSocket frames: the dispatcher cuts each
//! payload out of the batch by its known framing and frames it again, keeping every frame's
//! index, so the batch's runs of targets apply unchanged.

#[cfg(feature = "websocket")]
use crate::{command::Frames, Framing};

pub(crate) mod control;
pub(crate) mod framed;
#[cfg(feature = "websocket")]
pub(crate) mod websocket;

/// How a client's messages are put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// The hub's [`Framing`], over TCP or TLS.
    Framed,
    /// One WebSocket message per hub message (feature `websocket`).
    WebSocket,
}

impl Wire {
    /// A small index for per-wire arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Wire::Framed => 0,
            Wire::WebSocket => 1,
        }
    }
}

/// `frames` (framed with `framing`) as WebSocket messages: a text frame for a payload that is
/// UTF-8 (unless `binary`), a binary frame otherwise, so no text frame carries anything else.
#[cfg(feature = "websocket")]
pub(crate) fn to_websocket(frames: &Frames, framing: Framing, binary: bool) -> Frames {
    use crate::wire::websocket::{encode_into, encoded_len, Opcode};
    let payloads = || (0..frames.ends.len()).map(|i| frames.payload(i, framing));
    let len = payloads().map(|p| encoded_len(p.len())).sum();
    let mut out = bytes::BytesMut::with_capacity(len);
    let mut ends = Vec::with_capacity(frames.ends.len());
    for payload in payloads() {
        encode_into(&mut out, Opcode::for_message(payload, binary), payload);
        // A batch is at most 64 KiB of frames, and one frame at most queue_bytes, which
        // `bind` keeps under 2^40: the WebSocket header adds at most 10 bytes a frame.
        ends.push(u32::try_from(out.len()).unwrap_or(u32::MAX));
    }
    Frames {
        bytes: out.freeze(),
        ends: std::sync::Arc::from(ends),
        runs: frames.runs.clone(),
    }
}
