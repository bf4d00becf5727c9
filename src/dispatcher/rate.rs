//! Clients' inbound rate limits, as the dispatcher applies them: holding a client back
//! (not reading it) until its allowance refills, and dropping or disconnecting past it.
//! The allowances and the decision are `client::rate`'s, without a socket.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::{storm, Dispatcher};
use crate::client::rate;
use crate::{ClientId, DisconnectReason, RateLimit, RateLimitPolicy};

impl Dispatcher {
    /// Whether the live client in `slot` may have its next message cut: under
    /// [`RateLimitPolicy::HoldBack`], not while its allowance is spent. It is then held back
    /// until the allowance has refilled.
    pub(super) fn may_cut(&mut self, slot: usize) -> bool {
        if !matches!(
            self.config.rate_limit,
            Some(RateLimit {
                policy: RateLimitPolicy::HoldBack,
                ..
            })
        ) {
            return true;
        }
        let now = self.now;
        let Some(client) = self.slots.live_mut(slot) else {
            return true;
        };
        let Some(bucket) = &mut client.rate else {
            return true;
        };
        let wait = bucket.wait(now);
        if wait.is_zero() {
            return true;
        }
        // A wait too long to represent is cut short: the client is simply asked again.
        let until = now
            .checked_add(wait)
            .unwrap_or(now + Duration::from_secs(1));
        if client.held_until.replace(until).is_none() {
            let id = client.id;
            self.slots.held.push(slot);
            self.shared.counters.rate_held.fetch_add(1, Relaxed);
            log::trace!("client {id} held back for {wait:?}");
        }
        false
    }

    /// Whether the live client in `slot` is held back for its rate limit, or is not read
    /// because it broke its protocol (`failing`).
    pub(super) fn is_held(&self, slot: usize) -> bool {
        self.slots
            .get(slot)
            .is_some_and(|c| (c.held_until.is_some() || c.failing.is_some()) && c.is_live())
    }

    /// Reads again the clients held back for their rate limit whose time has come.
    pub(super) fn release_held(&mut self) {
        let mut i = 0;
        while i < self.slots.held.len() {
            let slot = self.slots.held[i];
            let due = match self.slots.get_mut(slot) {
                // Still waiting.
                Some(client) if client.held_until.is_some_and(|t| t > self.now) => false,
                Some(client) => {
                    client.held_until = None;
                    true
                }
                // Gone (a later client in the slot has its own entry if it is held).
                None => false,
            };
            if due {
                self.mark_read_pending(slot);
            }
            if due
                || self
                    .slots
                    .get(slot)
                    .map_or(true, |c| c.held_until.is_none())
            {
                self.slots.held.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// When the first client held back for its rate limit is due to be read again.
    pub(super) fn held_until(&self) -> Option<Instant> {
        let slots = &self.slots;
        slots
            .held
            .iter()
            .filter_map(|&slot| slots.get(slot).and_then(|c| c.held_until))
            .min()
    }

    /// Applies the client's rate limit, if any, to its message of `len` bytes (`control`:
    /// a control request of the protocol). Returns whether the message is handed on; if
    /// not, it was dropped and counted, or the client left as `RateLimited`.
    pub(super) fn within_rate(
        &mut self,
        slot: usize,
        id: ClientId,
        len: usize,
        control: bool,
    ) -> bool {
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        let now = self.now;
        let Some(bucket) = self.slots.get_mut(slot).and_then(|c| c.rate.as_mut()) else {
            return true;
        };
        match rate::verdict(limit.policy, bucket, now, len, control) {
            rate::Verdict::Deliver => true,
            rate::Verdict::Drop => {
                self.shared.counters.rate_dropped.fetch_add(1, Relaxed);
                if let Some(client) = self.slots.get_mut(slot) {
                    client.dropping = true;
                }
                self.admission.misbehaved.record(
                    storm::CLIENTS,
                    "messages over the rate limit dropped",
                    now,
                    format_args!("client {id} sent over its rate limit: dropping the excess"),
                );
                false
            }
            rate::Verdict::Disconnect => {
                self.admission.misbehaved.record(
                    storm::CLIENTS,
                    "over the rate limit",
                    now,
                    format_args!("client {id} sent over its rate limit: disconnecting it"),
                );
                self.leave(slot, DisconnectReason::RateLimited, None);
                false
            }
        }
    }
}
