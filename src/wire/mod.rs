//! Kinds of wire: every way the hub turns messages into bytes and back, behind one type.
//!
//! A client's transport (`transport::Conn`: plain TCP or TLS) carries bytes; its *wire* says
//! what the bytes are: the hub's [`Framing`] ([`Wire::Framed`], in `framed`), or WebSocket
//! frames after an HTTP upgrade ([`Wire::WebSocket`], in `websocket`, feature `websocket`).
//! Everything here works on byte slices only, with no socket, thread or clock, so all of it
//! is unit-tested and the decoders are fuzzed (`crate::fuzzing`).
//!
//! Host calls and relayed frames are framed in the hub's `Framing`, and so is every frame a
//! replay ring keeps. A wire that frames otherwise frames a batch again, once per batch and
//! never once per client ([`Wire::reframe`]): each payload is cut out of the batch by its
//! known framing and framed again, keeping every frame's index, so the batch's runs of
//! targets apply unchanged.
//!
//! Each kind implements [`Kind`] in its own module; [`Wire`]'s methods pick the
//! implementation with one `match` (no dynamic dispatch), and what is kept per wire is a
//! [`PerWire`]. `docs/ARCHITECTURE.md` ("Adding a wire kind") lists what else a new kind
//! touches.

use std::fmt;
use std::ops::{Index, IndexMut};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::command::{Frames, Target};
use crate::options::WebSocketSettings;
use crate::queue::Chunk;
use crate::{Framing, MessageKind, Transport};

pub(crate) mod codec;
pub(crate) mod control;
#[cfg(feature = "deflate")]
pub(crate) mod deflate;
mod framed;
#[cfg(feature = "websocket")]
pub(crate) mod http;
#[cfg(feature = "websocket")]
mod sse;
#[cfg(feature = "websocket")]
pub(crate) mod websocket;

#[cfg(feature = "websocket")]
pub(crate) use http::{Events, Head, Serve, Served};
#[cfg(feature = "websocket")]
pub(crate) use sse::{position as sse_position, skipped as sse_skipped};
#[cfg(feature = "websocket")]
pub(crate) use websocket::{refusal, Broken, Input, Refused, Session, Upgrade};

/// How a client's messages are put on the wire. A kind whose feature is off has no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// The hub's [`Framing`], over TCP or TLS.
    Framed,
    /// One WebSocket message per hub message, after an HTTP upgrade (feature `websocket`).
    #[cfg(feature = "websocket")]
    WebSocket,
    /// WebSocket with `permessage-deflate` negotiated in the upgrade (feature `deflate`):
    /// messages of at least `min_size` bytes compressed once per batch.
    #[cfg(feature = "deflate")]
    WebSocketDeflate,
    /// The same for a client that offered a window under 32 KiB
    /// (`server_max_window_bits` 8 to 14): compressed with run lengths only.
    #[cfg(feature = "deflate")]
    WebSocketDeflateNarrow,
    /// Server-sent events bound to the hub-wide stream, after a `GET` on a WebSocket
    /// listener (feature `websocket`).
    #[cfg(feature = "websocket")]
    Sse,
    /// Server-sent events bound to a topic.
    #[cfg(feature = "websocket")]
    SseTopic,
}

/// `$body` with `$kind` naming the type that implements [`Kind`] for `$wire`: the one place
/// that maps a [`Wire`] to its implementation.
macro_rules! with_kind {
    ($wire:expr, $kind:ident => $body:expr) => {
        match $wire {
            Wire::Framed => {
                type $kind = framed::Framed;
                $body
            }
            #[cfg(feature = "websocket")]
            Wire::WebSocket => {
                type $kind = websocket::WebSocket;
                $body
            }
            #[cfg(feature = "deflate")]
            Wire::WebSocketDeflate => {
                type $kind = deflate::Deflate<false>;
                $body
            }
            #[cfg(feature = "deflate")]
            Wire::WebSocketDeflateNarrow => {
                type $kind = deflate::Deflate<true>;
                $body
            }
            #[cfg(feature = "websocket")]
            Wire::Sse => {
                type $kind = sse::Sse<false>;
                $body
            }
            #[cfg(feature = "websocket")]
            Wire::SseTopic => {
                type $kind = sse::Sse<true>;
                $body
            }
        }
    };
}

impl Wire {
    /// How many kinds are built in.
    pub(crate) const COUNT: usize =
        1 + 3 * cfg!(feature = "websocket") as usize + 2 * cfg!(feature = "deflate") as usize;

