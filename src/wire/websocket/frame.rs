//! WebSocket frames (RFC 6455 section 5), server side: cutting a client's masked frames into
//! messages and control frames, and encoding the server's unmasked frames.
//!
//! Frames are cut in place from the caller's bytes, as `codec::decode` cuts the other
//! framings: a partial frame stays with the caller, and nothing is allocated for a frame
//! before its header has been checked against the limit. Only a fragmented message is
//! assembled here, in a buffer that is given back as soon as the message is complete.

use std::fmt;
use std::io::Cursor;

use bytes::{BufMut, BytesMut};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The largest payload of a control frame (RFC 6455 section 5.5).
const MAX_CONTROL: usize = 125;

/// The largest close reason: a control payload less the 2-byte code.
const MAX_REASON: usize = MAX_CONTROL - 2;

/// A protocol violation or limit that ends the connection with a close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WsError {
    /// A protocol violation: close with 1002.
    Protocol(&'static str),
    /// A message over max_message: close with 1009.
    TooBig,
    /// A text message or close reason that is not UTF-8: close with 1007.
    InvalidUtf8,
}

impl WsError {
    /// The close code to send the client before closing (RFC 6455 section 7.4.1).
    pub(crate) fn close_code(self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::TooBig => 1009,
            WsError::InvalidUtf8 => 1007,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Protocol(why) => f.write_str(why),
            WsError::TooBig => f.write_str("message over the size limit"),
            WsError::InvalidUtf8 => f.write_str("text that is not UTF-8"),
        }
    }
}

/// What one call to [`Decoder::decode`] took from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    /// A complete data message, unmasked; `text` is validated UTF-8.
    Message {
        /// Sent as text (opcode 1) rather than binary (opcode 2).
        text: bool,
        /// The whole message, all fragments joined.
        payload: &'a [u8],
    },
    /// A ping, whose payload the pong must echo.
    Ping(&'a [u8]),
    /// A pong (its payload means nothing to the server).
    Pong,
    /// A close frame: its code (validated: `CloseCode::is_allowed`, and 1005/1006/1015
    /// never on the wire) and UTF-8 reason; no code if the payload was empty.
    Close {
        /// The close code, `None` if the frame had no payload.
        code: Option<u16>,
        /// Why, as the client put it; empty if it gave no reason.
        reason: &'a str,
    },
    /// Fragments of a data message were taken into the decoder, and the data ends before
    /// the next complete frame: nothing to hand on, but the bytes were used.
    Fragment,
}

/// Inbound frames of one client (RFC 6455, server side: client frames must be masked).
///
/// Holds nothing but a fragmented data message in progress and how much of a text frame
/// still arriving is known to be UTF-8; an idle decoder owns no memory, so idle clients
/// cost nothing here.
#[derive(Default)]
pub(crate) struct Decoder {
    /// The fragmented data message in progress. Boxed so that the many idle clients pay
    /// for a pointer, not for the assembly state.
    message: Option<Box<Assembly>>,
    /// Bytes of the payload of the text frame at the front of the caller's data, not all
    /// of it arrived yet, known to be valid UTF-8 ending on a character boundary; 0 once
    /// the frame is whole.
    checked: usize,
}

/// A fragmented data message being put together.
struct Assembly {
    /// Text (opcode 1) rather than binary.
    text: bool,
    /// Compressed (RSV1 on its first frame): its text is checked once inflated, not here.
    compressed: bool,
    /// The payload of the fragments so far, unmasked.
    payload: Vec<u8>,
    /// How much of `payload` is known to be valid UTF-8 (text only). What follows, at most
    /// 3 bytes, is the start of a character split between fragments.
    valid: usize,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message so far is the client's data: its size, never its bytes.
        let mut d = f.debug_struct("Decoder");
        if let Some(message) = &self.message {
            d.field("text", &message.text)
                .field("assembled", &message.payload.len());
        }
        d.finish()
    }
}

/// A frame whose header was read and checked.
struct Header {
    /// The last frame of its message (always, for a control frame).
    is_final: bool,
    /// Data (text, binary, continuation) or control (close, ping, pong); never reserved.
    opcode: OpCode,
    /// RSV1, the `permessage-deflate` bit: set only where that was negotiated, and only
    /// on the first frame of a data message.
    rsv1: bool,
    /// The client's mask: every client frame has one.
    mask: [u8; 4],
    /// Bytes of the header (2 to 14).
    header_len: usize,
    /// Bytes of the payload.
    payload_len: usize,
}

impl Header {
    /// Reads the header at the front of `data`: `Ok(None)` if it is not complete. Checks
    /// everything a header alone can break, so that a bad frame fails before its payload
    /// arrives (the size limit is the caller's, as it depends on the message so far).
    fn parse(data: &[u8], deflate: bool) -> Result<Option<Header>, WsError> {
        let mut cursor = Cursor::new(data);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            // The only error a header read from memory can have.
            Err(_) => return Err(WsError::Protocol("reserved opcode")),
        };
        if header.rsv2 || header.rsv3 || (header.rsv1 && !deflate) {
            // Only RSV1 ever has a meaning, and only with `permessage-deflate` (RFC 7692).
            return Err(WsError::Protocol("reserved bit set"));
        }
        if header.rsv1
            && matches!(
                header.opcode,
                OpCode::Control(_) | OpCode::Data(Data::Continue)
            )
        {
            // RFC 7692 section 6.1: RSV1 marks a message, on its first frame only.
            return Err(WsError::Protocol("RSV1 on a control or continuation frame"));
        }
        let Some(mask) = header.mask else {
            return Err(WsError::Protocol("unmasked client frame"));
        };
        if len > i64::MAX as u64 {
            return Err(WsError::Protocol("frame length with the high bit set"));
        }
        if let OpCode::Control(_) = header.opcode {
            if !header.is_final {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            if len > MAX_CONTROL as u64 {
                return Err(WsError::Protocol("control frame over 125 bytes"));
            }
        }
        // A length past the address space can never fit any limit.
        let payload_len = usize::try_from(len).map_err(|_| WsError::TooBig)?;
        Ok(Some(Header {
            is_final: header.is_final,
            opcode: header.opcode,
            rsv1: header.rsv1,
            mask,
            // At most 14: the cursor read nothing but the header.
            header_len: cursor.position() as usize,
            payload_len,
        }))
    }

