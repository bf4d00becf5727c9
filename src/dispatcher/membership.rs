//! Applying topic membership in the dispatcher: joins and leaves in command order, the
//! bounds on kept topics and on all replay rings, and pruning rings by age. The data and
//! its invariants are in `crate::topics`; this file is what the dispatcher does with them
//! (replies, the shared table, the cluster).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Dispatcher;
use crate::command::Target;
use crate::topics::members::Topics;
use crate::topics::order::Applied;
use crate::topics::presence::{Presence, Who};
use crate::topics::stream::Stream;
use crate::topics::TopicId;
use crate::wire::control::{Reply, StreamName};
use crate::{ClientId, Event};

/// Topics as the dispatcher applies them, and every numbered stream.
#[derive(Debug)]
pub(super) struct Streams {
    /// Topic membership, in command order, with each topic's stream.
    pub(super) topics: Topics,
    /// The hub-wide stream's numbers and replay ring.
    pub(super) hub: Stream,
    /// When replay rings next have messages past their age.
    pub(super) prune_at: Option<Instant>,
    /// Which host joins and leaves were applied (see `host_topic_op`).
    pub(super) host_ops: Applied,
    /// The kept topics' count and bytes as last published in the counters.
    pub(super) kept_published: (usize, usize),
    /// The topics a message is checked for, kept between messages so a check allocates
    /// nothing (`permissions`).
    pub(super) publish_to: Vec<super::permissions::PublishTo>,
    /// Topics whose members are to be told a changed count (names withheld), and when.
    pub(super) counts: Vec<(Instant, TopicId)>,
}

impl Streams {
    pub(super) fn new() -> Streams {
        let topics = Topics::default();
        let hub = Stream::new(topics.ring_total());
        Streams {
            topics,
            hub,
            prune_at: None,
            host_ops: Applied::default(),
            kept_published: (0, 0),
            publish_to: Vec::new(),
            counts: Vec::new(),
        }
    }
}

