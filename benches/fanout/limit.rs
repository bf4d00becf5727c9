//! Flood-limit mode (issue 16): a hub's inbound rate limit against one client flooding it
//! while the others chat.
//!
//! The server is `--serve hubcast-limit`: the chat hub of [`crate::relay`]'s
//! `hubcast-relay` (line framing, a host thread draining every event) with a relay
//! (`Relay::Others`, `Relay::All`, or `Relay::Topics` with every client put in one topic
//! by `admit`) and `rate_limit(RateLimit::new().messages(R, B).policy(P))`. In it:
//!
//! - C chatters (default 100), line clients, each sending 10 messages a second of S = 64
//!   bytes on a fixed schedule (staggered evenly, from one sender thread that sleeps until
//!   each message's time and stamps it as it writes it) and reading everyone else's on one
//!   `mio` loop, which checks per sender that nothing is lost or reordered;
//! - in the runs with a flooder, one more line client writing 64 KiB batches of lines as
//!   fast as TCP lets it, for the whole run.
//!
//! Per relay, one run without the flooder (the rate limit set, HoldBack), then one per
//! policy with it, each in a fresh server process, all in the same invocation. Measured:
//! the chatters' latency (from the stamped send time to the read that brought the message
//! to another chatter: p50, p99, max, and p99 with the flooder ÷ p99 without); the
//! flooder's messages a chatter received per second once the burst is spent (after the
//! first second) ÷ the limit; the hub's `rate_held`, `rate_dropped` and `RateLimited`
//! disconnects; how soon the flooder was disconnected; the server's RSS when the flood
//! starts and ends, and its peak in between.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hubcast::{Admit, Hub, RateLimit, RateLimitPolicy, Relay};
use mio::{Events, Interest, Poll, Token};

use crate::hist::Hist;
use crate::proto::{Parsed, Proto, Stamp};
use crate::relay::{watch_events, LinePub, Running};
use crate::server::wait_until;
use crate::sys::{fine_timer_slack, now_ns};
use crate::{lat, Bench, Cost, Sut, System};

/// Payload bytes of every message, chatter's or flooder's (a line is one more).
const SIZE: usize = 64;
/// A message's sequence number is its sender (chatter index, or [`FLOODER`]) shifted by
/// this, plus its number from that sender.
const SENDER_SHIFT: u32 = 24;
const NUMBER_MASK: u64 = (1 << SENDER_SHIFT) - 1;
/// The flooder's sender number.
const FLOODER: u64 = NUMBER_MASK;
/// Time between the connects and the first message.
const START_NS: u64 = 200_000_000;
/// How long the chatters may take, after the run, to receive the last messages.
const DRAIN_NS: u64 = 5_000_000_000;
/// How long one write of a chatter may wait for room in its socket.
const WRITE_NS: u64 = 2_000_000_000;
/// The flooder's writes: this much at a time.
const FLOOD_BATCH: usize = 64 * 1024;

/// What the hub does with a client over its limit (`RateLimitPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    HoldBack,
    Drop,
    Disconnect,
}

impl Policy {
    const ALL: [Policy; 3] = [Policy::HoldBack, Policy::Drop, Policy::Disconnect];

    fn name(self) -> &'static str {
        match self {
            Policy::HoldBack => "HoldBack",
            Policy::Drop => "Drop",
            Policy::Disconnect => "Disconnect",
        }
    }

    fn parse(s: &str) -> Option<Policy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }

    fn hub(self) -> RateLimitPolicy {
        match self {
            Policy::HoldBack => RateLimitPolicy::HoldBack,
            Policy::Drop => RateLimitPolicy::Drop,
            Policy::Disconnect => RateLimitPolicy::Disconnect,
        }
    }
}

/// The hub's relay in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayKind {
    Others,
    All,
    /// `Relay::Topics`, every client in one topic.
    Topics,
}

impl RelayKind {
    const ALL: [RelayKind; 3] = [RelayKind::Others, RelayKind::All, RelayKind::Topics];

