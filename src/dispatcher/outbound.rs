//! Fan-out: putting frames into the queues of the clients they are for, writing queues
//! out, and holding the hub back while a client is busy (see `flow`).
//!
//! A fan-out takes [`Frames`]: whole frames in one shared buffer, each run of frames with
//! its target. A client gets a piece per stretch of consecutive frames that are for it:
//! when every frame is for everyone that is one chunk per client, however many frames, and
//! only the clients a target names (the sender a relay skips, the one client of a
//! `send_to`, a topic's members) get cuts of their own; batches only for named clients
//! are gathered first (see `gather`). Chunks share the buffer; only cuts under
//! [`COPY_BELOW`](crate::queue::COPY_BELOW) bytes are copied, into the client's own buffer.

use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::Dispatcher;
use crate::command::{Frames, Target};
use crate::queue::{Chunk, Enqueued, Piece};
use crate::wire::{PerWire, Settings, Wire};
use crate::DisconnectReason;

impl Dispatcher {
    /// Queues `frames`, made on this node, for the clients they are for; in a cluster, also
    /// hands them to the other nodes.
    pub(super) fn fan_out(&mut self, frames: &Frames) {
        #[cfg(feature = "nats")]
        self.forward(frames);
        self.fan_out_local(frames);
    }

    /// Queues `frames` for this node's clients, numbered first when the protocol is on.
    pub(super) fn fan_out_local(&mut self, frames: &Frames) {
        if self.protocol {
            let numbered = self.number(frames);
            self.fan_out_framed(&numbered.frames, numbered.markers.as_ref());
        } else {
            self.fan_out_framed(frames, None);
        }
    }

    /// Queues `frames` framed once for each wire that has live clients; a client a run
    /// excludes gets that run's `markers` instead, if there are any (`#own`, protocol).
    fn fan_out_framed(&mut self, frames: &Frames, markers: Option<&Frames>) {
        // Framed again for each wire that frames otherwise and has live clients.
        let settings = Settings::of(&self.config);
        let live = |wire| self.slots.live_on(wire) > 0;
        let reframed = PerWire::reframe(&settings, frames, live);
        let reframed_markers = markers.map(|m| PerWire::reframe(&settings, m, live));
        if self.gathering && super::gather::is_gatherable(frames) {
            let markers = markers.cloned().zip(reframed_markers);
            self.gather(frames, reframed, markers);
            return;
        }
        // Whatever was gathered goes first, in order.
        self.fan_out_gathered();
        // A wire without live clients is never used: it gets the frames as they are.
        let by_wire = reframed.or(frames);
        let markers_by_wire = markers
            .zip(reframed_markers.as_ref())
            .map(|(m, reframed)| reframed.or(m));
        if let [(_, target)] = *frames.runs {
            let chunks = by_wire.map(Chunk::whole);
            let own = markers_by_wire.map(|m| m.map(Chunk::whole));
            let (except, topic) = match target {
                Target::All => (None, None),
                Target::AllExcept(id) => (Some(id), None),
                Target::One(id) => {
                    if let Some(slot) = self.slots.slot_of(id) {
                        self.enqueue_for(slot, &chunks);
                    }
                    return;
                }
                Target::Topic(topic) => (None, Some(topic)),
                Target::TopicExcept(topic, id) => (Some(id), Some(topic)),
            };
            let except_slot = except.and_then(|id| self.slots.slot_of(id));
            match topic {
                None => self.enqueue_all(&chunks, except_slot),
                Some(topic) => {
                    // Members are copied out: enqueueing may make one leave.
                    let mut members = std::mem::take(&mut self.members);
                    members.extend(self.topics.members(topic).iter().map(|&(slot, _)| slot));
                    // The client a `TopicExcept` run excludes gets its marker only if it
                    // is a member.
                    let mut member = None;
                    for &slot in &members {
                        if Some(slot) == except_slot {
                            member = except_slot;
                        } else {
                            self.enqueue_for(slot, &chunks);
                        }
                    }
                    members.clear();
                    self.members = members;
                    if let (Some(slot), Some(own)) = (member, &own) {
                        self.enqueue_for(slot, own);
                    }
                    return;
                }
            }
            if let (Some(slot), Some(own)) = (except_slot, &own) {
                self.enqueue_for(slot, own);
            }
            return;
        }
        self.fan_out_mixed(by_wire, markers_by_wire);
    }

