//! Reading clients: fair reads through one shared buffer, cutting frames, the
//! authentication frame, delivering messages to subscribers and relaying them to clients.
//!
//! A read lands in the dispatcher's scratch buffer and frames are cut from it in place;
//! only a partial frame at the end is kept, in the client's own buffer, which is freed
//! again once it holds nothing. Each message's payload is copied out exactly, so what the
//! host holds pins no read buffer. Relayed frames are gathered into one batch for the
//! round (see `outbound`), so a read of many small frames costs one queue entry per
//! client, not one per frame.

use std::io;

use bytes::Bytes;

use super::{storm, Dispatcher};
use crate::client::{Ended, Phase};
use crate::command::{Frames, Target, BATCH_BELOW};
use crate::wire::codec::{self, FrameTooLarge};
use crate::wire::control::{BadRequest, Reply};
use crate::wire::Wire;
use crate::{Admit, Auth, AuthRequest, ClientId, DisconnectReason, Event, MessageKind, Relay};

/// Bytes read from one client per round, so one chatty client cannot starve the others.
const READ_BUDGET: usize = 256 * 1024;

/// Bytes read per round from a client whose last read went over its rate limit under
/// `RateLimitPolicy::Drop`: reading it at full speed only to drop what it sent would take
/// the dispatcher from everyone else.
const DROPPING_READ: usize = 4 * 1024;

impl Dispatcher {
    /// Reads every client that may have input, unless subscribers need to catch up first
    /// or a client is busy, then fans out what they relayed.
    pub(super) fn read_all(&mut self) {
        let mut pending = std::mem::take(&mut self.slots.read_pending);
        // Stop reading while a client is busy: frames read now (relayed, or answered by the
        // host) would grow its queue; publishing clients are held back by TCP instead.
        let mut i = 0;
        while i < pending.len() && !self.subs.is_paused() && !self.any_busy() {
            let slot = pending[i];
            i += 1;
            if let Some(client) = self.slots.get_mut(slot) {
                client.read_pending = false;
                self.read_client(slot);
            }
        }
        // Clients not reached keep their place, ahead of those added meanwhile.
        pending.drain(..i);
        pending.append(&mut self.slots.read_pending);
        self.slots.read_pending = pending;
        self.flush_relay();
    }

