//! Per-client deadlines — handshake, idle, heartbeat, stuck writes — checked by one pass
//! over the clients once a *tick*, and the heartbeat pings. Durations of any size are
//! fine: a deadline too far away to represent never comes.

use std::time::{Duration, Instant};

use super::{storm, Dispatcher};
use crate::client::Phase;
use crate::queue::Piece;
use crate::wire::Wire;
use crate::DisconnectReason;

#[derive(Debug)]
pub(crate) struct Timers {
    /// How often per-client deadlines are checked, if any are set.
    tick: Option<Duration>,
    next_tick: Instant,
}

impl Timers {
    /// Timers checked every `tick` (`Config::tick`), the first one now.
    pub(crate) fn new(tick: Option<Duration>, now: Instant) -> Timers {
        Timers {
            tick,
            next_tick: now,
        }
    }

    /// When the next tick is due, if one is needed (only while there are connections).
    pub(crate) fn next(&self, connections: bool) -> Option<Instant> {
        self.tick.filter(|_| connections).map(|_| self.next_tick)
    }
}

impl Dispatcher {
    /// Runs the tick when it is due: closes connections past a deadline and sends pings.
    pub(super) fn housekeeping(&mut self) {
        self.admission.tick(self.now);
        self.admission.misbehaved.tick(self.now);
        let Some(tick) = self.timers.tick else {
            return;
        };
        if self.now < self.timers.next_tick {
            return;
        }
        self.timers.next_tick = self.now + tick;
        for slot in 0..self.slots.len() {
            match self.verdict(slot) {
                Verdict::Keep => {}
                Verdict::Leave(reason) => self.leave(slot, reason, None),
                Verdict::HandshakeTimedOut => self.drop_unaccepted(slot, false),
                Verdict::Close => self.close(slot),
                Verdict::Ping(wire) => {
                    if let Some(ping) = &self.fanout.ping {
                        let ping = ping[wire].clone();
                        self.enqueue(slot, Piece::Chunk(&ping));
                    }
                }
            }
        }
    }

    /// What one tick does to the connection in `slot`.
    fn verdict(&mut self, slot: usize) -> Verdict {
        let now = self.now;
        let config = &self.config;
        let Some(client) = self.slots.get_mut(slot) else {
            return Verdict::Keep;
        };
        // Input the hub has not read yet (reads paused for a full subscription, or the
        // read budget used up) is a sign of life: the wait is the hub's, not the client's.
        // A client whose wire has it send nothing is never silent.
        // So is being held back for its rate limit.
        let silent =
            if client.read_pending || client.held_until.is_some() || client.wire().listen_only() {
                Duration::ZERO
            } else {
                now.saturating_duration_since(client.last_read)
            };
        let stuck = config
            .write_timeout
            .is_some_and(|t| client.has_output() && client.is_stalled_for(now, t));
        match client.phase {
            Phase::Handshake(_) if client.read_pending => Verdict::Keep,
            Phase::Handshake(Some(deadline)) if now >= deadline => {
                self.admission.misbehaved.record(
                    storm::CLIENTS,
                    "no handshake in time",
                    now,
                    format_args!("{}: no handshake in time", client.addr),
                );
                Verdict::HandshakeTimedOut
            }
            Phase::Handshake(_) => Verdict::Keep,
            // A leaving client that takes nothing is closed without waiting for `linger`.
            Phase::Closing(_) if stuck => Verdict::Close,
            Phase::Closing(_) => Verdict::Keep,
            Phase::Live if config.idle_timeout.is_some_and(|t| silent >= t) => {
                Verdict::Leave(DisconnectReason::Idle)
            }
            Phase::Live
                if config
                    .heartbeat
                    .is_some_and(|t| silent >= t.saturating_mul(2)) =>
            {
                Verdict::Leave(DisconnectReason::Unresponsive)
            }
            Phase::Live if stuck => Verdict::Leave(DisconnectReason::Slow),
            Phase::Live => match client
                .wire()
                .ping_interval(&config.wire(), config.heartbeat)
            {
                Some(interval) if now.saturating_duration_since(client.last_ping) >= interval => {
                    client.last_ping = now;
                    Verdict::Ping(client.wire())
                }
                _ => Verdict::Keep,
            },
        }
    }
}

/// What a tick does to one connection.
enum Verdict {
    Keep,
    Leave(DisconnectReason),
    HandshakeTimedOut,
    Close,
    Ping(Wire),
}
