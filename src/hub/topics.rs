//! Topics on the host's handle: joining and leaving them (decided under the registry lock,
//! then applied in order by the dispatcher), publishing to them, and reading who is in
//! them (`Hub::members`, `Hub::member_count`, `Hub::topics`).

use std::sync::Arc;

use super::Hub;
use crate::command::{Command, Target};
use crate::{AsMessage, ClientId, Result, TopicInfo};
#[cfg(doc)]
use crate::{Error, HubBuilder};

impl Hub {
    /// Adds `client` to `topic`, creating the topic if it is new. Blocks as
    /// [`broadcast`](Self::broadcast) does.
    ///
    /// Ordered like every other call: a [`publish`](Self::publish) to `topic` made after
    /// this returns reaches the client, one made before does not. Joining a topic the
    /// client is in already changes nothing. A client leaves all its topics when it leaves
    /// the hub; a topic with no member left is freed (with
    /// [`Protocol::Sequenced`](crate::Protocol::Sequenced), kept for its replay ring until
    /// that empties by age or the topic is evicted: see
    /// [`replay_kept_bytes`](HubBuilder::replay_kept_bytes)).
    ///
    /// With [`client_topics`](HubBuilder::client_topics), the client changes its topics
    /// too. Joins and leaves are decided in one order — this call's when it returns, the
    /// client's `#join` or `#leave` when the hub reads it — and the last decided wins. A
    /// client `#leave` of this topic read after this call returned takes the client out
    /// even if the join had not reached it yet: it is then never sent `#joined` for this
    /// call, and subscribers get [`Event::TopicLeft`](crate::Event::TopicLeft), the only
    /// trace of the override. Read [`client`](Self::client) after this call and on each
    /// `TopicJoined`/`TopicLeft` of the client: the last read is its membership, the one
    /// its last `#joined`/`#left` of the topic states.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownClient`] if `client` is not connected; [`Error::InvalidTopic`] for
    /// a name that is empty, longer than [`max_topic_len`](HubBuilder::max_topic_len) or
    /// holds whitespace or a control character; [`Error::TopicLimit`] if the client is in
    /// [`max_topics_per_client`](HubBuilder::max_topics_per_client) topics already, or the
    /// hub holds [`max_topics`](HubBuilder::max_topics) topics and all have members (a kept
    /// topic with none is evicted to make room); otherwise as `broadcast`.
    pub fn join(&self, client: ClientId, topic: &str) -> Result<()> {
        self.topic_decision(client, topic, |table, topics| {
            let (id, new, evicted) = table.join(topic, topics, &self.topic_limits)?;
            if !new {
                return Ok(None);
            }
            let name = table.name(id).map_or_else(|| topic.into(), Arc::clone);
            Ok(Some(move |op| Command::Join(client, id, name, op, evicted)))
        })
    }

    /// Takes `client` out of `topic`. Blocks as [`broadcast`](Self::broadcast) does.
    ///
    /// Ordered like every other call: a publish made after this returns does not reach the
    /// client. Leaving a topic the client is not in changes nothing.
    ///
    /// With [`client_topics`](HubBuilder::client_topics), a client `#join` of this topic
    /// read after this call returned overrides it (the last decided wins, see
    /// [`join`](Self::join)): the client stays in, is never sent `#left` for this call,
    /// and subscribers get [`Event::TopicJoined`](crate::Event::TopicJoined).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownClient`] if `client` is not connected; [`Error::InvalidTopic`] for a
    /// name no topic can have; otherwise as `broadcast`.
    pub fn leave(&self, client: ClientId, topic: &str) -> Result<()> {
        self.topic_decision(client, topic, |table, topics| {
            let Some(id) = table.id(topic).filter(|id| topics.contains(id)) else {
                return Ok(None);
            };
            if table.leave(id, topics) && !self.keeps_rings {
                table.free(id);
            }
            Ok(Some(move |op| Command::Leave(client, id, op)))
        })
    }

