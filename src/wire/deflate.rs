//! Compressed WebSocket ([`Wire::WebSocketDeflate`](super::Wire::WebSocketDeflate),
//! `permessage-deflate`, RFC 7692, feature `deflate`), **without context takeover** either
//! way: every message is a raw deflate stream of its own, so a message compressed once is
//! the same bytes for every client that negotiated the extension. The wire's `reframe`
//! compresses each message of a batch once (not once per client) into one shared buffer,
//! as the plain WebSocket wire frames it once.
//!
//! ```text
//! upgrade offer ──► accepts ──► 101 with DEFLATE_ANSWER ──► client on Wire::WebSocketDeflate
//! batch ──► encode_into: payload ≥ min_size and smaller compressed? RSV1 frame : plain frame
//! RSV1 message in ──► Decoder ──► inflate (one inflater per dispatcher thread, bounded by
//!                                   max_frame while inflating: over it, close 1009)
//! ```
//!
//! What is kept is per dispatcher thread, never per client: one compressor (about 300 KB,
//! made on first use, reset before each message) and one inflater (about 43 KB and an
//! output buffer of at most `max_frame` bytes), in thread-locals of the thread that
//! frames and reads, which is the hub's dispatcher; and the counts it has not published
//! yet ([`publish`]). A client that negotiated the extension costs nothing more than a
//! plain WebSocket client.
//!
//! The crate is `miniz_oxide` (pure Rust, flate2's default backend): raw deflate through
//! streaming states with output buffers the caller sizes, which is what inflating within
//! a bound needs.

use std::cell::{Cell, RefCell};
use std::time::Instant;

use bytes::BytesMut;
use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
use miniz_oxide::deflate::stream::deflate;
use miniz_oxide::inflate::stream::{inflate as inflate_stream, InflateState, MinReset};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

use super::websocket::{encode_frame, encoded_len, Opcode, Session, WsError};
use super::{Kind, Settings};
use crate::options::CompressionSettings;
use crate::queue::Chunk;
use crate::stats::Counters;
use crate::MessageKind;

/// What a sync flush ends with, and the sender removes (RFC 7692 section 7.2.1); the
/// receiver appends it again before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The compressed WebSocket wire's [`Kind`]: the plain WebSocket wire's, but for the
/// frames of messages compressed.
pub(super) struct Deflate;

impl Kind for Deflate {
    const LOG_TARGET: &'static str = "hubcast::websocket";
    const OPENS_WITH_HTTP: bool = true;
    const LISTEN_ONLY: bool = false;

    /// At most the plain frame: a message is compressed only where that is smaller.
    fn encoded_len(_: &Settings<'_>, payload: &[u8]) -> Option<usize> {
        Some(encoded_len(payload.len()))
    }

    /// One unmasked final frame of the message's opcode (as the plain wire chooses it):
    /// compressed, with RSV1, if the payload is at least `min_size` bytes and its
    /// compression is smaller; else plain.
    fn encode_into(
        s: &Settings<'_>,
        payload: &[u8],
        kind: Option<MessageKind>,
        out: &mut BytesMut,
    ) {
        let opcode = Opcode::for_message(payload, kind, s.websocket.binary);
        let compression = &s.websocket.compression;
        if payload.len() < compression.min_size.max(1)
            || !compressed(compression, payload, |bytes| {
                encode_frame(out, opcode, true, bytes);
            })
        {
            encode_frame(out, opcode, false, payload);
        }
    }

    fn ping(s: &Settings<'_>) -> Chunk {
        <super::websocket::WebSocket as Kind>::ping(s)
    }

    fn open(s: &Settings<'_>, data: &[u8]) -> super::http::Head {
        super::http::route(data, s.websocket)
    }

    fn session() -> Option<Box<Session>> {
        Some(Box::new(Session::deflate()))
    }
}

/// Whether a client's `Sec-WebSocket-Extensions` headers (`offers`, each a list) offer
/// `permessage-deflate` with parameters the hub can honour, and the host enabled it: then
/// the `101` carries `handshake::DEFLATE_ANSWER`. An offer it cannot honour is declined, never failed:
/// `server_max_window_bits` under 15 (the compressor's window is 32 KiB), a value out of
/// 8..=15, an unknown or repeated parameter. The first offer it can honour is taken.
pub(crate) fn accepts<'v>(
    compression: &CompressionSettings,
    offers: impl IntoIterator<Item = &'v [u8]>,
) -> bool {
    compression.enabled
        && offers
            .into_iter()
            .filter_map(|value| std::str::from_utf8(value).ok())
            .flat_map(|value| value.split(','))
            .any(honours)
}

