//! Resume (`#resume`, [`Protocol::Sequenced`](crate::Protocol)): in one step of the
//! dispatcher, the messages a client missed from a stream's replay ring, sized for its wire
//! and checked against what its queue already holds, then the live stream; or why not
//! (`#noresume`), and where the stream is. A member's resume of a topic is the host's to
//! allow (`client_topics`, asked `Resume`; a non-member is asked `Join` first).

use std::sync::atomic::Ordering::Relaxed;

use super::Dispatcher;
use crate::queue::CHUNK_OVERHEAD;
use crate::topics::stream::Stream;
use crate::topics::{check_name, TopicId};
use crate::wire::control::{Reply, StreamName};
use crate::{ClientId, Event, ResumeRefusal, TopicAction};

/// The most replays a client may have queued and not yet read: past it a resume is
/// answered `much`, however small.
pub(crate) const MAX_REPLAYS_QUEUED: usize = 16;

impl Dispatcher {
    /// `#resume <stream> <epoch> <seq> [<next>]`: in one step, the messages the client
    /// missed, then the live stream; or why not, and where the stream is.
    ///
    /// `gap` is the position and, for a gap on this connection, the first message after it
    /// that the client has: then exactly the messages between are replayed. Without it,
    /// the replay ends where this connection's live messages begin: its `#at` for the
    /// hub-wide stream, its `#joined` for a topic it is in, now for a topic the resume
    /// joins; with it, there too if that is later (the <next> it holds came before them).
    ///
    /// A replay is counted against the client's queue bound with what is
    /// queued already: past it, or with [`MAX_REPLAYS_QUEUED`] replays still queued, the
    /// answer is `much` (the client may ask again once it has read them).
    pub(super) fn resume(
        &mut self,
        slot: usize,
        id: ClientId,
        stream: StreamName<'_>,
        epoch: u64,
        gap: (u64, Option<u64>),
    ) {
        let (after, next) = gap;
        let clock = (self.now, self.config.ring_limits.age);
        let Some(wire) = self.slots.get(slot).map(|c| c.wire()) else {
            return;
        };
        // Up to where this connection's live messages of the stream began (`live`), and
        // with <next> up to the message before it if that is later; never past the last.
        let replay_end = |live: u64, last: u64| {
            let live = live.min(last);
            next.map_or(live, |n| n.saturating_sub(1).min(last).max(live))
        };
        let (which, upto) = match stream {
            StreamName::Hub => {
                let upto = replay_end(
                    self.slots.get(slot).map_or(0, |c| c.hub_start),
                    self.streams.hub.seq,
                );
                (None, upto)
            }
            StreamName::Topic(topic) => {
                // Resuming a topic joins it, so that joining and replaying are one step. A
                // member's live messages began after its `#joined` position.
                let start = self.slots.get(slot).and_then(|c| {
                    c.topics
                        .iter()
                        .find(|&&(t, _)| self.streams.topics.name_of(t) == Some(topic))
                        .map(|&(_, start)| start)
                });
                if start.is_none() && !self.client_topic(slot, id, topic, Some(Some(0))) {
                    self.refuse_resume(slot, id, stream, ResumeRefusal::NotMember, None);
                    return;
                }
                let topic_id = self.shared.registry().topics.id(topic);
                let Some((t, s)) = topic_id.and_then(|t| Some((t, self.streams.topics.stream(t)?)))
                else {
                    self.refuse_resume(slot, id, stream, ResumeRefusal::NotMember, None);
                    return;
                };
                // Joined now: its live messages begin after the last one, so a <next> it holds
                // is from before (a `#left` crossed its gap repair): all up to the join.
                let upto = replay_end(start.unwrap_or(s.seq), s.seq);
                // A member now: may it have the topic's history? If not, it is told where
                // the topic is, and reads on live from there.
                let position = (s.epoch, s.seq);
                if let Some(allow) = self.config.client_topics.clone() {
                    let stream = StreamName::Topic(topic);
                    if !self.ask_topic(&allow, slot, id, stream, TopicAction::Resume) {
                        let reason = ResumeRefusal::Denied;
                        return self.refuse_resume(slot, id, stream, reason, Some(position));
                    }
                }
                (Some(t), upto)
            }
        };
        let Some(s) = self.stream_of(which) else {
            return;
        };
        let position = (s.epoch, s.seq);
        // Sized before anything is copied: a refused replay costs a walk over the ring.
        let mut settings = self.config.wire();
        // Event streams name each replayed message by its stream's epoch.
        settings.replaying = Some(position.0);
        let sized = s.replay(epoch, after, upto, clock).map(|range| {
            let len: usize = s
                .frames(range.clone())
                .map(|(f, _)| wire.replay_len(&settings, f))
                .sum();
            (range, len)
        });
        let (range, len) = match sized {
            Ok(sized) => sized,
            Err(reason) => return self.refuse_resume(slot, id, stream, reason, Some(position)),
        };
        let cost = len + CHUNK_OVERHEAD * wire.replay_entries(range.len());
        if !range.is_empty() && !self.room_for_replay(slot, cost) {
            return self.refuse_resume(slot, id, stream, ResumeRefusal::TooMuch, Some(position));
        }
        let resumed = Reply::Resumed {
            stream,
            epoch: position.0,
            from: after + 1,
            to: upto,
        };
        if !self.reply(slot, resumed) {
            return;
        }
        let replayed = range.len() as u64;
        if replayed > 0 {
            let Some(s) = self.stream_of(which) else {
                return;
            };
            // Shared with the ring where the wire takes kept frames as they are (`Framed`):
            // a restart storm of clients resuming one stream costs a queue entry per
            // message and client, not a copy.
            let mut settings = self.config.wire();
            settings.replaying = Some(s.epoch);
            let parts = wire.replay(&settings, s.frames(range), len);
            if let Some(client) = self.slots.live_mut(slot) {
                client.queue.push_replay(parts);
                self.mark_dirty(slot);
                self.update_flow(slot);
            }
        }
        let counters = &self.shared.counters;
        counters.resumes.fetch_add(1, Relaxed);
        counters.replayed.fetch_add(replayed, Relaxed);
        let event = Event::Resumed {
            client: id,
            stream: stream.to_string(),
            replayed,
        };
        self.subs.emit(event, &self.shared, self.now);
    }

