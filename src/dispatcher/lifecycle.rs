//! A connection's life after admission: going live, leaving (exactly one `Disconnected`),
//! closing the socket, and the hub's own shutdown.
//!
//! ```text
//! Handshake ──auth / TLS / upgrade done──► Live ──leave──► Closing ──queue out or deadline──► closed
//!     ├──── upgrade refused ──► Closing (refused) ──HTTP answer out or deadline─────────────► closed
//!     └──── refused, timed out, failed ─────────────────────────────────────────────────────► closed
//! ```
//!
//! A closing connection whose peer still sends once its queue is written lingers,
//! half-closed, until its end of stream (`Closing::step`).

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use super::{storm, Dispatcher};
use crate::client::{CloseStep, Closing, Ended, Phase};
use crate::shared::Registered;
use crate::topics::check_name;
use crate::{Admit, DisconnectReason, Event, ShutdownReport, Undelivered};

/// A shutdown, once begun.
#[derive(Debug, Default)]
pub(super) struct Shutdown {
    /// Set once a shutdown began, with its deadline (`None`: until every queue is out).
    pub(super) deadline: Option<Option<Instant>>,
    /// What the shutdown did, for `Hub::shutdown`.
    pub(super) report: ShutdownReport,
}

impl Shutdown {
    /// Whether a shutdown has begun.
    pub(super) fn begun(&self) -> bool {
        self.deadline.is_some()
    }
}

impl Dispatcher {
    /// The connection becomes a client: it gets broadcasts and subscribers hear of it. It
    /// is in the topics `admit` names from now on: the registry entry and the table's joins
    /// are made under one lock, and the dispatcher's membership (with `#joined` under the
    /// protocol) is applied here, before any of its input is cut. A topic that cannot be
    /// joined is skipped, logged and counted.
    pub(super) fn go_live(&mut self, slot: usize, admit: Admit) {
        let Some(client) = self.slots.get_mut(slot) else {
            return;
        };
        if let Phase::Handshake(_) = client.phase {
            self.admission.handshaking -= 1;
        }
        client.phase = Phase::Live;
        // Its allowances start full as it becomes a client.
        client.rate = self
            .config
            .rate_limit
            .map(|limit| crate::client::rate::Bucket::new(&limit, self.now));
        let (id, addr, transport) = (client.id, client.addr, client.transport);
        let listener = client.listener;
        let dropped = Arc::clone(&client.dropped);
        let Admit { name, topics, user } = admit;
        let limits = self.config.topic_limits;
        // Joined in the table: (topic, its name, the kept topic evicted for it).
        let mut joined = Vec::new();
        let mut refused = Vec::new();
        {
            let mut registry = self.shared.registry();
            let registry = &mut *registry;
            let mut mine = Vec::new();
            for topic in &topics {
                let result = check_name(topic, limits.max_name)
                    .and_then(|()| registry.topics.join(topic, &mut mine, &limits));
                match result {
                    Ok((topic_id, true, evicted)) => {
                        let name = registry
                            .topics
                            .name(topic_id)
                            .map_or_else(|| Arc::from(topic.as_str()), Arc::clone);
                        // Numbered like a client's own decision. No fence is needed: no
                        // host decision about this client can predate its registration.
                        registry.decisions.client();
                        joined.push((topic_id, name, evicted));
                    }
                    // Named twice.
                    Ok((_, false, _)) => {}
                    Err(err) => refused.push(err),
                }
            }
            // Checked by `check_user` just before.
            let key = user.as_deref().map(|user| registry.add_user(user, id));
            if let Some(client) = self.slots.get_mut(slot) {
                client.user = key.clone();
            }
            registry.clients.insert(
                id,
                Registered {
                    addr,
                    name,
                    dropped,
                    topics: mine,
                    user: key,
                },
            );
        }
        self.slots.add_live(slot);
        let counters = &self.shared.counters;
        counters.accepted.fetch_add(1, Relaxed);
        counters.connected.fetch_add(1, Relaxed);
        if let Some(gauge) = self.shared.listeners.get(listener) {
            gauge.clients.fetch_add(1, Relaxed);
        } else if listener == super::adoption::ADOPTED {
            counters.adopted.fetch_add(1, Relaxed);
        }
        if let Some(client) = self.slots.get(slot) {
            self.shared.wires[client.wire()].fetch_add(1, Relaxed);
        }
        if !refused.is_empty() {
            counters
                .admit_topics_refused
                .fetch_add(refused.len() as u64, Relaxed);
            for err in &refused {
                log::warn!("client {id} admitted, not put in a topic it was given: {err}");
            }
        }
        log::debug!("client {id} connected from {addr} ({transport:?})");
        self.subs.emit(
            Event::Connected {
                client: id,
                addr,
                user,
            },
            &self.shared,
            self.now,
        );
        if self.config.sequenced {
            // Its first message: where the hub-wide stream starts for it.
            self.greet(slot);
        }
        for (topic_id, name, evicted) in &joined {
            if let Some(evicted) = *evicted {
                self.topic_evicted(evicted);
            }
            self.join_topic(id, *topic_id, Arc::clone(name));
        }
        // Cut for not reading its `#joined` (only with a tiny queue bound): it has left,
        // and said so.
        if !self.slots.get(slot).is_some_and(|c| c.is_live()) || !self.subs.any(&self.shared) {
            return;
        }
        for (_, name, _) in joined {
            let event = Event::TopicJoined {
                client: id,
                topic: name.to_string(),
            };
            self.subs.emit(event, &self.shared, self.now);
        }
    }

