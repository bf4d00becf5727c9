//! The WebSocket phase of a connection (feature `websocket`): the upgrade request and its
//! answer, the host's authenticator seeing the request, inbound frames, and the close
//! handshake both ways. The codec itself is in `wire::websocket`; this file is what
//! the dispatcher does with what it decodes.
//!
//! ```text
//! Handshake: request head ─► Origin, path, version checked ─► authenticator ─► 101 ─► Live
//!                  │ refused (400, 403, 404, 426, 431)         │ rejected: 403
//!                  ▼                                           ▼
//!               Refusing: the answer is written, then closed (never Connected)
//! Live: frames ─► messages delivered and relayed, pings answered, pongs as signs of life
//!       close from the client ─► close echoed, PeerClosed ─► Closing
//!       leave for any reason with a close code ─► close frame queued past the bound ─► Closing
//! ```

use bytes::{Bytes, BytesMut};

use super::inbound::Cut;
use super::{storm, Dispatcher};
use crate::client::Phase;
use crate::queue::{Chunk, Piece};
use crate::wire::websocket::{
    self, close_payload, encode_into, Head, Inbound, Opcode, Refused, Upgrade, WsError,
};
use crate::{AuthRequest, ClientId, DisconnectReason, Framing};

/// The close code a client leaving for `reason` is told, if it can be told anything.
/// 1000–1015 are RFC 6455's; 4000–4999 are private, for reasons without an RFC code.
pub(crate) fn close_code(reason: DisconnectReason) -> Option<u16> {
    match reason {
        DisconnectReason::PeerClosed => Some(1000),
        DisconnectReason::Shutdown | DisconnectReason::Idle => Some(1001),
        DisconnectReason::Protocol => Some(1002),
        DisconnectReason::FrameTooLarge => Some(1009),
        DisconnectReason::Slow => Some(4000),
        DisconnectReason::Kicked => Some(4001),
        DisconnectReason::Unresponsive => Some(4002),
        // The connection is gone: nothing can be sent.
        DisconnectReason::Reset | DisconnectReason::Io(_) => None,
    }
}

/// One WebSocket frame, whole, as shareable bytes.
pub(crate) fn frame(opcode: Opcode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(websocket::encoded_len(payload.len()));
    encode_into(&mut out, opcode, payload);
    out.freeze()
}

impl Dispatcher {
    /// Takes the upgrade request, or the WebSocket frame, at the front of `data`.
    pub(super) fn cut_websocket(&mut self, slot: usize, data: &[u8]) -> Cut {
        let Some(client) = self.slots.get_mut(slot) else {
            return Cut::Gone;
        };
        if let Phase::Handshake(_) = client.phase {
            return match websocket::parse_head(data, &self.config.websocket) {
                Head::Partial => Cut::Partial,
                Head::Upgrade { upgrade, len } => {
                    if self.upgrade(slot, &upgrade) {
                        Cut::Took(len)
                    } else {
                        Cut::Gone
                    }
                }
                Head::Refused(refused) => {
                    self.misbehaved.record(
                        storm::WEBSOCKET,
                        "WebSocket upgrade refused",
                        self.now,
                        format_args!(
                            "{}: WebSocket upgrade refused, {} {}",
                            client.addr, refused.status, refused.why
                        ),
                    );
                    self.refuse_upgrade(slot, refused, false);
                    Cut::Gone
                }
            };
        }
        let Some(ws) = client.ws.as_mut() else {
            return Cut::Gone;
        };
        let id = client.id;
        let mut unmasked = std::mem::take(&mut self.unmasked);
        // What was decoded borrows `unmasked`, never the decoder: acting on it may use this
        // client's state (handing a message on, relayed back to its sender, or answering a
        // ping may make it leave, and leaving sends its close frame through that state).
        let decoded = ws
            .decoder
            .decode(data, self.config.max_frame, &mut unmasked);
        let cut = self.on_decoded(slot, id, decoded);
        self.unmasked = unmasked;
        cut
    }

