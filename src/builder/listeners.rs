//! The builder's settings of listeners: TLS, the transport of each listener, and WebSocket.

use std::fmt;
use std::net::ToSocketAddrs;
#[cfg(feature = "tls")]
use std::sync::Arc;

use super::HubBuilder;
use crate::config::ListenSpec;
#[cfg(doc)]
use crate::Hub;
use crate::{Origins, Transport};

impl HubBuilder {
    /// Serves every client over TLS with this rustls configuration.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(crate::transport::tls::TlsSetting::Config(config));
        self
    }

    /// Serves every client over TLS with this certificate chain and private key, in PEM,
    /// and rustls's safe defaults (TLS 1.2 and 1.3, the `ring` provider). Bad PEM data makes
    /// [`bind`](Self::bind) fail with [`Error::Tls`](crate::Error::Tls).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_pem(
        mut self,
        cert_chain: impl Into<Vec<u8>>,
        private_key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls = Some(crate::transport::tls::TlsSetting::Pem {
            cert: cert_chain.into(),
            key: private_key.into(),
        });
        self
    }

    /// What the address given to [`bind`](Self::bind) speaks. Default: [`Transport::Tcp`],
    /// or [`Transport::Tls`] once `tls` or `tls_pem` is set (feature `tls`).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Listens on `addr` too, with `transport`, beside the address given to
    /// [`bind`](Self::bind): one hub serves TCP, TLS and WebSocket clients at once, and every
    /// broadcast reaches all of them, framed once per kind of wire. Call it once per extra
    /// listener. Use port 0 and [`Hub::local_addrs`] to learn the port.
    ///
    /// The address is resolved now; what cannot be resolved or bound makes `bind` fail with
    /// [`Error::Bind`](crate::Error::Bind) naming it. A TLS or WebSocket transport whose feature is off, or a TLS
    /// transport without a TLS configuration, makes it fail with [`Error::Config`](crate::Error::Config).
    ///
    /// ```
    /// use hubcast::{Hub, Transport};
    ///
    /// let hub = Hub::builder()
    ///     .listen("127.0.0.1:0", Transport::Tcp)
    ///     .bind("127.0.0.1:0")?;
    /// assert_eq!(hub.local_addrs().len(), 2);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn listen<A: ToSocketAddrs + fmt::Debug>(mut self, addr: A, transport: Transport) -> Self {
        let given = crate::hub::given_addr(&addr);
        let addrs = addr
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|err| (err.kind(), err.to_string()));
        self.listen.push(ListenSpec {
            given,
            addrs,
            transport,
        });
        self
    }

    /// Serves WebSocket upgrades on this path only (`"/chat"`; the query string does not
    /// count), answering others with 404, or on any path with `None`. Default: `None`.
    pub fn websocket_path(mut self, path: Option<&str>) -> Self {
        self.websocket.path = path.map(str::to_owned);
        self
    }

    /// Which browser origins may open WebSocket connections; others are answered with 403.
    /// Default: [`Origins::SameOrigin`], so a page of another site cannot connect in its
    /// visitor's name (a browser sends its cookies with the request). Pages served from
    /// another host or port, and pages opened from files, need [`Origins::List`].
    pub fn websocket_origins(mut self, origins: Origins) -> Self {
        self.websocket.origins = origins;
        self
    }

    /// The WebSocket subprotocols the hub speaks, in order of preference: the first the
    /// client also offers (`Sec-WebSocket-Protocol`) is chosen, and none if no offer
    /// matches (the connection is still accepted). Default: none.
    pub fn websocket_protocols<S: AsRef<str>>(
        mut self,
        protocols: impl IntoIterator<Item = S>,
    ) -> Self {
        self.websocket.protocols = protocols
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        self
    }

    /// The largest WebSocket upgrade request head (request line and headers), in bytes;
    /// a longer one is answered with 431. Default: 8 KiB.
    pub fn websocket_max_head(mut self, bytes: usize) -> Self {
        self.websocket.max_head = bytes;
        self
    }

    /// Whether messages without a [`MessageKind`](crate::MessageKind) go to WebSocket
    /// clients in binary frames always. Default: `false`: such a message that is valid
    /// UTF-8 goes in a text frame (what browsers read as a string) and any other in a
    /// binary frame, so no text frame ever carries invalid UTF-8.
    ///
    /// Messages without a kind are the host's plain bytes (`hub.broadcast("…")`), TCP and
    /// TLS clients' messages, and the protocol's control messages. A message with a kind
    /// goes in a frame of its kind whatever this says (the explicit kind wins): a
    /// [`Message`](crate::Message) from the host, and a WebSocket client's message, relayed
    /// or replayed with the opcode it came with.
    ///
    /// ```
    /// use hubcast::{Hub, Message};
    ///
    /// let hub = Hub::builder().websocket_binary(true).bind("127.0.0.1:0")?;
    /// hub.broadcast("binary to WebSocket clients")?;
    /// hub.broadcast(Message::text("text all the same"))?;
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn websocket_binary(mut self, binary: bool) -> Self {
        self.websocket.binary = binary;
        self
    }

    /// Whether WebSocket clients that offer compression (`permessage-deflate`, RFC 7692:
    /// every browser does) get it. Default: `false`. Needs the `deflate` feature: without
    /// it, `true` makes [`bind`](Self::bind) fail with
    /// [`Error::Config`](crate::Error::Config) (the knobs exist whatever the features, as
    /// every WebSocket knob does).
    ///
    /// The hub answers with `server_no_context_takeover; client_no_context_takeover`: each
    /// message is compressed on its own, so it is the same bytes for every client and is
    /// compressed **once per broadcast** (and once per replay), never once per client, and
    /// a client costs no compression state at all. The price is a ratio somewhat worse
    /// than per-connection context (nothing is learnt from earlier messages): JSON of a
    /// few KiB still shrinks by 60 to 80 %. Compressed client messages are inflated
    /// through one inflater of the hub's, bounded by [`max_frame`](Self::max_frame) while
    /// inflating (a client whose message inflates past it is closed with 1009). An offer
    /// the hub cannot honour (a `server_max_window_bits` under 15) is declined, never
    /// failed: the client gets plain frames. [`Stats`](crate::Stats) counts what was
    /// compressed, and how long it took.
    ///
    /// ```
    /// # #[cfg(feature = "deflate")] {
    /// use hubcast::{Hub, Transport};
    ///
    /// let hub = Hub::builder()
    ///     .transport(Transport::WebSocket)
    ///     .websocket_compression(true)
    ///     .bind("127.0.0.1:0")?;
    /// hub.broadcast("compressed for clients that offered it, from 256 bytes")?;
    /// # }
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn websocket_compression(mut self, on: bool) -> Self {
        self.websocket.compression.enabled = on;
        self
    }

    /// Messages shorter than this go to compressed clients plain. Default: 256 bytes: a
    /// message compressed on its own (no context takeover) saves little below that (a few
    /// dozen bytes at most, less than the headers of the TCP segment that carries it),
    /// while each compression resets the compressor's state, a fixed cost of a few
    /// microseconds. A message is sent plain too where its compression is not smaller.
    ///
    /// 0 compresses every message, even an empty one, even where that makes it larger (by
    /// a few bytes): RFC 7692 lets a server send any message plain, but some clients
    /// mishandle plain messages on a compressed connection (kosoku 0.1.0, an Autobahn
    /// runner, for one).
    pub fn websocket_compression_min_size(mut self, bytes: usize) -> Self {
        self.websocket.compression.min_size = bytes;
        self
    }

    /// The deflate level of WebSocket compression, from 1 (fastest, the default: JSON
    /// still shrinks by most of what it can) to 9 (smallest, several times slower). Out of
    /// 1..=9: [`bind`](Self::bind) fails with [`Error::Config`](crate::Error::Config).
    pub fn websocket_compression_level(mut self, level: u8) -> Self {
        self.websocket.compression.level = level;
        self
    }

    /// Serves server-sent events on the WebSocket listeners (plain and TLS) at this path: a
    /// `GET` of `path` that is not a WebSocket upgrade becomes a receive-only client of the
    /// hub-wide stream, and one of `path/<topic>` (the name percent-decoded) a client of that
    /// topic, put in it as a `#join` would (the [`client_topics`](Self::client_topics)
    /// closure is asked; without one, only a topic the [`admit`](Self::admit) hook gives
    /// it). `None`, the default: no event streams.
    ///
    /// Each message goes out as one event (`data:` before each line of it); with
    /// [`Protocol::Sequenced`](crate::Protocol::Sequenced), messages of the connection's
    /// stream carry `id: <epoch>-<seq>`, so a browser's `EventSource` that reconnects by
    /// itself sends `Last-Event-ID` and gets what it missed, with no code in the page.
    /// `docs/PROTOCOL.md` ("Server-sent events") has the whole mapping. The connection is
    /// checked as an upgrade is (`Origin`, the authenticator, which sees the request's
    /// path, query string and cookies), and obeys the same queue bound and slow-client
    /// policy.
    ///
    /// ```
    /// use hubcast::{Hub, Protocol, Transport};
    ///
    /// let hub = Hub::builder()
    ///     .transport(Transport::WebSocket)
    ///     .protocol(Protocol::Sequenced)
    ///     .sse_path(Some("/events"))
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn sse_path(mut self, path: Option<&str>) -> Self {
        self.websocket.http.sse_path = path.map(str::to_owned);
        self
    }

    /// How often an event stream with nothing to send gets a comment line (`:`), so that
    /// proxies and load balancers, which cut a connection silent for 60 s or so, keep it,
    /// or `None` for never. Default: 15 s. From 10 ms; shorter is an
    /// [`Error::Config`](crate::Error::Config).
    pub fn sse_keepalive(mut self, interval: Option<std::time::Duration>) -> Self {
        self.websocket.http.sse_keepalive = interval;
        self
    }

    /// How long a browser waits before it reconnects a cut event stream (`retry:`, sent
    /// once as the stream opens). Default: 2 s. From 1 ms to 1 hour; outside that is an
    /// [`Error::Config`](crate::Error::Config).
    pub fn sse_retry(mut self, delay: std::time::Duration) -> Self {
        self.websocket.http.sse_retry = delay;
        self
    }

    /// Whether binary messages (a [`MessageKind::Binary`](crate::MessageKind::Binary), or
    /// bytes without a kind that are not UTF-8) go to event streams as base64, in an event
    /// of type `binary`. Default: `false`: event streams carry text only, so such a
    /// message is skipped there (its `id:` still goes, so a resume does not fetch it) and
    /// counted in [`Stats::sse_binary_skipped`](crate::Stats::sse_binary_skipped).
    pub fn sse_binary_base64(mut self, base64: bool) -> Self {
        self.websocket.http.sse_base64 = base64;
        self
    }

    /// Answers `GET` (and `HEAD`) of exactly `path` on the WebSocket listeners with `body`,
    /// of type `content_type`: the page of a chat, served by the hub itself so that the
    /// page and its WebSocket share an origin. Call it once per page; a path registered
    /// twice keeps the last body. Not a web framework: exact paths only (the query string
    /// does not count), no request bodies, one request per connection (`Connection:
    /// close`). Other paths that are not an upgrade, an event stream, the metrics or health
    /// get 404, and methods other than `GET` and `HEAD` 405.
    ///
    /// `bind` fails with [`Error::Config`](crate::Error::Config) if `path` does not start
    /// with `/`, holds a `?`, `#`, white space or control character, or is another knob's
    /// path, or if `content_type` is empty or not visible ASCII and spaces.
    ///
    /// ```
    /// use hubcast::{Hub, Transport};
    ///
    /// let hub = Hub::builder()
    ///     .transport(Transport::WebSocket)
    ///     .websocket_path(Some("/ws"))
    ///     .page("/", "text/html; charset=utf-8", "<!doctype html><p>hello</p>")
    ///     .bind("127.0.0.1:0")?;
    /// # drop(hub);
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn page(mut self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let pages = &mut self.websocket.http.pages;
        pages.retain(|page| page.path != path);
        pages.push(crate::options::Page {
            path: path.to_owned(),
            content_type: content_type.to_owned(),
            body: body.into().into(),
        });
        self
    }

    /// Serves [`Hub::metrics`], the Prometheus text, at this path of the WebSocket
    /// listeners (`"/metrics"`), or nowhere with `None`, the default. Anyone who can reach
    /// the listener can read it: counts, not contents, but keep it off public listeners
    /// unless that is fine.
    pub fn metrics_path(mut self, path: Option<&str>) -> Self {
        self.websocket.http.metrics_path = path.map(str::to_owned);
        self
    }

    /// Serves liveness ([`Hub::health`]'s `live`) at this path of the WebSocket listeners
    /// (`"/livez"`): `200 ok`, or `503` with why. `None`, the default: not served.
    pub fn liveness_path(mut self, path: Option<&str>) -> Self {
        self.websocket.http.live_path = path.map(str::to_owned);
        self
    }

    /// Serves readiness ([`Hub::health`]'s `ready`: live, not lagging, and the backplane
    /// connected when there is one) at this path of the WebSocket listeners (`"/readyz"`):
    /// `200 ok`, or `503` with why. `None`, the default: not served.
    pub fn readiness_path(mut self, path: Option<&str>) -> Self {
        self.websocket.http.ready_path = path.map(str::to_owned);
        self
    }
}
