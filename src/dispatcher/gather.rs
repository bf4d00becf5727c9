//! Gathered fan-out: batches whose frames are each for a few named clients (topic
//! publishes, `send_to`) are not fanned out one by one while host commands run, but
//! gathered and fanned out together, client by client.
//!
//! Publishing round-robin over many topics gives each member about one frame per batch, so
//! fanning out batch by batch visits a client's state (its slot, its queue, the end of its
//! buffer) for every single frame: with thousands of clients that is a cache miss or
//! several per delivery, and it costs ten times what a broadcast does. Gathered, each
//! client is visited once for all its frames of up to [`MAX_BATCHES`] batches, and its
//! small frames are copied into its buffer in one go.
//!
//! Order is kept: a batch for everyone, or any command other than a batch, first fans out
//! what is gathered; so does the end of the round's commands. Topic members are read when
//! a batch is gathered, and numbers assigned then, in command order as always.

use super::outbound::EXCLUDED;
use super::Dispatcher;
use crate::command::{Frames, Target};
use crate::queue::Piece;
use crate::wire::{PerWire, Wire};

/// The most batches gathered before they are fanned out.
const MAX_BATCHES: usize = 64;
/// The most deliveries gathered (8 bytes each) before they are fanned out.
const MAX_MARKS: usize = 1 << 19;
/// A mark's batch, above its run.
const BATCH_SHIFT: u32 = 24;
const RUN_MASK: u32 = (1 << BATCH_SHIFT) - 1;

/// A gathered batch, framed for each wire, with its `#own` markers if it has any.
struct GatheredBatch {
    frames: Frames,
    reframed: PerWire<Option<Frames>>,
    markers: Option<(Frames, PerWire<Option<Frames>>)>,
}

impl GatheredBatch {
    /// The frames a mark takes from, for a client on `wire`.
    fn source(&self, wire: Wire, excluded: bool) -> Option<&Frames> {
        let (frames, reframed) = if excluded {
            let (m, reframed) = self.markers.as_ref()?;
            (m, reframed)
        } else {
            (&self.frames, &self.reframed)
        };
        Some(reframed[wire].as_ref().unwrap_or(frames))
    }
}

/// The batches gathered so far, and every (client, batch, run) delivery they make.
#[derive(Default)]
pub(super) struct Gathered {
    batches: Vec<GatheredBatch>,
    /// (slot, batch << 24 | run, with [`EXCLUDED`]), in batch and run order.
    marks: Vec<(u32, u32)>,
    /// Scratch for sorting the marks by client.
    sorted: Vec<(u32, u32)>,
    counts: Vec<u32>,
}

impl std::fmt::Debug for Gathered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gathered")
            .field("batches", &self.batches.len())
            .field("marks", &self.marks.len())
            .finish()
    }
}

/// Whether a batch goes to named clients only: nothing for everyone, several runs (one run
/// is one chunk per member already), and few enough runs to be marked.
pub(super) fn is_gatherable(frames: &Frames) -> bool {
    frames.runs.len() > 1
        && frames.runs.len() <= RUN_MASK as usize
        && frames.runs.iter().all(|&(_, target)| {
            matches!(
                target,
                Target::One(_) | Target::Topic(_) | Target::TopicExcept(..)
            )
        })
}

impl Dispatcher {
    /// Gathers a batch for named clients (see [`is_gatherable`]), fanning out what is
    /// gathered first if it is full.
    pub(super) fn gather(
        &mut self,
        frames: &Frames,
        reframed: PerWire<Option<Frames>>,
        markers: Option<(Frames, PerWire<Option<Frames>>)>,
    ) {
        if self.gathered.batches.len() == MAX_BATCHES || self.gathered.marks.len() >= MAX_MARKS {
            self.fan_out_gathered();
        }
        let batch = (self.gathered.batches.len() as u32) << BATCH_SHIFT;
        let with_markers = markers.is_some();
        let mut marks = std::mem::take(&mut self.gathered.marks);
        for (run, &(_, target)) in frames.runs.iter().enumerate() {
            let code = batch | run as u32;
            match target {
                Target::One(id) => {
                    if let Some(slot) = self.slots.slot_of(id) {
                        marks.push((slot as u32, code));
                    }
                }
                Target::Topic(topic) => marks.extend(
                    self.topics
                        .members(topic)
                        .iter()
                        .map(|&(slot, _)| (slot as u32, code)),
                ),
                Target::TopicExcept(topic, except) => {
                    for &(slot, client) in self.topics.members(topic) {
                        if client != except {
                            marks.push((slot as u32, code));
                        } else if with_markers {
                            marks.push((slot as u32, code | EXCLUDED));
                        }
                    }
                }
                // Not gatherable: `fan_out_framed` never hands such a batch here.
                Target::All | Target::AllExcept(_) => {}
            }
        }
        self.gathered.marks = marks;
        self.gathered.batches.push(GatheredBatch {
            frames: frames.clone(),
            reframed,
            markers,
        });
    }