/// The most often replay rings are pruned (see `Dispatcher::prune_rings`).
const PRUNE_PERIOD: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// `Hub::join` (or a client's `#join`, or a topic it was admitted to) reached the
    /// dispatcher: from now on the client gets the topic's messages, and with the protocol
    /// on it is told where they start, who is in the topic (presence) and the topic's last
    /// messages (its `history`).
    pub(super) fn join_topic(&mut self, client: ClientId, id: TopicId, name: Arc<str>) {
        self.join_topic_with(client, id, name, None);
    }

    /// [`join_topic`](Self::join_topic), with the number of last messages the client asked
    /// for (`None`: the topic's `history`).
    pub(super) fn join_topic_with(
        &mut self,
        client: ClientId,
        id: TopicId,
        name: Arc<str>,
        history: Option<u64>,
    ) {
        let Some(slot) = self.slots.slot_of(client) else {
            // It left meanwhile; leaving took it out of the table too.
            return;
        };
        let (created, replaced) = self.streams.topics.open(id, Arc::clone(&name));
        if let Some(old) = replaced {
            self.topic_freed(old);
        }
        if created {
            self.topic_created(&name);
            self.configure_topic(id, &name);
        }
        let newly = !self
            .streams
            .topics
            .members(id)
            .iter()
            .any(|&(_, c)| c == client);
        if self.streams.topics.presence_mut(id).is_some() {
            // Everything on its way (relayed lines, earlier changes) is numbered first, so
            // the snapshot the client gets is at the position of the last change it holds;
            // then the members are told of the join, as the next message of the topic.
            self.flush_relay();
            let who = self
                .slots
                .get(slot)
                .filter(|_| newly)
                .map(|c| Who::of(client, c.user.as_ref()));
            let said = who
                .clone()
                .and_then(|who| self.streams.topics.presence_mut(id)?.join(who));
            if let Some(body) = said {
                self.say_presence(id, &body);
                self.flush_relay();
            } else if newly {
                self.count_later(id);
            }
            if !self.slots.get(slot).is_some_and(|c| c.is_live()) {
                // Cut as slow by what went out meanwhile (it left its other topics): it
                // never got in this one either.
                if let Some(who) = &who {
                    self.presence_left(id, who);
                }
                let kept_at = self.kept_at();
                if let Some(name) = self.streams.topics.remove(id, client, kept_at) {
                    self.release(vec![(id, name)]);
                }
                return;
            }
        }
        let Some(live) = self.slots.get_mut(slot) else {
            return;
        };
        let user = live.user.clone();
        let Some(stream) = self.streams.topics.add(id, (slot, client)) else {
            return;
        };
        let position = (stream.epoch, stream.seq);
        if !live.topics.iter().any(|&(t, _)| t == id) {
            live.topics.push((id, position.1));
        }
        if newly && self.config.presence_events {
            if self.streams.topics.members(id).len() == 1 {
                let topic = name.to_string();
                self.emit(Event::TopicOccupied { topic });
            }
            let (topic, user) = (name.to_string(), user.map(|u| u.to_string()));
            self.emit(Event::MemberJoined {
                client,
                topic,
                user,
            });
        }
        if !self.config.sequenced {
            return;
        }
        let (epoch, seq) = position;
        let topic = &name;
        if !self.reply(slot, Reply::Joined { topic, epoch, seq }) || !self.tell_members(slot, id) {
            return;
        }
        let history = history.unwrap_or_else(|| self.streams.topics.history(id));
        if history > 0 {
            let clock = (self.now, self.config.ring_limits.age);
            let after = self
                .streams
                .topics
                .stream(id)
                .map_or(seq, |s| s.last(history, seq, clock));
            self.resume(slot, client, StreamName::Topic(topic), epoch, (after, None));
        }
    }

    /// Tells the client in `slot` who is in topic `id` now, at the topic's position
    /// (`#members`), if the topic has presence. Returns whether the client is still live.
    pub(super) fn tell_members(&mut self, slot: usize, id: TopicId) -> bool {
        let Some((list, topic)) = self.streams.topics.presence_list(id) else {
            // No presence: nothing to tell (and nothing went wrong).
            return self.is_live(slot);
        };
        let Some(stream) = self.streams.topics.stream(id) else {
            return self.is_live(slot);
        };
        let (epoch, seq) = (stream.epoch, stream.seq);
        let topic = &topic;
        self.reply(
            slot,
            Reply::Members {
                topic,
                epoch,
                seq,
                list: &list,
            },
        )
    }

    /// A new topic's options, from the host's `topic_options` closure (a panic in it gives
    /// the defaults; `bind` made sure the protocol is on).
    fn configure_topic(&mut self, id: TopicId, name: &str) {
        let options = match self.config.topic_options.clone() {
            Some(options) => self
                .call_host(
                    || (options.0)(name),
                    format_args!("topic_options panicked; topic {name} has the defaults"),
                )
                .unwrap_or_default(),
            None => return,
        };
        let counts = options
            .presence_counts
            .map(|every| every.max(crate::options::PRESENCE_COUNTS_MIN));
        let presence = options
            .presence
            .then(|| Presence::new(options.presence_limit, counts));
        self.streams
            .topics
            .configure(id, presence, options.history as u64);
    }

    /// Numbers `body` in topic `id`'s stream as a `#presence` message for its members, with
    /// whatever else was relayed this round, in order (see `flush_relay`).
    fn say_presence(&mut self, id: TopicId, body: &str) {
        let framing = self.config.framing;
        self.fanout
            .relay
            .push(framing, body.as_bytes(), Target::Presence(id), None);
        self.shared.counters.presence_changes.fetch_add(1, Relaxed);
    }

    /// A connection of entry `who` left topic `id`: the members are told, if the topic has
    /// presence and the entry went (or its count is due).
    fn presence_left(&mut self, id: TopicId, who: &Who) {
        let said = self
            .streams
            .topics
            .presence_mut(id)
            .and_then(|p| p.leave(who));
        match said {
            Some(body) => self.say_presence(id, &body),
            None => self.count_later(id),
        }
    }

    /// A change of topic `id` told nothing (names withheld): its count is told later, if
    /// the topic says so and it is not due already.
    fn count_later(&mut self, id: TopicId) {
        let due = self
            .streams
            .topics
            .presence_mut(id)
            .and_then(|p| p.count_due());
        if let Some(at) = due.and_then(|after| self.now.checked_add(after)) {
            self.streams.counts.push((at, id));
        }
    }

    /// Tells the members of topics whose count is due how many they are (`#presence …
    /// count <n>`), if it changed since they were last told.
    pub(super) fn tell_counts(&mut self) {
        let now = self.now;
        let mut waiting = std::mem::take(&mut self.streams.counts);
        waiting.retain(|&(at, id)| {
            if at > now {
                return true;
            }
            let said = self
                .streams
                .topics
                .presence_mut(id)
                .and_then(|p| p.count_now());
            if let Some(body) = said {
                self.say_presence(id, &body);
            }
            false
        });
        self.streams.counts = waiting;
    }

    /// When the next count is due, if any.
    pub(super) fn counts_at(&self) -> Option<Instant> {
        self.streams.counts.iter().map(|&(at, _)| at).min()
    }

    /// Tells subscribers (if they asked) that a client left topic `name`, and that the
    /// topic is `empty` if it is.
    fn member_left(
        &mut self,
        name: Option<Arc<str>>,
        client: ClientId,
        user: Option<&Arc<str>>,
        empty: bool,
    ) {
        let Some(name) = name.filter(|_| self.config.presence_events) else {
            return;
        };
        let topic = name.to_string();
        let user = user.map(|u| u.to_string());
        self.emit(Event::MemberLeft {
            client,
            topic: topic.clone(),
            user,
        });
        if empty {
            self.emit(Event::TopicEmptied { topic });
        }
    }

    /// Takes `client` out of topic `id` here (see `Topics::remove`), telling its members
    /// and subscribers. Returns the topic's name if it is freed.
    fn take_out(
        &mut self,
        id: TopicId,
        client: ClientId,
        user: Option<&Arc<str>>,
        kept_at: Option<Instant>,
    ) -> Option<Arc<str>> {
        self.presence_left(id, &Who::of(client, user));
        let name = self.streams.topics.name_arc(id);
        let freed = self.streams.topics.remove(id, client, kept_at);
        let empty = freed.is_some() || self.streams.topics.members(id).is_empty();
        self.member_left(name, client, user, empty);
        freed
    }

    /// Emits an event, if anyone listens.
    fn emit(&mut self, event: Event) {
        if self.subs.any(&self.shared) {
            self.subs.emit(event, &self.shared, self.now);
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
        let user = live.user.clone();
        if self.config.sequenced && was_member {
            if let Some(name) = self.streams.topics.name_of(id) {
                let topic = name.to_owned();
                self.reply(slot, Reply::Left { topic: &topic });
            }
        }
        let kept_at = self.kept_at();
        let freed = if was_member {
            self.take_out(id, client, user.as_ref(), kept_at)
        } else {
            self.streams.topics.remove(id, client, kept_at)
        };
        if let Some(name) = freed {
            self.release(vec![(id, name)]);
        }
        self.bound_kept();
        was_member
    }

    /// The table evicted a kept topic to make room for a new one: its ring and numbers go
    /// (a later resume of it is answered `epoch`).
    pub(super) fn topic_evicted(&mut self, id: TopicId) {
        self.shared.counters.topics_evicted.fetch_add(1, Relaxed);
        if let Some(name) = self.streams.topics.evict(id) {
            log::debug!("kept topic {name} is evicted: the topic table is full");
            self.topic_freed(name);
        }
    }

    /// Evicts kept topics, the one left longest ago first, while their rings hold more than
    /// `replay_kept_bytes`. Costs a comparison when under it.
    pub(super) fn bound_kept(&mut self) {
        let evicted = self
            .streams
            .topics
            .evict_over(self.config.replay_kept_bytes);
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
            self.streams.topics.ring_total().get(),
            self.config.replay_total_bytes,
        );
        if total <= bound {
            return;
        }
        let excess = total - (bound - bound / 16);
        let trimmed = self
            .streams
            .topics
            .trim_largest(&mut self.streams.hub, excess);
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

    /// Whether to apply the host's join or leave numbered `op` (see `topics::order`).
    pub(super) fn host_topic_op(&mut self, client: ClientId, topic: TopicId, op: u64) -> bool {
        match self
            .slots
            .slot_of(client)
            .and_then(|s| self.slots.get_mut(s))
        {
            Some(live) => self
                .streams
                .host_ops
                .admit(&mut live.topic_fences, topic, op),
            None => {
                // It left meanwhile: nothing to apply, but the decision has arrived.
                self.streams.host_ops.arrived(op);
                false
            }
        }
    }

    /// A client's own join or leave, numbered as `ops` (see `Decisions::client`), is
    /// applied now: host commands for that topic decided before it and still on their way
    /// must not undo it.
    pub(super) fn fence_host_topic_ops(&mut self, slot: usize, topic: TopicId, ops: (u64, u64)) {
        if let Some(live) = self.slots.get_mut(slot) {
            self.streams
                .host_ops
                .fence(&mut live.topic_fences, topic, ops);
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
        let user = client.user.clone();
        let mut freed = Vec::new();
        for (topic, _) in std::mem::take(&mut client.topics) {
            if let Some(name) = self.take_out(topic, id, user.as_ref(), kept_at) {
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
                if !self.config.sequenced || self.streams.topics.name_of(topic).is_none() {
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
            self.streams.prune_at = Some(self.streams.prune_at.map_or(at, |t| t.min(at)));
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
        let hub = self.streams.hub.prune(self.now, &limits);
        let (freed, topics) = self.streams.topics.prune(self.now, &limits);
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
}

/// The streams' epochs, for the wires that name them (`wire::Epochs`).
#[derive(Debug)]
#[cfg_attr(not(feature = "websocket"), allow(dead_code))]
pub(super) struct EpochsOf<'a> {
    pub(super) hub: u64,
    pub(super) topics: &'a Topics,
}

impl crate::wire::Epochs for EpochsOf<'_> {
    fn hub(&self) -> u64 {
        self.hub
    }

    fn topic(&self, id: TopicId) -> Option<u64> {
        self.topics.stream(id).map(|s| s.epoch)
    }
}
