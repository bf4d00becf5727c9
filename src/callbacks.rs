//! The host's closures the dispatcher runs (accept filter, authenticator, topic check), what
//! they are shown and what they answer.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::Transport;

/// What an [authenticator](crate::HubBuilder::authenticate) decides about a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// Let the connection in as a client.
    Accept,
    /// Let it in under this name, shown in [`ClientInfo::name`](crate::ClientInfo::name).
    AcceptAs(String),
    /// Close it. It never appears as [`Event::Connected`](crate::Event::Connected) and
    /// is counted in [`Stats::rejected`](crate::Stats::rejected).
    Reject,
    /// Let it in as [`Admit`] says: its name, and the topics it is in from its first
    /// message on. This is the whole decision: the [`admit`](crate::HubBuilder::admit)
    /// hook, if set, is not called for this connection.
    Admit(Admit),
}

/// How a connection is let in: its name, its user and the topics it is in as it becomes a
/// client.
///
/// Returned by an [authenticator](crate::HubBuilder::authenticate) as [`Auth::Admit`], or
/// by the [`admit`](crate::HubBuilder::admit) hook. The topics are joined in the same step
/// as the client is admitted, before its first message is read: a message it sends at once
/// reaches the topics' other members, and with
/// [`Protocol::Sequenced`](crate::Protocol::Sequenced) it is sent `#joined` for each
/// before any of the topic's messages.
///
/// A topic that cannot be joined (a name no topic can have, or over
/// [`max_topics`](crate::HubBuilder::max_topics) or
/// [`max_topics_per_client`](crate::HubBuilder::max_topics_per_client)) is skipped, logged
/// at `warn` and counted in [`Stats::admit_topics_refused`](crate::Stats::admit_topics_refused);
/// the client is admitted all the same.
///
/// ```
/// use hubcast::Admit;
///
/// let admit = Admit::new().name("bob").user("user-42").topic("lobby").topic("news");
/// # drop(admit);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admit {
    pub(crate) name: Option<String>,
    pub(crate) topics: Vec<String>,
    /// The user key, checked by the dispatcher as the client is admitted.
    pub(crate) user: Option<String>,
}

impl Admit {
    /// Lets the connection in with no name and in no topic (what [`Auth::Accept`] does).
    pub fn new() -> Admit {
        Admit::default()
    }

    /// The client's name, shown in [`ClientInfo::name`](crate::ClientInfo::name).
    pub fn name(mut self, name: impl Into<String>) -> Admit {
        self.name = Some(name.into());
        self
    }

    /// The longest [user key](Self::user), in bytes: 256.
    pub const MAX_USER_LEN: usize = 256;

    /// The user this connection belongs to: a key of the host's choosing (an account id, a
    /// session's user), shared by every connection of that user — each tab of a browser,
    /// say — so the host can address them together with
    /// [`Hub::send_to_user`](crate::Hub::send_to_user),
    /// [`Hub::disconnect_user`](crate::Hub::disconnect_user) and
    /// [`Hub::user_clients`](crate::Hub::user_clients), and cap them with
    /// [`max_clients_per_user`](crate::HubBuilder::max_clients_per_user). Shown in
    /// [`ClientInfo::user`](crate::ClientInfo::user) and
    /// [`Event::Connected`](crate::Event::Connected). Default: no user.
    ///
    /// Any UTF-8 of 1 to [`MAX_USER_LEN`](Self::MAX_USER_LEN) bytes; keys are compared
    /// byte for byte. A connection given an empty or longer key is turned away as if the
    /// [authenticator](crate::HubBuilder::authenticate) had rejected it: counted in
    /// [`Stats::rejected`](crate::Stats::rejected), logged (at `info`, through the storm
    /// log: one line a second in a flood), answered `403` on WebSocket — never a panic.
    ///
    /// Users are per hub: in a cluster, each hub knows only the users of its own clients.
    ///
    /// ```
    /// use hubcast::{Admit, Hub};
    ///
    /// // A WebSocket page connects to `/chat?user=42`; each tab is one connection.
    /// let hub = Hub::builder()
    ///     .admit(|request| match request.query().and_then(|q| q.strip_prefix("user=")) {
    ///         Some(user) => Admit::new().user(user),
    ///         None => Admit::new(),
    ///     })
    ///     .max_clients_per_user(Some(8))
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn user(mut self, key: impl Into<String>) -> Admit {
        self.user = Some(key.into());
        self
    }

