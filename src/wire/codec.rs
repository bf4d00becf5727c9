//! The hub's [`Framing`]s as bytes: encoding one outbound message into the bytes every
//! client is sent, and cutting inbound bytes into frames without allocating for a frame
//! before its size is checked. Pure functions of bytes, at the bottom of the crate: batches
//! (`command`), host calls and the framed wire (`framed`) all frame through them.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::command::{Batch, Frames, Target};
use crate::{Framing, MessageKind};

/// Framing batches is the codec's: `command` holds the buffers, and knows no framing.
impl Batch {
    /// Appends `payload`, framed, for `target`, of `kind`. The caller has checked that it
    /// can be framed ([`encoded_len`]) and that the batch stays under `u32::MAX` bytes.
    pub(crate) fn push(
        &mut self,
        framing: Framing,
        payload: &[u8],
        target: Target,
        kind: Option<MessageKind>,
    ) {
        encode_into(framing, payload, self.buf_mut());
        self.push_end(target, kind);
    }
}

impl Frames {
    /// The payload of frame `i`, framed with `framing`.
    pub(crate) fn payload(&self, i: usize, framing: Framing) -> &[u8] {
        payload_of(framing, self.frame(i))
    }
}

/// Bytes of the length prefix in [`Framing::LengthPrefixed`].
const LEN_PREFIX: usize = 4;

/// An inbound frame broke the limit; the client must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameTooLarge;

/// The size of `payload` once framed, or `None` if it cannot be framed at all.
pub(crate) fn encoded_len(framing: Framing, payload: &[u8]) -> Option<usize> {
    match framing {
        Framing::Lines if payload.last() == Some(&b'\n') => Some(payload.len()),
        _ => encoded_len_of(framing, payload.len()),
    }
}

/// The most bytes a payload of `len` bytes takes once framed, or `None` if it cannot be.
pub(crate) fn encoded_len_of(framing: Framing, len: usize) -> Option<usize> {
    match framing {
        Framing::Lines => len.checked_add(1),
        Framing::LengthPrefixed => {
            u32::try_from(len).ok()?;
            len.checked_add(LEN_PREFIX)
        }
        Framing::Raw => Some(len),
    }
}

/// Appends the framed `payload` to `out`. `payload` must be encodable (see [`encoded_len`]).
pub(crate) fn encode_into(framing: Framing, payload: &[u8], out: &mut BytesMut) {
    match framing {
        Framing::Lines => {
            out.extend_from_slice(payload);
            if payload.last() != Some(&b'\n') {
                out.put_u8(b'\n');
            }
        }
        Framing::LengthPrefixed => {
            // Checked by `encoded_len`, which every caller goes through first.
            let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            out.put_u32(len);
            out.extend_from_slice(payload);
        }
        Framing::Raw => out.extend_from_slice(payload),
    }
}

/// Appends one frame whose payload is `parts`, one after the other (a protocol header and
/// a payload, without joining them first). The total must be encodable.
pub(crate) fn encode_parts_into(framing: Framing, parts: &[&[u8]], out: &mut BytesMut) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if framing == Framing::LengthPrefixed {
        out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    }
    for part in parts {
        out.extend_from_slice(part);
    }
    if framing == Framing::Lines {
        out.put_u8(b'\n');
    }
}

/// The payload of a frame that [`encode_into`] made (the frame's bytes, whole).
pub(crate) fn payload_of(framing: Framing, frame: &[u8]) -> &[u8] {
    match framing {
        Framing::Lines => frame.strip_suffix(b"\n").unwrap_or(frame),
        Framing::LengthPrefixed => frame.get(LEN_PREFIX..).unwrap_or_default(),
        Framing::Raw => frame,
    }
}

/// Encodes `payload` into one exactly-sized, shareable frame.
pub(crate) fn encode(framing: Framing, payload: &[u8], len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(len);
    encode_into(framing, payload, &mut out);
    out.freeze()
}

/// Splits `data` at the given cut points (taken modulo its length), as reads would: the
/// property tests of every wire's decoder feed their input in such chunks.
#[cfg(test)]
pub(crate) fn chunk<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

