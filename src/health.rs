//! Whether the hub is alive and ready to serve, for liveness and readiness probes: read
//! from [`Shared`] only, so it never blocks and runs on any thread, the dispatcher's own
//! included (which answers the probes over HTTP).
//!
//! The dispatcher is *lagging* when the round it is in has run for longer than
//! [`Health::LAG_LIMIT`]: it stamps the time each round starts (when `poll` returns) and clears the
//! stamp before it waits in `poll` again, so a dispatcher idle in `poll` for hours is not
//! lagging, and one stuck in a host closure or a huge fan-out is.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use crate::shared::Shared;

/// How long one dispatcher round may run before the hub counts as lagging and not ready
/// ([`Health::LAG_LIMIT`]).
///
/// A round reads, writes and fans out what is ready, typically in micro- to milliseconds;
/// two seconds means the dispatcher is stuck (a host closure that blocks, a machine
/// swapping), not busy.
pub(crate) const LAG_LIMIT: Duration = Duration::from_secs(2);

/// Whether a hub is alive and ready to serve, from [`Hub::health`](crate::Hub::health).
///
/// ```
/// let hub = hubcast::Hub::bind("127.0.0.1:0")?;
/// let health = hub.health();
/// assert!(health.live && health.ready);
/// assert_eq!(health.backplane, None);
/// # Ok::<(), hubcast::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The dispatcher thread is running: it has neither stopped after a
    /// [`shutdown`](crate::Hub::shutdown) nor [failed](crate::Error::Failed). A hub
    /// shutting down is live until its dispatcher returns. For a liveness probe.
    pub live: bool,
    /// The hub serves as it should: live, not shutting down, not lagging (`lag` at most
    /// [`LAG_LIMIT`](Health::LAG_LIMIT)), and with a backplane connected to its broker if it has one. For a
    /// readiness probe. A hub paused for a full subscription is ready (that is the host's
    /// doing, and shows in [`Stats::paused`](crate::Stats::paused)).
    pub ready: bool,
    /// How long the dispatcher's current round has been running: zero while it waits for
    /// work (however long it has been idle) and once it has stopped.
    pub lag: Duration,
    /// `None` without a backplane (feature `nats`); otherwise whether it is connected to
    /// its NATS broker now.
    pub backplane: Option<bool>,
    /// A [`shutdown`](crate::Hub::shutdown) has begun (or the hub failed): the hub takes no
    /// more work.
    pub shutting_down: bool,
}

impl Health {
    /// How long one dispatcher round may run before the hub counts as lagging and not
    /// [`ready`](Health::ready): 2 s. A round reads, writes and fans out what is ready,
    /// typically in micro- to milliseconds; two seconds means the dispatcher is stuck (a
    /// host closure that blocks, a machine swapping), not busy.
    pub const LAG_LIMIT: Duration = LAG_LIMIT;

    /// Why the hub is not ready, one reason after another (empty when it is ready).
    fn not_ready(&self) -> Vec<String> {
        let mut why = Vec::new();
        if !self.live {
            why.push("dispatcher stopped".to_owned());
        } else if self.shutting_down {
            why.push("shutting down".to_owned());
        }
        if self.lag > LAG_LIMIT {
            why.push(format!("dispatcher lagging {:.1}s", self.lag.as_secs_f64()));
        }
        if self.backplane == Some(false) {
            why.push("backplane disconnected".to_owned());
        }
        why
    }
}

/// The hub's health now. Never blocks: reads atomics only.
pub(crate) fn check(shared: &Shared) -> Health {
    let live = shared.is_running();
    let shutting_down = shared.is_closed();
    let lag = shared.lag();
    let backplane = shared
        .clustered
        .then(|| shared.counters.cluster_connected.load(SeqCst));
    let ready = live && !shutting_down && lag <= LAG_LIMIT && backplane != Some(false);
    Health {
        live,
        ready,
        lag,
        backplane,
        shutting_down,
    }
}

/// The HTTP status and body that answer a liveness probe (`ready == false`: is the hub
/// live?) or a readiness probe (`ready == true`: is it ready?): `200` and `ok`, or `503`
/// and what is wrong, such as `not ready: backplane disconnected`. The body is one line of
/// text.
// The WebSocket listeners' HTTP front answers the probes with it.
#[cfg_attr(not(any(test, feature = "websocket")), allow(dead_code))]
pub(crate) fn response(health: &Health, ready: bool) -> (u16, String) {
    if ready {
        let why = health.not_ready();
        if health.ready || why.is_empty() {
            (200, "ok\n".to_owned())
        } else {
            (503, format!("not ready: {}\n", why.join(", ")))
        }
    } else if health.live {
        (200, "ok\n".to_owned())
    } else {
        (503, "not live: dispatcher stopped\n".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Health {
        Health {
            live: true,
            ready: true,
            lag: Duration::ZERO,
            backplane: None,
            shutting_down: false,
        }
    }

    #[test]
    fn probes_answer_with_status_and_reason() {
        let ok = (200, "ok\n".to_owned());
        assert_eq!(response(&healthy(), false), ok);
        assert_eq!(response(&healthy(), true), ok);

        let cut_off = Health {
            ready: false,
            backplane: Some(false),
            ..healthy()
        };
        assert_eq!(response(&cut_off, false), ok, "live all the same");
        assert_eq!(
            response(&cut_off, true),
            (503, "not ready: backplane disconnected\n".to_owned())
        );

        let stuck = Health {
            ready: false,
            lag: Duration::from_millis(2500),
            backplane: Some(false),
            ..healthy()
        };
        assert_eq!(
            response(&stuck, true).1,
            "not ready: dispatcher lagging 2.5s, backplane disconnected\n"
        );

        let stopping = Health {
            ready: false,
            shutting_down: true,
            ..healthy()
        };
        assert_eq!(
            response(&stopping, true),
            (503, "not ready: shutting down\n".to_owned())
        );

        let stopped = Health {
            live: false,
            ready: false,
            shutting_down: true,
            ..healthy()
        };
        assert_eq!(
            response(&stopped, false),
            (503, "not live: dispatcher stopped\n".to_owned())
        );
        assert_eq!(
            response(&stopped, true),
            (503, "not ready: dispatcher stopped\n".to_owned())
        );
    }

    #[test]
    fn a_fresh_shared_state_is_healthy_and_an_idle_one_does_not_lag() {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let mut shared = Shared::new(waker, 1 << 20, 1024);
        assert_eq!(check(&shared), healthy());
        // A round that began long ago and ended: idle, not lagging.
        shared.round_begins(shared.epoch);
        shared.round_ends();
        assert_eq!(check(&shared).lag, Duration::ZERO);
        // A round that began at the epoch and is still running lags since then.
        shared.round_begins(shared.epoch);
        let lag = check(&shared).lag;
        assert!(!lag.is_zero());

        shared.clustered = true;
        let health = check(&shared);
        assert_eq!(health.backplane, Some(false));
        assert!(health.live && !health.ready);

        shared.set_stopped();
        let health = check(&shared);
        assert!(!health.live && !health.ready);
        assert_eq!(health.lag, Duration::ZERO);
    }
}
