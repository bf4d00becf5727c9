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
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::streams::{RingLimits, RingTotal, Stream};
use super::Dispatcher;
use crate::topics::TopicId;
use crate::wire::control::Reply;
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
    /// What the kept topics' rings cost (see `Stream::cost`).
    kept_bytes: usize,
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
fn unkeep(topic: &mut Topic, kept: &mut BTreeMap<u64, TopicId>, kept_bytes: &mut usize) {
    topic.left_at = None;
    if let Some(key) = topic.kept.take() {
        kept.remove(&key);
        *kept_bytes -= topic.stream.cost();
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

    /// A topic's stream and name, if the id is current, and if it is kept, the kept rings'
    /// byte count: whoever changes its ring adds the change there.
    pub(crate) fn stream_mut(
        &mut self,
        id: TopicId,
    ) -> Option<(&mut Stream, Option<&str>, Option<&mut usize>)> {
        let Topics {
            slots, kept_bytes, ..
        } = self;
        let topic = current(slots, id)?.as_mut()?;
        let kept = topic.kept.is_some().then_some(kept_bytes);
        Some((&mut topic.stream, Some(&*topic.name), kept))
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
            let before = topic.stream.cost();
            if before > level {
                dropped += topic.stream.trim_to(level);
                if topic.kept.is_some() {
                    self.kept_bytes -= before - topic.stream.cost();
                }
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
        (self.kept.len(), self.kept_bytes)
    }

    /// A topic's name, if the id is current.
    pub(crate) fn name_of(&self, id: TopicId) -> Option<&str> {
        self.get(id).map(|topic| &*topic.name)
    }

    /// A topic's name, shared, if the id is current.
    #[cfg(feature = "nats")]
    pub(crate) fn name_arc(&self, id: TopicId) -> Option<Arc<str>> {
        self.get(id).map(|topic| Arc::clone(&topic.name))
    }

    /// Adds a member; returns the topic's stream, whether the topic is new here, and the
    /// name of an older topic this one replaced in its slot (freed in the table since).
    fn add(
        &mut self,
        id: TopicId,
        name: Arc<str>,
        member: (usize, ClientId),
    ) -> (&Stream, bool, Option<Arc<str>>) {
        let index = id.index as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        let Topics {
            slots,
            kept,
            kept_bytes,
            total,
            ..
        } = self;
        let slot = &mut slots[index];
        let mut replaced = None;
        if slot.as_ref().is_some_and(|t| t.generation != id.generation) {
            // The slot held an older topic, freed since: this one replaces it.
            if let Some(mut old) = slot.take() {
                unkeep(&mut old, kept, kept_bytes);
                replaced = Some(old.name);
            }
        }
        let created = slot.is_none();
        let topic = slot.get_or_insert_with(|| Topic {
            generation: id.generation,
            name,
            members: Vec::new(),
            stream: Stream::new(total),
            kept: None,
            left_at: None,
            evicted: false,
        });
        unkeep(topic, kept, kept_bytes);
        if !topic.members.contains(&member) {
            topic.members.push(member);
        }
        (&topic.stream, created, replaced)
    }

    /// Takes a client out of a topic. Returns the topic's name if it is now empty of
    /// members and so freed. With the protocol on (`kept_at`, the time now), a topic left
    /// empty is kept instead, with its numbers and ring, for members that come back to
    /// resume, even with nothing in its ring: a member that missed nothing resumes at its
    /// position (see `prune` and `evict_over` for how long).
    fn remove(
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
            unkeep(topic, kept, kept_bytes);
            return slot.take().map(|t| t.name);
        };
        if topic.kept.is_none() {
            let key = *kept_next;
            *kept_next += 1;
            topic.kept = Some(key);
            topic.left_at = Some(now);
            kept.insert(key, id);
            *kept_bytes += topic.stream.cost();
        }
        None
    }

    /// Evicts kept topics, the one left longest ago first, until their rings hold at most
    /// `limit` bytes. Returns the evicted topics.
    fn evict_over(&mut self, limit: usize) -> Vec<(TopicId, Arc<str>)> {
        let mut evicted = Vec::new();
        while self.kept_bytes > limit {
            let Some((_, id)) = self.kept.pop_first() else {
                break;
            };
            if let Some(topic) = current(&mut self.slots, id).and_then(Option::take) {
                // Out of `kept` already: only its bytes to take back.
                self.kept_bytes -= topic.stream.cost();
                evicted.push((id, topic.name));
            }
        }
        evicted
    }

    /// The table evicted a topic to make room for another: drops it (its ring and numbers)
    /// if it has no member here, or marks it to be freed as its last member leaves (their
    /// leaves, decided before the eviction, are on their way). Returns its name if dropped.
    fn evict(&mut self, id: TopicId) -> Option<Arc<str>> {
        let Topics {
            slots,
            kept,
            kept_bytes,
            ..
        } = self;
        let slot = current(slots, id)?;
        let topic = slot.as_mut()?;
        if !topic.members.is_empty() {
            topic.evicted = true;
            return None;
        }
        unkeep(topic, kept, kept_bytes);
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
            let before = topic.stream.cost();
            let again = topic.stream.prune(now, limits);
            if topic.kept.is_some() {
                self.kept_bytes -= before - topic.stream.cost();
            }
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
                unkeep(topic, &mut self.kept, &mut self.kept_bytes);
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

/// The most often replay rings are pruned (see `Dispatcher::prune_rings`).
const PRUNE_PERIOD: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// `Hub::join` (or a client's `#join`) reached the dispatcher: from now on the client
    /// gets the topic's messages, and with the protocol on it is told where they start.
    pub(super) fn join_topic(&mut self, client: ClientId, id: TopicId, name: Arc<str>) {
        let Some(slot) = self.slots.slot_of(client) else {
            // It left meanwhile; leaving took it out of the table too.
            return;
        };
        let Some(live) = self.slots.get_mut(slot) else {
            return;
        };
        let (stream, created, replaced) = self.topics.add(id, Arc::clone(&name), (slot, client));
        let position = (stream.epoch, stream.seq);
        if !live.topics.iter().any(|&(t, _)| t == id) {
            live.topics.push((id, position.1));
        }
        if let Some(old) = replaced {
            self.topic_freed(old);
        }
        if created {
            self.topic_created(&name);
        }
        if self.config.sequenced {
            let (epoch, seq) = position;
            let topic = &name;
            self.reply(slot, Reply::Joined { topic, epoch, seq });
        }
    }

    /// `Hub::leave` (or a client's `#leave`) reached the dispatcher. Returns whether the
    /// client was in the topic here (and, with the protocol on, was told `#left`).
    pub(super) fn leave_topic(&mut self, client: ClientId, id: TopicId) -> bool {
        let Some(slot) = self.slots.slot_of(client) else {
            return false;
        };
        let Some(live) = self.slots.get_mut(slot) else {
            return false;
        };
        let before = live.topics.len();
        live.topics.retain(|&(t, _)| t != id);
        let was_member = live.topics.len() < before;
        if self.config.sequenced && was_member {
            if let Some(name) = self.topics.name_of(id) {
                let topic = name.to_owned();
                self.reply(slot, Reply::Left { topic: &topic });
            }
        }
        let kept_at = self.kept_at();
        if let Some(name) = self.topics.remove(id, client, kept_at) {
            self.release(vec![(id, name)]);
        }
        self.bound_kept();
        was_member
    }

    /// The table evicted a kept topic to make room for a new one: its ring and numbers go
    /// (a later resume of it is answered `epoch`).
    pub(super) fn topic_evicted(&mut self, id: TopicId) {
        self.shared.counters.topics_evicted.fetch_add(1, Relaxed);
        if let Some(name) = self.topics.evict(id) {
            log::debug!("kept topic {name} is evicted: the topic table is full");
            self.topic_freed(name);
        }
    }

    /// Evicts kept topics, the one left longest ago first, while their rings hold more than
    /// `replay_kept_bytes`. Costs a comparison when under it.
    pub(super) fn bound_kept(&mut self) {
        let evicted = self.topics.evict_over(self.config.replay_kept_bytes);
        if evicted.is_empty() {
            return;
        }
        let counters = &self.shared.counters;
        counters
            .topics_evicted
            .fetch_add(evicted.len() as u64, Relaxed);
        for (_, name) in &evicted {
            log::debug!("kept topic {name} is evicted: kept rings are over replay_kept_bytes");
        }
        // Freed in the table unless a host `join` gave one a member meanwhile: that join,
        // on its way, makes it anew here, with a new epoch.
        self.release(evicted);
    }

    /// Trims the largest rings while all of them together cost more than
    /// `replay_total_bytes`: down to 15/16 of it, so that the next trim is a while away.
    /// Costs a comparison when under it.
    pub(super) fn bound_rings(&mut self) {
        let (total, bound) = (
            self.topics.ring_total().get(),
            self.config.replay_total_bytes,
        );
        if total <= bound {
            return;
        }
        let excess = total - (bound - bound / 16);
        let trimmed = self.topics.trim_largest(&mut self.hub_stream, excess);
        self.shared
            .counters
            .replay_trimmed
            .fetch_add(trimmed, Relaxed);
        log::debug!(
            "replay rings trimmed by {trimmed} messages: they held {total} bytes, past \
             replay_total_bytes ({bound})"
        );
    }

    /// Topics freed here: freed in the table too (under one lock), and no longer
    /// received from the cluster.
    fn release(&mut self, freed: Vec<(TopicId, Arc<str>)>) {
        if freed.is_empty() {
            return;
        }
        {
            let mut registry = self.shared.registry();
            for (id, _) in &freed {
                registry.topics.free(*id);
            }
        }
        for (_, name) in freed {
            self.topic_freed(name);
        }
    }

    /// Whether to apply the host's join or leave numbered `op`: not if a client's own
    /// `#join` or `#leave` of that topic was decided after it (and applied at once, ahead
    /// of it). Host commands arrive in the order they were decided, so once one numbered
    /// past a fence has arrived, that fence has done its work.
    pub(super) fn host_topic_op(&mut self, client: ClientId, topic: TopicId, op: u64) -> bool {
        self.host_topic_ops = op;
        let Some(live) = self
            .slots
            .slot_of(client)
            .and_then(|s| self.slots.get_mut(s))
        else {
            return false;
        };
        let superseded = live
            .topic_fences
            .iter()
            .any(|fence| fence.topic == topic && fence.op > op);
        live.topic_fences.retain(|fence| fence.host_before > op);
        !superseded
    }

    /// A client's own join or leave, numbered `op`, is applied now: host commands for that
    /// topic decided before it and still on their way must not undo it. `host_before` is
    /// the number of the host's last decision when this one was made.
    pub(super) fn fence_host_topic_ops(
        &mut self,
        slot: usize,
        topic: TopicId,
        op: u64,
        host_before: u64,
    ) {
        if host_before <= self.host_topic_ops {
            // Every host decision so far has been applied: nothing to hold back.
            return;
        }
        let applied = self.host_topic_ops;
        if let Some(live) = self.slots.get_mut(slot) {
            live.topic_fences
                .retain(|fence| fence.topic != topic && fence.host_before > applied);
            live.topic_fences.push(crate::client::TopicFence {
                topic,
                op,
                host_before,
            });
        }
    }

    /// A client left the hub: it leaves every topic, and topics it leaves empty are freed
    /// (with the protocol on, kept a while first: see `Topics::remove` and `prune_rings`).
    pub(super) fn leave_all_topics(&mut self, slot: usize) {
        let kept_at = self.kept_at();
        let Some(client) = self.slots.get_mut(slot) else {
            return;
        };
        let id = client.id;
        let mut freed = Vec::new();
        for (topic, _) in std::mem::take(&mut client.topics) {
            if let Some(name) = self.topics.remove(topic, id, kept_at) {
                freed.push((topic, name));
            }
        }
        {
            let mut registry = self.shared.registry();
            let emptied = registry.remove(id);
            // With the protocol on, a topic emptied in the table may be kept here for its
            // ring: only those freed here (released just below) are freed there, and those
            // the table made for a host join that never reached this client here (nothing
            // here holds them), which would otherwise be listed for ever.
            for topic in emptied {
                if !self.config.sequenced || self.topics.name_of(topic).is_none() {
                    registry.topics.free(topic);
                }
            }
        }
        self.release(freed);
        self.bound_kept();
    }

    /// Something in the rings may be past its age `replay_age` from now (a message kept, a
    /// topic left empty): rings are looked at by then, if not sooner.
    pub(super) fn prune_after_age(&mut self) {
        if let Some(at) = self
            .config
            .ring_limits
            .age
            .and_then(|age| self.now.checked_add(age))
        {
            self.prune_at = Some(self.prune_at.map_or(at, |t| t.min(at)));
        }
    }

    /// With the protocol on, a topic left empty is kept as of now (see `Topics::remove`):
    /// rings are looked at again by the time it may be freed.
    fn kept_at(&mut self) -> Option<Instant> {
        if !self.config.sequenced {
            return None;
        }
        self.prune_after_age();
        Some(self.now)
    }

    /// Drops replayable messages past their age, and frees topics left with no member and
    /// nothing to replay. Returns when to look again: when the next message ages out, but
    /// no sooner than [`PRUNE_PERIOD`] (or an eighth of the age) from now. Replays check
    /// age themselves, so pruning need not be exact; and under steady traffic a message
    /// ages out every round, where each look goes over every topic.
    pub(super) fn prune_rings(&mut self) -> Option<Instant> {
        let limits = self.config.ring_limits;
        let hub = self.hub_stream.prune(self.now, &limits);
        let (freed, topics) = self.topics.prune(self.now, &limits);
        self.release(freed);
        let next = [hub, topics].into_iter().flatten().min()?;
        let period = limits
            .age
            .map_or(PRUNE_PERIOD, |age| (age / 8).min(PRUNE_PERIOD));
        Some(
            self.now
                .checked_add(period)
                .map_or(next, |soonest| next.max(soonest)),
        )
    }

    /// A topic got its first local member: a cluster node starts receiving it.
    fn topic_created(&mut self, _name: &Arc<str>) {
        #[cfg(feature = "nats")]
        {
            // Counted by name: a topic evicted or replaced may be dropped here after a new
            // topic of the same name was made, and must not unsubscribe that one.
            let count = self.cluster_topics.entry(Arc::clone(_name)).or_insert(0);
            *count += 1;
            if *count == 1 {
                self.cluster_subscribe(Arc::clone(_name), true);
            }
        }
    }

    /// A topic was freed here: a cluster node stops receiving it.
    fn topic_freed(&mut self, _name: Arc<str>) {
        #[cfg(feature = "nats")]
        if let Some(count) = self.cluster_topics.get_mut(&_name) {
            *count -= 1;
            if *count == 0 {
                self.cluster_topics.remove(&_name);
                self.cluster_subscribe(_name, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let _ = topics.add(old, Arc::from("a"), (3, ClientId(1)));
        assert_eq!(topics.members(old), &[(3, ClientId(1))]);
        let _ = topics.add(new, Arc::from("b"), (4, ClientId(2)));
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
        let _ = topics.add(id, Arc::from(format!("t{index}")), (0, ClientId(member)));
        let limits = RingLimits {
            messages: 100,
            bytes: 1000,
            age: None,
        };
        let (stream, _, kept) = topics.stream_mut(id).unwrap();
        assert!(kept.is_none(), "a topic with a member is not kept");
        let seq = stream.next();
        stream.keep(
            seq,
            bytes::Bytes::from(vec![b'x'; bytes]),
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
        // A member comes back to a: no longer kept.
        let _ = topics.add(a, Arc::from("t0"), (5, ClientId(9)));
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
                stream.keep(seq, bytes::Bytes::from(vec![b'x'; 100]), now, &limits);
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
