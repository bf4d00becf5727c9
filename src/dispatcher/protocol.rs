//! The hubcast protocol ([`Protocol::Sequenced`](crate::Protocol), `docs/PROTOCOL.md`) on
//! the dispatcher: numbering a batch's messages per stream as it is fanned out (so numbers
//! follow the order clients receive messages in), the `#own` markers for the client a
//! message excludes, control messages from clients (join and leave here; resume in
//! `resume`) and the answers.
//!
//! Numbering frames a batch again, once: each message gets its stream's header
//! (`17 `, `3@lobby `, `- `) and every recipient shares the numbered frames, as before.

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use super::Dispatcher;
use crate::command::{Frames, Kinds, Target};
use crate::queue::CHUNK_OVERHEAD;
use crate::topics::{check_name, TopicId};
use crate::wire::codec;
use crate::wire::control::{Reply, Request, StreamName, TopicRefusal, Verb};
use crate::{ClientId, Event, TopicAction};

/// What a client's unread control messages (answers to its own requests, `#resumed`,
/// `#error`…, and the `#joined`/`#left` of the host's changes) may hold beyond its queue
/// bound before it is cut as slow: no policy drops them, and an honest client reads them
/// long before.
const CONTROL_ALLOWANCE: usize = 64 * 1024;

/// A batch numbered for the protocol: the frames every recipient gets, and for runs that
/// exclude a client, the `#own` markers that client gets instead (same frame indexes; the
/// other frames are empty).
pub(crate) struct Numbered {
    pub(crate) frames: Frames,
    pub(crate) markers: Option<Frames>,
}

/// Which stream a target's messages belong to.
enum StreamOf {
    Hub,
    /// A topic's; `true` for its `#presence` messages.
    Topic(TopicId, bool),
    Direct,
}

impl Dispatcher {
    /// Numbers every message of `frames` in its stream, keeps it in the stream's replay
    /// ring, and makes the `#own` markers for clients that runs exclude.
    pub(super) fn number(&mut self, frames: &Frames) -> Numbered {
        let framing = self.config.framing;
        let limits = self.config.ring_limits;
        let now = self.now;
        let mut out = BytesMut::with_capacity(frames.bytes.len() + 16 * frames.ends.len());
        let mut ends = Vec::with_capacity(frames.ends.len());
        let excludes = frames
            .runs
            .iter()
            .any(|(_, t)| matches!(t, Target::AllExcept(_) | Target::TopicExcept(..)));
        let mut markers = excludes.then(BytesMut::new);
        let mut marker_ends = Vec::new();
        // A message's header and its `#own` marker, written anew for each message into
        // the same two strings.
        let (mut header, mut own) = (String::new(), String::new());
        for run in 0..frames.runs.len() {
            let target = frames.runs[run].1;
            let (stream_of, excluding) = match target {
                Target::All => (StreamOf::Hub, false),
                Target::AllExcept(_) => (StreamOf::Hub, true),
                Target::One(_) => (StreamOf::Direct, false),
                Target::Topic(t) => (StreamOf::Topic(t, false), false),
                Target::TopicExcept(t, _) => (StreamOf::Topic(t, false), true),
                Target::Presence(t) => (StreamOf::Topic(t, true), false),
            };
            let presence = matches!(stream_of, StreamOf::Topic(_, true));
            for i in frames.run_frames(run) {
                let payload = frames.payload(i, framing);
                let start = out.len();
                let numbered = match &stream_of {
                    StreamOf::Hub => Some((&mut self.streams.hub, None)),
                    StreamOf::Topic(t, _) => self
                        .streams
                        .topics
                        .stream_mut(*t)
                        .map(|(s, n)| (s, Some(n))),
                    StreamOf::Direct => None,
                };
                let mut marker = false;
                match numbered {
                    Some((stream, topic)) => {
                        let seq = stream.next();
                        header.clear();
                        // Writing to a String cannot fail.
                        let _ = match topic {
                            Some(name) if presence => write!(header, "#presence @{name} {seq} "),
                            Some(name) => write!(header, "{seq}@{name} "),
                            None => write!(header, "{seq} "),
                        };
                        codec::encode_parts_into(framing, &[header.as_bytes(), payload], &mut out);
                        let kept = Bytes::copy_from_slice(&out[start..]);
                        // Replayed with the kind it went out with. (The header is ASCII:
                        // a text payload numbered is still UTF-8.)
                        stream.keep(seq, kept, frames.kinds.get(i), presence, now, &limits);
                        if excluding {
                            own.clear();
                            let stream = topic.map_or(StreamName::Hub, StreamName::Topic);
                            let _ = write!(own, "{}", Reply::Own { stream, seq });
                            marker = true;
                        }
                    }
                    // No stream: a direct message, or a topic that has gone (nobody gets it).
                    None if matches!(stream_of, StreamOf::Direct) => {
                        codec::encode_parts_into(framing, &[b"- ", payload], &mut out);
                    }
                    None => {}
                }
                ends.push(frame_end(&out));
                if let Some(markers) = markers.as_mut() {
                    if marker {
                        codec::encode_into(framing, own.as_bytes(), markers);
                    }
                    marker_ends.push(frame_end(markers));
                }
            }
        }
        // Rings may have grown past their bounds: all of them together, and kept topics'.
        self.bound_rings();
        self.bound_kept();
        // Rings got messages: look at their age by then.
        self.prune_after_age();
        Numbered {
            frames: Frames {
                bytes: out.freeze(),
                ends: ends.into(),
                runs: frames.runs.clone(),
                kinds: frames.kinds.clone(),
            },
            // `#own` markers are control messages: untyped, as every reply.
            markers: markers.map(|m| Frames {
                bytes: m.freeze(),
                ends: marker_ends.into(),
                runs: frames.runs.clone(),
                kinds: Kinds::UNTYPED,
            }),
        }
    }

