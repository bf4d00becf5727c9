//! The fan-out engine: which pieces of which batches each client gets, in order. Pure: it
//! reads who a target names through [`Audience`] and hands out [`Piece`]s; the dispatcher
//! queues them (`outbound`). One engine serves every fan-out: a broadcast, a relay, a
//! topic publish, a `send_to`, and many batches for named clients gathered together.
//!
//! A [`Plan`] takes batches — whole frames in one shared buffer, each run of frames with
//! its target, framed once per wire — and resolves each run's target when the batch is
//! added (so topic members are read in command order). A run for everyone goes to the
//! *base* runs; a run for named clients becomes one [`Mark`] per client; a client a run
//! excludes gets an excluded mark (and that run's `#own` marker instead, if the batch has
//! markers). Delivering sorts the marks by client, keeping their order, and walks the
//! clients once: a client with no mark gets the base pieces, cut once for all of them; a
//! client with marks gets the base runs and its own merged in run order. Consecutive runs
//! of one batch from the same frames make one piece, so a client gets as few pieces as its
//! frames allow, and the cost is one pass over the clients plus one step per named
//! delivery.
//!
//! Gathering many batches for named clients (topic publishes round-robin over many topics)
//! visits each client once for all its frames: fanned out batch by batch, every delivery
//! would visit a client's state (a cache miss or several) for one frame.

use std::ops::Range;

use super::slots::Slots;
use crate::command::{Batch, Frames, Target};
use crate::queue::{Chunk, Piece};
use crate::topics::members::Topics;
use crate::topics::TopicId;
use crate::wire::{PerWire, Wire};
use crate::ClientId;

/// The most batches a plan holds before it must be delivered.
const MAX_BATCHES: usize = 64;
/// The most marks (8 bytes each) a plan holds before it must be delivered.
const MAX_MARKS: usize = 1 << 19;

/// The dispatcher's fan-out state.
#[derive(Debug)]
pub(super) struct FanOut {
    /// Batches on their way to the clients' queues: gathered while host commands run if
    /// they are for named clients, else delivered at once.
    pub(super) plan: Plan,
    /// Whether host commands are running (batches for named clients are gathered).
    pub(super) gathering: bool,
    /// Frames relayed from clients this round, fanned out together.
    pub(super) relay: Batch,
    /// The heartbeat ping, encoded once for each wire.
    pub(super) ping: Option<PerWire<Chunk>>,
}

impl FanOut {
    pub(super) fn new(ping: Option<PerWire<Chunk>>) -> FanOut {
        FanOut {
            plan: Plan::default(),
            gathering: false,
            relay: Batch::default(),
            ping,
        }
    }
}

/// Who a target names: the dispatcher's clients and topics, as the engine reads them.
pub(super) trait Resolve {
    /// The slot of a live client.
    fn slot_of(&self, client: ClientId) -> Option<usize>;
    /// A topic's members: slot and id.
    fn members(&self, topic: TopicId) -> &[(usize, ClientId)];
}

/// The dispatcher's clients and topics.
pub(super) struct Audience<'a> {
    pub(super) slots: &'a Slots,
    pub(super) topics: &'a Topics,
}

impl Resolve for Audience<'_> {
    fn slot_of(&self, client: ClientId) -> Option<usize> {
        self.slots.slot_of(client)
    }

    fn members(&self, topic: TopicId) -> &[(usize, ClientId)] {
        self.topics.members(topic)
    }
}

/// Whether a batch goes to named clients only, so that it can be gathered with others:
/// nothing for everyone, and several runs (one run is one piece per member already).
pub(super) fn is_gatherable(frames: &Frames) -> bool {
    frames.runs.len() > 1
        && frames.runs.iter().all(|&(_, target)| {
            matches!(
                target,
                Target::One(_) | Target::Topic(_) | Target::TopicExcept(..)
            )
        })
}

/// A batch framed for one wire, with its `#own` markers if it has any (protocol on, and
/// some run excludes a client).
#[derive(Debug, Clone)]
pub(super) struct Framed {
    pub(super) frames: Frames,
    pub(super) markers: Option<Frames>,
}

/// One delivery: a run of the plan (numbered across its batches, in order) for one client,
/// which gets the run's frames, or, excluded from the run, its marker if there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark(u32);

