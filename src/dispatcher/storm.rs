//! Logging what a storm of connections can cause — refusals at the door, clients closed for
//! breaking the rules — as one line per period, never one line per connection: a flood of
//! bad clients must not flood the host's log.

use std::fmt;
use std::time::{Duration, Instant};

/// The log targets of what a storm logs, named for what a reader looks for
/// (`RUST_LOG=hubcast::tls=off`), not for this module, which only counts: TLS handshakes
/// that fail,
pub(crate) const TLS: &str = "hubcast::tls";
/// clients closed for breaking the rules (a frame too large, no handshake in time, a
/// failed authentication): this one, and for what a wire's clients send it, the wire's
/// (`Wire::log_target`: `hubcast::websocket` for WebSocket upgrades refused and WebSocket
/// clients closed for what they sent),
pub(crate) const CLIENTS: &str = "hubcast::clients";
/// connections refused at the door.
pub(crate) const ADMISSION: &str = "hubcast::admission";

/// Events after the first of a storm are counted and logged together once per this period.
pub(crate) const LOG_PERIOD: Duration = Duration::from_secs(1);

/// Logs the first event of a storm at once, with its details, and the rest as one line per
/// [`LOG_PERIOD`], counted by kind.
#[derive(Debug)]
pub(crate) struct StormLog {
    level: log::Level,
    /// What the summary line counts ("connections refused").
    what: &'static str,
    /// The current period, if an event was logged less than a period ago.
    since: Option<Instant>,
    /// Events in this period not logged yet, by target and kind, in the order first seen.
    counts: Vec<(&'static str, &'static str, u64)>,
}

impl StormLog {
    pub(crate) fn new(level: log::Level, what: &'static str) -> StormLog {
        StormLog {
            level,
            what,
            since: None,
            counts: Vec::new(),
        }
    }

    /// An event of `kind`: `line` is logged (under `target`) if it is the first of a
    /// period, else counted.
    pub(crate) fn record(
        &mut self,
        target: &'static str,
        kind: &'static str,
        now: Instant,
        line: fmt::Arguments<'_>,
    ) {
        if self.since.is_none() {
            self.since = Some(now);
            log::log!(target: target, self.level, "{line}");
            return;
        }
        match self
            .counts
            .iter_mut()
            .find(|(t, k, _)| *t == target && *k == kind)
        {
            Some((_, _, n)) => *n += 1,
            None => self.counts.push((target, kind, 1)),
        }
    }

    /// Logs the period's counts once it is over; a quiet period ends the storm.
    pub(crate) fn tick(&mut self, now: Instant) {
        let Some(since) = self.since else {
            return;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed < LOG_PERIOD {
            return;
        }
        if self.counts.is_empty() {
            self.since = None;
            return;
        }
        // One line per target, under it: `RUST_LOG=hubcast::tls=off` silences a storm of
        // failed TLS handshakes, counts included.
        let counts = std::mem::take(&mut self.counts);
        let mut targets: Vec<&'static str> = Vec::new();
        for &(target, _, _) in &counts {
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        for target in targets {
            let of_target = || counts.iter().filter(move |(t, _, _)| *t == target);
            let total: u64 = of_target().map(|(_, _, n)| n).sum();
            let kinds: Vec<String> = of_target()
                .map(|(_, kind, n)| format!("{n} {kind}"))
                .collect();
            log::log!(
                target: target,
                self.level,
                // "connections refused, 1 more in 1s: ...", never "1 more connections".
                "{}, {total} more in {elapsed:?}: {}",
                self.what,
                kinds.join(", ")
            );
        }
        self.since = Some(now);
    }

    /// When the current period ends, if a storm is on.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.since.and_then(|t| t.checked_add(LOG_PERIOD))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_is_one_line_per_period() {
        let t = Instant::now();
        let mut log = StormLog::new(log::Level::Warn, "connections refused");
        log.record(
            ADMISSION,
            "at max_clients",
            t,
            format_args!("refused 127.0.0.1:1"),
        );
        assert_eq!(log.since, Some(t), "the first is logged at once");
        assert!(log.counts.is_empty());
        for _ in 0..1000 {
            log.record(
                ADMISSION,
                "at max_clients",
                t,
                format_args!("refused 127.0.0.1:1"),
            );
        }
        log.record(
            ADMISSION,
            "by the accept filter",
            t,
            format_args!("refused 127.0.0.1:1"),
        );
        assert_eq!(
            log.counts,
            [
                (ADMISSION, "at max_clients", 1000),
                (ADMISSION, "by the accept filter", 1)
            ]
        );
        assert_eq!(log.next(), Some(t + LOG_PERIOD));
        log.tick(t + LOG_PERIOD / 2);
        assert_eq!(log.counts.len(), 2, "nothing logged before the period ends");
        log.tick(t + LOG_PERIOD);
        assert!(log.counts.is_empty());
        assert_eq!(log.since, Some(t + LOG_PERIOD), "a new period began");
        log.tick(t + 2 * LOG_PERIOD);
        assert_eq!(log.since, None, "a quiet period ends the storm");
        assert_eq!(log.next(), None);
    }
}