    /// Queues a control message for a client, framed for its wire. Control messages are
    /// protocol, not messages: they count as no frame, and may pass the bound (no policy
    /// drops them), but only by [`CONTROL_ALLOWANCE`]: a client that asks and does not read
    /// the answers (or whose host changes its topics faster than it reads) is cut as slow.
    ///
    /// Only a live client is sent anything: one that is leaving has been told its last
    /// (a WebSocket close frame may be queued). Returns whether the client is still live:
    /// after `false`, callers do nothing more for it, since its `Disconnected` may already
    /// be out.
    pub(super) fn reply(&mut self, slot: usize, reply: Reply<'_>) -> bool {
        let Some(client) = self.slots.get(slot).filter(|c| c.is_live()) else {
            return false;
        };
        let settings = self.config.wire();
        let bytes = client
            .wire()
            .encode(&settings, reply.to_string().as_bytes());
        let over = client.queue.cost() + bytes.len() + CHUNK_OVERHEAD
            > self.config.queue_bytes.saturating_add(CONTROL_ALLOWANCE);
        if over {
            log::debug!(
                "client {} does not read the answers to its requests",
                client.id
            );
            self.leave(slot, crate::DisconnectReason::Slow, None);
            return false;
        }
        self.send_raw(slot, bytes);
        true
    }

