//! Several hubs sharing broadcasts through NATS (feature `nats`).
//!
//! Every hub (a *node*) keeps serving its own clients as before. Its dispatcher forwards
//! each message it fans out that other nodes' clients should get — broadcasts, relayed
//! client messages, topic publishes — to the backplane thread, through a channel bounded in
//! bytes; the backplane thread publishes them to NATS. Messages from other nodes come back
//! through the backplane thread and enter the dispatcher as one more source of frames,
//! never forwarded again. A node delivers its own messages to its local clients at once
//! and publishes them with `no_echo`, so local delivery survives a broker outage.
//!
//! Subjects, under the cluster's prefix `P`:
//!
//! ```text
//! P.all            every broadcast and relayed message
//! P.t.<topic>      a topic's messages (the name escaped; see `subject_for`)
//! P.probe.<node>   the end-to-end probe of one node (a second connection receives it)
//! ```
//!
//! A message's payload is published as it is. Its kind, if it has one ([`MessageKind`]),
//! rides in one NATS header, `K: t` (text) or `K: b` (binary): 18 bytes with the header
//! block, and none at all for a message without a kind (the common case: a TCP client's, or
//! a host's plain bytes), which is published without headers. A node that does not know the
//! header, or a value it does not know, takes the message as having no kind. A text kind
//! received is trusted only for a payload that is UTF-8 (see [`kind_received`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::MessageKind;

mod connect;
pub(crate) mod nats;
mod unreachable;

/// How a hub joins a cluster of hubs through NATS (feature `nats`), for
/// [`HubBuilder::cluster`](crate::HubBuilder::cluster).
///
/// ```no_run
/// use hubcast::{Cluster, Hub};
///
/// let hub = Hub::builder()
///     .cluster(Cluster::nats(["nats://127.0.0.1:4222"]).prefix("chat"))
///     .bind("127.0.0.1:9999")?;
/// # drop(hub);
/// # Ok::<(), hubcast::Error>(())
/// ```
#[derive(Clone)]
#[must_use = "a cluster setting does nothing until given to HubBuilder::cluster"]
pub struct Cluster {
    pub(crate) urls: Vec<String>,
    pub(crate) prefix: String,
    pub(crate) auth: Auth,
    pub(crate) root_certificates: Vec<PathBuf>,
    pub(crate) client_certificate: Option<(PathBuf, PathBuf)>,
    pub(crate) require_tls: bool,
    pub(crate) probe_interval: Duration,
    pub(crate) buffer_bytes: usize,
}

/// How the hub authenticates to NATS.
#[derive(Clone)]
pub(crate) enum Auth {
    None,
    UserPassword(String, String),
    Token(String),
    CredentialsFile(PathBuf),
    Nkey(String),
}

