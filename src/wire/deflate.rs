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
/// frames of messages compressed. `NARROW`: for clients that offered a window under
/// 32 KiB (`server_max_window_bits` 8 to 14): compressed with matches of distance 1 only
/// (run lengths), which no window is too small for, so that they too share one
/// compression per message ([`Wire::WebSocketDeflateNarrow`](super::Wire)).
pub(super) struct Deflate<const NARROW: bool>;

impl<const NARROW: bool> Kind for Deflate<NARROW> {
    const LOG_TARGET: &'static str = "hubcast::websocket";
    const OPENS_WITH_HTTP: bool = true;
    const LISTEN_ONLY: bool = false;

    /// The plain frame's length, or the compressed one's where that is longer (a
    /// `min_size` of 0 compresses every message).
    fn encoded_len(s: &Settings<'_>, payload: &[u8]) -> Option<usize> {
        let most = if s.websocket.compression.min_size == 0 {
            bound(payload.len())
        } else {
            payload.len()
        };
        Some(encoded_len(most))
    }

    /// One unmasked final frame of the message's opcode (as the plain wire chooses it):
    /// compressed, with RSV1, if the payload is at least `min_size` bytes and its
    /// compression is smaller (with a `min_size` of 0: always); else plain.
    fn encode_into(
        s: &Settings<'_>,
        payload: &[u8],
        kind: Option<MessageKind>,
        out: &mut BytesMut,
    ) {
        let opcode = Opcode::for_message(payload, kind, s.websocket.binary);
        let compression = &s.websocket.compression;
        let every = compression.min_size == 0;
        if (payload.len() < compression.min_size && !every)
            || !compressed::<NARROW>(compression, payload, every, |bytes| {
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

/// The window a client's `Sec-WebSocket-Extensions` headers (`offers`, each a list) let
/// the hub compress with, in bits (`server_max_window_bits`: 15, the default, or 8 to 14),
/// if they offer `permessage-deflate` with parameters the hub can honour and the host
/// enabled it: then the `101` carries `handshake::deflate_answer` of it. An offer it
/// cannot honour is declined, never failed: a value out of 8..=15, an unknown or repeated
/// parameter. The first offer it can honour is taken.
pub(crate) fn accepts<'v>(
    compression: &CompressionSettings,
    offers: impl IntoIterator<Item = &'v [u8]>,
) -> Option<u8> {
    if !compression.enabled {
        return None;
    }
    offers
        .into_iter()
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(','))
        .find_map(honours)
}

/// The window one extension of an offer lets the hub compress with, if it is
/// `permessage-deflate` with parameters the hub can honour (see [`accepts`]).
fn honours(extension: &str) -> Option<u8> {
    let mut parts = extension.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
    {
        return None;
    }
    let mut seen = [false; 4];
    let mut window = 15;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let bits = value.map(|v| v.parse::<u8>().ok().filter(|b| (8..=15).contains(b)));
        let (index, fine) = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => (0, value.is_none()),
            "client_no_context_takeover" => (1, value.is_none()),
            // A smaller window than the hub's 32 KiB: compressed for it with run lengths
            // only (the narrow wire), which fit any window.
            "server_max_window_bits" => match bits {
                Some(Some(bits)) => {
                    window = bits;
                    (2, true)
                }
                _ => (2, false),
            },
            // Any client window inflates within the hub's 32 KiB.
            "client_max_window_bits" => (3, !matches!(bits, Some(None))),
            _ => return None,
        };
        if !fine || std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(window)
}

/// A compressor of this thread, made on first use at `level`.
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
    /// One compressor per framing thread (the dispatcher) and window (full, narrow),
    /// never per client.
    static COMPRESSORS: RefCell<[Option<Compressor>; 2]> = const { RefCell::new([None, None]) };
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

/// Compresses `payload` as one message without context takeover (with run lengths only
/// if `NARROW`) and, if that is smaller than the payload or `every` message is to be,
/// hands the compressed bytes to `frame` and returns `true`.
fn compressed<const NARROW: bool>(
    compression: &CompressionSettings,
    payload: &[u8],
    every: bool,
    frame: impl FnOnce(&[u8]),
) -> bool {
    let start = Instant::now();
    let done = COMPRESSORS.with(|cell| {
        let mut slots = cell.borrow_mut();
        let compressor = match &mut slots[usize::from(NARROW)] {
            Some(c) if c.level == compression.level => c,
            other => other.insert(Compressor {
                level: compression.level,
                state: compressor(compression.level, NARROW),
                out: Vec::new(),
            }),
        };
        let room = if every {
            bound(payload.len())
        } else {
            // One byte less than the payload: no more is worth sending.
            payload.len().saturating_sub(1)
        };
        let len = compress(&mut compressor.state, payload, room, &mut compressor.out)?;
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

/// The most a message of `len` bytes compresses to, at worst (stored blocks: 5 bytes of
/// header per 64 KiB, and the final empty block of the sync flush).
fn bound(len: usize) -> usize {
    len.saturating_add(5 * (len / 65_535 + 1)).saturating_add(8)
}

/// A raw deflate compressor (negative window bits: no zlib header) at `level` (1..=9);
/// `narrow`: matches of distance 1 only (miniz's RLE strategy), for any window.
fn compressor(level: u8, narrow: bool) -> Box<CompressorOxide> {
    // zlib's strategies: 0 default, 3 run lengths. miniz_oxide 0.9 runs level 1 (one
    // probe, greedy) through its fast path, which ignores the run-length flag and matches
    // anywhere in 32 KiB: the narrow compressor is at level 2 at least, whose path keeps
    // to run lengths (the test below reads the matches back).
    let (level, strategy) = if narrow {
        (level.max(2), 3)
    } else {
        (level, 0)
    };
    let flags = create_comp_flags_from_zip_params(i32::from(level), -15, strategy);
    Box::new(CompressorOxide::new(flags))
}

/// `payload` compressed into `out` as a message of its own (the compressor reset first),
/// ended by a sync flush whose 00 00 ff ff is cut: the length of the message in `out`, or
/// `None` if it would be longer than `room` bytes.
fn compress(
    state: &mut CompressorOxide,
    payload: &[u8],
    room: usize,
    out: &mut Vec<u8>,
) -> Option<usize> {
    state.reset();
    out.clear();
    // Room for the tail too, and one byte more to tell a complete flush.
    out.resize(room.saturating_add(TAIL.len() + 1), 0);
    let result = deflate(state, payload, out, MZFlush::Sync);
    let written = result.bytes_written;
    // Output space left over: the flush is complete.
    let whole = result.status.is_ok()
        && result.bytes_consumed == payload.len()
        && written < out.len()
        && out[..written].ends_with(&TAIL);
    whole
        .then(|| written - TAIL.len())
        .filter(|&len| len <= room)
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
        let mut state = compressor(6, false);
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
        let yes: &[(&str, u8)] = &[
            ("permessage-deflate", 15),
            ("permessage-deflate; client_max_window_bits", 15),
            (
                "Permessage-Deflate ; server_no_context_takeover;client_no_context_takeover",
                15,
            ),
            (
                "permessage-deflate; server_max_window_bits=15; client_max_window_bits=10",
                15,
            ),
            ("permessage-deflate; server_max_window_bits=\"15\"", 15),
            ("x-webkit-deflate-frame, permessage-deflate", 15),
            ("permessage-deflate; server_max_window_bits=10", 10),
            (
                "permessage-deflate; server_max_window_bits=8, permessage-deflate",
                8,
            ),
        ];
        let no: &[&str] = &[
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
        ];
        for &(offer, window) in yes {
            assert_eq!(accepts(&on, [offer.as_bytes()]), Some(window), "{offer}");
            assert_eq!(accepts(&off, [offer.as_bytes()]), None, "{offer}, off");
        }
        for offer in no {
            assert_eq!(accepts(&on, [offer.as_bytes()]), None, "{offer}");
        }
        // Offers in two headers; the first the hub can honour is taken.
        assert_eq!(accepts(&on, [&b"foo"[..], b"permessage-deflate"]), Some(15));
        assert_eq!(
            accepts(
                &on,
                [
                    &b"permessage-deflate; x=1"[..],
                    b"permessage-deflate; server_max_window_bits=9"
                ]
            ),
            Some(9)
        );
        assert_eq!(accepts(&on, [&b"\xff"[..]]), None);
    }

    /// The narrow wire's messages use no match farther back than one byte (run lengths),
    /// so any window inflates them: the blocks are decoded and every distance checked.
    #[test]
    fn the_narrow_wire_compresses_with_run_lengths_only() {
        let s = settings(1);
        // JSON, then a run of spaces: repeats far apart and a run.
        let mut big = json(8000);
        big.extend_from_slice(&[b' '; 192]);
        let mut batch = Batch::with_capacity(16 * 1024);
        batch.push(s.framing, &big, Target::All, None);
        let frames = Wire::WebSocketDeflateNarrow
            .reframe(&s, &batch.take())
            .unwrap();
        let frame = frames.frame(0);
        assert_eq!(frame[0], 0x80 | 0x40 | 1, "FIN, RSV1, text");
        let len = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
        let body = &frame[4..];
        assert_eq!(body.len(), len);
        // Run lengths and Huffman codes: about half of JSON's size.
        assert!(len < big.len() * 6 / 10, "{len} of {}", big.len());
        assert_eq!(inflated(body, 1 << 20).unwrap(), big);
        assert_eq!(farthest_match(body), Some(1));
        // The full wire's matches reach far back: the check sees them.
        let mut batch = Batch::with_capacity(16 * 1024);
        batch.push(s.framing, &big, Target::All, None);
        let full = Wire::WebSocketDeflate.reframe(&s, &batch.take()).unwrap();
        assert!(farthest_match(&full.frame(0)[4..]).unwrap() > 256);
    }

    /// The farthest distance of any match in a raw deflate stream (`None`: no match), read
    /// with a minimal decoder of RFC 1951's blocks.
    fn farthest_match(data: &[u8]) -> Option<u16> {
        struct Bits<'a> {
            data: &'a [u8],
            at: usize,
        }
        impl Bits<'_> {
            fn bit(&mut self) -> u32 {
                let b = u32::from(self.data[self.at / 8] >> (self.at % 8)) & 1;
                self.at += 1;
                b
            }
            fn bits(&mut self, n: u32) -> u32 {
                (0..n).fold(0, |v, i| v | (self.bit() << i))
            }
        }
        /// A canonical Huffman code from code lengths: (count per length, symbols sorted).
        fn code(lengths: &[u8]) -> (Vec<u16>, Vec<u16>) {
            let mut counts = vec![0u16; 16];
            for &l in lengths {
                counts[l as usize] += 1;
            }
            counts[0] = 0;
            let mut symbols: Vec<u16> = (0..lengths.len() as u16)
                .filter(|&s| lengths[s as usize] != 0)
                .collect();
            symbols.sort_by_key(|&s| lengths[s as usize]);
            (counts, symbols)
        }
        fn decode(bits: &mut Bits<'_>, (counts, symbols): &(Vec<u16>, Vec<u16>)) -> u16 {
            let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
            for &count in &counts[1..16] {
                code |= bits.bit() as i32;
                let count = i32::from(count);
                if code - count < first {
                    return symbols[(index + code - first) as usize];
                }
                index += count;
                first = (first + count) << 1;
                code <<= 1;
            }
            panic!("bad code");
        }
        const LEN_EXTRA: [u32; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        const DIST_BASE: [u16; 30] = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
            1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
        ];
        let mut bits = Bits { data, at: 0 };
        let mut farthest = None;
        // The stream ends at a sync flush: stop where the data does.
        while bits.at + 3 <= data.len() * 8 {
            let last = bits.bit();
            let (lit, dist) = match bits.bits(2) {
                0 => {
                    bits.at = bits.at.div_ceil(8) * 8;
                    if bits.at + 32 > data.len() * 8 {
                        // The sync flush's empty block, its length cut with the tail.
                        break;
                    }
                    let len = bits.bits(16) as usize;
                    bits.bits(16);
                    bits.at += 8 * len;
                    if last == 1 {
                        break;
                    }
                    continue;
                }
                1 => {
                    let mut l = vec![8u8; 144];
                    l.extend([9; 112]);
                    l.extend([7; 24]);
                    l.extend([8; 8]);
                    (code(&l), code(&[5; 30]))
                }
                2 => {
                    let (hlit, hdist, hclen) =
                        (bits.bits(5) + 257, bits.bits(5) + 1, bits.bits(4) + 4);
                    const ORDER: [usize; 19] = [
                        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                    ];
                    let mut cl = [0u8; 19];
                    for &i in &ORDER[..hclen as usize] {
                        cl[i] = bits.bits(3) as u8;
                    }
                    let cl = code(&cl);
                    let mut lengths = Vec::new();
                    while lengths.len() < (hlit + hdist) as usize {
                        match decode(&mut bits, &cl) {
                            s @ 0..=15 => lengths.push(s as u8),
                            16 => {
                                let prev = *lengths.last().unwrap();
                                let n = 3 + bits.bits(2);
                                lengths.extend((0..n).map(|_| prev));
                            }
                            17 => lengths.extend((0..3 + bits.bits(3)).map(|_| 0)),
                            _ => lengths.extend((0..11 + bits.bits(7)).map(|_| 0)),
                        }
                    }
                    let (l, d) = lengths.split_at(hlit as usize);
                    (code(l), code(d))
                }
                _ => panic!("reserved block type"),
            };
            loop {
                match decode(&mut bits, &lit) {
                    0..=255 => {}
                    256 => break,
                    s => {
                        // The length's extra bits, then the distance.
                        bits.bits(LEN_EXTRA[usize::from(s - 257)]);
                        let d = usize::from(decode(&mut bits, &dist));
                        let extra = if d < 4 { 0 } else { (d as u32 - 2) / 2 };
                        let distance = DIST_BASE[d] + bits.bits(extra) as u16;
                        farthest = farthest.max(Some(distance));
                    }
                }
            }
            if last == 1 {
                break;
            }
        }
        farthest
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