/// Whether one extension of an offer is `permessage-deflate` with parameters the hub can
/// honour (see [`accepts`]).
fn honours(extension: &str) -> bool {
    let mut parts = extension.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
    {
        return false;
    }
    let mut seen = [false; 4];
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let bits = value.map(|v| v.parse::<u8>().ok().filter(|b| (8..=15).contains(b)));
        let (index, fine) = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => (0, value.is_none()),
            "client_no_context_takeover" => (1, value.is_none()),
            // The hub's window is 32 KiB: a client that can hold less is declined.
            "server_max_window_bits" => (2, bits == Some(Some(15))),
            // Any client window inflates within the hub's 32 KiB.
            "client_max_window_bits" => (3, !matches!(bits, Some(None))),
            _ => return false,
        };
        if !fine || std::mem::replace(&mut seen[index], true) {
            return false;
        }
    }
    true
}

/// The compressor of this thread, made on first use at `level`.
struct Compressor {
    level: u8,
    state: Box<CompressorOxide>,
    /// Where a message is compressed before it is framed.
    out: Vec<u8>,
}

/// Counts of this thread not yet published (see [`publish`]).
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    frames: u64,
    bytes_in: u64,
    bytes_out: u64,
    nanos: u64,
    inflated: u64,
}

thread_local! {
    /// One compressor per framing thread (the dispatcher), never per client.
    static COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
    /// One inflater per reading thread (the dispatcher), never per client.
    static INFLATER: RefCell<Option<Inflater>> = const { RefCell::new(None) };
    static TALLY: Cell<Tally> = const {
        Cell::new(Tally { frames: 0, bytes_in: 0, bytes_out: 0, nanos: 0, inflated: 0 })
    };
}

/// Adds what this thread compressed and inflated since the last call to `counters`.
pub(crate) fn publish(counters: &Counters) {
    use std::sync::atomic::Ordering::Relaxed;
    let tally = TALLY.with(|t| t.take());
    if tally.frames | tally.inflated | tally.nanos != 0 {
        counters.compressed_frames.fetch_add(tally.frames, Relaxed);
        counters
            .compressed_bytes_in
            .fetch_add(tally.bytes_in, Relaxed);
        counters
            .compressed_bytes_out
            .fetch_add(tally.bytes_out, Relaxed);
        counters.compress_nanos.fetch_add(tally.nanos, Relaxed);
        counters
            .inflated_messages
            .fetch_add(tally.inflated, Relaxed);
    }
}

/// Compresses `payload` as one message without context takeover and, if that is smaller
/// than the payload, hands the compressed bytes to `frame` and returns `true`.
fn compressed(
    compression: &CompressionSettings,
    payload: &[u8],
    frame: impl FnOnce(&[u8]),
) -> bool {
    let start = Instant::now();
    let done = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some(c) if c.level == compression.level => c,
            other => other.insert(Compressor {
                level: compression.level,
                state: compressor(compression.level),
                out: Vec::new(),
            }),
        };
        let len = compress(&mut compressor.state, payload, &mut compressor.out)?;
        frame(&compressor.out[..len]);
        Some(len)
    });
    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    TALLY.with(|t| {
        let mut tally = t.get();
        tally.nanos = tally.nanos.saturating_add(nanos);
        if let Some(len) = done {
            tally.frames += 1;
            tally.bytes_in += payload.len() as u64;
            tally.bytes_out += len as u64;
        }
        t.set(tally);
    });
    done.is_some()
}

/// A raw deflate compressor (negative window bits: no zlib header) at `level` (1..=9).
fn compressor(level: u8) -> Box<CompressorOxide> {
    let flags = create_comp_flags_from_zip_params(i32::from(level), -15, 0);
    Box::new(CompressorOxide::new(flags))
}

