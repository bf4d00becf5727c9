//! Topic membership as the dispatcher applies it, in command order: who a topic's
//! messages go to. A publish after `join` returned reaches the client, one before does not,
//! because joins, leaves and publishes are commands in one ordered stream.
//!
//! With the protocol on, a topic whose last member left is *kept*, with its numbers and
//! replay ring, so members can come back and resume. Kept topics are bounded: their rings
//! together hold at most `replay_kept_bytes` (past it, the topic left longest ago is
//! evicted), and the table evicts the one left longest ago when a new topic needs its room
//! (`TopicTable::join`). Both are O(log n) per change, with no scan of the topics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::presence::Presence;
use super::stream::{RingLimits, RingTotal, Stream};
use super::TopicId;
use crate::ClientId;

/// One topic as the dispatcher sees it.
#[derive(Debug)]
struct Topic {
    generation: u32,
    name: Arc<str>,
    /// Its members: slot and id (a slot that holds another client is stale).
    members: Vec<(usize, ClientId)>,
    /// Its numbers and replay ring (used with `Protocol::Sequenced`).
    stream: Stream,
    /// While it has no member and is kept: its key in `Topics::kept`, and when its last
    /// member left.
    kept: Option<u64>,
    left_at: Option<Instant>,
    /// The table evicted it while members were still leaving here: freed once they have.
    evicted: bool,
    /// Who is in it, as its members are told, if the host asked for presence.
    presence: Option<Presence>,
    /// How many of its last messages a join gets by default.
    history: u64,
}

/// Every topic with members, or kept for its ring, by slot of its id.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    slots: Vec<Option<Topic>>,
    /// Kept topics, by when their last member left (oldest first). Exact: an entry goes
    /// when its topic gets a member again or is freed.
    kept: BTreeMap<u64, TopicId>,
    /// The key of the next entry of `kept`.
    kept_next: u64,
    /// What the kept topics' rings cost (see `Stream::cost`), counted by the streams.
    kept_bytes: RingTotal,
    /// What every ring costs, the hub-wide stream's included.
    total: RingTotal,
}

/// The slot of `id`'s topic, if the id is current (the topic there is of its generation).
fn current(slots: &mut [Option<Topic>], id: TopicId) -> Option<&mut Option<Topic>> {
    slots
        .get_mut(id.index as usize)
        .filter(|slot| slot.as_ref().is_some_and(|t| t.generation == id.generation))
}

/// Takes a topic out of the kept ones (it got a member, or is going).
fn unkeep(topic: &mut Topic, kept: &mut BTreeMap<u64, TopicId>) {
    topic.left_at = None;
    if let Some(key) = topic.kept.take() {
        kept.remove(&key);
        topic.stream.count_in(None);
    }
}

impl Topics {
    /// The topic of `id`, if the id is current.
    fn get(&self, id: TopicId) -> Option<&Topic> {
        let topic = self.slots.get(id.index as usize)?.as_ref()?;
        (topic.generation == id.generation).then_some(topic)
    }

    /// The members of a topic, if the id is current.
    pub(crate) fn members(&self, id: TopicId) -> &[(usize, ClientId)] {
        self.get(id).map_or(&[], |topic| &topic.members)
    }

    /// A topic's stream and name, if the id is current.
    pub(crate) fn stream_mut(&mut self, id: TopicId) -> Option<(&mut Stream, &str)> {
        let topic = current(&mut self.slots, id)?.as_mut()?;
        Some((&mut topic.stream, &*topic.name))
    }

    /// What every replay ring costs now, counted by the streams themselves: new streams
    /// count in it.
    pub(crate) fn ring_total(&self) -> &RingTotal {
        &self.total
    }

    /// Drops the oldest messages of the costliest rings, the hub-wide stream's (`hub`)
    /// among them, until `excess` bytes are freed: every ring that costs more than one
    /// common level is trimmed down to it, so rings below the level lose nothing. Returns
    /// how many messages went.
    pub(crate) fn trim_largest(&mut self, hub: &mut Stream, excess: usize) -> u64 {
        let mut costs: Vec<usize> = self
            .slots
            .iter()
            .flatten()
            .map(|topic| topic.stream.cost())
            .chain([hub.cost()])
            .collect();
        let level = water_level(&mut costs, excess);
        let mut dropped = hub.trim_to(level);
        for topic in self.slots.iter_mut().flatten() {
            if topic.stream.cost() > level {
                dropped += topic.stream.trim_to(level);
            }
        }
        dropped
    }

    /// A topic's stream, if the id is current.
    pub(crate) fn stream(&self, id: TopicId) -> Option<&Stream> {
        self.get(id).map(|topic| &topic.stream)
    }

