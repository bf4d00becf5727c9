//! Adopting connections the host accepted itself (an axum or hyper app on its own port):
//! [`Adopted`], what the host hands over, and, with feature `websocket`, the pieces it needs
//! to answer an upgrade itself as the hub's listener would ([`WebSocketAnswer`],
//! [`WebSocketRefusal`]), so that no host re-implements RFC 6455.
//!
//! The host owns the socket until [`Hub::adopt`] returns; from then on the dispatcher does
//! (`dispatcher::adoption`), and the adopted client is an ordinary one. What is checked and
//! answered is `wire::websocket::handshake`'s, shared with the listener.

use std::fmt;

use crate::command::Command;
use crate::{Hub, Result};

/// A connection the host accepted itself, to hand to [`Hub::adopt`]. Built with
/// [`framed`](Self::framed) or `websocket` (feature `websocket`), then
/// [`read`](Self::read) and `request` (feature `websocket`).
///
/// An adopted connection is an ordinary client: its queue, the slow-client and rate-limit
/// policies, topics, resume, the authenticator, events and stats all apply as to one the
/// hub's own listener accepted, and the admission limits (`max_clients`,
/// `max_clients_per_ip`, the accept filter) are checked with its
/// [`peer_addr`](std::net::TcpStream::peer_addr). It belongs to no listener: the
/// `hubcast_listener_clients` metric does not count it, `hubcast_adopted_clients` does.
///
/// What cannot be adopted: a connection whose TLS the host terminated (a rustls stream is
/// not a plain socket; use the hub's own TLS listener), HTTP/2 and HTTP/3 (they have no
/// upgrade to take over), and Unix sockets.
#[non_exhaustive]
pub struct Adopted {
    /// The socket, blocking or not: the dispatcher makes it nonblocking.
    pub(crate) stream: std::net::TcpStream,
    /// Bytes the host read past what it parsed: processed before the socket's.
    pub(crate) read: Vec<u8>,
    /// The upgrade request the host answered: `Some` for a WebSocket connection (an empty
    /// `GET /` until [`request`](Self::request) gives one), `None` for a framed one.
    #[cfg(feature = "websocket")]
    pub(crate) request: Option<Result<Box<tungstenite::handshake::server::Request>>>,
}

impl Adopted {
    /// A connection that speaks the hub's [`Framing`](crate::Framing), as a
    /// [`Transport::Tcp`](crate::Transport::Tcp) client does: if the hub has an
    /// authenticator, its first frame is its authentication frame.
    pub fn framed(stream: std::net::TcpStream) -> Adopted {
        Adopted {
            stream,
            read: Vec::new(),
            #[cfg(feature = "websocket")]
            request: None,
        }
    }

    /// A WebSocket connection whose upgrade the host already answered `101` (feature
    /// `websocket`): what follows on it is frames. Check the upgrade with
    /// [`Hub::websocket_answer`] and answer it with its headers first; give its request
    /// with [`request`](Self::request) for the authenticator.
    ///
    /// The `101` is sent before the hub sees the connection, so a request the
    /// authenticator or [`admit`](crate::HubBuilder::admit) hook rejects gets a close
    /// frame with code 1008 (policy violation), not a `403`: a host that wants a `403`
    /// checks the request itself before answering.
    #[cfg(feature = "websocket")]
    pub fn websocket(stream: std::net::TcpStream) -> Adopted {
        Adopted {
            stream,
            read: Vec::new(),
            request: Some(Ok(Box::default())),
        }
    }

    /// Bytes the host already read from the socket past what it parsed (hyper's
    /// `Parts::read_buf`, for example): the hub processes them before anything it reads
    /// from the socket. Appended to those given before.
    #[must_use]
    pub fn read(mut self, bytes: impl AsRef<[u8]>) -> Adopted {
        self.read.extend_from_slice(bytes.as_ref());
        self
    }

    /// The upgrade request of a WebSocket connection (feature `websocket`): its target
    /// (path and query, `"/ws?token=abc"`) and headers, as the authenticator and `admit`
    /// hook see them ([`AuthRequest::path`](crate::AuthRequest::path),
    /// [`query`](crate::AuthRequest::query), [`header`](crate::AuthRequest::header);
    /// [`is_websocket`](crate::AuthRequest::is_websocket) is `true`). Ignored for a
    /// framed connection, which shows its first frame instead. A target or header that is
    /// not valid HTTP makes [`Hub::adopt`] fail with [`Error::Config`](crate::Error::Config).
    ///
    /// The hub reads from it, as [`Hub::websocket_answer`] did, whether the `101` accepted
    /// compression (`permessage-deflate`, see
    /// [`WebSocketAnswer::extensions`](crate::WebSocketAnswer::extensions)): a host that
    /// answered with that answer's headers gives the same request here, or the client's
    /// compressed messages would be refused.
    #[cfg(feature = "websocket")]
    #[must_use]
    pub fn request<K, V>(mut self, target: &str, headers: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        if self.request.is_some() {
            self.request = Some(build_request("GET", target, headers).map(Box::new));
        }
        self
    }
}

