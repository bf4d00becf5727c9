//! Embeddable broadcast over TCP.
//!
//! A [`Hub`] owns a listening socket, every connected client and one dispatcher thread.
//! Clients connect; every message the host [broadcasts](Hub::broadcast) reaches every
//! connected client, in order, and no client — slow, stalled or hostile — can delay the
//! others or grow the hub's memory without bound. The host never touches a socket.
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::net::TcpStream;
//! use hubcast::{Event, Hub};
//!
//! let hub = Hub::bind("127.0.0.1:0")?;
//! let events = hub.subscribe();
//!
//! let mut client = TcpStream::connect(hub.local_addr())?;
//! let Ok(Event::Connected { client: id, .. }) = events.recv() else { panic!("no client") };
//!
//! hub.broadcast("hello, everyone")?;
//! let mut reader = BufReader::new(client.try_clone()?);
//! let mut line = String::new();
//! reader.read_line(&mut line)?;
//! assert_eq!(line, "hello, everyone\n");
//!
//! client.write_all(b"hi, hub\n")?;
//! match events.recv()? {
//!     Event::Message { client, payload, .. } => {
//!         assert_eq!(client, id);
//!         assert_eq!(&payload[..], b"hi, hub");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! hub.shutdown(std::time::Duration::from_secs(1))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Threads and ownership
//!
//! [`Hub::bind`] starts one thread, `hubcast-loop` (and, with a cluster, one more for the
//! NATS connection, `hubcast-nats`). It owns the listeners and every client
//! socket (non-blocking, driven by `mio` readiness), each client's outbound queue and
//! partial inbound frame. Host calls ([`Hub::broadcast`], [`Hub::send_to`], ...) are
//! messages to it over a channel, followed by a wake-up. Accepting 10,000 clients creates
//! no more threads, and an idle hub sleeps in `epoll_wait`.
//!
//! If the dispatcher thread dies (a bug, or its event loop failing), the hub does not fail
//! silently: [`Hub::is_closed`] turns true, every call returns [`Error::Failed`] at once,
//! every [`Subscription`] ends, and [`Hub::shutdown`] reports the cause. A panic in one of
//! the host's closures ([`HubBuilder::accept_filter`], [`HubBuilder::authenticate`],
//! [`HubBuilder::admit`], [`HubBuilder::client_topics`]) costs only the connection or the topic request it was
//! called for.
//!
//! # Blocking
//!
//! The first line of each method's documentation says whether it blocks. No method waits
//! for a client by default. [`Hub::broadcast`] frames the message on the calling thread
//! (small messages straight into a batch shared with the dispatcher) and hands it over; it
//! waits only if the dispatcher itself is
//! [`command_capacity`](HubBuilder::command_capacity) calls or
//! [`queue_bytes`](HubBuilder::queue_bytes) of frames behind, and, with
//! [`flow_control`](HubBuilder::flow_control) on, while a client catches up, so that a
//! flooding host is paced by its clients. [`Hub::try_broadcast`] never waits: it says
//! why it did not send instead. Calls made from the hub's own closures never wait either.
//! [`Hub::shutdown`] and dropping the `Hub` wait for the dispatcher to finish: at most
//! their deadline plus the time to close sockets.
//!
//! # Memory bounds
//!
//! - Each client's outbound queue is bounded by [`queue_bytes`](HubBuilder::queue_bytes)
//!   (4 MiB by default), counting 64 bytes of bookkeeping per queued chunk; past it the
//!   [`SlowClientPolicy`] applies. Frames are shared between queues, never copied per
//!   client, and a queue gives its memory back once it is written out.
//! - `SO_SNDBUF` is set (128 KiB by default) so the kernel does not hold a second
//!   unbounded queue.
//! - A client's partial inbound frame is at most [`max_frame`](HubBuilder::max_frame)
//!   bytes plus one read (64 KiB); a length prefix is checked before anything is buffered.
//!   An idle client holds no buffer.
//! - Each [`Subscription`] queues at most [`event_capacity`](HubBuilder::event_capacity)
//!   events. When one is full the hub stops reading clients and accepting connections until
//!   it drains: TCP flow control then holds back the clients, and nothing is dropped. A
//!   message's payload is a copy of exactly its bytes.
//! - Work waiting for the dispatcher is bounded by `command_capacity` calls and
//!   `queue_bytes` of frames.
//! - With [`Protocol::Sequenced`], each stream's replay ring is bounded by
//!   [`replay_messages`](HubBuilder::replay_messages),
//!   [`replay_bytes`](HubBuilder::replay_bytes) and
//!   [`replay_age`](HubBuilder::replay_age); the rings of topics whose members all left,
//!   together, by [`replay_kept_bytes`](HubBuilder::replay_kept_bytes). In a cluster, what
//!   waits for or comes from the broker is bounded by `Cluster::buffer_bytes` each way.
//!
//! `docs/ARCHITECTURE.md` in the repository lists every buffer with its bound.
//!
//! # Errors and disconnects
//!
//! Mistakes by the caller and refusals by the operating system are [`Error`]s, and so is a
//! hub that has stopped ([`Error::Closed`]) or died ([`Error::Failed`]). Anything a client
//! does — closing, resetting, reading too slowly, sending an oversized frame — is not an
//! error to the host: the client leaves with an [`Event::Disconnected`] whose
//! [`DisconnectReason`] says why, and [`Stats`] counts it. No input, from a client or from
//! the host (sizes, durations, closures), makes hubcast panic: durations too long to
//! represent mean "no limit", and out-of-range settings are an [`Error::Config`] from
//! [`HubBuilder::bind`].
//!
//! # Logging
//!
//! Through the [`log`](https://docs.rs/log) facade:
//! - `error`: the dispatcher died (the hub fails, see above); a host closure panicked;
//! - `warn`: `accept` failing (for example out of file descriptors); connections refused
//!   (at `max_clients`, `max_clients_per_ip`, `max_clients_per_user`, by the accept
//!   filter, out of descriptors): the first at once, then one line a second with the
//!   counts; a subscription full for a second; a shutdown or drop that could not deliver
//!   everything;
//! - `info`: the hub starting, shutting down and stopping; clients sending oversized
//!   frames; failed authentication (and invalid user keys); failed or timed-out handshakes
//!   (TLS included); a pause for a full subscription ending after it was warned about;
//! - `debug`: clients connecting and leaving with their reason, slow-client drops, pauses
//!   for full subscriptions, messages not relayed to a topic the
//!   [`client_topics`](HubBuilder::client_topics) closure refused;
//! - `trace`: every inbound payload (the only level that logs payload bytes).
//!
//! # Defences
//!
//! Every resource has a limit with a finite default, on [`HubBuilder`]: outbound queue
//! bytes, inbound frame size, clients, clients per IP and per user, an [accept
//! filter](HubBuilder::accept_filter), an [authentication hook](HubBuilder::authenticate)
//! with a [handshake deadline](HubBuilder::handshake_timeout), [idle
//! timeout](HubBuilder::idle_timeout), [heartbeats](HubBuilder::heartbeat) and a
//! [write timeout](HubBuilder::write_timeout). Reads are fair: the dispatcher reads at most
//! 256 KiB from one client before turning to the next, so a chatty client cannot starve the
//! others. At the file-descriptor limit the hub keeps serving its clients, sheds new
//! connections with a spare descriptor instead of spinning, and accepts again once
//! descriptors free up.
//!
//! # Features
//!
//! No feature is on by default.
//!
//! - `tls`: serve clients over TLS with [rustls](https://docs.rs/rustls) (no OpenSSL),
//!   configured with `HubBuilder::tls` or `HubBuilder::tls_pem`. Frames are still encoded
//!   once and shared; each client's copy is encrypted as it is written.
//! - `websocket`: WebSocket clients (`ws://`, and `wss://` with `tls`) beside TCP clients,
//!   on listeners added with [`HubBuilder::listen`]. Each message keeps its
//!   [`MessageKind`] (text or binary) on its way to them: a [`Message`] from the host, or
//!   what a WebSocket client sent, relayed with its opcode.
//! - `nats`: several hubs sharing broadcasts, relayed messages and topics through NATS,
//!   configured with `HubBuilder::cluster`.
//!
//! # Versioning
//!
//! hubcast follows semantic versioning. Public enums and structs that may grow are
//! `#[non_exhaustive]`, and so are [`Event`]'s variants: match them with `..`. Two types
//! of other crates appear in the API: [`Bytes`] (from `bytes` 1.x, stable) and, with the
//! `tls` feature, `rustls::ServerConfig`, re-exported as `hubcast::rustls`. rustls is
//! pre-1.0: a hubcast release that moves to a new rustls minor version (0.23 to 0.24) is a
//! new hubcast minor version (a breaking change before 1.0), named in the changelog; build
//! your `ServerConfig` through `hubcast::rustls` so the versions always match.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.77 for the library with default features, as `rust-version` in `Cargo.toml`
//! states. With the dependency versions in `Cargo.lock`, the `tls` feature needs Rust 1.85
//! (rustls uses `zeroize` 1.9), and the tests, examples and benches need 1.88 (`proptest`,
//! and `time` through `rcgen`). CI builds with the current stable toolchain only; it checks
//! these figures against the dependencies' own `rust-version`s (`scripts/check_msrv.py`)
//! and fails if the default build needs more than `rust-version`. Raising it gets its own
//! minor release.

