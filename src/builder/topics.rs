//! The builder's settings of topics, and of the protocol's numbered streams and their
//! replay rings.

use std::sync::Arc;
use std::time::Duration;

use super::HubBuilder;
use crate::callbacks::Callback;
#[cfg(doc)]
use crate::Hub;
use crate::{Protocol, TopicRequest};

impl HubBuilder {
    /// The most topics the hub holds at once. Default: 10,000: each costs a name and a
    /// member list.
    ///
    /// Only topics with members count against a refusal: [`Hub::join`] (or a client's
    /// `#join`) of a new topic fails with [`Error::TopicLimit`](crate::Error::TopicLimit) only if every topic the hub
    /// holds has a member. A topic with no member kept for its replay ring
    /// ([`Protocol::Sequenced`], see [`replay_age`](Self::replay_age)) gives up its room:
    /// the one whose last member left longest ago is evicted, and a later resume of it is
    /// answered `epoch` (numbers restarted).
    pub fn max_topics(mut self, topics: usize) -> Self {
        self.max_topics = topics;
        self
    }

    /// The most topics one client may be in at once. Default: 64.
    pub fn max_topics_per_client(mut self, topics: usize) -> Self {
        self.max_topics_per_client = topics;
        self
    }

    /// The longest topic name, in bytes of UTF-8. Default: 64. With a cluster (feature
    /// `nats`, `HubBuilder::cluster`), a topic is a NATS subject of the prefix and up to three
    /// bytes per byte of the name, which must stay within 4,000 bytes (the broker's control
    /// line): a longer limit is an [`Error::Config`](crate::Error::Config).
    pub fn max_topic_len(mut self, bytes: usize) -> Self {
        self.max_topic_len = bytes;
        self
    }

    /// Whether messages carry the hubcast protocol: numbered streams with replay rings and
    /// resume, and control messages from clients. Default: [`Protocol::None`]. See
    /// `docs/PROTOCOL.md` for the wire format, precise enough to write a client from.
    ///
    /// ```
    /// use hubcast::{Hub, Protocol};
    ///
    /// let hub = Hub::builder()
    ///     .protocol(Protocol::Sequenced)
    ///     .replay_messages(10_000)
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The most messages each stream's replay ring keeps ([`Protocol::Sequenced`]).
    /// Default: 1,024.
    pub fn replay_messages(mut self, messages: usize) -> Self {
        self.replay_messages = messages;
        self
    }

    /// The most bytes each stream's replay ring keeps. Default: 1 MiB. A ring counts what
    /// its messages really cost: each message as framed (with its header, `17 ` or
    /// `3@lobby `), rounded up to 16 bytes, plus 48 bytes of bookkeeping; all rings together
    /// are bounded by [`replay_total_bytes`](Self::replay_total_bytes).
    pub fn replay_bytes(mut self, bytes: usize) -> Self {
        self.replay_bytes = bytes;
        self
    }

    /// How long a message stays in its stream's replay ring. Default: 2 minutes, long
    /// enough for a phone changing networks or a laptop waking up. A topic whose last member
    /// left is kept (with its numbers) for this long after it left, and as long as its ring
    /// holds messages, so members that come back within this time can resume — even from a
    /// room where nothing was said, at their position — unless it is evicted first, the one left longest ago
    /// first, when kept rings pass [`replay_kept_bytes`](Self::replay_kept_bytes) or a new
    /// topic needs its room under [`max_topics`](Self::max_topics). Any duration is
    /// accepted; one too long to represent means no age limit.
    pub fn replay_age(mut self, age: Duration) -> Self {
        self.replay_age = age;
        self
    }

    /// The most bytes the replay rings of *kept* topics hold together: topics whose last
    /// member left, kept with their numbers so members that come back can resume
    /// ([`Protocol::Sequenced`]). Counted as rings count their bytes (messages as framed).
    /// Past it, kept topics are evicted, the one whose last member left longest ago first:
    /// its ring and numbers are dropped, and a later resume of it is answered `epoch`.
    /// Topics with members are not affected.
    ///
    /// Default: 64 MiB: 64 full rings at the default [`replay_bytes`](Self::replay_bytes),
    /// or thousands of rooms' last messages. Without this bound, clients that join rooms,
    /// fill their rings and leave could make the hub hold up to
    /// [`max_topics`](Self::max_topics) × `replay_bytes` (10 GB by default). 0 keeps no
    /// topic without members once its ring holds anything.
    pub fn replay_kept_bytes(mut self, bytes: usize) -> Self {
        self.replay_kept_bytes = bytes;
        self
    }

