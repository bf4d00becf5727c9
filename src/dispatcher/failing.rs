//! Clients that break their protocol right behind messages the host has been told of
//! (feature `websocket`): they get the host's answers to those messages before their close.
//!
//! ```text
//! Live ──bad frame, a message of its own not yet done by every subscriber──► failing
//!        (read no more; broadcasts and `send_to` still reach it, in order)
//! failing ──every subscriber done with its messages (`Tail::done`) or deadline──► leaves
//!                                                                        with its close code
//! failing ──idle, kicked, reset, shutdown──► leaves for that reason (the failure is dropped)
//! ```
//!
//! A subscription publishes how many events its host has finished with each time it comes
//! back for more with its batch used up (`Subscription::take`); the dispatcher compares
//! that with the mark of the client's last message. Each round reads those counts *before*
//! it drains the host's commands and lets the clients whose marks were met leave *after*:
//! a host that answered with `send_to` and then came back for more had sent its answer
//! before the count the round read, so the answer is queued before the close frame.

use std::sync::atomic::{fence, Ordering::SeqCst};
use std::time::{Duration, Instant};

use super::Dispatcher;
use crate::client::Failing;
use crate::{ClientId, DisconnectReason};

/// The longest a failing client waits for the host (`linger` if shorter): long enough for
/// a host thread that is keeping up to answer, short enough that a client which broke its
/// protocol holds no slot for long when the host is not reading.
const FAILING_MAX: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// The live client in `slot` broke its protocol: it leaves with `code` at once if no
    /// message of its was ever handed to subscribers; otherwise it is read no more and
    /// leaves once every subscriber is done with its messages (or at the deadline).
    ///
    /// Even when they are done already, it waits for the next round: the host may have
    /// answered (`send_to`) and come back for more *after* this round drained its
    /// commands, so the answer may still be in the channel. The next round reads the
    /// counts, drains the commands, and only then lets it leave (see the file's header);
    /// the loop is woken for that round.
    pub(super) fn broke_protocol(&mut self, slot: usize, reason: DisconnectReason, code: u16) {
        let Some(client) = self.slots.live_mut(slot) else {
            return;
        };
        let mark = client.last_message;
        if mark == 0 || client.failing.is_some() {
            self.leave_with_code(slot, reason, code);
            return;
        }
        let deadline = self.now.checked_add(self.config.linger.min(FAILING_MAX));
        log::debug!(
            "client {} broke its protocol: it leaves once the host is done with its messages",
            client.id
        );
        client.failing = Some(Failing {
            code,
            reason,
            mark,
            deadline,
        });
        // Counted as waiting first, then the counts are read: the fence pairs with the
        // subscription's (`Subscription::came_back`), so either a count published before
        // is seen here (and the loop woken for its next round), or the subscription sees
        // this client waiting and wakes the loop itself.
        self.slots.failing.push(slot);
        self.publish_failing();
        fence(SeqCst);
        if self.subs.done_with(mark) {
            self.shared.wake();
        }
    }

    /// The failing clients whose every subscriber is done with their messages now. Read
    /// before the round drains the host's commands (see the file's header).
    pub(super) fn failing_done(&self) -> Vec<(usize, ClientId)> {
        let mut done = Vec::new();
        for &slot in &self.slots.failing {
            let Some(client) = self.slots.get(slot) else {
                continue;
            };
            if let Some(failing) = client.failing {
                if self.subs.done_with(failing.mark) {
                    done.push((slot, client.id));
                }
            }
        }
        done
    }

    /// Failing clients leave with their close code: those in `done` if the commands the
    /// round found were all run (`drained`), and those past their deadline.
    pub(super) fn leave_failing(&mut self, done: &[(usize, ClientId)], drained: bool) {
        if self.slots.failing.is_empty() {
            return;
        }
        let now = self.now;
        for slot in self.slots.failing.clone() {
            let Some(client) = self.slots.live_mut(slot) else {
                continue;
            };
            let Some(failing) = client.failing else {
                continue;
            };
            let met = drained && done.contains(&(slot, client.id));
            if met || failing.deadline.is_some_and(|d| now >= d) {
                // Not cut off: its queue (the host's answers) goes out before the close.
                let linger = self.deadline_in(self.config.linger);
                self.depart(slot, failing.reason, Some(linger), Some(failing.code));
            }
        }
    }

    /// A client that leaves is failing no more (whatever made it leave).
    pub(super) fn forget_failing(&mut self, slot: usize) {
        let Some(client) = self.slots.get_mut(slot) else {
            return;
        };
        if client.failing.take().is_some() {
            self.slots.failing.retain(|&s| s != slot);
            self.publish_failing();
        }
    }

    /// The nearest deadline of a failing client.
    pub(super) fn failing_deadline(&self) -> Option<Instant> {
        self.slots
            .failing
            .iter()
            .filter_map(|&slot| self.slots.get(slot)?.failing?.deadline)
            .min()
    }

    /// Tells subscriptions whether a failing client waits for them.
    fn publish_failing(&self) {
        self.shared.failing.store(self.slots.failing.len(), SeqCst);
    }
}
