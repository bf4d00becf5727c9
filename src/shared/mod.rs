//! State the host's handle, subscriptions and the dispatcher share: the waker, the hub's
//! life-cycle state, the budget of work waiting for the dispatcher, the registry of clients
//! and the counters. What each subscription shares with the dispatcher is `subscribers`.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker as TaskWaker;
use std::time::{Duration, Instant};

use mio::Waker;

use crate::stats::Counters;
use crate::topics::order::Decisions;
use crate::topics::{TopicId, TopicTable};
use crate::{ClientId, ClientInfo, Error, Result, Transport, WouldBlock};

mod subscribers;
#[cfg(feature = "stream")]
pub(crate) use subscribers::STREAM_KEY;
pub(crate) use subscribers::{Inbox, NewSubscriber, Tail, WakeOnEnd};

/// The hub takes work.
const RUNNING: u8 = 0;
/// `shutdown` was called, or the dispatcher stopped after a shutdown.
const CLOSED: u8 = 1;
/// The dispatcher died (a panic, or its event loop failed).
const FAILED: u8 = 2;

thread_local! {
    /// The `Shared` whose dispatcher runs on this thread (its address), or 0. Lets host
    /// calls made from the hub's own closures see that they must not wait for the thread
    /// they run on.
    static DISPATCHER_OF: Cell<usize> = const { Cell::new(0) };
}

/// Locks a mutex whose data no panic can leave half-updated (counters, lists, flags).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the registry knows of a connected client, for [`Hub::clients`](crate::Hub::clients)
/// and id checks.
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) addr: SocketAddr,
    pub(crate) name: Option<String>,
    pub(crate) dropped: Arc<AtomicU64>,
    /// The topics it is in, as the host's calls left them.
    pub(crate) topics: Vec<TopicId>,
    /// Its user key: the same allocation as its key in `Registry::users`.
    pub(crate) user: Option<Arc<str>>,
}

/// The connected clients and the topics, under one lock so that membership is exact: a
/// client joins a topic only while it is connected, and leaves every topic as it leaves.
/// The same holds for users: a client is in `users` exactly while it is in `clients`.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) clients: HashMap<ClientId, Registered>,
    /// The clients of each user key (`Admit::user`), in ascending id order, never empty: a
    /// user whose last client leaves is removed, so the index holds only connected users.
    /// Written only by the dispatcher (as clients become live and leave), which is what
    /// makes its check of `max_clients_per_user` and the admission that follows one step.
    pub(crate) users: HashMap<Arc<str>, Vec<ClientId>>,
    pub(crate) topics: TopicTable,
    /// Every join and leave decided here, by the host or by a client, numbered in the
    /// order it was decided.
    pub(crate) decisions: Decisions,
}

impl Registry {
    /// Forgets a client that left, and takes it out of its topics and its user. Returns the
    /// topics it left empty (to free, or keep for their replay ring).
    pub(crate) fn remove(&mut self, id: ClientId) -> Vec<TopicId> {
        let Some(mut client) = self.clients.remove(&id) else {
            return Vec::new();
        };
        if let Some(user) = client.user.take() {
            self.forget_user(&user, id);
        }
        let mut emptied = Vec::new();
        while let Some(&topic) = client.topics.last() {
            if self.topics.leave(topic, &mut client.topics) {
                emptied.push(topic);
            }
        }
        emptied
    }

    /// How many clients `user` has now.
    pub(crate) fn user_len(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, Vec::len)
    }

    /// Files client `id` under `user` and returns the key to keep in its entry: the
    /// index's own, so a user's key is allocated once however many clients it has.
    pub(crate) fn add_user(&mut self, user: &str, id: ClientId) -> Arc<str> {
        let key = match self.users.get_key_value(user) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(user),
        };
        let ids = self.users.entry(Arc::clone(&key)).or_default();
        // Ids grow with time but clients may go live out of order (handshakes differ).
        let at = ids.partition_point(|&other| other < id);
        ids.insert(at, id);
        key
    }

    /// Takes client `id` out of `user`'s clients, and the user out of the index with its
    /// last client.
    fn forget_user(&mut self, user: &str, id: ClientId) {
        let Some(ids) = self.users.get_mut(user) else {
            return;
        };
        ids.retain(|&other| other != id);
        if ids.is_empty() {
            self.users.remove(user);
        } else if ids.capacity() > 4 * ids.len() {
            // A user who had many clients once keeps no more room than it needs now.
            ids.shrink_to_fit();
        }
    }
}

