//! Subscriptions: the host's receiving end of the hub's events, and its errors.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

#[cfg(feature = "stream")]
use crate::shared::STREAM_KEY;
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
///
/// In async code, [`recv_async`](Self::recv_async) waits without blocking a thread, under
/// any executor; with feature `stream`, a `Subscription` is a `futures_core::Stream` of
/// its events. The same events, order and back-pressure as [`recv`](Self::recv).
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
    /// event has been received. In async code, use [`recv_async`](Self::recv_async).
    pub fn recv(&self) -> Result<Event, RecvError> {
        let mut local = lock(&self.local);
        let received = loop {
            if let Some(event) = self.take(&mut local) {
                break Ok(event);
            }
            match self.rx.recv() {
                Ok(batch) => local.events.extend(batch),
                Err(_) => break self.tail.pop().ok_or(RecvError),
            }
        };
        self.unlock(local);
        received
    }

    /// Returns the next event if one is queued, without blocking. While another thread
    /// waits in [`recv`](Self::recv) on this same subscription, the next event is that
    /// thread's, and this returns [`TryRecvError::Empty`].
    pub fn try_recv(&self) -> Result<Event, TryRecvError> {
        match self.attempt() {
            Attempt::Event(event) => Ok(event),
            Attempt::Empty | Attempt::Locked => Err(TryRecvError::Empty),
            Attempt::Closed => Err(TryRecvError::Closed),
        }
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
        let received = loop {
            if let Some(event) = self.take(&mut local) {
                break Ok(event);
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
                    break Err(RecvTimeoutError::Timeout)
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    break self.tail.pop().ok_or(RecvTimeoutError::Closed);
                }
            }
        };
        self.unlock(local);
        received
    }

    /// The number of events queued for this subscription.
    pub fn len(&self) -> usize {
        // Events taken but not yet subtracted from the shared count. A thread waiting in
        // `recv` holds the lock only with none of them.
        let local = match self.local.try_lock() {
            Ok(local) => Some(local),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let taken = local.map_or(0, |local| {
            let taken = local.taken;
            // A task may have found it held meanwhile.
            self.unlock(local);
            taken
        });
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

/// What one look at a subscription found, without waiting.
enum Attempt {
    Event(Event),
    /// No event is queued now.
    Empty,
    /// Another receive holds the subscription's lock (a thread waiting in `recv`).
    Locked,
    /// The hub has stopped and every event has been received.
    Closed,
}

impl Subscription {
    /// Waits, without blocking the thread, for the next event; or returns `Err` once the
    /// hub has stopped and every event has been received. The same events in the same
    /// order as [`recv`](Self::recv), for any executor: no runtime is involved.
    ///
    /// The dispatcher wakes the waiting task when it delivers a batch of events to this
    /// subscription and when the subscription ends; while no task waits, that costs it
    /// one atomic load per batch.
    ///
    /// **Cancel-safe**: a future dropped before it completes has taken no event, so the
    /// next receive gets it (in a `select!`, a timeout…). Several tasks may await the same
    /// subscription (`&Subscription` is `Sync`): each event goes to one of them, and every
    /// waiting task is woken when events arrive (those that find none wait again). A task
    /// that finds another receive holding the subscription (a thread blocked in
    /// [`recv`](Self::recv)) waits until that one lets go. With feature `stream`, a
    /// `Subscription` is also a `futures_core::Stream` of its events.
    ///
    /// ```
    /// use std::future::Future;
    /// use std::io::Write;
    /// use std::sync::Arc;
    /// use std::task::{Context, Poll, Wake, Waker};
    /// use std::thread::{self, Thread};
    /// use std::time::Duration;
    ///
    /// use hubcast::{Event, Hub};
    ///
    /// // The smallest executor: poll on this thread, park until woken. Any runtime does.
    /// struct Unpark(Thread);
    /// impl Wake for Unpark {
    ///     fn wake(self: Arc<Self>) {
    ///         self.0.unpark();
    ///     }
    /// }
    /// fn block_on<F: Future>(future: F) -> F::Output {
    ///     let mut future = std::pin::pin!(future);
    ///     let waker = Waker::from(Arc::new(Unpark(thread::current())));
    ///     let mut cx = Context::from_waker(&waker);
    ///     loop {
    ///         if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
    ///             return output;
    ///         }
    ///         thread::park();
    ///     }
    /// }
    ///
    /// let hub = Hub::bind("127.0.0.1:0")?;
    /// let events = hub.subscribe();
    /// let mut client = std::net::TcpStream::connect(hub.local_addr())?;
    /// client.write_all(b"hello\n")?;
    /// block_on(async {
    ///     assert!(matches!(events.recv_async().await, Ok(Event::Connected { .. })));
    ///     match events.recv_async().await {
    ///         Ok(Event::Message { payload, .. }) => assert_eq!(payload, "hello"),
    ///         other => panic!("{other:?}"),
    ///     }
    /// });
    /// drop(client);
    /// hub.shutdown(Duration::from_secs(1))?;
    /// // After the last event (the client leaving), the subscription ends.
    /// let rest: Vec<Event> = block_on(async {
    ///     let mut rest = Vec::new();
    ///     while let Ok(event) = events.recv_async().await {
    ///         rest.push(event);
    ///     }
    ///     rest
    /// });
    /// assert!(matches!(rest.last(), Some(Event::Disconnected { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn recv_async(&self) -> Result<Event, RecvError> {
        RecvAsync {
            sub: self,
            key: None,
        }
        .await
    }

    /// Takes the next event if one is at hand, without waiting, as `try_recv` does.
    fn attempt(&self) -> Attempt {
        let mut local = match self.local.try_lock() {
            Ok(local) => local,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Attempt::Locked,
        };
        let attempt = loop {
            // Like `recv`, this takes only with the batch at hand used up, and so comes
            // back for more (`came_back`).
            if let Some(event) = self.take(&mut local) {
                break Attempt::Event(event);
            }
            match self.rx.try_recv() {
                Ok(batch) => local.events.extend(batch),
                Err(crossbeam_channel::TryRecvError::Empty) => break Attempt::Empty,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    break self.tail.pop().map_or(Attempt::Closed, Attempt::Event);
                }
            }
        };
        self.unlock(local);
        attempt
    }

    /// Lets go of the subscription's lock, and wakes the tasks waiting for it, if any.
    fn unlock(&self, local: MutexGuard<'_, Local>) {
        drop(local);
        self.tail.unlocked();
    }

    /// Polls for the next event on behalf of the future or stream whose waker is kept
    /// under `key` (given one at its first registration). Looks, registers the waker,
    /// then looks again, so that no wake-up is lost: the dispatcher sends and then reads
    /// the flag the registration raised, and a receive unlocks and then reads its own (see
    /// `Tail::register`). A task that found the lock held registers as locked out, and is
    /// woken when it is let go. At most three looks.
    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        key: &mut Option<u64>,
    ) -> Poll<Result<Event, RecvError>> {
        let (mut registered, mut locked_out) = (false, false);
        loop {
            match self.attempt() {
                Attempt::Event(event) => return Poll::Ready(Ok(event)),
                Attempt::Closed => return Poll::Ready(Err(RecvError)),
                // Woken by the next batch, or as the subscription ends.
                Attempt::Empty if registered => return Poll::Pending,
                // Woken as the lock is let go.
                Attempt::Locked if locked_out => return Poll::Pending,
                Attempt::Empty => {}
                Attempt::Locked => locked_out = true,
            }
            self.tail.register(key, cx.waker(), locked_out);
            registered = true;
        }
    }
}

