//! What goes over the wire: the benchmark message and the protocols subscribers speak
//! (length-prefixed frames, newline-delimited lines, NATS text protocol, Redis RESP2
//! pub/sub, WebSocket server frames, and hubcast's sequenced protocol in length-prefixed
//! frames).
//!
//! Every message payload is `S` bytes: a 16-byte stamp holding the sequence number and the
//! send timestamp (`CLOCK_MONOTONIC` ns), then filler. The stamp is binary
//! ([`Stamp::Bin`]: two u64 little-endian) except on line-framed systems, whose payloads
//! must not contain a newline ([`Stamp::Text`]: printable ASCII, 6 bits per byte).

/// Bytes at the start of every payload that subscribers read: sequence and timestamp.
pub(crate) const HEADER: usize = 16;

/// How the sequence number and send time are written at the start of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// Two u64 little-endian: sequence, timestamp.
    Bin,
    /// Line-safe: sequence and timestamp, 48 bits each, as 8 bytes of 6 bits each in
    /// `0x40..=0x7f` (ASCII from `@` to DEL): never `\n` or `\r`, valid UTF-8. The
    /// timestamp is kept modulo 2^48 ns (78 hours) and restored against the receiver's
    /// clock, which is at most that far ahead.
    Text,
    /// [`Stamp::Text`], then JSON-like records rather than one repeated byte, for what
    /// compression makes of real payloads (`--mode ws-deflate`, feature `websocket`).
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    Json,
}

const SIX: u64 = 0x3f3f_3f3f_3f3f_3f3f;
const TEXT_TAG: u64 = 0x4040_4040_4040_4040;
const MASK48: u64 = (1 << 48) - 1;

#[inline]
fn text8(v: u64) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (i, b) in out.iter_mut().enumerate() {
        *b = 0x40 | ((v >> (6 * i)) & 0x3f) as u8;
    }
    out
}

/// The 48-bit value of 8 text-stamp bytes, or `None` if they are not a text stamp.
#[inline]
fn untext8(p: &[u8]) -> Option<u64> {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[..8]);
    let x = u64::from_le_bytes(b);
    if x & !SIX != TEXT_TAG {
        return None;
    }
    // Squeeze the eight 6-bit groups together: 12 bits per 16, 24 per 32, then 48.
    let x = x & SIX;
    let x = (x & 0x003f_003f_003f_003f) | ((x & 0x3f00_3f00_3f00_3f00) >> 2);
    let x = (x & 0x0000_0fff_0000_0fff) | ((x & 0x0fff_0000_0fff_0000) >> 4);
    Some((x & 0x00ff_ffff) | ((x & 0x00ff_ffff_0000_0000) >> 8))
}

impl Stamp {
    /// A filler payload of `size` bytes for this kind of stamp: `x`, or for text stamps
    /// `.`, which no text stamp contains, so a line cut short or run together with the
    /// next shows as a broken stamp.
    pub(crate) fn payload(self, size: usize) -> Vec<u8> {
        let fill = match self {
            Stamp::Bin => b'x',
            Stamp::Text => b'.',
            Stamp::Json => return json_payload(size.max(HEADER)),
        };
        vec![fill; size.max(HEADER)]
    }

    /// Writes message `seq`'s stamp, sent at `ts`, at the start of `buf` (at least
    /// [`HEADER`] bytes).
    #[inline]
    pub(crate) fn write(self, buf: &mut [u8], seq: u64, ts: u64) {
        match self {
            Stamp::Bin => {
                buf[..8].copy_from_slice(&seq.to_le_bytes());
                buf[8..16].copy_from_slice(&ts.to_le_bytes());
            }
            Stamp::Text | Stamp::Json => {
                buf[..8].copy_from_slice(&text8(seq & MASK48));
                buf[8..16].copy_from_slice(&text8(ts & MASK48));
            }
        }
    }

