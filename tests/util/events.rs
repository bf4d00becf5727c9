//! A log of a subscription's events, so that a test can wait for one event and later check
//! what else happened.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hubcast::{Bytes, ClientId, DisconnectReason, Event, Hub, Subscription};

use super::{PACE, TIMEOUT};

/// What waiting on a subscription gave.
#[derive(Debug)]
pub(crate) enum Received {
    Event(Event),
    TimedOut,
    /// The hub has shut down and every event has been received.
    Closed,
}

/// The client and reason of a `Disconnected` event (events cannot be built outside the
/// crate to compare with, so tests compare these).
pub(crate) fn departure(event: &Event) -> Option<(ClientId, DisconnectReason)> {
    match *event {
        Event::Disconnected { client, reason, .. } => Some((client, reason)),
        _ => None,
    }
}

/// Waits up to `timeout` for the next event of `sub`. The one place that looks at the
/// error type of `Subscription`'s receive methods; everything else goes through here or
/// only asks `is_ok`.
pub(crate) fn receive(sub: &Subscription, timeout: Duration) -> Received {
    use hubcast::RecvTimeoutError::{Closed, Timeout};
    match sub.recv_timeout(timeout) {
        Ok(event) => Received::Event(event),
        Err(Timeout) => Received::TimedOut,
        Err(Closed) => Received::Closed,
        Err(other) => panic!("unexpected receive error: {other:?}"),
    }
}

/// A subscription that records every event it receives, so that a test can wait for one
/// event and later check what else happened. Waits for "the next event" are strict (the
/// `expect_*` methods); waits for "an event like this" skip others and keep them.
#[derive(Debug)]
pub(crate) struct EventLog {
    sub: Subscription,
    /// Every event received so far, in order.
    pub(crate) seen: Vec<Event>,
}

impl EventLog {
    pub(crate) fn new(sub: Subscription) -> Self {
        EventLog {
            sub,
            seen: Vec::new(),
        }
    }

    /// A new subscription to `hub`.
    pub(crate) fn subscribe(hub: &Hub) -> Self {
        EventLog::new(hub.subscribe())
    }

    /// The subscription, for a test that goes on without the log.
    pub(crate) fn into_sub(self) -> Subscription {
        self.sub
    }

    /// The subscription itself, to look at its queue.
    pub(crate) fn sub(&self) -> &Subscription {
        &self.sub
    }

    /// The next event if one arrives within `timeout`. Fails the test if the subscription
    /// has ended.
    pub(crate) fn next_within(&mut self, timeout: Duration) -> Option<Event> {
        match receive(&self.sub, timeout) {
            Received::Event(event) => {
                self.seen.push(event.clone());
                Some(event)
            }
            Received::TimedOut => None,
            Received::Closed => panic!("the subscription ended; seen: {:?}", self.tail()),
        }
    }

    /// The next event, whatever it is; fails the test after [`TIMEOUT`].
    pub(crate) fn next(&mut self) -> Event {
        self.next_within(TIMEOUT)
            .unwrap_or_else(|| panic!("no event within {TIMEOUT:?}; seen: {:?}", self.tail()))
    }

    /// Asserts that the next event is a `Connected` and returns its client id.
    pub(crate) fn expect_connected(&mut self) -> ClientId {
        match self.next() {
            Event::Connected { client, .. } => client,
            other => panic!("expected Connected, got {other:?}"),
        }
    }

    /// Asserts that the next event is a `Message` from `from` and returns its payload.
    pub(crate) fn expect_message(&mut self, from: ClientId) -> Vec<u8> {
        match self.next() {
            Event::Message {
                client, payload, ..
            } if client == from => payload.to_vec(),
            other => panic!("expected a Message from {from}, got {other:?}"),
        }
    }

    /// Asserts that the next event is the `Disconnected` of `id` and returns its reason.
    pub(crate) fn expect_disconnected(&mut self, id: ClientId) -> DisconnectReason {
        match self.next() {
            Event::Disconnected { client, reason, .. } if client == id => reason,
            other => panic!("expected {id} to disconnect, got {other:?}"),
        }
    }

