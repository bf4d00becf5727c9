//! Topic membership as the dispatcher applies it, in command order: who a topic's
//! messages go to. A publish after `join` returned reaches the client, one before does not,
//! because joins, leaves and publishes are commands in one ordered stream.

use std::sync::Arc;
use std::time::Instant;

use super::streams::{RingLimits, Stream};
use super::Dispatcher;
use crate::topics::TopicId;
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
}

/// Every topic with members, by slot of its id.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    slots: Vec<Option<Topic>>,
}

impl Topics {
    /// The members of a topic, if the id is current.
    pub(crate) fn members(&self, id: TopicId) -> &[(usize, ClientId)] {
        match self.slots.get(id.index as usize) {
            Some(Some(topic)) if topic.generation == id.generation => &topic.members,
            _ => &[],
        }
    }

    /// A topic's stream and name, if the id is current.
    pub(crate) fn stream_mut(&mut self, id: TopicId) -> Option<(&mut Stream, Option<&str>)> {
        match self.slots.get_mut(id.index as usize) {
            Some(Some(topic)) if topic.generation == id.generation => {
                Some((&mut topic.stream, Some(&*topic.name)))
            }
            _ => None,
        }
    }

    /// A topic's name, if the id is current.
    pub(crate) fn name_of(&self, id: TopicId) -> Option<&str> {
        match self.slots.get(id.index as usize) {
            Some(Some(topic)) if topic.generation == id.generation => Some(&topic.name),
            _ => None,
        }
    }

    /// A topic's name, shared, if the id is current.
    #[cfg(feature = "nats")]
    pub(crate) fn name_arc(&self, id: TopicId) -> Option<Arc<str>> {
        match self.slots.get(id.index as usize) {
            Some(Some(topic)) if topic.generation == id.generation => Some(Arc::clone(&topic.name)),
            _ => None,
        }
    }

    /// Adds a member; returns the topic's stream and whether the topic is new here.
    fn add(&mut self, id: TopicId, name: Arc<str>, member: (usize, ClientId)) -> (&Stream, bool) {
        let index = id.index as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        let slot = &mut self.slots[index];
        if slot.as_ref().is_some_and(|t| t.generation != id.generation) {
            // The slot held an older topic, freed since: this one replaces it.
            *slot = None;
        }
        let created = slot.is_none();
        let topic = slot.get_or_insert_with(|| Topic {
            generation: id.generation,
            name,
            members: Vec::new(),
            stream: Stream::new(),
        });
        if !topic.members.contains(&member) {
            topic.members.push(member);
        }
        (&topic.stream, created)
    }

    /// Takes a client out of a topic. Returns the topic's name if it is now empty of
    /// members and (with `keep_rings`) of replayable messages, and so freed; a topic whose
    /// ring still holds messages is kept for members that come back to resume.
    fn remove(&mut self, id: TopicId, client: ClientId, keep_rings: bool) -> Option<Arc<str>> {
        let Some(Some(topic)) = self.slots.get_mut(id.index as usize) else {
            return None;
        };
        if topic.generation != id.generation {
            return None;
        }
        if let Some(pos) = topic.members.iter().position(|&(_, c)| c == client) {
            topic.members.swap_remove(pos);
        }
        if topic.members.is_empty() && (!keep_rings || topic.stream.ring_is_empty()) {
            log::trace!("topic {} is freed", topic.name);
            return self.slots[id.index as usize].take().map(|t| t.name);
        }
        None
    }

    /// Drops ring messages past their age; frees topics left with no member and no
    /// message. Returns the freed topics' ids and when to look again.
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
            if topic.members.is_empty() && topic.stream.ring_is_empty() {
                let id = TopicId {
                    index: index as u32,
                    generation: topic.generation,
                };
                freed.push((id, Arc::clone(&topic.name)));
                *slot = None;
                continue;
            }
            next = [next, again].into_iter().flatten().min();
        }
        (freed, next)
    }
}

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
        let (stream, created) = self.topics.add(id, Arc::clone(&name), (slot, client));
        let position = (stream.epoch, stream.seq);
        if !live.topics.iter().any(|&(t, _)| t == id) {
            live.topics.push((id, position.1));
        }
        if created {
            self.topic_created(&name);
        }
        if self.protocol {
            let (epoch, seq) = position;
            self.send_control(slot, &format!("#joined @{name} {epoch} {seq}"));
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
        if self.protocol && was_member {
            if let Some(name) = self.topics.name_of(id) {
                let left = format!("#left @{name}");
                self.send_control(slot, &left);
            }
        }
        if let Some(name) = self.topics.remove(id, client, self.protocol) {
            self.shared.registry().topics.free(id);
            self.topic_freed(name);
        }
        was_member
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
    /// (with the protocol on, once their replay rings are empty too: see `prune_rings`).
    pub(super) fn leave_all_topics(&mut self, slot: usize) {
        let Some(client) = self.slots.get_mut(slot) else {
            return;
        };
        let id = client.id;
        let mut freed = Vec::new();
        for (topic, _) in std::mem::take(&mut client.topics) {
            if let Some(name) = self.topics.remove(topic, id, self.protocol) {
                freed.push((topic, name));
            }
        }
        let mut registry = self.shared.registry();
        let emptied = registry.remove(id);
        for topic in emptied {
            if !self.protocol || freed.iter().any(|(t, _)| *t == topic) {
                registry.topics.free(topic);
            }
        }
        for (topic, _) in &freed {
            registry.topics.free(*topic);
        }
        drop(registry);
        for (_, name) in freed {
            self.topic_freed(name);
        }
    }

    /// Drops replayable messages past their age, and frees topics left with no member and
    /// nothing to replay. Returns when to look again.
    pub(super) fn prune_rings(&mut self) -> Option<Instant> {
        let limits = self.ring_limits;
        let hub = self.hub_stream.prune(self.now, &limits);
        let (freed, topics) = self.topics.prune(self.now, &limits);
        if !freed.is_empty() {
            let mut registry = self.shared.registry();
            for (topic, _) in &freed {
                registry.topics.free(*topic);
            }
        }
        for (_, name) in freed {
            self.topic_freed(name);
        }
        [hub, topics].into_iter().flatten().min()
    }

    /// A topic got its first local member: a cluster node starts receiving it.
    fn topic_created(&mut self, _name: &Arc<str>) {
        #[cfg(feature = "nats")]
        self.cluster_subscribe(Arc::clone(_name), true);
    }

    /// A topic was freed here: a cluster node stops receiving it.
    fn topic_freed(&mut self, _name: Arc<str>) {
        #[cfg(feature = "nats")]
        self.cluster_subscribe(_name, false);
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
        assert!(topics.remove(new, ClientId(2), false).is_some());
        assert!(topics.members(new).is_empty());
    }
}
