//! The framed wire ([`Wire::Framed`](super::Wire::Framed)), TCP and TLS clients: the hub's
//! [`Framing`](crate::Framing), whose bytes are `codec`'s.
//!
//! Host calls, relayed frames and replay rings are in this framing already, so this wire
//! shares them as they are: it never frames a batch again.

use bytes::{Bytes, BytesMut};

use super::codec::{encode, encode_into, encoded_len};
use super::{Kind, Settings};
use crate::command::{Frames, Target};
use crate::queue::Chunk;
use crate::MessageKind;

/// The framed wire's [`Kind`].
pub(super) struct Framed;

impl Kind for Framed {
    /// With the dispatcher's other reports of clients breaking the rules.
    const LOG_TARGET: &'static str = "hubcast::clients";
    /// Its opening, if any, is an authentication frame: a message like any other.
    const OPENS_WITH_HTTP: bool = false;
    /// Clients answer heartbeats with an empty frame.
    const LISTEN_ONLY: bool = false;

    fn encoded_len(s: &Settings<'_>, payload: &[u8]) -> Option<usize> {
        encoded_len(s.framing, payload)
    }

    /// The kind is not on this wire: its clients get the bytes alone.
    fn encode_into(s: &Settings<'_>, payload: &[u8], _: Option<MessageKind>, out: &mut BytesMut) {
        encode_into(s.framing, payload, out);
    }

    /// An empty message, counted as a frame: clients answer it with one (the hub's
    /// `Framing::Raw` has no empty frame, so `bind` refuses heartbeats with it).
    fn ping(s: &Settings<'_>) -> Chunk {
        let len = encoded_len(s.framing, b"").unwrap_or(0);
        Chunk::whole(&Frames::one(encode(s.framing, b"", len), Target::All, None))
    }

    fn reframe(_: &Settings<'_>, _: &Frames) -> Option<Frames> {
        None
    }

    fn replay_len(_: &Settings<'_>, kept: &[u8]) -> usize {
        kept.len()
    }

    /// One per message: each is shared with the ring.
    fn replay_entries(messages: usize) -> usize {
        messages
    }

    /// Shared with the ring: a restart storm of clients resuming one stream costs a queue
    /// entry per message and client, not a copy.
    fn replay<'a>(
        _: &Settings<'_>,
        kept: impl Iterator<Item = (&'a Bytes, Option<MessageKind>)>,
        _len: usize,
    ) -> Vec<Chunk> {
        kept.map(|(frame, _)| Chunk::frame(frame.clone())).collect()
    }
}