    /// Fans out frames whose runs have different targets. Each client gets, in order, the
    /// runs for everyone (and, for those it is excluded from, their markers if any) and the
    /// runs for it (its own, its topics'). The clients no target names share one cut of
    /// the frames, made once; the others each get their own, from a list of (client, run)
    /// marks sorted by client. So the cost is one pass over the clients plus one step per
    /// named delivery.
    fn fan_out_mixed(&mut self, by_wire: PerWire<&Frames>, markers: Option<PerWire<&Frames>>) {
        let frames = by_wire[Wire::Framed];
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
                Target::TopicExcept(topic, except) => {
                    marks.extend(self.topics.members(topic).iter().map(|&(slot, client)| {
                        (
                            slot,
                            if client == except {
                                run | EXCLUDED
                            } else {
                                run
                            },
                        )
                    }));
                }
            }
        }
        // Stable: each client's marks stay in run order.
        marks.sort_by_key(|&(slot, _)| slot);
        let base_cut = by_wire.map(|f| chunks_of(f, None, base.iter().copied()));
        let mut runs = Vec::new();
        let mut m = 0;
        let every_slot = !base.is_empty();
        let mut next = 0;
        loop {
            // With nothing for everyone, only the marked clients get anything.
            let slot = if every_slot {
                if next == self.slots.len() {
                    break;
                }
                next += 1;
                next - 1
            } else {
                match marks.get(m) {
                    Some(&(slot, _)) => slot,
                    None => break,
                }
            };
            let start = m;
            while marks.get(m).is_some_and(|&(s, _)| s == slot) {
                m += 1;
            }
            let Some(wire) = self.slots.get(slot).map(|c| c.wire()) else {
                continue;
            };
            if start == m {
                for &piece in &base_cut[wire] {
                    self.enqueue(slot, piece);
                }
                continue;
            }
            runs.clear();
            merge_runs(&base, &marks[start..m], markers.is_some(), &mut runs);
            let own = markers.map(|m| m[wire]);
            for piece in chunks_of(by_wire[wire], own, runs.iter().copied()) {
                self.enqueue(slot, piece);
            }
        }
        marks.clear();
        self.marks = marks;
    }

    fn enqueue_all(&mut self, chunks: &PerWire<Chunk>, except: Option<usize>) {
        for slot in 0..self.slots.len() {
            if Some(slot) != except {
                self.enqueue_for(slot, chunks);
            }
        }
    }

    /// Queues the chunk of the client's wire.
    fn enqueue_for(&mut self, slot: usize, chunks: &PerWire<Chunk>) {
        if let Some(wire) = self.slots.get(slot).map(|c| c.wire()) {
            self.enqueue(slot, Piece::Chunk(&chunks[wire]));
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
        if busy && !self.was_busy {
            self.shared.counters.held_back.fetch_add(1, Relaxed);
        }
        self.was_busy = busy;
        busy
    }

    /// When a busy client may stop being busy by itself: its busy time runs out, or its
    /// writes have been stuck long enough to count as stalled.
    pub(super) fn busy_recheck(&self) -> Option<Instant> {
        self.high
            .iter()
            .filter_map(|&slot| self.slots.get(slot))
            .filter_map(|c| {
                let stall = c.flow.stalled_at(c.stalled_since, self.progress);
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
            self.progress = self.now;
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
            self.flush_client(slot);
            self.update_flow(slot);
        }
        dirty.clear();
        // Failures above may have queued nothing new, but keep whatever they did.
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }
}

/// A mark's flag: the client is excluded from the run (`AllExcept`, `TopicExcept`), not
/// given it; it gets the run's marker instead, if there are markers.
pub(super) const EXCLUDED: u32 = 1 << 31;

/// The pieces for these runs (ascending; a run with [`EXCLUDED`] set is taken from `own`):
/// one per stretch of consecutive runs from the same frames.
fn chunks_of<'a>(
    frames: &'a Frames,
    own: Option<&'a Frames>,
    runs: impl Iterator<Item = u32>,
) -> Vec<Piece<'a>> {
    let mut chunks = Vec::new();
    let mut open: Option<(Range<usize>, bool)> = None;
    let source = |marker: bool| {
        if marker {
            own.unwrap_or(frames)
        } else {
            frames
        }
    };
    for run in runs {
        let marker = run & EXCLUDED != 0;
        let range = frames.run_frames((run & !EXCLUDED) as usize);
        match &mut open {
            Some((open, m)) if *m == marker && open.end == range.start => open.end = range.end,
            _ => chunks.extend(
                open.replace((range, marker))
                    .map(|(r, m)| Piece::cut(source(m), r)),
            ),
        }
    }
    chunks.extend(open.map(|(r, m)| Piece::cut(source(m), r)));
    // An excluded run with no marker (an empty frame) sends nothing.
    chunks.retain(|piece| !piece.is_empty());
    chunks
}

