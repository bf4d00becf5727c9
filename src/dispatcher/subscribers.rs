//! Delivering events to subscriptions, and pausing the hub while one is full.
//!
//! Events go to each subscription in batches: gathered during a round and sent at its end
//! (or every [`BATCH`] events), so a flood of client messages costs one channel operation
//! and at most one wake-up of the host's thread per batch, not per message. Each
//! subscription holds at most `event_capacity` events (counted in `Tail::queued`). When one
//! is full, its events wait in an overflow queue here and the hub is *paused*: it stops
//! reading clients and accepting connections, so TCP holds the clients back and the
//! overflow stays bounded (one batch and one read's frames, plus one event per client).
//! `Subscription::recv` wakes the dispatcher once its queue has half drained, and dropping
//! a subscription wakes it to forget that one (`Tail::is_gone`): a dropped subscription's
//! count never goes down, so its room alone would keep the hub paused for good. A pause
//! that lasts is logged once, and `Stats` shows it. Tasks awaiting a subscription
//! (`Subscription::recv_async`) are woken after each batch sent to it and as it ends
//! (`Tail::events_sent`): one fence and one load per batch while none awaits.

use std::collections::VecDeque;
use std::sync::atomic::{fence, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::shared::Shared;
use crate::shared::{Tail, WakeOnEnd};
use crate::Event;

/// A pause this long is logged (once per pause).
const PAUSE_WARNING: Duration = Duration::from_secs(1);

/// The most events gathered for a subscription before they are sent.
const BATCH: usize = 1024;

/// A subscriber, the events gathered for it this round, and those it has had no room for.
#[derive(Debug)]
struct Subscriber {
    tx: Sender<Vec<Event>>,
    tail: Arc<Tail>,
    batch: Vec<Event>,
    /// How many more events may be gathered before the subscription's room is looked at
    /// again: it is read once per batch, not per event (the receiver writes that count).
    budget: usize,
    overflow: VecDeque<Event>,
    /// How many events had been emitted (`Subscribers::emitted`) when it was adopted: it
    /// gets every one after, so the hub's `n`th event is its `n - base`th.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    base: u64,
    /// Wakes the tasks awaiting the subscription once `tx` is dropped: the last field.
    _end: WakeOnEnd,
}

#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    list: Vec<Subscriber>,
    /// Subscribers with an overflow: while there are any, the hub is paused.
    backlogged: usize,
    /// When the current pause began, and whether it has been logged.
    paused_since: Option<Instant>,
    warned: bool,
    /// Events emitted so far (monotonic): a mark that subscribers' `Tail::done` is
    /// compared with (see [`done_with`](Self::done_with)).
    emitted: u64,
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
        self.emitted += 1;
        let before = self.list.len();
        // Every subscription but the last gets a clone (payloads are shared, not copied).
        let last = before.saturating_sub(1);
        let mut index = 0;
        let mut event = Some(event);
        let mut overflowing = false;
        self.list.retain_mut(|sub| {
            let this = if index == last {
                event.take()
            } else {
                event.clone()
            };
            index += 1;
            let keep = this.map_or(true, |event| sub.offer(event));
            overflowing |= keep && !sub.overflow.is_empty();
            keep
        });
        if self.list.len() < before {
            log::debug!("{} subscription(s) dropped", before - self.list.len());
        }
        // Only an overflow starts a pause, and only a drained one ends it.
        if self.backlogged > 0 || overflowing {
            self.update_paused(shared, now);
        }
    }

    /// How many events have been emitted so far: the mark of the last one.
    pub(crate) fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Whether every subscription's host has finished with the events up to `mark` (see
    /// `Tail::done`). A dropped subscription counts as done, and so does one adopted after
    /// them; with no subscription, all are done.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) fn done_with(&self, mark: u64) -> bool {
        self.list.iter().all(|sub| {
            sub.base >= mark || sub.tail.is_gone() || sub.tail.done.load(SeqCst) >= mark - sub.base
        })
    }

    /// Sends every subscription what was gathered for it, at the end of a round.
    fn send_gathered(&mut self) {
        self.list.retain_mut(Subscriber::send_batch);
    }

    /// Moves backlogged events into subscription queues as they drain, forgets dropped
    /// subscriptions, and logs a pause that lasts.
    pub(crate) fn feed(&mut self, shared: &Shared, now: Instant) {
        self.adopt(shared);
        if self.backlogged > 0 {
            self.list.retain_mut(Subscriber::drain);
        }
        self.send_gathered();
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
        // A plain load first: this runs for every event, and a swap would write the
        // shared flag's cache line each time.
        if shared.inbox_pending.load(Relaxed) && shared.inbox_pending.swap(false, SeqCst) {
            let pending = std::mem::take(&mut shared.inbox().pending);
            let base = self.emitted;
            self.list.extend(pending.into_iter().map(|new| Subscriber {
                tx: new.tx,
                tail: new.tail,
                batch: Vec::new(),
                budget: 0,
                overflow: VecDeque::new(),
                base,
                _end: new.end,
            }));
        }
    }

    /// Publishes whether the hub is paused, without losing a wake-up: a subscription checks
    /// the flag after each receive and when it is dropped, so after raising it the
    /// dispatcher looks at the queues once more, in case the subscription emptied them or
    /// went away just before (the fences on both sides order the flag against the queue
    /// and the subscription's `gone` flag).
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
        for mut sub in self.list.drain(..) {
            sub.send_batch();
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
    /// Gathers `event` to be sent with the others, or queues it behind a backlog. Returns
    /// `false` if the receiver is gone.
    fn offer(&mut self, event: Event) -> bool {
        if self.overflow.is_empty() && self.budget == 0 {
            // Looked at once per batch, like the room: a dropped subscription that is full
            // must not start a pause.
            if self.tail.is_gone() {
                return false;
            }
            self.budget = self.tail.room().saturating_sub(self.batch.len());
        }
        if !self.overflow.is_empty() || self.budget == 0 {
            // Full: what is gathered goes now, and this event waits (the hub pauses).
            let alive = self.send_batch();
            self.overflow.push_back(event);
            return alive;
        }
        self.budget -= 1;
        self.batch.push(event);
        self.batch.len() < BATCH || self.send_batch()
    }

    /// Sends what was gathered, as far as the subscription has room; the rest waits in the
    /// overflow. Returns `false` if the receiver is gone.
    fn send_batch(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let room = self.tail.room();
        if room < self.batch.len() {
            // Nothing was in the overflow while events were gathered.
            self.overflow.extend(self.batch.drain(room..));
        }
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::take(&mut self.batch);
        self.send(batch)
    }

    /// Moves backlogged events into the channel as far as there is room. Returns `false`
    /// if the subscription was dropped: found by its flag, not by a failed send, since a
    /// full one is never sent to (and a paused hub makes no new events).
    fn drain(&mut self) -> bool {
        if self.tail.is_gone() {
            return false;
        }
        let n = self.tail.room().min(self.overflow.len());
        if n == 0 {
            return true;
        }
        let batch: Vec<Event> = self.overflow.drain(..n).collect();
        self.send(batch)
    }

    fn send(&mut self, batch: Vec<Event>) -> bool {
        let n = batch.len();
        // Counted first, so the receiver's count never goes below zero.
        self.tail.queued.fetch_add(n, SeqCst);
        if self.tx.send(batch).is_err() {
            self.tail.queued.fetch_sub(n, SeqCst);
            return false;
        }
        // Tasks awaiting the subscription (`Subscription::recv_async`): one fence and one
        // load per batch while none does.
        self.tail.events_sent();
        true
    }
}
