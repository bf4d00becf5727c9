//! Who may write where: the host's `client_topics` closure asked about each message a
//! client sends before it is relayed ([`TopicAction::Publish`]), and about a member's
//! `#resume` of a topic ([`TopicAction::Resume`], asked from `resume`). A refused relay
//! costs a count (`Stats::publish_refused`), a `debug` line and, with the protocol on, a
//! `#refused publish` for a message that went nowhere.
//!
//! Which topics a message goes to is the client's membership **as decided**, not as
//! applied: a `Hub::leave` decided before the message was read keeps it out of that topic
//! even if its command has not reached the dispatcher yet. The dispatcher's own list
//! (`Client::topics`) is that membership whenever every host decision has been applied,
//! which one atomic tells (`Shared::host_decided`); only while one is on its way does the
//! relay read the registry, under its lock.
//!
//! Without the closure, and with no host decision on its way, none of this runs:
//! `inbound::deliver` relays over `Client::topics` in place. With a decision on its way,
//! the relay comes here as with a closure that allows everything.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;

use super::Dispatcher;
use crate::callbacks::{Callback, TopicCheck};
use crate::command::Target;
use crate::topics::TopicId;
use crate::wire::control::{Reply, StreamName};
use crate::{ClientId, MessageKind, TopicAction, TopicRequest};

/// A topic a message would be relayed to: its id, its name when the dispatcher does not
/// know the topic yet (a host join on its way), and whether the closure refused it.
pub(super) type PublishTo = (TopicId, Option<Arc<str>>, bool);

/// What the closure's answers for one message come to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Answers {
    allowed: usize,
    refused: usize,
}

impl Answers {
    fn add(&mut self, allowed: bool) {
        if allowed {
            self.allowed += 1;
        } else {
            self.refused += 1;
        }
    }

    /// Whether the sender is told: the message would have gone somewhere, and every
    /// topic refused it. (Refused in some topics only, it went to the others: counted,
    /// not answered.)
    fn went_nowhere(self) -> bool {
        self.allowed == 0 && self.refused > 0
    }
}

impl Dispatcher {
    /// Asks the host's closure whether client `id` (in `slot`) may do `action` with
    /// `stream` (a topic, or `*` for the hub-wide stream). A panic in it refuses (counted
    /// and logged by `call_host`).
    pub(super) fn ask_topic(
        &self,
        allow: &Callback<TopicCheck>,
        slot: usize,
        id: ClientId,
        stream: StreamName<'_>,
        action: TopicAction,
    ) -> bool {
        let topic = match stream {
            StreamName::Hub => "*",
            StreamName::Topic(name) => name,
        };
        let request = TopicRequest {
            client: id,
            user: self.slots.get(slot).and_then(|c| c.user.as_deref()),
            topic,
            action,
        };
        let what = format_args!(
            "the client_topics closure panicked on {id}, {} {stream}; refusing",
            action.word()
        );
        self.call_host(|| (allow.0)(&request), what)
            .unwrap_or(false)
    }

    /// A message of client `id` (in `slot`), of `kind`, under `Relay::Topics`, with a
    /// closure, or while a host decision is on its way (`allow` is `None`: every topic
    /// allows it): relayed to each topic it is in (as decided) that the closure allows,
    /// counted in `relayed_to_nobody` if none of those has another member; if every topic
    /// refused it, the client is told (with the protocol on) once per topic.
    pub(super) fn relay_permitted(
        &mut self,
        slot: usize,
        id: ClientId,
        payload: &[u8],
        kind: Option<MessageKind>,
        allow: Option<&Callback<TopicCheck>>,
    ) {
        let mut topics = std::mem::take(&mut self.streams.publish_to);
        self.decided_topics(slot, id, &mut topics);
        let (mut answers, mut reached) = (Answers::default(), false);
        for (topic, name, refused) in &mut topics {
            let name = match name {
                Some(name) => &**name,
                None => self.streams.topics.name_of(*topic).unwrap_or_default(),
            };
            let allowed = allow.map_or(true, |allow| {
                self.ask_topic(
                    allow,
                    slot,
                    id,
                    StreamName::Topic(name),
                    TopicAction::Publish,
                )
            });
            answers.add(allowed);
            *refused = !allowed;
            if allowed {
                // The sender is a member: someone else is if there are two.
                reached |= self.streams.topics.members(*topic).len() > 1;
                self.relay_to(Target::TopicExcept(*topic, id), payload, kind);
            } else {
                log::debug!("{id} may not publish to @{name}: not relayed there");
            }
        }
        if answers.refused > 0 {
            self.count_refused(answers.refused);
        }
        if answers.went_nowhere() {
            for (topic, name, refused) in &topics {
                if !*refused {
                    continue;
                }
                let name = match name {
                    Some(name) => Arc::clone(name),
                    None => self
                        .streams
                        .topics
                        .name_of(*topic)
                        .unwrap_or_default()
                        .into(),
                };
                if !self.tell_refused(slot, StreamName::Topic(&name)) {
                    break;
                }
            }
        } else if !reached {
            self.tally.relayed_to_nobody += 1;
        }
        topics.clear();
        self.streams.publish_to = topics;
    }