    fn name(self) -> &'static str {
        match self {
            RelayKind::Others => "others",
            RelayKind::All => "all",
            RelayKind::Topics => "topics",
        }
    }

    fn parse(s: &str) -> Option<RelayKind> {
        RelayKind::ALL.into_iter().find(|r| r.name() == s)
    }

    fn hub(self) -> Relay {
        match self {
            RelayKind::Others => Relay::Others,
            RelayKind::All => Relay::All,
            RelayKind::Topics => Relay::Topics,
        }
    }
}

/// `--relays others,all,topics`.
pub(crate) fn parse_relays(v: &str) -> Result<Vec<RelayKind>, String> {
    v.split(',')
        .map(|r| RelayKind::parse(r.trim()).ok_or(format!("unknown relay {r:?}")))
        .collect()
}

/// Flood-limit mode's options.
#[derive(Debug, Clone)]
pub(crate) struct LimitOpts {
    /// The limit: messages per second, and the burst.
    pub(crate) rate: f64,
    pub(crate) burst: u64,
    pub(crate) chatters: usize,
    /// Messages per second each chatter sends.
    pub(crate) chat_rate: f64,
    pub(crate) relays: Vec<RelayKind>,
}

impl Default for LimitOpts {
    fn default() -> Self {
        LimitOpts {
            rate: 1000.0,
            burst: 100,
            chatters: 100,
            chat_rate: 10.0,
            relays: vec![RelayKind::Others, RelayKind::Topics],
        }
    }
}

/// What `--serve hubcast-limit` is told: `--limit-rate R --limit-burst B --limit-policy P
/// --limit-relay X`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeLimit {
    rate: f64,
    burst: u64,
    policy: Policy,
    relay: RelayKind,
}

impl ServeLimit {
    /// From the `--serve` command line; what is missing or bad takes the default.
    pub(crate) fn from_args(args: &[String]) -> ServeLimit {
        let opt = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|j| args.get(j + 1))
                .map(String::as_str)
        };
        ServeLimit {
            rate: opt("--limit-rate")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000.0),
            burst: opt("--limit-burst")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100),
            policy: opt("--limit-policy")
                .and_then(Policy::parse)
                .unwrap_or(Policy::HoldBack),
            relay: opt("--limit-relay")
                .and_then(RelayKind::parse)
                .unwrap_or(RelayKind::Others),
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--limit-rate".into(),
            self.rate.to_string(),
            "--limit-burst".into(),
            self.burst.to_string(),
            "--limit-policy".into(),
            self.policy.name().into(),
            "--limit-relay".into(),
            self.relay.name().into(),
        ]
    }
}

/// Starts the `hubcast-limit` server; returns it and its port.
pub(crate) fn start(limit: ServeLimit, max_clients: usize) -> io::Result<(Running, u16)> {
    let mut builder = Hub::builder()
        .relay(limit.relay.hub())
        .max_clients(max_clients)
        .rate_limit(
            RateLimit::new()
                .messages(limit.rate, limit.burst)
                .policy(limit.policy.hub()),
        );
    if limit.relay == RelayKind::Topics {
        // Everyone in one room from the start, so the first messages already reach it.
        builder = builder.admit(|_| Admit::new().topic("room"));
    }
    let hub = Arc::new(builder.bind("127.0.0.1:0").map_err(io::Error::other)?);
    watch_events(&hub)?;
    let port = hub.local_addr().port();
    Ok((Running::Hub(hub), port))
}