    /// A topic the client is in from the start, as if the host had called
    /// [`Hub::join`](crate::Hub::join) before anything else of the client happened.
    /// Joined in the order given; a topic given twice is joined once.
    pub fn topic(mut self, topic: impl Into<String>) -> Admit {
        self.topics.push(topic.into());
        self
    }
}

/// What an [authenticator](crate::HubBuilder::authenticate), and the
/// [`admit`](crate::HubBuilder::admit) hook, are shown of a new connection.
///
/// Passed by reference and valid only during the call.
///
/// A TCP or TLS connection is shown with its first frame; a WebSocket connection with its
/// upgrade request (path, query string, headers such as `Cookie` and `Authorization`),
/// and an event stream with its `GET`, before it is answered: browsers cannot send custom headers on a WebSocket, so they carry
/// credentials in a cookie or the query string. Without an authenticator, the `admit` hook
/// sees a TCP or TLS connection with no frame (as it is accepted, or once its TLS
/// handshake is done).
#[derive(Debug)]
pub struct AuthRequest<'a> {
    pub(crate) addr: SocketAddr,
    /// What its listener speaks.
    pub(crate) transport: Transport,
    pub(crate) frame: Option<&'a [u8]>,
    #[cfg(feature = "websocket")]
    pub(crate) upgrade: Option<&'a crate::wire::Upgrade>,
}

impl AuthRequest<'_> {
    /// The peer's address, as the listener saw it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection's first frame (its payload, without framing), which is its
    /// authentication frame and is not delivered as a message. `Some` for TCP and TLS
    /// connections shown to an authenticator; `None` for WebSocket connections, which are
    /// shown their upgrade request instead, and for TCP and TLS connections shown to the
    /// [`admit`](crate::HubBuilder::admit) hook of a hub without an authenticator.
    pub fn frame(&self) -> Option<&[u8]> {
        self.frame
    }

    /// What the listener the connection came in on speaks.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether this is a WebSocket upgrade request.
    pub fn is_websocket(&self) -> bool {
        #[cfg(feature = "websocket")]
        return self.upgrade.is_some_and(|u| u.is_websocket());
        #[cfg(not(feature = "websocket"))]
        false
    }

    /// Whether this is the `GET` of a server-sent event stream (see
    /// [`HubBuilder::sse_path`](crate::HubBuilder::sse_path)); its path, query string and
    /// headers are shown as an upgrade's are. Browsers cannot set headers on an
    /// `EventSource`: credentials come in a cookie or the query string.
    pub fn is_event_stream(&self) -> bool {
        #[cfg(feature = "websocket")]
        return self.upgrade.is_some_and(|u| !u.is_websocket());
        #[cfg(not(feature = "websocket"))]
        false
    }

    /// The path of a WebSocket upgrade request, or of an event stream's `GET`, without its
    /// query string (`"/chat"`).
    pub fn path(&self) -> Option<&str> {
        #[cfg(feature = "websocket")]
        return self.upgrade.map(|u| u.path());
        #[cfg(not(feature = "websocket"))]
        None
    }

    /// The query string of a WebSocket upgrade request (or an event stream's `GET`),
    /// without the `?`.
    pub fn query(&self) -> Option<&str> {
        #[cfg(feature = "websocket")]
        return self.upgrade.and_then(|u| u.query());
        #[cfg(not(feature = "websocket"))]
        None
    }

    /// A header of a WebSocket upgrade request or an event stream's `GET` (its first value;
    /// names are compared without regard to case), such as `"cookie"` or
    /// `"authorization"`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        #[cfg(feature = "websocket")]
        return self.upgrade.and_then(|u| u.header(name));
        #[cfg(not(feature = "websocket"))]
        {
            let _ = name;
            None
        }
    }
}

