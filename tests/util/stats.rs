//! Checks of the hub's counters: that they add up, and that those a test names hold what
//! it expects.

use std::thread;
use std::time::Instant;

use hubcast::{DisconnectReason, Hub, Stats};

use super::{PACE, TIMEOUT};

/// Asserts the hub's counters add up: every client accepted is either still connected or
/// counted once among the disconnects, and the disconnects are exactly `reasons`.
pub(crate) fn assert_stats_add_up(hub: &Hub, reasons: &[(DisconnectReason, u64)]) {
    let stats = hub.stats();
    assert_eq!(
        stats.accepted,
        stats.connected + stats.disconnects.total(),
        "accepted != connected + disconnected: {stats:#?}"
    );
    let mut sum = 0;
    for &(reason, count) in reasons {
        assert_eq!(
            stats.disconnects(reason),
            count,
            "disconnects({reason:?}): {stats:#?}"
        );
        sum += count;
    }
    assert_eq!(
        stats.disconnects.total(),
        sum,
        "other disconnects: {stats:#?}"
    );
    assert_eq!(stats.connected, hub.clients().len() as u64, "{stats:#?}");
}

/// A counter of [`Stats`] that tests compare with [`assert_counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    /// Connections that became clients.
    Accepted,
    /// Connections the accept filter or a limit refused before any handshake.
    Refused,
    /// Handshakes the authenticator rejected (or panicked in).
    Rejected,
    /// Handshakes that failed otherwise: a bad or slow request, a TLS failure.
    HandshakeFailed,
    /// Panics caught in the host's closures.
    CallbackPanics,
    /// Messages read from clients.
    FramesIn,
    /// Frames written to clients.
    FramesOut,
    /// Frames dropped by a drop policy.
    Dropped,
    /// Clients connected now.
    Connected,
}

impl Counter {
    fn of(self, stats: &Stats) -> u64 {
        match self {
            Counter::Accepted => stats.accepted,
            Counter::Refused => stats.refused,
            Counter::Rejected => stats.rejected,
            Counter::HandshakeFailed => stats.handshake_failed,
            Counter::CallbackPanics => stats.callback_panics,
            Counter::FramesIn => stats.frames_in,
            Counter::FramesOut => stats.frames_out,
            Counter::Dropped => stats.dropped,
            Counter::Connected => stats.connected,
        }
    }
}

/// Asserts that each counter named holds exactly its value, all at once (a failure shows
/// every one of them, and all the stats).
pub(crate) fn assert_counters(hub: &Hub, expected: &[(Counter, u64)]) {
    let stats = hub.stats();
    let got: Vec<(Counter, u64)> = expected
        .iter()
        .map(|&(counter, _)| (counter, counter.of(&stats)))
        .collect();
    assert_eq!(got, expected, "{stats:#?}");
}

/// The hub's counters once `done` holds for them (they are published once per dispatcher
/// round, so they may trail what clients already received by a moment), or as they are
/// after [`TIMEOUT`], for the caller's assertions to show.
pub(crate) fn stats_when(hub: &Hub, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let stats = hub.stats();
        if done(&stats) || Instant::now() >= deadline {
            return stats;
        }
        thread::sleep(PACE);
    }
}
