//! Subscriptions: the host's receiving end of the hub's events, and its errors.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{fence, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::shared::{lock, Shared, Tail};
use crate::Event;

/// [`Subscription::recv`] found the subscription ended: the hub has stopped and every event
/// has been received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the hub has stopped and every event has been received")]
pub struct RecvError;

/// Why [`Subscription::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No event is queued now.
    #[error("no event is queued")]
    Empty,
    /// The hub has stopped and every event has been received.
    #[error("the hub has stopped and every event has been received")]
    Closed,
}

/// Why [`Subscription::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No event came within the timeout.
    #[error("no event within the timeout")]
    Timeout,
    /// The hub has stopped and every event has been received.
    #[error("the hub has stopped and every event has been received")]
    Closed,
}

/// A receiver of every [`Event`] of one hub, made by [`Hub::subscribe`](crate::Hub::subscribe).
///
/// Each subscription has its own bounded queue
/// ([`event_capacity`](crate::HubBuilder::event_capacity)). While any subscription's queue is
/// full the hub stops reading from clients and stops accepting new ones, so TCP flow
/// control pushes back on the senders: nothing is dropped and memory stays bounded. Drain
/// your subscriptions, or drop the ones you no longer need: a subscription nobody drains
/// stops the whole hub from reading (a pause over a second is logged at `warn`, and
/// [`Stats::paused`](crate::Stats::paused) shows it).
///
/// The stream ends (iteration stops, [`recv`](Self::recv) returns `Err`) once the hub has
/// stopped — shut down, or [failed](crate::Error::Failed) — and every queued event has been
/// received. Events the queue had no room for when the hub stopped come last; shutting down
/// never waits for a subscriber.
pub struct Subscription {
    rx: Receiver<Vec<Event>>,
    /// The rest of the last batch received: events arrive in batches, a round of the
    /// dispatcher's at a time. Locked while a receive waits on the channel, so batches are
    /// taken in order whatever threads share the subscription.
    local: Mutex<Local>,
    tail: Arc<Tail>,
    shared: Arc<Shared>,
}

/// The rest of the last batch, how many events were taken since the count shared with
/// the dispatcher was last lowered, and how many were taken in all (and of those, how many
/// were last published as done, `Tail::done`).
#[derive(Default)]
struct Local {
    events: VecDeque<Event>,
    taken: usize,
    total: u64,
    published: u64,
}

/// The shared count is lowered every this many events, or when a batch is used up: once
/// per event, the receiving thread and the dispatcher would pass its cache line back and
/// forth. Until then the count is a little high, which only makes the bound stricter.
const RELEASE_EVERY: usize = 64;

/// How often a receive that finds another thread waiting on the same subscription looks
/// again, until its own deadline.
const CONTENDED_POLL: Duration = Duration::from_millis(1);

impl Subscription {
    pub(crate) fn new(rx: Receiver<Vec<Event>>, tail: Arc<Tail>, shared: Arc<Shared>) -> Self {
        Subscription {
            rx,
            local: Mutex::new(Local::default()),
            tail,
            shared,
        }
    }

    /// Blocks until the next event, or returns `Err` once the hub has stopped and every
    /// event has been received.
    pub fn recv(&self) -> Result<Event, RecvError> {
        let mut local = lock(&self.local);
        loop {
            if let Some(event) = self.take(&mut local) {
                return Ok(event);
            }
            match self.rx.recv() {
                Ok(batch) => local.events.extend(batch),
                Err(_) => return self.tail.pop().ok_or(RecvError),
            }
        }
    }