    /// A message of client `id` (in `slot`) under `Relay::All` or `Relay::Others`, with a
    /// closure: whether it may go to the hub-wide stream (`*`). If not, it is counted and,
    /// with the protocol on, the client is told.
    pub(super) fn may_publish_hub(
        &mut self,
        slot: usize,
        id: ClientId,
        allow: &Callback<TopicCheck>,
    ) -> bool {
        if self.ask_topic(allow, slot, id, StreamName::Hub, TopicAction::Publish) {
            return true;
        }
        log::debug!("{id} may not publish to *: not relayed");
        self.count_refused(1);
        self.tell_refused(slot, StreamName::Hub);
        false
    }

    /// Whether a host join or leave was decided and its command not applied yet: the
    /// dispatcher's lists of topics may not be the clients' memberships as decided.
    pub(super) fn host_decision_pending(&self) -> bool {
        // Stored before a host decision's command is sent: equal, none is on its way.
        self.shared.host_decided.load(SeqCst) != self.streams.host_ops.last()
    }

    /// The topics client `id` is in as decided, into `out` (cleared first): the
    /// dispatcher's own list while every host decision has been applied, else the
    /// registry's.
    fn decided_topics(&self, slot: usize, id: ClientId, out: &mut Vec<PublishTo>) {
        out.clear();
        if !self.host_decision_pending() {
            if let Some(client) = self.slots.get(slot) {
                out.extend(client.topics.iter().map(|&(t, _)| (t, None, false)));
            }
            return;
        }
        let registry = self.shared.registry();
        let Some(entry) = registry.clients.get(&id) else {
            return;
        };
        for &topic in &entry.topics {
            // A topic the dispatcher does not hold yet is named by the table.
            let name = match self.streams.topics.name_of(topic) {
                Some(_) => None,
                None => registry.topics.name(topic).cloned(),
            };
            out.push((topic, name, false));
        }
    }

    /// Counts `n` refused (message, topic) pairs, at once: a client that reads its
    /// `#refused` may look at `stats()` next.
    fn count_refused(&self, n: usize) {
        let counters = &self.shared.counters;
        counters.publish_refused.fetch_add(n as u64, Relaxed);
    }

    /// With the protocol on, tells the client its message was not relayed to `stream`,
    /// after its earlier messages (whose `#own` markers come first). Returns whether the
    /// client is still live.
    fn tell_refused(&mut self, slot: usize, stream: StreamName<'_>) -> bool {
        if !self.config.sequenced {
            return true;
        }
        self.flush_relay();
        self.reply(slot, Reply::PublishRefused { stream })
    }
}

#[cfg(test)]
mod tests {
    use super::Answers;

    fn answers(each: &[bool]) -> Answers {
        let mut answers = Answers::default();
        for &allowed in each {
            answers.add(allowed);
        }
        answers
    }

    #[test]
    fn a_message_refused_everywhere_went_nowhere() {
        assert!(answers(&[false]).went_nowhere());
        assert!(answers(&[false, false]).went_nowhere());
    }

    #[test]
    fn a_message_allowed_somewhere_or_with_nowhere_to_go_is_not_answered() {
        assert!(!answers(&[true, false]).went_nowhere());
        assert!(!answers(&[false, true]).went_nowhere());
        assert!(!answers(&[]).went_nowhere());
        assert_eq!(
            answers(&[true, false, false]),
            Answers {
                allowed: 1,
                refused: 2
            }
        );
    }
}