    /// Every kind built in, in [`index`](Self::index) order.
    pub(crate) const ALL: [Wire; Wire::COUNT] = [
        Wire::Framed,
        #[cfg(feature = "websocket")]
        Wire::WebSocket,
        #[cfg(feature = "websocket")]
        Wire::Sse,
        #[cfg(feature = "websocket")]
        Wire::SseTopic,
        #[cfg(feature = "deflate")]
        Wire::WebSocketDeflate,
        #[cfg(feature = "deflate")]
        Wire::WebSocketDeflateNarrow,
    ];

    /// Its place in a [`PerWire`].
    fn index(self) -> usize {
        match self {
            Wire::Framed => 0,
            #[cfg(feature = "websocket")]
            Wire::WebSocket => 1,
            #[cfg(feature = "websocket")]
            Wire::Sse => 2,
            #[cfg(feature = "websocket")]
            Wire::SseTopic => 3,
            #[cfg(feature = "deflate")]
            Wire::WebSocketDeflate => 4,
            #[cfg(feature = "deflate")]
            Wire::WebSocketDeflateNarrow => 5,
        }
    }

    /// The wire of a listener's connections. A transport whose wire is not built in is never
    /// bound (`bind` refuses it, see [`check`](Self::check)); it maps to `Framed`.
    pub(crate) fn of(transport: Transport) -> Wire {
        match transport {
            Transport::Tcp | Transport::Tls => Wire::Framed,
            #[cfg(feature = "websocket")]
            Transport::WebSocket | Transport::WebSocketTls => Wire::WebSocket,
            #[cfg(not(feature = "websocket"))]
            Transport::WebSocket | Transport::WebSocketTls => Wire::Framed,
        }
    }

    /// Why `bind` must refuse a listener of `transport`, if it must: its wire's feature is
    /// off, or its wire cannot carry what the hub's settings allow.
    pub(crate) fn check(transport: Transport, s: &Settings<'_>) -> Result<(), String> {
        let needs = match transport {
            Transport::Tcp | Transport::Tls => None,
            Transport::WebSocket | Transport::WebSocketTls => {
                (!cfg!(feature = "websocket")).then_some("websocket")
            }
        };
        if let Some(feature) = needs {
            return Err(format!("{transport:?} needs the `{feature}` feature"));
        }
        with_kind!(Wire::of(transport), K => K::check(s))
            .map_err(|why| format!("{transport:?} {why}"))?;
        // Its event streams, if it serves them.
        #[cfg(feature = "websocket")]
        if transport.is_websocket() && s.websocket.http.sse_path.is_some() {
            for wire in [Wire::Sse, Wire::SseTopic] {
                with_kind!(wire, K => K::check(s)).map_err(|why| format!("{transport:?} {why}"))?;
            }
        }
        Ok(())
    }

    /// Whether a connection opens with an HTTP request that the hub answers before it is a
    /// client (a WebSocket upgrade); see [`open`](Self::open).
    pub(crate) fn opens_with_http(self) -> bool {
        with_kind!(self, K => K::OPENS_WITH_HTTP)
    }

    /// Whether its clients only listen: once open they send nothing, so their silence is
    /// no sign of a dead peer (`idle_timeout` and unanswered heartbeats do not apply).
    pub(crate) fn listen_only(self) -> bool {
        with_kind!(self, K => K::LISTEN_ONLY)
    }

    /// How often its live clients get the heartbeat [`ping`](Self::ping), if ever: the
    /// hub's `heartbeat`, or an event stream's keep-alive comment.
    pub(crate) fn ping_interval(
        self,
        s: &Settings<'_>,
        heartbeat: Option<std::time::Duration>,
    ) -> Option<std::time::Duration> {
        if self.listen_only() {
            s.websocket.http.sse_keepalive
        } else {
            heartbeat
        }
    }

    /// Whether its clients are event streams (bound to the hub-wide stream or a topic).
    #[cfg(feature = "websocket")]
    pub(crate) fn is_sse(self) -> bool {
        self.listen_only()
    }