    /// Fans out everything gathered, client by client: each client gets its frames of
    /// every gathered batch, in order, in as few pieces as they make.
    pub(super) fn fan_out_gathered(&mut self) {
        if self.gathered.batches.is_empty() {
            return;
        }
        let mut gathered = std::mem::take(&mut self.gathered);
        sort_by_slot(&mut gathered, self.slots.len());
        let marks = &gathered.sorted;
        let mut m = 0;
        while m < marks.len() {
            let slot = marks[m].0 as usize;
            let end = m + marks[m..]
                .iter()
                .take_while(|&&(s, _)| s as usize == slot)
                .count();
            if let Some(wire) = self.slots.get(slot).map(|c| c.wire()) {
                // Consecutive runs of one batch from the same frames make one piece.
                let mut open: Option<(usize, bool, std::ops::Range<usize>)> = None;
                for &(_, code) in &marks[m..end] {
                    let excluded = code & EXCLUDED != 0;
                    let batch = ((code & !EXCLUDED) >> BATCH_SHIFT) as usize;
                    let run = (code & RUN_MASK) as usize;
                    let range = gathered.batches[batch].frames.run_frames(run);
                    match &mut open {
                        Some((b, x, r))
                            if *b == batch && *x == excluded && r.end == range.start =>
                        {
                            r.end = range.end;
                        }
                        _ => {
                            if let Some((b, x, r)) = open.replace((batch, excluded, range)) {
                                self.enqueue_gathered(&gathered.batches[b], slot, wire, x, r);
                            }
                        }
                    }
                }
                if let Some((b, x, r)) = open {
                    self.enqueue_gathered(&gathered.batches[b], slot, wire, x, r);
                }
            }
            m = end;
        }
        gathered.batches.clear();
        gathered.marks.clear();
        gathered.sorted.clear();
        self.gathered = gathered;
    }

    fn enqueue_gathered(
        &mut self,
        batch: &GatheredBatch,
        slot: usize,
        wire: Wire,
        excluded: bool,
        frames: std::ops::Range<usize>,
    ) {
        if let Some(source) = batch.source(wire, excluded) {
            let piece = Piece::cut(source, frames);
            // An empty frame (raw framing) sends nothing.
            if !piece.is_empty() {
                self.enqueue(slot, piece);
            }
        }
    }
}

/// Sorts the marks by client into `sorted`, keeping each client's in order: a counting
/// sort, linear in marks and clients, for the many marks of a flood; a stable sort for a
/// few marks among many clients.
fn sort_by_slot(gathered: &mut Gathered, slots: usize) {
    let Gathered {
        marks,
        sorted,
        counts,
        ..
    } = gathered;
    sorted.clear();
    if marks.len() < slots / 4 {
        sorted.extend_from_slice(marks);
        sorted.sort_by_key(|&(slot, _)| slot);
        return;
    }
    counts.clear();
    counts.resize(slots + 1, 0);
    for &(slot, _) in marks.iter() {
        counts[slot as usize + 1] += 1;
    }
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    sorted.resize(marks.len(), (0, 0));
    for &mark in marks.iter() {
        let at = &mut counts[mark.0 as usize];
        sorted[*at as usize] = mark;
        *at += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_sorted_by_client_and_keep_their_order() {
        let marks = vec![(3, 1), (1, 2), (3, 3), (0, 4), (1, 5), (3, 6)];
        for slots in [4, 100] {
            let mut gathered = Gathered {
                marks: marks.clone(),
                ..Gathered::default()
            };
            sort_by_slot(&mut gathered, slots);
            assert_eq!(
                gathered.sorted,
                [(0, 4), (1, 2), (1, 5), (3, 1), (3, 3), (3, 6)]
            );
        }
    }
}
