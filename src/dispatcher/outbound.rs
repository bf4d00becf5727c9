//! Putting frames into the queues of the clients they are for, writing queues out, and
//! holding the hub back while a client is busy (see `client::flow`).
//!
//! A fan-out takes [`Frames`]: whole frames in one shared buffer, each run of frames with
//! its target, framed again once for each wire with live clients; which pieces each
//! client gets is the engine's (`fanout`), and queueing them, under each client's bound and
//! policy, is this file's. Pieces share the buffer; only cuts under
//! [`COPY_BELOW`](crate::queue::COPY_BELOW) bytes are copied, into the client's own buffer.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::fanout::{self, Audience, Framed};
use super::Dispatcher;
use crate::command::Frames;
use crate::queue::{Chunk, Enqueued, Piece};
use crate::wire::PerWire;
use crate::DisconnectReason;

/// Which clients may hold the others back, and whether they do (see `client::flow`).
#[derive(Debug)]
pub(super) struct Busy {
    /// Clients over the high-water mark of their queue.
    pub(super) high: Vec<usize>,
    /// Whether some high client was busy, as of the last look (see `any_busy`).
    pub(super) memo: Option<bool>,
    /// Whether some client was busy when last looked at, to count episodes.
    pub(super) was: bool,
    /// When some client's writes last made progress.
    pub(super) progress: Instant,
}

impl Busy {
    pub(super) fn new(now: Instant) -> Busy {
        Busy {
            high: Vec::new(),
            memo: None,
            was: false,
            progress: now,
        }
    }
}

impl Dispatcher {
    /// Queues `frames`, made on this node, for the clients they are for; in a cluster, also
    /// hands them to the other nodes.
    pub(super) fn fan_out(&mut self, frames: &Frames) {
        self.forward(frames);
        self.fan_out_local(frames);
    }

    /// Queues `frames` for this node's clients, numbered first when the protocol is on.
    pub(super) fn fan_out_local(&mut self, frames: &Frames) {
        if self.config.sequenced {
            let numbered = self.number(frames);
            self.fan_out_framed(&numbered.frames, numbered.markers.as_ref());
        } else {
            self.fan_out_framed(frames, None);
        }
    }

    /// Queues `frames` framed once for each wire that has live clients; a client a run
    /// excludes gets that run's `markers` instead, if there are any (`#own`, protocol).
    /// While host commands run, batches only for named clients are gathered and fanned out
    /// together (see `fanout`); anything else first fans out what is gathered, in order.
    fn fan_out_framed(&mut self, frames: &Frames, markers: Option<&Frames>) {
        // Framed again for each wire that frames otherwise and has live clients; a wire
        // without live clients is never used: it gets the frames as they are.
        let epochs = super::membership::EpochsOf {
            hub: self.streams.hub.epoch,
            topics: &self.streams.topics,
        };
        let mut settings = self.config.wire();
        settings.epochs = Some(&epochs);
        let live = |wire| self.slots.live_on(wire) > 0;
        let mut reframed = PerWire::reframe(&settings, frames, live);
        #[cfg(feature = "websocket")]
        {
            use crate::wire::Wire;
            let streams = [Wire::Sse, Wire::SseTopic].into_iter().filter(|&w| live(w));
            let skipped = streams.count() as u64 * crate::wire::sse_skipped(&settings, frames);
            if skipped > 0 {
                let counter = &self.shared.counters.sse_binary_skipped;
                counter.fetch_add(skipped, Relaxed);
            }
        }
        let mut reframed_markers = markers.map(|m| PerWire::reframe(&settings, m, live));
        let framed = PerWire::new(|wire| Framed {
            frames: reframed[wire].take().unwrap_or_else(|| frames.clone()),
            markers: markers.map(|m| {
                let own = reframed_markers.as_mut().and_then(|r| r[wire].take());
                own.unwrap_or_else(|| m.clone())
            }),
        });
        let gather = self.fanout.gathering && fanout::is_gatherable(frames);
        if !gather || !self.fanout.plan.has_room_for(frames) {
            self.fan_out_gathered();
        }
        let audience = Audience {
            slots: &self.slots,
            topics: &self.streams.topics,
        };
        self.fanout.plan.add(framed, &audience);
        if !gather {
            self.fan_out_gathered();
        }
    }

    /// Fans out every batch of the plan, client by client.
    pub(super) fn fan_out_gathered(&mut self) {
        if self.fanout.plan.is_empty() {
            return;
        }
        let mut plan = std::mem::take(&mut self.fanout.plan);
        let mut deliveries = plan.deliveries(self.slots.len());
        while let Some((slot, pieces)) =
            deliveries.next(|slot| self.slots.get(slot).map(|c| c.wire()))
        {
            for &piece in pieces {
                self.enqueue(slot, piece);
            }
        }
        plan.clear();
        // Keeps its buffers, unless something was planned meanwhile (it goes next).
        if self.fanout.plan.is_empty() {
            self.fanout.plan = plan;
        }
    }