    /// A socket error: the client leaves at once with the matching reason.
    pub(super) fn fail(&mut self, slot: usize, err: &io::Error) {
        let Some(client) = self.slots.get_mut(slot) else {
            return;
        };
        match client.phase.ended(true) {
            Ended::Unaccepted => {
                // TLS errors come as socket errors; so does a failed read before a
                // WebSocket upgrade or an authentication frame.
                let target = if client.transport.is_tls() {
                    storm::TLS
                } else {
                    client.wire().log_target()
                };
                self.admission.misbehaved.record(
                    target,
                    "handshake failed",
                    self.now,
                    format_args!("{}: handshake failed: {err}", client.addr),
                );
                self.drop_unaccepted(slot, false);
            }
            Ended::Leave => {
                log::debug!("client {} failed: {err}", client.id);
                self.leave(slot, DisconnectReason::from_io(err), None);
            }
            Ended::Close | Ended::Drained => self.close(slot),
        }
    }

    /// Closes a connection that never became a client; subscribers never hear of it.
    pub(super) fn drop_unaccepted(&mut self, slot: usize, rejected: bool) {
        self.count_unaccepted(rejected);
        self.close(slot);
    }

    /// Counts a connection turned away before it became a client: `rejected` by the
    /// authenticator, else a failed handshake.
    pub(super) fn count_unaccepted(&self, rejected: bool) {
        let counters = &self.shared.counters;
        let counter = if rejected {
            &counters.rejected
        } else {
            &counters.handshake_failed
        };
        counter.fetch_add(1, Relaxed);
    }

    /// The client leaves the hub: it is forgotten by id, subscribers are told, and its
    /// socket is closed now (`linger` is `None`) or once its queue is written out or the
    /// deadline passes (`Some(None)`: no deadline). A WebSocket client is sent the close
    /// code for `reason` first.
    pub(super) fn leave(
        &mut self,
        slot: usize,
        reason: DisconnectReason,
        linger: Option<Option<Instant>>,
    ) {
        #[cfg(feature = "websocket")]
        let code = crate::wire::websocket::close_code(reason);
        #[cfg(not(feature = "websocket"))]
        let code = None;
        self.depart(slot, reason, linger, code);
    }

    /// [`leave`](Self::leave) with this WebSocket close code, at once.
    #[cfg(feature = "websocket")]
    pub(super) fn leave_with_code(&mut self, slot: usize, reason: DisconnectReason, code: u16) {
        self.depart(slot, reason, None, Some(code));
    }

    pub(super) fn depart(
        &mut self,
        slot: usize,
        reason: DisconnectReason,
        linger: Option<Option<Instant>>,
        code: Option<u16>,
    ) {
        let Some(client) = self.slots.live_mut(slot) else {
            return;
        };
        let (id, listener) = (client.id, client.listener);
        #[cfg(feature = "websocket")]
        self.forget_failing(slot);
        #[cfg(feature = "websocket")]
        let linger = match code {
            Some(code) => self.close_websocket(slot, code, reason, linger),
            None => linger,
        };
        #[cfg(not(feature = "websocket"))]
        let _ = code;
        let Some(client) = self.slots.live_mut(slot) else {
            return;
        };
        client.phase = Closing::phase(linger.unwrap_or(Some(self.now)), false);
        self.slots.remove_live(slot);
        self.update_flow(slot);
        self.leave_all_topics(slot);
        let counters = &self.shared.counters;
        counters.connected.fetch_sub(1, Relaxed);
        if let Some(gauge) = self.shared.listeners.get(listener) {
            gauge.clients.fetch_sub(1, Relaxed);
        } else if listener == super::adoption::ADOPTED {
            counters.adopted.fetch_sub(1, Relaxed);
        }
        if let Some(client) = self.slots.get(slot) {
            self.shared.wires[client.wire()].fetch_sub(1, Relaxed);
        }
        counters.disconnects[reason.index()].fetch_add(1, Relaxed);
        log::debug!("client {id} left: {reason}");
        self.subs.emit(
            Event::Disconnected { client: id, reason },
            &self.shared,
            self.now,
        );
        if linger.is_some() {
            self.slots.closing.push(slot);
        } else {
            self.close(slot);
        }
    }