/// `payload` compressed into `out` as a message of its own (the compressor reset first),
/// ended by a sync flush whose 00 00 ff ff is cut: the length of the message in `out`, or
/// `None` if it would not be shorter than `payload`.
fn compress(state: &mut CompressorOxide, payload: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    state.reset();
    out.clear();
    // Room for the tail and one byte less than the payload: no more is worth sending.
    out.resize(payload.len() + TAIL.len() - 1, 0);
    let result = deflate(state, payload, out, MZFlush::Sync);
    let written = result.bytes_written;
    // Output space left over: the flush is complete.
    let whole = result.status.is_ok()
        && result.bytes_consumed == payload.len()
        && written < out.len()
        && out[..written].ends_with(&TAIL);
    whole.then(|| written - TAIL.len())
}

/// The inflater of this thread.
struct Inflater {
    state: Box<InflateState>,
    /// Where a message is inflated; swapped with the caller's buffer once done.
    out: Vec<u8>,
}

/// Replaces the compressed message in `buf` (its payload, without the tail) with the
/// message inflated, which may be at most `max` bytes: inflating stops as soon as the
/// output passes `max` ([`WsError::TooBig`]), so a small frame that would inflate to
/// gigabytes costs at most `max` bytes. The inflater is reset first (no context
/// takeover). Corrupt data is a protocol error.
pub(crate) fn inflate(buf: &mut Vec<u8>, max: usize) -> Result<(), WsError> {
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let inflater = slot.get_or_insert_with(|| Inflater {
            state: InflateState::new_boxed(DataFormat::Raw),
            out: Vec::new(),
        });
        inflater.state.reset_as(MinReset);
        if inflater.out.capacity() > max {
            // Kept from a larger bound (another hub's max_frame on this thread): the
            // output must stay within this one's.
            inflater.out = Vec::new();
        }
        let written = inflate_into(&mut inflater.state, buf, &mut inflater.out, max)?;
        inflater.out.truncate(written);
        std::mem::swap(buf, &mut inflater.out);
        // The compressed bytes are done with; their buffer is kept for the next message.
        inflater.out.clear();
        TALLY.with(|t| {
            let mut tally = t.get();
            tally.inflated += 1;
            t.set(tally);
        });
        Ok(())
    })
}