    /// The whole frame's length, or `None` if it overflows (never a frame that fits).
    fn frame_len(&self) -> Option<usize> {
        self.header_len.checked_add(self.payload_len)
    }
}

impl Decoder {
    /// Decodes the frame at the front of `data`.
    ///
    /// `Ok(None)`: the frame is not complete (nothing consumed; the caller keeps `data` and
    /// calls again with more appended). `Ok(Some((inbound, used)))`: `used` bytes were
    /// taken. A data frame that is a fragment (not final) is absorbed into the decoder and
    /// the call continues with the next frame in `data`, so one call returns at most one
    /// [`Inbound`] and `used` may cover several frames; if `data` ends before another
    /// complete frame, the call returns [`Inbound::Fragment`] with the bytes absorbed.
    /// Control frames may come between fragments.
    ///
    /// An unfragmented message's payload (and a control frame's) is unmasked into
    /// `unmasked`, a buffer the caller reuses across clients; it is cleared here first. A
    /// fragmented message is assembled in the decoder and handed over by swapping buffers
    /// with `unmasked`, so the decoder is idle again as soon as the message is returned.
    /// What is returned borrows `unmasked` alone, never the decoder.
    ///
    /// Text is checked as it arrives: invalid UTF-8 fails with the call whose data holds
    /// the first byte that proves it, even in the middle of a frame (Autobahn 6.4.3 and
    /// 6.4.4), not at the end of its frame or message. Each byte of a frame still arriving
    /// is checked once (but a character split between reads, at most 3 bytes, again).
    ///
    /// `max_message` bounds a whole message (all fragments), checked from each frame header
    /// before any payload is looked at; nothing allocated for one message exceeds it.
    ///
    /// # Errors
    ///
    /// A [`WsError`] for anything RFC 6455 says to fail the connection for; its
    /// [`close_code`](WsError::close_code) is the code to close with. The decoder drops any
    /// message in progress and must not be used again.
    #[cfg(test)]
    pub(crate) fn decode<'a>(
        &mut self,
        data: &[u8],
        max_message: usize,
        unmasked: &'a mut Vec<u8>,
    ) -> Result<Option<(Inbound<'a>, usize)>, WsError> {
        self.decode_with(data, max_message, unmasked, false)
    }

    /// [`decode`](Decoder::decode) for a client that negotiated `permessage-deflate` if
    /// `deflate`: RSV1 on the first frame of a data message marks it compressed; once
    /// whole it is inflated (see `wire::deflate::inflate`) and returned as any message,
    /// its text checked once inflated. `max_message` bounds the compressed message and,
    /// while inflating, the inflated one (over it: [`WsError::TooBig`]). Without `deflate`
    /// RSV1 is a protocol error, as it is everywhere on a control or continuation frame.
    pub(crate) fn decode_with<'a>(
        &mut self,
        data: &[u8],
        max_message: usize,
        unmasked: &'a mut Vec<u8>,
        deflate: bool,
    ) -> Result<Option<(Inbound<'a>, usize)>, WsError> {
        let result = self.decode_frames(data, max_message, unmasked, deflate);
        if result.is_err() {
            // The connection is over: give the memory back while it closes.
            self.message = None;
            self.checked = 0;
        }
        result
    }

    /// [`decode`](Decoder::decode), but leaving the decoder as it is on an error.
    fn decode_frames<'a>(
        &mut self,
        data: &[u8],
        max_message: usize,
        unmasked: &'a mut Vec<u8>,
        deflate: bool,
    ) -> Result<Option<(Inbound<'a>, usize)>, WsError> {
        let mut used = 0;
        loop {
            let rest = &data[used..];
            let Some(head) = Header::parse(rest, deflate)? else {
                return Ok(absorbed(used));
            };
            let opcode = match head.opcode {
                OpCode::Data(data) => data,
                OpCode::Control(control) => {
                    let Some(frame) = head.frame_len().and_then(|end| rest.get(..end)) else {
                        return Ok(absorbed(used));
                    };
                    unmask_into(unmasked, &frame[head.header_len..], head.mask);
                    let unmasked: &'a [u8] = unmasked;
                    let inbound = control_frame(control, unmasked)?;
                    return Ok(Some((inbound, used + frame.len())));
                }
            };
            let so_far = match (&self.message, opcode) {
                (None, Data::Continue) => {
                    return Err(WsError::Protocol("continuation frame with no message"));
                }
                (Some(_), Data::Text | Data::Binary) => {
                    return Err(WsError::Protocol("new message inside a fragmented one"));
                }
                (Some(message), _) => message.payload.len(),
                (None, _) => 0,
            };
            // Checked before the payload is waited for, so that an oversized message fails
            // on its header alone.
            if head.payload_len > max_message.saturating_sub(so_far) {
                return Err(WsError::TooBig);
            }
            let Some(frame) = head.frame_len().and_then(|end| rest.get(..end)) else {
                // Compressed text is checked once inflated, not as it arrives.
                let text = match &self.message {
                    Some(message) => message.text && !message.compressed,
                    None => opcode == Data::Text && !head.rsv1,
                };
                if text {
                    let arrived = rest.get(head.header_len..).unwrap_or_default();
                    self.check_arriving(arrived, head.mask, unmasked)?;
                }
                return Ok(absorbed(used));
            };
            // Text checked as the frame arrived: it is not checked again.
            let checked = std::mem::take(&mut self.checked);
            let payload = &frame[head.header_len..];
            used += frame.len();
            match self.message.take() {
                // The usual case, a message in one frame: no assembly, no copy but one.
                None if head.is_final => {
                    unmask_into(unmasked, payload, head.mask);
                    let text = opcode == Data::Text;
                    if head.rsv1 {
                        inflate(unmasked, max_message, text)?;
                    } else if text && std::str::from_utf8(&unmasked[checked..]).is_err() {
                        // A message in one frame carries no character over: `checked` ends
                        // on a character boundary of the payload.
                        return Err(WsError::InvalidUtf8);
                    }
                    let payload: &'a [u8] = unmasked;
                    return Ok(Some((Inbound::Message { text, payload }, used)));
                }
                None => {
                    let mut message = Box::new(Assembly {
                        text: opcode == Data::Text,
                        compressed: head.rsv1,
                        payload: Vec::new(),
                        valid: 0,
                    });
                    message.append(payload, head.mask, max_message, checked);
                    message.check_utf8(false)?;
                    self.message = Some(message);
                }
                Some(mut message) => {
                    message.append(payload, head.mask, max_message, checked);
                    message.check_utf8(head.is_final)?;
                    if head.is_final {
                        // Hand the assembled message over and keep nothing: an idle client
                        // holds no memory. The caller's old buffer is freed with the box.
                        std::mem::swap(unmasked, &mut message.payload);
                        let text = message.text;
                        if message.compressed {
                            inflate(unmasked, max_message, text)?;
                        }
                        let payload: &'a [u8] = unmasked;
                        return Ok(Some((Inbound::Message { text, payload }, used)));
                    }
                    self.message = Some(message);
                }
            }
        }
    }

    /// Checks the part of a text frame that has `arrived` (its payload so far, still
    /// masked) from where the last call stopped, using `scratch` to unmask it: fails at
    /// the first invalid byte rather than when the frame is whole. A character the frame
    /// continues from the message's previous fragment is checked with its start.
    fn check_arriving(
        &mut self,
        arrived: &[u8],
        mask: [u8; 4],
        scratch: &mut Vec<u8>,
    ) -> Result<(), WsError> {
        let start = self.checked;
        if arrived.len() <= start {
            return Ok(());
        }
        let carry = match &self.message {
            Some(message) if start == 0 => &message.payload[message.valid..],
            _ => &[],
        };
        let carried = carry.len();
        scratch.clear();
        // Exactly: `extend` may double, past the message limit (the carry, at most 3
        // bytes, is part of the message so far, so this stays within it).
        scratch.reserve_exact(carried + arrived.len() - start);
        scratch.extend_from_slice(carry);
        scratch.extend_from_slice(&arrived[start..]);
        // The mask repeats every 4 bytes of the payload: line it up with `start`.
        let mask = std::array::from_fn(|i| mask[(start + i) % 4]);
        apply_mask(&mut scratch[carried..], mask);
        self.checked = match std::str::from_utf8(scratch) {
            Ok(_) => arrived.len(),
            // The bytes end inside a character: the rest of the frame may complete it.
            Err(err) if err.error_len().is_none() => (start + err.valid_up_to())
                .saturating_sub(carried)
                .max(start),
            Err(_) => return Err(WsError::InvalidUtf8),
        };
        Ok(())
    }

    /// Whether it holds no partial message, and so no memory.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn is_idle(&self) -> bool {
        self.message.is_none()
    }
}