    /// Whether the client in `slot` is live: not cut meanwhile.
    pub(super) fn is_live(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|c| c.is_live())
    }

    /// A new client learns where the hub-wide stream starts for it.
    pub(super) fn greet(&mut self, slot: usize) {
        let (epoch, seq) = (self.streams.hub.epoch, self.streams.hub.seq);
        if let Some(client) = self.slots.get_mut(slot) {
            client.hub_start = seq;
        }
        self.reply(slot, Reply::At { epoch, seq });
    }

    /// A control message from a live client (the text after its `#`).
    pub(super) fn control(&mut self, slot: usize, id: ClientId, text: &str) {
        match Request::parse(text) {
            Ok(Request::Resume {
                stream,
                epoch,
                seq,
                next,
            }) => self.resume(slot, id, stream, epoch, (seq, next)),
            Ok(Request::Join(topic, history)) => {
                self.client_topic(slot, id, topic, Some(history));
            }
            Ok(Request::Leave(topic)) => {
                self.client_topic(slot, id, topic, None);
            }
            Ok(Request::Who(topic)) => self.who(slot, topic),
            Err(bad) => {
                self.reply(slot, Reply::Error(bad));
            }
        }
    }

    /// `#join @topic [<n>]` (`join` is `Some(n)`: the last messages asked for, if any) or
    /// `#leave @topic` (`None`) from a client: checked by the host's closure and the
    /// limits, then applied at once (this is the dispatcher: it is in order).
    pub(super) fn client_topic(
        &mut self,
        slot: usize,
        id: ClientId,
        topic: &str,
        join: Option<Option<u64>>,
    ) -> bool {
        let history = join.flatten();
        let join = join.is_some();
        let refuse = |this: &mut Self, why| {
            let verb = if join { Verb::Join } else { Verb::Leave };
            this.reply(slot, Reply::Refused { verb, topic, why });
            false
        };
        if check_name(topic, self.config.topic_limits.max_name).is_err() {
            return refuse(self, TopicRefusal::Name);
        }
        let Some(allow) = self.config.client_topics.clone() else {
            return refuse(self, TopicRefusal::Off);
        };
        let limits = self.config.topic_limits;
        // What the table says, decided under its lock; applied after it.
        enum Outcome {
            Gone,
            /// The request would change the client's topics: the host's closure decides
            /// first.
            Ask,
            /// The topic, its name, the kept topic evicted for it, and whether the client
            /// was new to it in the table.
            Joined(TopicId, std::sync::Arc<str>, Option<TopicId>, bool),
            Limit,
            NotIn,
            Left(TopicId),
        }
        // A request that changes nothing (a join of a topic the client is in, a leave of
        // one it is not in) is answered without asking the host; one that does is asked,
        // outside the lock, then decided again (the host may have changed it meanwhile).
        let mut asked = false;
        loop {
            // The decision's number, and the host's last one when it was made.
            let mut ops = (0, 0);
            let outcome = {
                let mut registry = self.shared.registry();
                let registry = &mut *registry;
                let existing = registry.topics.id(topic);
                match registry.clients.get_mut(&id) {
                    None => Outcome::Gone,
                    Some(entry)
                        if !asked
                            && join != existing.is_some_and(|t| entry.topics.contains(&t)) =>
                    {
                        Outcome::Ask
                    }
                    Some(entry) if join => {
                        match registry.topics.join(topic, &mut entry.topics, &limits) {
                            Ok((topic_id, new, evicted)) => match registry.topics.name(topic_id) {
                                Some(name) => {
                                    let name = std::sync::Arc::clone(name);
                                    ops = registry.decisions.client();
                                    Outcome::Joined(topic_id, name, evicted, new)
                                }
                                None => Outcome::Gone,
                            },
                            Err(_) => Outcome::Limit,
                        }
                    }
                    Some(entry) => match existing {
                        Some(topic_id) if entry.topics.contains(&topic_id) => {
                            // Freed by the dispatcher once its ring is empty too.
                            registry.topics.leave(topic_id, &mut entry.topics);
                            ops = registry.decisions.client();
                            Outcome::Left(topic_id)
                        }
                        _ => Outcome::NotIn,
                    },
                }
            };
            return match outcome {
                Outcome::Gone => false,
                Outcome::Ask => {
                    let action = if join {
                        TopicAction::Join
                    } else {
                        TopicAction::Leave
                    };
                    if !self.ask_topic(&allow, slot, id, StreamName::Topic(topic), action) {
                        return refuse(self, TopicRefusal::Denied);
                    }
                    asked = true;
                    continue;
                }
                Outcome::Joined(topic_id, name, evicted, new) => {
                    if let Some(evicted) = evicted {
                        self.topic_evicted(evicted);
                    }
                    self.fence_host_topic_ops(slot, topic_id, ops);
                    self.join_topic_with(id, topic_id, name, history);
                    // Cut for not reading its answers: it has left, and so the topic.
                    if !self.is_live(slot) {
                        return false;
                    }
                    if new {
                        self.emit_topic_change(id, topic, true);
                    }
                    true
                }
                Outcome::Limit => refuse(self, TopicRefusal::Limit),
                Outcome::NotIn => self.reply(slot, Reply::Left { topic }),
                Outcome::Left(topic_id) => {
                    self.fence_host_topic_ops(slot, topic_id, ops);
                    // The table had it, from a `Hub::join` the dispatcher may not have
                    // applied yet (it will not now): the client still gets its answer.
                    if !self.leave_topic(id, topic_id) {
                        self.reply(slot, Reply::Left { topic });
                        if self.streams.topics.name_of(topic_id).is_none() {
                            // The table made the topic for that join, and nothing here holds
                            // it (no member, no ring): freed, not listed as kept forever.
                            self.shared.registry().topics.free(topic_id);
                        }
                    }
                    if !self.is_live(slot) {
                        return false;
                    }
                    // A host join overridden this way is told to the host only by this
                    // event.
                    self.emit_topic_change(id, topic, false);
                    true
                }
            };
        }
    }

    /// `#who @topic`: the topic's members now, at its current position (anything numbered
    /// before was flushed before this request was read: see `deliver`).
    fn who(&mut self, slot: usize, topic: &str) {
        let refuse = |this: &mut Self, why| {
            let verb = Verb::Who;
            this.reply(slot, Reply::Refused { verb, topic, why });
        };
        if check_name(topic, self.config.topic_limits.max_name).is_err() {
            return refuse(self, TopicRefusal::Name);
        }
        let topic_id = self.slots.get(slot).and_then(|client| {
            client
                .topics
                .iter()
                .map(|&(t, _)| t)
                .find(|&t| self.streams.topics.name_of(t) == Some(topic))
        });
        let Some(topic_id) = topic_id else {
            return refuse(self, TopicRefusal::NotMember);
        };
        if !self.tell_members(slot, topic_id) {
            refuse(self, TopicRefusal::Off);
        }
    }

    /// Tells subscribers that a client's own request changed its topics.
    fn emit_topic_change(&mut self, client: ClientId, topic: &str, joined: bool) {
        if !self.subs.any(&self.shared) {
            return;
        }
        let topic = topic.to_owned();
        let event = if joined {
            Event::TopicJoined { client, topic }
        } else {
            Event::TopicLeft { client, topic }
        };
        self.subs.emit(event, &self.shared, self.now);
    }
}

/// Where the last frame ends: offsets are 32-bit (a batch is at most 64 KiB, and one frame
/// at most 4 GiB).
fn frame_end(buf: &BytesMut) -> u32 {
    u32::try_from(buf.len()).unwrap_or(u32::MAX)
}
