//! Replay modes, on `hubcast-seq` (the `hubcast` hub with `Protocol::Sequenced`):
//!
//! - `resume`: the host broadcasts M = 1,000 messages of S bytes before any client is
//!   there, so they are only in the hub-wide stream's replay ring (`replay_messages(1000)`);
//!   then N = 1,000 clients connect, each reads `#at * <epoch> <seq>`, and all send
//!   `#resume * <epoch> 0` at once. Measured: the time from the first request written to
//!   the last replayed message received by the last client (each client checks it got
//!   messages 0..M exactly once, in order), the server's peak RSS meanwhile, and the RSS
//!   the full ring added before anyone connected.
//! - `rings`: N = 100 clients, each alone in its own topic; the host publishes M = 1,000
//!   messages of S bytes to every topic, and the clients read them all. The server's RSS
//!   growth over that, with rings of 1,000 messages against the same run without rings
//!   (`replay_messages(0)`, another process), divided by the topics, is the memory of one
//!   stream's full ring.

use std::fmt::Write as _;
use std::time::Duration;

use crate::gen::{End, Gen};
use crate::proto::Proto;
use crate::server::Job;
use crate::sys::{now_ns, reset_peak_rss};
use crate::{join_notes, lat, si, status, Bench, Mode, Row, Sut, System};

/// Messages in each ring, and replayed to each client.
const MESSAGES: u64 = 1000;

/// Time for the server's memory to settle before a sample (freed pages, lazy threads).
const SETTLE: Duration = Duration::from_millis(300);