    /// Returns the next event if one is queued, without blocking. While another thread
    /// waits in [`recv`](Self::recv) on this same subscription, the next event is that
    /// thread's, and this returns [`TryRecvError::Empty`].
    pub fn try_recv(&self) -> Result<Event, TryRecvError> {
        let Ok(mut local) = self.local.try_lock() else {
            return Err(TryRecvError::Empty);
        };
        if local.events.is_empty() {
            self.came_back(&mut local);
            match self.rx.try_recv() {
                Ok(batch) => local.events.extend(batch),
                Err(crossbeam_channel::TryRecvError::Empty) => return Err(TryRecvError::Empty),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return self.tail.pop().ok_or(TryRecvError::Closed);
                }
            }
        }
        self.take(&mut local).ok_or(TryRecvError::Empty)
    }

    /// Waits at most `timeout` for the next event. Any timeout is accepted; one too long to
    /// represent waits for ever.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // Another thread waiting on this subscription holds the lock: look again now and
        // then, never past the deadline.
        let mut local = loop {
            match self.local.try_lock() {
                Ok(local) => break local,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => match left() {
                    Some(left) if left.is_zero() => return Err(RecvTimeoutError::Timeout),
                    left => {
                        std::thread::sleep(left.map_or(CONTENDED_POLL, |l| l.min(CONTENDED_POLL)))
                    }
                },
            }
        };
        loop {
            if let Some(event) = self.take(&mut local) {
                return Ok(event);
            }
            let received = match left() {
                Some(left) => self.rx.recv_timeout(left),
                None => self
                    .rx
                    .recv()
                    .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(batch) => local.events.extend(batch),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    return Err(RecvTimeoutError::Timeout)
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return self.tail.pop().ok_or(RecvTimeoutError::Closed);
                }
            }
        }
    }

    /// The number of events queued for this subscription.
    pub fn len(&self) -> usize {
        // Events taken but not yet subtracted from the shared count. A thread waiting in
        // `recv` holds the lock only with none of them.
        let taken = self.local.try_lock().map_or(0, |local| local.taken);
        self.tail.queued.load(SeqCst) - taken + self.tail.len()
    }

    /// Whether no event is queued for this subscription.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A blocking iterator over events that ends when the hub has stopped.
    pub fn iter(&self) -> Iter<'_> {
        Iter { sub: self }
    }

    /// Takes the next event of the batch at hand, counting it as received: every
    /// [`RELEASE_EVERY`] events, and when the batch is used up, the shared count is
    /// lowered and, once this queue has half drained, a dispatcher that paused for it is
    /// woken. The fence pairs with the dispatcher's (see `dispatcher::subscribers`): either
    /// it sees the room made here, or this sees its flag.
    fn take(&self, local: &mut Local) -> Option<Event> {
        let Some(event) = local.events.pop_front() else {
            self.came_back(local);
            return None;
        };
        local.taken += 1;
        local.total += 1;
        if local.taken >= RELEASE_EVERY || local.events.is_empty() {
            let queued = self.tail.queued.fetch_sub(local.taken, SeqCst) - local.taken;
            local.taken = 0;
            fence(SeqCst);
            if self.shared.is_paused() && queued <= self.tail.capacity / 2 {
                self.shared.wake();
            }
        }
        Some(event)
    }
}

impl Subscription {
    /// The host came back for more with its batch used up: it has finished with every
    /// event it took, which is published in `Tail::done` (once per batch, like the count
    /// of queued events, never per event). A client that broke its protocol right behind
    /// its messages waits for that before it leaves, so that the host's answers to them go
    /// out before its close: if one waits, the dispatcher is woken. The fence pairs with
    /// the dispatcher's (`Dispatcher::broke_protocol`): either it sees this count, or this sees the
    /// waiting client.
    fn came_back(&self, local: &mut Local) {
        if local.total == local.published {
            return;
        }
        local.published = local.total;
        self.tail.done.store(local.total, SeqCst);
        fence(SeqCst);
        if self.shared.failing.load(SeqCst) > 0 {
            self.shared.wake();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The dispatcher may be paused, on this queue or another: say this one is gone
        // first, then wake it so it forgets it. Its count of queued events never goes down
        // now, so without the flag a full one would hold the hub paused for good. The
        // fence pairs with the dispatcher's, as in `take`: either it sees the flag, or
        // this sees it paused.
        self.tail.set_gone();
        drop(std::mem::replace(&mut self.rx, crossbeam_channel::never()));
        fence(SeqCst);
        if self.shared.is_paused() {
            self.shared.wake();
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("queued", &self.len())
            .finish()
    }
}

/// Blocking iterator over a borrowed [`Subscription`].
#[derive(Debug)]
pub struct Iter<'a> {
    sub: &'a Subscription,
}

impl Iterator for Iter<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.sub.recv().ok()
    }
}

/// Blocking iterator that owns its [`Subscription`].
#[derive(Debug)]
pub struct IntoIter {
    sub: Subscription,
}

impl Iterator for IntoIter {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.sub.recv().ok()
    }
}

impl<'a> IntoIterator for &'a Subscription {
    type Item = Event;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Subscription {
    type Item = Event;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter { sub: self }
    }
}