/// The future of [`Subscription::recv_async`]: its waker's key, taken out when it is
/// dropped (done or cancelled).
struct RecvAsync<'a> {
    sub: &'a Subscription,
    key: Option<u64>,
}

impl Future for RecvAsync<'_> {
    type Output = Result<Event, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.sub.poll_recv(cx, &mut this.key)
    }
}

impl Drop for RecvAsync<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.sub.tail.forget(key);
        }
    }
}

/// With feature `stream`: the events of [`recv_async`](Subscription::recv_async), ending
/// (`None`) once the hub has stopped and every event has been received. Dropping the
/// stream drops the subscription. To stream a borrowed subscription, poll `&mut`
/// subscription (`futures_core` implements `Stream` for `&mut S`).
#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
impl futures_core::Stream for Subscription {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut()
            .poll_recv(cx, &mut Some(STREAM_KEY))
            .map(Result::ok)
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
        // The waker of its `Stream`, if it was one, is of no more use.
        #[cfg(feature = "stream")]
        self.tail.forget(STREAM_KEY);
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::thread::{self, Thread};
    use std::time::{Duration, Instant};

    use crate::shared::Tail;
    use crate::{Event, Hub};

    const TIMEOUT: Duration = Duration::from_secs(30);

    /// Counts its wake-ups, and unparks a thread.
    struct Counting(AtomicUsize, Thread);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
            self.1.unpark();
        }
    }

    fn counting() -> (Arc<Counting>, Waker) {
        let counter = Arc::new(Counting(AtomicUsize::new(0), thread::current()));
        (Arc::clone(&counter), Waker::from(counter))
    }

    /// Polls `future` on this thread until it is ready, parking in between.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            thread::park();
        }
    }

    /// One waker per key (polling again replaces it), a forgotten key is not woken, and a
    /// wake-up wakes every registered task once and empties the list.
    #[test]
    fn registered_tasks_are_woken_once_each() {
        let tail = Tail::new(16);
        let (a, a_waker) = counting();
        let (b, b_waker) = counting();
        let (c, c_waker) = counting();
        let (mut ka, mut kb, mut kc) = (None, None, None);
        tail.register(&mut ka, &a_waker, false);
        tail.register(&mut ka, &a_waker, false);
        tail.register(&mut kb, &b_waker, false);
        tail.register(&mut kc, &c_waker, false);
        assert!(ka.is_some() && ka != kb && kb != kc);
        // Unlocking wakes only tasks locked out.
        tail.unlocked();
        assert_eq!(a.0.load(SeqCst) + b.0.load(SeqCst), 0);
        tail.forget(kc.unwrap());
        tail.events_sent();
        assert_eq!(
            [a.0.load(SeqCst), b.0.load(SeqCst), c.0.load(SeqCst)],
            [1, 1, 0]
        );
        // Woken tasks are out of the list until they register again.
        tail.events_sent();
        assert_eq!(a.0.load(SeqCst), 1);
        tail.register(&mut kb, &b_waker, true);
        tail.unlocked();
        assert_eq!([a.0.load(SeqCst), b.0.load(SeqCst)], [1, 2]);
    }

    /// A dispatcher that dies ends the subscriptions tasks await, adopted or not: every
    /// waiting `recv_async` returns `Err`.
    #[test]
    fn a_dead_dispatcher_ends_awaiting_tasks() {
        let hub = Hub::bind("127.0.0.1:0").unwrap();
        let events = Arc::new(hub.subscribe());
        let _client = std::net::TcpStream::connect(hub.local_addr()).unwrap();
        assert!(matches!(
            events.recv_timeout(TIMEOUT),
            Ok(Event::Connected { .. })
        ));
        // Never adopted: no event is emitted between this and the panic.
        let late = Arc::new(hub.subscribe());
        let waiters: Vec<_> = [&events, &late]
            .into_iter()
            .map(|sub| {
                let sub = Arc::clone(sub);
                thread::spawn(move || block_on(sub.recv_async()))
            })
            .collect();
        // Both wait (nothing announces it: look again until they do).
        let deadline = Instant::now() + TIMEOUT;
        while !(events.tail.is_awaited() && late.tail.is_awaited()) {
            assert!(Instant::now() < deadline, "the tasks never waited");
            thread::sleep(Duration::from_millis(1));
        }
        hub.inject_panic();
        for waiter in waiters {
            assert!(waiter.join().unwrap().is_err());
        }
    }
}