/// One client's runs, ascending: the runs for everyone (`base`) — those its marks exclude
/// it from as [`EXCLUDED`] runs if it gets `markers` instead, else left out — and the runs
/// its marks give it.
fn merge_runs(base: &[u32], marks: &[(usize, u32)], markers: bool, out: &mut Vec<u32>) {
    let excluded = |run: u32| marks.iter().any(|&(_, m)| m == run | EXCLUDED);
    let mut own = marks.iter().map(|&(_, m)| m).peekable();
    let mut base = base
        .iter()
        .filter_map(|&run| match excluded(run) {
            false => Some(run),
            true if markers => Some(run | EXCLUDED),
            true => None,
        })
        .peekable();
    loop {
        // Compare run indexes without the flag; a run is taken once.
        let key = |r: &u32| r & !EXCLUDED;
        let next = match (base.peek().map(key), own.peek().map(key)) {
            (Some(b), Some(o)) if b < o => base.next(),
            (Some(b), Some(o)) if b == o => {
                own.next();
                base.next()
            }
            (_, Some(_)) => own.next(),
            (Some(_), None) => base.next(),
            (None, None) => return,
        };
        if let Some(run) = next {
            // An exclusion with no marker sends nothing.
            if run & EXCLUDED != 0 && !markers {
                continue;
            }
            if out.last().map(key) != Some(key(&run)) {
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
            |pieces: Vec<Piece<'_>>| -> Vec<u64> { pieces.iter().map(Piece::frames).collect() };
        // Runs for everyone: 0, 1, 3 (frames 1 2 | 4).
        assert_eq!(
            counts(chunks_of(&frames, None, [0, 1, 3].into_iter())),
            vec![2, 1]
        );
        let mut runs = Vec::new();
        // Excluded from run 1, given run 2: 0 | 2 3.
        merge_runs(&[0, 1, 3], &[(7, 1 | EXCLUDED), (7, 2)], false, &mut runs);
        assert_eq!(runs, vec![0, 2, 3]);
        assert_eq!(
            counts(chunks_of(&frames, None, runs.iter().copied())),
            vec![1, 2]
        );
        // With markers, the excluded run comes from them, in its place.
        runs.clear();
        merge_runs(&[0, 1, 3], &[(7, 1 | EXCLUDED), (7, 2)], true, &mut runs);
        assert_eq!(runs, vec![0, 1 | EXCLUDED, 2, 3]);
        runs.clear();
        merge_runs(&[], &[(7, 2)], false, &mut runs);
        assert_eq!(runs, vec![2]);
    }
}
