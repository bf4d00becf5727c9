//! The subscribers' side of the shared state: each subscription's [`Tail`] (the count of
//! events on their way, the overflow at shutdown, the tasks awaiting it), and the
//! [`Inbox`] of subscriptions the dispatcher has not adopted yet.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use super::lock;
use crate::Event;

/// What a subscription and the dispatcher share besides the channel of batches: how many
/// events are on their way or waiting in the subscription (the bound is on those), whether
/// the subscription was dropped, and the events it had no room for when the hub stopped,
/// received after all the others.
#[derive(Debug)]
pub(crate) struct Tail {
    events: Mutex<VecDeque<Event>>,
    /// Events sent and not yet received, at most `capacity`.
    pub(crate) queued: AtomicUsize,
    pub(crate) capacity: usize,
    /// The subscription was dropped. A dropped subscription's `queued` never goes down, so
    /// a full one would never be sent to again, and its failed send never seen: the
    /// dispatcher looks at this instead.
    gone: AtomicBool,
    /// How many events the subscription's host has finished with: every event it took
    /// before it came back for more with its batch used up. Monotonic; written once per
    /// batch, not per event (see `Subscription::take`). A failing client waits on it
    /// (`dispatcher::subscribers`).
    pub(crate) done: AtomicU64,
    /// Tasks awaiting the subscription (`Subscription::recv_async`, its `Stream`).
    tasks: Tasks,
}

/// The tasks awaiting one subscription, all woken at once: by the dispatcher when it
/// delivers a batch or the subscription ends, and by a receive that lets go of the
/// subscription's lock when a task found it held. Two flags keep both checks to one load
/// while no task awaits: `awaited` (some task is registered) for the dispatcher, and
/// `locked_out` (a task found the lock held) for the receivers. Each is raised under the
/// lock of the list, then a `SeqCst` fence, then the task looks again; the other side
/// makes its change (sends the batch, drops the sender, unlocks), fences, then reads the
/// flag: either it sees the task, or the task sees the change.
#[derive(Debug, Default)]
struct Tasks {
    wakers: Mutex<Wakers>,
    awaited: AtomicBool,
    locked_out: AtomicBool,
}

/// Each awaiting future's waker under its key, so that polling it again replaces its
/// waker rather than adding one, and dropping it takes its waker out: the list holds at
/// most one waker per pending future.
#[derive(Debug, Default)]
struct Wakers {
    list: Vec<(u64, std::task::Waker)>,
    /// The last key given out (0 is the subscription's own `Stream`).
    last_key: u64,
}

/// The key of the waker of a subscription's own `Stream`: at most one polls it at a time,
/// as polling it takes the subscription by `&mut`.
#[cfg(feature = "stream")]
pub(crate) const STREAM_KEY: u64 = 0;

impl Tail {
    pub(crate) fn new(capacity: usize) -> Tail {
        Tail {
            events: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            capacity,
            gone: AtomicBool::new(false),
            done: AtomicU64::new(0),
            tasks: Tasks::default(),
        }
    }

    /// Registers the waker of a task that found no event (`locked_out`: or found the
    /// subscription's lock held), under `key` (given one if it has none). The caller then
    /// looks at the channel, or the lock, again: the fence here pairs with the one in
    /// [`events_sent`](Self::events_sent) and [`unlocked`](Self::unlocked).
    pub(crate) fn register(
        &self,
        key: &mut Option<u64>,
        waker: &std::task::Waker,
        locked_out: bool,
    ) {
        let tasks = &self.tasks;
        let mut wakers = lock(&tasks.wakers);
        let key = *key.get_or_insert_with(|| {
            wakers.last_key += 1;
            wakers.last_key
        });
        match wakers.list.iter_mut().find(|(k, _)| *k == key) {
            Some((_, known)) => {
                if !known.will_wake(waker) {
                    known.clone_from(waker);
                }
            }
            None => wakers.list.push((key, waker.clone())),
        }
        tasks.awaited.store(true, SeqCst);
        if locked_out {
            tasks.locked_out.store(true, SeqCst);
        }
        drop(wakers);
        std::sync::atomic::fence(SeqCst);
    }

    /// Takes out the waker under `key`: its future is done, or dropped.
    pub(crate) fn forget(&self, key: u64) {
        if self.tasks.awaited.load(SeqCst) {
            lock(&self.tasks.wakers).list.retain(|(k, _)| *k != key);
        }
    }

    /// Called by the dispatcher after it sent a batch, or dropped the sender (the
    /// subscription ends): wakes every awaiting task. One fence and one load while none
    /// awaits.
    pub(crate) fn events_sent(&self) {
        std::sync::atomic::fence(SeqCst);
        if self.tasks.awaited.load(Relaxed) {
            self.wake_tasks();
        }
    }

    /// Called by a receive after it let go of the subscription's lock: wakes every
    /// awaiting task if one found the lock held.
    pub(crate) fn unlocked(&self) {
        std::sync::atomic::fence(SeqCst);
        if self.tasks.locked_out.load(Relaxed) {
            self.wake_tasks();
        }
    }

    /// Whether a task awaits the subscription, for tests.
    #[cfg(test)]
    pub(crate) fn is_awaited(&self) -> bool {
        self.tasks.awaited.load(SeqCst)
    }

    /// Wakes every registered task, outside the lock (a waker may run anything).
    fn wake_tasks(&self) {
        let mut wakers = lock(&self.tasks.wakers);
        let list = std::mem::take(&mut wakers.list);
        self.tasks.awaited.store(false, SeqCst);
        self.tasks.locked_out.store(false, SeqCst);
        drop(wakers);
        for (_, waker) in list {
            waker.wake();
        }
    }

    /// Marks the subscription dropped; the caller then wakes a paused dispatcher (see
    /// `dispatcher::subscribers` for the order of the two).
    pub(crate) fn set_gone(&self) {
        self.gone.store(true, SeqCst);
    }

    /// Whether the subscription was dropped.
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(SeqCst)
    }

    /// How many more events the subscription has room for now.
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.queued.load(SeqCst))
    }

    pub(crate) fn extend(&self, events: impl IntoIterator<Item = Event>) {
        lock(&self.events).extend(events);
    }

    pub(crate) fn pop(&self) -> Option<Event> {
        lock(&self.events).pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.events).len()
    }
}

/// A subscription the dispatcher has not adopted yet: where its events go, and where the
/// ones that did not fit go once the hub stops.
#[derive(Debug)]
pub(crate) struct NewSubscriber {
    pub(crate) tx: Sender<Vec<Event>>,
    pub(crate) tail: Arc<Tail>,
    /// Declared after `tx`, so dropped after it: see [`WakeOnEnd`].
    pub(crate) end: WakeOnEnd,
}

/// Wakes the tasks awaiting a subscription as it is dropped: the last field of what holds
/// the subscription's sender (`NewSubscriber`, the dispatcher's `Subscriber`), so that it
/// is dropped after the sender (fields drop in declaration order) and a woken task finds
/// the subscription ended. That covers every way a subscription ends: a shutdown, a hub
/// that fails (its dispatcher is dropped), and one never adopted (`Shared::close_inbox`).
#[derive(Debug)]
pub(crate) struct WakeOnEnd(pub(crate) Arc<Tail>);

impl Drop for WakeOnEnd {
    fn drop(&mut self) {
        self.0.events_sent();
    }
}

/// New subscribers waiting for the dispatcher to adopt them.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pub(crate) pending: Vec<NewSubscriber>,
    /// Set when the dispatcher has stopped: later subscriptions end at once.
    pub(crate) closed: bool,
}
