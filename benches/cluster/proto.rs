//! What goes over the wire: the benchmark message, and the two protocols subscribers speak
//! (hubcast's length-prefixed frames, and the NATS text protocol), parsed by hand so that
//! both kinds of subscriber cost the load generator the same.
//!
//! Every payload starts with a 16-byte stamp: the sequence number and the send time
//! (`CLOCK_MONOTONIC` ns), two u64 little-endian; filler follows up to `S` bytes. A
//! sequence number holds the publisher's index in its top bits ([`PUB_SHIFT`]), so that
//! with several publishers each subscriber checks every publisher's stream on its own.
//! Sequence numbers with [`SYNC`] set are readiness markers, not measured.

/// Bytes at the start of every payload that subscribers read: sequence and timestamp.
pub(crate) const HEADER: usize = 16;
/// The publisher's index sits above this bit of a sequence number.
pub(crate) const PUB_SHIFT: u32 = 40;
/// Set in the sequence number of a readiness marker; the low bits name the hub that sent
/// it.
pub(crate) const SYNC: u64 = 1 << 63;

/// The sequence number of message `i` of publisher `publisher`.
pub(crate) fn seq_of(publisher: usize, i: u64) -> u64 {
    ((publisher as u64) << PUB_SHIFT) | i
}

/// A filler payload of `size` bytes (at least [`HEADER`]), stamped later.
pub(crate) fn payload(size: usize) -> Vec<u8> {
    vec![b'x'; size.max(HEADER)]
}

/// Writes the stamp of message `seq`, sent at `ts`, at the start of `buf`.
#[inline]
pub(crate) fn stamp(buf: &mut [u8], seq: u64, ts: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&ts.to_le_bytes());
}

/// Reads (sequence, send time) from the start of `p` (at least [`HEADER`] bytes).
#[inline]
pub(crate) fn read_stamp(p: &[u8]) -> (u64, u64) {
    let mut seq = [0; 8];
    let mut ts = [0; 8];
    seq.copy_from_slice(&p[..8]);
    ts.copy_from_slice(&p[8..16]);
    (u64::from_le_bytes(seq), u64::from_le_bytes(ts))
}

/// The protocol a subscriber speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// 4-byte big-endian length, then the payload: hubcast `Framing::LengthPrefixed`.
    Lp,
    /// Core NATS: `MSG <subject> <sid> <#bytes>\r\n<payload>\r\n`, `PING`, `PONG`, `INFO`.
    Nats,
}

/// Control frames that are not benchmark messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctrl {
    /// NATS `PING`: answer `PONG`.
    Ping,
    /// NATS `PONG`: the subscriber's `CONNECT` and `SUB` have been processed.
    Pong,
    /// `INFO`, `+OK`.
    Other,
    /// NATS `-ERR`: reported.
    Error,
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

fn find_crlf(buf: &[u8]) -> Option<usize> {
    let end = buf.len().min(MAX_LINE);
    buf[..end].windows(2).position(|w| w == b"\r\n")
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
    /// Parses the start of `buf`.
    #[inline]
    pub(crate) fn parse(self, buf: &[u8]) -> Parsed {
        match self {
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
        }
    }
}

fn parse_nats(buf: &[u8]) -> Parsed {
    let Some(eol) = find_crlf(buf) else {
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

/// Checks the parsers on every split of sample streams (run by `--self-test`).
pub(crate) fn self_test() {
    let mut p = payload(40);
    stamp(&mut p, seq_of(2, 7), 99);
    let mut lp = (p.len() as u32).to_be_bytes().to_vec();
    lp.extend_from_slice(&p);
    lp.extend_from_slice(&lp.clone());
    let mut nats = b"INFO {\"x\":1}\r\nPONG\r\nMSG bench.x 1 40\r\n".to_vec();
    nats.extend_from_slice(&p);
    nats.extend_from_slice(b"\r\nPING\r\n");
    for (proto, wire, want) in [
        (Proto::Lp, lp, vec!["msg", "msg"]),
        (Proto::Nats, nats, vec!["Other", "Pong", "msg", "Ping"]),
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
                    match proto.parse(&buf[pos..]) {
                        Parsed::Need => break,
                        Parsed::Msg { head, body, tail } => {
                            let (seq, ts) = read_stamp(&buf[pos + head..]);
                            assert_eq!((seq >> PUB_SHIFT, seq & 0xff, ts, body), (2, 7, 99, 40));
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
}