    /// Its name as a metric's label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Wire::Framed => "framed",
            #[cfg(feature = "websocket")]
            Wire::WebSocket => "websocket",
            #[cfg(feature = "websocket")]
            Wire::Sse => "sse",
            #[cfg(feature = "websocket")]
            Wire::SseTopic => "sse_topic",
            #[cfg(feature = "deflate")]
            Wire::WebSocketDeflate => "websocket_deflate",
            #[cfg(feature = "deflate")]
            Wire::WebSocketDeflateNarrow => "websocket_deflate_narrow",
        }
    }

    /// The log target for what its clients do wrong (a refused opening, a broken rule).
    pub(crate) fn log_target(self) -> &'static str {
        with_kind!(self, K => K::LOG_TARGET)
    }

    /// One message (a control reply), framed whole into its own buffer, without a kind (as
    /// text on WebSocket, being ASCII, unless `websocket_binary`).
    pub(crate) fn encode(self, s: &Settings<'_>, payload: &[u8]) -> Bytes {
        with_kind!(self, K => {
            let mut out = BytesMut::with_capacity(K::encoded_len(s, payload).unwrap_or(0));
            K::encode_into(s, payload, None, &mut out);
            out.freeze()
        })
    }

    /// `frames`, in the hub's framing, framed for this wire: `None` if this wire takes them
    /// as they are. Every frame keeps its index, its kind (framed as its kind says) and the
    /// runs are the same.
    pub(crate) fn reframe(self, s: &Settings<'_>, frames: &Frames) -> Option<Frames> {
        with_kind!(self, K => K::reframe(s, frames))
    }

    /// The heartbeat ping, made once and queued for every client of this wire.
    pub(crate) fn ping(self, s: &Settings<'_>) -> Chunk {
        with_kind!(self, K => K::ping(s))
    }

    /// What a kept frame (in the hub's framing) takes once replayed on this wire.
    pub(crate) fn replay_len(self, s: &Settings<'_>, kept: &[u8]) -> usize {
        with_kind!(self, K => K::replay_len(s, kept))
    }

    /// How many queue entries a replay of `messages` takes on this wire.
    pub(crate) fn replay_entries(self, messages: usize) -> usize {
        with_kind!(self, K => K::replay_entries(messages))
    }

    /// The queue entries that replay `kept` (frames in the hub's framing, each with its
    /// kind) on this wire, `len` bytes in all (the sum of their
    /// [`replay_len`](Self::replay_len)).
    pub(crate) fn replay<'a>(
        self,
        s: &Settings<'_>,
        kept: impl Iterator<Item = (&'a Bytes, Option<MessageKind>)>,
        len: usize,
    ) -> Vec<Chunk> {
        with_kind!(self, K => K::replay(s, kept, len))
    }

    /// What the opening request at the front of `data` amounts to, for a wire that
    /// [opens with HTTP](Self::opens_with_http) (others are never asked).
    #[cfg(feature = "websocket")]
    pub(crate) fn open(self, s: &Settings<'_>, data: &[u8]) -> Head {
        with_kind!(self, K => K::open(s, data))
    }

    /// The state a client of this wire keeps once its opening was answered, if any.
    #[cfg(feature = "websocket")]
    pub(crate) fn session(self) -> Option<Box<Session>> {
        with_kind!(self, K => K::session())
    }
}

/// What each kind of wire does, implemented in the kind's own module; [`Wire`]'s methods
/// dispatch to it. The provided methods are for a kind that frames every message anew from
/// its payload.
trait Kind {
    /// See [`Wire::log_target`].
    const LOG_TARGET: &'static str;
    /// See [`Wire::opens_with_http`].
    const OPENS_WITH_HTTP: bool;
    /// See [`Wire::listen_only`].
    const LISTEN_ONLY: bool;