/// Replaces the compressed message in `buf` with its inflation, within `max_message`
/// bytes, and checks it is UTF-8 if `text`.
#[cfg(feature = "deflate")]
fn inflate(buf: &mut Vec<u8>, max_message: usize, text: bool) -> Result<(), WsError> {
    crate::wire::deflate::inflate(buf, max_message)?;
    if text && std::str::from_utf8(buf).is_err() {
        return Err(WsError::InvalidUtf8);
    }
    Ok(())
}

/// Without the `deflate` feature nothing is negotiated, so no message is compressed.
#[cfg(not(feature = "deflate"))]
fn inflate(_buf: &mut Vec<u8>, _max_message: usize, _text: bool) -> Result<(), WsError> {
    Err(WsError::Protocol("reserved bit set"))
}

/// What to return when `data` ends before a whole frame: nothing if nothing was used,
/// else the fragments absorbed so far.
fn absorbed<'a>(used: usize) -> Option<(Inbound<'a>, usize)> {
    (used > 0).then_some((Inbound::Fragment, used))
}

/// A complete control frame, its payload already unmasked.
fn control_frame(control: Control, payload: &[u8]) -> Result<Inbound<'_>, WsError> {
    match control {
        Control::Ping => Ok(Inbound::Ping(payload)),
        Control::Pong => Ok(Inbound::Pong),
        Control::Close => match payload {
            [] => Ok(Inbound::Close {
                code: None,
                reason: "",
            }),
            [_] => Err(WsError::Protocol("close frame with a 1-byte payload")),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                if !close_code_allowed(code) {
                    return Err(WsError::Protocol("invalid close code"));
                }
                let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
                Ok(Inbound::Close {
                    code: Some(code),
                    reason,
                })
            }
        },
        // Rejected by `FrameHeader::parse` already.
        Control::Reserved(_) => Err(WsError::Protocol("reserved opcode")),
    }
}

/// Whether a client may send `code` in a close frame (RFC 6455 section 7.4).
fn close_code_allowed(code: u16) -> bool {
    // tungstenite maps 1014 (registered with IANA: bad gateway) to `CloseCode::Bad`, so
    // `is_allowed` refuses it; it is as valid as 1012 and 1013.
    code == 1014 || CloseCode::from(code).is_allowed()
}

