//! What the host's handle hands the dispatcher: commands, and the frames they carry with
//! the clients each frame is for.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::topics::TopicId;
use crate::{ClientId, MessageKind};

/// Messages that frame to fewer bytes than this are appended to a shared [`Batch`]; longer
/// ones travel as their own frame.
pub(crate) const BATCH_BELOW: usize = 4 * 1024;
/// The largest batch.
pub(crate) const BATCH_MAX: usize = 64 * 1024;

/// Which clients a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Every live client.
    All,
    /// Every live client but this one (it may have left).
    AllExcept(ClientId),
    /// This client only, if it is still live.
    One(ClientId),
    /// The members of this topic.
    Topic(TopicId),
    /// The members of this topic but this client.
    TopicExcept(TopicId, ClientId),
    /// The members of this topic: a change of its presence, numbered in its stream as a
    /// `#presence` message (made by the dispatcher only; never sent to other nodes).
    Presence(TopicId),
}

/// Whole frames in one buffer, each with its target: what a fan-out takes.
#[derive(Debug, Clone)]
pub(crate) struct Frames {
    pub(crate) bytes: Bytes,
    /// Where each frame ends in `bytes` (ascending, the last at `bytes.len()`).
    pub(crate) ends: Arc<[u32]>,
    /// Runs of consecutive frames with one target: (index of the run's first frame,
    /// target), the first run starting at frame 0.
    pub(crate) runs: Box<[(u32, Target)]>,
    /// Each frame's kind, if any has one.
    pub(crate) kinds: Kinds,
}

/// The [`MessageKind`] of each frame of a [`Frames`], as its sender gave it (`None`: the
/// sender gave none, and the WebSocket wire guesses). Untyped frames are the common case
/// (every host call with plain bytes, every TCP client's message): a batch of only those
/// stores nothing, and costs one `None` check to read; once one frame has a kind, every
/// frame has an entry, a byte each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Kinds(Option<Arc<[Option<MessageKind>]>>);

impl Kinds {
    /// No frame has a kind.
    pub(crate) const UNTYPED: Kinds = Kinds(None);

    /// Frame `i`'s kind.
    pub(crate) fn get(&self, i: usize) -> Option<MessageKind> {
        self.0
            .as_ref()
            .and_then(|kinds| kinds.get(i).copied().flatten())
    }

    /// The kinds of a batch's frames, from one per frame (or none: all untyped).
    fn from_slice(kinds: &[Option<MessageKind>]) -> Kinds {
        Kinds((!kinds.is_empty()).then(|| kinds.into()))
    }

    /// One frame's kind.
    fn one(kind: Option<MessageKind>) -> Kinds {
        Kinds(kind.map(|kind| Arc::from([Some(kind)])))
    }
}

impl Frames {
    /// One frame for `target`, of `kind`.
    pub(crate) fn one(frame: Bytes, target: Target, kind: Option<MessageKind>) -> Frames {
        let end = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        Frames {
            bytes: frame,
            ends: Arc::new([end]),
            runs: Box::new([(0, target)]),
            kinds: Kinds::one(kind),
        }
    }

    /// The frames of run `i`, as a range of frame indexes.
    pub(crate) fn run_frames(&self, i: usize) -> std::ops::Range<usize> {
        let start = self.runs[i].0 as usize;
        let end = self
            .runs
            .get(i + 1)
            .map_or(self.ends.len(), |r| r.0 as usize);
        start..end
    }

    /// Where frame `i` starts in `bytes`.
    pub(crate) fn start_of(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        }
    }

    /// Frame `i`, as framed (its payload is `wire::codec`'s `Frames::payload`).
    pub(crate) fn frame(&self, i: usize) -> &[u8] {
        &self.bytes[self.start_of(i)..self.ends[i] as usize]
    }
}