/// Inflates `compressed` and the tail into `out`, grown as needed up to `max` bytes (its
/// capacity too): how many bytes it wrote. Once `out` holds `max` bytes, a one-byte probe
/// tells whether the message goes on past the bound.
fn inflate_into(
    state: &mut InflateState,
    compressed: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<usize, WsError> {
    const CORRUPT: WsError = WsError::Protocol("invalid compressed data");
    let mut written = 0;
    let mut probe = [0u8; 1];
    for part in [compressed, &TAIL[..]] {
        let mut input = part;
        loop {
            if written == out.len() && out.len() < max {
                let grown = written.saturating_mul(2).max(4096).min(max);
                // Exactly: `resize` alone may double the capacity past the bound.
                out.reserve_exact(grown - out.len());
                out.resize(grown, 0);
            }
            let full = written == out.len();
            let target = if full {
                &mut probe[..]
            } else {
                &mut out[written..]
            };
            let room = target.len();
            let result = inflate_stream(state, input, target, MZFlush::None);
            if full && result.bytes_written > 0 {
                return Err(WsError::TooBig);
            }
            written += result.bytes_written;
            input = &input[result.bytes_consumed..];
            match result.status {
                // A final block: the message ends there.
                Ok(MZStatus::StreamEnd) => return Ok(written),
                Ok(_) => {}
                // Nothing more to do with no input left.
                Err(MZError::Buf) if input.is_empty() => break,
                Err(_) => return Err(CORRUPT),
            }
            if input.is_empty() && result.bytes_written < room {
                // All taken, and the output was not filled: nothing is pending.
                break;
            }
            if result.bytes_written == 0 && result.bytes_consumed == 0 {
                return Err(CORRUPT);
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Batch, Target};
    use crate::options::WebSocketSettings;
    use crate::wire::{Settings, Wire};
    use crate::Framing;

    /// Raw deflate of `payload` as a client would send it: sync flushed, tail cut.
    pub(crate) fn client_compress(payload: &[u8]) -> Vec<u8> {
        let mut state = compressor(6);
        let mut out = vec![0; payload.len() + 64];
        let result = deflate(&mut state, payload, &mut out, MZFlush::Sync);
        out.truncate(result.bytes_written - 4);
        out
    }

    fn settings(min_size: usize) -> Settings<'static> {
        let websocket = Box::leak(Box::new(WebSocketSettings {
            compression: CompressionSettings {
                enabled: true,
                min_size,
                level: 1,
            },
            ..WebSocketSettings::default()
        }));
        Settings {
            websocket,
            ..Settings::with(Framing::Lines)
        }
    }

    fn json(len: usize) -> Vec<u8> {
        let mut s = String::from("[");
        let mut i = 0;
        while s.len() < len {
            s.push_str(&format!(
                "{{\"id\":{i},\"user\":\"alice\",\"text\":\"hello\"}},"
            ));
            i += 1;
        }
        s.truncate(len);
        s.into_bytes()
    }

    fn inflated(compressed: &[u8], max: usize) -> Result<Vec<u8>, WsError> {
        let mut buf = compressed.to_vec();
        inflate(&mut buf, max).map(|()| buf)
    }

    #[test]
    fn offers_are_accepted_or_declined_never_failed() {
        let on = CompressionSettings {
            enabled: true,
            ..CompressionSettings::default()
        };
        let off = CompressionSettings::default();
        let yes: &[&str] = &[
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "Permessage-Deflate ; server_no_context_takeover;client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=15; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=\"15\"",
            "x-webkit-deflate-frame, permessage-deflate",
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
        ];
        let no: &[&str] = &[
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
        ];
        for offer in yes {
            assert!(accepts(&on, [offer.as_bytes()]), "{offer}");
            assert!(!accepts(&off, [offer.as_bytes()]), "{offer}, off");
        }
        for offer in no {
            assert!(!accepts(&on, [offer.as_bytes()]), "{offer}");
        }
        // Offers in two headers.
        assert!(accepts(&on, [&b"foo"[..], b"permessage-deflate"]));
        assert!(!accepts(&on, [&b"\xff"[..]]));
    }

    #[test]
    fn a_batch_is_compressed_once_and_inflates_to_its_payloads() {
        let s = settings(256);
        let big = json(4096);
        let mut batch = Batch::with_capacity(16 * 1024);
        batch.push(s.framing, &big, Target::All, None);
        batch.push(s.framing, b"small", Target::All, None);
        // Random bytes do not compress: sent plain.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..600)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        batch.push(s.framing, &noise, Target::All, Some(MessageKind::Binary));
        let frames = Wire::WebSocketDeflate.reframe(&s, &batch.take()).unwrap();
        let first = frames.frame(0);
        assert_eq!(first[0], 0x80 | 0x40 | 1, "FIN, RSV1, text");
        let (len, header) = match first[1] {
            126 => (usize::from(u16::from_be_bytes([first[2], first[3]])), 4),
            n => (usize::from(n), 2),
        };
        assert!(len < big.len() * 4 / 10, "{len} of {}", big.len());
        assert_eq!(inflated(&first[header..], 1 << 20).unwrap(), big);
        assert_eq!(frames.frame(1), b"\x81\x05small");
        assert_eq!(frames.frame(2)[0], 0x82, "plain binary");
    }

    #[test]
    fn inflating_stops_at_the_limit() {
        let bomb = client_compress(&vec![0; 1 << 20]);
        assert!(bomb.len() < 2048, "{}", bomb.len());
        assert_eq!(inflated(&bomb, 64 * 1024), Err(WsError::TooBig));
        assert_eq!(inflated(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert_eq!(inflated(&bomb, (1 << 20) - 1), Err(WsError::TooBig));
        assert!(matches!(
            inflated(&[0xff, 0xff, 0xff], 1024),
            Err(WsError::Protocol(_))
        ));
        assert_eq!(inflated(&client_compress(b""), 0).unwrap(), b"");
        // One inflater, reset per message: the second does not lean on the first.
        let text = json(3000);
        for _ in 0..3 {
            assert_eq!(inflated(&client_compress(&text), 4096).unwrap(), text);
        }
    }

    #[test]
    fn compressed_messages_are_decoded_only_where_negotiated() {
        let payload = json(1000);
        let compressed = client_compress(&payload);
        // A masked client frame (mask 0), FIN + RSV1 + text.
        let mut wire = vec![0xc1, 0x80 | 126];
        wire.extend_from_slice(&(compressed.len() as u16).to_be_bytes());
        wire.extend_from_slice(&[0; 4]);
        wire.extend_from_slice(&compressed);
        let s = Settings::with(Framing::LengthPrefixed);
        let mut unmasked = Vec::new();
        let mut session = Session::deflate();
        let (input, used) = session.read(&s, &wire, &mut unmasked).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(
            input,
            super::super::Input::Message(&payload[..], MessageKind::Text)
        );
        let broken = Session::default()
            .read(&s, &wire, &mut unmasked)
            .unwrap_err();
        assert_eq!(broken.code, 1002);
        // RSV1 on a ping.
        let ping = [0xc9, 0x80, 0, 0, 0, 0];
        let broken = Session::deflate()
            .read(&s, &ping, &mut unmasked)
            .unwrap_err();
        assert_eq!(broken.code, 1002);
        // Compressed in two fragments, RSV1 on the first only.
        let (a, b) = compressed.split_at(compressed.len() / 2);
        let mut wire = vec![0x41, 0x80 | a.len() as u8, 0, 0, 0, 0];
        wire.extend_from_slice(a);
        wire.extend_from_slice(&[0x80, 0x80 | b.len() as u8, 0, 0, 0, 0]);
        wire.extend_from_slice(b);
        let (input, _) = Session::deflate()
            .read(&s, &wire, &mut unmasked)
            .unwrap()
            .unwrap();
        assert_eq!(
            input,
            super::super::Input::Message(&payload[..], MessageKind::Text)
        );
        // RSV1 on the continuation: 1002.
        let mut bad = wire.clone();
        bad[6 + a.len()] |= 0x40;
        let broken = Session::deflate()
            .read(&s, &bad, &mut unmasked)
            .unwrap_err();
        assert_eq!(broken.code, 1002);
        // Invalid UTF-8 once inflated: 1007.
        let latin = client_compress(&[b'a', 0xe9, b'b']);
        let mut wire = vec![0xc1, 0x80 | latin.len() as u8, 0, 0, 0, 0];
        wire.extend_from_slice(&latin);
        let broken = Session::deflate()
            .read(&s, &wire, &mut unmasked)
            .unwrap_err();
        assert_eq!(broken.code, 1007);
    }

    /// A client frame (mask 0): FIN, RSV1, binary, `payload`.
    fn compressed_frame(payload: &[u8]) -> Vec<u8> {
        let mut wire = vec![0xc2];
        match payload.len() {
            n @ 0..=125 => wire.push(0x80 | n as u8),
            n => {
                wire.push(0x80 | 126);
                wire.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        wire.extend_from_slice(&[0; 4]);
        wire.extend_from_slice(payload);
        wire
    }

    proptest::proptest! {
        /// Whatever a client compresses, it inflates back exactly when it fits the bound,
        /// and is refused with 1009 when it does not; arbitrary bytes as a compressed
        /// message never panic, and nothing inflated passes the bound.
        #[test]
        fn inflating_round_trips_within_the_bound(
            payload in proptest::collection::vec(0u8..4, 0..3000),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            max in 0usize..4000,
        ) {
            let s = Settings { max_frame: max.max(700), ..Settings::with(Framing::LengthPrefixed) };
            let mut unmasked = Vec::new();
            let compressed = client_compress(&payload);
            if compressed.len() <= s.max_frame {
                let read = Session::deflate().read(&s, &compressed_frame(&compressed), &mut unmasked);
                match read {
                    Ok(Some((super::super::Input::Message(got, _), _))) => {
                        proptest::prop_assert!(payload.len() <= s.max_frame);
                        proptest::prop_assert_eq!(got, &payload[..]);
                    }
                    Err(broken) => {
                        proptest::prop_assert!(payload.len() > s.max_frame);
                        proptest::prop_assert_eq!(broken.code, 1009);
                    }
                    other => proptest::prop_assert!(false, "{:?}", other),
                }
            }
            let read = Session::deflate().read(&s, &compressed_frame(&noise), &mut unmasked);
            if let Ok(Some((super::super::Input::Message(got, _), _))) = read {
                proptest::prop_assert!(got.len() <= s.max_frame);
            }
            proptest::prop_assert!(unmasked.capacity() <= s.max_frame.max(noise.len()));
        }
    }
}
