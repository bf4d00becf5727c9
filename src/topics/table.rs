//! Topics as the host's handle and the dispatcher share them: names, ids and who belongs
//! where. The dispatcher keeps its own member lists for fan-out (`topics::members`); this
//! table, under the registry's lock, is what makes `join`, `leave` and `publish` exact.
//!
//! A topic exists while it has members (or, with resume on, a replay ring to keep): its
//! name maps to a [`TopicId`]. Ids are slots with a generation, so a message framed for a
//! topic that has since been freed, and its slot reused, never reaches the new topic.
//!
//! A topic with no member is *kept* (for its ring) only as long as nothing needs its room:
//! when the table is full and a new topic is needed, the kept topic left longest ago is
//! evicted, so only topics with members can make the hub refuse a new one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::{Error, Result};

/// A topic's slot and generation: stale ids never match a reused slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TopicId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// One topic slot.
#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    /// The topic's name while the slot is in use.
    name: Option<Arc<str>>,
    members: usize,
    /// While the topic is in use with no member: when its last member left (its key in
    /// `TopicTable::kept`).
    kept: Option<u64>,
}

/// Topic names, ids and member counts, with the limits that bound them.
#[derive(Debug, Default)]
pub(crate) struct TopicTable {
    by_name: HashMap<Arc<str>, TopicId>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Topics in use with no member, by when their last member left (oldest first): the
    /// ones to evict when a new topic needs room. Exact: an entry goes when its topic gets a
    /// member again or is freed.
    kept: BTreeMap<u64, u32>,
    /// The key of the next entry of `kept`.
    kept_next: u64,
}

/// The limits on topics, from the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicLimits {
    pub(crate) max_topics: usize,
    pub(crate) max_per_client: usize,
    pub(crate) max_name: usize,
}

/// Checks a topic name: 1 to `max` bytes of UTF-8 with no whitespace and no control
/// character, so that it reads unambiguously in the line protocol and in logs.
pub(crate) fn check_name(name: &str, max: usize) -> Result<()> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.len() > max {
        "is too long"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "holds whitespace or a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidTopic(format!(
        "topic name {name:?} {why} (1 to {max} bytes, no whitespace)"
    )))
}

impl TopicTable {
    /// The id of a topic that exists.
    pub(crate) fn id(&self, name: &str) -> Option<TopicId> {
        self.by_name.get(name).copied()
    }

    /// The name of a topic that exists.
    pub(crate) fn name(&self, id: TopicId) -> Option<&Arc<str>> {
        let slot = self.slots.get(id.index as usize)?;
        slot.name
            .as_ref()
            .filter(|_| slot.generation == id.generation)
    }

    /// Makes `client`, whose topics are `joined`, a member of `name`, creating the topic.
    /// Returns the topic's id, whether the client was new to it, and the kept topic evicted
    /// to make room for it, if any (the dispatcher drops that one's ring).
    pub(crate) fn join(
        &mut self,
        name: &str,
        joined: &mut Vec<TopicId>,
        limits: &TopicLimits,
    ) -> Result<(TopicId, bool, Option<TopicId>)> {
        let existing = self.id(name);
        if let Some(id) = existing.filter(|id| joined.contains(id)) {
            return Ok((id, false, None));
        }
        if joined.len() >= limits.max_per_client {
            return Err(Error::TopicLimit(format!(
                "a client may be in at most {} topics",
                limits.max_per_client
            )));
        }
        let (id, evicted) = match existing {
            Some(id) => (id, None),
            None => self.create(name, limits)?,
        };
        let slot = &mut self.slots[id.index as usize];
        slot.members += 1;
        if let Some(key) = slot.kept.take() {
            self.kept.remove(&key);
        }
        joined.push(id);
        Ok((id, true, evicted))
    }

    /// A new topic, in the room of the kept topic left longest ago if the table is full.
    fn create(&mut self, name: &str, limits: &TopicLimits) -> Result<(TopicId, Option<TopicId>)> {
        let mut evicted = None;
        if self.by_name.len() >= limits.max_topics {
            // Only topics with members may make the hub refuse a new one.
            let Some((_, index)) = self.kept.pop_first() else {
                return Err(Error::TopicLimit(format!(
                    "the hub holds at most {} topics, and all have members",
                    limits.max_topics
                )));
            };
            let slot = &mut self.slots[index as usize];
            slot.kept = None;
            let id = TopicId {
                index,
                generation: slot.generation,
            };
            self.free(id);
            evicted = Some(id);
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::default());
                // Bounded by `max_topics`, which `bind` keeps under u32::MAX.
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        let name: Arc<str> = Arc::from(name);
        slot.name = Some(Arc::clone(&name));
        let id = TopicId {
            index,
            generation: slot.generation,
        };
        self.by_name.insert(name, id);
        Ok((id, evicted))
    }

    /// Takes a client out of a topic it is in. Returns whether the topic has no member left.
    pub(crate) fn leave(&mut self, id: TopicId, joined: &mut Vec<TopicId>) -> bool {
        let Some(pos) = joined.iter().position(|&t| t == id) else {
            return false;
        };
        joined.swap_remove(pos);
        match self.slots.get_mut(id.index as usize) {
            Some(slot) if slot.generation == id.generation && slot.members > 0 => {
                slot.members -= 1;
                if slot.members > 0 {
                    return false;
                }
                // Kept, until freed or evicted (or joined again).
                let key = self.kept_next;
                self.kept_next += 1;
                slot.kept = Some(key);
                self.kept.insert(key, id.index);
                true
            }
            _ => false,
        }
    }