/// One run: a relay, with the flooder under a policy or without it.
#[derive(Default)]
struct Run {
    relay: &'static str,
    /// `None`: no flooder.
    policy: Option<Policy>,
    rep: usize,
    /// Chatters' messages received by other chatters, and how many were sent to them.
    delivered: u64,
    expected: u64,
    lost: u64,
    reordered: u64,
    bad: u64,
    p50: u64,
    p99: u64,
    max: u64,
    /// The median over the run's seconds of each second's p99: what a stall of the
    /// machine in one second (another process's) does not move.
    p99_robust: u64,
    /// How late the sender thread wrote messages against their schedule (p99).
    send_late_p99: u64,
    /// The flooder's messages the median chatter received: in all, and per second once
    /// the burst was spent.
    flood_got: u64,
    flood_rate: f64,
    /// Lines the flooder wrote.
    flood_sent: u64,
    /// From the flood's start to its connection's end, if it ended during the flood.
    disconnected_ns: Option<u64>,
    held: u64,
    dropped: u64,
    limited: u64,
    rss_start_kib: u64,
    rss_end_kib: u64,
    rss_peak_kib: u64,
    /// CPU used during the run by the server process, and by its dispatcher thread, in %
    /// of one core.
    cpu_pct: f64,
    disp_pct: f64,
    /// CPU used by other processes meanwhile (the machine's noise), in % of one core.
    foreign_pct: f64,
    notes: Vec<String>,
    error: Option<String>,
}

/// Runs the mode; returns its Markdown.
pub(crate) fn run(bench: &Bench) -> String {
    let opts = &bench.opts;
    let secs = if opts.duration_given {
        opts.duration.max(0.5)
    } else if opts.quick {
        2.0
    } else {
        5.0
    };
    let mut runs = Vec::new();
    for rep in 0..opts.repeat {
        for &relay in &opts.limit.relays {
            for policy in [None].into_iter().chain(Policy::ALL.map(Some)) {
                let mut run = Run {
                    relay: relay.name(),
                    policy,
                    rep,
                    ..Run::default()
                };
                if let Err(e) = one(bench, relay, secs, &mut run) {
                    run.error = Some(e);
                }
                eprintln!("  {}", progress_line(&run));
                runs.push(run);
            }
        }
    }
    render(bench, secs, &runs)
}

fn progress_line(r: &Run) -> String {
    format!(
        "flood-limit relay={} flooder={} rep={}: p50 {} p99 {} max {}; flooder {:.0} msg/s; {}",
        r.relay,
        r.policy.map_or("none", Policy::name),
        r.rep,
        lat(r.p50),
        lat(r.p99),
        lat(r.max),
        r.flood_rate,
        r.error.as_deref().unwrap_or("ok")
    )
}

/// One run in a fresh server process.
fn one(bench: &Bench, relay: RelayKind, secs: f64, run: &mut Run) -> Result<(), String> {
    let opts = &bench.opts;
    let limit = ServeLimit {
        rate: opts.limit.rate,
        burst: opts.limit.burst,
        policy: run.policy.unwrap_or(Policy::HoldBack),
        relay,
    };
    let clients = opts.limit.chatters + 1;
    let mut sut = Sut::start_with(
        System::HubcastLimit,
        (clients + 64).max(1000),
        opts,
        &limit.args(),
    )?;
    let deadline = now_ns() + opts.timeout * 1_000_000_000;
    let result = chat(&mut sut, &opts.limit, secs, run, deadline);
    let result = result.map_err(|e| sut.explain(e));
    sut.stop();
    result
}

/// One chatter's reading side.
struct Chatter {
    stream: mio::net::TcpStream,
    /// The start of a line not yet complete.
    carry: Vec<u8>,
    /// Per sender, the number of the next message expected.
    next: Vec<u64>,
    /// Messages of other chatters received, and how many will be sent to it.
    got: u64,
    expected: u64,
    flood_got: u64,
    /// The flooder's messages received between `steady` and the flood's end.
    flood_steady: u64,
    dead: bool,
}

/// What the flooder thread did.
struct Flooded {
    sent: u64,
    /// When a write failed, and why.
    failed: Option<(u64, String)>,
}

