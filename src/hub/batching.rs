//! How host calls become batched [`Command`]s: framed once on the caller's thread, small
//! messages appended to the open batch, large ones in a frame of their own, every send under
//! one lock so commands reach the dispatcher in call order, and each within the budget of
//! pending work (waiting for room, or failing with `WouldBlock`).

use std::sync::{Arc, Mutex};

use super::Hub;
use crate::command::{Batch, Command, Frames, SharedBatch, Target, BATCH_BELOW};
use crate::shared::lock;
use crate::topics::{check_name, TopicId, TopicTable};
use crate::wire::codec;
use crate::{AsMessage, ClientId, Error, MessageKind, Result};

impl Hub {
    /// A host join or leave of `topic` for `client`, decided under the registry's lock in
    /// its place among every other call: `decide` changes the topic table and the client's
    /// topics and says which command carries the change, given the decision's number (see
    /// `topics::order`); `None` if nothing changed. Messages sent after the call go in a
    /// later batch, so the change applies from exactly there.
    pub(super) fn topic_decision<C: FnOnce(u64) -> Command>(
        &self,
        client: ClientId,
        topic: &str,
        mut decide: impl FnMut(&mut TopicTable, &mut Vec<TopicId>) -> Result<Option<C>>,
    ) -> Result<()> {
        check_name(topic, self.topic_limits.max_name)?;
        let wait = !self.shared.on_dispatcher_thread();
        self.send_in_order(
            0,
            wait,
            |_| false,
            |open| {
                let mut registry = self.shared.registry();
                let registry = &mut *registry;
                let entry = registry
                    .clients
                    .get_mut(&client)
                    .ok_or(Error::UnknownClient(client))?;
                let Some(command) = decide(&mut registry.topics, &mut entry.topics)? else {
                    return Ok(None);
                };
                *open = None;
                let op = registry.decisions.host();
                // Before the command is sent: a message the dispatcher reads from now on is
                // relayed as this decision says (`dispatcher/permissions.rs`).
                self.shared
                    .host_decided
                    .store(op, std::sync::atomic::Ordering::SeqCst);
                Ok(Some(command(op)))
            },
        )
    }

    /// Frames `msg` for `target` and hands it to the dispatcher with its kind (if it has
    /// one: see `command::Kinds`), waiting for room if `wait` (and not on the dispatcher's
    /// own thread, where waiting would never end).
    pub(super) fn submit(&self, target: Target, msg: &impl AsMessage, wait: bool) -> Result<()> {
        let (msg, kind) = msg.parts();
        self.submit_while(target, msg, kind, wait, || true)
            .map(drop)
    }

    /// As [`submit`](Self::submit), if `current` holds under the batch lock, where the
    /// message takes its place among every other call. Returns whether it did (if not,
    /// nothing was sent).
    fn submit_while(
        &self,
        target: Target,
        msg: &[u8],
        kind: Option<MessageKind>,
        wait: bool,
        current: impl Fn() -> bool,
    ) -> Result<bool> {
        self.shared.check()?;
        let len = self.frame_len(msg)?;
        if len == 0 {
            // An empty message under raw framing: nothing goes on the wire.
            return Ok(true);
        }
        let wait = wait && !self.shared.on_dispatcher_thread();
        if !wait && len >= BATCH_BELOW && !self.shared.has_room(len) {
            // A try that would fail for want of room: not worth framing (an async send
            // tries again on every wake-up while it waits).
            return Err(self.shared.would_block());
        }
        // A large message is framed before taking the lock, into its own frame.
        let mut large = (len >= BATCH_BELOW).then(|| codec::encode(self.framing, msg, len));
        let reserve = if large.is_some() { len } else { self.batch_max };
        let stale = std::cell::Cell::new(false);
        let append = |open: &mut Option<SharedBatch>| {
            let Some(batch) = open.as_ref().filter(|_| len < BATCH_BELOW) else {
                return false;
            };
            if !current() {
                stale.set(true);
                return true;
            }
            let mut batch = lock(batch);
            let fits = !batch.taken && batch.len() + len <= self.batch_max;
            if fits {
                batch.push(self.framing, msg, target, kind);
            }
            fits
        };
        let build = |open: &mut Option<SharedBatch>| {
            if !current() {
                stale.set(true);
                return Ok(None);
            }
            Ok(Some(match large.take() {
                Some(frame) => {
                    // Small messages sent after this one go in a later batch.
                    *open = None;
                    Command::Send(Frames::one(frame, target, kind))
                }
                None => {
                    // Start small and grow: at low rates a batch holds one message.
                    let mut batch = Batch::with_capacity((len * 8).clamp(512, self.batch_max));
                    batch.push(self.framing, msg, target, kind);
                    let batch = Arc::new(Mutex::new(batch));
                    *open = Some(Arc::clone(&batch));
                    Command::Batch {
                        batch,
                        reserved: reserve,
                    }
                }
            }))
        };
        self.send_in_order(reserve, wait, append, build)?;
        Ok(!stale.get())
    }