impl Cluster {
    /// Reads the files the connection will read and parses the credentials it will
    /// parse, as it will: what it could not use would keep the hub out of its cluster.
    pub(crate) fn check_credentials(&self) -> Result<(), String> {
        let read = |what: &str, path: &PathBuf| {
            std::fs::read_to_string(path)
                .map_err(|err| format!("cluster {what} {}: {err}", path.display()))
        };
        match &self.auth {
            Auth::CredentialsFile(path) => {
                let creds = read("credentials file", path)?;
                async_nats::ConnectOptions::with_credentials(&creds)
                    .map_err(|err| format!("cluster credentials file {}: {err}", path.display()))?;
            }
            Auth::Nkey(seed) => {
                // Never print the seed.
                nkeys::KeyPair::from_seed(seed)
                    .map_err(|err| format!("cluster nkey seed: {err}"))?;
            }
            Auth::None | Auth::UserPassword(..) | Auth::Token(_) => {}
        }
        for path in &self.root_certificates {
            read("root certificates", path)?;
        }
        if let Some((cert, key)) = &self.client_certificate {
            read("client certificate", cert)?;
            read("client key", key)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print credentials.
        f.debug_struct("Cluster")
            .field("urls", &self.urls)
            .field("prefix", &self.prefix)
            .field("probe_interval", &self.probe_interval)
            .field("buffer_bytes", &self.buffer_bytes)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster reached through these NATS servers (`nats://host:port`, `tls://…`), one
    /// URL each: the client connects to one and follows the others (and those the servers
    /// announce) if it goes away. [`HubBuilder::bind`](crate::HubBuilder::bind) fails
    /// with [`Error::Config`](crate::Error::Config) for a URL the client cannot use.
    pub fn nats<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Cluster {
        Cluster {
            urls: urls.into_iter().map(Into::into).collect(),
            prefix: "hubcast".to_owned(),
            auth: Auth::None,
            root_certificates: Vec::new(),
            client_certificate: None,
            require_tls: false,
            probe_interval: Duration::from_secs(2),
            buffer_bytes: 8 << 20,
        }
    }

    /// The subject prefix that names the cluster: hubs with the same prefix on the same
    /// NATS share broadcasts, others do not. Default: `"hubcast"`. NATS subject tokens:
    /// letters, digits, `-`, `_`, and dots between tokens.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Cluster {
        self.prefix = prefix.into();
        self
    }

    /// Authenticates with a user and password.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Cluster {
        self.auth = Auth::UserPassword(user.into(), password.into());
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Cluster {
        self.auth = Auth::Token(token.into());
        self
    }

    /// Authenticates with a NATS credentials file (a JWT and an nkey seed), read at every
    /// connect. [`HubBuilder::bind`](crate::HubBuilder::bind) fails with
    /// [`Error::Config`](crate::Error::Config) if it cannot be read or parsed.
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Cluster {
        self.auth = Auth::CredentialsFile(path.into());
        self
    }

    /// Authenticates with an nkey seed; one that is not a valid seed fails
    /// [`HubBuilder::bind`](crate::HubBuilder::bind) with
    /// [`Error::Config`](crate::Error::Config).
    pub fn nkey(mut self, seed: impl Into<String>) -> Cluster {
        self.auth = Auth::Nkey(seed.into());
        self
    }

    /// Trusts these PEM root certificates for the servers' TLS. As with
    /// [`credentials_file`](Self::credentials_file), a file that cannot be read fails
    /// `bind`.
    pub fn root_certificates(mut self, path: impl Into<PathBuf>) -> Cluster {
        self.root_certificates.push(path.into());
        self
    }

    /// Presents this client certificate and key (PEM) to the servers. Files that cannot
    /// be read fail `bind`.
    pub fn client_certificate(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Cluster {
        self.client_certificate = Some((cert.into(), key.into()));
        self
    }

    /// Refuses servers that do not speak TLS. Default: `false` (TLS when the URL or the
    /// server asks for it).
    pub fn require_tls(mut self, require: bool) -> Cluster {
        self.require_tls = require;
        self
    }

    /// How soon the node finds a partition that TCP does not report, such as a frozen
    /// broker: it sends a probe through the broker and back four times an interval, and
    /// reports the cluster as partitioned within one interval of the fault (a probe not
    /// back after half of one), and healed within a quarter of one once probes
    /// come back. Default: 2 s. Below 10 ms (a round trip through a broker under load
    /// takes longer) `bind` fails with [`Error::Config`](crate::Error::Config); one over a
    /// year is taken as a year, which in practice means partitions are never reported.
    pub fn probe_interval(mut self, interval: Duration) -> Cluster {
        self.probe_interval = interval;
        self
    }

    /// The most bytes of messages waiting to be published to NATS; past it (the broker
    /// gone, or slower than the node), messages are not propagated and are counted in
    /// [`ClusterStats::lost`](crate::ClusterStats::lost). Local clients get them either way.
    /// Default: 8 MiB.
    pub fn buffer_bytes(mut self, bytes: usize) -> Cluster {
        self.buffer_bytes = bytes;
        self
    }
}

/// The shortest [`Cluster::probe_interval`].
pub(crate) const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// The longest [`Cluster::probe_interval`]: longer ones are taken as this, so that no
/// deadline computed from it overflows.
pub(crate) const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// What the dispatcher hands the backplane thread.
#[derive(Debug)]
pub(crate) enum Out {
    /// A message for every client of every node, with its kind if it has one.
    All(Bytes, Option<MessageKind>),
    /// A message for a topic's members on every node, with its kind if it has one.
    Topic(Arc<str>, Bytes, Option<MessageKind>),
    /// The first local member joined a topic: receive its messages.
    Subscribe(Arc<str>),
    /// The last local member left: stop.
    Unsubscribe(Arc<str>),
}

/// The dispatcher's end of the backplane: forwards messages, bounded in bytes.
#[derive(Debug)]
pub(crate) struct Bridge {
    tx: tokio::sync::mpsc::UnboundedSender<Out>,
    pending: Arc<AtomicUsize>,
    max: usize,
    /// Never sent: dropped with the bridge, it tells the backplane thread at once that
    /// the dispatcher is gone, even while that thread waits on the broker.
    _closed: tokio::sync::oneshot::Sender<()>,
}

/// The backplane thread's end.
#[derive(Debug)]
pub(crate) struct BridgeReceiver {
    pub(crate) rx: tokio::sync::mpsc::UnboundedReceiver<Out>,
    pub(crate) pending: Arc<AtomicUsize>,
    /// Ready once the bridge is dropped.
    pub(crate) closed: tokio::sync::oneshot::Receiver<()>,
}

/// A bridge and its receiver, for `buffer_bytes` of pending messages.
pub(crate) fn bridge(max: usize) -> (Bridge, BridgeReceiver) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    let pending = Arc::new(AtomicUsize::new(0));
    let receiver = BridgeReceiver {
        rx,
        pending: Arc::clone(&pending),
        closed,
    };
    let bridge = Bridge {
        tx,
        pending,
        max,
        _closed: closed_tx,
    };
    (bridge, receiver)
}

impl Bridge {
    /// Hands a message to the backplane thread. Returns `false` if it could not be: the
    /// buffer is full (counted as lost by the caller) or the thread is gone.
    pub(crate) fn forward(&self, out: Out) -> bool {
        let bytes = match &out {
            Out::All(payload, _) | Out::Topic(_, payload, _) => payload.len(),
            Out::Subscribe(_) | Out::Unsubscribe(_) => 0,
        };
        if bytes > 0 {
            let now = self.pending.fetch_add(bytes, SeqCst) + bytes;
            if now > self.max {
                self.pending.fetch_sub(bytes, SeqCst);
                return false;
            }
        }
        let sent = self.tx.send(out).is_ok();
        if !sent {
            self.pending.fetch_sub(bytes, SeqCst);
        }
        sent
    }
}

/// The NATS header that carries a message's kind (see the module's documentation).
pub(crate) const KIND_HEADER: &str = "K";

/// The value of [`KIND_HEADER`] for `kind`.
pub(crate) fn kind_value(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Text => "t",
        MessageKind::Binary => "b",
    }
}