/// Connects the chatters (and the flooder, under a policy), runs the chat for `secs`, and
/// receives until every chatter has every other's messages.
fn chat(
    sut: &mut Sut,
    lim: &LimitOpts,
    secs: f64,
    run: &mut Run,
    deadline: u64,
) -> Result<(), String> {
    let addr = sut.addr();
    let c = lim.chatters;
    let connect = Duration::from_secs(5);
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut chatters = Vec::with_capacity(c);
    let mut writers = Vec::with_capacity(c);
    for i in 0..c {
        let s = TcpStream::connect_timeout(&addr, connect)
            .and_then(|s| s.set_nodelay(true).map(|()| s))
            .map_err(|e| format!("chatter #{i} connect: {e}"))?;
        // The clone writes (the two share O_NONBLOCK: the sender waits for room itself).
        writers.push(s.try_clone().map_err(|e| e.to_string())?);
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut stream = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        chatters.push(Chatter {
            stream,
            carry: Vec::new(),
            next: vec![0; c],
            got: 0,
            expected: 0,
            flood_got: 0,
            flood_steady: 0,
            dead: false,
        });
    }
    let flooder = match run.policy {
        Some(_) => {
            Some(LinePub::connect(addr, connect).map_err(|e| format!("flooder connect: {e}"))?)
        }
        None => None,
    };
    sut.confirm(c + usize::from(flooder.is_some()), deadline)?;

    // The schedule: message g goes from chatter g % c, at t0 + g * interval.
    let total = (secs * c as f64 * lim.chat_rate) as u64;
    let interval = 1e9 / (c as f64 * lim.chat_rate);
    for (i, ch) in chatters.iter_mut().enumerate() {
        let from = |j: usize| total / c as u64 + u64::from((j as u64) < total % c as u64);
        ch.expected = (0..c).filter(|&j| j != i).map(from).sum();
    }
    run.expected = chatters.iter().map(|ch| ch.expected).sum();
    let mut measuring = Some(Bench::measure(sut));
    let start_ns = now_ns();
    let t0 = start_ns + START_NS;
    let end = t0 + (secs * 1e9) as u64;
    // The burst is spent well within the first second at any limit worth measuring.
    let steady = t0 + 1_000_000_000.min((end - t0) / 4);

    let sender = std::thread::Builder::new()
        .name("fanout-chat-send".into())
        .spawn(move || send_chat(writers, total, t0, interval))
        .map_err(|e| e.to_string())?;
    let flood: Option<JoinHandle<Flooded>> = match &flooder {
        Some(lp) => {
            let w = lp.stream().try_clone().map_err(|e| e.to_string())?;
            Some(
                std::thread::Builder::new()
                    .name("fanout-flood".into())
                    .spawn(move || flood(w, t0, end))
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };

    let mut hist = Hist::new();
    // One more per second of the run, by receive time (the drain in the last).
    let mut seconds = vec![Hist::new(); (secs.ceil() as usize).max(1)];
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 256 * 1024];
    let mut cost: Option<(Cost, u64)> = None;
    let mut remaining = chatters.iter().filter(|ch| ch.expected > 0).count();
    let mut errors = Vec::new();
    loop {
        let now = now_ns();
        if now >= end {
            if let Some(m) = measuring.take() {
                cost = Some((m.finish(sut), now_ns()));
            }
        }
        if remaining == 0 && now >= end {
            break;
        }
        if now > end + DRAIN_NS || now > deadline {
            errors.push(format!(
                "{remaining} chatters still missing messages {:.1} s after the run",
                (now.saturating_sub(end)) as f64 / 1e9
            ));
            break;
        }
        match poll.poll(&mut events, Some(Duration::from_millis(10))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        for event in events.iter() {
            let i = event.token().0;
            let ch = &mut chatters[i];
            let was_done = ch.dead || ch.got >= ch.expected;
            let window = (steady, end);
            let hists = (&mut hist, &mut seconds[..], t0);
            if let Err(e) = read_chatter(i, ch, &mut scratch, hists, window, run) {
                ch.dead = true;
                errors.push(e);
            }
            if !was_done && (ch.dead || ch.got >= ch.expected) {
                remaining -= 1;
            }
        }
    }
    // (The loop measured at the run's end unless the deadline came first.)
    let (cost, at) = match (cost, measuring) {
        (Some(c), _) => c,
        (None, Some(m)) => (m.finish(sut), now_ns()),
        (None, None) => unreachable!("measured once"),
    };
    let wall = (at - start_ns) as f64 / 100.0;
    run.cpu_pct = cost.post.cpu_ns.saturating_sub(cost.pre.cpu_ns) as f64 / wall;
    run.disp_pct = cost.disp_ns as f64 / wall;
    run.foreign_pct = cost.foreign_ns as f64 / wall;

    // Both threads are bounded: the sender by its schedule and write timeouts, the flooder
    // by the run's end.
    match sender.join() {
        Ok((late, failures)) => {
            run.send_late_p99 = late.quantile(0.99);
            if failures > 0 {
                errors.push(format!("{failures} chatter writes failed"));
            }
        }
        Err(_) => errors.push("the chat sender panicked".into()),
    }
    if let Some(h) = flood {
        match h.join() {
            Ok(f) => {
                run.flood_sent = f.sent;
                let ended = flooder.as_ref().and_then(LinePub::closed_at);
                let failed = f.failed.as_ref().map(|(t, _)| *t);
                run.disconnected_ns = match (ended, failed) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
                .filter(|&t| t <= end)
                .map(|t| t.saturating_sub(t0));
                if let Some((_, why)) = f.failed {
                    run.notes.push(format!("flooder: {why}"));
                }
            }
            Err(_) => errors.push("the flooder panicked".into()),
        }
    }
    let mut flood_got: Vec<(u64, u64)> = chatters
        .iter()
        .map(|ch| (ch.flood_got, ch.flood_steady))
        .collect();
    flood_got.sort_unstable();
    let (got, in_window) = flood_got[flood_got.len() / 2];
    run.flood_got = got;
    run.flood_rate = in_window as f64 / ((end - steady) as f64 / 1e9);
    run.delivered = chatters.iter().map(|ch| ch.got).sum();
    run.p50 = hist.quantile(0.5);
    run.p99 = hist.quantile(0.99);
    run.max = hist.max();
    let p99s = seconds
        .iter()
        .filter(|h| h.max() > 0)
        .map(|h| h.quantile(0.99) as f64)
        .collect();
    run.p99_robust = median(p99s).unwrap_or(0.0) as u64;
    run.rss_start_kib = cost.pre.rss_kib;
    run.rss_end_kib = cost.post.rss_kib;
    run.rss_peak_kib = cost.post.hwm_kib;
    sut.send("stats")?;
    let stats = sut.wait_line("stats", now_ns() + 2_000_000_000)?;
    let stat = |key: &str| {
        stats
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    run.held = stat("rate_held");
    run.dropped = stat("rate_dropped");
    run.limited = stat("rate_limited");
    let slow = stat("slow");
    if slow > 0 {
        run.notes.push(format!("{slow} slow-consumer disconnects"));
    }
    run.notes.extend(errors);
    // The server closes first (the caller stops it), then the clients.
    drop(flooder);
    Ok(())
}

/// Reads chatter `i` until its socket is empty: every whole line is a message, timed by
/// the read that brought it.
fn read_chatter(
    i: usize,
    ch: &mut Chatter,
    scratch: &mut [u8],
    (hist, seconds, t0): (&mut Hist, &mut [Hist], u64),
    (steady, end): (u64, u64),
    run: &mut Run,
) -> Result<(), String> {
    let line = SIZE + 1;
    let c = ch.next.len() as u64;
    loop {
        let carried = ch.carry.len();
        scratch[..carried].copy_from_slice(&ch.carry);
        let n = match ch.stream.read(&mut scratch[carried..]) {
            Ok(0) => return Err(format!("chatter #{i}: the server closed the connection")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("chatter #{i}: {e}")),
        };
        let now = now_ns();
        let data = &scratch[..carried + n];
        let mut pos = 0;
        while data.len() - pos >= line {
            let stamp = match Proto::Lines.parse(&data[pos..], SIZE) {
                Parsed::Msg { .. } => Stamp::Text.read(&data[pos..], now),
                _ => None,
            };
            let Some((seq, ts)) = stamp else {
                // Not one of ours: skip to the next line.
                run.bad += 1;
                pos = data[pos..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(data.len(), |k| pos + k + 1);
                continue;
            };
            pos += line;
            let (sender, number) = (seq >> SENDER_SHIFT, seq & NUMBER_MASK);
            if sender == FLOODER {
                ch.flood_got += 1;
                if (steady..=end).contains(&now) {
                    ch.flood_steady += 1;
                }
            } else if sender >= c {
                run.bad += 1;
            } else if sender as usize != i {
                // (Under `Relay::All` a chatter also gets its own: not a delivery.)
                let latency = now.saturating_sub(ts);
                hist.record(latency);
                let second = (now.saturating_sub(t0) / 1_000_000_000) as usize;
                seconds[second.min(seconds.len() - 1)].record(latency);
                ch.got += 1;
                let next = &mut ch.next[sender as usize];
                if number == *next {
                    *next += 1;
                } else if number > *next {
                    run.lost += number - *next;
                    *next = number + 1;
                } else {
                    run.reordered += 1;
                }
            }
        }
        ch.carry.clear();
        ch.carry.extend_from_slice(&data[pos..]);
    }
}

/// The chatters' sender: message `g` from chatter `g % c` at `t0 + g * interval`, stamped
/// with the time it is written. Not the scheduled time, as the fixed-rate modes do: a
/// 65-byte write to a chatter's socket does not wait on the hub at these rates (were the
/// hub not reading a chatter, its lines would wait in the socket, and that counts), so
/// the scheduled time would only add this thread's own lateness on a busy machine, which
/// is reported apart. Returns how late the writes were, and how many failed.
fn send_chat(mut writers: Vec<TcpStream>, total: u64, t0: u64, interval: f64) -> (Hist, u64) {
    fine_timer_slack();
    let c = writers.len() as u64;
    let mut late = Hist::new();
    let mut failures = 0;
    let mut buf = Stamp::Text.payload(SIZE);
    buf.push(b'\n');
    for g in 0..total {
        let t = t0 + (g as f64 * interval) as u64;
        wait_until(t);
        let now = now_ns();
        late.record(now - t);
        let (i, number) = (g % c, g / c);
        Stamp::Text.write(&mut buf, (i << SENDER_SHIFT) | number, now);
        if write_line(&mut writers[i as usize], &buf, now_ns() + WRITE_NS).is_err() {
            failures += 1;
        }
    }
    (late, failures)
}

/// Writes `buf` to a non-blocking socket, waiting for room until `limit`.
fn write_line(w: &mut TcpStream, buf: &[u8], limit: u64) -> io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        match w.write(&buf[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => off += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && now_ns() < limit => {
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The flooder: from `t0` to `end`, batches of stamped lines as fast as the socket takes
/// them. A line begun at `end` is finished (briefly: a held-back flooder's socket frees
/// room as the hub reads it at its limit), so the hub never sees half a line.
fn flood(mut w: TcpStream, t0: u64, end: u64) -> Flooded {
    let line = SIZE + 1;
    let per_batch = (FLOOD_BATCH / line).max(1);
    let mut buf = Vec::with_capacity(per_batch * line);
    for _ in 0..per_batch {
        buf.extend_from_slice(&Stamp::Text.payload(SIZE));
        buf.push(b'\n');
    }
    // Short timeouts, so a blocked write notices the end.
    let _ = w.set_write_timeout(Some(Duration::from_millis(20)));
    let mut out = Flooded {
        sent: 0,
        failed: None,
    };
    wait_until(t0);
    let mut number = 0u64;
    'run: loop {
        let ts = now_ns();
        for (j, l) in buf.chunks_mut(line).enumerate() {
            let seq = (FLOODER << SENDER_SHIFT) | ((number + j as u64) & NUMBER_MASK);
            Stamp::Text.write(l, seq, ts);
        }
        let mut off = 0;
        while off < buf.len() {
            let now = now_ns();
            // At the end, finish the line begun and no more.
            let upto = if now >= end {
                off.next_multiple_of(line)
            } else {
                buf.len()
            };
            if upto == off {
                out.sent += (off / line) as u64;
                break 'run;
            }
            if now >= end + WRITE_NS {
                out.failed = Some((now, "could not finish its last line".into()));
                break 'run;
            }
            match w.write(&buf[off..upto]) {
                Ok(0) => {
                    out.failed = Some((now_ns(), "write returned 0".into()));
                    break 'run;
                }
                Ok(k) => off += k,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    out.sent += (off / line) as u64;
                    out.failed = Some((now_ns(), e.to_string()));
                    break 'run;
                }
            }
        }
        if off == buf.len() {
            out.sent += per_batch as u64;
            number += per_batch as u64;
        }
    }
    out
}

/// The mode's Markdown: what ran, then a row per run, then (with repeats) a summary.
fn render(bench: &Bench, secs: f64, runs: &[Run]) -> String {
    let lim = &bench.opts.limit;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Flood-limit: {} chatters, each sending {} messages/s of {SIZE} bytes on a fixed schedule (stamped as written; *sender late*: how far the bench's sender thread ran behind that schedule, a measure of the machine's noise) and reading everyone else's, in a relay-mode hub with `rate_limit(RateLimit::new().messages({}, {}).policy(P))`; with one more client flooding lines as fast as TCP allows for {secs} s, or without it. Latency: write → read by another chatter; *per-second p99*: the median over the run's seconds of each second's p99, which a stall of the machine in one second does not move. Ratios: to the run without the flooder of the same relay and repeat. *flooder relayed*: the flooder's messages the median chatter received per second from {} s into the run to its end (the burst spent), ÷ the limit. RSS: the server process at the flood's start and end (peak between).\n",
        lim.chatters,
        lim.chat_rate,
        lim.rate,
        lim.burst,
        (1.0f64).min(secs / 4.0),
    );
    let _ = writeln!(t, "| relay | flooder | rep | chatter messages received | p50 | p99 | max | p99 ÷ without | per-second p99 | ÷ without | flooder relayed msg/s | ÷ limit | flooder relayed / written | rate_held / rate_dropped / RateLimited | flooder disconnected after | server RSS MiB start → end (peak) | server CPU % (dispatcher) | other processes' CPU % | notes |");
    let _ = writeln!(
        t,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    );
    for r in runs {
        let ratio = |f: fn(&Run) -> u64| match (r.policy, ratio_to_base(runs, r, f)) {
            (None, _) => "1".to_string(),
            (Some(_), Some(x)) => format!("{x:.2}×"),
            _ => "–".into(),
        };
        let (rate, vs, relayed, disconnected) = match r.policy {
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
            Some(p) => (
                format!("{:.0}", r.flood_rate),
                if p == Policy::Disconnect {
                    "–".into()
                } else {
                    format!("{:.3}", r.flood_rate / lim.rate)
                },
                format!("{} / {}", r.flood_got, r.flood_sent),
                r.disconnected_ns.map_or("–".into(), lat),
            ),
        };
        let mut notes = r.notes.clone();
        if r.lost > 0 || r.reordered > 0 || r.bad > 0 {
            notes.push(format!(
                "lost {} reordered {} bad {}",
                r.lost, r.reordered, r.bad
            ));
        }
        notes.push(format!("sender late p99 {}", lat(r.send_late_p99)));
        if let Some(e) = &r.error {
            notes.push(format!("error: {e}"));
        }
        let mib = |k: u64| k as f64 / 1024.0;
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} of {} | {} | {} | {} | {} | {} | {} | {rate} | {vs} | {relayed} | {} / {} / {} | {disconnected} | {:.1} → {:.1} ({:.1}) | {:.0} ({:.0}) | {:.0} | {} |",
            r.relay,
            r.policy.map_or("none", Policy::name),
            r.rep,
            r.delivered,
            r.expected,
            lat(r.p50),
            lat(r.p99),
            lat(r.max),
            ratio(|r| r.p99),
            lat(r.p99_robust),
            ratio(|r| r.p99_robust),
            r.held,
            r.dropped,
            r.limited,
            mib(r.rss_start_kib),
            mib(r.rss_end_kib),
            mib(r.rss_peak_kib),
            r.cpu_pct,
            r.disp_pct,
            r.foreign_pct,
            notes.join("; ")
        );
    }
    if bench.opts.repeat > 1 {
        summary(&mut t, runs, lim.rate);
    }
    t
}

/// A run's figure `f` ÷ that of the run without the flooder of the same relay and repeat.
fn ratio_to_base(runs: &[Run], r: &Run, f: fn(&Run) -> u64) -> Option<f64> {
    let base = runs
        .iter()
        .find(|b| b.policy.is_none() && b.relay == r.relay && b.rep == r.rep)
        .filter(|b| b.error.is_none() && f(b) > 0)?;
    (r.error.is_none()).then(|| f(r) as f64 / f(base) as f64)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 0 => Some((v[mid - 1] + v[mid]) / 2.0),
        _ => Some(v[mid]),
    }
}

/// Over the repeats, per relay and policy: medians of p50, p99 and per-second p99, each
/// p99's median ÷ the median without the flooder (less at the mercy of one noisy
/// baseline than each repeat's ratio, whose range is shown), and the flooder's rate ÷
/// the limit.
fn summary(t: &mut String, runs: &[Run], limit: f64) {
    let _ = writeln!(
        t,
        "\nOver the repeats: medians, ratios of medians (and the range of each repeat's ratio).\n"
    );
    let _ = writeln!(t, "| relay | flooder | runs | p50 | p50 without | p99 | p99 without | p99 ratio | per-second p99 | without | per-second p99 ratio | flooder relayed ÷ limit |");
    let _ = writeln!(t, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut keys: Vec<(&str, Policy)> = Vec::new();
    for r in runs {
        if let Some(p) = r.policy {
            if !keys.contains(&(r.relay, p)) {
                keys.push((r.relay, p));
            }
        }
    }
    let range = |v: &[f64]| {
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max),
        )
    };
    for (relay, policy) in keys {
        let ok =
            |r: &&Run, p: Option<Policy>| r.relay == relay && r.policy == p && r.error.is_none();
        let group: Vec<&Run> = runs.iter().filter(|r| ok(r, Some(policy))).collect();
        let med = |p: Option<Policy>, f: fn(&Run) -> u64| {
            median(
                runs.iter()
                    .filter(|r| ok(r, p))
                    .map(|r| f(r) as f64)
                    .collect(),
            )
            .unwrap_or(0.0)
        };
        let ratio = |f: fn(&Run) -> u64| {
            let ratios: Vec<f64> = group
                .iter()
                .filter_map(|r| ratio_to_base(runs, r, f))
                .collect();
            let base = med(None, f);
            if base > 0.0 && !ratios.is_empty() {
                let (lo, hi) = range(&ratios);
                format!("{:.2}× ({lo:.2}–{hi:.2})", med(Some(policy), f) / base)
            } else {
                "–".into()
            }
        };
        let rates: Vec<f64> = group.iter().map(|r| r.flood_rate / limit).collect();
        let rate = match median(rates.clone()) {
            Some(m) if policy != Policy::Disconnect => {
                let (lo, hi) = range(&rates);
                format!("{m:.3} ({lo:.3}–{hi:.3})")
            }
            _ => "–".into(),
        };
        let _ = writeln!(
            t,
            "| {relay} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {rate} |",
            policy.name(),
            group.len(),
            lat(med(Some(policy), |r| r.p50) as u64),
            lat(med(None, |r| r.p50) as u64),
            lat(med(Some(policy), |r| r.p99) as u64),
            lat(med(None, |r| r.p99) as u64),
            ratio(|r| r.p99),
            lat(med(Some(policy), |r| r.p99_robust) as u64),
            lat(med(None, |r| r.p99_robust) as u64),
            ratio(|r| r.p99_robust),
        );
    }
}