    /// Reads (sequence, send time) from the start of `p` (at least [`HEADER`] bytes),
    /// received at `now`; `None` if `p` does not start with a stamp of this kind.
    #[inline]
    pub(crate) fn read(self, p: &[u8], now: u64) -> Option<(u64, u64)> {
        match self {
            Stamp::Bin => Some(read_header(p)),
            Stamp::Text | Stamp::Json => {
                let seq = untext8(p)?;
                let ts48 = untext8(&p[8..])?;
                // The send time is the latest time at or before `now` that is `ts48`
                // modulo 2^48.
                Some((seq, now.wrapping_sub(now.wrapping_sub(ts48) & MASK48)))
            }
        }
    }
}

/// Writes a binary stamp for message `seq` at the start of `buf` (at least [`HEADER`]).
#[inline]
pub(crate) fn stamp(buf: &mut [u8], seq: u64, ts: u64) {
    Stamp::Bin.write(buf, seq, ts);
}

/// `size` bytes of JSON-like text after the stamp's place: an array of chat-like records
/// with varying ids, users, times and words, as a site pushes to its browsers.
fn json_payload(size: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "hello", "price", "update", "order", "shipped", "the", "market", "closed", "at", "open",
        "new", "message",
    ];
    let mut out = vec![b' '; HEADER];
    out.push(b'[');
    let mut i: u64 = 0;
    while out.len() < size {
        let x = i.wrapping_mul(2_654_435_761) % 1_000_003;
        let record = format!(
            "{{\"id\":{},\"user\":\"user{}\",\"ts\":{},\"price\":{}.{:02},\"text\":\"{} {} {}\"}},",
            100_000 + i * 7,
            x % 97,
            1_733_600_000_000 + x,
            x % 5000,
            x % 100,
            WORDS[(x % 12) as usize],
            WORDS[(x / 12 % 12) as usize],
            WORDS[(x / 144 % 12) as usize],
        );
        out.extend_from_slice(record.as_bytes());
        i += 1;
    }
    out.truncate(size);
    out
}

/// A filler payload of `size` bytes, stamped later.
pub(crate) fn payload(size: usize) -> Vec<u8> {
    Stamp::Bin.payload(size)
}

#[inline]
pub(crate) fn read_header(p: &[u8]) -> (u64, u64) {
    let mut seq = [0; 8];
    let mut ts = [0; 8];
    seq.copy_from_slice(&p[..8]);
    ts.copy_from_slice(&p[8..16]);
    (u64::from_le_bytes(seq), u64::from_le_bytes(ts))
}

/// The protocol a subscriber speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// 4-byte big-endian length, then the payload: hubcast `Framing::LengthPrefixed`, and
    /// the thread-per-client and ceiling baselines, which send the same frames.
    Lp,
    /// The payload, then `\n`: hubcast `Framing::Lines` (the default, and the chat
    /// server's), and the relay baselines. Payloads carry a [`Stamp::Text`] and no newline,
    /// so a message is exactly `S` bytes and a `\n`.
    Lines,
    Nats,
    Redis,
    /// WebSocket (RFC 6455) after the upgrade: unmasked server frames, one binary or text
    /// frame per message (the servers here never fragment), ping answered with pong.
    Ws,
    /// hubcast's `Protocol::Sequenced` (docs/PROTOCOL.md) in length-prefixed frames: data
    /// messages `<seq> <payload>` or `<seq>@<topic> <payload>`, control messages `#...`.
    Seq,
    /// [`Proto::Ws`] with line-safe payloads ([`Stamp::Text`]), as text frames: the
    /// WebSocket clients of `--mode sse`, whose hub frames lines.
    WsText,
    /// Server-sent events after the `200` (`text/event-stream`): each message one event of
    /// one line, `data: <payload>\n\n`, its payload line-safe ([`Stamp::Text`]) and taken to
    /// be `size` bytes, as for [`Proto::Lines`]; other fields (`retry:`, `id:`), comments
    /// and blank lines skipped, `event:` logged.
    Sse,
}