impl Registered {
    /// What the host is shown of this client.
    pub(crate) fn info(&self, id: ClientId, topics: &TopicTable) -> ClientInfo {
        let mut names: Vec<String> = self
            .topics
            .iter()
            .filter_map(|&t| Some(topics.name(t)?.to_string()))
            .collect();
        names.sort_unstable();
        ClientInfo {
            id,
            addr: self.addr,
            name: self.name.clone(),
            dropped: self.dropped.load(Relaxed),
            topics: names,
            user: self.user.as_deref().map(str::to_owned),
        }
    }
}

/// Work handed to the dispatcher and not yet taken, bounded in commands and in frame bytes.
/// Both counts live in one atomic word (commands in the top 24 bits) so that one
/// compare-and-swap reserves both.
#[derive(Debug)]
struct Budget {
    pending: AtomicU64,
    max_bytes: u64,
    max_commands: u64,
    /// Host threads and async sends waiting for room (`tasks` holds the latter), and
    /// where the threads wait.
    waiters: AtomicUsize,
    room: Mutex<()>,
    freed: Condvar,
    /// Async sends waiting for room (`hub/asynchronous.rs`): woken with the threads.
    tasks: Mutex<SendTasks>,
}

/// The wakers of async sends waiting for room, each under the number its future keeps to
/// replace or remove it. Every waker here is counted in `Budget::waiters`, under this
/// list's lock, so the dispatcher's one load of that count tells it whether anyone waits.
#[derive(Debug, Default)]
struct SendTasks {
    next: u64,
    wakers: Vec<(u64, TaskWaker)>,
}

const COMMAND_SHIFT: u32 = 40;
const BYTES_MASK: u64 = (1 << COMMAND_SHIFT) - 1;

/// The largest `queue_bytes` and `command_capacity` the budget can count.
pub(crate) const MAX_BUDGET_BYTES: usize = (1 << COMMAND_SHIFT) - 1;
pub(crate) const MAX_BUDGET_COMMANDS: usize = (1 << (64 - COMMAND_SHIFT)) - 1;

impl Budget {
    /// Whether `bytes` more fit. Something always fits when nothing is pending, so one
    /// message of any accepted size can always be sent.
    fn fits(&self, pending: u64, bytes: u64) -> bool {
        let (commands, held) = (pending >> COMMAND_SHIFT, pending & BYTES_MASK);
        pending == 0 || (commands < self.max_commands && held + bytes <= self.max_bytes)
    }

    fn try_reserve(&self, bytes: usize) -> bool {
        let bytes = bytes as u64;
        let mut pending = self.pending.load(SeqCst);
        while self.fits(pending, bytes) {
            let new = pending + (1 << COMMAND_SHIFT) + bytes;
            match self.pending.compare_exchange(pending, new, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(now) => pending = now,
            }
        }
        false
    }
}

/// One listener as the metrics show it: its address, what it speaks, and how many live
/// clients came through it (written by the dispatcher as they go live and leave).
#[derive(Debug)]
pub(crate) struct ListenerGauge {
    pub(crate) addr: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) clients: AtomicU64,
}

