//! The dispatcher thread: one `mio` event loop that owns the listener and every client
//! socket. This file holds the loop, the order of one round and the host's commands; each
//! other concern has its own file:
//!
//! - `polling`: the poll, the listeners and the read buffers every client shares;
//! - `slots`: clients by token, the one rule for stale tokens, the lists of pending work;
//! - `admission`: accepting, limits, the accept filter, the spare descriptor, back-off;
//! - `inbound`: reading, cutting frames, authentication, relaying;
//! - `websocket`: the I/O of a wire that opens with HTTP (feature `websocket`);
//! - `http`: what else such a listener answers: event streams, pages, metrics, health;
//! - `fanout`: the fan-out engine: which pieces of which batches each client gets (pure);
//! - `outbound`: queueing those pieces, flushing, and holding back for busy clients (which
//!   clients are busy is `client::flow`, a small type with the clock passed in);
//! - `protocol`: numbering messages as they fan out, and clients' `#` requests;
//! - `permissions`: who may write where, and resume what (the host's `client_topics`);
//! - `rate`: holding back, dropping or cutting clients past their rate limit;
//! - `resume`: replaying a stream to a client that comes back;
//! - `membership`: applying joins and leaves, bounding and pruning replay rings;
//! - `cluster`: the other nodes of a cluster (the backplane; empty without `nats`);
//! - `subscribers`: delivering events, and pausing reads while a subscription is full;
//! - `timers`: per-client deadlines, heartbeats and timed logs;
//! - `storm`: logging what a storm of bad connections causes once a second, not per client;
//! - `lifecycle`: going live, leaving, closing, shutting down.

use std::any::Any;
use std::io;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::command::Command;
use crate::config::Config;
use crate::shared::{lock, ListenerGauge, Shared};
use crate::stats::Tally;
use crate::wire::PerWire;
use crate::{ShutdownReport, Transport};

mod admission;
mod adoption;
mod cluster;
#[cfg(feature = "websocket")]
mod failing;
mod fanout;
#[cfg(feature = "websocket")]
mod http;
mod inbound;
mod lifecycle;
mod membership;
mod outbound;
mod permissions;
mod polling;
mod protocol;
mod rate;
mod resume;
mod slots;
mod storm;
mod subscribers;
mod timers;
mod users;
#[cfg(feature = "websocket")]
mod websocket;

use admission::{Admission, Listener};
pub(crate) use cluster::Backplane;
use slots::Slots;
use subscribers::Subscribers;
use timers::Timers;

/// The token of the waker that host calls use; listeners count down from the one below.
const WAKER: Token = Token(usize::MAX);

/// The token of listener `i`.
fn listener_token(i: usize) -> Token {
    Token(usize::MAX - 1 - i)
}

/// Host commands run per round before the loop turns to sockets again.
const COMMAND_BATCH: usize = 1024;
/// The dispatcher thread's name (Linux keeps 15 bytes).
const THREAD_NAME: &str = "hubcast-loop";

/// What the dispatcher thread returns: its report, or why it died.
pub(crate) type Outcome = Result<ShutdownReport, String>;

/// Starts the dispatcher thread for `listeners`. Returns the state it shares with the host,
/// the sender of host commands, and the thread.
pub(crate) fn spawn(
    config: Config,
    listeners: Vec<(TcpListener, Transport)>,
    backplane: Backplane,
) -> io::Result<(Arc<Shared>, Sender<Command>, JoinHandle<Outcome>)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let mut shared = Shared::new(waker, config.queue_bytes, config.command_capacity);
    for (socket, transport) in &listeners {
        shared.listeners.push(ListenerGauge {
            addr: socket.local_addr()?,
            transport: *transport,
            clients: AtomicU64::new(0),
        });
    }
    #[cfg(feature = "nats")]
    {
        shared.clustered = config.cluster.is_some();
    }
    let shared = Arc::new(shared);
    // Unbounded, because the budget in `Shared` bounds it: a reservation made there is
    // never refused by the channel, so no sender ever waits inside it.
    let (tx, rx) = crossbeam_channel::unbounded();
    let dispatcher = Dispatcher::new(config, poll, listeners, Arc::clone(&shared), rx, backplane)?;
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || dispatcher.run_guarded())?;
    Ok((shared, tx, thread))
}

