//! Starting a hub: binding its listeners, then starting the dispatcher thread (and, in a
//! cluster, the backplane thread) with the [`Config`] that `HubBuilder::bind` made.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;

use super::Hub;
use crate::config::Config;
use crate::dispatcher;
use crate::{Error, ListenAddr, Result};

impl Hub {
    /// Binds `addr` and the other listeners `config` asks for, and starts serving.
    pub(crate) fn start<A: ToSocketAddrs + fmt::Debug>(config: Config, addr: A) -> Result<Hub> {
        let main = (
            given_addr(&addr),
            addr.to_socket_addrs().map(Iterator::collect),
            config.main_transport,
        );
        let extra = config.listen.iter().map(|spec| {
            let addrs = spec
                .addrs
                .clone()
                .map_err(|(kind, text)| io::Error::new(kind, text));
            (spec.given.clone(), addrs, spec.transport)
        });
        let mut listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for (given, addrs, transport) in std::iter::once(main).chain(extra) {
            let listener = bind_listener(given, addrs, config.backlog)?;
            let addr = listener.local_addr().map_err(Error::Start)?;
            local_addrs.push(ListenAddr { addr, transport });
            listeners.push((listener, transport));
        }
        // What the handle keeps of the configuration; the dispatcher takes the rest.
        let framing = config.framing;
        let batch_max = config.batch_max;
        let max_framed_len = config.max_framed_len;
        let event_capacity = config.event_capacity;
        let linger = config.linger;
        let topic_limits = config.topic_limits;
        let keeps_rings = config.sequenced;
        #[cfg(feature = "websocket")]
        let websocket = config.websocket.clone();
        #[cfg(feature = "nats")]
        let cluster = config
            .cluster
            .clone()
            .map(|c| (crate::cluster::bridge(c.buffer_bytes), c));
        #[cfg(feature = "nats")]
        let (bridge, cluster) = match cluster {
            Some(((bridge, receiver), c)) => (Some(bridge), Some((receiver, c))),
            None => (None, None),
        };
        #[cfg(feature = "nats")]
        let backplane = dispatcher::Backplane::new(bridge);
        #[cfg(not(feature = "nats"))]
        let backplane = dispatcher::Backplane::default();
        let (shared, tx, thread) =
            dispatcher::spawn(config, listeners, backplane).map_err(Error::Start)?;
        #[cfg(feature = "nats")]
        let cluster_thread = match cluster {
            Some((receiver, c)) => Some(
                crate::cluster::nats::spawn(
                    c,
                    receiver,
                    std::sync::Arc::clone(&shared),
                    tx.clone(),
                    framing,
                    batch_max,
                )
                .map_err(Error::Start)?,
            ),
            None => None,
        };
        for listening in &local_addrs {
            log::info!(
                "hubcast listening on {} ({:?})",
                listening.addr,
                listening.transport
            );
        }
        Ok(Hub {
            shared,
            tx,
            open_batch: Mutex::new(None),
            batch_max,
            thread: Mutex::new(Some(thread)),
            local_addrs,
            framing,
            max_framed_len,
            event_capacity,
            linger,
            topic_limits,
            #[cfg(feature = "nats")]
            clustered: cluster_thread.is_some(),
            #[cfg(feature = "nats")]
            cluster_thread: Mutex::new(cluster_thread),
            keeps_rings,
            #[cfg(feature = "websocket")]
            websocket,
        })
    }
}

/// An address as the caller wrote it, for errors (`"127.0.0.1:99999"`, not a `Debug` dump).
pub(crate) fn given_addr(addr: &impl fmt::Debug) -> String {
    format!("{addr:?}").trim_matches('"').to_owned()
}

/// Creates a listening socket with `socket2`, so the backlog is ours to choose. Errors name
/// the address as the caller gave it.
fn bind_listener(
    given: String,
    addrs: io::Result<Vec<SocketAddr>>,
    backlog: u32,
) -> Result<mio::net::TcpListener> {
    let addrs = addrs.map_err(|source| Error::Bind {
        addr: given.clone(),
        source,
    })?;
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no socket address to bind");
    for resolved in addrs {
        match listen_on(resolved, backlog) {
            Ok(listener) => return Ok(mio::net::TcpListener::from_std(listener)),
            Err(source) => last = source,
        }
    }
    Err(Error::Bind {
        addr: given,
        source: last,
    })
}

fn listen_on(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}