impl Mark {
    const EXCLUDED: u32 = 1 << 31;
    /// Runs a plan can number.
    const RUNS: u32 = Self::EXCLUDED;

    fn new(run: u32, excluded: bool) -> Mark {
        Mark(run | if excluded { Self::EXCLUDED } else { 0 })
    }

    fn run(self) -> u32 {
        self.0 & !Self::EXCLUDED
    }

    fn excluded(self) -> bool {
        self.0 & Self::EXCLUDED != 0
    }
}

/// A batch in a plan: framed for each wire, and the plan's number of its first run.
#[derive(Debug)]
struct Planned {
    wires: PerWire<Framed>,
    first_run: u32,
}

/// Batches waiting to be delivered, with every delivery they make. See the module.
#[derive(Debug, Default)]
pub(super) struct Plan {
    batches: Vec<Planned>,
    /// How many runs the batches have together.
    runs: u32,
    /// The runs for every client, ascending.
    base: Vec<u32>,
    /// (slot, mark): the deliveries to named clients, in run order.
    marks: Vec<(u32, Mark)>,
    /// Scratch for sorting the marks by client.
    sorted: Vec<(u32, Mark)>,
    counts: Vec<u32>,
}

impl Plan {
    pub(super) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Whether the plan must be delivered before another batch is added.
    pub(super) fn is_full(&self) -> bool {
        self.batches.len() >= MAX_BATCHES || self.marks.len() >= MAX_MARKS
    }

    /// Whether a batch could be added (see [`add`](Self::add)).
    pub(super) fn has_room_for(&self, frames: &Frames) -> bool {
        !self.is_full() && frames.runs.len() as u64 + u64::from(self.runs) < u64::from(Mark::RUNS)
    }

    /// Adds a batch framed for each wire (every wire's frames have the same runs),
    /// resolving its targets now. The caller checked [`has_room_for`](Self::has_room_for).
    pub(super) fn add(&mut self, wires: PerWire<Framed>, audience: &impl Resolve) {
        let first_run = self.runs;
        let frames = &wires[Wire::Framed].frames;
        let with_markers = wires[Wire::Framed].markers.is_some();
        for (i, &(_, target)) in frames.runs.iter().enumerate() {
            let run = first_run + i as u32;
            match target {
                Target::All => self.base.push(run),
                Target::AllExcept(id) => {
                    self.base.push(run);
                    // Marked even without markers: the mark takes the run away from it.
                    if let Some(slot) = audience.slot_of(id) {
                        self.marks.push((slot as u32, Mark::new(run, true)));
                    }
                }
                Target::One(id) => {
                    if let Some(slot) = audience.slot_of(id) {
                        self.marks.push((slot as u32, Mark::new(run, false)));
                    }
                }
                Target::Topic(topic) | Target::Presence(topic) => self.marks.extend(
                    audience
                        .members(topic)
                        .iter()
                        .map(|&(slot, _)| (slot as u32, Mark::new(run, false))),
                ),
                Target::TopicExcept(topic, except) => {
                    for &(slot, client) in audience.members(topic) {
                        let excluded = client == except;
                        if !excluded || with_markers {
                            self.marks.push((slot as u32, Mark::new(run, excluded)));
                        }
                    }
                }
            }
        }
        self.runs += frames.runs.len() as u32;
        self.batches.push(Planned { wires, first_run });
    }

