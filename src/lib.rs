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
//!     Event::Message { client, payload } => {
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
//! [`Hub::bind`] starts one thread, `hubcast-dispatcher`. It owns the listener and every
//! client socket (non-blocking, driven by `mio` readiness), each client's outbound queue and
//! partial inbound frame. Host calls ([`Hub::broadcast`], [`Hub::send_to`], ...) are
//! messages to it over a bounded channel, followed by a wake-up. Accepting 10,000 clients
//! creates no more threads, and an idle hub sleeps in `epoll_wait`.
//!
//! # Blocking
//!
//! By default no method waits for a client. [`Hub::broadcast`] frames the message on the
//! calling thread (small messages straight into a batch shared with the dispatcher) and
//! hands it over; it waits only if the dispatcher itself is
//! [`command_capacity`](HubBuilder::command_capacity) calls or
//! [`queue_bytes`](HubBuilder::queue_bytes) of frames behind. With
//! [`flow_control`](HubBuilder::flow_control) on, it also waits while a client that keeps
//! up catches up, so a flooding host is paced by its clients. [`Hub::shutdown`] and
//! dropping the `Hub` wait for the dispatcher to finish, at most their deadline plus the
//! time to close sockets.
//!
//! # Memory bounds
//!
//! - Each client's outbound queue is bounded by [`queue_bytes`](HubBuilder::queue_bytes)
//!   (4 MiB by default), counting 64 bytes of bookkeeping per queued chunk; past it the
//!   [`SlowClientPolicy`] applies. Frames are shared between queues, never copied per client.
//! - `SO_SNDBUF` is set (128 KiB by default) so the kernel does not hold a second
//!   unbounded queue.
//! - An inbound frame is at most [`max_frame`](HubBuilder::max_frame) bytes; a length
//!   prefix is checked before anything is allocated.
//! - Each [`Subscription`] queues at most [`event_capacity`](HubBuilder::event_capacity)
//!   events. When one is full the hub stops reading clients and accepting connections until
//!   it drains: TCP flow control then holds back the clients, and nothing is dropped.
//! - An idle client costs a few hundred bytes of user-space memory: it holds no buffers.
//!
//! # Errors and disconnects
//!
//! Mistakes by the caller and refusals by the operating system are [`Error`]s. Anything a
//! client does — closing, resetting, reading too slowly, sending an oversized frame — is not
//! an error to the host: the client leaves with an [`Event::Disconnected`] whose
//! [`DisconnectReason`] says why, and [`Stats`] counts it.
//!
//! # Logging
//!
//! Through the [`log`](https://docs.rs/log) facade:
//! - `error`: the event loop itself failed (and the hub shuts down);
//! - `warn`: `accept` failing (for example out of file descriptors), connections refused at
//!   `max_clients`, a shutdown that could not deliver everything;
//! - `info`: the hub starting, shutting down and stopping, clients sending oversized frames,
//!   failed authentication and handshakes;
//! - `debug`: clients connecting and leaving with their reason, slow-client drops, pauses
//!   for full subscriptions;
//! - `trace`: every inbound payload (the only level that logs payload bytes).
//!
//! # Defences
//!
//! Every resource has a limit with a finite default, on [`HubBuilder`]: outbound queue
//! bytes, inbound frame size, clients, clients per IP, an [accept
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
//! - `tls`: serve clients over TLS with [rustls](https://docs.rs/rustls) (no OpenSSL):
//!   [`HubBuilder::tls`] or [`HubBuilder::tls_pem`]. Frames are still encoded once and
//!   shared; each client's copy is encrypted as it is written.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.77, as `rust-version` in `Cargo.toml` states.

#![forbid(unsafe_code)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod codec;
mod config;
mod dispatcher;
mod error;
mod event;
mod hub;
mod stats;
#[cfg(feature = "tls")]
mod tls;
mod transport;

pub use bytes::Bytes;
/// The rustls version hubcast's `tls` feature is built on, for [`HubBuilder::tls`].
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;

pub use crate::config::{Auth, Framing, HubBuilder, Relay, SlowClientPolicy};
pub use crate::error::{Error, Result};
pub use crate::event::{ClientId, DisconnectReason, Event, IntoIter, Iter, Subscription};
pub use crate::hub::Hub;
pub use crate::stats::{ClientInfo, Disconnects, ShutdownReport, Stats, Undelivered};

/// Entry points for the fuzz targets in `fuzz/` (built only with `--cfg fuzzing`, which
/// `cargo fuzz` sets). Not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use crate::{codec, Framing};

    /// Feeds `data` to the decoder in chunks cut at `cuts`, as reads would deliver it, and
    /// checks the decoder's promises: no panic, no frame over `max_frame`.
    pub fn decode(framing: Framing, data: &[u8], cuts: &[u8], max_frame: usize) {
        let max_frame = max_frame.max(1);
        let mut buf = bytes::BytesMut::new();
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
                match codec::decode(framing, &mut buf, max_frame, &mut scanned) {
                    Ok(Some(frame)) => assert!(frame.len() <= max_frame),
                    Ok(None) => break,
                    Err(codec::FrameTooLarge) => return,
                }
            }
            if rest.is_empty() {
                return;
            }
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
    }
}