    /// How many topics are kept, and what their rings hold.
    pub(crate) fn kept(&self) -> (usize, usize) {
        (self.kept.len(), self.kept_bytes.get())
    }

    /// A topic's name, if the id is current.
    pub(crate) fn name_of(&self, id: TopicId) -> Option<&str> {
        self.get(id).map(|topic| &*topic.name)
    }

    /// A topic's name, shared, if the id is current.
    pub(crate) fn name_arc(&self, id: TopicId) -> Option<Arc<str>> {
        self.get(id).map(|topic| Arc::clone(&topic.name))
    }

    /// Makes the topic of `id` if it is not here: returns whether it is new here, and the
    /// name of an older topic it replaced in its slot (freed in the table since). A new
    /// topic has no presence and no history until [`configure`](Self::configure)d.
    pub(crate) fn open(&mut self, id: TopicId, name: Arc<str>) -> (bool, Option<Arc<str>>) {
        let index = id.index as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        let Topics {
            slots, kept, total, ..
        } = self;
        let slot = &mut slots[index];
        let mut replaced = None;
        if slot.as_ref().is_some_and(|t| t.generation != id.generation) {
            // The slot held an older topic, freed since: this one replaces it.
            if let Some(mut old) = slot.take() {
                unkeep(&mut old, kept);
                replaced = Some(old.name);
            }
        }
        let created = slot.is_none();
        slot.get_or_insert_with(|| Topic {
            generation: id.generation,
            name,
            members: Vec::new(),
            stream: Stream::new(total),
            kept: None,
            left_at: None,
            evicted: false,
            presence: None,
            history: 0,
        });
        (created, replaced)
    }

    /// Sets a topic's options, as it is made.
    pub(crate) fn configure(&mut self, id: TopicId, presence: Option<Presence>, history: u64) {
        if let Some(topic) = current(&mut self.slots, id).and_then(Option::as_mut) {
            topic.presence = presence;
            topic.history = history;
        }
    }

    /// A topic's presence, if it has one and the id is current.
    pub(crate) fn presence_mut(&mut self, id: TopicId) -> Option<&mut Presence> {
        current(&mut self.slots, id)?.as_mut()?.presence.as_mut()
    }

    /// A topic's members as a snapshot tells them (`Presence::list`), with its name, if it
    /// has presence and the id is current.
    pub(crate) fn presence_list(&self, id: TopicId) -> Option<(String, Arc<str>)> {
        let topic = self.get(id)?;
        Some((topic.presence.as_ref()?.list(), Arc::clone(&topic.name)))
    }

    /// How many of a topic's last messages a join gets by default.
    pub(crate) fn history(&self, id: TopicId) -> u64 {
        self.get(id).map_or(0, |topic| topic.history)
    }

    /// Adds a member to a topic [`open`](Self::open)ed; returns its stream.
    pub(crate) fn add(&mut self, id: TopicId, member: (usize, ClientId)) -> Option<&Stream> {
        let Topics { slots, kept, .. } = self;
        let topic = current(slots, id)?.as_mut()?;
        unkeep(topic, kept);
        if !topic.members.contains(&member) {
            topic.members.push(member);
        }
        Some(&topic.stream)
    }

    /// Takes a client out of a topic. Returns the topic's name if it is now empty of
    /// members and so freed. With the protocol on (`kept_at`, the time now), a topic left
    /// empty is kept instead, with its numbers and ring, for members that come back to
    /// resume, even with nothing in its ring: a member that missed nothing resumes at its
    /// position (see `prune` and `evict_over` for how long).
    pub(crate) fn remove(
        &mut self,
        id: TopicId,
        client: ClientId,
        kept_at: Option<Instant>,
    ) -> Option<Arc<str>> {
        let Topics {
            slots,
            kept,
            kept_next,
            kept_bytes,
            ..
        } = self;
        let slot = current(slots, id)?;
        let topic = slot.as_mut()?;
        if let Some(pos) = topic.members.iter().position(|&(_, c)| c == client) {
            topic.members.swap_remove(pos);
        }
        if !topic.members.is_empty() {
            return None;
        }
        let Some(now) = kept_at.filter(|_| !topic.evicted) else {
            log::trace!("topic {} is freed", topic.name);
            unkeep(topic, kept);
            return slot.take().map(|t| t.name);
        };
        if topic.kept.is_none() {
            let key = *kept_next;
            *kept_next += 1;
            topic.kept = Some(key);
            topic.left_at = Some(now);
            kept.insert(key, id);
            topic.stream.count_in(Some(kept_bytes));
        }
        None
    }