    /// Receives events until `pick` picks one; fails the test after [`TIMEOUT`].
    pub(crate) fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = self.next_within(left) else {
                panic!(
                    "no event for {what} within {TIMEOUT:?}; seen: {:?}",
                    self.tail()
                );
            };
            if let Some(picked) = pick(&event) {
                return picked;
            }
        }
    }

    /// Waits for the `Connected` event of the client whose own address is `addr`.
    pub(crate) fn connected(&mut self, addr: SocketAddr) -> ClientId {
        self.wait_for(&format!("{addr} to connect"), |event| match event {
            Event::Connected {
                client, addr: a, ..
            } if *a == addr => Some(*client),
            _ => None,
        })
    }

    /// Waits for `id` to leave (unless it already has) and returns why.
    pub(crate) fn disconnected(&mut self, id: ClientId) -> DisconnectReason {
        let left = |event: &Event| match event {
            Event::Disconnected { client, reason, .. } if *client == id => Some(*reason),
            _ => None,
        };
        if let Some(reason) = self.seen.iter().find_map(left) {
            return reason;
        }
        self.wait_for(&format!("client {id} to leave"), left)
    }

    /// Waits until `id` has sent `n` messages (counting those already received) and returns
    /// them all.
    pub(crate) fn messages(&mut self, id: ClientId, n: usize) -> Vec<Bytes> {
        let mut have = self.messages_from(id).len();
        while have < n {
            self.wait_for(&format!("{n} messages from {id}"), |event| match event {
                Event::Message { client, .. } if *client == id => Some(()),
                _ => None,
            });
            have += 1;
        }
        self.messages_from(id)
    }

    /// Waits until `cond` holds, for state that raises no event of its own (the hub's
    /// counters, another subscription's queue): checked again after each event received,
    /// or after [`PACE`] without one. Fails the test after [`TIMEOUT`].
    pub(crate) fn wait_until(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; seen: {:?}",
                self.tail()
            );
            self.next_within(PACE);
        }
    }

    /// Records every event already queued, without waiting.
    pub(crate) fn drain(&mut self) {
        while let Ok(event) = self.sub.try_recv() {
            self.seen.push(event);
        }
    }

    /// Receives every event left until the subscription ends (the hub has shut down) and
    /// returns them. Fails the test if it has not ended within [`TIMEOUT`].
    pub(crate) fn until_end(&mut self) -> Vec<Event> {
        let deadline = Instant::now() + TIMEOUT;
        let from = self.seen.len();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receive(&self.sub, left) {
                Received::Event(event) => self.seen.push(event),
                Received::Closed => return self.seen[from..].to_vec(),
                Received::TimedOut => panic!("the subscription did not end within {TIMEOUT:?}"),
            }
        }
    }

    /// Whether `id` has left, as far as the events received so far tell.
    pub(crate) fn has_left(&self, id: ClientId) -> bool {
        self.seen
            .iter()
            .any(|e| matches!(e, Event::Disconnected { client, .. } if *client == id))
    }

    /// The payloads `id` sent, in order, as far as the events received so far tell.
    pub(crate) fn messages_from(&self, id: ClientId) -> Vec<Bytes> {
        self.seen
            .iter()
            .filter_map(|event| match event {
                Event::Message {
                    client, payload, ..
                } if *client == id => Some(payload.clone()),
                _ => None,
            })
            .collect()
    }

    /// The events of client `id` received so far, in order.
    pub(crate) fn story_of(&self, id: ClientId) -> Vec<Event> {
        self.seen
            .iter()
            .filter(|event| match event {
                Event::Connected { client, .. }
                | Event::Message { client, .. }
                | Event::Disconnected { client, .. } => *client == id,
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Every `Disconnected` received so far.
    pub(crate) fn departures(&self) -> Vec<(ClientId, DisconnectReason)> {
        self.seen.iter().filter_map(departure).collect()
    }

    /// Whether a client from address `addr` was ever announced.
    pub(crate) fn saw_connected(&self, addr: SocketAddr) -> bool {
        self.seen
            .iter()
            .any(|e| matches!(e, Event::Connected { addr: a, .. } if *a == addr))
    }

    /// The last few events, for failure messages.
    fn tail(&self) -> &[Event] {
        &self.seen[self.seen.len().saturating_sub(8)..]
    }
}