impl Assembly {
    /// Appends a fragment's payload, unmasked. The caller checked that the message stays
    /// within `max_message`, which bounds the buffer too. `checked`: how much of the
    /// fragment was found valid UTF-8 as it arrived (`Decoder::checked`, with the character
    /// carried over from the fragment before), so [`check_utf8`](Self::check_utf8) starts
    /// after it.
    fn append(&mut self, payload: &[u8], mask: [u8; 4], max_message: usize, checked: usize) {
        let start = self.payload.len();
        let needed = start + payload.len();
        if needed > self.payload.capacity() {
            // Doubling keeps many small fragments linear; the cap keeps the buffer within
            // the limit, which the doubling of `reserve` would not.
            let target = needed.max(self.payload.capacity().saturating_mul(2).min(max_message));
            self.payload.reserve_exact(target - start);
        }
        self.payload.extend_from_slice(payload);
        apply_mask(&mut self.payload[start..], mask);
        if checked > 0 {
            self.valid = start + checked;
        }
    }

    /// Checks the text appended since the last call, so that invalid UTF-8 fails with the
    /// fragment that proves it, not at the end of the message. Each byte is checked once,
    /// but for a character split between fragments (at most 3 bytes, checked again).
    fn check_utf8(&mut self, is_final: bool) -> Result<(), WsError> {
        if !self.text || self.compressed {
            return Ok(());
        }
        match std::str::from_utf8(&self.payload[self.valid..]) {
            Ok(_) => {
                self.valid = self.payload.len();
                Ok(())
            }
            // `error_len() == None`: the bytes end inside a character that the next
            // fragment may complete; unless there is no next fragment.
            Err(err) if err.error_len().is_none() && !is_final => {
                self.valid += err.valid_up_to();
                Ok(())
            }
            Err(_) => Err(WsError::InvalidUtf8),
        }
    }
}

/// Replaces the contents of `out` with `payload` unmasked, allocating no more than that.
fn unmask_into(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    out.clear();
    // Exactly: `reserve` may double, past the message limit.
    out.reserve_exact(payload.len());
    out.extend_from_slice(payload);
    apply_mask(out, mask);
}

/// XORs `buf` with the frame's mask (RFC 6455 section 5.3), `buf` starting at payload
/// offset 0. Eight bytes at a time: the mask repeats every 4 bytes, so a 64-bit word of it
/// lines up with every 8-byte chunk.
fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(bytes) = <[u8; 8]>::try_from(&*chunk) {
            chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
        }
    }
    // The rest starts at a multiple of 8, so at mask offset 0.
    for (byte, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

/// The kind of a frame the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opcode {
    /// A text message: the payload must be UTF-8.
    Text,
    /// A binary message.
    Binary,
    /// A ping; its payload must be at most 125 bytes.
    Ping,
    /// A pong, echoing a ping's payload.
    Pong,
    /// A close frame; its payload comes from [`close_payload`].
    Close,
}

impl Opcode {
    /// The frame a hub message of `kind` goes in: its kind's, if it has one (its sender
    /// made sure a text message is UTF-8: a `String`, or a text frame the decoder checked).
    /// Without one: binary if `binary` (`websocket_binary`) or if it is not UTF-8, else
    /// text, so no text frame carries anything but UTF-8.
    pub(crate) fn for_message(
        payload: &[u8],
        kind: Option<crate::MessageKind>,
        binary: bool,
    ) -> Opcode {
        use crate::MessageKind;
        match kind {
            Some(MessageKind::Text) => Opcode::Text,
            Some(MessageKind::Binary) => Opcode::Binary,
            None if binary || std::str::from_utf8(payload).is_err() => Opcode::Binary,
            None => Opcode::Text,
        }
    }
}

impl From<Opcode> for OpCode {
    fn from(opcode: Opcode) -> OpCode {
        match opcode {
            Opcode::Text => OpCode::Data(Data::Text),
            Opcode::Binary => OpCode::Data(Data::Binary),
            Opcode::Ping => OpCode::Control(Control::Ping),
            Opcode::Pong => OpCode::Control(Control::Pong),
            Opcode::Close => OpCode::Control(Control::Close),
        }
    }
}

/// Appends one unmasked, final server frame: `payload` whole, never fragmented.
///
/// A control frame's payload (ping, pong, close) must be at most 125 bytes; a text frame's
/// must be UTF-8. Neither is checked here: the caller builds them.
pub(crate) fn encode_into(out: &mut BytesMut, opcode: Opcode, payload: &[u8]) {
    encode_frame(out, opcode, false, payload);
}

