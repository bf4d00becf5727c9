//! Topic membership as the dispatcher applies it, in command order: who a topic's
//! messages go to. A publish after `join` returned reaches the client, one before does not,
//! because joins, leaves and publishes are commands in one ordered stream.

use std::sync::Arc;

use super::Dispatcher;
use crate::topics::TopicId;
use crate::ClientId;

/// One topic as the dispatcher sees it.
#[derive(Debug)]
struct Topic {
    generation: u32,
    /// For logs.
    name: Arc<str>,
    /// Its members: slot and id (a slot that holds another client is stale).
    members: Vec<(usize, ClientId)>,
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

    fn add(&mut self, id: TopicId, name: Arc<str>, member: (usize, ClientId)) {
        let index = id.index as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        let topic = self.slots[index].get_or_insert_with(|| Topic {
            generation: id.generation,
            name: Arc::clone(&name),
            members: Vec::new(),
        });
        if topic.generation != id.generation {
            // The slot held an older topic, freed since: this one replaces it.
            *topic = Topic {
                generation: id.generation,
                name,
                members: Vec::new(),
            };
        }
        if !topic.members.contains(&member) {
            topic.members.push(member);
        }
    }

    fn remove(&mut self, id: TopicId, client: ClientId) {
        let Some(Some(topic)) = self.slots.get_mut(id.index as usize) else {
            return;
        };
        if topic.generation != id.generation {
            return;
        }
        if let Some(pos) = topic.members.iter().position(|&(_, c)| c == client) {
            topic.members.swap_remove(pos);
        }
        if topic.members.is_empty() {
            log::trace!("topic {} has no member left", topic.name);
            self.slots[id.index as usize] = None;
        }
    }
}

impl Dispatcher {
    /// `Hub::join` reached the dispatcher: from now on the client gets the topic's messages.
    pub(super) fn join_topic(&mut self, client: ClientId, id: TopicId, name: Arc<str>) {
        let Some(slot) = self.slots.slot_of(client) else {
            // It left meanwhile; leaving took it out of the table too.
            return;
        };
        if let Some(live) = self.slots.get_mut(slot) {
            if !live.topics.contains(&id) {
                live.topics.push(id);
            }
        }
        self.topics.add(id, name, (slot, client));
    }

    /// `Hub::leave` reached the dispatcher.
    pub(super) fn leave_topic(&mut self, client: ClientId, id: TopicId) {
        if let Some(live) = self
            .slots
            .slot_of(client)
            .and_then(|s| self.slots.get_mut(s))
        {
            live.topics.retain(|&t| t != id);
        }
        self.topics.remove(id, client);
    }

    /// A client left the hub: it leaves every topic, and topics it leaves empty are freed.
    pub(super) fn leave_all_topics(&mut self, slot: usize) {
        let Some(client) = self.slots.get_mut(slot) else {
            return;
        };
        let id = client.id;
        for topic in std::mem::take(&mut client.topics) {
            self.topics.remove(topic, id);
        }
        let mut registry = self.shared.registry();
        for emptied in registry.remove(id) {
            registry.topics.free(emptied);
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
        topics.add(old, Arc::from("a"), (3, ClientId(1)));
        assert_eq!(topics.members(old), &[(3, ClientId(1))]);
        topics.add(new, Arc::from("b"), (4, ClientId(2)));
        assert!(topics.members(old).is_empty());
        assert_eq!(topics.members(new), &[(4, ClientId(2))]);
        topics.remove(new, ClientId(2));
        assert!(topics.members(new).is_empty());
    }
}
