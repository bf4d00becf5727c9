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
use crate::DisconnectReason;

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
                Target::Topic(topic) | Target::TopicExcept(topic, _) => {
                    let except = match target {
                        Target::TopicExcept(_, client) => Some(client),
                        _ => None,
                    };
                    // Members are copied out: enqueueing may make one leave.
                    let mut members = std::mem::take(&mut self.members);
                    members.extend(
                        self.topics
                            .members(topic)
                            .iter()
                            .filter(|&&(_, client)| Some(client) != except)
                            .map(|&(slot, _)| slot),
                    );
                    for &slot in &members {
                        self.enqueue_for(slot, &chunks);
                    }
                    members.clear();
                    self.members = members;
                }
            }
            return;
        }
        self.fan_out_mixed(by_wire);
    }

    /// Fans out frames whose runs have different targets. Each client gets, in order, the
    /// runs for everyone (all but those it is excluded from) and the runs for it (its own,
    /// its topics'). The clients no target names share one cut of the frames, made once;
    /// the others each get their own, from a list of (client, run) marks sorted by client.
    /// So the cost is one pass over the clients plus one step per named delivery.
    fn fan_out_mixed(&mut self, by_wire: [&Frames; 2]) {
        let frames = by_wire[0];
        let mut base = Vec::new();
        let mut marks = std::mem::take(&mut self.marks);
        for (i, &(_, target)) in frames.runs.iter().enumerate() {
            let run = i as u32;
            match target {
                Target::All => base.push(run),
                Target::AllExcept(id) => {
                    base.push(run);
                    if let Some(slot) = self.slots.slot_of(id) {
                        marks.push((slot, run | EXCLUDED));
                    }
                }
                Target::One(id) => {
                    if let Some(slot) = self.slots.slot_of(id) {
                        marks.push((slot, run));
                    }
                }
                Target::Topic(topic) => marks.extend(
                    self.topics
                        .members(topic)
                        .iter()
                        .map(|&(slot, _)| (slot, run)),
                ),
                Target::TopicExcept(topic, except) => marks.extend(
                    self.topics
                        .members(topic)
                        .iter()
                        .filter(|&&(_, client)| client != except)
                        .map(|&(slot, _)| (slot, run)),
                ),
            }
        }
        // Stable: each client's marks stay in run order.
        marks.sort_by_key(|&(slot, _)| slot);
        let base_cut = by_wire.map(|f| chunks_of(f, base.iter().copied()));
        let mut runs = Vec::new();
        let mut m = 0;
        // With nothing for everyone, only the marked clients get anything.
        let slots = if base.is_empty() {
            None
        } else {
            Some(0..self.slots.len())
        };
        let mut next_slot = {
            let mut all = slots;
            move |marks: &[(usize, u32)], m: usize| match &mut all {
                Some(range) => range.next(),
                None => marks.get(m).map(|&(slot, _)| slot),
            }
        };
        while let Some(slot) = next_slot(&marks, m) {
            let start = m;
            while marks.get(m).is_some_and(|&(s, _)| s == slot) {
                m += 1;
            }
            let Some(wire) = self.slots.get(slot).map(|c| c.wire().index()) else {
                continue;
            };
            if start == m {
                for chunk in &base_cut[wire] {
                    self.enqueue(slot, chunk);
                }
                continue;
            }
            runs.clear();
            merge_runs(&base, &marks[start..m], &mut runs);
            for chunk in chunks_of(by_wire[wire], runs.iter().copied()) {
                self.enqueue(slot, &chunk);
            }
        }
        marks.clear();
        self.marks = marks;
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

/// A mark's flag: the client is excluded from the run (`AllExcept`), not given it.
const EXCLUDED: u32 = 1 << 31;

/// The chunks of `frames` for these runs (ascending): one per stretch of consecutive runs.
fn chunks_of(frames: &Frames, runs: impl Iterator<Item = u32>) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut open: Option<Range<usize>> = None;
    for run in runs {
        let range = frames.run_frames(run as usize);
        match &mut open {
            Some(open) if open.end == range.start => open.end = range.end,
            _ => chunks.extend(open.replace(range).map(|r| Chunk::new(frames, r))),
        }
    }
    chunks.extend(open.map(|r| Chunk::new(frames, r)));
    chunks
}

/// One client's runs, ascending: the runs for everyone (`base`) but those its marks exclude
/// it from, and the runs its marks give it.
fn merge_runs(base: &[u32], marks: &[(usize, u32)], out: &mut Vec<u32>) {
    let excluded = |run: u32| marks.iter().any(|&(_, m)| m == run | EXCLUDED);
    let mut own = marks
        .iter()
        .map(|&(_, m)| m)
        .filter(|m| m & EXCLUDED == 0)
        .peekable();
    let mut base = base
        .iter()
        .copied()
        .filter(|&run| !excluded(run))
        .peekable();
    loop {
        let next = match (base.peek(), own.peek()) {
            (Some(&b), Some(&o)) if b < o => base.next(),
            (Some(&b), Some(&o)) if b == o => {
                own.next();
                base.next()
            }
            (_, Some(_)) => own.next(),
            (Some(_), None) => base.next(),
            (None, None) => return,
        };
        if let Some(run) = next {
            if out.last() != Some(&run) {
                out.push(run);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Batch;
    use crate::{ClientId, Framing};

    #[test]
    fn a_client_gets_its_runs_and_the_common_ones_in_order() {
        let mut batch = Batch::with_capacity(64);
        for (payload, target) in [
            (&b"1"[..], Target::All),
            (b"2", Target::AllExcept(ClientId(1))),
            (b"3", Target::One(ClientId(2))),
            (b"4", Target::All),
        ] {
            batch.push(Framing::Lines, payload, target);
        }
        let frames = batch.take();
        let counts =
            |chunks: Vec<Chunk>| -> Vec<u64> { chunks.iter().map(Chunk::frames).collect() };
        // Runs for everyone: 0, 1, 3 (frames 1 2 | 4).
        assert_eq!(
            counts(chunks_of(&frames, [0, 1, 3].into_iter())),
            vec![2, 1]
        );
        let mut runs = Vec::new();
        // Excluded from run 1, given run 2: 0 | 2 3.
        merge_runs(&[0, 1, 3], &[(7, 1 | EXCLUDED), (7, 2)], &mut runs);
        assert_eq!(runs, vec![0, 2, 3]);
        assert_eq!(counts(chunks_of(&frames, runs.iter().copied())), vec![1, 2]);
        runs.clear();
        merge_runs(&[], &[(7, 2)], &mut runs);
        assert_eq!(runs, vec![2]);
    }
}