/// [`encode_into`] with RSV1 set if `rsv1`: a data message whose payload is compressed
/// (`permessage-deflate`).
pub(crate) fn encode_frame(out: &mut BytesMut, opcode: Opcode, rsv1: bool, payload: &[u8]) {
    debug_assert!(
        matches!(opcode, Opcode::Text | Opcode::Binary) || payload.len() <= MAX_CONTROL,
        "control frame payload over 125 bytes"
    );
    let len = payload.len();
    out.reserve(encoded_len(len));
    // FIN set: the server never fragments; RSV1 for a compressed message, no other bit.
    out.put_u8(0x80 | if rsv1 { 0x40 } else { 0 } | u8::from(OpCode::from(opcode)));
    // The shortest length form, as RFC 6455 section 5.2 requires; servers never mask.
    if len <= MAX_CONTROL {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.extend_from_slice(payload);
}

/// The length of the frame [`encode_into`] makes for a payload of `payload_len` bytes.
pub(crate) fn encoded_len(payload_len: usize) -> usize {
    let header = match payload_len {
        0..=MAX_CONTROL => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    payload_len.saturating_add(header)
}

/// The payload of a close frame: the code, then `reason` cut to fit 123 bytes on a char
/// boundary (a control frame carries at most 125).
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::chunk;
    use proptest::prelude::*;

    const FIN: u8 = 0x80;
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame: `first` is the first byte (FIN, RSV, opcode), the header written by
    /// tungstenite's `FrameHeader::format`, the payload masked byte by byte.
    fn frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let header = FrameHeader {
            is_final: first & FIN != 0,
            rsv1: first & 0x40 != 0,
            rsv2: first & 0x20 != 0,
            rsv3: first & 0x10 != 0,
            opcode: OpCode::from(first & 0x0f),
            mask: Some(mask),
        };
        let mut out = Vec::new();
        header.format(payload.len() as u64, &mut out).unwrap();
        out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        out
    }

    /// What a call decoded, owned so that calls can be compared.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Got {
        Message(bool, Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>, String),
    }

    /// Decodes `chunks` as reads would deliver them, keeping a partial frame as the
    /// dispatcher does, and checks the promises every call makes.
    fn decode_chunks(chunks: &[&[u8]], max: usize) -> Result<Vec<Got>, WsError> {
        let mut decoder = Decoder::default();
        let mut unmasked = Vec::new();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            let mut used = 0;
            while let Some((inbound, n)) = decoder.decode(&buf[used..], max, &mut unmasked)? {
                assert!(n > 0 && used + n <= buf.len());
                used += n;
                match inbound {
                    Inbound::Message { text, payload } => {
                        assert!(payload.len() <= max);
                        assert!(decoder.is_idle(), "idle after every message");
                        got.push(Got::Message(text, payload.to_vec()));
                    }
                    Inbound::Ping(payload) => got.push(Got::Ping(payload.to_vec())),
                    Inbound::Pong => got.push(Got::Pong),
                    Inbound::Close { code, reason } => got.push(Got::Close(code, reason.into())),
                    Inbound::Fragment => assert!(!decoder.is_idle()),
                }
                assert!(unmasked.capacity() <= max.max(MAX_CONTROL));
            }
            buf.drain(..used);
        }
        Ok(got)
    }

    /// Decodes `data` delivered in one read.
    fn decode_one(data: &[u8], max: usize) -> Result<Vec<Got>, WsError> {
        decode_chunks(&[data], max)
    }

    /// A text message of `s`.
    fn text(s: &str) -> Got {
        Got::Message(true, s.as_bytes().to_vec())
    }

    #[test]
    fn masked_text_and_binary_messages() {
        let mut wire = frame(FIN | 1, b"hello", MASK);
        wire.extend(frame(FIN | 2, &[0, 1, 2, 255], [9, 8, 7, 6]));
        wire.extend(frame(FIN | 1, b"", MASK));
        wire.extend(frame(FIN | 2, b"", MASK));
        assert_eq!(
            decode_one(&wire, 64).unwrap(),
            vec![
                text("hello"),
                Got::Message(false, vec![0, 1, 2, 255]),
                text(""),
                Got::Message(false, vec![]),
            ]
        );
    }

    #[test]
    fn each_length_form_decodes() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let wire = frame(FIN | 2, &payload, MASK);
            let header = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(wire.len(), header + 4 + len);
            let mut decoder = Decoder::default();
            let mut unmasked = Vec::new();
            let (inbound, used) = decoder.decode(&wire, len, &mut unmasked).unwrap().unwrap();
            assert_eq!(used, wire.len());
            assert_eq!(
                inbound,
                Inbound::Message {
                    text: false,
                    payload: &payload
                }
            );
        }
    }

    #[test]
    fn an_incomplete_frame_consumes_nothing() {
        let wire = frame(FIN | 1, b"hello", MASK);
        for end in 0..wire.len() {
            let (mut decoder, mut unmasked) = (Decoder::default(), Vec::new());
            let result = decoder.decode(&wire[..end], 64, &mut unmasked);
            assert_eq!(result, Ok(None), "{end} bytes");
        }
    }

    #[test]
    fn fragmented_text_split_inside_a_character() {
        // "é" is 2 bytes, "€" 3 and "𝄞" 4: every split below falls inside one.
        let message = "dé€𝄞!";
        let bytes = message.as_bytes();
        let mut wire = frame(1, &bytes[..2], MASK);
        wire.extend(frame(0, &bytes[2..4], [1, 2, 3, 4]));
        wire.extend(frame(0, &bytes[4..7], MASK));
        wire.extend(frame(0, &bytes[7..], MASK));
        wire.extend(frame(FIN, b"", MASK));
        let mut decoder = Decoder::default();
        let mut unmasked = Vec::new();
        let (inbound, used) = decoder.decode(&wire, 64, &mut unmasked).unwrap().unwrap();
        assert_eq!(used, wire.len(), "one call takes every fragment");
        assert_eq!(
            inbound,
            Inbound::Message {
                text: true,
                payload: bytes
            }
        );
        assert!(decoder.is_idle());
    }

    #[test]
    fn control_frames_may_come_between_fragments() {
        let mut wire = frame(2, b"ab", MASK);
        wire.extend(frame(FIN | 9, b"are you there", MASK));
        wire.extend(frame(FIN | 10, b"unsolicited", MASK));
        wire.extend(frame(FIN, b"cd", MASK));
        let mut decoder = Decoder::default();
        let mut unmasked = Vec::new();
        let first = frame(2, b"ab", MASK).len() + frame(FIN | 9, b"are you there", MASK).len();
        let (inbound, used) = decoder.decode(&wire, 64, &mut unmasked).unwrap().unwrap();
        assert_eq!((inbound, used), (Inbound::Ping(b"are you there"), first));
        assert!(!decoder.is_idle(), "the message is still in progress");
        assert_eq!(
            decode_one(&wire, 64).unwrap(),
            vec![
                Got::Ping(b"are you there".to_vec()),
                Got::Pong,
                Got::Message(false, b"abcd".to_vec())
            ]
        );
    }

    #[test]
    fn fragments_before_a_partial_frame_are_taken() {
        let first = frame(1, b"ab", MASK);
        let second = frame(FIN, b"cd", MASK);
        let mut wire = first.clone();
        wire.extend_from_slice(&second[..3]);
        let mut decoder = Decoder::default();
        let mut unmasked = Vec::new();
        let result = decoder.decode(&wire, 64, &mut unmasked).unwrap();
        assert_eq!(result, Some((Inbound::Fragment, first.len())));
        let (inbound, used) = decoder.decode(&second, 64, &mut unmasked).unwrap().unwrap();
        assert_eq!(used, second.len());
        assert_eq!(
            inbound,
            Inbound::Message {
                text: true,
                payload: b"abcd"
            }
        );
        assert!(decoder.is_idle());
    }

    #[test]
    fn protocol_violations_are_rejected() {
        let unmasked_frame = [FIN | 1, 2, b'h', b'i'];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (unmasked_frame.to_vec(), "unmasked"),
            (frame(FIN | 0x40 | 1, b"x", MASK), "rsv1"),
            (frame(FIN | 0x20 | 2, b"x", MASK), "rsv2"),
            (frame(FIN | 0x10 | 9, b"", MASK), "rsv3"),
            (frame(FIN | 9, &[0; 126], MASK), "ping over 125 bytes"),
            (frame(FIN | 8, &[0x03; 126], MASK), "close over 125 bytes"),
            (frame(9, b"", MASK), "fragmented ping"),
            (frame(FIN, b"x", MASK), "continuation with no message"),
            (
                frame(0, b"x", MASK),
                "non-final continuation with no message",
            ),
            (
                [frame(1, b"a", MASK), frame(FIN | 1, b"b", MASK)].concat(),
                "text inside a message",
            ),
            (
                [frame(2, b"a", MASK), frame(2, b"b", MASK)].concat(),
                "binary inside a message",
            ),
            (frame(FIN | 8, &[3], MASK), "1-byte close"),
        ];
        for opcode in (3..=7).chain(11..=15) {
            let wire = frame(FIN | opcode, b"", MASK);
            let result = decode_one(&wire, 64);
            assert!(
                matches!(result, Err(WsError::Protocol(_))),
                "opcode {opcode}"
            );
        }
        for (wire, what) in cases {
            let result = decode_one(&wire, 1024);
            assert!(
                matches!(result, Err(WsError::Protocol(_))),
                "{what}: {result:?}"
            );
        }
    }

    #[test]
    fn a_64_bit_length_with_the_high_bit_set_is_a_protocol_error() {
        let mut wire = vec![FIN | 2, 0x80 | 127];
        wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
        wire.extend_from_slice(&MASK);
        assert!(matches!(
            decode_one(&wire, usize::MAX),
            Err(WsError::Protocol(_))
        ));
    }

    #[test]
    fn too_big_fails_on_the_header_alone() {
        // Headers only: not one payload byte has arrived.
        let header = |first: u8, len: usize| {
            let wire = frame(first, &vec![0; len], MASK);
            wire[..wire.len() - len].to_vec()
        };
        assert_eq!(
            decode_one(&header(FIN | 2, 1001), 1000),
            Err(WsError::TooBig)
        );
        assert_eq!(
            decode_one(&header(FIN | 1, 70000), 1000),
            Err(WsError::TooBig)
        );
        assert_eq!(decode_one(&header(FIN | 2, 1000), 1000), Ok(vec![]));
        let mut wire = frame(2, &[7; 600], MASK);
        wire.extend(header(FIN, 401));
        assert_eq!(decode_one(&wire, 1000), Err(WsError::TooBig));
        let mut wire = frame(2, &[7; 600], MASK);
        wire.extend(frame(FIN, &[7; 400], MASK));
        assert_eq!(
            decode_one(&wire, 1000),
            Ok(vec![Got::Message(false, vec![7; 1000])])
        );
    }

    #[test]
    fn invalid_utf8_fails_with_the_fragment_that_proves_it() {
        assert_eq!(
            decode_one(&frame(FIN | 1, b"ab\xff", MASK), 64),
            Err(WsError::InvalidUtf8)
        );
        // Only the first fragment has arrived; it is already invalid.
        assert_eq!(
            decode_one(&frame(1, b"ok \xc3\x28", MASK), 64),
            Err(WsError::InvalidUtf8)
        );
        // A character split between fragments is not an error until it cannot be finished.
        let wire = frame(1, b"ok \xe2\x82", MASK);
        assert_eq!(decode_one(&wire, 64), Ok(vec![]));
        let wire = [wire, frame(0, b"\x28", MASK)].concat();
        assert_eq!(decode_one(&wire, 64), Err(WsError::InvalidUtf8));
        // The message ends inside a character.
        let wire = [frame(1, b"ok", MASK), frame(FIN, b"\xe2\x82", MASK)].concat();
        assert_eq!(decode_one(&wire, 64), Err(WsError::InvalidUtf8));
        // Binary is anything.
        let wire = [frame(2, b"\xff", MASK), frame(FIN, b"\xfe", MASK)].concat();
        assert_eq!(
            decode_one(&wire, 64),
            Ok(vec![Got::Message(false, vec![0xff, 0xfe])])
        );
    }

    /// How many bytes of `wire`, delivered one at a time, the decoder takes before it
    /// fails; `None` if it never does.
    fn fails_after(wire: &[u8]) -> Option<usize> {
        let chunks: Vec<&[u8]> = wire.chunks(1).collect();
        (1..=wire.len()).find(|&n| decode_chunks(&chunks[..n], 64).is_err())
    }

    #[test]
    fn invalid_utf8_fails_as_it_arrives_inside_a_frame() {
        // Autobahn 6.4.3/6.4.4: the frame is valid so far, then comes the byte that makes
        // it invalid (0x90 cannot follow 0xf4), then the rest, which may never come.
        let payload = [&b"caf\xc3\xa9 "[..], b"\xf4\x90\x80\x80", b" and more"].concat();
        let wire = frame(FIN | 1, &payload, MASK);
        let header = wire.len() - payload.len();
        assert_eq!(fails_after(&wire), Some(header + 8), "at the 0x90");
        // The same in the second fragment, whose character began in the first.
        let first = frame(1, b"ok \xe2\x82", MASK);
        let wire = [first.clone(), frame(FIN, b"\xac fine \x28", MASK)].concat();
        assert_eq!(fails_after(&wire), None, "a euro sign, then ASCII");
        let wire = [first.clone(), frame(FIN, b"\x28 not a euro", MASK)].concat();
        let header = frame(FIN, b"", MASK).len();
        assert_eq!(
            fails_after(&wire),
            Some(first.len() + header + 1),
            "at the 0x28"
        );
        // A character split between reads, and a mask that does not start at offset 0.
        let wire = frame(FIN | 1, "añb€c\u{1F600}".as_bytes(), [1, 2, 3, 4]);
        assert_eq!(fails_after(&wire), None);
        // Binary is never checked.
        assert_eq!(fails_after(&frame(FIN | 2, b"\xff\xfe", MASK)), None);
    }

    #[test]
    fn an_error_gives_the_message_memory_back() {
        let wire = [frame(1, b"abc", MASK), frame(FIN | 0x40, b"d", MASK)].concat();
        let mut decoder = Decoder::default();
        let mut unmasked = Vec::new();
        let result = decoder.decode(&wire, 64, &mut unmasked);
        assert!(matches!(result, Err(WsError::Protocol(_))));
        assert!(decoder.is_idle());
    }

    #[test]
    fn close_frames_and_their_codes() {
        let close = |payload: &[u8]| decode_one(&frame(FIN | 8, payload, MASK), 64);
        assert_eq!(close(b""), Ok(vec![Got::Close(None, String::new())]));
        assert_eq!(
            close(b"\x03\xe8bye"),
            Ok(vec![Got::Close(Some(1000), "bye".into())])
        );
        assert_eq!(close(b"\x03\xe8\xff"), Err(WsError::InvalidUtf8));
        let valid = (1000u16..=1003)
            .chain(1007..=1014)
            .chain([3000, 3999, 4000, 4999]);
        for code in valid {
            assert_eq!(
                close(&code.to_be_bytes()),
                Ok(vec![Got::Close(Some(code), String::new())]),
                "{code}"
            );
        }
        let invalid: [u16; 13] = [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        for code in invalid {
            assert!(
                matches!(close(&code.to_be_bytes()), Err(WsError::Protocol(_))),
                "{code}"
            );
        }
    }

    #[test]
    fn close_codes_for_errors() {
        assert_eq!(WsError::Protocol("x").close_code(), 1002);
        assert_eq!(WsError::TooBig.close_code(), 1009);
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
    }

    #[test]
    fn assembly_stays_within_the_limit() {
        let max = 1000;
        let mut wire = Vec::new();
        for chunk in vec![b'x'; max].chunks(7) {
            wire.extend(frame(0, chunk, MASK));
        }
        wire[0] |= 2;
        wire.extend(frame(FIN, b"", MASK));
        let mut decoder = Decoder::default();
        let mut unmasked = Vec::new();
        let (inbound, _) = decoder.decode(&wire, max, &mut unmasked).unwrap().unwrap();
        assert_eq!(
            inbound,
            Inbound::Message {
                text: false,
                payload: &[b'x'; 1000]
            }
        );
        assert!(unmasked.capacity() <= max);
    }

    #[test]
    fn masking_matches_the_byte_by_byte_definition() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i: u8| i.wrapping_mul(7)).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, MASK);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            assert_eq!(fast, slow, "{len} bytes");
        }
    }

    /// Parses a server frame with tungstenite: header, payload length, payload.
    fn parse_server_frame(wire: &[u8]) -> (FrameHeader, usize, &[u8]) {
        let mut cursor = Cursor::new(wire);
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        let start = cursor.position() as usize;
        (header, start, &wire[start..start + len as usize])
    }

    #[test]
    fn encoded_headers_use_the_shortest_length_form() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let payload = vec![0xa5; len];
            let mut out = BytesMut::new();
            encode_into(&mut out, Opcode::Binary, &payload);
            assert_eq!(out.len(), encoded_len(len));
            assert_eq!(out.len(), header_len + len, "{len} bytes");
            let (header, start, body) = parse_server_frame(&out);
            assert_eq!(start, header_len);
            assert_eq!(body, &payload[..]);
            // Byte for byte what tungstenite would write.
            let expected = FrameHeader {
                opcode: OpCode::Data(Data::Binary),
                ..FrameHeader::default()
            };
            let mut theirs = Vec::new();
            expected.format(len as u64, &mut theirs).unwrap();
            assert_eq!(&out[..header_len], &theirs[..]);
            assert_eq!(header, expected);
        }
    }

    #[test]
    fn every_opcode_round_trips() {
        let opcodes = [
            (Opcode::Text, OpCode::Data(Data::Text)),
            (Opcode::Binary, OpCode::Data(Data::Binary)),
            (Opcode::Ping, OpCode::Control(Control::Ping)),
            (Opcode::Pong, OpCode::Control(Control::Pong)),
            (Opcode::Close, OpCode::Control(Control::Close)),
        ];
        let mut out = BytesMut::new();
        for (opcode, theirs) in opcodes {
            out.clear();
            encode_into(&mut out, opcode, b"12");
            let (header, _, body) = parse_server_frame(&out);
            assert!(header.is_final && header.mask.is_none());
            assert!(!header.rsv1 && !header.rsv2 && !header.rsv3);
            assert_eq!((header.opcode, body), (theirs, &b"12"[..]));
        }
    }

    #[test]
    fn close_payload_cuts_the_reason_on_a_character() {
        assert_eq!(close_payload(1000, ""), vec![0x03, 0xe8]);
        assert_eq!(close_payload(1001, "bye"), b"\x03\xe9bye".to_vec());
        // 62 two-byte characters are 124 bytes: one too many, and byte 123 splits one.
        let reason = "é".repeat(62);
        let payload = close_payload(1009, &reason);
        assert_eq!(payload.len(), 2 + 122);
        assert_eq!(&payload[2..], "é".repeat(61).as_bytes());
        let long = "x".repeat(500);
        assert_eq!(close_payload(4000, &long).len(), MAX_CONTROL);
        // And it decodes as a valid close frame.
        let wire = frame(FIN | 8, &payload, MASK);
        assert_eq!(
            decode_one(&wire, 64),
            Ok(vec![Got::Close(Some(1009), "é".repeat(61))])
        );
    }

    #[test]
    fn an_idle_decoder_is_two_words() {
        // Every WebSocket client carries one (a pointer and a count) and it owns no memory;
        // only a fragmented message costs more.
        assert_eq!(
            std::mem::size_of::<Decoder>(),
            2 * std::mem::size_of::<usize>()
        );
        assert!(Decoder::default().is_idle());
    }

    #[test]
    fn debug_shows_no_payload() {
        let mut decoder = Decoder::default();
        assert_eq!(format!("{decoder:?}"), "Decoder");
        let wire = frame(1, b"secret", MASK);
        decoder.decode(&wire, 64, &mut Vec::new()).unwrap();
        assert_eq!(
            format!("{decoder:?}"),
            "Decoder { text: true, assembled: 6 }"
        );
    }

    /// One frame of a generated stream.
    #[derive(Debug, Clone)]
    enum Part {
        /// A data message: text or not, its payload, where it is cut into fragments, and
        /// after which fragments a ping comes.
        Message(bool, Vec<u8>, Vec<usize>, Vec<bool>),
        Ping(Vec<u8>),
    }

    /// A random message (fragmented at random, pings between fragments) or ping.
    fn part() -> impl Strategy<Value = Part> {
        prop_oneof![
            (
                prop::collection::vec(any::<char>(), 0..24),
                prop::collection::vec(any::<u8>(), 0..64),
                any::<bool>(),
                prop::collection::vec(any::<usize>(), 0..5),
                prop::collection::vec(any::<bool>(), 5),
            )
                .prop_map(|(chars, bytes, is_text, cuts, pings)| {
                    let payload = if is_text {
                        chars.into_iter().collect::<String>().into_bytes()
                    } else {
                        bytes
                    };
                    Part::Message(is_text, payload, cuts, pings)
                }),
            prop::collection::vec(any::<u8>(), 0..=125).prop_map(Part::Ping),
        ]
    }

    /// The wire bytes of `parts`, and what decoding them must give.
    fn wire(parts: &[Part], mask: [u8; 4]) -> (Vec<u8>, Vec<Got>) {
        let (mut wire, mut expected) = (Vec::new(), Vec::new());
        let ping = b"between";
        for part in parts {
            match part {
                Part::Ping(payload) => {
                    wire.extend(frame(FIN | 9, payload, mask));
                    expected.push(Got::Ping(payload.clone()));
                }
                Part::Message(is_text, payload, cuts, pings) => {
                    let fragments = chunk(payload, cuts);
                    let last = fragments.len() - 1;
                    for (i, fragment) in fragments.iter().enumerate() {
                        let opcode = match (i, is_text) {
                            (0, true) => 1,
                            (0, false) => 2,
                            _ => 0,
                        };
                        let fin = if i == last { FIN } else { 0 };
                        wire.extend(frame(fin | opcode, fragment, mask));
                        if i < last && pings[i % pings.len()] {
                            wire.extend(frame(FIN | 9, ping, mask));
                            expected.push(Got::Ping(ping.to_vec()));
                        }
                    }
                    expected.push(Got::Message(*is_text, payload.clone()));
                }
            }
        }
        (wire, expected)
    }

    proptest! {
        /// Text checked as it arrives, then not again: whatever the bytes (mostly UTF-8,
        /// some not), the fragments and the reads, a text message is delivered exactly when
        /// it is valid UTF-8 and fails as `InvalidUtf8` otherwise.
        #[test]
        fn text_is_delivered_exactly_when_it_is_utf8(
            chars in prop::collection::vec(any::<char>(), 0..40),
            flip in prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
            splits in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
            cuts in prop::collection::vec(0usize..400, 0..12),
        ) {
            let mut payload = chars.iter().collect::<String>().into_bytes();
            if let (Some((at, byte)), false) = (flip, payload.is_empty()) {
                let at = at.index(payload.len());
                payload[at] = byte;
            }
            let mut ends: Vec<usize> = splits.iter().map(|s| s.index(payload.len() + 1)).collect();
            ends.push(payload.len());
            ends.sort_unstable();
            ends.dedup();
            let (mut wire, mut start) = (Vec::new(), 0);
            for (i, &end) in ends.iter().enumerate() {
                let opcode = if i == 0 { 1 } else { 0 };
                let fin = if i + 1 == ends.len() { FIN } else { 0 };
                wire.extend(frame(fin | opcode, &payload[start..end], MASK));
                start = end;
            }
            let got = decode_chunks(&chunk(&wire, &cuts), 1024);
            if std::str::from_utf8(&payload).is_ok() {
                prop_assert_eq!(got, Ok(vec![Got::Message(true, payload)]));
            } else {
                prop_assert_eq!(got, Err(WsError::InvalidUtf8));
            }
        }

        #[test]
        fn every_cut_decodes_to_the_same_messages(
            parts in prop::collection::vec(part(), 0..12),
            mask in any::<[u8; 4]>(),
            cuts in prop::collection::vec(any::<usize>(), 0..32),
        ) {
            let (wire, expected) = wire(&parts, mask);
            let whole = decode_one(&wire, 256).unwrap();
            prop_assert_eq!(&whole, &expected);
            let chunked = decode_chunks(&chunk(&wire, &cuts), 256).unwrap();
            prop_assert_eq!(&chunked, &expected);
            let bytewise: Vec<&[u8]> = wire.chunks(1).collect();
            prop_assert_eq!(decode_chunks(&bytewise, 256).unwrap(), expected);
        }

        #[test]
        fn arbitrary_input_never_panics_and_respects_the_limit(
            data in prop::collection::vec(any::<u8>(), 0..512),
            cuts in prop::collection::vec(any::<usize>(), 0..16),
            max in 0usize..300,
        ) {
            // `decode_chunks` asserts the limits; an error is a fine outcome.
            let _ = decode_chunks(&chunk(&data, &cuts), max);
        }
    }
}
