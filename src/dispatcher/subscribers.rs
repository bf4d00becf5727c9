//! Delivering events to subscriptions, and pausing the hub while one is full.
//!
//! Each subscription has a bounded channel. When one is full, its events wait in an
//! overflow queue here and the hub is *paused*: it stops reading clients and accepting
//! connections, so TCP holds the clients back and the overflow stays bounded (one read's
//! frames plus one event per client). `Subscription::recv` wakes the dispatcher once its
//! queue has half drained. A pause that lasts is logged once, and `Stats` shows it.

use std::collections::VecDeque;
use std::sync::atomic::{fence, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use crate::shared::Shared;
use crate::shared::Tail;
use crate::Event;

/// A pause this long is logged (once per pause).
const PAUSE_WARNING: Duration = Duration::from_secs(1);

/// A subscriber and the events it has not had room for yet.
#[derive(Debug)]
struct Subscriber {
    tx: Sender<Event>,
    tail: Arc<Tail>,
    overflow: VecDeque<Event>,
}

#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    list: Vec<Subscriber>,
    /// Subscribers with an overflow: while there are any, the hub is paused.
    backlogged: usize,
    /// When the current pause began, and whether it has been logged.
    paused_since: Option<Instant>,
    warned: bool,
}

impl Subscribers {
    /// Whether new events must wait: the hub reads no client and accepts no connection.
    pub(crate) fn is_paused(&self) -> bool {
        self.backlogged > 0
    }

    /// Whether any subscription would get an event (so it is worth making one).
    pub(crate) fn any(&mut self, shared: &Shared) -> bool {
        self.adopt(shared);
        !self.list.is_empty()
    }

    /// Sends `event` to every subscription, queueing it behind any backlog; forgets
    /// subscriptions that were dropped.
    pub(crate) fn emit(&mut self, event: Event, shared: &Shared, now: Instant) {
        self.adopt(shared);
        let before = self.list.len();
        // Every subscription but the last gets a clone (payloads are shared, not copied).
        let last = before.saturating_sub(1);
        let mut index = 0;
        let mut event = Some(event);
        self.list.retain_mut(|sub| {
            let this = if index == last {
                event.take()
            } else {
                event.clone()
            };
            index += 1;
            this.map_or(true, |event| sub.offer(event))
        });
        if self.list.len() < before {
            log::debug!("{} subscription(s) dropped", before - self.list.len());
        }
        self.update_paused(shared, now);
    }

    /// Moves backlogged events into subscription queues as they drain, forgets dropped
    /// subscriptions, and logs a pause that lasts.
    pub(crate) fn feed(&mut self, shared: &Shared, now: Instant) {
        self.adopt(shared);
        if self.backlogged > 0 {
            self.list.retain_mut(Subscriber::drain);
        }
        self.update_paused(shared, now);
        if let Some(since) = self.paused_since {
            if !self.warned && now.saturating_duration_since(since) >= PAUSE_WARNING {
                self.warned = true;
                log::warn!(
                    "a subscription has been full for {PAUSE_WARNING:?}: the hub reads no \
                     client and accepts no connection until it is drained (see \
                     `Hub::subscribe`)"
                );
            }
        }
    }

    /// When the dispatcher should look at a pause again (to log it).
    pub(crate) fn recheck_at(&self) -> Option<Instant> {
        match self.paused_since {
            Some(since) if !self.warned => since.checked_add(PAUSE_WARNING),
            _ => None,
        }
    }

    fn adopt(&mut self, shared: &Shared) {
        if shared.inbox_pending.swap(false, SeqCst) {
            let pending = std::mem::take(&mut shared.inbox().pending);
            self.list.extend(pending.into_iter().map(|new| Subscriber {
                tx: new.tx,
                tail: new.tail,
                overflow: VecDeque::new(),
            }));
        }
    }

    /// Publishes whether the hub is paused, without losing a wake-up: a subscription checks
    /// the flag after each receive, so after raising it the dispatcher looks at the queues
    /// once more, in case the subscription emptied them just before (the fences on both
    /// sides order the flag against the queue).
    fn update_paused(&mut self, shared: &Shared, now: Instant) {
        self.backlogged = self.list.iter().filter(|s| !s.overflow.is_empty()).count();
        if self.backlogged > 0 && !shared.is_paused() {
            log::debug!("a subscription is full: pausing reads until it drains");
            shared.set_paused(true);
            fence(SeqCst);
            self.list.retain_mut(Subscriber::drain);
            self.backlogged = self.list.iter().filter(|s| !s.overflow.is_empty()).count();
            if self.backlogged > 0 {
                self.paused_since = Some(now);
                self.warned = false;
                let counters = &shared.counters;
                counters.pauses.fetch_add(1, Relaxed);
                let since = now.saturating_duration_since(shared.epoch).as_nanos();
                let since = u64::try_from(since).unwrap_or(u64::MAX - 1) + 1;
                counters.paused_since.store(since, Relaxed);
            }
        }
        if self.backlogged == 0 && shared.is_paused() {
            shared.set_paused(false);
            shared.counters.paused_since.store(0, Relaxed);
            if let (Some(since), true) = (self.paused_since, self.warned) {
                log::info!(
                    "subscriptions drained: reading again after a pause of {:?}",
                    now.saturating_duration_since(since)
                );
            }
            self.paused_since = None;
        }
    }

    /// At the end: every subscription gets what it had no room for after its queued events,
    /// and ends; so do those never adopted. Never waits for a subscriber.
    pub(crate) fn finish(&mut self, shared: &Shared) {
        self.adopt(shared);
        shared.close_inbox();
        for sub in self.list.drain(..) {
            if !sub.overflow.is_empty() {
                sub.tail.extend(sub.overflow);
            }
        }
        self.backlogged = 0;
        shared.set_paused(false);
        shared.counters.paused_since.store(0, Relaxed);
    }
}

impl Subscriber {
    /// Sends `event` now if nothing waits ahead of it and there is room, else queues it.
    /// Returns `false` if the receiver is gone.
    fn offer(&mut self, event: Event) -> bool {
        if !self.overflow.is_empty() {
            self.overflow.push_back(event);
            return true;
        }
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(event)) => {
                self.overflow.push_back(event);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Moves backlogged events into the channel. Returns `false` if the receiver is gone.
    fn drain(&mut self) -> bool {
        while let Some(event) = self.overflow.pop_front() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.overflow.push_front(event);
                    return true;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        // With nothing to send, a dropped receiver is found at the next event.
        true
    }
}