    /// The size of `payload` framed as one message, or `None` if it cannot be framed.
    fn encoded_len(s: &Settings<'_>, payload: &[u8]) -> Option<usize>;

    /// Appends `payload` framed as one message of `kind` (`None`: untyped). It must be
    /// encodable (see `encoded_len`); if its kind is text, it must be UTF-8.
    fn encode_into(s: &Settings<'_>, payload: &[u8], kind: Option<MessageKind>, out: &mut BytesMut);

    /// See [`Wire::ping`].
    fn ping(s: &Settings<'_>) -> Chunk;

    /// Whether it can carry every message the hub's settings allow (say, each grown by its
    /// framing within `config::MAX_FRAME_LEN`); if not, why, after its transport's name.
    fn check(_s: &Settings<'_>) -> Result<(), &'static str> {
        Ok(())
    }

    /// See [`Wire::reframe`]: every payload cut out by the hub's framing and framed again
    /// with its kind, into one buffer sized first.
    fn reframe(s: &Settings<'_>, frames: &Frames) -> Option<Frames> {
        let payloads = || (0..frames.ends.len()).map(|i| frames.payload(i, s.framing));
        let len = payloads()
            .map(|p| Self::encoded_len(s, p).unwrap_or(0))
            .sum();
        let mut out = BytesMut::with_capacity(len);
        let mut ends = Vec::with_capacity(frames.ends.len());
        for (i, payload) in payloads().enumerate() {
            Self::encode_into(s, payload, frames.kinds.get(i), &mut out);
            ends.push(frame_end(&out));
        }
        Some(Frames {
            bytes: out.freeze(),
            ends: Arc::from(ends),
            runs: frames.runs.clone(),
            kinds: frames.kinds.clone(),
        })
    }

    /// See [`Wire::replay_len`].
    fn replay_len(s: &Settings<'_>, kept: &[u8]) -> usize {
        Self::encoded_len(s, codec::payload_of(s.framing, kept)).unwrap_or(0)
    }

    /// See [`Wire::replay_entries`]: one, as [`replay`](Self::replay) frames every message
    /// anew into one buffer.
    fn replay_entries(_messages: usize) -> usize {
        1
    }

    /// See [`Wire::replay`]: the messages framed anew, each as its kind, into one buffer
    /// of `len` bytes.
    fn replay<'a>(
        s: &Settings<'_>,
        kept: impl Iterator<Item = (&'a Bytes, Option<MessageKind>)>,
        len: usize,
    ) -> Vec<Chunk> {
        let mut out = BytesMut::with_capacity(len);
        let mut ends = Vec::new();
        for (frame, kind) in kept {
            Self::encode_into(s, codec::payload_of(s.framing, frame), kind, &mut out);
            ends.push(frame_end(&out));
        }
        let frames = Frames {
            bytes: out.freeze(),
            ends: ends.into(),
            runs: Box::new([(0, Target::All)]),
            kinds: crate::command::Kinds::UNTYPED,
        };
        vec![Chunk::whole(&frames)]
    }

    /// See [`Wire::open`]. Only a kind that opens with HTTP is asked.
    #[cfg(feature = "websocket")]
    fn open(_s: &Settings<'_>, _data: &[u8]) -> Head {
        Head::Partial
    }

    /// See [`Wire::session`].
    #[cfg(feature = "websocket")]
    fn session() -> Option<Box<Session>> {
        None
    }
}

/// Where the last frame of `out` ends. Offsets are 32-bit: a batch is at most 64 KiB of
/// frames, and one frame at most `config::MAX_FRAME_LEN` bytes before any wire's framing.
fn frame_end(out: &BytesMut) -> u32 {
    u32::try_from(out.len()).unwrap_or(u32::MAX)
}

/// The hub's settings the wires frame and read by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings<'a> {
    /// What host calls, relayed frames and kept frames are framed in.
    pub(crate) framing: Framing,
    /// The largest message a client may send.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) max_frame: usize,
    /// Whether messages carry the protocol (`Protocol::Sequenced`).
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) sequenced: bool,
    /// The most a client's queue holds.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) queue_bytes: usize,
    /// The WebSocket knobs, and the HTTP side of WebSocket listeners (feature `websocket`).
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) websocket: &'a WebSocketSettings,
    /// The streams' epochs, where numbered frames are reframed for a wire that names them
    /// (event streams' ids); `None` elsewhere.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) epochs: Option<&'a dyn Epochs>,
    /// The epoch of the stream whose kept frames are being replayed, for the same.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) replaying: Option<u64>,
}

impl<'a> Settings<'a> {
    /// The settings of a hub, with no epochs.
    pub(crate) fn new(
        framing: Framing,
        max_frame: usize,
        sequenced: bool,
        queue_bytes: usize,
        websocket: &'a WebSocketSettings,
    ) -> Settings<'a> {
        Settings {
            framing,
            max_frame,
            sequenced,
            queue_bytes,
            websocket,
            epochs: None,
            replaying: None,
        }
    }
}

/// The epochs of the streams, as the dispatcher holds them (only event streams read them).
#[cfg_attr(not(feature = "websocket"), allow(dead_code))]
pub(crate) trait Epochs: fmt::Debug {
    /// The hub-wide stream's.
    fn hub(&self) -> u64;
    /// Topic `id`'s, if it has a stream.
    fn topic(&self, id: crate::topics::TopicId) -> Option<u64>;
}

#[cfg(test)]
impl Settings<'static> {
    /// The default settings with `framing`.
    pub(crate) fn with(framing: Framing) -> Settings<'static> {
        static WEBSOCKET: std::sync::OnceLock<WebSocketSettings> = std::sync::OnceLock::new();
        Settings::new(
            framing,
            64 * 1024,
            false,
            4 << 20,
            WEBSOCKET.get_or_init(WebSocketSettings::default),
        )
    }
}

/// One `T` per wire built in, indexed by [`Wire`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct PerWire<T>([T; Wire::COUNT]);

