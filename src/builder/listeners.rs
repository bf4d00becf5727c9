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
}
