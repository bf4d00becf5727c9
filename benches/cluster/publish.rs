//! The publishing loop every publisher runs (a hub's host thread, a relaying client, the
//! NATS publisher), so that all stamp and pace their messages alike.

use std::io;
use std::time::Duration;

use crate::hist::Hist;
use crate::proto::{payload, seq_of, stamp};
use crate::sys::{fine_timer_slack, now_ns};

/// One publisher's share of a round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Job {
    /// The publisher's index, in the top bits of its sequence numbers.
    pub(crate) publisher: usize,
    /// At most this many messages.
    pub(crate) count: u64,
    pub(crate) size: usize,
    /// Messages per second; 0 for as fast as the system takes them (a flood).
    pub(crate) rate: f64,
    /// A flood stops after this long, whatever `count`.
    pub(crate) max_ns: u64,
}

impl Job {
    pub(crate) fn to_words(self) -> String {
        format!(
            "{} {} {} {} {}",
            self.publisher, self.count, self.size, self.rate, self.max_ns
        )
    }

    pub(crate) fn from_words(words: &[&str]) -> Option<Job> {
        match words {
            [publisher, count, size, rate, max_ns] => Some(Job {
                publisher: publisher.parse().ok()?,
                count: count.parse().ok()?,
                size: size.parse().ok()?,
                rate: rate.parse().ok()?,
                max_ns: max_ns.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// What a publisher did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Done {
    /// Messages handed to the system: the subscribers expect indexes `0..sent`.
    pub(crate) sent: u64,
    /// From the first message to the last one handed over, in ns.
    pub(crate) elapsed_ns: u64,
    /// Paced publishers: how late they handed messages over against their schedule (p99),
    /// in ns; a publisher held back by the system shows it here and in the latency.
    pub(crate) late_p99: u64,
}

impl Done {
    pub(crate) fn to_words(self) -> String {
        format!("{} {} {}", self.sent, self.elapsed_ns, self.late_p99)
    }

    pub(crate) fn from_words(words: &[&str]) -> Option<Done> {
        match words {
            [sent, elapsed, late] => Some(Done {
                sent: sent.parse().ok()?,
                elapsed_ns: elapsed.parse().ok()?,
                late_p99: late.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// Sleeps until `t` (`CLOCK_MONOTONIC` ns); with the timer slack at 1 ns it wakes within
/// microseconds, without spinning (which would take a core from the systems measured).
fn wait_until(t: u64) {
    loop {
        let now = now_ns();
        if now >= t {
            return;
        }
        std::thread::sleep(Duration::from_nanos(t - now));
    }
}

/// Publishes `job` through `send`. Each payload carries its sequence number and its send
/// time: the time of the call (flood) or the intended time on the paced schedule, so a
/// publisher held back by the system counts that as latency.
pub(crate) fn publish_loop(
    job: &Job,
    mut send: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<Done> {
    if job.rate > 0.0 {
        fine_timer_slack();
    }
    let mut late = Hist::new();
    let mut buf = payload(job.size);
    let t0 = now_ns();
    let mut sent = 0;
    while sent < job.count {
        let ts = if job.rate > 0.0 {
            let t = t0 + (sent as f64 * 1e9 / job.rate) as u64;
            wait_until(t);
            late.record(now_ns() - t);
            t
        } else {
            let now = now_ns();
            if now - t0 > job.max_ns {
                break;
            }
            now
        };
        stamp(&mut buf, seq_of(job.publisher, sent), ts);
        send(&buf)?;
        sent += 1;
    }
    Ok(Done {
        sent,
        elapsed_ns: now_ns() - t0,
        late_p99: late.quantile(0.99),
    })
}