/// The dispatcher: the one thread that owns every socket, as a few owned parts, each in
/// the file of its concern, so that a function can borrow the parts it needs side by side.
pub(crate) struct Dispatcher {
    /// The poll, the listeners and the read buffers (`io`).
    io: polling::Io,
    /// What the host's handles share with the dispatcher.
    shared: Arc<Shared>,
    /// The host's commands.
    commands: Receiver<Command>,
    config: Config,
    /// Every connection, and those with work pending (`slots`).
    slots: Slots,
    /// The host's subscriptions (`subscribers`).
    subs: Subscribers,
    /// Accepting, limits and the storm logs of refused and misbehaving clients.
    admission: Admission,
    /// Per-client deadlines and heartbeats.
    timers: Timers,
    /// Topics and numbered streams (`membership`).
    streams: membership::Streams,
    /// Batches on their way to the queues, and relayed frames (`fanout`).
    fanout: fanout::FanOut,
    /// Which clients hold the others back (`outbound`).
    busy: outbound::Busy,
    /// The other nodes of a cluster (`cluster`).
    backplane: cluster::Backplane,
    /// A shutdown, once begun (`lifecycle`).
    shutdown: lifecycle::Shutdown,
    tally: Tally,
    /// The time this round started: a coarse clock for per-client timestamps.
    now: Instant,
}

impl Dispatcher {
    fn new(
        config: Config,
        poll: Poll,
        listeners: Vec<(TcpListener, Transport)>,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        backplane: cluster::Backplane,
    ) -> io::Result<Self> {
        let mut registered = Vec::new();
        for (i, (mut socket, transport)) in listeners.into_iter().enumerate() {
            poll.registry()
                .register(&mut socket, listener_token(i), Interest::READABLE)?;
            registered.push(Listener {
                socket,
                transport,
                pending: false,
            });
        }
        // Made once for every wire if some wire pings (heartbeats, event streams' comments).
        let settings = config.wire();
        let pings = crate::wire::Wire::ALL
            .iter()
            .any(|wire| wire.ping_interval(&settings, config.heartbeat).is_some());
        let ping = pings.then(|| PerWire::new(|wire| wire.ping(&settings)));
        let now = Instant::now();
        Ok(Dispatcher {
            io: polling::Io::new(poll, registered),
            shared,
            commands,
            slots: Slots::default(),
            subs: Subscribers::default(),
            admission: Admission::new(),
            timers: Timers::new(config.tick, now),
            streams: membership::Streams::new(),
            fanout: fanout::FanOut::new(ping),
            busy: outbound::Busy::new(now),
            backplane,
            shutdown: lifecycle::Shutdown::default(),
            tally: Tally::default(),
            now,
            config,
        })
    }

    /// Runs the loop; if it fails or panics, marks the hub failed before anything else is
    /// dropped, so that the host learns of it as subscriptions end.
    fn run_guarded(mut self) -> Outcome {
        self.shared.enter_dispatcher();
        let shared = Arc::clone(&self.shared);
        let cause = match panic::catch_unwind(AssertUnwindSafe(|| self.run())) {
            Ok(Ok(())) => {
                let report = self.finish();
                shared.set_stopped();
                return Ok(report);
            }
            Ok(Err(err)) => format!("the event loop failed: {err}"),
            Err(panic) => format!("the dispatcher panicked: {}", panic_into_message(panic)),
        };
        log::error!("hubcast failed, every client is dropped: {cause}");
        self.shared.fail(cause.clone());
        shared.set_stopped();
        Err(cause)
    }