impl fmt::Debug for Adopted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers may carry cookies and tokens: not shown.
        let mut f = f.debug_struct("Adopted");
        f.field("peer", &self.stream.peer_addr().ok())
            .field("read", &self.read.len());
        #[cfg(feature = "websocket")]
        f.field("websocket", &self.request.is_some());
        f.finish_non_exhaustive()
    }
}

/// A request of `method` for `target` with `headers`, as tungstenite's handshake takes it.
#[cfg(feature = "websocket")]
fn build_request<K, V>(
    method: &str,
    target: &str,
    headers: impl IntoIterator<Item = (K, V)>,
) -> Result<tungstenite::handshake::server::Request>
where
    K: AsRef<str>,
    V: AsRef<[u8]>,
{
    let mut builder = tungstenite::http::Request::builder()
        .method(method)
        .uri(target)
        .version(tungstenite::http::Version::HTTP_11);
    for (name, value) in headers {
        builder = builder.header(name.as_ref(), value.as_ref());
    }
    builder
        .body(())
        .map_err(|err| crate::Error::Config(format!("an adopted connection's request: {err}")))
}

impl Hub {
    /// Hands the hub a connection the host accepted itself. Never blocks: the dispatcher
    /// takes the socket over (makes it nonblocking, registers it, checks the admission
    /// limits and, for a WebSocket connection, asks the authenticator about its request)
    /// after this returns. The connection's fate is then told as any client's is: an
    /// [`Event::Connected`](crate::Event::Connected), or, if it is turned away, a count
    /// in [`Stats`](crate::Stats) (`refused` by a limit or a socket whose `peer_addr`
    /// fails, `rejected` by the authenticator).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](crate::Error::Closed) once the hub is shutting down,
    /// [`Error::Failed`](crate::Error::Failed) if it died (the socket is closed either
    /// way); [`Error::Config`](crate::Error::Config) if the request given with
    /// `Adopted::request` is not valid HTTP.
    ///
    /// ```
    /// use std::io::{BufRead, BufReader};
    /// use std::net::{TcpListener, TcpStream};
    /// use hubcast::{Adopted, Event, Hub};
    ///
    /// let hub = Hub::bind("127.0.0.1:0")?;
    /// let events = hub.subscribe();
    /// // The host's own listener, and a client of it.
    /// let app = TcpListener::bind("127.0.0.1:0")?;
    /// let client = TcpStream::connect(app.local_addr()?)?;
    /// let (accepted, _) = app.accept()?;
    /// hub.adopt(Adopted::framed(accepted))?;
    /// assert!(matches!(events.recv(), Ok(Event::Connected { .. })));
    /// hub.broadcast("hello")?;
    ///
    /// let mut line = String::new();
    /// BufReader::new(client).read_line(&mut line)?;
    /// assert_eq!(line, "hello\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn adopt(&self, conn: Adopted) -> Result<()> {
        self.shared.check()?;
        #[cfg(feature = "websocket")]
        let Adopted {
            stream,
            read,
            request,
        } = conn;
        #[cfg(not(feature = "websocket"))]
        let Adopted { stream, read } = conn;
        #[cfg(feature = "websocket")]
        let request = match request {
            Some(Ok(request)) => Some(request),
            Some(Err(err)) => return Err(err),
            None => None,
        };
        self.send(Command::Adopt(Box::new(crate::command::Adoption {
            stream,
            read,
            #[cfg(feature = "websocket")]
            request,
        })))
    }
}

#[cfg(feature = "websocket")]
pub use answer::{WebSocketAnswer, WebSocketRefusal};

/// Answering an upgrade for the host (feature `websocket`).
#[cfg(feature = "websocket")]
mod answer {
    use std::fmt;

    use tungstenite::http::header::SEC_WEBSOCKET_ACCEPT;

    use super::build_request;
    use crate::wire::websocket::handshake;
    use crate::Hub;

