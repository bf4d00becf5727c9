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

    /// Lets clients join and leave topics themselves ([`Protocol::Sequenced`]'s `#join`
    /// and `#leave`), each request checked by `allow`, which runs on the dispatcher thread
    /// under the same rules as the [authenticator](Self::authenticate). Default: clients
    /// may not choose topics; only the host puts them in ([`Hub::join`]).
    ///
    /// `allow` sees only requests that would change the client's topics: a `#join` of a
    /// topic the client is in, or a `#leave` of one it is not in, is answered at once. Each
    /// change a request makes is reported as
    /// [`Event::TopicJoined`](crate::Event::TopicJoined) or
    /// [`Event::TopicLeft`](crate::Event::TopicLeft); see [`Hub::join`] for the order of
    /// the host's and the clients' changes.
    ///
    /// ```
    /// use hubcast::{Hub, Protocol};
    ///
    /// // Any client may join any room but "admin".
    /// let hub = Hub::builder()
    ///     .protocol(Protocol::Sequenced)
    ///     .client_topics(|request| request.topic() != "admin")
    ///     .bind("127.0.0.1:0")?;
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
}
