//! The one payload format of ordered streams (numbered messages), and how a client frames
//! what it sends.

use std::ops::Range;

use hubcast::{Framing, Hub};

/// The usual length of a [`numbered`] message.
pub(crate) const MSG_LEN: usize = 100;

/// The length of the header of a [`numbered`] message, the shortest one there is.
pub(crate) const NUMBERED_MIN: usize = 12;

/// Message `seq` of stream 0: see [`tagged`].
pub(crate) fn numbered(seq: usize, len: usize) -> Vec<u8> {
    tagged(0, seq, len)
}

/// The one payload format of ordered streams: `s<stream:2>m<seq:8>`, padded with dots to
/// `len` bytes. No newline, so it is one line in every framing; several senders each number
/// their own stream.
pub(crate) fn tagged(stream: usize, seq: usize, len: usize) -> Vec<u8> {
    assert!(
        stream < 100 && seq < 100_000_000,
        "({stream}, {seq}) too large"
    );
    let mut msg = format!("s{stream:02}m{seq:08}").into_bytes();
    assert!(
        len >= msg.len(),
        "{len} bytes is too short for a numbered message"
    );
    msg.resize(len, b'.');
    msg
}

/// The stream and sequence number of `msg`, if it is exactly a message made by
/// [`tagged`] (of whatever length): a torn or corrupt one gives `None`.
pub(crate) fn parse_numbered(msg: &[u8]) -> Option<(usize, usize)> {
    // Compared a block at a time (a memcmp), which stays fast in debug builds.
    const DOTS: [u8; 1024] = [b'.'; 1024];
    let head = msg.get(..NUMBERED_MIN)?;
    let padded = msg[NUMBERED_MIN..]
        .chunks(DOTS.len())
        .all(|chunk| chunk == &DOTS[..chunk.len()]);
    if head[0] != b's' || head[3] != b'm' || !padded {
        return None;
    }
    let number = |digits: &[u8]| -> Option<usize> {
        digits.iter().try_fold(0, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + usize::from(d - b'0'))
        })
    };
    Some((number(&head[1..3])?, number(&head[4..])?))
}

/// The stream and sequence number of `msg`; fails the test if it is not a numbered message.
pub(crate) fn tag_seq_of(msg: &[u8]) -> (usize, usize) {
    parse_numbered(msg)
        .unwrap_or_else(|| panic!("not a numbered message: {:?}", String::from_utf8_lossy(msg)))
}

/// The sequence number of `msg`, a message of stream 0; fails the test otherwise.
pub(crate) fn seq_of(msg: &[u8]) -> usize {
    let (stream, seq) = tag_seq_of(msg);
    assert_eq!(
        stream, 0,
        "message {seq} of stream {stream}, expected stream 0"
    );
    seq
}

/// `payload` framed as a client sends it.
pub(crate) fn frame(framing: Framing, payload: &[u8]) -> Vec<u8> {
    match framing {
        Framing::Lines => {
            let mut out = payload.to_vec();
            out.push(b'\n');
            out
        }
        Framing::LengthPrefixed => {
            let len = u32::try_from(payload.len()).expect("frame length");
            let mut out = len.to_be_bytes().to_vec();
            out.extend_from_slice(payload);
            out
        }
        _ => payload.to_vec(),
    }
}

/// Broadcasts the numbered messages `range`, each `len` bytes.
pub(crate) fn broadcast_numbered(hub: &Hub, range: Range<usize>, len: usize) {
    for i in range {
        hub.broadcast(numbered(i, len)).expect("broadcast");
    }
}