    /// Evicts kept topics, the one left longest ago first, until their rings hold at most
    /// `limit` bytes. Returns the evicted topics.
    pub(crate) fn evict_over(&mut self, limit: usize) -> Vec<(TopicId, Arc<str>)> {
        let mut evicted = Vec::new();
        while self.kept_bytes.get() > limit {
            let Some((_, id)) = self.kept.pop_first() else {
                break;
            };
            if let Some(topic) = current(&mut self.slots, id).and_then(Option::take) {
                // Out of `kept` already; its stream, dropped, takes its bytes back.
                evicted.push((id, topic.name));
            }
        }
        evicted
    }

    /// The table evicted a topic to make room for another: drops it (its ring and numbers)
    /// if it has no member here, or marks it to be freed as its last member leaves (their
    /// leaves, decided before the eviction, are on their way). Returns its name if dropped.
    pub(crate) fn evict(&mut self, id: TopicId) -> Option<Arc<str>> {
        let Topics { slots, kept, .. } = self;
        let slot = current(slots, id)?;
        let topic = slot.as_mut()?;
        if !topic.members.is_empty() {
            topic.evicted = true;
            return None;
        }
        unkeep(topic, kept);
        slot.take().map(|t| t.name)
    }

    /// Drops ring messages past their age; frees topics with no member, no message, and
    /// whose last member left over `age` ago (with no age limit, they stay until evicted).
    /// Returns the freed topics' ids and when to look again.
    pub(crate) fn prune(
        &mut self,
        now: Instant,
        limits: &RingLimits,
    ) -> (Vec<(TopicId, Arc<str>)>, Option<Instant>) {
        let mut freed = Vec::new();
        let mut next: Option<Instant> = None;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(topic) = slot else {
                continue;
            };
            let again = topic.stream.prune(now, limits);
            let until = match (topic.left_at, limits.age) {
                (Some(left), Some(age)) => left.checked_add(age),
                _ => None,
            };
            let expired = until.is_some_and(|until| until <= now);
            if topic.members.is_empty() && topic.stream.ring_is_empty() && expired {
                let id = TopicId {
                    index: index as u32,
                    generation: topic.generation,
                };
                unkeep(topic, &mut self.kept);
                freed.push((id, Arc::clone(&topic.name)));
                *slot = None;
                continue;
            }
            let empty_until = until.filter(|_| topic.members.is_empty());
            next = [next, again, empty_until].into_iter().flatten().min();
        }
        (freed, next)
    }
}