/// Control frames that are not benchmark messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctrl {
    /// NATS `PING`: answer `PONG`.
    Ping,
    /// NATS `PONG`: the subscriber's `CONNECT` and `SUB` have been processed.
    Pong,
    /// Redis `subscribe` confirmation.
    Subscribed,
    /// `INFO`, `+OK` and the like.
    Other,
    /// NATS `-ERR`, Redis `-ERR`, a WebSocket close, hubcast `#noresume`: logged.
    Error,
    /// hubcast `#at * <epoch> <seq>`: the hub-wide stream's epoch, sent on connect.
    At(u64),
}

/// One parse step over the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// More bytes are needed before anything can be decided.
    Need,
    /// A message whose payload starts at `head` (at least [`HEADER`] bytes of it are in the
    /// buffer) and is `body` bytes long, followed by `tail` bytes of framing.
    Msg {
        head: usize,
        body: usize,
        tail: usize,
    },
    /// A complete control frame of `len` bytes.
    Ctrl { len: usize, kind: Ctrl },
    /// Not this protocol: the stream is broken.
    Bad(&'static str),
}

/// The longest protocol line accepted (NATS `INFO` is a few hundred bytes).
const MAX_LINE: usize = 16 * 1024;

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let end = buf.len().min(from + MAX_LINE);
    buf.get(from..end)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

fn parse_usize(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + usize::from(d - b'0'))
    })
}

impl Proto {
    /// What the subscriber sends right after connecting (a WebSocket client sends its
    /// upgrade request, made per connection by [`crate::ws::upgrade_request`]).
    pub(crate) fn hello(self) -> &'static [u8] {
        match self {
            Proto::Lp | Proto::Lines | Proto::Ws | Proto::WsText | Proto::Seq | Proto::Sse => b"",
            Proto::Nats => {
                b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB bench 1\r\nPING\r\n"
            }
            Proto::Redis => b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nbench\r\n",
        }
    }

    /// Whether a subscriber waits for the server before it counts as connected: NATS
    /// `PONG`, Redis `subscribe`, the WebSocket `101`, the event stream's `200`, hubcast's
    /// `#at`.
    pub(crate) fn has_handshake(self) -> bool {
        !matches!(self, Proto::Lp | Proto::Lines)
    }

    /// How this protocol's payloads are stamped.
    pub(crate) fn stamp(self) -> Stamp {
        match self {
            Proto::Lines | Proto::WsText | Proto::Sse => Stamp::Text,
            Proto::Lp | Proto::Nats | Proto::Redis | Proto::Ws | Proto::Seq => Stamp::Bin,
        }
    }

    /// Parses the start of `buf`; `size` is the payload size expected (lines carry no
    /// length, so a line is taken to be `size` bytes and its `\n` checked when in `buf`;
    /// a line of another length then shows as a broken stamp on the next one).
    #[inline]
    pub(crate) fn parse(self, buf: &[u8], size: usize) -> Parsed {
        match self {
            Proto::Lines => {
                if buf.len() < HEADER {
                    return Parsed::Need;
                }
                if buf.len() > size && buf[size] != b'\n' {
                    return Parsed::Bad("line is not S bytes long");
                }
                Parsed::Msg {
                    head: 0,
                    body: size,
                    tail: 1,
                }
            }
            Proto::Lp => {
                if buf.len() < 4 + HEADER {
                    return Parsed::Need;
                }
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if len < HEADER {
                    return Parsed::Bad("length-prefixed frame shorter than the header");
                }
                Parsed::Msg {
                    head: 4,
                    body: len,
                    tail: 0,
                }
            }
            Proto::Nats => parse_nats(buf),
            Proto::Redis => parse_redis(buf),
            Proto::Ws | Proto::WsText => parse_ws(buf),
            Proto::Seq => parse_seq(buf),
            Proto::Sse => parse_sse(buf, size),
        }
    }

    /// Whether this is WebSocket (upgrade first, pings answered).
    pub(crate) fn is_ws(self) -> bool {
        matches!(self, Proto::Ws | Proto::WsText)
    }
}