    /// Under the batch lock, which orders every call: finishes the call with `append` if
    /// it can (adding to the open batch), else once `reserve` frame bytes fit in the
    /// pending budget, hands the dispatcher the command `build` makes. Waits for room
    /// between tries if `wait`, never while holding the lock, so no caller (and no call
    /// from the dispatcher's own thread) waits behind another.
    pub(super) fn send_in_order(
        &self,
        reserve: usize,
        wait: bool,
        mut append: impl FnMut(&mut Option<SharedBatch>) -> bool,
        mut build: impl FnMut(&mut Option<SharedBatch>) -> Result<Option<Command>>,
    ) -> Result<()> {
        loop {
            {
                let mut open = lock(&self.open_batch);
                self.shared.check()?;
                if append(&mut open) {
                    return Ok(());
                }
                if self.shared.try_reserve(reserve) {
                    // `build` may find nothing to send, or an error: the room goes back.
                    let sent = build(&mut open).and_then(|command| match command {
                        Some(command) => self.send(command).map(|()| true),
                        None => Ok(false),
                    });
                    if sent.is_err() {
                        *open = None;
                    }
                    // After the lock: giving room back may wake async senders' wakers,
                    // which must not run under it.
                    drop(open);
                    if !matches!(sent, Ok(true)) {
                        self.shared.release(1, reserve);
                    }
                    return sent.map(drop);
                }
            }
            if !wait {
                return Err(self.shared.would_block());
            }
            self.shared.wait_for_room(reserve)?;
        }
    }

    /// Hands `command` to the dispatcher and wakes it. Callers that care about order hold
    /// the batch lock.
    pub(super) fn send(&self, command: Command) -> Result<()> {
        // The channel is unbounded (the budget bounds it), so this never waits.
        if self.tx.send(command).is_err() {
            return Err(self.shared.check().err().unwrap_or(Error::Closed));
        }
        self.shared.wake();
        Ok(())
    }

    /// The framed length of `msg`, if the hub can send it.
    pub(super) fn frame_len(&self, msg: &[u8]) -> Result<usize> {
        let len = codec::encoded_len(self.framing, msg).ok_or(Error::MessageTooLarge {
            len: msg.len(),
            max: u32::MAX as usize,
        })?;
        let max = self.max_framed_len;
        if len > max {
            return Err(Error::MessageTooLarge { len, max });
        }
        Ok(len)
    }

    /// `publish_to` in a cluster: for the members here, and for the other nodes. Waits
    /// for room if `wait`.
    #[cfg(feature = "nats")]
    pub(super) fn publish_clustered(
        &self,
        topic: &str,
        except: Option<ClientId>,
        msg: &[u8],
        kind: Option<MessageKind>,
        wait: bool,
    ) -> Result<()> {
        loop {
            let Some(id) = self.shared.registry().topics.id(topic) else {
                // No member here: only other nodes may have some. (A topic created here
                // after this call misses it, as a member who joins after a publish does.)
                return self.forward_topic(topic, msg, kind, wait);
            };
            let target = match except {
                Some(client) => Target::TopicExcept(id, client),
                None => Target::Topic(id),
            };
            // The topic's last member here may leave between looking its id up and taking
            // the batch lock: the message would then go for a topic the dispatcher has
            // freed, to nobody, while the other nodes' members must get it all the same.
            // So the id must still be the topic's under the lock, or it is looked up
            // again.
            let current = || self.shared.registry().topics.id(topic) == Some(id);
            if self.submit_while(target, msg, kind, wait, current)? {
                return Ok(());
            }
        }
    }

    /// A message for a topic with no member here: only other nodes of the cluster may have
    /// some. Waits for room if `wait`.
    #[cfg(feature = "nats")]
    fn forward_topic(
        &self,
        topic: &str,
        msg: &[u8],
        kind: Option<MessageKind>,
        wait: bool,
    ) -> Result<()> {
        self.shared.check()?;
        // The same limit as for a publish with local members: other nodes frame it too.
        self.frame_len(msg)?;
        let payload = bytes::Bytes::copy_from_slice(msg);
        let wait = wait && !self.shared.on_dispatcher_thread();
        let reserve = payload.len();
        let topic: Arc<str> = Arc::from(topic);
        self.send_in_order(
            reserve,
            wait,
            |_| false,
            |open| {
                *open = None;
                Ok(Some(Command::Forward(
                    Arc::clone(&topic),
                    payload.clone(),
                    kind,
                )))
            },
        )
    }
}
