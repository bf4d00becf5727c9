//! The WebSocket phase of a connection (feature `websocket`): the upgrade request and its
//! answer, the host's authenticator seeing the request, inbound frames, and the close
//! handshake both ways. What bytes mean (the request, frames, the answers they are owed) is
//! the wire's (`wire::Wire::open`, `wire::Session`); this file is what the dispatcher does
//! with it. It serves every wire that opens with an HTTP request.
//!
//! ```text
//! Handshake: request head ─► Origin, path, version checked ─► authenticator ─► user ─► 101 ─► Live
//!                  │ refused (400, 403, 404, 426, 431)         │ rejected: 403 │ bad key: 403,
//!                  │                                           │               │ over its cap: 429
//!                  ▼                                           ▼               ▼
//!               Closing (refused): the answer is written, then closed (never Connected)
//! Live: frames ─► messages delivered and relayed, pings answered, pongs as signs of life
//!       close from the client ─► close echoed, PeerClosed ─► Closing
//!       leave for any reason with a close code ─► close frame queued past the bound ─► Closing
//! ```

use bytes::Bytes;

use super::inbound::Cut;
use super::Dispatcher;
use crate::client::{Closing, Phase};
use crate::queue::{Chunk, Piece};
use crate::wire::{self, Broken, Head, Input, Refused, Upgrade, Wire};
use crate::{Admit, AuthRequest, ClientId, DisconnectReason};

impl Dispatcher {
    /// Takes the upgrade request, or the WebSocket frame, at the front of `data`.
    pub(super) fn cut_websocket(&mut self, slot: usize, data: &[u8]) -> Cut {
        let Some(client) = self.slots.get_mut(slot) else {
            return Cut::Gone;
        };
        let wire = client.wire();
        let settings = self.config.wire();
        if let Phase::Handshake(_) = client.phase {
            return match wire.open(&settings, data) {
                Head::Partial => Cut::Partial,
                Head::Upgrade { upgrade, len } => {
                    if self.upgrade(slot, &upgrade) {
                        Cut::Took(len)
                    } else {
                        Cut::Gone
                    }
                }
                Head::Events(events) => {
                    if self.open_events(slot, events) {
                        // An event stream sends nothing more: what follows is discarded.
                        Cut::Took(data.len())
                    } else {
                        Cut::Gone
                    }
                }
                Head::Serve(serve) => {
                    self.serve(slot, serve);
                    Cut::Gone
                }
                Head::Refused(refused) => {
                    self.admission.misbehaved.record(
                        wire.log_target(),
                        refused.kind,
                        self.now,
                        format_args!("{}: {refused}", client.addr),
                    );
                    self.refuse_upgrade(slot, refused, false);
                    Cut::Gone
                }
            };
        }
        if wire.is_sse() {
            // An event stream's client has nothing to say: its input is discarded.
            return match data.len() {
                0 => Cut::Partial,
                n => Cut::Took(n),
            };
        }
        let Some(session) = client.session.as_mut() else {
            return Cut::Gone;
        };
        let id = client.id;
        let mut unmasked = std::mem::take(&mut self.io.unmasked);
        // What was read borrows `unmasked`, never the session: acting on it may use this
        // client's state (handing a message on, relayed back to its sender, or answering a
        // ping may make it leave, and leaving sends its close frame through that state).
        let read = session.read(&settings, data, &mut unmasked);
        let cut = self.on_read(slot, id, wire, read);
        self.io.unmasked = unmasked;
        cut
    }

