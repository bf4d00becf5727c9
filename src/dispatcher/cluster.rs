//! The dispatcher's side of a cluster: forwarding the messages it fans out to the other
//! nodes, fanning out theirs without forwarding them again, and following which topics have
//! local members. The backplane thread itself is `cluster::nats`.
//!
//! [`Backplane`] exists whatever the features, so the rest of the dispatcher calls it
//! without `cfg`: without the `nats` feature it holds nothing and does nothing.

#[cfg(feature = "nats")]
use std::collections::HashMap;
use std::sync::Arc;

use super::Dispatcher;
use crate::command::Frames;

/// Where messages for the other nodes of the cluster go.
#[derive(Debug, Default)]
pub(crate) struct Backplane {
    #[cfg(feature = "nats")]
    bridge: Option<crate::cluster::Bridge>,
    /// Topics here by name, with how many of them (a topic evicted here may still be
    /// dropped after a new one of its name was made): subscribed while any.
    #[cfg(feature = "nats")]
    topics: HashMap<Arc<str>, usize>,
}

impl Backplane {
    /// The dispatcher's end of the bridge to the backplane thread.
    #[cfg(feature = "nats")]
    pub(crate) fn new(bridge: Option<crate::cluster::Bridge>) -> Backplane {
        Backplane {
            bridge,
            topics: HashMap::new(),
        }
    }

    /// Whether the hub is in a cluster.
    fn is_on(&self) -> bool {
        #[cfg(feature = "nats")]
        return self.bridge.is_some();
        #[cfg(not(feature = "nats"))]
        false
    }
}

impl Dispatcher {
    /// Hands the messages of locally made `frames` that other nodes' clients should get to
    /// the backplane: broadcasts and relayed messages, topic publishes. Direct messages stay
    /// here. What the backplane's buffer cannot take is counted as lost.
    pub(super) fn forward(&mut self, _frames: &Frames) {
        if self.backplane.is_on() {
            #[cfg(feature = "nats")]
            nats::forward(self, _frames);
        }
    }

    /// A topic got its first local member: a cluster node starts receiving it.
    pub(super) fn topic_created(&mut self, _name: &Arc<str>) {
        #[cfg(feature = "nats")]
        {
            // Counted by name: a topic evicted or replaced may be dropped here after a new
            // topic of the same name was made, and must not unsubscribe that one.
            let count = self.backplane.topics.entry(Arc::clone(_name)).or_insert(0);
            *count += 1;
            if *count == 1 {
                nats::subscribe(self, Arc::clone(_name), true);
            }
        }
    }

    /// A topic was freed here: a cluster node stops receiving it.
    pub(super) fn topic_freed(&mut self, _name: Arc<str>) {
        #[cfg(feature = "nats")]
        if let Some(count) = self.backplane.topics.get_mut(&_name) {
            *count -= 1;
            if *count == 0 {
                self.backplane.topics.remove(&_name);
                nats::subscribe(self, _name, false);
            }
        }
    }
}

#[cfg(feature = "nats")]
mod nats {
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::Dispatcher;
    use crate::cluster::Out;
    use crate::command::{Command, Frames, Target};

    pub(super) fn forward(d: &mut Dispatcher, frames: &Frames) {
        let Some(bridge) = &d.backplane.bridge else {
            return;
        };
        let framing = d.config.framing;
        let mut lost = 0;
        for run in 0..frames.runs.len() {
            let topic = match frames.runs[run].1 {
                Target::All | Target::AllExcept(_) => None,
                Target::Topic(t) | Target::TopicExcept(t, _) => {
                    match d.streams.topics.name_arc(t) {
                        Some(name) => Some(name),
                        None => continue,
                    }
                }
                // Presence is per hub: each node tells its own members.
                Target::One(_) | Target::Presence(_) => continue,
            };
            for i in frames.run_frames(run) {
                // A slice of the shared buffer, not a copy.
                let payload = frames.bytes.slice_ref(frames.payload(i, framing));
                let kind = frames.kinds.get(i);
                let out = match &topic {
                    None => Out::All(payload, kind),
                    Some(name) => Out::Topic(Arc::clone(name), payload, kind),
                };
                if !bridge.forward(out) {
                    lost += 1;
                }
            }
        }
        if lost > 0 {
            d.shared.counters.cluster_lost.fetch_add(lost, Relaxed);
        }
    }

    /// A publish to a topic with no local member: only other nodes may have members.
    fn forward_topic(
        d: &mut Dispatcher,
        topic: Arc<str>,
        payload: Bytes,
        kind: Option<crate::MessageKind>,
    ) {
        if let Some(bridge) = &d.backplane.bridge {
            if !bridge.forward(Out::Topic(topic, payload, kind)) {
                d.shared.counters.cluster_lost.fetch_add(1, Relaxed);
            }
        }
    }

    /// Starts or stops receiving a topic's messages from the other nodes.
    pub(super) fn subscribe(d: &mut Dispatcher, topic: Arc<str>, subscribe: bool) {
        if let Some(bridge) = &d.backplane.bridge {
            let out = if subscribe {
                Out::Subscribe(topic)
            } else {
                Out::Unsubscribe(topic)
            };
            bridge.forward(out);
        }
    }

    impl Dispatcher {
        /// A command from the backplane thread, or for it.
        pub(in crate::dispatcher) fn run_cluster_command(&mut self, command: Command) {
            match command {
                // From other nodes: to local clients, never forwarded again.
                Command::Remote(frames) => self.fan_out_local(&frames),
                Command::Forward(topic, payload, kind) => forward_topic(self, topic, payload, kind),
                Command::Cluster(state) => {
                    let event = crate::Event::Cluster { state };
                    self.subs.emit(event, &self.shared, self.now);
                }
                _ => {}
            }
        }
    }
}