impl<T> PerWire<T> {
    /// `f` of each wire.
    pub(crate) fn new(f: impl FnMut(Wire) -> T) -> PerWire<T> {
        PerWire(Wire::ALL.map(f))
    }

    /// Each wire with its value.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Wire, &T)> {
        Wire::ALL.into_iter().zip(&self.0)
    }
}

/// By wire: `{Framed: 3, WebSocket: 1}`.
impl<T: fmt::Debug> fmt::Debug for PerWire<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<T: Default> Default for PerWire<T> {
    fn default() -> PerWire<T> {
        PerWire::new(|_| T::default())
    }
}

impl<T> Index<Wire> for PerWire<T> {
    type Output = T;

    fn index(&self, wire: Wire) -> &T {
        &self.0[wire.index()]
    }
}

impl<T> IndexMut<Wire> for PerWire<T> {
    fn index_mut(&mut self, wire: Wire) -> &mut T {
        &mut self.0[wire.index()]
    }
}

impl PerWire<Option<Frames>> {
    /// `frames` (in the hub's framing) [reframed](Wire::reframe) for each wire that frames
    /// otherwise and, as `live` says, has clients to send them to.
    pub(crate) fn reframe(
        s: &Settings<'_>,
        frames: &Frames,
        live: impl Fn(Wire) -> bool,
    ) -> PerWire<Option<Frames>> {
        PerWire::new(|wire| {
            if live(wire) {
                wire.reframe(s, frames)
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Batch;
    use crate::{ClientId, Framing};

    #[test]
    fn per_wire_is_indexed_by_wire() {
        let mut counts = PerWire::<usize>::default();
        counts[Wire::Framed] += 2;
        assert_eq!(counts[Wire::Framed], 2);
        let wires: Vec<Wire> = counts.iter().map(|(wire, _)| wire).collect();
        assert_eq!(wires, Wire::ALL);
        assert!(format!("{counts:?}").starts_with("{Framed: 2"));
        for wire in Wire::ALL {
            assert_eq!(Wire::ALL[wire.index()], wire);
            assert_eq!(PerWire::new(|w| w)[wire], wire);
        }
    }

    #[test]
    fn every_transport_has_a_wire_or_names_its_feature() {
        for transport in [
            Transport::Tcp,
            Transport::Tls,
            Transport::WebSocket,
            Transport::WebSocketTls,
        ] {
            let wire = Wire::of(transport);
            match Wire::check(transport, &Settings::with(Framing::Lines)) {
                Ok(()) => assert_eq!(wire.opens_with_http(), transport.is_websocket()),
                Err(why) => assert!(why.ends_with("needs the `websocket` feature"), "{why}"),
            }
        }
        assert_eq!(Wire::Framed.log_target(), "hubcast::clients");
    }

    #[test]
    fn the_framed_wire_shares_what_it_is_given() {
        for framing in [Framing::Lines, Framing::LengthPrefixed, Framing::Raw] {
            let s = Settings::with(framing);
            let mut batch = Batch::with_capacity(64);
            batch.push(framing, b"one", Target::All, None);
            batch.push(framing, b"two", Target::One(ClientId(1)), None);
            let frames = batch.take();
            assert!(Wire::Framed.reframe(&s, &frames).is_none());
            let kept = [codec::encode(framing, b"hi", 8)];
            let len = Wire::Framed.replay_len(&s, &kept[0]);
            assert_eq!(len, kept[0].len());
            assert_eq!(Wire::Framed.replay_entries(5), 5);
            let parts = Wire::Framed.replay(&s, kept.iter().map(|k| (k, None)), len);
            assert_eq!(parts.len(), 1);
            assert_eq!(parts[0].frames(), 1);
            let reply = Wire::Framed.encode(&s, b"#at 1 0");
            assert_eq!(codec::payload_of(framing, &reply), b"#at 1 0");
        }
        let s = Settings::with(Framing::Lines);
        assert_eq!(Wire::Framed.ping(&s).frames(), 1);
    }

    #[test]
    fn only_live_wires_that_frame_otherwise_are_reframed() {
        let s = Settings::with(Framing::Lines);
        let mut batch = Batch::with_capacity(64);
        batch.push(s.framing, b"x", Target::All, None);
        let frames = batch.take();
        let none = PerWire::reframe(&s, &frames, |_| false);
        for wire in Wire::ALL {
            assert!(none[wire].is_none());
        }
        let all = PerWire::reframe(&s, &frames, |_| true);
        assert!(
            all[Wire::Framed].is_none(),
            "the framed wire takes the batch as it is"
        );
    }
}