    /// Frees an empty topic: its name no longer maps to it, and its slot gets a new
    /// generation before it is used again.
    pub(crate) fn free(&mut self, id: TopicId) {
        let Some(slot) = self.slots.get_mut(id.index as usize) else {
            return;
        };
        if slot.generation != id.generation || slot.members > 0 {
            return;
        }
        if let Some(key) = slot.kept.take() {
            self.kept.remove(&key);
        }
        if let Some(name) = slot.name.take() {
            self.by_name.remove(&name);
        }
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
    }

    /// How many members a topic has.
    pub(crate) fn members(&self, id: TopicId) -> usize {
        self.slots
            .get(id.index as usize)
            .filter(|slot| slot.generation == id.generation)
            .map_or(0, |slot| slot.members)
    }

    /// Every topic with its member count, by name.
    pub(crate) fn snapshot(&self) -> Vec<(Arc<str>, usize)> {
        let mut topics: Vec<_> = self
            .slots
            .iter()
            .filter_map(|s| Some((Arc::clone(s.name.as_ref()?), s.members)))
            .collect();
        topics.sort_unstable();
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TopicLimits = TopicLimits {
        max_topics: 2,
        max_per_client: 2,
        max_name: 8,
    };

    #[test]
    fn names_are_checked() {
        assert!(check_name("room-1", 8).is_ok());
        assert!(check_name("ü", 8).is_ok());
        for bad in ["", "123456789", "a b", "a\tb", "a\u{7}"] {
            assert!(
                matches!(check_name(bad, 8), Err(Error::InvalidTopic(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn joining_and_leaving_count_members_and_free_empty_topics() {
        let mut table = TopicTable::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (room, new, _) = table.join("room", &mut a, &LIMITS).unwrap();
        assert!(new);
        assert_eq!(
            table.join("room", &mut a, &LIMITS).unwrap(),
            (room, false, None)
        );
        table.join("room", &mut b, &LIMITS).unwrap();
        assert_eq!(table.snapshot(), vec![(Arc::from("room"), 2)]);
        assert!(!table.leave(room, &mut a));
        assert!(!table.leave(room, &mut a), "leaving twice changes nothing");
        assert!(table.leave(room, &mut b));
        table.free(room);
        assert_eq!(table.id("room"), None);
        // The slot comes back with a new generation: the old id is stale.
        let (again, _, _) = table.join("other", &mut a, &LIMITS).unwrap();
        assert_eq!(again.index, room.index);
        assert_ne!(again, room);
        assert_eq!(table.name(room), None);
        assert_eq!(table.name(again).map(|n| &**n), Some("other"));
    }

    #[test]
    fn limits_hold() {
        let mut table = TopicTable::default();
        let mut a = Vec::new();
        table.join("one", &mut a, &LIMITS).unwrap();
        table.join("two", &mut a, &LIMITS).unwrap();
        assert!(matches!(
            table.join("three", &mut a, &LIMITS),
            Err(Error::TopicLimit(_))
        ));
        let mut b = Vec::new();
        assert!(matches!(
            table.join("three", &mut b, &LIMITS),
            Err(Error::TopicLimit(_))
        ));
        assert!(table.join("one", &mut b, &LIMITS).is_ok());
    }

    #[test]
    fn a_full_table_evicts_the_kept_topic_left_longest_ago() {
        let mut table = TopicTable::default();
        let limits = TopicLimits {
            max_topics: 3,
            max_per_client: 8,
            max_name: 8,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (one, ..) = table.join("one", &mut a, &limits).unwrap();
        let (two, ..) = table.join("two", &mut a, &limits).unwrap();
        let (three, ..) = table.join("three", &mut a, &limits).unwrap();
        // All three have members: the table is full.
        assert!(matches!(
            table.join("four", &mut b, &limits),
            Err(Error::TopicLimit(_))
        ));
        // Left without being freed (kept for their rings): "two" first, then "one".
        assert!(table.leave(two, &mut a));
        assert!(table.leave(one, &mut a));
        let (four, new, evicted) = table.join("four", &mut b, &limits).unwrap();
        assert!(new);
        assert_eq!(evicted, Some(two), "the one left longest ago");
        assert_eq!(table.id("two"), None);
        assert_eq!(table.name(two), None, "its id is stale");
        assert_ne!(four, two);
        // Joining a kept topic makes it a topic with members again: not evictable.
        table.join("one", &mut b, &limits).unwrap();
        assert!(matches!(
            table.join("five", &mut b, &limits),
            Err(Error::TopicLimit(_))
        ));
        // A kept topic that was freed meanwhile is no longer a candidate.
        assert!(table.leave(three, &mut a));
        table.free(three);
        let (_, _, evicted) = table.join("five", &mut b, &limits).unwrap();
        assert_eq!(evicted, None, "a freed slot was there");
        assert!(table.kept.is_empty());
    }
}
