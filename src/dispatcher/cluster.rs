//! The dispatcher's side of a cluster (feature `nats`): forwarding the messages it fans out
//! to the other nodes, fanning out theirs without forwarding them again, and following
//! which topics have local members. The backplane thread itself is `cluster::nats`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;

use super::Dispatcher;
use crate::cluster::Out;
use crate::command::{Frames, Target};

impl Dispatcher {
    /// Hands the messages of locally made `frames` that other nodes' clients should get to
    /// the backplane: broadcasts and relayed messages, topic publishes. Direct messages stay
    /// here. What the backplane's buffer cannot take is counted as lost.
    pub(super) fn forward(&mut self, frames: &Frames) {
        let Some(bridge) = &self.bridge else {
            return;
        };
        let framing = self.config.framing;
        let mut lost = 0;
        for run in 0..frames.runs.len() {
            let topic = match frames.runs[run].1 {
                Target::All | Target::AllExcept(_) => None,
                Target::Topic(t) | Target::TopicExcept(t, _) => match self.topics.name_arc(t) {
                    Some(name) => Some(name),
                    None => continue,
                },
                Target::One(_) => continue,
            };
            for i in frames.run_frames(run) {
                // A slice of the shared buffer, not a copy.
                let payload = frames.bytes.slice_ref(frames.payload(i, framing));
                let out = match &topic {
                    None => Out::All(payload),
                    Some(name) => Out::Topic(Arc::clone(name), payload),
                };
                if !bridge.forward(out) {
                    lost += 1;
                }
            }
        }
        if lost > 0 {
            self.shared.counters.cluster_lost.fetch_add(lost, Relaxed);
        }
    }

    /// A publish to a topic with no local member: only other nodes may have members.
    pub(super) fn forward_topic(&mut self, topic: Arc<str>, payload: Bytes) {
        if let Some(bridge) = &self.bridge {
            if !bridge.forward(Out::Topic(topic, payload)) {
                self.shared.counters.cluster_lost.fetch_add(1, Relaxed);
            }
        }
    }

    /// Starts or stops receiving a topic's messages from the other nodes.
    pub(super) fn cluster_subscribe(&mut self, topic: Arc<str>, subscribe: bool) {
        if let Some(bridge) = &self.bridge {
            let out = if subscribe {
                Out::Subscribe(topic)
            } else {
                Out::Unsubscribe(topic)
            };
            bridge.forward(out);
        }
    }
}