    /// Sends `msg` to every member of `topic`. Blocks as [`broadcast`](Self::broadcast)
    /// does.
    ///
    /// The message is framed once and shared, and small messages are batched whatever their
    /// topics, as broadcasts are: publishing to many topics in turn costs no more per
    /// message than broadcasting. Each member gets a topic's messages in publish order,
    /// interleaved with broadcasts and other topics' messages in call order. A topic with no
    /// member here (or that was never joined) takes the message and drops it; in a cluster
    /// it still goes to the other nodes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] for a name no topic can have; otherwise as `broadcast`.
    pub fn publish(&self, topic: &str, msg: impl AsMessage) -> Result<()> {
        self.publish_to(topic, None, &msg, true)
    }

    /// Sends `msg` to every member of `topic` except `client`, for example to relay what
    /// that member said. Blocks as [`broadcast`](Self::broadcast) does.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn publish_except(&self, topic: &str, client: ClientId, msg: impl AsMessage) -> Result<()> {
        self.publish_to(topic, Some(client), &msg, true)
    }

    /// `publish` and `publish_except`; waits for room if `wait` (else the async forms'
    /// try: see `asynchronous`).
    pub(super) fn publish_to(
        &self,
        topic: &str,
        except: Option<ClientId>,
        msg: &impl AsMessage,
        wait: bool,
    ) -> Result<()> {
        crate::topics::check_name(topic, self.topic_limits.max_name)?;
        #[cfg(feature = "nats")]
        if self.clustered {
            let (msg, kind) = msg.parts();
            return self.publish_clustered(topic, except, msg, kind, wait);
        }
        let id = self.shared.registry().topics.id(topic);
        let Some(id) = id else {
            // No member: nobody to send to. (A topic created after this call misses it, as
            // a member who joins after a publish does.)
            self.shared.check()?;
            return Ok(());
        };
        let target = match except {
            Some(client) => Target::TopicExcept(id, client),
            None => Target::Topic(id),
        };
        self.submit(target, msg, wait)
    }

    /// Every topic, with its member count, by name: those with members, and those kept
    /// with none (with [`Protocol::Sequenced`](crate::Protocol::Sequenced), so members
    /// can come back and resume) for `replay_age` and until their ring empties, or until
    /// they are evicted. Never
    /// blocks for long.
    pub fn topics(&self) -> Vec<TopicInfo> {
        let registry = self.shared.registry();
        registry
            .topics
            .snapshot()
            .into_iter()
            .map(|(name, members)| TopicInfo {
                name: name.to_string(),
                members,
            })
            .collect()
    }

    /// Every client in `topic`, with its [user key](crate::Admit::user), by id: as the
    /// host's calls and the clients' own requests decided (as [`client`](Self::client)
    /// shows them). Empty for a topic with no member or that does not exist. Costs one
    /// pass over the connected clients under the hub's registry lock; for the count alone,
    /// [`member_count`](Self::member_count) costs none.
    ///
    /// Per hub: in a cluster, members connected to other nodes are not listed.
    ///
    /// ```
    /// use hubcast::{Admit, Event, Hub};
    /// use std::net::TcpStream;
    ///
    /// let hub = Hub::builder()
    ///     .admit(|_| Admit::new().user("alice").topic("lobby"))
    ///     .bind("127.0.0.1:0")?;
    /// let events = hub.subscribe();
    /// let _tab = TcpStream::connect(hub.local_addr())?;
    /// let Ok(Event::Connected { client, .. }) = events.recv() else { panic!() };
    /// let members = hub.members("lobby");
    /// assert_eq!((members[0].client, members[0].user.as_deref()), (client, Some("alice")));
    /// assert_eq!(hub.member_count("lobby"), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn members(&self, topic: &str) -> Vec<crate::Member> {
        let registry = self.shared.registry();
        let Some(id) = registry.topics.id(topic) else {
            return Vec::new();
        };
        let mut members: Vec<crate::Member> = registry
            .clients
            .iter()
            .filter(|(_, entry)| entry.topics.contains(&id))
            .map(|(&client, entry)| crate::Member {
                client,
                user: entry.user.as_deref().map(str::to_owned),
            })
            .collect();
        members.sort_unstable_by_key(|m| m.client);
        members
    }

    /// How many clients are in `topic` (0 for one that does not exist), as
    /// [`members`](Self::members) lists them. Never blocks for long.
    pub fn member_count(&self, topic: &str) -> usize {
        let registry = self.shared.registry();
        registry
            .topics
            .id(topic)
            .map_or(0, |id| registry.topics.members(id))
    }
}