    /// Queues `piece` for the live client in `slot`, applying its bound and policy.
    pub(super) fn enqueue(&mut self, slot: usize, piece: Piece<'_>) {
        let (bound, policy) = (self.config.queue_bytes, self.config.slow_client_policy);
        let Some(client) = self.slots.live_mut(slot) else {
            return;
        };
        if client.writable
            && client.queue.is_over(piece, bound)
            // Before calling the client slow, give its socket what it can take now: a
            // burst of host calls is queued in one round, before the round's writes.
            && !self.flush_client(slot)
        {
            return;
        }
        let Some(client) = self.slots.live_mut(slot) else {
            return;
        };
        match client.queue.enqueue(piece, bound, policy) {
            Enqueued::Queued(true) => self.mark_dirty(slot),
            Enqueued::Queued(false) => {}
            Enqueued::Dropped(frames) => {
                client.dropped.fetch_add(frames, Relaxed);
                self.shared.counters.dropped.fetch_add(frames, Relaxed);
                log::debug!("dropped {frames} frames for slow client {}", client.id);
                self.mark_dirty(slot);
            }
            Enqueued::Full => {
                self.leave(slot, DisconnectReason::Slow, None);
                return;
            }
        }
        self.update_flow(slot);
    }

    /// Keeps the list of high clients in step with one client's queue after it changed.
    pub(super) fn update_flow(&mut self, slot: usize) {
        let bound = self.config.queue_bytes;
        let Some(client) = self.slots.get_mut(slot) else {
            return;
        };
        // A client that is not live holds nobody back; nor does one slow to read the
        // replays it asked for.
        let queued = if client.is_live() {
            client.queue.live_cost()
        } else {
            0
        };
        match client.flow.update(queued, bound, self.now) {
            Some(true) => {
                self.busy.high.push(slot);
                // A new high client may be busy: look again.
                self.busy.memo = None;
            }
            Some(false) => self.busy.high.retain(|&s| s != slot),
            None => {}
        }
    }

    /// Whether some client is busy: the dispatcher then reads no client and, with
    /// `flow_control`, takes no host call. Remembered within a round until a client goes
    /// high (the only way, within a round, that a client becomes busy), so loops over
    /// commands and reads do not scan the high clients at every step.
    pub(super) fn any_busy(&mut self) -> bool {
        if let Some(busy) = self.busy.memo {
            return busy;
        }
        let now = self.now;
        let mut busy = false;
        for &slot in &self.busy.high {
            if let Some(client) = self.slots.get_mut(slot) {
                // Every high client is looked at, so each one's busy time is kept exact.
                busy |= client
                    .flow
                    .is_busy(now, client.stalled_since, self.busy.progress);
            }
        }
        self.busy.memo = Some(busy);
        if busy && !self.busy.was {
            self.shared.counters.held_back.fetch_add(1, Relaxed);
        }
        self.busy.was = busy;
        busy
    }

    /// When a busy client may stop being busy by itself: its busy time runs out, or its
    /// writes have been stuck long enough to count as stalled.
    pub(super) fn busy_recheck(&self) -> Option<Instant> {
        self.busy
            .high
            .iter()
            .filter_map(|&slot| self.slots.get(slot))
            .filter_map(|c| {
                let stall = c.flow.stalled_at(c.stalled_since, self.busy.progress);
                [c.flow.busy_until(), stall].into_iter().flatten().min()
            })
            .min()
    }

    /// Writes out what the client's socket takes now, remembering whether any bytes went
    /// out (see `flow`: a stuck client is singled out only while others progress). A
    /// client whose socket fails is dropped; returns `false` then.
    pub(super) fn flush_client(&mut self, slot: usize) -> bool {
        let Some(client) = self.slots.get_mut(slot) else {
            return false;
        };
        let before = self.tally.bytes_out;
        let flushed = client.flush(&mut self.tally, self.now);
        if self.tally.bytes_out > before {
            self.busy.progress = self.now;
        }
        match flushed {
            Ok(()) => true,
            Err(err) => {
                self.fail(slot, &err);
                false
            }
        }
    }

    /// Queues protocol bytes for a client whatever its bound (they are few, and must reach
    /// it however slow it is).
    pub(super) fn send_raw(&mut self, slot: usize, bytes: bytes::Bytes) {
        if let Some(client) = self.slots.get_mut(slot) {
            client.queue.push_unbounded(Chunk::raw(bytes));
            self.mark_dirty(slot);
        }
    }

    pub(super) fn mark_dirty(&mut self, slot: usize) {
        if let Some(client) = self.slots.get_mut(slot) {
            if client.writable && client.has_output() && !client.dirty {
                client.dirty = true;
                self.slots.dirty.push(slot);
            }
        }
    }

    pub(super) fn mark_read_pending(&mut self, slot: usize) {
        if let Some(client) = self.slots.get_mut(slot) {
            if !client.read_pending {
                client.read_pending = true;
                self.slots.read_pending.push(slot);
            }
        }
    }

    /// Writes out the queues of clients whose sockets may take more.
    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.slots.dirty);
        for &slot in &dirty {
            let Some(client) = self.slots.get_mut(slot) else {
                continue;
            };
            client.dirty = false;
            self.flush_client(slot);
            self.update_flow(slot);
        }
        dirty.clear();
        // Failures above may have queued nothing new, but keep whatever they did.
        dirty.append(&mut self.slots.dirty);
        self.slots.dirty = dirty;
    }
}