    /// The event loop. Returns when a shutdown has closed every client.
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut timeout = None;
        loop {
            // Waiting for work is not lagging: `health` measures only rounds.
            self.shared.round_ends();
            match self.io.poll.poll(&mut events, timeout) {
                Err(err) if err.kind() != io::ErrorKind::Interrupted => return Err(err),
                _ => {}
            }
            self.now = Instant::now();
            self.shared.round_begins(self.now);
            self.busy.memo = None;
            if !self.run_commands() {
                // The `Hub` is gone: shut down as its `Drop` would have.
                self.begin_shutdown(self.deadline_in(self.config.linger));
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    token => {
                        if let Some(listener) = self.listener_at(token) {
                            listener.pending = true;
                            continue;
                        }
                        let Some(client) = self.slots.get_mut(token.0) else {
                            continue;
                        };
                        let slot = token.0;
                        let unread = client.held_until.is_some() || client.failing.is_some();
                        if event.is_error() && unread && client.is_live() {
                            // Held back for its rate limit, or failing, it is not read: a
                            // broken connection leaves now, not once the hold is over.
                            self.leave(slot, crate::DisconnectReason::Reset, None);
                            continue;
                        }
                        if event.is_writable() {
                            client.writable = true;
                            self.mark_dirty(slot);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.mark_read_pending(slot);
                        }
                    }
                }
            }
            // Rings are pruned before reading, so a resume read this round never replays
            // a message past replay_age.
            if self.config.sequenced && self.streams.prune_at.is_some_and(|t| self.now >= t) {
                self.streams.prune_at = self.prune_rings();
            }
            self.accept();
            self.release_held();
            self.read_all();
            self.housekeeping();
            // Clients that left this round outside a read (timers, commands) told their
            // topics' members (`#presence`), and counts may be due: that goes out with
            // this round's writes.
            if self.counts_at().is_some_and(|at| at <= self.now) {
                self.tell_counts();
            }
            self.flush_relay();
            self.flush_dirty();
            self.finish_closing();
            // Last: the round's events (leaving clients' included) go out before it waits.
            self.subs.feed(&self.shared, self.now);
            self.tally.publish(&self.shared.counters);
            self.publish_rings();
            self.slots.recycle();
            if self.shutdown.begun() && self.slots.is_empty() {
                return Ok(());
            }
            timeout = self.next_timeout();
        }
    }

    /// Publishes what the replay rings cost, and the kept topics' count and bytes, for
    /// `stats()`, if they changed.
    fn publish_rings(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = &self.shared.counters;
        let total = self.streams.topics.ring_total().get() as u64;
        counters.replay_bytes.store(total, Relaxed);
        let kept = self.streams.topics.kept();
        if kept != self.streams.kept_published {
            self.streams.kept_published = kept;
            counters.kept_topics.store(kept.0 as u64, Relaxed);
            counters.kept_bytes.store(kept.1 as u64, Relaxed);
        }
    }

    /// Runs up to [`COMMAND_BATCH`] host commands. Returns `false` once the `Hub` is gone.
    fn run_commands(&mut self) -> bool {
        // Under flow control, host calls wait in the channel while a client catches up.
        let gated = self.config.flow_control && !self.shared.is_closed();
        if gated && self.any_busy() {
            self.shared.set_flow_held(true);
            #[cfg(feature = "websocket")]
            self.leave_failing(&[], false);
            return true;
        }
        self.shared.clear_notified();
        // Which failing clients' subscribers are done, read after the flag is cleared (a
        // count published later wakes the loop again) and before the commands are drained:
        // a host that answered them and came back for more sent its answers first, so they
        // are queued below, ahead of the close frame.
        #[cfg(feature = "websocket")]
        let done = self.failing_done();
        let (mut taken, mut bytes) = (0, 0);
        let mut alive = true;
        let mut drained = false;
        self.fanout.gathering = true;
        for _ in 0..COMMAND_BATCH {
            // Look again after every fan-out: one round's commands could otherwise pass
            // the bound of clients that are keeping up.
            if gated && self.any_busy() {
                break;
            }
            match self.commands.try_recv() {
                Ok(command) => {
                    if let Some(reserved) = command.reserved() {
                        taken += 1;
                        bytes += reserved;
                    }
                    self.run_command(command);
                }
                Err(TryRecvError::Empty) => {
                    drained = true;
                    break;
                }
                Err(TryRecvError::Disconnected) => {
                    alive = false;
                    drained = true;
                    break;
                }
            }
        }
        self.fanout.gathering = false;
        self.fan_out_gathered();
        let held = gated && self.any_busy();
        self.shared.set_flow_held(held);
        self.shared.release(taken, bytes);
        #[cfg(feature = "websocket")]
        self.leave_failing(&done, drained);
        #[cfg(not(feature = "websocket"))]
        let _ = drained;
        alive || self.shutdown.begun()
    }

    fn run_command(&mut self, command: Command) {
        if self.shutdown.begun() {
            if let Command::Batch { batch, .. } = &command {
                lock(batch).taken = true;
            }
            // Raced with shutdown: the clients are leaving and take nothing new.
            return;
        }
        // Presence changes made by earlier commands (a `Hub::leave`, a kick) are numbered
        // before what the host called next.
        self.flush_relay();
        if !matches!(command, Command::Batch { .. } | Command::Send(_)) {
            // Anything else may queue for a client, or change who gets what: what was
            // gathered before it goes first.
            self.fan_out_gathered();
        }
        match command {
            Command::Batch { batch, .. } => {
                let mut batch = lock(&batch);
                batch.taken = true;
                let frames = batch.take();
                drop(batch);
                self.fan_out(&frames);
            }
            Command::Send(frames) => self.fan_out(&frames),
            #[cfg(feature = "nats")]
            command @ (Command::Remote(_) | Command::Forward(..) | Command::Cluster(_)) => {
                self.run_cluster_command(command)
            }
            Command::Disconnect(id) => {
                if let Some(slot) = self.slots.slot_of(id) {
                    let deadline = self.deadline_in(self.config.linger);
                    self.leave(slot, crate::DisconnectReason::Kicked, Some(deadline));
                }
            }
            Command::Join(client, topic, name, op, evicted) => {
                if let Some(evicted) = evicted {
                    self.topic_evicted(evicted);
                }
                if self.host_topic_op(client, topic, op) {
                    self.join_topic(client, topic, name);
                }
            }
            Command::Leave(client, topic, op) => {
                if self.host_topic_op(client, topic, op) {
                    self.leave_topic(client, topic);
                }
            }
            Command::Shutdown(deadline) => self.begin_shutdown(deadline),
            Command::Adopt(adoption) => self.adopt(*adoption),
            #[cfg(test)]
            Command::Panic => panic!("injected by a test"),
        }
    }

    /// The listener a token stands for.
    fn listener_at(&mut self, token: Token) -> Option<&mut Listener> {
        let i = (usize::MAX - 1).checked_sub(token.0)?;
        self.io.listeners.get_mut(i)
    }

    /// `now + after`, or `None` if that is too far away to be represented.
    fn deadline_in(&self, after: Duration) -> Option<Instant> {
        self.now.checked_add(after)
    }

    /// How long `poll` may sleep: not at all while work is left, else until the nearest
    /// deadline, else for ever.
    fn next_timeout(&self) -> Option<Duration> {
        let commands_waiting = !self.commands.is_empty();
        let reads_waiting = !self.slots.read_pending.is_empty() && !self.subs.is_paused();
        let held = (commands_waiting && self.config.flow_control || reads_waiting)
            && self.busy.memo == Some(true);
        let busy = (commands_waiting || reads_waiting) && !held
            || (!self.subs.is_paused() && self.admission.ready(self.now, &self.io.listeners));
        // A client cut by the round's last writes may have left a `#presence` to tell.
        if busy || !self.fanout.relay.is_empty() {
            return Some(Duration::ZERO);
        }
        let deadlines = [
            self.closing_deadline(),
            held.then(|| self.busy_recheck()).flatten(),
            self.timers.next(
                self.slots.live() + self.admission.handshaking + self.slots.closing.len() > 0,
            ),
            self.admission
                .retry_at(!self.subs.is_paused() && self.io.listeners.iter().any(|l| l.pending)),
            self.subs.recheck_at(),
            self.admission.misbehaved.next(),
            self.streams.prune_at,
            self.counts_at(),
            self.held_until(),
            #[cfg(feature = "websocket")]
            self.failing_deadline(),
        ];
        let deadline = deadlines.into_iter().flatten().min()?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }
}