    /// Closes leaving clients whose queues are empty or whose time is up.
    pub(super) fn finish_closing(&mut self) {
        let now = self.now;
        let mut closing = std::mem::take(&mut self.slots.closing);
        closing.retain(|&slot| {
            // A slot closed another way may already hold a new client: leave that alone.
            let Some(client) = self.slots.get(slot) else {
                return false;
            };
            let Phase::Closing(closing) = client.phase else {
                return false;
            };
            match closing.step(now, client.has_output(), self.shutdown.begun()) {
                CloseStep::Wait => true,
                CloseStep::Linger(deadline) => {
                    if let Some(client) = self.slots.get_mut(slot) {
                        client.conn.shutdown_write();
                        client.phase = Phase::Closing(Closing {
                            deadline,
                            lingering: true,
                            ..closing
                        });
                    }
                    true
                }
                CloseStep::Close => {
                    self.close(slot);
                    false
                }
            }
        });
        closing.append(&mut self.slots.closing);
        self.slots.closing = closing;
    }

    /// The nearest deadline of a leaving client.
    pub(super) fn closing_deadline(&self) -> Option<Instant> {
        self.slots
            .closing
            .iter()
            .filter_map(|&slot| match self.slots.get(slot)?.phase {
                Phase::Closing(closing) => closing.deadline,
                _ => None,
            })
            .min()
    }

    /// Closes the socket: FIN after what was written, and the slot is freed next round.
    pub(super) fn close(&mut self, slot: usize) {
        let Some(mut client) = self.slots.take(slot) else {
            return;
        };
        if client.flow.is_high() {
            self.busy.high.retain(|&s| s != slot);
        }
        match client.phase {
            Phase::Handshake(_) => self.admission.handshaking -= 1,
            // Counted when it was refused; never a client.
            Phase::Closing(Closing { refused: true, .. }) => {}
            Phase::Live | Phase::Closing(_) if self.shutdown.begun() => {
                match client.queue.backlog() {
                    (0, _) => self.shutdown.report.flushed += 1,
                    (frames, bytes) => self.shutdown.report.undelivered.push(Undelivered {
                        client: client.id,
                        frames,
                        bytes,
                    }),
                }
            }
            Phase::Live | Phase::Closing(_) => {}
        }
        self.admission.forget(client.addr);
        let _ = self.io.poll.registry().deregister(client.conn.socket());
        client.conn.shutdown_write();
        client.conn.discard_input();
    }

    /// Stops accepting and makes every client leave, writing out its queue until `deadline`
    /// (`None`: until it is written out, or `write_timeout` finds the client stuck).
    pub(super) fn begin_shutdown(&mut self, deadline: Option<Instant>) {
        if self.shutdown.begun() {
            return;
        }
        self.shutdown.deadline = Some(deadline);
        for mut listener in self.io.listeners.drain(..) {
            let _ = self.io.poll.registry().deregister(&mut listener.socket);
        }
        self.shutdown.report.clients = self.slots.live();
        let clients = self.shutdown.report.clients;
        log::info!(
            "hubcast shutting down, {clients} {} connected",
            if clients == 1 { "client" } else { "clients" }
        );
        for slot in 0..self.slots.len() {
            let Some(client) = self.slots.get_mut(slot) else {
                continue;
            };
            match &mut client.phase {
                Phase::Closing(Closing {
                    deadline: until, ..
                }) => {
                    *until = match (*until, deadline) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                }
                Phase::Handshake(_) => self.drop_unaccepted(slot, false),
                Phase::Live => self.leave(slot, DisconnectReason::Shutdown, Some(deadline)),
            }
        }
    }

    /// After the last client is closed: subscriptions get what is left and end.
    pub(super) fn finish(mut self) -> ShutdownReport {
        self.subs.finish(&self.shared);
        self.tally.publish(&self.shared.counters);
        log::info!("hubcast stopped");
        std::mem::take(&mut self.shutdown.report)
    }
}