/// A complete frame at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// Where the payload lies in the buffer.
    pub(crate) payload: Range<usize>,
    /// The frame's length on the wire: how much of the buffer it takes.
    pub(crate) len: usize,
}

/// Finds the next complete frame at the front of `buf`, without copying or allocating.
///
/// `Ok(None)` means more bytes are needed. `scanned` remembers how much of `buf` is known to
/// hold no newline, so a long line arriving in many small reads is scanned once, not once
/// per read; reset it to 0 after taking a frame.
pub(crate) fn decode(
    framing: Framing,
    buf: &[u8],
    max_frame: usize,
    scanned: &mut usize,
) -> Result<Option<Decoded>, FrameTooLarge> {
    match framing {
        Framing::Lines => {
            // The payload may be max_frame bytes plus "\r\n"; look no further than that.
            let limit = buf.len().min(max_frame.saturating_add(2));
            let from = (*scanned).min(limit);
            match buf[from..limit].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let newline = from + i;
                    *scanned = 0;
                    // Every '\r' before it goes: no payload from a line ends in one, since
                    // a line reader would drop it (the same message on every wire).
                    let end = buf[..newline]
                        .iter()
                        .rposition(|&b| b != b'\r')
                        .map_or(0, |i| i + 1);
                    if end > max_frame {
                        return Err(FrameTooLarge);
                    }
                    Ok(Some(Decoded {
                        payload: 0..end,
                        len: newline + 1,
                    }))
                }
                // No newline yet: the line is already too long unless all that is over the
                // limit is a '\r' that a '\n' may still follow.
                None if buf.len() > max_frame
                    && !(buf.len() == max_frame + 1 && buf[max_frame] == b'\r') =>
                {
                    Err(FrameTooLarge)
                }
                None => {
                    *scanned = limit;
                    Ok(None)
                }
            }
        }
        Framing::LengthPrefixed => {
            if buf.len() < LEN_PREFIX {
                return Ok(None);
            }
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len > max_frame {
                return Err(FrameTooLarge);
            }
            if buf.len() - LEN_PREFIX < len {
                return Ok(None);
            }
            Ok(Some(Decoded {
                payload: LEN_PREFIX..LEN_PREFIX + len,
                len: LEN_PREFIX + len,
            }))
        }
        Framing::Raw => {
            if buf.is_empty() {
                return Ok(None);
            }
            let len = buf.len().min(max_frame);
            Ok(Some(Decoded {
                payload: 0..len,
                len,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Framing; 3] = [Framing::Lines, Framing::LengthPrefixed, Framing::Raw];

    fn decode_all(
        framing: Framing,
        chunks: &[&[u8]],
        max: usize,
    ) -> Result<Vec<Bytes>, FrameTooLarge> {
        let mut buf = Vec::new();
        let mut scanned = 0;
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(frame) = decode(framing, &buf, max, &mut scanned)? {
                out.push(Bytes::copy_from_slice(&buf[frame.payload]));
                buf.drain(..frame.len);
            }
        }
        Ok(out)
    }

    fn encode_vec(framing: Framing, payload: &[u8]) -> Vec<u8> {
        let len = encoded_len(framing, payload).unwrap();
        let frame = encode(framing, payload, len);
        assert_eq!(frame.len(), len);
        frame.to_vec()
    }

    #[test]
    fn lines_strip_lf_and_crlf_and_keep_empty_lines() {
        let frames = decode_all(Framing::Lines, &[b"a\r\n\nb\n"], 16).unwrap();
        assert_eq!(frames, vec![&b"a"[..], b"", b"b"]);
        // Every '\r' at the end goes, not only the last: no payload from a line ends in one.
        let frames = decode_all(Framing::Lines, &[b"hi\r\r\n\r\n\rx\r\n"], 16).unwrap();
        assert_eq!(frames, vec![&b"hi"[..], b"", b"\rx"]);
    }

    #[test]
    fn payload_of_undoes_the_framing() {
        for framing in ALL {
            for payload in [&b""[..], b"x", b"two words"] {
                let frame = encode_vec(framing, payload);
                assert_eq!(payload_of(framing, &frame), payload, "{framing:?}");
            }
        }
        // A line that already ended in a newline loses it: it is one line either way.
        assert_eq!(payload_of(Framing::Lines, b"hi\n"), b"hi");
    }

    #[test]
    fn lines_encode_appends_one_newline() {
        assert_eq!(encode_vec(Framing::Lines, b"hi"), b"hi\n");
        assert_eq!(encode_vec(Framing::Lines, b"hi\n"), b"hi\n");
        assert_eq!(encode_vec(Framing::Lines, b""), b"\n");
    }

    #[test]
    fn lines_over_the_limit_fail_before_the_newline_arrives() {
        assert_eq!(
            decode_all(Framing::Lines, &[b"12345"], 4),
            Err(FrameTooLarge)
        );
        assert_eq!(
            decode_all(Framing::Lines, &[b"1234\r\n"], 4).unwrap(),
            vec![&b"1234"[..]]
        );
        assert_eq!(
            decode_all(Framing::Lines, &[b"1234\n"], 4).unwrap(),
            vec![&b"1234"[..]]
        );
        assert_eq!(
            decode_all(Framing::Lines, &[b"12345\n"], 4),
            Err(FrameTooLarge)
        );
        assert_eq!(
            decode_all(Framing::Lines, &[b"1234\r"], 4).unwrap(),
            Vec::<Bytes>::new()
        );
        assert_eq!(
            decode_all(Framing::Lines, &[b"1234\rx"], 4),
            Err(FrameTooLarge)
        );
    }

    #[test]
    fn length_prefix_is_checked_before_the_payload_arrives() {
        let header = (1u32 << 31).to_be_bytes();
        assert_eq!(
            decode_all(Framing::LengthPrefixed, &[&header], 1024),
            Err(FrameTooLarge)
        );
        assert_eq!(encode_vec(Framing::LengthPrefixed, b"ab"), b"\0\0\0\x02ab");
        assert_eq!(
            decode_all(Framing::LengthPrefixed, &[b"\0\0\0\0\0\0\0\x01z"], 1).unwrap(),
            vec![&b""[..], b"z"]
        );
    }

    #[test]
    fn raw_chunks_are_capped_at_max_frame() {
        let frames = decode_all(Framing::Raw, &[b"abcdefg"], 3).unwrap();
        assert_eq!(frames, vec![&b"abc"[..], b"def", b"g"]);
    }

    proptest! {
        #[test]
        fn every_chunking_decodes_to_the_same_frames(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16),
            cuts in prop::collection::vec(any::<usize>(), 0..32),
        ) {
            for framing in ALL {
                // Lines cannot carry a newline inside a payload; raw cannot keep boundaries.
                let payloads: Vec<Vec<u8>> = match framing {
                    Framing::Lines => payloads.iter().map(|p| {
                        let mut p: Vec<u8> = p.iter().copied().filter(|&b| b != b'\n').collect();
                        // The decoder strips every '\r' before '\n'; keep none at the end.
                        while p.last() == Some(&b'\r') { p.pop(); }
                        p
                    }).collect(),
                    _ => payloads.clone(),
                };
                let wire: Vec<u8> = payloads.iter().flat_map(|p| encode_vec(framing, p)).collect();
                let frames = decode_all(framing, &chunk(&wire, &cuts), 64).unwrap();
                if framing == Framing::Raw {
                    let joined: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
                    prop_assert_eq!(joined, wire);
                } else {
                    let got: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
                    prop_assert_eq!(got, payloads);
                }
            }
        }

        #[test]
        fn arbitrary_input_never_panics_and_respects_the_limit(
            data in prop::collection::vec(any::<u8>(), 0..512),
            cuts in prop::collection::vec(any::<usize>(), 0..16),
            max in 1usize..64,
        ) {
            for framing in ALL {
                if let Ok(frames) = decode_all(framing, &chunk(&data, &cuts), max) {
                    prop_assert!(frames.iter().all(|f| f.len() <= max));
                }
            }
        }
    }
}