/// The level that trimming every one of `costs` above it down to it frees at least `excess`
/// (0 if even all of them are less). Sorts `costs`.
fn water_level(costs: &mut [usize], excess: usize) -> usize {
    costs.sort_unstable_by(|a, b| b.cmp(a));
    let mut sum = 0;
    for (i, &cost) in costs.iter().enumerate() {
        sum += cost;
        let (n, next) = (i + 1, costs.get(i + 1).copied().unwrap_or(0));
        // Trimming the n costliest down to `next` frees `sum - n * next`.
        if sum - n * next >= excess {
            return (sum - excess) / n;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Topics {
        /// `open`, then `add`.
        fn open_add(&mut self, id: TopicId, name: Arc<str>, member: (usize, ClientId)) {
            let _ = self.open(id, name);
            let _ = self.add(id, member);
        }
    }

    #[test]
    fn a_stale_id_has_no_members() {
        let mut topics = Topics::default();
        let old = TopicId {
            index: 0,
            generation: 0,
        };
        let new = TopicId {
            index: 0,
            generation: 1,
        };
        topics.open_add(old, Arc::from("a"), (3, ClientId(1)));
        assert_eq!(topics.members(old), &[(3, ClientId(1))]);
        topics.open_add(new, Arc::from("b"), (4, ClientId(2)));
        assert!(topics.members(old).is_empty());
        assert_eq!(topics.members(new), &[(4, ClientId(2))]);
        assert!(topics.remove(new, ClientId(2), None).is_some());
        assert!(topics.members(new).is_empty());
    }

    fn with_ring(topics: &mut Topics, index: u32, member: u64, bytes: usize) -> TopicId {
        let id = TopicId {
            index,
            generation: 0,
        };
        topics.open_add(id, Arc::from(format!("t{index}")), (0, ClientId(member)));
        let limits = RingLimits {
            messages: 100,
            bytes: 1000,
            age: None,
        };
        let (stream, _) = topics.stream_mut(id).unwrap();
        let seq = stream.next();
        stream.keep(
            seq,
            bytes::Bytes::from(vec![b'x'; bytes]),
            None,
            false,
            Instant::now(),
            &limits,
        );
        id
    }

    #[test]
    fn kept_rings_are_counted_and_evicted_oldest_first() {
        let mut topics = Topics::default();
        let a = with_ring(&mut topics, 0, 1, 100);
        let b = with_ring(&mut topics, 1, 2, 200);
        let c = with_ring(&mut topics, 2, 3, 300);
        let cost = |topics: &Topics, id| topics.stream(id).unwrap().cost();
        let (ca, cb, cc) = (cost(&topics, a), cost(&topics, b), cost(&topics, c));
        assert!(ca < cb && cb < cc);
        assert_eq!(topics.ring_total().get(), ca + cb + cc);
        assert_eq!(topics.kept(), (0, 0));
        // Left in the order b, a, c: kept, counted.
        assert!(topics
            .remove(b, ClientId(2), Some(Instant::now()))
            .is_none());
        assert!(topics
            .remove(a, ClientId(1), Some(Instant::now()))
            .is_none());
        assert!(topics
            .remove(c, ClientId(3), Some(Instant::now()))
            .is_none());
        assert_eq!(topics.kept(), (3, ca + cb + cc));
        // A kept topic's ring changes (a message published to it): the kept bytes follow,
        // counted by its stream.
        let limits = RingLimits {
            messages: 100,
            bytes: 1000,
            age: None,
        };
        let (stream, _) = topics.stream_mut(c).unwrap();
        let seq = stream.next();
        stream.keep(
            seq,
            bytes::Bytes::from(vec![b'y'; 300]),
            None,
            false,
            Instant::now(),
            &limits,
        );
        let cc = cost(&topics, c);
        assert_eq!(topics.kept(), (3, ca + cb + cc));
        assert_eq!(topics.stream_mut(c).unwrap().0.trim_to(cc - 1), 1);
        let cc = cost(&topics, c);
        assert_eq!(topics.kept(), (3, ca + cb + cc));
        // A member comes back to a: no longer kept.
        topics.open_add(a, Arc::from("t0"), (5, ClientId(9)));
        assert_eq!(topics.kept(), (2, cb + cc));
        // Over what c alone costs: b goes first (left longest ago), then c fits.
        let evicted: Vec<_> = topics.evict_over(cc).into_iter().map(|e| e.0).collect();
        assert_eq!(evicted, [b]);
        assert_eq!(topics.kept(), (1, cc));
        assert!(topics.stream_mut(b).is_none());
        assert_eq!(topics.ring_total().get(), ca + cc, "b's ring is gone");
        // The table evicts c: dropped here too.
        assert_eq!(topics.evict(c).as_deref(), Some("t2"));
        assert_eq!(topics.kept(), (0, 0));
        // The table evicts a while its member is still here: freed as it leaves.
        assert_eq!(topics.evict(a), None);
        assert!(topics
            .remove(a, ClientId(9), Some(Instant::now()))
            .is_some());
        assert_eq!(topics.kept(), (0, 0));
        assert_eq!(topics.ring_total().get(), 0);
    }

    #[test]
    fn the_largest_rings_are_trimmed_to_a_common_level() {
        assert_eq!(water_level(&mut [100, 50, 10], 60), 45);
        assert_eq!(water_level(&mut [10, 100, 50], 50), 50);
        assert_eq!(water_level(&mut [100, 100], 50), 75);
        assert_eq!(water_level(&mut [10, 10], 100), 0);
        assert_eq!(water_level(&mut [], 1), 0);

        let mut topics = Topics::default();
        let mut hub = Stream::new(topics.ring_total());
        let limits = RingLimits {
            messages: 1000,
            bytes: usize::MAX,
            age: None,
        };
        let now = Instant::now();
        let fill = |stream: &mut Stream, n: usize| {
            for _ in 0..n {
                let seq = stream.next();
                stream.keep(
                    seq,
                    bytes::Bytes::from(vec![b'x'; 100]),
                    None,
                    false,
                    now,
                    &limits,
                );
            }
        };
        let big = with_ring(&mut topics, 0, 1, 100);
        let small = with_ring(&mut topics, 1, 2, 100);
        fill(topics.stream_mut(big).unwrap().0, 500);
        fill(&mut hub, 200);
        let small_cost = topics.stream(small).unwrap().cost();
        let total = topics.ring_total().get();
        assert_eq!(
            total,
            hub.cost() + small_cost + topics.stream(big).unwrap().cost()
        );
        // A third of everything must go: the big ring loses most, the small one nothing.
        let dropped = topics.trim_largest(&mut hub, total / 3);
        assert!(dropped > 0);
        assert!(topics.ring_total().get() <= total - total / 3);
        assert_eq!(topics.stream(small).unwrap().cost(), small_cost);
        assert!(topics.stream(big).unwrap().cost() <= total / 2);
        assert_eq!(
            topics.ring_total().get(),
            hub.cost() + small_cost + topics.stream(big).unwrap().cost()
        );
    }
}