/// One line of an event stream: a one-line `data:` event of a `size`-byte payload (its end
/// checked when it is in `buf`), or any other line taken whole.
fn parse_sse(buf: &[u8], size: usize) -> Parsed {
    use crate::sse::{DATA, END};
    let Some(&first) = buf.first() else {
        return Parsed::Need;
    };
    if first == b'd' {
        if buf.len() < DATA.len() + HEADER {
            return if DATA.starts_with(&buf[..buf.len().min(DATA.len())]) {
                Parsed::Need
            } else {
                Parsed::Bad("unexpected event-stream line")
            };
        }
        if !buf.starts_with(DATA) {
            return Parsed::Bad("unexpected event-stream line");
        }
        let end = DATA.len() + size;
        // What of the event's end is here must be its end.
        let got = buf
            .get(end..buf.len().min(end + END.len()))
            .unwrap_or_default();
        if got != &END[..got.len()] {
            return Parsed::Bad("event is not `data: `, S bytes and a blank line");
        }
        return Parsed::Msg {
            head: DATA.len(),
            body: size,
            tail: END.len(),
        };
    }
    if first == b'\n' {
        // The blank line that ends an event of other fields (`retry:` here).
        return Parsed::Ctrl {
            len: 1,
            kind: Ctrl::Other,
        };
    }
    let Some(eol) = buf.iter().take(MAX_LINE).position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_LINE {
            Parsed::Bad("event-stream line too long")
        } else {
            Parsed::Need
        };
    };
    let line = &buf[..eol];
    let kind = if line.starts_with(b"event:") {
        // Not sent without `Protocol::Sequenced`: say so.
        Ctrl::Error
    } else if line.starts_with(b":") || line.starts_with(b"retry:") || line.starts_with(b"id:") {
        Ctrl::Other
    } else {
        return Parsed::Bad("unexpected event-stream line");
    };
    Parsed::Ctrl { len: eol + 1, kind }
}

/// One WebSocket frame from a server: 2 bytes, then a 16- or 64-bit length if the 7-bit one
/// says so; never masked. Only the first [`HEADER`] payload bytes of a message are needed;
/// control frames (at most 125 bytes) are taken whole.
fn parse_ws(buf: &[u8]) -> Parsed {
    if buf.len() < 2 {
        return Parsed::Need;
    }
    if buf[1] & 0x80 != 0 {
        return Parsed::Bad("masked WebSocket frame from the server");
    }
    let (head, len) = match buf[1] & 0x7f {
        126 if buf.len() < 4 => return Parsed::Need,
        126 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() < 10 => return Parsed::Need,
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            match usize::try_from(u64::from_be_bytes(b)) {
                Ok(len) => (10, len),
                Err(_) => return Parsed::Bad("WebSocket frame longer than memory"),
            }
        }
        n => (2, usize::from(n)),
    };
    match buf[0] {
        // FIN + text or binary: one whole message.
        0x81 | 0x82 => {
            if len < HEADER {
                return Parsed::Bad("WebSocket message shorter than the header");
            }
            if buf.len() < head + HEADER {
                return Parsed::Need;
            }
            Parsed::Msg {
                head,
                body: len,
                tail: 0,
            }
        }
        0x88..=0x8a if len > 125 => Parsed::Bad("WebSocket control frame over 125 bytes"),
        0x88..=0x8a if buf.len() < head + len => Parsed::Need,
        0x88 => Parsed::Ctrl {
            len: head + len,
            kind: Ctrl::Error,
        },
        0x89 => Parsed::Ctrl {
            len: head + len,
            kind: Ctrl::Ping,
        },
        0x8a => Parsed::Ctrl {
            len: head + len,
            kind: Ctrl::Other,
        },
        _ => Parsed::Bad("fragmented or unknown WebSocket frame"),
    }
}

/// The longest `<seq>@<topic> ` prefix of a sequenced data message: a u64 in decimal, `@`,
/// a topic name of at most 64 bytes (hubcast's default limit), a space.
const SEQ_PREFIX: usize = 20 + 1 + 64 + 1;