/// State shared by the [`Hub`](crate::Hub) handle, [`Subscription`](crate::Subscription)s
/// and the dispatcher thread.
#[derive(Debug)]
pub(crate) struct Shared {
    waker: Waker,
    /// Set by the first caller to wake the dispatcher, cleared by the dispatcher before it
    /// drains commands: one `eventfd` write per round, not one per broadcast.
    notified: AtomicBool,
    state: AtomicU8,
    /// Why the dispatcher died, once it has.
    failure: Mutex<Option<String>>,
    /// The dispatcher stopped reading clients because a subscriber's queue is full.
    paused: AtomicBool,
    /// The dispatcher is leaving host calls waiting while a client catches up
    /// (`flow_control`).
    flow_held: AtomicBool,
    budget: Budget,
    /// When the hub started: the origin of the times kept in atomics.
    pub(crate) epoch: Instant,
    pub(crate) counters: Counters,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) inbox: Mutex<Inbox>,
    /// Whether `inbox.pending` may be non-empty; spares the dispatcher a lock per event.
    pub(crate) inbox_pending: AtomicBool,
    /// The number of the host's last join or leave decision (`Decisions::host`), stored
    /// under the registry's lock as it is made: the dispatcher's publish check compares it
    /// with the last it applied to learn, without that lock, whether one is on its way.
    pub(crate) host_decided: AtomicU64,
    /// How many clients broke their protocol and wait, still live, for subscribers to be
    /// done with their messages before they leave: while any do, a subscription that
    /// publishes its `Tail::done` wakes the dispatcher.
    pub(crate) failing: AtomicUsize,
    /// Every listener, in the dispatcher's order (a client's `listener` indexes it), with
    /// its live clients. Set before the dispatcher starts.
    pub(crate) listeners: Vec<ListenerGauge>,
    /// Live clients by wire (written by the dispatcher as they go live and leave).
    pub(crate) wires: crate::wire::PerWire<AtomicU64>,
    /// Whether the hub has a backplane (feature `nats`): only then do its cluster
    /// counters mean anything. Set before the dispatcher starts.
    pub(crate) clustered: bool,
    /// When the dispatcher's current round began, in nanoseconds since `epoch` plus one; 0
    /// while it waits in `poll` (idle, not lagging) or once it has stopped.
    round_since: AtomicU64,
    /// The dispatcher thread has returned (after a shutdown, or failing).
    stopped: AtomicBool,
}