/// What a client asks to do with a topic, in a [`TopicRequest`].
///
/// Later versions may add actions: match with a wildcard arm, and decide there what an
/// action you do not know gets (`false` keeps a hub closed to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TopicAction {
    /// `#join @topic`, or a `#resume @topic` of a topic the client is not in (asked before
    /// its [`Resume`](TopicAction::Resume)).
    Join,
    /// `#leave @topic`.
    Leave,
    /// A message the client sent, about to be relayed to the topic's other members
    /// ([`Relay::Topics`](crate::Relay::Topics)); asked once per message and topic the
    /// client is in. Under [`Relay::All`](crate::Relay::All) and
    /// [`Relay::Others`](crate::Relay::Others) it is asked once per message with the topic
    /// `"*"`, the hub-wide stream's name.
    Publish,
    /// `#resume @topic` by a member: it asks for the topic's history (the replay ring).
    Resume,
}

impl TopicAction {
    /// The action as a word: `join`, `leave`, `publish`, `resume`.
    pub(crate) fn word(self) -> &'static str {
        match self {
            TopicAction::Join => "join",
            TopicAction::Leave => "leave",
            TopicAction::Publish => "publish",
            TopicAction::Resume => "resume",
        }
    }
}

/// A client's request to join, leave, write to or resume a topic, shown to the host's
/// [`client_topics`](crate::HubBuilder::client_topics) closure.
///
/// Passed by reference and valid only during the call.
#[derive(Debug)]
pub struct TopicRequest<'a> {
    pub(crate) client: crate::ClientId,
    pub(crate) user: Option<&'a str>,
    pub(crate) topic: &'a str,
    pub(crate) action: TopicAction,
}

impl TopicRequest<'_> {
    /// The client asking.
    pub fn client(&self) -> crate::ClientId {
        self.client
    }

    /// The client's user key, if it was admitted with one
    /// ([`Admit::user`](crate::Admit::user)): the same for every tab of one user, so a
    /// check can go by the user's rights rather than by the connection.
    pub fn user(&self) -> Option<&str> {
        self.user
    }

    /// The topic's name (without `@`), or `"*"` for a [`Publish`](TopicAction::Publish)
    /// under [`Relay::All`](crate::Relay::All) or [`Relay::Others`](crate::Relay::Others).
    pub fn topic(&self) -> &str {
        self.topic
    }

    /// What the client asks to do.
    pub fn action(&self) -> TopicAction {
        self.action
    }

    /// Whether it asks to join ([`TopicAction::Join`]). `false` for every other action:
    /// a closure written before [`action`](Self::action) existed, which took `false` to
    /// mean a leave, should match on `action` instead.
    pub fn is_join(&self) -> bool {
        self.action == TopicAction::Join
    }
}

/// The host's decision functions, shared with the dispatcher thread.
pub(crate) type AcceptFilter = dyn Fn(SocketAddr) -> bool + Send + Sync;
pub(crate) type Authenticator = dyn Fn(&AuthRequest<'_>) -> Auth + Send + Sync;
pub(crate) type AdmitHook = dyn Fn(&AuthRequest<'_>) -> Admit + Send + Sync;
pub(crate) type TopicCheck = dyn Fn(&TopicRequest<'_>) -> bool + Send + Sync;

/// The host's `topic_options` closure: a new topic's name to its options.
pub(crate) type TopicOptionsOf = dyn Fn(&str) -> crate::TopicOptions + Send + Sync;

/// A host closure, printable in `Debug` output.
pub(crate) struct Callback<F: ?Sized>(pub(crate) Arc<F>);

impl<F: ?Sized> Clone for Callback<F> {
    fn clone(&self) -> Self {
        Callback(Arc::clone(&self.0))
    }
}

impl<F: ?Sized> fmt::Debug for Callback<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<closure>")
    }
}

#[cfg(test)]
mod tests {
    use super::{TopicAction, TopicRequest};
    use crate::ClientId;

    #[test]
    fn is_join_is_true_for_a_join_only() {
        let actions = [
            TopicAction::Join,
            TopicAction::Leave,
            TopicAction::Publish,
            TopicAction::Resume,
        ];
        for action in actions {
            let request = TopicRequest {
                client: ClientId(1),
                user: Some("ada"),
                topic: "news",
                action,
            };
            assert_eq!(request.is_join(), action == TopicAction::Join);
            assert_eq!(request.user(), Some("ada"));
            assert_eq!(request.action(), action);
        }
        let words: Vec<&str> = actions.iter().map(|a| a.word()).collect();
        assert_eq!(words, ["join", "leave", "publish", "resume"]);
    }
}