    /// The most bytes every replay ring of the hub holds together — the hub-wide stream's
    /// and every topic's, with members or kept ([`Protocol::Sequenced`]) — counted as
    /// [`replay_bytes`](Self::replay_bytes) counts them, plus each ring's entries. Default:
    /// 256 MiB.
    ///
    /// Past it, the oldest messages of the largest rings go first: every ring larger than
    /// one common level is trimmed down to it (to 15/16 of the bound, so that trims are
    /// rare), and smaller rings lose nothing. A resume that needs a message trimmed away is
    /// answered `old`; trimmed messages are counted in
    /// [`Stats::replay_trimmed`](crate::Stats::replay_trimmed). Without this bound, rings
    /// of topics with members were bounded only one by one: clients that join rooms of
    /// their own and fill them could make the hub hold topics × `replay_bytes`. With it,
    /// the hub's memory is at most clients × ([`queue_bytes`](Self::queue_bytes) + 64 KiB of
    /// control messages + [`max_frame`](Self::max_frame)) + this + a fixed cost per client
    /// and per topic.
    pub fn replay_total_bytes(mut self, bytes: usize) -> Self {
        self.replay_total_bytes = bytes;
        self
    }

    /// Decides who may do what with which topic: lets clients join and leave topics
    /// themselves ([`Protocol::Sequenced`]'s `#join` and `#leave`), and checks who may
    /// write to a topic and resume it. `allow` is asked about one client, topic and
    /// [`TopicAction`](crate::TopicAction) at a time and answers whether to allow it; it
    /// runs on the dispatcher thread under the same rules as the
    /// [authenticator](Self::authenticate), so it should only decide (read your own state)
    /// and never block. Default: none. Clients may not choose topics (only the host puts
    /// them in, [`Hub::join`]), every member may write to its topics, and every member may
    /// resume them.
    ///
    /// It is asked for:
    ///
    /// - [`Join`](crate::TopicAction::Join) and [`Leave`](crate::TopicAction::Leave): a
    ///   `#join` or `#leave` that would change the client's topics (a `#join` of a topic
    ///   the client is in, or a `#leave` of one it is not in, is answered at once). Each
    ///   change a request makes is reported as
    ///   [`Event::TopicJoined`](crate::Event::TopicJoined) or
    ///   [`Event::TopicLeft`](crate::Event::TopicLeft); see [`Hub::join`] for the order of
    ///   the host's and the clients' changes. Refused: `#refused join @<topic> denied`.
    /// - [`Resume`](crate::TopicAction::Resume): a `#resume @<topic>`, a member asking for
    ///   the messages it missed. A client not in the topic is asked `Join` first (the
    ///   resume joins it), then `Resume`. Refused: `#noresume @<topic> denied <epoch>
    ///   <seq>` with the topic's position (the client is a member and reads live messages
    ///   from there) and [`Event::ResumeRefused`](crate::Event::ResumeRefused) with
    ///   [`ResumeRefusal::Denied`](crate::ResumeRefusal::Denied). The hub-wide stream's
    ///   resume (`#resume *`) is not asked.
    /// - [`Publish`](crate::TopicAction::Publish): each message a client sends, before it
    ///   is relayed. Under [`Relay::Topics`](crate::Relay::Topics), once per topic the
    ///   client is in (not per recipient), and the message goes to the topics allowed;
    ///   under [`Relay::All`](crate::Relay::All) and [`Relay::Others`](crate::Relay::Others)
    ///   once, with the topic `"*"` (the hub-wide stream's name), so a host can mute a
    ///   client in a plain chat; under [`Relay::Off`](crate::Relay::Off), never. Whatever
    ///   the answer, subscribers get the message as
    ///   [`Event::Message`](crate::Event::Message): relaying is what other clients get, not
    ///   what the host reads. Each refused (message, topic) pair is counted in
    ///   [`Stats::publish_refused`](crate::Stats::publish_refused) and logged at `debug`.
    ///   A message refused everywhere it would go is answered, with
    ///   [`Protocol::Sequenced`], `#refused publish @<topic> denied` for each topic (or
    ///   `#refused publish * denied`); with [`Protocol::None`] there are no control
    ///   messages, and it is only counted. A refused message reaches no client.
    ///
    /// **When a change applies.** The closure is asked as each message (or request) is
    /// read, so it may read state the host changes at run time (an `Arc<RwLock<..>>`, an
    /// atomic): a change the host made before the hub read a client's message applies to
    /// that message. What "before" means: the host's write returned before the client
    /// sent it (say, the host mutes a client, then tells it so; whatever it sends after
    /// hearing it is refused). A message already read when the change was made may still be
    /// relayed. A message is relayed to the topics the client is in when it is read, as
    /// decided: after a [`Hub::leave`] returns, a message the hub reads next does not reach
    /// that topic, even if the leave has not reached the client yet (it is still sent the
    /// topic's messages until then); after a [`Hub::join`] returns, one it reads next does.
    ///
    /// A panic in the closure refuses what it was asked (counted in
    /// [`Stats::callback_panics`](crate::Stats::callback_panics) and logged at `error`);
    /// the hub goes on.
    ///
    /// The closure costs a call per message and topic of its sender; without one, relaying
    /// costs what it always did.
    ///
    /// ```
    /// use hubcast::{Hub, Protocol, Relay, TopicAction};
    ///
    /// // Any client may join any room but "admin", and write anywhere but "news", which is
    /// // read-only: only the host publishes there (`Hub::publish`).
    /// let hub = Hub::builder()
    ///     .protocol(Protocol::Sequenced)
    ///     .relay(Relay::Topics)
    ///     .client_topics(|request| match request.action() {
    ///         TopicAction::Publish => request.topic() != "news",
    ///         _ => request.topic() != "admin",
    ///     })
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    ///
    /// Muting a client at run time, in a plain chat: the closure reads the host's set of
    /// muted clients.
    ///
    /// ```
    /// use std::collections::HashSet;
    /// use std::sync::{Arc, RwLock};
    /// use hubcast::{ClientId, Hub, Relay, TopicAction};
    ///
    /// let muted: Arc<RwLock<HashSet<ClientId>>> = Arc::default();
    /// let check = Arc::clone(&muted);
    /// let hub = Hub::builder()
    ///     .relay(Relay::Others)
    ///     .client_topics(move |request| {
    ///         // `topic()` is "*" here: the hub-wide stream. A poisoned lock mutes nobody.
    ///         request.action() != TopicAction::Publish
    ///             || !check.read().is_ok_and(|m| m.contains(&request.client()))
    ///     })
    ///     .bind("127.0.0.1:0")?;
    /// # let client: Option<ClientId> = None;
    /// // Later, on a moderator's word: this client's next message reaches nobody (the host
    /// // still gets it as `Event::Message`).
    /// if let (Some(client), Ok(mut muted)) = (client, muted.write()) {
    ///     muted.insert(client);
    /// }
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn client_topics(
        mut self,
        allow: impl Fn(&TopicRequest<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.client_topics = Some(Callback(Arc::new(allow)));
        self
    }

    /// The options of each topic (presence, history on join), from its name: asked on the
    /// hub's thread once each time a topic is created (its first join; a topic freed and
    /// made anew is asked again), so keep it quick. A panic in it gives the topic the
    /// default options ([`TopicOptions::new`](crate::TopicOptions::new)), counted in
    /// [`Stats::callback_panics`](crate::Stats::callback_panics) and logged at `error`.
    /// Without it, every topic has the default options.
    ///
    /// Presence and history are told to clients through the protocol: without
    /// [`Protocol::Sequenced`], `bind` fails with [`Error::Config`](crate::Error::Config).
    /// See [`TopicOptions`](crate::TopicOptions) for an example.
    pub fn topic_options(
        mut self,
        options: impl Fn(&str) -> crate::TopicOptions + Send + Sync + 'static,
    ) -> Self {
        self.topic_options = Some(Callback(Arc::new(options)));
        self
    }

    /// Whether subscribers get an event for every membership change of every topic:
    /// [`Event::MemberJoined`](crate::Event::MemberJoined) and
    /// [`MemberLeft`](crate::Event::MemberLeft) whoever decided it,
    /// [`TopicOccupied`](crate::Event::TopicOccupied) and
    /// [`TopicEmptied`](crate::Event::TopicEmptied), in the order the hub applies them.
    /// Default: off (hosts see nothing new). The members of a topic right now:
    /// [`Hub::members`].
    pub fn presence_events(mut self, on: bool) -> Self {
        self.presence_events = on;
        self
    }
}