impl Shared {
    pub(crate) fn new(waker: Waker, max_bytes: usize, max_commands: usize) -> Self {
        Shared {
            waker,
            notified: AtomicBool::new(false),
            state: AtomicU8::new(RUNNING),
            failure: Mutex::new(None),
            paused: AtomicBool::new(false),
            flow_held: AtomicBool::new(false),
            budget: Budget {
                pending: AtomicU64::new(0),
                max_bytes: max_bytes as u64,
                max_commands: max_commands as u64,
                waiters: AtomicUsize::new(0),
                room: Mutex::new(()),
                freed: Condvar::new(),
                tasks: Mutex::default(),
            },
            epoch: Instant::now(),
            counters: Counters::default(),
            registry: Mutex::new(Registry::default()),
            inbox: Mutex::new(Inbox::default()),
            inbox_pending: AtomicBool::new(false),
            host_decided: AtomicU64::new(0),
            failing: AtomicUsize::new(0),
            listeners: Vec::new(),
            wires: crate::wire::PerWire::default(),
            clustered: false,
            round_since: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    pub(crate) fn wake(&self) {
        // A plain load first: while a wake-up is pending (the dispatcher is busy), callers
        // only read the flag and do not take its cache line away from the dispatcher.
        if !self.notified.load(SeqCst) && !self.notified.swap(true, SeqCst) {
            if let Err(err) = self.waker.wake() {
                log::error!("failed to wake the hubcast dispatcher: {err}");
            }
        }
    }

    /// Called by the dispatcher before it drains commands.
    pub(crate) fn clear_notified(&self) {
        self.notified.store(false, SeqCst);
    }

    /// `Ok` while the hub takes work; otherwise why not.
    pub(crate) fn check(&self) -> Result<()> {
        match self.state.load(SeqCst) {
            RUNNING => Ok(()),
            CLOSED => Err(Error::Closed),
            _ => Err(self.failure_error()),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(SeqCst) != RUNNING
    }

    pub(crate) fn failure_error(&self) -> Error {
        let cause = lock(&self.failure).clone();
        Error::Failed {
            cause: cause.unwrap_or_else(|| "unknown".to_owned()),
        }
    }

    /// Marks the hub closed (a shutdown began). Returns `false` if it already was.
    pub(crate) fn close(&self) -> bool {
        let closed = self
            .state
            .compare_exchange(RUNNING, CLOSED, SeqCst, SeqCst)
            .is_ok();
        self.notify_room();
        closed
    }

    /// Marks the hub failed, forgets every client and ends subscriptions not yet adopted:
    /// from now on every call fails at once with [`Error::Failed`] and nothing waits.
    pub(crate) fn fail(&self, cause: String) {
        *lock(&self.failure) = Some(cause);
        self.state.store(FAILED, SeqCst);
        *lock(&self.registry) = Registry::default();
        self.counters.connected.store(0, SeqCst);
        self.counters.adopted.store(0, SeqCst);
        for listener in &self.listeners {
            listener.clients.store(0, SeqCst);
        }
        for (_, clients) in self.wires.iter() {
            clients.store(0, SeqCst);
        }
        self.close_inbox();
        self.set_paused(false);
        self.notify_room();
    }

    /// Ends subscriptions the dispatcher never adopted, and any made from now on.
    pub(crate) fn close_inbox(&self) {
        let mut inbox = lock(&self.inbox);
        inbox.closed = true;
        inbox.pending.clear();
    }

    /// Marks the calling thread as this hub's dispatcher.
    pub(crate) fn enter_dispatcher(self: &Arc<Self>) {
        DISPATCHER_OF.with(|d| d.set(Arc::as_ptr(self) as usize));
    }

    /// Whether the calling thread is this hub's dispatcher (a host closure is running).
    pub(crate) fn on_dispatcher_thread(&self) -> bool {
        DISPATCHER_OF.with(|d| d.get() == self as *const Self as usize)
    }

    /// Counts one command of `bytes` frame bytes as pending, if it fits now.
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        self.budget.try_reserve(bytes)
    }

    /// Whether a command of `bytes` frame bytes fits now (it may not by the time the
    /// caller tries to reserve).
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        let budget = &self.budget;
        budget.fits(budget.pending.load(SeqCst), bytes as u64)
    }

    /// Why a reservation failed, for [`Error::WouldBlock`].
    pub(crate) fn would_block(&self) -> Error {
        if self.flow_held.load(SeqCst) {
            Error::WouldBlock(WouldBlock::FlowControl)
        } else {
            Error::WouldBlock(WouldBlock::Backlog)
        }
    }

    /// Waits until a command of `bytes` may fit (it may not, by the time the caller tries:
    /// another thread can take the room first). Fails once the hub stops taking work.
    pub(crate) fn wait_for_room(&self, bytes: usize) -> Result<()> {
        let budget = &self.budget;
        // The waiter count and the pending count pair up as in `release`: either the
        // dispatcher sees this waiter, or this sees the room it made.
        budget.waiters.fetch_add(1, SeqCst);
        let mut guard = lock(&budget.room);
        let result = loop {
            if let Err(err) = self.check() {
                break Err(err);
            }
            if budget.fits(budget.pending.load(SeqCst), bytes as u64) {
                break Ok(());
            }
            self.wake();
            guard = budget
                .freed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        };
        drop(guard);
        budget.waiters.fetch_sub(1, SeqCst);
        result
    }

    /// Called by the dispatcher for the commands it took and their frame bytes.
    pub(crate) fn release(&self, commands: usize, bytes: usize) {
        if commands > 0 {
            let taken = ((commands as u64) << COMMAND_SHIFT) + bytes as u64;
            self.budget.pending.fetch_sub(taken, SeqCst);
        }
        if self.budget.waiters.load(SeqCst) > 0 {
            self.notify_room();
        }
    }

    /// Wakes host threads and async sends waiting for room (also when the hub stops).
    fn notify_room(&self) {
        {
            let _guard = lock(&self.budget.room);
            self.budget.freed.notify_all();
        }
        // Taken off the list as they are woken: each registers again if it still finds
        // no room. Woken outside the lock (a waker may run anything).
        let woken = {
            let mut tasks = lock(&self.budget.tasks);
            let woken = std::mem::take(&mut tasks.wakers);
            self.budget.waiters.fetch_sub(woken.len(), SeqCst);
            woken
        };
        for (_, waker) in woken {
            waker.wake();
        }
    }

    /// Files `waker` among the async sends waiting for room, under the number in `slot`
    /// (given one if it has none, or if a wake-up took its entry off the list). The caller
    /// then tries again before it returns `Pending`: the count is raised before that try
    /// reads the budget, so either the try sees the room `release` made, or `release` sees
    /// the count and wakes this waker (as with `wait_for_room`).
    pub(crate) fn register_task(&self, slot: &mut Option<u64>, waker: &TaskWaker) {
        let mut tasks = lock(&self.budget.tasks);
        if let Some(id) = *slot {
            if let Some((_, filed)) = tasks.wakers.iter_mut().find(|(at, _)| *at == id) {
                if !filed.will_wake(waker) {
                    filed.clone_from(waker);
                }
                return;
            }
        }
        let id = tasks.next;
        tasks.next += 1;
        tasks.wakers.push((id, waker.clone()));
        self.budget.waiters.fetch_add(1, SeqCst);
        *slot = Some(id);
    }

    /// Takes the waker filed under `slot` off the list, if a wake-up has not already (a
    /// send that finished, or a future dropped while waiting).
    pub(crate) fn deregister_task(&self, slot: &mut Option<u64>) {
        let Some(id) = slot.take() else {
            return;
        };
        let mut tasks = lock(&self.budget.tasks);
        if let Some(at) = tasks.wakers.iter().position(|(filed, _)| *filed == id) {
            tasks.wakers.swap_remove(at);
            self.budget.waiters.fetch_sub(1, SeqCst);
        }
    }

    /// The pending budget's raw word (commands in the top bits), for tests.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> u64 {
        self.budget.pending.load(SeqCst)
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(SeqCst)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, SeqCst);
    }

    pub(crate) fn set_flow_held(&self, held: bool) {
        if self.flow_held.load(SeqCst) != held {
            self.flow_held.store(held, SeqCst);
        }
    }

    /// Called by the dispatcher as a round begins (`poll` returned) at `now`.
    pub(crate) fn round_begins(&self, now: Instant) {
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let since = u64::try_from(since).unwrap_or(u64::MAX - 1) + 1;
        self.round_since.store(since, Relaxed);
    }

    /// Called by the dispatcher before it waits in `poll`: it is idle, not lagging.
    pub(crate) fn round_ends(&self) {
        self.round_since.store(0, Relaxed);
    }

    /// How long the dispatcher's current round has been running: zero while it waits for
    /// work in `poll`, and once it has stopped.
    pub(crate) fn lag(&self) -> Duration {
        match self.round_since.load(Relaxed) {
            0 => Duration::ZERO,
            since => {
                let since = self.epoch + Duration::from_nanos(since - 1);
                Instant::now().saturating_duration_since(since)
            }
        }
    }

    /// Called as the dispatcher thread returns, whatever the reason.
    pub(crate) fn set_stopped(&self) {
        self.round_ends();
        self.stopped.store(true, SeqCst);
    }

    /// Whether the dispatcher thread is running: it has not returned and has not failed.
    pub(crate) fn is_running(&self) -> bool {
        !self.stopped.load(SeqCst) && self.state.load(SeqCst) != FAILED
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub(crate) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        lock(&self.inbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(bytes: usize, commands: usize) -> Shared {
        let poll = mio::Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), mio::Token(0)).unwrap();
        Shared::new(waker, bytes, commands)
    }

    #[test]
    fn budget_counts_bytes_and_commands() {
        let s = shared(100, 2);
        // Anything fits when nothing is pending, even over the byte bound.
        assert!(s.try_reserve(500));
        assert!(!s.try_reserve(1));
        s.release(1, 500);
        assert!(s.try_reserve(60));
        assert!(s.try_reserve(40));
        assert!(!s.try_reserve(0), "two commands is the limit");
        s.release(2, 100);
        assert!(s.try_reserve(0));
    }

    #[test]
    fn a_failed_hub_wakes_waiters_with_the_cause() {
        let s = Arc::new(shared(10, 10));
        assert!(s.try_reserve(10));
        let waiter = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || s.wait_for_room(10))
        };
        s.fail("boom".to_owned());
        match waiter.join().unwrap() {
            Err(Error::Failed { cause }) => assert_eq!(cause, "boom"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(s.is_closed());
        assert!(matches!(s.check(), Err(Error::Failed { .. })));
    }

    /// An async send's waker is woken by the room `release` makes and by a close, taken
    /// off the list as it is woken, and leaves no count behind when deregistered.
    #[test]
    fn task_wakers_are_woken_with_the_room_and_counted_exactly() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = TaskWaker::from(Arc::clone(&count));
        let s = shared(10, 10);
        assert!(s.try_reserve(10));
        let mut slot = None;
        s.register_task(&mut slot, &waker);
        // Filed again under the same number: counted once.
        s.register_task(&mut slot, &waker);
        assert_eq!(s.budget.waiters.load(SeqCst), 1);
        s.release(1, 10);
        assert_eq!(count.0.load(SeqCst), 1);
        assert_eq!(s.budget.waiters.load(SeqCst), 0, "woken means off the list");
        // Deregistering after the wake-up changes nothing.
        s.deregister_task(&mut slot);
        assert_eq!(s.budget.waiters.load(SeqCst), 0);
        // Registered, then dropped (cancelled): off the list, and no wake-up.
        s.register_task(&mut slot, &waker);
        s.deregister_task(&mut slot);
        assert_eq!(s.budget.waiters.load(SeqCst), 0);
        s.release(0, 0);
        assert_eq!(count.0.load(SeqCst), 1);
        // A close wakes it.
        s.register_task(&mut slot, &waker);
        s.close();
        assert_eq!(count.0.load(SeqCst), 2);
        assert_eq!(s.budget.waiters.load(SeqCst), 0);
    }

    /// The user index keeps one key per user, shared by its clients' entries, lists ids in
    /// ascending order whatever the order they went live in, and forgets a user with its
    /// last client.
    #[test]
    fn the_user_index_is_freed_as_clients_leave() {
        let mut registry = Registry::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for id in [3, 1, 2] {
            let id = ClientId(id);
            let user = registry.add_user("alice", id);
            registry.clients.insert(
                id,
                Registered {
                    addr,
                    name: None,
                    dropped: Arc::default(),
                    topics: Vec::new(),
                    user: Some(user),
                },
            );
        }
        assert_eq!(
            registry.users["alice"],
            [ClientId(1), ClientId(2), ClientId(3)]
        );
        let (key, _) = registry.users.get_key_value("alice").unwrap();
        for client in registry.clients.values() {
            assert!(Arc::ptr_eq(client.user.as_ref().unwrap(), key));
        }
        registry.remove(ClientId(2));
        assert_eq!(registry.user_len("alice"), 2);
        registry.remove(ClientId(1));
        registry.remove(ClientId(3));
        assert!(registry.users.is_empty());
        assert!(registry.clients.is_empty());
    }

    #[test]
    fn only_the_dispatcher_thread_is_recognised() {
        let s = Arc::new(shared(10, 10));
        assert!(!s.on_dispatcher_thread());
        let t = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                s.enter_dispatcher();
                s.on_dispatcher_thread()
            })
        };
        assert!(t.join().unwrap());
        assert!(!s.on_dispatcher_thread());
    }
}