/// One length-prefixed frame of hubcast's sequenced protocol: a control message (`#...`,
/// taken whole) or a data message, whose payload starts after the first space.
fn parse_seq(buf: &[u8]) -> Parsed {
    if buf.len() < 5 {
        return Parsed::Need;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Parsed::Bad("empty sequenced frame");
    }
    if buf[4] == b'#' {
        if len > MAX_LINE {
            return Parsed::Bad("control message too long");
        }
        if buf.len() < 4 + len {
            return Parsed::Need;
        }
        let text = &buf[4..4 + len];
        let kind = if let Some(rest) = text.strip_prefix(b"#at * ") {
            match rest.split(|&b| b == b' ').next().and_then(parse_u64) {
                Some(epoch) => Ctrl::At(epoch),
                None => return Parsed::Bad("bad #at message"),
            }
        } else if text.starts_with(b"#noresume")
            || text.starts_with(b"#refused")
            || text.starts_with(b"#error")
        {
            Ctrl::Error
        } else {
            Ctrl::Other
        };
        return Parsed::Ctrl { len: 4 + len, kind };
    }
    let window = &buf[4..buf.len().min(4 + len.min(SEQ_PREFIX))];
    let Some(sp) = window.iter().position(|&b| b == b' ') else {
        return if window.len() < len.min(SEQ_PREFIX) {
            Parsed::Need
        } else {
            Parsed::Bad("sequenced data message without a `<seq> ` prefix")
        };
    };
    let seq_end = window[..sp].iter().position(|&b| b == b'@').unwrap_or(sp);
    if parse_u64(&window[..seq_end]).is_none() {
        return Parsed::Bad("sequenced data message without a number");
    }
    let body = len - sp - 1;
    if body < HEADER {
        return Parsed::Bad("sequenced message shorter than the header");
    }
    if buf.len() < 4 + sp + 1 + HEADER {
        return Parsed::Need;
    }
    Parsed::Msg {
        head: 4 + sp + 1,
        body,
        tail: 0,
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit()
            .then(|| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

fn parse_nats(buf: &[u8]) -> Parsed {
    let Some(eol) = find_crlf(buf, 0) else {
        return if buf.len() >= MAX_LINE {
            Parsed::Bad("NATS line too long")
        } else {
            Parsed::Need
        };
    };
    let line = &buf[..eol];
    let len = eol + 2;
    if let Some(args) = line.strip_prefix(b"MSG ") {
        // MSG <subject> <sid> [reply-to] <#bytes>
        let Some(size) = args.rsplit(|&b| b == b' ').next().and_then(parse_usize) else {
            return Parsed::Bad("bad NATS MSG line");
        };
        if size < HEADER {
            return Parsed::Bad("NATS message shorter than the header");
        }
        if buf.len() < len + HEADER {
            return Parsed::Need;
        }
        return Parsed::Msg {
            head: len,
            body: size,
            tail: 2,
        };
    }
    let kind = if line == b"PING" {
        Ctrl::Ping
    } else if line == b"PONG" {
        Ctrl::Pong
    } else if line.starts_with(b"-ERR") {
        Ctrl::Error
    } else if line.starts_with(b"INFO") || line.starts_with(b"+OK") {
        Ctrl::Other
    } else {
        return Parsed::Bad("unexpected NATS line");
    };
    Parsed::Ctrl { len, kind }
}

/// Parses one RESP2 bulk string starting at `pos`; returns (content start, content length,
/// position after its trailing CRLF), `Err(None)` if incomplete.
fn redis_bulk(buf: &[u8], pos: usize) -> Result<(usize, usize, usize), Option<&'static str>> {
    let eol = find_crlf(buf, pos).ok_or(None)?;
    let line = &buf[pos..eol];
    let size = line
        .strip_prefix(b"$")
        .and_then(parse_usize)
        .ok_or(Some("expected a RESP bulk string"))?;
    Ok((eol + 2, size, eol + 2 + size + 2))
}

fn parse_redis(buf: &[u8]) -> Parsed {
    let Some(eol) = find_crlf(buf, 0) else {
        return if buf.len() >= MAX_LINE {
            Parsed::Bad("RESP line too long")
        } else {
            Parsed::Need
        };
    };
    let line = &buf[..eol];
    if line.starts_with(b"-") {
        return Parsed::Ctrl {
            len: eol + 2,
            kind: Ctrl::Error,
        };
    }
    if line != b"*3" {
        return Parsed::Bad("expected a 3-element RESP push");
    }
    // ["message" | "subscribe", channel, payload | count]
    let (kind_at, kind_len, pos) = match redis_bulk(buf, eol + 2) {
        Ok(v) => v,
        Err(None) => return Parsed::Need,
        Err(Some(e)) => return Parsed::Bad(e),
    };
    if buf.len() < pos {
        return Parsed::Need;
    }
    let kind = &buf[kind_at..kind_at + kind_len];
    let pos = match redis_bulk(buf, pos) {
        Ok((_, _, next)) if buf.len() >= next => next,
        Ok(_) | Err(None) => return Parsed::Need,
        Err(Some(e)) => return Parsed::Bad(e),
    };
    match kind {
        b"message" => match redis_bulk(buf, pos) {
            Ok((at, size, _)) => {
                if size < HEADER {
                    return Parsed::Bad("Redis message shorter than the header");
                }
                if buf.len() < at + HEADER {
                    return Parsed::Need;
                }
                Parsed::Msg {
                    head: at,
                    body: size,
                    tail: 2,
                }
            }
            Err(None) => Parsed::Need,
            Err(Some(e)) => Parsed::Bad(e),
        },
        b"subscribe" => match find_crlf(buf, pos) {
            Some(end) if buf[pos] == b':' => Parsed::Ctrl {
                len: end + 2,
                kind: Ctrl::Subscribed,
            },
            Some(_) => Parsed::Bad("bad subscribe confirmation"),
            None => Parsed::Need,
        },
        _ => Parsed::Bad("unexpected RESP push"),
    }
}

/// Checks the stamps, and the parsers on every split of sample streams (run by
/// `--self-test`).
pub(crate) fn self_test() {
    // Text stamps: round trips, no newline, wrap-around of the 48-bit clock.
    let now = 5u64 << 48 | 12_345;
    for (seq, ts) in [
        (0, now),
        (7, now - 1),
        (MASK48, now - 12_346),
        (123_456_789, now - 3_000_000_000),
    ] {
        let mut p = Stamp::Text.payload(16);
        Stamp::Text.write(&mut p, seq, ts);
        assert!(!p.contains(&b'\n') && !p.contains(&b'\r') && p.is_ascii());
        assert_eq!(Stamp::Text.read(&p, now), Some((seq, ts)), "text stamp");
    }
    assert_eq!(
        Stamp::Text.read(&Stamp::Text.payload(16), now),
        None,
        "filler is no stamp"
    );

    let mut p = payload(40);
    stamp(&mut p, 7, 99);
    let mut lp = (p.len() as u32).to_be_bytes().to_vec();
    lp.extend_from_slice(&p);
    let mut nats = b"INFO {\"x\":1}\r\nPONG\r\nMSG bench 1 40\r\n".to_vec();
    nats.extend_from_slice(&p);
    nats.extend_from_slice(b"\r\nPING\r\n");
    let mut redis = b"*3\r\n$9\r\nsubscribe\r\n$5\r\nbench\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n$40\r\n".to_vec();
    redis.extend_from_slice(&p);
    redis.extend_from_slice(b"\r\n");
    // WebSocket: a ping (answered), a 7-bit and a 16-bit length, a pong.
    let mut ws = vec![0x89, 2, b'h', b'i', 0x82, 40];
    ws.extend_from_slice(&p);
    let mut p200 = payload(200);
    stamp(&mut p200, 7, 99);
    ws.extend_from_slice(&[0x82, 126, 0, 200]);
    ws.extend_from_slice(&p200);
    ws.extend_from_slice(&[0x8a, 0]);
    // Sequenced: `#at`, a hub-wide message, a topic message, `#resumed`.
    let mut seq = Vec::new();
    for frame in [
        b"#at * 123 0".to_vec(),
        [b"17 ".as_slice(), &p].concat(),
        [b"3@t9 ".as_slice(), &p].concat(),
        b"#resumed * 123 1 0".to_vec(),
    ] {
        seq.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        seq.extend_from_slice(&frame);
    }
    let mut line = Stamp::Text.payload(40);
    Stamp::Text.write(&mut line, 7, 99);
    let mut lines = line.clone();
    lines.push(b'\n');
    lines.extend_from_slice(&line);
    lines.push(b'\n');
    // Event stream: hubcast's `retry:` event, a heartbeat comment, two events.
    let mut sse = b"retry: 2000\n\n:\n\n".to_vec();
    for _ in 0..2 {
        sse.extend_from_slice(b"data: ");
        sse.extend_from_slice(&line);
        sse.extend_from_slice(b"\n\n");
    }
    // WebSocket text frames of line-safe payloads.
    let mut ws_text = vec![0x81, 40];
    ws_text.extend_from_slice(&line);
    for (proto, wire, want) in [
        (Proto::Lp, lp, vec!["msg"]),
        (Proto::Lines, lines, vec!["msg", "msg"]),
        (Proto::Nats, nats, vec!["Other", "Pong", "msg", "Ping"]),
        (Proto::Redis, redis, vec!["Subscribed", "msg"]),
        (Proto::Ws, ws, vec!["Ping", "msg", "msg", "Other"]),
        (Proto::Seq, seq, vec!["At(123)", "msg", "msg", "Other"]),
        (
            Proto::Sse,
            sse,
            vec!["Other", "Other", "Other", "Other", "msg", "msg"],
        ),
        (Proto::WsText, ws_text, vec!["msg"]),
    ] {
        // Feed the stream as a subscriber does: parse what is there, keep the rest.
        for cut in 0..wire.len() {
            let mut got = Vec::new();
            let mut buf = Vec::new();
            let mut skip = 0;
            for chunk in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(chunk);
                let mut pos = skip.min(buf.len());
                skip -= pos;
                loop {
                    match proto.parse(&buf[pos..], 40) {
                        Parsed::Need => break,
                        Parsed::Msg { head, body, tail } => {
                            let (seq, ts) = proto
                                .stamp()
                                .read(&buf[pos + head..], 1000)
                                .expect("a stamp");
                            assert_eq!((seq, ts), (7, 99));
                            assert!(body == 40 || body == 200, "{proto:?}: body {body}");
                            got.push("msg".to_string());
                            let total = head + body + tail;
                            let avail = buf.len() - pos;
                            if total <= avail {
                                pos += total;
                            } else {
                                skip = total - avail;
                                pos = buf.len();
                            }
                        }
                        Parsed::Ctrl { len, kind } => {
                            got.push(format!("{kind:?}"));
                            pos += len;
                        }
                        Parsed::Bad(e) => panic!("{proto:?} cut {cut}: {e}"),
                    }
                }
                buf.drain(..pos);
            }
            assert_eq!(got, want, "{proto:?} cut at {cut}");
            assert!(buf.is_empty() && skip == 0);
        }
    }
    // A line of the wrong length is caught: by its newline, or by the next stamp.
    let mut short = line[..39].to_vec();
    short.push(b'\n');
    short.extend_from_slice(&line);
    assert!(matches!(Proto::Lines.parse(&short, 40), Parsed::Bad(_)));
    // So is an event of the wrong length, and a line that is no field.
    let mut event = b"data: ".to_vec();
    event.extend_from_slice(&line[..39]);
    event.extend_from_slice(b"\n\ndata: ");
    assert!(matches!(Proto::Sse.parse(&event, 40), Parsed::Bad(_)));
    assert!(matches!(Proto::Sse.parse(b"oops\n", 40), Parsed::Bad(_)));
    assert!(matches!(Proto::Sse.parse(b"dat", 40), Parsed::Need));
    assert!(matches!(
        Proto::Sse.parse(b"event: x\n", 40),
        Parsed::Ctrl {
            len: 9,
            kind: Ctrl::Error
        }
    ));
    assert!(Stamp::Text.read(&line[1..], 1000).is_none());
}