    /// Sorts the marks by client and returns the deliveries, client by client, for
    /// clients in slots `0..slots`. [`clear`](Self::clear) the plan after.
    pub(super) fn deliveries(&mut self, slots: usize) -> Deliveries<'_> {
        self.sort_by_slot(slots);
        Deliveries {
            plan: self,
            slots: if self.base.is_empty() { 0 } else { slots },
            next_slot: 0,
            next_mark: 0,
            base: PerWire::default(),
            runs: Vec::new(),
            pieces: Vec::new(),
        }
    }

    /// Empties the plan, keeping its buffers.
    pub(super) fn clear(&mut self) {
        self.batches.clear();
        self.runs = 0;
        self.base.clear();
        self.marks.clear();
        self.sorted.clear();
    }

    /// Sorts the marks by client into `sorted`, keeping each client's in order: a counting
    /// sort, linear in marks and clients, for the many marks of a flood; a stable sort for
    /// a few marks among many clients.
    fn sort_by_slot(&mut self, slots: usize) {
        let Plan {
            marks,
            sorted,
            counts,
            ..
        } = self;
        sorted.clear();
        let stable_sort = |sorted: &mut Vec<(u32, Mark)>| {
            sorted.extend_from_slice(marks);
            sorted.sort_by_key(|&(slot, _)| slot);
        };
        if marks.len() < slots / 4 {
            return stable_sort(sorted);
        }
        counts.clear();
        counts.resize(slots + 1, 0);
        for &(slot, _) in marks.iter() {
            // Slots never shrink, so every mark is below `slots`; were one not, it is
            // sorted all the same, not indexed out of bounds.
            match counts.get_mut(slot as usize + 1) {
                Some(count) => *count += 1,
                None => return stable_sort(sorted),
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        sorted.resize(marks.len(), (0, Mark(0)));
        for &mark in marks.iter() {
            let at = &mut counts[mark.0 as usize];
            sorted[*at as usize] = mark;
            *at += 1;
        }
    }

    /// The batch of run `run`.
    fn batch_of(&self, run: u32) -> &Planned {
        let i = self.batches.partition_point(|b| b.first_run <= run) - 1;
        &self.batches[i]
    }

    /// The pieces of `runs` (ascending) for a client on wire `wire`, into `out`: one per
    /// stretch of consecutive runs of one batch from the same frames.
    fn pieces<'p>(&'p self, wire: Wire, runs: &[Mark], out: &mut Vec<Piece<'p>>) {
        // (frames, range) of the piece being extended.
        let mut open: Option<(&'p Frames, Range<usize>)> = None;
        for &mark in runs {
            let batch = self.batch_of(mark.run());
            let framed = &batch.wires[wire];
            let source = match (mark.excluded(), &framed.markers) {
                (false, _) => &framed.frames,
                (true, Some(markers)) => markers,
                (true, None) => continue,
            };
            let range = source.run_frames((mark.run() - batch.first_run) as usize);
            match &mut open {
                Some((frames, open))
                    if std::ptr::eq(*frames, source) && open.end == range.start =>
                {
                    open.end = range.end;
                }
                _ => {
                    if let Some((frames, range)) = open.replace((source, range)) {
                        out.push(Piece::cut(frames, range));
                    }
                }
            }
        }
        out.extend(open.map(|(frames, range)| Piece::cut(frames, range)));
        // An excluded run with no marker (an empty frame), or empty frames (raw framing),
        // send nothing.
        out.retain(|piece| !piece.is_empty());
    }
}

/// A client's runs, ascending: the base runs — as excluded marks those its marks exclude
/// it from — and the runs its marks give it.
fn merge_runs(base: &[u32], marks: &[(u32, Mark)], out: &mut Vec<Mark>) {
    let (mut b, mut m) = (0, 0);
    loop {
        let next = match (base.get(b), marks.get(m).map(|&(_, mark)| mark)) {
            (Some(&run), Some(mark)) if run < mark.run() => {
                b += 1;
                Mark::new(run, false)
            }
            (Some(&run), Some(mark)) if run == mark.run() => {
                // Its mark for a base run: the run excludes it.
                b += 1;
                m += 1;
                mark
            }
            (_, Some(mark)) => {
                m += 1;
                mark
            }
            (Some(&run), None) => {
                b += 1;
                Mark::new(run, false)
            }
            (None, None) => return,
        };
        out.push(next);
    }
}

/// A plan's deliveries, client by client (see [`Plan::deliveries`]).
pub(super) struct Deliveries<'p> {
    plan: &'p Plan,
    /// Every slot below this gets the base runs (0 if there are none).
    slots: usize,
    next_slot: usize,
    /// The next mark in `plan.sorted`.
    next_mark: usize,
    /// The base pieces, by wire, cut the first time a client of the wire needs them.
    base: PerWire<Option<Vec<Piece<'p>>>>,
    runs: Vec<Mark>,
    pieces: Vec<Piece<'p>>,
}