#![forbid(unsafe_code)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod callbacks;
mod client;
#[cfg(feature = "nats")]
mod cluster;
mod command;
mod config;
mod dispatcher;
mod error;
mod event;
mod health;
mod hub;
mod message;
mod metrics;
mod options;
mod queue;
mod random;
mod shared;
mod stats;
mod subscription;
mod topics;
mod transport;
mod wire;

pub use bytes::Bytes;
/// The rustls version hubcast's `tls` feature is built on, for [`HubBuilder::tls`]. See
/// "Versioning" in the crate docs.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;

pub use crate::builder::HubBuilder;
pub use crate::callbacks::{Admit, Auth, AuthRequest, TopicAction, TopicRequest};
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use crate::cluster::Cluster;
pub use crate::error::{Error, Result, WouldBlock};
pub use crate::event::{ClientId, ClusterState, DisconnectReason, Event, ResumeRefusal};
pub use crate::health::Health;
pub use crate::hub::{Adopted, Hub};
#[cfg(feature = "websocket")]
pub use crate::hub::{WebSocketAnswer, WebSocketRefusal};
pub use crate::message::{AsMessage, Message, MessageKind};
pub use crate::options::{
    Framing, ListenAddr, Origins, Protocol, RateLimit, RateLimitPolicy, Relay, SlowClientPolicy,
    TopicOptions, Transport,
};
pub use crate::stats::{
    ClientInfo, ClusterStats, Disconnects, Member, ShutdownReport, Stats, TopicInfo, Undelivered,
};
pub use crate::subscription::{
    IntoIter, Iter, RecvError, RecvTimeoutError, Subscription, TryRecvError,
};