    /// How to answer an upgrade the hub accepts: the header values of the
    /// `101 Switching Protocols`, from [`Hub::websocket_answer`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct WebSocketAnswer {
        accept: String,
        protocol: Option<String>,
        extensions: Option<&'static str>,
    }

    impl WebSocketAnswer {
        /// The `Sec-WebSocket-Accept` value (the key's accept hash, RFC 6455 section 4.2.2).
        pub fn accept(&self) -> &str {
            &self.accept
        }

        /// The subprotocol chosen (the `Sec-WebSocket-Protocol` value), if any: the first
        /// of [`websocket_protocols`](crate::HubBuilder::websocket_protocols) the client
        /// offered.
        pub fn protocol(&self) -> Option<&str> {
            self.protocol.as_deref()
        }

        /// The `Sec-WebSocket-Extensions` value, if an extension was accepted: only
        /// `permessage-deflate`, where
        /// [`websocket_compression`](crate::HubBuilder::websocket_compression) is on and
        /// the client offered it (feature `deflate`). The adopted connection then gets
        /// compressed messages, as one of the hub's own listener would.
        pub fn extensions(&self) -> Option<&str> {
            self.extensions
        }

        /// Every header of the `101`: `Upgrade: websocket`, `Connection: Upgrade`,
        /// `Sec-WebSocket-Accept` and, if one was chosen, `Sec-WebSocket-Protocol` and
        /// `Sec-WebSocket-Extensions` (compression, see [`extensions`](Self::extensions);
        /// any other extension is declined by leaving it out).
        pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
            [
                ("Upgrade", Some("websocket")),
                ("Connection", Some("Upgrade")),
                ("Sec-WebSocket-Accept", Some(self.accept.as_str())),
                ("Sec-WebSocket-Protocol", self.protocol.as_deref()),
                ("Sec-WebSocket-Extensions", self.extensions),
            ]
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
        }
    }

    /// Why the hub would refuse an upgrade, and the status its listener answers it with,
    /// from [`Hub::websocket_answer`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct WebSocketRefusal {
        status: u16,
        reason: &'static str,
    }

    impl WebSocketRefusal {
        /// The HTTP status: 400 (not a valid upgrade: the method, the `Upgrade` and
        /// `Connection` headers, the key, one `Host`), 403 (an `Origin` the
        /// [`websocket_origins`](crate::HubBuilder::websocket_origins) policy refuses) or
        /// 426 (another protocol version than 13).
        pub fn status(&self) -> u16 {
            self.status
        }

        /// Why, in a few words (what the hub's listener puts in its response body).
        pub fn reason(&self) -> &'static str {
            self.reason
        }

        /// The headers the refusal needs besides the status: for a 426, `Upgrade:
        /// websocket` and `Sec-WebSocket-Version: 13` (RFC 6455 section 4.2.2); none else.
        pub fn headers(&self) -> impl Iterator<Item = (&'static str, &'static str)> {
            let needed = self.status == 426;
            [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
                .into_iter()
                .filter(move |_| needed)
        }
    }

    impl fmt::Display for WebSocketRefusal {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "WebSocket upgrade refused, {}: {}",
                self.status, self.reason
            )
        }
    }

    impl std::error::Error for WebSocketRefusal {}

    impl Hub {
        /// Checks an upgrade request the host received itself, as the hub's WebSocket
        /// listener would (feature `websocket`), and says how to answer it. Never blocks.
        ///
        /// Checked: the `method` is `GET`; `Upgrade: websocket`, `Connection: upgrade`,
        /// `Sec-WebSocket-Version: 13` and a valid `Sec-WebSocket-Key`; one `Host`; the
        /// `Origin` against [`websocket_origins`](crate::HubBuilder::websocket_origins)
        /// (with the request's `Host`). The subprotocol is chosen from
        /// [`websocket_protocols`](crate::HubBuilder::websocket_protocols). The path is
        /// the host's to route: [`websocket_path`](crate::HubBuilder::websocket_path)
        /// applies to the hub's own listener only. `headers` are the request's
        /// (hyper's `HeaderMap::iter()` fits).
        ///
        /// Answer `101 Switching Protocols` with [`WebSocketAnswer::headers`], then hand
        /// the connection over with [`Hub::adopt`] and
        /// [`Adopted::websocket`](crate::Adopted::websocket).
        ///
        /// # Errors
        ///
        /// A [`WebSocketRefusal`] with the status to answer (400, 403 or 426) and why.
        pub fn websocket_answer<K, V>(
            &self,
            method: &str,
            headers: impl IntoIterator<Item = (K, V)>,
        ) -> Result<WebSocketAnswer, WebSocketRefusal>
        where
            K: AsRef<str>,
            V: AsRef<[u8]>,
        {
            let request = build_request(method, "/", headers).map_err(|_| WebSocketRefusal {
                status: 400,
                reason: "malformed HTTP request",
            })?;
            match handshake::answer(&request, &self.websocket) {
                Ok(handshake::Answer {
                    response,
                    protocol,
                    deflate,
                }) => {
                    let accept = response
                        .headers()
                        .get(SEC_WEBSOCKET_ACCEPT)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let extensions = deflate.map(handshake::deflate_answer);
                    Ok(WebSocketAnswer {
                        accept,
                        protocol: protocol.map(str::to_owned),
                        extensions,
                    })
                }
                Err(refused) => Err(WebSocketRefusal {
                    status: refused.status,
                    reason: refused.why,
                }),
            }
        }
    }
}