impl<'p> Deliveries<'p> {
    /// The next client with something to get: its slot and its pieces, in order.
    /// `wire_of` gives a slot's wire, or `None` if it holds no live client.
    pub(super) fn next(
        &mut self,
        wire_of: impl Fn(usize) -> Option<Wire>,
    ) -> Option<(usize, &[Piece<'p>])> {
        let plan = self.plan;
        let sorted = &plan.sorted;
        loop {
            let marked = sorted.get(self.next_mark).map(|&(s, _)| s as usize);
            // Every slot while there are base runs, then (or else) the marked ones.
            let slot = match marked {
                _ if self.next_slot < self.slots => self.next_slot,
                Some(slot) => slot,
                None => return None,
            };
            self.next_slot = self.next_slot.max(slot + 1);
            let start = self.next_mark;
            while sorted
                .get(self.next_mark)
                .is_some_and(|&(s, _)| s as usize == slot)
            {
                self.next_mark += 1;
            }
            let Some(wire) = wire_of(slot) else {
                continue;
            };
            if start == self.next_mark {
                let base = self.base[wire].get_or_insert_with(|| {
                    let runs: Vec<Mark> = plan.base.iter().map(|&r| Mark::new(r, false)).collect();
                    let mut pieces = Vec::new();
                    plan.pieces(wire, &runs, &mut pieces);
                    pieces
                });
                return Some((slot, base));
            }
            self.runs.clear();
            merge_runs(&plan.base, &sorted[start..self.next_mark], &mut self.runs);
            self.pieces.clear();
            plan.pieces(wire, &self.runs, &mut self.pieces);
            return Some((slot, &self.pieces));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::Framing;

    /// Clients by slot (each with its wire, or `None` if the slot holds none) and topics.
    struct Room {
        wires: Vec<Option<Wire>>,
        topics: HashMap<TopicId, Vec<(usize, ClientId)>>,
    }

    fn client(slot: usize) -> ClientId {
        ClientId(100 + slot as u64)
    }

    fn topic(i: u32) -> TopicId {
        TopicId {
            index: i,
            generation: 0,
        }
    }

    impl Resolve for Room {
        fn slot_of(&self, id: ClientId) -> Option<usize> {
            let slot = (id.0 as usize).checked_sub(100)?;
            self.wires.get(slot)?.map(|_| slot)
        }

        fn members(&self, topic: TopicId) -> &[(usize, ClientId)] {
            self.topics.get(&topic).map_or(&[], Vec::as_slice)
        }
    }

    /// Frames `f0..` of runs with these targets, their text prefixed with `tag`.
    fn batch(tag: &str, runs: &[(Target, usize)]) -> Frames {
        let mut batch = Batch::with_capacity(256);
        let mut i = 0;
        for &(target, frames) in runs {
            for _ in 0..frames {
                batch.push(Framing::Lines, format!("{tag}{i}").as_bytes(), target, None);
                i += 1;
            }
        }
        batch.take()
    }

    /// What each slot gets, as text.
    fn deliver(plan: &mut Plan, room: &Room) -> Vec<String> {
        let mut got = vec![String::new(); room.wires.len()];
        let mut deliveries = plan.deliveries(room.wires.len());
        let mut last = None;
        while let Some((slot, pieces)) = deliveries.next(|s| room.wires[s]) {
            assert!(last < Some(slot), "each client once, in slot order");
            last = Some(slot);
            for piece in pieces {
                let Piece::Cut(frames, first, end) = *piece else {
                    panic!("the engine cuts frames");
                };
                let bytes = &frames.bytes[frames.start_of(first)..frames.ends[end - 1] as usize];
                got[slot].push_str(std::str::from_utf8(bytes).unwrap());
            }
        }
        plan.clear();
        got
    }

    /// The wire numbered `i`, or the framed one if there are fewer built in.
    fn wire(i: usize) -> Wire {
        Wire::ALL.get(i).copied().unwrap_or(Wire::Framed)
    }

    /// Each wire's frames tagged with its own letter after `tag`.
    fn per_wire(tag: &str, runs: &[(Target, usize)], markers: Option<&str>) -> PerWire<Framed> {
        PerWire::new(|w| {
            let n = Wire::ALL.iter().position(|&x| x == w).unwrap();
            Framed {
                frames: batch(&format!("{tag}{n}"), runs),
                markers: markers.map(|m| batch(&format!("{m}{n}"), runs)),
            }
        })
    }

    #[test]
    fn a_client_gets_its_runs_and_the_common_ones_in_order() {
        let room = Room {
            wires: vec![Some(wire(0)), Some(wire(0)), Some(wire(1))],
            topics: HashMap::new(),
        };
        let runs = [
            (Target::All, 1),
            (Target::AllExcept(client(1)), 1),
            (Target::One(client(2)), 1),
            (Target::All, 1),
        ];
        // The last client's wire, if there are two.
        let other = if Wire::COUNT > 1 { "a1" } else { "a0" };
        let mut plan = Plan::default();
        plan.add(per_wire("a", &runs, None), &room);
        assert_eq!(
            deliver(&mut plan, &room),
            [
                "a00\na01\na03\n".to_owned(),
                "a00\na03\n".to_owned(),
                [0, 1, 2, 3].map(|i| format!("{other}{i}\n")).concat()
            ]
        );
        // With markers, the excluded client gets the marker in the run's place.
        plan.add(per_wire("a", &runs, Some("m")), &room);
        assert_eq!(deliver(&mut plan, &room)[1], "a00\nm01\na03\n");
        // Each client gets as few pieces as its frames allow: the base is one piece.
        plan.add(per_wire("a", &runs, None), &room);
        let mut deliveries = plan.deliveries(3);
        let (slot, pieces) = deliveries.next(|s| room.wires[s]).unwrap();
        assert_eq!((slot, pieces.len()), (0, 2));
    }

    /// A run's target, drawn from small numbers: clients 0..8 (some not live), topics 0..3.
    fn target() -> impl Strategy<Value = Target> {
        prop_oneof![
            Just(Target::All),
            (0..8usize).prop_map(|c| Target::AllExcept(client(c))),
            (0..8usize).prop_map(|c| Target::One(client(c))),
            (0..3u32).prop_map(|t| Target::Topic(topic(t))),
            (0..3u32, 0..8usize).prop_map(|(t, c)| Target::TopicExcept(topic(t), client(c))),
        ]
    }

    proptest! {
        /// The engine delivers exactly what delivering each frame to each client it is for,
        /// one by one, in order, would: for any clients, wires, topics and batches.
        #[test]
        fn delivers_each_frame_to_whom_it_is_for_in_order(
            wires in proptest::collection::vec(proptest::option::of((0..2usize).prop_map(wire)), 1..8),
            members in proptest::collection::vec(proptest::collection::btree_set(0..8usize, 0..6), 3),
            batches in proptest::collection::vec(
                (proptest::collection::vec((target(), 1..3usize), 1..6), any::<bool>()),
                1..6,
            ),
        ) {
            let slots = wires.len();
            let topics = members
                .iter()
                .enumerate()
                .map(|(t, m)| {
                    let m = m.iter().filter(|&&s| s < slots).map(|&s| (s, client(s))).collect();
                    (topic(t as u32), m)
                })
                .collect();
            let room = Room { wires, topics };
            let mut expected = vec![String::new(); slots];
            let mut plan = Plan::default();
            for (b, (runs, markers)) in batches.iter().enumerate() {
                let (tag, marker_tag) = (format!("{b}a"), format!("{b}m"));
                prop_assert!(plan.has_room_for(&batch("", runs)));
                plan.add(per_wire(&tag, runs, markers.then_some(&*marker_tag)), &room);
                let index = |w: Wire| Wire::ALL.iter().position(|&x| x == w).unwrap();
                // The model: frame by frame, client by client.
                let mut i = 0;
                for &(target, frames) in runs {
                    for _ in 0..frames {
                        for (slot, wire) in room.wires.iter().enumerate() {
                            let Some(wire) = *wire else { continue };
                            let member = |t| room.members(t).iter().any(|&(s, _)| s == slot);
                            let (to, excluded) = match target {
                                Target::All => (true, false),
                                Target::AllExcept(c) => (c != client(slot), c == client(slot)),
                                Target::One(c) => (c == client(slot), false),
                                Target::Topic(t) | Target::Presence(t) => (member(t), false),
                                Target::TopicExcept(t, c) => {
                                    (member(t) && c != client(slot), member(t) && c == client(slot))
                                }
                            };
                            if to {
                                expected[slot].push_str(&format!("{tag}{}{i}\n", index(wire)));
                            } else if excluded && *markers {
                                expected[slot].push_str(&format!("{marker_tag}{}{i}\n", index(wire)));
                            }
                        }
                        i += 1;
                    }
                }
            }
            prop_assert_eq!(deliver(&mut plan, &room), expected);
        }
    }
}