/// Entry points for the fuzz targets in `fuzz/` (built only with `--cfg fuzzing`, which
/// `cargo fuzz` sets). Not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use crate::wire::codec;
    use crate::Framing;

    /// Feeds `data` to the decoder in chunks cut at `cuts`, as reads would deliver it, and
    /// checks the decoder's promises: no panic, no frame over `max_frame`.
    pub fn decode(framing: Framing, data: &[u8], cuts: &[u8], max_frame: usize) {
        let max_frame = max_frame.max(1);
        let mut buf = Vec::new();
        let mut scanned = 0;
        let mut rest = data;
        // Each cut is the length of the next read; whatever is left comes last.
        let reads = cuts
            .iter()
            .map(|&c| usize::from(c))
            .chain(std::iter::once(usize::MAX));
        for len in reads {
            let (chunk, tail) = rest.split_at(len.min(rest.len()));
            rest = tail;
            buf.extend_from_slice(chunk);
            loop {
                match codec::decode(framing, &buf, max_frame, &mut scanned) {
                    Ok(Some(frame)) => {
                        assert!(frame.payload.len() <= max_frame);
                        assert!(frame.payload.end <= frame.len && frame.len <= buf.len());
                        buf.drain(..frame.len);
                    }
                    Ok(None) => break,
                    Err(codec::FrameTooLarge) => return,
                }
            }
            if rest.is_empty() {
                return;
            }
        }
    }

    /// Feeds `data` to the WebSocket frame decoder in chunks cut at `cuts`, as reads would
    /// deliver it, and checks the decoder's promises: no panic, no message over
    /// `max_message`, text that is UTF-8, no buffer past the limit, and no memory held
    /// between messages.
    #[cfg(feature = "websocket")]
    pub fn decode_websocket(data: &[u8], cuts: &[u8], max_message: usize) {
        use crate::wire::websocket::{Decoder, Inbound};

        let mut decoder = Decoder::default();
        let mut unmasked = Vec::new();
        let mut buf = Vec::new();
        let mut rest = data;
        // An odd limit reads as a client that negotiated compression (feature `deflate`):
        // RSV1 messages are inflated within the limit, and text checked once inflated.
        let deflate = cfg!(feature = "deflate") && max_message % 2 == 1;
        // Each cut is the length of the next read; whatever is left comes last.
        let reads = cuts
            .iter()
            .map(|&c| usize::from(c))
            .chain(std::iter::once(usize::MAX));
        for len in reads {
            let (chunk, tail) = rest.split_at(len.min(rest.len()));
            rest = tail;
            buf.extend_from_slice(chunk);
            let mut used = 0;
            loop {
                match decoder.decode_with(&buf[used..], max_message, &mut unmasked, deflate) {
                    Ok(Some((inbound, n))) => {
                        assert!(n > 0 && n <= buf.len() - used);
                        used += n;
                        match inbound {
                            Inbound::Message { text, payload } => {
                                assert!(payload.len() <= max_message);
                                assert!(!text || std::str::from_utf8(payload).is_ok());
                                assert!(decoder.is_idle());
                            }
                            Inbound::Ping(payload) => assert!(payload.len() <= 125),
                            Inbound::Fragment => assert!(!decoder.is_idle()),
                            Inbound::Pong | Inbound::Close { .. } => {}
                        }
                        // Control payloads may reach 125 bytes under a smaller limit.
                        assert!(unmasked.capacity() <= max_message.max(125));
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            buf.drain(..used);
            if rest.is_empty() {
                return;
            }
        }
    }

    /// Reads `data` as the text of a control message (after its `#`), as the dispatcher
    /// does, and checks the grammar's promises: no panic; a request written back reads as
    /// the same request; a refusal is one `#error` line of bounded length.
    pub fn control(data: &[u8]) {
        if let Ok(text) = std::str::from_utf8(data) {
            crate::wire::control::check(text);
        }
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Hub>();
        assert_send_sync::<Subscription>();
        assert_send_sync::<Event>();
        assert_send_sync::<Stats>();
        assert_send_sync::<Message>();
        assert_send_sync::<MessageKind>();
    }
}
