//! Fan-out: putting frames into the queues of the clients they are for, writing queues
//! out, and holding the hub back while a client is busy (see `flow`).
//!
//! A fan-out takes [`Frames`]: whole frames in one shared buffer, each run of frames with
//! its target. A client gets a [`Chunk`] per stretch of consecutive frames that are for it:
//! when every frame is for everyone that is one chunk per client, however many frames, and
//! only the clients a target names (the sender a relay skips, the one client of a
//! `send_to`) get a cut of their own. Chunks share the buffer; nothing is copied per client.

use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::Dispatcher;
use crate::command::{Frames, Target};
use crate::queue::{Chunk, Enqueued};
#[cfg(feature = "websocket")]
use crate::wire::Wire;
use crate::{ClientId, DisconnectReason};

impl Dispatcher {
    /// Queues `frames` for the clients they are for, framed once for each wire that has
    /// live clients.
    pub(super) fn fan_out(&mut self, frames: &Frames) {
        #[cfg(feature = "websocket")]
        let websocket = (self.slots.live_on(Wire::WebSocket) > 0).then(|| {
            let (framing, binary) = (self.config.framing, self.config.websocket.binary);
            crate::wire::to_websocket(frames, framing, binary)
        });
        #[cfg(not(feature = "websocket"))]
        let websocket: Option<Frames> = None;
        // By wire index; without WebSocket clients the second is never used.
        let by_wire = [frames, websocket.as_ref().unwrap_or(frames)];
        if let [(_, target)] = *frames.runs {
            let chunks = by_wire.map(Chunk::whole);
            match target {
                Target::All => self.enqueue_all(&chunks, None),
                Target::AllExcept(id) => self.enqueue_all(&chunks, self.slots.slot_of(id)),
                Target::One(id) => {
                    if let Some(slot) = self.slots.slot_of(id) {
                        self.enqueue_for(slot, &chunks);
                    }
                }
            }
            return;
        }
        // Mixed targets: the clients no target names share one cut of the frames (per
        // wire); each named client gets its own.
        let mut named: Vec<(usize, ClientId)> = frames
            .runs
            .iter()
            .filter_map(|&(_, target)| target.named())
            .filter_map(|id| Some((self.slots.slot_of(id)?, id)))
            .collect();
        named.sort_unstable();
        named.dedup();
        let shared_cut = by_wire.map(|f| cut(f, Target::includes_others));
        for slot in 0..self.slots.len() {
            let Some(wire) = self.slots.get(slot).map(|c| c.wire().index()) else {
                continue;
            };
            match named.binary_search_by_key(&slot, |&(s, _)| s) {
                Ok(i) => {
                    let id = named[i].1;
                    for chunk in cut(by_wire[wire], |t| t.includes(id)) {
                        self.enqueue(slot, &chunk);
                    }
                }
                Err(_) => {
                    for chunk in &shared_cut[wire] {
                        self.enqueue(slot, chunk);
                    }
                }
            }
        }
    }

    fn enqueue_all(&mut self, chunks: &[Chunk; 2], except: Option<usize>) {
        for slot in 0..self.slots.len() {
            if Some(slot) != except {
                self.enqueue_for(slot, chunks);
            }
        }
    }

    /// Queues the chunk of the client's wire.
    fn enqueue_for(&mut self, slot: usize, chunks: &[Chunk; 2]) {
        if let Some(wire) = self.slots.get(slot).map(|c| c.wire()) {
            self.enqueue(slot, &chunks[wire.index()]);
        }
    }