/// The kind of a message received with `value` in its [`KIND_HEADER`] (if it had one):
/// `None` for a value this node does not know, and for a text kind whose payload is not
/// UTF-8 (another publisher on the subject could send one; a text frame must never carry
/// it, so the WebSocket wire then decides as for any message without a kind).
pub(crate) fn kind_received(value: Option<&str>, payload: &[u8]) -> Option<MessageKind> {
    match value? {
        "t" if std::str::from_utf8(payload).is_ok() => Some(MessageKind::Text),
        "b" => Some(MessageKind::Binary),
        _ => None,
    }
}

/// The longest subject a topic may have: the NATS server's control line is 4,096 bytes
/// by default, and holds the command and sizes besides the subject.
pub(crate) const MAX_SUBJECT: usize = 4000;

/// The longest subject [`subject_for`] makes for a topic of at most `max_topic_len` bytes
/// (each escaped character takes three).
pub(crate) fn subject_len_at_most(prefix: &str, max_topic_len: usize) -> usize {
    (prefix.len() + ".t.".len()).saturating_add(max_topic_len.saturating_mul(3))
}

/// The NATS subject of a topic: its name, with the characters NATS gives a meaning to
/// (`.`, `*`, `>`) and `%` written as `%XX`, so every topic name maps to one subject token.
pub(crate) fn subject_for(prefix: &str, topic: &str) -> String {
    let mut subject = format!("{prefix}.t.");
    for c in topic.chars() {
        match c {
            '.' | '*' | '>' | '%' => subject.push_str(&format!("%{:02X}", c as u32)),
            c => subject.push(c),
        }
    }
    subject
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_name_maps_to_one_subject_token() {
        let mut seen = std::collections::HashSet::new();
        for name in ["lobby", "a.b", "a%2Eb", "x*y>z", "100%", "über"] {
            let subject = subject_for("chat", name);
            assert!(
                !subject["chat.t.".len()..].contains(['.', '*', '>']),
                "{subject}"
            );
            assert!(seen.insert(subject), "two names share a subject");
        }
        assert_eq!(subject_for("chat", "a.b"), "chat.t.a%2Eb");
    }

    #[test]
    fn the_bridge_is_bounded_in_bytes() {
        let (bridge, mut receiver) = bridge(10);
        let all = || Out::All(Bytes::from_static(b"123456"), None);
        assert!(bridge.forward(all()));
        assert!(!bridge.forward(all()));
        assert!(bridge.forward(Out::Subscribe(Arc::from("t"))));
        assert!(matches!(receiver.rx.try_recv(), Ok(Out::All(..))));
        receiver.pending.fetch_sub(6, SeqCst);
        assert!(bridge.forward(all()));
    }

    #[test]
    fn kinds_cross_the_backplane_in_one_short_header() {
        for kind in [MessageKind::Text, MessageKind::Binary] {
            assert_eq!(kind_received(Some(kind_value(kind)), b"ok"), Some(kind));
            assert_eq!(kind_value(kind).len(), 1);
        }
        assert_eq!(kind_received(None, b"ok"), None, "no header: no kind");
        assert_eq!(kind_received(Some("x"), b"ok"), None, "unknown: no kind");
        assert_eq!(
            kind_received(Some("t"), b"\xff"),
            None,
            "text that is not UTF-8 is not trusted"
        );
        assert_eq!(
            kind_received(Some("b"), b""),
            Some(MessageKind::Binary),
            "an empty binary message stays binary"
        );
    }
}