    /// Reads one client up to its budget: frames go to subscribers (and other clients in
    /// relay mode); end of stream and errors make it leave.
    fn read_client(&mut self, slot: usize) {
        // Frames held back by a pause (or a rate limit) come first.
        if self.is_held(slot) || !self.take_buffered(slot) {
            return;
        }
        let mut budget = READ_BUDGET;
        let mut reads = 0;
        loop {
            // Held back for its rate limit: what it sent waits in its socket, and the
            // `held` list reads it again once its allowance has refilled.
            if self.is_held(slot) {
                return;
            }
            // Over its rate limit under `Drop` in its last read: one small read a round,
            // so that its excess costs the others little and TCP slows it down.
            let dropping = self.slots.get(slot).is_some_and(|c| c.dropping);
            if self.subs.is_paused() || budget == 0 || (dropping && reads > 0) {
                self.mark_read_pending(slot);
                return;
            }
            reads += 1;
            let Some(client) = self.slots.get_mut(slot) else {
                return;
            };
            let len = if dropping {
                DROPPING_READ
            } else {
                self.io.scratch.len()
            };
            client.dropping = false;
            let result = client.conn.read(&mut self.io.scratch[..len]);
            if let Ok(n) = result {
                client.last_read = self.now;
                budget = budget.saturating_sub(n);
            }
            // A leaving client's input is read only to be discarded.
            let discard = client.is_closing();
            if client.conn.has_buffered_output() {
                // A TLS handshake reply that did not fit in the socket.
                self.mark_dirty(slot);
            }
            match result {
                Ok(0) => {
                    self.end_of_stream(slot);
                    return;
                }
                Ok(n) => {
                    self.tally.bytes_in += n as u64;
                    if let Some(Phase::Closing(closing)) =
                        self.slots.get_mut(slot).map(|c| &mut c.phase)
                    {
                        closing.peer_sent = true;
                    }
                    if !discard && !self.take_input(slot, n) {
                        // It left while its input was handled (cut as slow by its own
                        // relay, or by a bad frame). If it is writing out before it is
                        // closed, read on to discard the rest: stopping here, before the
                        // socket is drained, would leave no readiness edge to come back
                        // on once a client that keeps sending has filled the buffer, so
                        // it would stop taking what the hub writes it, blocked in a write.
                        if self.slots.get(slot).is_some_and(|c| c.is_closing()) {
                            continue;
                        }
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.transport_ready(slot);
                    return;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.fail(slot, &err);
                    return;
                }
            }
        }
    }

    /// The peer closed its sending side.
    fn end_of_stream(&mut self, slot: usize) {
        let Some(client) = self.slots.get_mut(slot) else {
            return;
        };
        match client.phase.ended(false) {
            Ended::Unaccepted => self.drop_unaccepted(slot, false),
            Ended::Leave => {
                let linger = self.deadline_in(self.config.linger);
                self.leave(slot, DisconnectReason::PeerClosed, Some(linger));
            }
            Ended::Close => self.close(slot),
            Ended::Drained => {}
        }
    }

    /// A connection whose transport handshake (TLS) is done becomes a client, unless it
    /// still owes an authentication frame or a WebSocket upgrade.
    fn transport_ready(&mut self, slot: usize) {
        let Some(client) = self.slots.get(slot) else {
            return;
        };
        // A WebSocket connection goes live only with its upgrade (`cut_websocket`): made
        // live here, one whose request head was still partial (or, over TLS, not yet
        // sent) was announced without an upgrade, never answered, and never timed out.
        if matches!(client.phase, Phase::Handshake(_))
            && client.wire() == Wire::Framed
            && !client.conn.is_handshaking()
            && self.config.authenticator.is_none()
        {
            self.admit_framed(slot, None);
        }
    }

    /// Takes the `n` bytes just read into the scratch buffer. Returns `false` if the
    /// connection takes no more input (it left or was closed).
    fn take_input(&mut self, slot: usize, n: usize) -> bool {
        let scratch = std::mem::take(&mut self.io.scratch);
        let more = match self.slots.get_mut(slot) {
            Some(client) if client.rbuf.is_empty() => {
                // The usual case: frames straight from the scratch buffer, and only a
                // partial frame at the end is kept.
                match self.cut_frames(slot, &scratch[..n]) {
                    Some(used) => {
                        if let Some(client) = self.slots.get_mut(slot) {
                            client.rbuf.extend_from_slice(&scratch[used..n]);
                        }
                        true
                    }
                    None => false,
                }
            }
            Some(client) => {
                client.rbuf.extend_from_slice(&scratch[..n]);
                self.take_buffered(slot)
            }
            None => false,
        };
        self.io.scratch = scratch;
        more
    }

    /// Cuts and hands on the frames in the client's own buffer. Returns `false` if the
    /// connection takes no more input (it left or was closed).
    fn take_buffered(&mut self, slot: usize) -> bool {
        let Some(client) = self.slots.get_mut(slot) else {
            return false;
        };
        if client.rbuf.is_empty() {
            return true;
        }
        let mut rbuf = std::mem::take(&mut client.rbuf);
        let Some(used) = self.cut_frames(slot, &rbuf) else {
            return false;
        };
        let Some(client) = self.slots.get_mut(slot) else {
            return false;
        };
        rbuf.drain(..used);
        client.rbuf = rbuf;
        client.release_rbuf();
        true
    }

    /// Cuts whole frames from the front of `data` and hands them on, until the data ends in
    /// a partial frame or subscribers are full. Returns how much of `data` was used, or
    /// `None` if the connection takes no more input (it left or was closed).
    fn cut_frames(&mut self, slot: usize, data: &[u8]) -> Option<usize> {
        let mut used = 0;
        while !self.subs.is_paused() {
            let client = self.slots.get_mut(slot)?;
            let wire = client.wire();
            match client.phase {
                Phase::Closing(_) => return None,
                Phase::Handshake(_) if client.conn.is_handshaking() => return Some(used),
                Phase::Handshake(_)
                    if wire == Wire::Framed && self.config.authenticator.is_none() =>
                {
                    if !self.admit_framed(slot, None) {
                        return None;
                    }
                    continue;
                }
                Phase::Handshake(_) | Phase::Live => {}
            }
            if !self.may_cut(slot) {
                return Some(used);
            }
            let step = match wire {
                Wire::Framed => self.cut_framed(slot, &data[used..]),
                // Every other wire opens with an HTTP request (`websocket`).
                #[cfg(feature = "websocket")]
                _ => self.cut_websocket(slot, &data[used..]),
            };
            match step {
                Cut::Took(n) => used += n,
                Cut::Partial => return Some(used),
                Cut::Gone => return None,
            }
        }
        Some(used)
    }

    /// Takes the frame of the hub's framing at the front of `data`.
    fn cut_framed(&mut self, slot: usize, data: &[u8]) -> Cut {
        let (framing, max_frame) = (self.config.framing, self.config.max_frame);
        let Some(client) = self.slots.get_mut(slot) else {
            return Cut::Gone;
        };
        match codec::decode(framing, data, max_frame, &mut client.scanned) {
            Ok(Some(frame)) => {
                let payload = &data[frame.payload];
                self.tally.frames_in += 1;
                let id = client.id;
                if !client.is_live() {
                    if !self.admit_framed(slot, Some(payload)) {
                        return Cut::Gone;
                    }
                } else if payload.is_empty() && self.config.heartbeat.is_some() {
                    // A heartbeat answer: it already counted as a sign of life.
                } else {
                    // The hub's framing has no kinds.
                    self.deliver(slot, id, payload, None);
                }
                Cut::Took(frame.len)
            }
            Ok(None) => Cut::Partial,
            Err(FrameTooLarge) => {
                self.admission.misbehaved.record(
                    storm::CLIENTS,
                    "frame too large",
                    self.now,
                    format_args!("client {} sent a frame over {max_frame} bytes", client.id),
                );
                if client.is_live() {
                    self.leave(slot, DisconnectReason::FrameTooLarge, None);
                } else {
                    self.drop_unaccepted(slot, false);
                }
                Cut::Gone
            }
        }
    }

    /// A message from the live client `id` in `slot`: subscribers get it first, then the
    /// other clients in relay mode, so no event of the client can follow its
    /// `Disconnected` (relaying to itself may make it leave as slow). `kind` is the one it
    /// came with (WebSocket), relayed with it.
    pub(super) fn deliver(
        &mut self,
        slot: usize,
        id: ClientId,
        payload: &[u8],
        kind: Option<MessageKind>,
    ) {
        log::trace!("client {id} sent {payload:?}");
        // Control requests count too ("##" starts a data message).
        let control =
            self.config.sequenced && payload.starts_with(b"#") && !payload.starts_with(b"##");
        if !self.within_rate(slot, id, payload.len(), control) {
            return;
        }
        let payload = match payload {
            // With the protocol on, a message that starts with '#' is a control message,
            // and "##" stands for a data message that starts with '#'.
            [b'#', b'#', ..] if self.config.sequenced => &payload[1..],
            [b'#', rest @ ..] if self.config.sequenced => {
                // The client's earlier messages, still in the relay batch, come first: a
                // `#leave` must not overtake the line before it.
                self.flush_relay();
                if self.slots.get(slot).is_some_and(|c| c.is_live()) {
                    match std::str::from_utf8(rest) {
                        Ok(text) => self.control(slot, id, text),
                        // Read leniently, two different names could name the same topic.
                        Err(_) => {
                            self.reply(slot, Reply::Error(BadRequest::NotUtf8));
                        }
                    }
                }
                return;
            }
            _ => payload,
        };
        if self.subs.any(&self.shared) {
            let payload = Bytes::copy_from_slice(payload);
            let event = Event::Message {
                client: id,
                payload,
                kind,
            };
            self.subs.emit(event, &self.shared, self.now);
            if let Some(client) = self.slots.get_mut(slot) {
                client.last_message = self.subs.emitted();
            }
        }
        let target = match self.config.relay {
            Relay::Off => return,
            Relay::All => Target::All,
            Relay::Others => Target::AllExcept(id),
            // The host decides who may write where (`permissions`); and a host join or
            // leave decided but not applied yet changes where it goes.
            Relay::Topics
                if self.config.client_topics.is_some() || self.host_decision_pending() =>
            {
                let allow = self.config.client_topics.clone();
                self.relay_permitted(slot, id, payload, kind, allow.as_ref());
                return;
            }
            Relay::Topics => {
                // To each of its topics' other members: once per topic. Relaying changes
                // nobody's topics, so they are walked in place.
                let (mut i, mut reached) = (0, false);
                while let Some(&(topic, _)) = self.slots.get(slot).and_then(|c| c.topics.get(i)) {
                    // The sender is a member: someone else is if there are two (a length,
                    // no scan of the members).
                    reached |= self.streams.topics.members(topic).len() > 1;
                    self.relay_to(Target::TopicExcept(topic, id), payload, kind);
                    i += 1;
                }
                if !reached {
                    self.tally.relayed_to_nobody += 1;
                }
                return;
            }
        };
        if let Some(allow) = self.config.client_topics.clone() {
            if !self.may_publish_hub(slot, id, &allow) {
                return;
            }
        }
        // The sender is live: nobody else is if it is the only one.
        if self.slots.live() <= 1 {
            self.tally.relayed_to_nobody += 1;
        }
        self.relay_to(target, payload, kind);
    }

    /// Relays a client's message to `target`, of `kind`, batched with the round's other
    /// relayed frames.
    pub(super) fn relay_to(&mut self, target: Target, payload: &[u8], kind: Option<MessageKind>) {
        let framing = self.config.framing;
        // `bind` checked that every inbound frame can be framed within queue_bytes.
        let Some(len) = codec::encoded_len(framing, payload) else {
            return;
        };
        if len >= BATCH_BELOW {
            self.flush_relay();
            let frame = codec::encode(framing, payload, len);
            self.fan_out(&Frames::one(frame, target, kind));
            return;
        }
        if self.fanout.relay.len() + len > self.config.batch_max {
            self.flush_relay();
        }
        if self.fanout.relay.is_empty() {
            self.fanout.relay.buf_mut().reserve(self.config.batch_max);
        }
        self.fanout.relay.push(framing, payload, target, kind);
    }

    /// Fans out the frames relayed since the last call, and the `#presence` changes made
    /// meanwhile (`membership`), in order: those that the fan-out itself makes (a client it
    /// cuts as slow leaves its topics) go out too. Never called from inside a fan-out, so
    /// numbers always follow delivery order.
    pub(super) fn flush_relay(&mut self) {
        while !self.fanout.relay.is_empty() {
            let frames = self.fanout.relay.take();
            self.fan_out(&frames);
        }
    }

    /// A framed connection becomes a client, as the authenticator (shown its first
    /// `frame`) or, without one, the `admit` hook says. Returns `false` if it was turned
    /// away (rejected, or a closure panicked).
    pub(super) fn admit_framed(&mut self, slot: usize, frame: Option<&[u8]>) -> bool {
        let Some(client) = self.slots.get(slot) else {
            return false;
        };
        let request = AuthRequest {
            addr: client.addr,
            transport: client.transport,
            frame,
            #[cfg(feature = "websocket")]
            upgrade: None,
        };
        let addr = request.addr;
        match self.ask_admission(&request) {
            Some(admit) => {
                if self.check_user(addr, &admit).is_some() {
                    // Counted there.
                    self.close(slot);
                    return false;
                }
                self.go_live(slot, admit);
                true
            }
            None => {
                self.drop_unaccepted(slot, true);
                false
            }
        }
    }

    /// Asks the host's authenticator, then its `admit` hook, about `request` (either may
    /// be unset): `Some` lets the connection in, with a name, a user and topics (the user
    /// is checked after, by `check_user`). The authenticator's `Auth::Admit` is the whole
    /// answer; after `Accept` or `AcceptAs`, the hook gives the topics and the user (and
    /// the name, unless `AcceptAs` gave one). A panic in either turns the
    /// connection away, as `Reject` does (the caller counts it as rejected).
    pub(super) fn ask_admission(&mut self, request: &AuthRequest<'_>) -> Option<Admit> {
        let addr = request.addr;
        let name = match self.config.authenticator.clone() {
            None => None,
            Some(authenticator) => {
                let what = format_args!("the authenticator panicked on {addr}, rejecting it");
                match self.call_host(|| (authenticator.0)(request), what)? {
                    Auth::Admit(admit) => return Some(admit),
                    Auth::Accept => None,
                    Auth::AcceptAs(name) => Some(name),
                    Auth::Reject => {
                        self.reject_logged(addr);
                        return None;
                    }
                }
            }
        };
        let Some(hook) = self.config.admit.clone() else {
            return Some(Admit {
                name,
                ..Admit::default()
            });
        };
        let what = format_args!("the admit hook panicked on {addr}, rejecting it");
        let mut admit = self.call_host(|| (hook.0)(request), what)?;
        if name.is_some() {
            admit.name = name;
        }
        Some(admit)
    }

    /// Logs a connection the authenticator rejected (through the storm log).
    fn reject_logged(&mut self, addr: std::net::SocketAddr) {
        self.admission.misbehaved.record(
            storm::CLIENTS,
            "authentication failed",
            self.now,
            format_args!("rejected {addr}: authentication failed"),
        );
    }
}

/// What cutting one frame did.
pub(super) enum Cut {
    /// It took a whole frame of this many bytes.
    Took(usize),
    /// The frame is not complete yet.
    Partial,
    /// The connection takes no more input (it left, was refused or closed).
    Gone,
}