impl Dispatcher {
    /// Runs one of the host's closures. A panic in it is caught, counted in
    /// `callback_panics` and logged at `error`, as `what` (which says what the panic cost)
    /// and the panic's message; it gives `None`.
    fn call_host<T>(&self, f: impl FnOnce() -> T, what: std::fmt::Arguments<'_>) -> Option<T> {
        match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(value) => Some(value),
            Err(panic) => {
                let counters = &self.shared.counters;
                counters
                    .callback_panics
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Outside the macro: it evaluates its arguments only if the level is on.
                let message = panic_into_message(panic);
                log::error!("{what}: {message}");
                None
            }
        }
    }
}

/// The text of a caught panic's payload, which is disposed of here: a payload is any value,
/// and its own `Drop` may panic too (`panic_any` of such a type). Dropped where the panic
/// was caught, that second panic would escape the catch and kill the dispatcher for a host
/// closure's bug, so it is dropped under `catch_unwind`; should that panic again, the new
/// payload is leaked rather than dropped, since its drop could panic once more.
pub(crate) fn panic_into_message(payload: Box<dyn Any + Send>) -> String {
    let message = panic_message(&*payload);
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        log::warn!("dropping a panic's payload panicked too; leaking that one's payload");
        mem::forget(again);
    }
    message
}

/// The text of a panic's payload.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