    /// Acts on what the client's session made of its input.
    fn on_read(
        &mut self,
        slot: usize,
        id: ClientId,
        wire: Wire,
        read: Result<Option<(Input<'_>, usize)>, Broken>,
    ) -> Cut {
        let (input, used) = match read {
            Ok(None) => return Cut::Partial,
            Ok(Some(read)) => read,
            Err(broken) => {
                self.admission.misbehaved.record(
                    wire.log_target(),
                    broken.kind,
                    self.now,
                    format_args!("client {id} {broken}"),
                );
                // Answers to its messages may still be on their way from the host.
                self.broke_protocol(slot, broken.reason, broken.code);
                return Cut::Gone;
            }
        };
        match input {
            Input::Message(payload, kind) => {
                self.tally.frames_in += 1;
                self.deliver(slot, id, payload, Some(kind));
                Cut::Took(used)
            }
            Input::Reply(reply) => {
                self.enqueue(slot, Piece::Chunk(&Chunk::raw(reply)));
                Cut::Took(used)
            }
            Input::Nothing => Cut::Took(used),
            Input::Closed(echo) => {
                // Leaves once its close is echoed.
                self.send_raw(slot, echo);
                let linger = self.deadline_in(self.config.linger);
                self.leave(slot, DisconnectReason::PeerClosed, Some(linger));
                Cut::Gone
            }
        }
    }

    /// A valid upgrade request: the authenticator sees it, then the connection is answered
    /// `101` and goes live, or `403` and is refused. Returns whether it went live.
    fn upgrade(&mut self, slot: usize, upgrade: &Upgrade) -> bool {
        let Some(admit) = self.admit_request(slot, upgrade) else {
            return false;
        };
        // The answer goes first: every frame queued from now on follows it.
        self.send_raw(slot, Bytes::from(upgrade.response()));
        if let Some(client) = self.slots.get_mut(slot) {
            // Compressed or plain, as the answer said; before it goes live, so that it is
            // counted on its wire once.
            client.wire = upgrade.wire();
            client.session = client.wire().session();
        }
        self.go_live(slot, admit);
        true
    }

    /// The host's authenticator and `admit` hook on an opening request (an upgrade or an
    /// event stream's `GET`), then the user they give: `None` if the connection was turned
    /// away, answered (403, or 429 for a user at its cap) and counted.
    pub(super) fn admit_request(&mut self, slot: usize, request: &Upgrade) -> Option<Admit> {
        let client = self.slots.get(slot)?;
        let auth = AuthRequest {
            addr: client.addr,
            transport: client.transport,
            frame: None,
            upgrade: Some(request),
        };
        let Some(admit) = self.ask_admission(&auth) else {
            let refused = wire::refusal(403, "rejected by the authenticator");
            self.refuse_upgrade(slot, refused, true);
            return None;
        };
        // Before the answer: a user over its cap, or with a bad key, is refused in HTTP.
        if let Some(why) = self.check_user(auth.addr, &admit) {
            // Counted there.
            self.answer_refused(slot, why.refusal());
            return None;
        }
        Some(admit)
    }

    /// Answers a refused upgrade and closes the connection once the answer is out (or its
    /// time is up). It never became a client: counted as rejected (by the host) or as a
    /// failed handshake.
    pub(super) fn refuse_upgrade(&mut self, slot: usize, refused: Refused, rejected: bool) {
        self.count_unaccepted(rejected);
        self.answer_refused(slot, refused);
    }

    /// [`refuse_upgrade`](Self::refuse_upgrade) for a refusal counted already.
    pub(super) fn answer_refused(&mut self, slot: usize, refused: Refused) {
        self.send_raw(slot, Bytes::from(refused.response));
        self.close_answered(slot);
    }

    /// Closes a connection that was answered in HTTP and never became a client, once the
    /// answer is out (or its time is up).
    pub(super) fn close_answered(&mut self, slot: usize) {
        let deadline = self.deadline_in(self.config.linger);
        if let Some(client) = self.slots.get_mut(slot) {
            if let Phase::Handshake(_) = client.phase {
                self.admission.handshaking -= 1;
            }
            client.phase = Closing::phase(deadline, true);
            self.slots.closing.push(slot);
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
        let session = client.session.as_mut();
        let Some(close) = session.and_then(|session| session.close(code, reason)) else {
            return linger;
        };
        let linger = match linger {
            Some(linger) => Some(linger),
            None => {
                client.queue.truncate();
                Some(self.deadline_in(self.config.linger))
            }
        };
        self.send_raw(slot, close);
        linger
    }
}
