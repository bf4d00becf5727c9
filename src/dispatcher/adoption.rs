//! Connections the host accepted itself (`Hub::adopt`): the dispatcher takes the socket
//! over, applies the admission rules as to an accepted one, and makes it a client of no
//! listener ([`ADOPTED`]). A framed one then goes on as a listener's would (its
//! authentication frame first, if the hub has an authenticator); a WebSocket one, answered
//! `101` by its host already, is shown to the authenticator with the request its host
//! gave, then goes live, or is sent a close frame (1008) and closed.
//!
//! ```text
//! Adopt ─► peer_addr, nonblocking ─► limits, filter ─► registered ─► (read bytes first)
//!          │ refused (counted)        │ refused          framed: as accepted
//!                                                        websocket: authenticator ─► Live
//!                                                                   │ rejected: close 1008
//! ```

use std::sync::atomic::Ordering::Relaxed;

use mio::net::TcpStream;

use super::Dispatcher;
use crate::command::Adoption;
use crate::Transport;

/// The `listener` of an adopted client: none (no listener gauge counts it).
pub(crate) const ADOPTED: usize = usize::MAX;

impl Dispatcher {
    /// Takes over a connection the host accepted itself.
    pub(super) fn adopt(&mut self, adoption: Adoption) {
        let Adoption {
            stream,
            read,
            #[cfg(feature = "websocket")]
            request,
        } = adoption;
        let addr = match stream.peer_addr().and_then(|addr| {
            stream.set_nonblocking(true)?;
            Ok(addr)
        }) {
            Ok(addr) => addr,
            Err(err) => {
                self.shared.counters.refused.fetch_add(1, Relaxed);
                let kind = "adopted without a peer address";
                self.admission.refuse_logged(
                    kind,
                    self.now,
                    format_args!("refused a socket: {err}"),
                );
                return;
            }
        };
        let stream = TcpStream::from_std(stream);
        #[cfg(feature = "websocket")]
        let transport = if request.is_some() {
            Transport::WebSocket
        } else {
            Transport::Tcp
        };
        #[cfg(not(feature = "websocket"))]
        let transport = Transport::Tcp;
        if let Some(why) = self.refusal(addr) {
            self.refuse(addr, why);
            return;
        }
        let Some(slot) = self.register(stream, addr, ADOPTED, transport) else {
            return;
        };
        if let Some(client) = self.slots.get_mut(slot) {
            // Before anything read from the socket: `read_client` takes its buffer first.
            client.rbuf = read;
        }
        #[cfg(feature = "websocket")]
        if let Some(request) = request {
            if !self.adopt_upgrade(slot, *request) {
                return;
            }
        }
        // Its socket may have been readable before it was registered, and its buffer
        // holds input: read it this round.
        self.mark_read_pending(slot);
    }

    /// A WebSocket connection its host answered `101`: the authenticator sees its request,
    /// then it goes live, or it is sent a close frame (1008) and closed, counted as
    /// rejected. Returns whether it went live.
    #[cfg(feature = "websocket")]
    fn adopt_upgrade(
        &mut self,
        slot: usize,
        request: tungstenite::handshake::server::Request,
    ) -> bool {
        let upgrade = crate::wire::Upgrade::adopted(request, &self.config.websocket);
        let Some(client) = self.slots.get(slot) else {
            return false;
        };
        let auth = crate::AuthRequest {
            addr: client.addr,
            transport: client.transport,
            frame: None,
            upgrade: Some(&upgrade),
        };
        let Some(admit) = self.ask_admission(&auth) else {
            self.count_unaccepted(true);
            self.close_adopted(slot, "rejected");
            return false;
        };
        // A user over its cap, or with a bad key (counted there).
        if self.check_user(auth.addr, &admit).is_some() {
            self.close_adopted(slot, "refused");
            return false;
        }
        if let Some(client) = self.slots.get_mut(slot) {
            // Compressed or plain, as the answer said; before it goes live, so that it is
            // counted on its wire once.
            client.wire = upgrade.wire();
            client.session = client.wire().session();
        }
        self.go_live(slot, admit);
        true
    }

    /// Sends an adopted WebSocket connection that never became a client a close frame with
    /// code 1008 (policy violation) and closes it once that is out (or its time is up).
    #[cfg(feature = "websocket")]
    fn close_adopted(&mut self, slot: usize, why: &str) {
        self.send_raw(slot, crate::wire::websocket::close_frame(1008, why));
        self.close_answered(slot);
    }
}