/// One length-prefixed frame holding `text`.
fn frame(text: &str) -> Vec<u8> {
    let mut f = (text.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(text.as_bytes());
    f
}

/// The `--serve hubcast-seq` arguments for rings of `messages` of `size` bytes: the byte
/// bound is set well above what they take, so the count is what limits the ring.
fn ring_args(messages: u64, size: usize) -> Vec<String> {
    vec![
        "--replay-messages".into(),
        messages.to_string(),
        "--replay-bytes".into(),
        (messages.max(1) as usize * (size + 128)).to_string(),
    ]
}

/// What one sequenced message takes on the wire besides its payload: the 4-byte length and
/// a `<seq> ` prefix of about 4 digits (`<seq>@tN ` for topics).
fn framing(topic: bool) -> usize {
    4 + 5 + if topic { 4 } else { 0 }
}

/// `--mode resume`: `n` clients resume `MESSAGES` messages of `s` bytes each.
pub(crate) fn resume(
    bench: &mut Bench,
    n: usize,
    s: usize,
    row: &mut Row,
    deadline: u64,
) -> Result<(), String> {
    let opts = &bench.opts;
    let mut sut = Sut::start_with(
        System::HubcastSeq,
        (n + 64).max(1000),
        opts,
        &ring_args(MESSAGES, s),
    )?;
    let result = (|| {
        let timeout = Duration::from_secs(opts.timeout);
        let progress = opts.progress * 1_000_000_000;
        std::thread::sleep(SETTLE);
        let idle = sut.sample();
        // Before any client: the messages go to the ring only.
        let mut notes = Vec::new();
        sut.publish(
            Job {
                start: 0,
                count: MESSAGES,
                size: s,
                rate: 0.0,
            },
            0,
            timeout,
        )?;
        sut.finish_publish(true, &mut notes);
        std::thread::sleep(SETTLE);
        let filled = sut.sample();
        row.ring_bytes = (filled.rss_kib as f64 - idle.rss_kib as f64) * 1024.0;
        row.ring_ideal_bytes = (MESSAGES as usize * (s + framing(false))) as f64;

        let mut gen = Gen::new(Proto::Seq, sut.addr(), n, 0).map_err(|e| e.to_string())?;
        let t = now_ns();
        gen.connect_all(deadline)?;
        sut.confirm(n, deadline)?;
        row.connect_s = (now_ns() - t) as f64 / 1e9;
        let epoch = gen.epoch().ok_or("no `#at` from the hub")?;
        let request = frame(&format!("#resume * {epoch} 0"));
        reset_peak_rss(sut.pid);
        let before = sut.sample();
        let t0 = now_ns();
        gen.send_all(&request)?;
        let round = gen.run_round(0, MESSAGES, s, deadline, progress);
        let after = sut.sample();
        row.m = MESSAGES;
        row.deliveries = round.delivered;
        row.secs = round.t_last.saturating_sub(t0) as f64 / 1e9;
        if row.secs > 0.0 {
            row.dps = round.delivered as f64 / row.secs;
            row.mbps = round.delivered as f64 * s as f64 / row.secs / 1e6;
            row.gen_cpu_pct = round.gen_cpu_ns as f64 / 1e9 / row.secs * 100.0;
        }
        row.lost = round.lost;
        row.reordered = round.reordered;
        row.bad = round.bad_size;
        row.died = round.died;
        row.peak_rss_kib = after.hwm_kib;
        row.rss_base_kib = before.rss_kib;
        row.cpu_s = after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e9;
        row.status = status(&round.end);
        let exact = row.deliveries == n as u64 * MESSAGES;
        if row.status == "ok" && (!exact || row.lost > 0 || row.reordered > 0 || row.bad > 0) {
            if !exact {
                notes.push(format!(
                    "delivered {} of {}",
                    row.deliveries,
                    n as u64 * MESSAGES
                ));
            }
            row.status = "lossy".into();
        }
        row.note = join_notes(&notes, &round.errors, &replay_stats(&mut sut));
        gen.close();
        Ok(())
    })();
    let result = result.map_err(|e| sut.explain(e));
    sut.stop();
    result
}

/// The hub's resume counters, from its `stats` line.
fn replay_stats(sut: &mut Sut) -> String {
    if sut.send("stats").is_err() {
        return String::new();
    }
    match sut.wait_line("stats", now_ns() + 2_000_000_000) {
        Ok(line) => line
            .split_whitespace()
            .filter(|kv| {
                [
                    "resumes=",
                    "resumes_refused=",
                    "replayed=",
                    "slow=",
                    "dropped=",
                ]
                .iter()
                .any(|k| kv.starts_with(k))
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => e,
    }
}

/// One `rings` run: `topics` clients alone in a topic each, `MESSAGES` messages of `s`
/// bytes to every topic, read by the clients; rings of `ring` messages. Returns the RSS
/// growth over the publishing in KiB, and notes.
fn ring_run(
    bench: &Bench,
    topics: usize,
    s: usize,
    ring: u64,
    deadline: u64,
) -> Result<(i64, u64, String), String> {
    let opts = &bench.opts;
    let mut sut = Sut::start_with(
        System::HubcastSeq,
        (topics + 64).max(1000),
        opts,
        &ring_args(ring, s),
    )?;
    let result = (|| {
        let timeout = Duration::from_secs(opts.timeout);
        let progress = opts.progress * 1_000_000_000;
        let mut gen = Gen::new(Proto::Seq, sut.addr(), topics, 0).map_err(|e| e.to_string())?;
        gen.connect_all(deadline)?;
        sut.confirm(topics, deadline)?;
        sut.send("topics 1")?;
        sut.wait_line("topics", deadline)?;
        std::thread::sleep(SETTLE);
        let base = sut.sample();
        let mut notes = Vec::new();
        sut.publish(
            Job {
                start: 0,
                count: MESSAGES,
                size: s,
                rate: 0.0,
            },
            topics as u64,
            timeout,
        )?;
        let round = gen.run_round(0, MESSAGES, s, deadline, progress);
        sut.finish_publish(round.end == End::Complete, &mut notes);
        if round.end != End::Complete || round.delivered != topics as u64 * MESSAGES {
            return Err(format!(
                "rings of {ring}: delivered {} of {} ({})",
                round.delivered,
                topics as u64 * MESSAGES,
                join_notes(&notes, &round.errors, "")
            ));
        }
        std::thread::sleep(SETTLE);
        let after = sut.sample();
        gen.close();
        Ok((
            after.rss_kib as i64 - base.rss_kib as i64,
            after.rss_kib,
            join_notes(&notes, &round.errors, ""),
        ))
    })();
    let result = result.map_err(|e| sut.explain(e));
    sut.stop();
    result
}

/// `--mode rings`: the memory of one stream's full ring, from `topics` topics.
pub(crate) fn rings(
    bench: &mut Bench,
    topics: usize,
    s: usize,
    row: &mut Row,
    deadline: u64,
) -> Result<(), String> {
    let (with, rss_with, note_with) = ring_run(bench, topics, s, MESSAGES, deadline)?;
    let (without, rss_without, note_without) = ring_run(bench, topics, s, 0, deadline)?;
    row.m = MESSAGES;
    row.deliveries = topics as u64 * MESSAGES * 2;
    row.ring_bytes = (with - without) as f64 * 1024.0 / topics as f64;
    row.ring_ideal_bytes = (MESSAGES as usize * (s + framing(true))) as f64;
    row.peak_rss_kib = rss_with;
    row.rss_base_kib = rss_without;
    row.status = "ok".into();
    row.note = format!(
        "RSS grew {with} KiB with rings, {without} KiB without{}{}",
        if note_with.is_empty() {
            String::new()
        } else {
            format!("; with: {note_with}")
        },
        if note_without.is_empty() {
            String::new()
        } else {
            format!("; without: {note_without}")
        }
    );
    Ok(())
}

/// The tables of the replay modes.
pub(crate) fn render(mode: Mode, rows: &[Row]) -> String {
    let mut t = String::new();
    let status_note = |r: &Row| {
        if r.note.is_empty() {
            r.status.clone()
        } else {
            format!("{}: {}", r.status, r.note)
        }
    };
    if mode == Mode::Resume {
        let _ = writeln!(t, "Resume: {MESSAGES} messages of S bytes broadcast before any client connects (so only the hub-wide replay ring holds them); then N clients connect, read `#at`, and all send `#resume * <epoch> 0`. *replay s*: from the first request written to the last replayed message received; every client checks it got all {MESSAGES}, in order.\n");
        let _ = writeln!(t, "| N | S | messages each | connect s | replay s | deliveries/s | MB/s | server RSS MiB before → peak | full hub-wide ring, RSS KiB (payload + framing KiB) | server CPU s | generator CPU % | status / notes |");
        let _ = writeln!(t, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
        for r in rows {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {:.2} | {} | {} | {:.0} | {:.1} → {:.1} | {:.0} ({:.0}) | {:.2} | {:.0} | {} |",
                r.n,
                r.s,
                r.m,
                r.connect_s,
                lat((r.secs * 1e9) as u64),
                si(r.dps),
                r.mbps,
                r.rss_base_kib as f64 / 1024.0,
                r.peak_rss_kib as f64 / 1024.0,
                r.ring_bytes / 1024.0,
                r.ring_ideal_bytes / 1024.0,
                r.cpu_s,
                r.gen_cpu_pct,
                status_note(r)
            );
        }
    } else {
        let _ = writeln!(t, "Rings: N clients, each alone in its own topic; {MESSAGES} messages of S bytes published to every topic and read by the clients. The server's RSS growth over that with rings of {MESSAGES} messages, minus the same run without rings (`replay_messages(0)`), ÷ N = one stream's full ring.\n");
        let _ = writeln!(t, "| topics | S | messages per ring | one ring, KiB | per message, bytes | payload + framing per message, bytes | server RSS MiB after, with / without rings | status / notes |");
        let _ = writeln!(t, "|--:|--:|--:|--:|--:|--:|--:|---|");
        for r in rows {
            let per = r.ring_bytes / r.m.max(1) as f64;
            let _ = writeln!(
                t,
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} / {:.1} | {} |",
                r.n,
                r.s,
                r.m,
                r.ring_bytes / 1024.0,
                per,
                r.ring_ideal_bytes / r.m.max(1) as f64,
                r.peak_rss_kib as f64 / 1024.0,
                r.rss_base_kib as f64 / 1024.0,
                status_note(r)
            );
        }
    }
    t
}
