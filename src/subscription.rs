//! Subscriptions: the host's receiving end of the hub's events, and its errors.

use std::fmt;
use std::sync::atomic::{fence, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::shared::{Shared, Tail};
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
    rx: Receiver<Event>,
    tail: Arc<Tail>,
    shared: Arc<Shared>,
}

impl Subscription {
    pub(crate) fn new(rx: Receiver<Event>, tail: Arc<Tail>, shared: Arc<Shared>) -> Self {
        Subscription { rx, tail, shared }
    }

    /// Blocks until the next event, or returns `Err` once the hub has stopped and every
    /// event has been received.
    pub fn recv(&self) -> Result<Event, RecvError> {
        let event = self.rx.recv().ok().or_else(|| self.tail.pop());
        self.after_recv();
        event.ok_or(RecvError)
    }

    /// Returns the next event if one is queued, without blocking.
    pub fn try_recv(&self) -> Result<Event, TryRecvError> {
        let event = match self.rx.try_recv() {
            Ok(event) => Ok(event),
            Err(crossbeam_channel::TryRecvError::Empty) => Err(TryRecvError::Empty),
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                self.tail.pop().ok_or(TryRecvError::Closed)
            }
        };
        self.after_recv();
        event
    }

    /// Waits at most `timeout` for the next event. Any timeout is accepted; one too long to
    /// represent waits for ever.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let event = match self.rx.recv_timeout(timeout) {
            Ok(event) => Ok(event),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(RecvTimeoutError::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                self.tail.pop().ok_or(RecvTimeoutError::Closed)
            }
        };
        self.after_recv();
        event
    }

    /// The number of events queued for this subscription.
    pub fn len(&self) -> usize {
        self.rx.len() + self.tail.len()
    }

    /// Whether no event is queued for this subscription.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A blocking iterator over events that ends when the hub has stopped.
    pub fn iter(&self) -> Iter<'_> {
        Iter { sub: self }
    }

    /// Once this queue has half drained, wakes a dispatcher that paused for it. The fence
    /// pairs with the dispatcher's (see `dispatcher::subscribers`): either it sees the room
    /// made here, or this sees its flag.
    fn after_recv(&self) {
        fence(SeqCst);
        if self.shared.is_paused() && self.rx.len() <= self.rx.capacity().unwrap_or(0) / 2 {
            self.shared.wake();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The dispatcher may be paused on this queue: disconnect first, then wake it so it
        // finds the receiver gone.
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