    /// Acts on what the client's decoder made of its input.
    fn on_decoded(
        &mut self,
        slot: usize,
        id: ClientId,
        decoded: Result<Option<(Inbound<'_>, usize)>, WsError>,
    ) -> Cut {
        let (inbound, used) = match decoded {
            Ok(None) => return Cut::Partial,
            Ok(Some(decoded)) => decoded,
            Err(err) => {
                let reason = match err {
                    WsError::TooBig => DisconnectReason::FrameTooLarge,
                    WsError::Protocol(_) | WsError::InvalidUtf8 => DisconnectReason::Protocol,
                };
                self.misbehaved.record(
                    storm::WEBSOCKET,
                    "broke the WebSocket protocol",
                    self.now,
                    format_args!("client {id} broke the WebSocket protocol: {err:?}"),
                );
                self.leave_with_code(slot, reason, err.close_code());
                return Cut::Gone;
            }
        };
        match inbound {
            // A line-framed hub's message is one line: with a newline in it, a TCP client
            // would read several, in which numbers and control lines of the protocol could
            // be forged. One that ends in '\r' would reach line clients as a line ending
            // "\r\n", which they read without its '\r': a TCP client cannot send it either.
            Inbound::Message { payload, .. }
                if self.config.framing == Framing::Lines
                    && (payload.contains(&b'\n') || payload.last() == Some(&b'\r')) =>
            {
                self.misbehaved.record(
                    storm::WEBSOCKET,
                    "WebSocket message with a newline",
                    self.now,
                    format_args!(
                        "client {id} sent a WebSocket message with a newline or a final \\r"
                    ),
                );
                self.leave_with_code(slot, DisconnectReason::Protocol, 1007);
                Cut::Gone
            }
            Inbound::Message { payload, .. } => {
                self.tally.frames_in += 1;
                self.deliver(slot, id, payload);
                Cut::Took(used)
            }
            Inbound::Ping(payload) => {
                let pong = Chunk::raw(frame(Opcode::Pong, payload));
                self.enqueue(slot, Piece::Chunk(&pong));
                Cut::Took(used)
            }
            // A sign of life; reading it was enough. A fragment was taken into the decoder,
            // to make a message with those that follow.
            Inbound::Pong | Inbound::Fragment => Cut::Took(used),
            Inbound::Close { code, .. } => {
                // Echo the client's code (RFC 6455 5.5.1), then leave once it is out.
                let payload = code.map(|c| close_payload(c, "")).unwrap_or_default();
                self.send_raw(slot, frame(Opcode::Close, &payload));
                if let Some(ws) = self.slots.get_mut(slot).and_then(|c| c.ws.as_mut()) {
                    ws.close_sent = true;
                }
                let linger = self.deadline_in(self.config.linger);
                self.leave(slot, DisconnectReason::PeerClosed, Some(linger));
                Cut::Gone
            }
        }
    }

    /// A valid upgrade request: the authenticator sees it, then the connection is answered
    /// `101` and goes live, or `403` and is refused. Returns whether it went live.
    fn upgrade(&mut self, slot: usize, upgrade: &Upgrade) -> bool {
        let Some(client) = self.slots.get(slot) else {
            return false;
        };
        let request = AuthRequest {
            addr: client.addr,
            frame: None,
            upgrade: Some(upgrade),
        };
        let Some(name) = self.ask_authenticator(&request) else {
            let refused = websocket::refusal(403, "rejected by the authenticator");
            self.refuse_upgrade(slot, refused, true);
            return false;
        };
        // The answer goes first: every frame queued from now on follows it.
        self.send_raw(slot, Bytes::from(upgrade.response()));
        if let Some(client) = self.slots.get_mut(slot) {
            client.ws = Some(Box::default());
        }
        self.go_live(slot, name);
        true
    }

    /// Answers a refused upgrade and closes the connection once the answer is out (or its
    /// time is up). It never became a client: counted as rejected (by the host) or as a
    /// failed handshake.
    fn refuse_upgrade(&mut self, slot: usize, refused: Refused, rejected: bool) {
        self.count_unaccepted(rejected);
        self.send_raw(slot, Bytes::from(refused.response));
        let deadline = self.deadline_in(self.config.linger);
        if let Some(client) = self.slots.get_mut(slot) {
            if let Phase::Handshake(_) = client.phase {
                self.admission.handshaking -= 1;
            }
            client.phase = Phase::Refusing(deadline);
            self.closing.push(slot);
        }
    }

    /// Sends a WebSocket client that is leaving its close frame with `code`, unless it has
    /// one already, and returns how long it lingers: one cut off at once (`linger` is
    /// `None`) loses its backlog but still gets the close frame — past the bound, after a
    /// partly written frame — within the `linger` setting. Other clients are unchanged.
    pub(super) fn close_websocket(
        &mut self,
        slot: usize,
        code: u16,
        reason: DisconnectReason,
        linger: Option<Option<std::time::Instant>>,
    ) -> Option<Option<std::time::Instant>> {
        let Some(client) = self.slots.get_mut(slot) else {
            return linger;
        };
        let Some(ws) = client.ws.as_mut().filter(|ws| !ws.close_sent) else {
            return linger;
        };
        ws.close_sent = true;
        let linger = match linger {
            Some(linger) => Some(linger),
            None => {
                client.queue.truncate();
                Some(self.deadline_in(self.config.linger))
            }
        };
        let payload = close_payload(code, &reason.to_string());
        self.send_raw(slot, frame(Opcode::Close, &payload));
        linger
    }
}