    /// Queues `chunk` for the live client in `slot`, applying its bound and policy.
    pub(super) fn enqueue(&mut self, slot: usize, chunk: &Chunk) {
        let (bound, policy) = (self.config.queue_bytes, self.config.slow_client_policy);
        let Some(client) = self.slots.live_mut(slot) else {
            return;
        };
        if client.writable && client.queue.is_over(chunk, bound) {
            // Before calling the client slow, give its socket what it can take now: a
            // burst of host calls is queued in one round, before the round's writes.
            let before = self.tally.bytes_out;
            let flushed = client.flush(&mut self.tally, self.now);
            self.note_progress(before);
            if let Err(err) = flushed {
                self.fail(slot, &err);
                return;
            }
        }
        let Some(client) = self.slots.live_mut(slot) else {
            return;
        };
        match client.queue.enqueue(chunk, bound, policy) {
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
        // A client that is not live holds nobody back.
        let queued = if client.is_live() {
            client.queue.cost()
        } else {
            0
        };
        match client.flow.update(queued, bound, self.now) {
            Some(true) => {
                self.high.push(slot);
                // A new high client may be busy: look again.
                self.busy_memo = None;
            }
            Some(false) => self.high.retain(|&s| s != slot),
            None => {}
        }
    }

    /// Whether some client is busy: the dispatcher then reads no client and, with
    /// `flow_control`, takes no host call. Remembered within a round until a client goes
    /// high (the only way, within a round, that a client becomes busy), so loops over
    /// commands and reads do not scan the high clients at every step.
    pub(super) fn any_busy(&mut self) -> bool {
        if let Some(busy) = self.busy_memo {
            return busy;
        }
        let now = self.now;
        let mut busy = false;
        for &slot in &self.high {
            if let Some(client) = self.slots.get_mut(slot) {
                // Every high client is looked at, so each one's busy time is kept exact.
                busy |= client
                    .flow
                    .is_busy(now, client.stalled_since, self.progress);
            }
        }
        self.busy_memo = Some(busy);
        busy
    }

    /// When a busy client may stop being busy by itself: its busy time runs out, or its
    /// writes have been stuck long enough to count as stalled.
    pub(super) fn busy_recheck(&self) -> Option<Instant> {
        self.high
            .iter()
            .filter_map(|&slot| self.slots.get(slot))
            .filter_map(|c| {
                let stall = c.flow.stalled_at(c.stalled_since);
                [c.flow.busy_until(), stall].into_iter().flatten().min()
            })
            .min()
    }

    /// Remembers that some client's writes progressed this round, if bytes went out since
    /// the tally stood at `before` (see `flow`: a stuck client is singled out only then).
    fn note_progress(&mut self, before: u64) {
        if self.tally.bytes_out > before {
            self.progress = self.now;
        }
    }

    pub(super) fn mark_dirty(&mut self, slot: usize) {
        if let Some(client) = self.slots.get_mut(slot) {
            if client.writable && client.has_output() && !client.dirty {
                client.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    pub(super) fn mark_read_pending(&mut self, slot: usize) {
        if let Some(client) = self.slots.get_mut(slot) {
            if !client.read_pending {
                client.read_pending = true;
                self.read_pending.push(slot);
            }
        }
    }

    /// Writes out the queues of clients whose sockets may take more.
    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let Some(client) = self.slots.get_mut(slot) else {
                continue;
            };
            client.dirty = false;
            let before = self.tally.bytes_out;
            let flushed = client.flush(&mut self.tally, self.now);
            self.note_progress(before);
            if let Err(err) = flushed {
                self.fail(slot, &err);
            }
            self.update_flow(slot);
        }
        dirty.clear();
        // Failures above may have queued nothing new, but keep whatever they did.
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }
}

/// The chunks of `frames` whose targets `include`: one per stretch of consecutive frames.
fn cut(frames: &Frames, include: impl Fn(Target) -> bool) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut open: Option<Range<usize>> = None;
    for i in 0..frames.runs.len() {
        let run = frames.run_frames(i);
        match (&mut open, include(frames.runs[i].1)) {
            (Some(range), true) => range.end = run.end,
            (None, true) => open = Some(run),
            (Some(_), false) => chunks.extend(open.take().map(|r| Chunk::new(frames, r))),
            (None, false) => {}
        }
    }
    chunks.extend(open.map(|r| Chunk::new(frames, r)));
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Batch;
    use crate::Framing;

    #[test]
    fn a_cut_merges_consecutive_runs_for_the_client() {
        let (a, b) = (ClientId(1), ClientId(2));
        let mut batch = Batch::with_capacity(64);
        for (payload, target) in [
            (&b"1"[..], Target::All),
            (b"2", Target::AllExcept(a)),
            (b"3", Target::AllExcept(b)),
            (b"4", Target::One(b)),
            (b"5", Target::All),
        ] {
            batch.push(Framing::Lines, payload, target);
        }
        let frames = batch.take();
        let bytes = |chunks: Vec<Chunk>| -> Vec<u64> { chunks.iter().map(Chunk::frames).collect() };
        // Others: 1 2 3 | 5.
        assert_eq!(bytes(cut(&frames, Target::includes_others)), vec![3, 1]);
        // a: 1 | 3 | 5.
        assert_eq!(bytes(cut(&frames, |t| t.includes(a))), vec![1, 1, 1]);
        // b: 1 2 | 4 5.
        assert_eq!(bytes(cut(&frames, |t| t.includes(b))), vec![2, 2]);
    }
}