/// Frames being gathered into one buffer until it is full or taken: by host threads for
/// small messages, and by the dispatcher for what clients relay.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    buf: BytesMut,
    ends: Vec<u32>,
    runs: Vec<(u32, Target)>,
    /// Each frame's kind, from the first frame that has one on (`None` for those before
    /// it): empty while no frame has a kind (see [`Kinds`]).
    kinds: Vec<Option<MessageKind>>,
    /// Set by the dispatcher when it takes the batch: nothing may be added after that.
    pub(crate) taken: bool,
}

impl Batch {
    /// An empty batch with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Batch {
        Batch {
            buf: BytesMut::with_capacity(capacity),
            ..Batch::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Records that the bytes appended to [`buf_mut`](Self::buf_mut) since the last frame
    /// are one frame for `target`, of `kind`.
    pub(crate) fn push_end(&mut self, target: Target, kind: Option<MessageKind>) {
        let index = self.ends.len() as u32;
        if self.runs.last().map(|r| r.1) != Some(target) {
            self.runs.push((index, target));
        }
        if kind.is_some() || !self.kinds.is_empty() {
            // The first typed frame gives every frame before it an entry.
            self.kinds.resize(index as usize, None);
            self.kinds.push(kind);
        }
        self.ends.push(self.buf.len() as u32);
    }

    pub(crate) fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Takes the frames gathered so far, leaving the batch empty.
    pub(crate) fn take(&mut self) -> Frames {
        // Queues count a frame by its length: copy a mostly empty buffer so that the
        // memory it holds stays within twice what it is counted as.
        let bytes = if self.buf.capacity() > 2 * self.buf.len() {
            let bytes = Bytes::copy_from_slice(&self.buf);
            self.buf.clear();
            bytes
        } else {
            self.buf.split().freeze()
        };
        Frames {
            bytes,
            ends: std::mem::take(&mut self.ends).into(),
            runs: std::mem::take(&mut self.runs).into(),
            kinds: self.take_kinds(),
        }
    }

    /// The kinds of the frames taken, keeping the buffer's room for the next batch (the
    /// dispatcher's relay batch is used again every round).
    fn take_kinds(&mut self) -> Kinds {
        let kinds = Kinds::from_slice(&self.kinds);
        self.kinds.clear();
        kinds
    }
}

/// A connection the host accepted itself, as `Hub::adopt` hands it over.
#[derive(Debug)]
pub(crate) struct Adoption {
    pub(crate) stream: std::net::TcpStream,
    /// Bytes the host read past what it parsed, processed first.
    pub(crate) read: Vec<u8>,
    /// The upgrade request the host answered (a WebSocket connection), or `None` (framed).
    #[cfg(feature = "websocket")]
    pub(crate) request: Option<Box<tungstenite::handshake::server::Request>>,
}

/// A batch shared between the host threads filling it and the dispatcher taking it.
pub(crate) type SharedBatch = Arc<Mutex<Batch>>;

/// Work the host hands to the dispatcher, in call order.
#[derive(Debug)]
pub(crate) enum Command {
    /// A batch of small messages; more may be added until the dispatcher takes it, up to
    /// the frame bytes it was counted for in the pending budget.
    Batch { batch: SharedBatch, reserved: usize },
    /// One large message.
    Send(Frames),
    /// Messages from other nodes of the cluster: fanned out here, never forwarded again.
    #[cfg(feature = "nats")]
    Remote(Frames),
    /// A message for a topic with no local member: only other nodes may have some.
    #[cfg(feature = "nats")]
    Forward(Arc<str>, Bytes, Option<MessageKind>),
    /// The cluster's connection changed: tell the host.
    #[cfg(feature = "nats")]
    Cluster(crate::ClusterState),
    /// Make a client leave, as [`Kicked`](crate::DisconnectReason::Kicked).
    Disconnect(ClientId),
    /// Add a client to a topic, with the topic's name, the join's number (see
    /// `topics::order::Decisions`) and the kept topic the table evicted to make room for it
    /// (its ring is dropped, whether or not the join itself is applied).
    Join(ClientId, TopicId, Arc<str>, u64, Option<TopicId>),
    /// Take a client out of a topic, with the leave's number.
    Leave(ClientId, TopicId, u64),
    /// Begin the shutdown: write queues out until the deadline (none: until done).
    Shutdown(Option<Instant>),
    /// Take over a connection the host accepted itself (`Hub::adopt`).
    Adopt(Box<Adoption>),
    /// Makes the dispatcher panic, to test what the host sees when it dies.
    #[cfg(test)]
    Panic,
}

impl Command {
    /// The frame bytes the command was counted for in the pending budget, if it was
    /// counted there (a shutdown is not).
    pub(crate) fn reserved(&self) -> Option<usize> {
        match self {
            Command::Batch { reserved, .. } => Some(*reserved),
            Command::Send(frames) => Some(frames.bytes.len()),
            #[cfg(feature = "nats")]
            Command::Remote(frames) => Some(frames.bytes.len()),
            #[cfg(feature = "nats")]
            Command::Forward(_, payload, _) => Some(payload.len()),
            #[cfg(feature = "nats")]
            Command::Cluster(_) => None,
            Command::Disconnect(_) | Command::Join(..) | Command::Leave(..) => Some(0),
            Command::Shutdown(_) => None,
            // Not counted: it carries no frame, and the host's own accepting bounds it.
            Command::Adopt(_) => None,
            #[cfg(test)]
            Command::Panic => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Framing;

    #[test]
    fn a_batch_keeps_runs_of_targets() {
        let mut batch = Batch::with_capacity(64);
        let (a, b) = (ClientId(1), ClientId(2));
        batch.push(Framing::Lines, b"x", Target::All, None);
        batch.push(Framing::Lines, b"y", Target::All, None);
        batch.push(Framing::Lines, b"z", Target::AllExcept(a), None);
        batch.push(Framing::Lines, b"w", Target::One(b), None);
        let frames = batch.take();
        assert_eq!(&frames.bytes[..], b"x\ny\nz\nw\n");
        assert_eq!(&frames.ends[..], &[2, 4, 6, 8]);
        assert_eq!(
            &frames.runs[..],
            &[
                (0, Target::All),
                (2, Target::AllExcept(a)),
                (3, Target::One(b))
            ]
        );
        assert_eq!(frames.run_frames(0), 0..2);
        assert_eq!(frames.run_frames(2), 3..4);
        assert_eq!(frames.start_of(2), 4);
        assert!(batch.is_empty());
        assert_eq!(
            frames.kinds,
            Kinds::UNTYPED,
            "untyped frames store no kinds"
        );
    }

    #[test]
    fn kinds_are_stored_from_the_first_typed_frame() {
        use MessageKind::{Binary, Text};
        let mut batch = Batch::with_capacity(64);
        batch.push(Framing::Lines, b"a", Target::All, None);
        batch.push(Framing::Lines, b"b", Target::All, None);
        batch.push(Framing::Lines, b"", Target::All, Some(Binary));
        batch.push(Framing::Lines, b"d", Target::All, None);
        batch.push(Framing::Lines, b"e", Target::All, Some(Text));
        let frames = batch.take();
        let kinds: Vec<_> = (0..5).map(|i| frames.kinds.get(i)).collect();
        assert_eq!(kinds, [None, None, Some(Binary), None, Some(Text)]);
        assert_eq!(frames.kinds.get(9), None, "past the end: none");
        // Taken: the next batch starts untyped.
        batch.push(Framing::Lines, b"f", Target::All, None);
        assert_eq!(batch.take().kinds, Kinds::UNTYPED);
        let one = Frames::one(Bytes::from_static(b"x\n"), Target::All, Some(Text));
        assert_eq!(one.kinds.get(0), Some(Text));
        assert_eq!(
            Frames::one(Bytes::new(), Target::All, None).kinds,
            Kinds::UNTYPED
        );
    }
}