    /// The hub-wide stream (`None`), or a topic's if the id is current.
    fn stream_of(&self, topic: Option<TopicId>) -> Option<&Stream> {
        match topic {
            None => Some(&self.streams.hub),
            Some(t) => self.streams.topics.stream(t),
        }
    }

    /// Whether the client's queue has room for a replay that costs `cost` (its bytes and
    /// entries, as the queue counts them), with what it holds
    /// already (trying its socket first, as a fan-out would), and fewer than
    /// [`MAX_REPLAYS_QUEUED`] replays in it.
    fn room_for_replay(&mut self, slot: usize, cost: usize) -> bool {
        let bound = self.config.queue_bytes;
        let fits = |client: &crate::client::Client| {
            client.queue.replays() < MAX_REPLAYS_QUEUED && client.queue.cost() + cost <= bound
        };
        match self.slots.live_mut(slot) {
            Some(client) if fits(client) => true,
            Some(client) if client.writable => {
                // `false`: the client is gone.
                self.flush_client(slot) && self.slots.live_mut(slot).is_some_and(|c| fits(c))
            }
            _ => false,
        }
    }

    fn refuse_resume(
        &mut self,
        slot: usize,
        id: ClientId,
        stream: StreamName<'_>,
        reason: ResumeRefusal,
        position: Option<(u64, u64)>,
    ) {
        let (epoch, seq) = position.unwrap_or((0, 0));
        let max_name = self.config.topic_limits.max_name;
        let invalid = matches!(stream,
            StreamName::Topic(topic) if check_name(topic, max_name).is_err());
        let refused = Reply::NoResume {
            stream,
            invalid,
            reason,
            epoch,
            seq,
        };
        if !self.reply(slot, refused) {
            return;
        }
        self.shared.counters.resumes_refused.fetch_add(1, Relaxed);
        let event = Event::ResumeRefused {
            client: id,
            stream: stream.to_string(),
            reason,
        };
        self.subs.emit(event, &self.shared, self.now);
    }
}
