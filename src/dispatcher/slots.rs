//! Connections by slot (a slot's index is its `mio` token) and live clients by id.
//!
//! The one rule for stale tokens: a slot emptied during a round is reused only in a later
//! round, so an event of this round's `poll` for a closed connection can never reach a new
//! connection in the same slot. Every lookup returns `None` for an empty slot; callers
//! never index the slots directly.

use std::collections::HashMap;

use crate::client::Client;
use crate::wire::{PerWire, Wire};
use crate::ClientId;

/// Every connection, and the dispatcher's lists of those with work pending.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    clients: Vec<Option<Client>>,
    /// Clients with queued output that the socket may take now.
    pub(crate) dirty: Vec<usize>,
    /// Clients that may have unread input (budget used up, or reading paused).
    pub(crate) read_pending: Vec<usize>,
    /// Connections closing, writing out their queues until their deadline.
    pub(crate) closing: Vec<usize>,
    /// Clients held back for their rate limit, each until its `held_until`.
    pub(crate) held: Vec<usize>,
    /// Clients that broke their protocol and wait for subscribers before they leave
    /// (`failing`; only a WebSocket client can now).
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) failing: Vec<usize>,

    /// Empty slots that may be filled now.
    free: Vec<usize>,
    /// Slots emptied this round: free from the next one.
    freed: Vec<usize>,
    /// Live clients (subscribers have heard of them) by id.
    by_id: HashMap<ClientId, usize>,
    /// Live clients by wire.
    by_wire: PerWire<usize>,
}

impl Slots {
    /// The number of slots, to iterate over with [`get`](Self::get).
    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no connection is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.clients.iter().all(Option::is_none)
    }

    pub(crate) fn get(&self, slot: usize) -> Option<&Client> {
        self.clients.get(slot).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<&mut Client> {
        self.clients.get_mut(slot).and_then(Option::as_mut)
    }

    /// The connection in `slot` if it is a live client.
    pub(crate) fn live_mut(&mut self, slot: usize) -> Option<&mut Client> {
        self.get_mut(slot).filter(|c| c.is_live())
    }

    /// The slot of a live client.
    pub(crate) fn slot_of(&self, id: ClientId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// Live clients.
    pub(crate) fn live(&self) -> usize {
        self.by_id.len()
    }

    /// An empty slot for a new connection, to [`fill`](Self::fill) or
    /// [`release`](Self::release).
    pub(crate) fn vacant(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.clients.len() - 1
        })
    }

    pub(crate) fn fill(&mut self, slot: usize, client: Client) {
        debug_assert!(self.clients[slot].is_none());
        self.clients[slot] = Some(client);
    }

    /// Gives back a slot from [`vacant`](Self::vacant) that was not filled after all.
    pub(crate) fn release(&mut self, slot: usize) {
        self.freed.push(slot);
    }

    /// Live clients that take this wire.
    pub(crate) fn live_on(&self, wire: Wire) -> usize {
        self.by_wire[wire]
    }

    /// Empties a slot; it is reused from the next round.
    pub(crate) fn take(&mut self, slot: usize) -> Option<Client> {
        self.remove_live(slot);
        let client = self.clients.get_mut(slot)?.take()?;
        self.freed.push(slot);
        Some(client)
    }

    /// Records that the client in `slot` went live.
    pub(crate) fn add_live(&mut self, slot: usize) {
        if let Some(client) = self.clients.get(slot).and_then(Option::as_ref) {
            if self.by_id.insert(client.id, slot).is_none() {
                self.by_wire[client.wire()] += 1;
            }
        }
    }

    /// Forgets the client in `slot` as live (it left; its slot may still be closing).
    pub(crate) fn remove_live(&mut self, slot: usize) {
        let Some(client) = self.clients.get(slot).and_then(Option::as_ref) else {
            return;
        };
        if self.by_id.remove(&client.id).is_some() {
            self.by_wire[client.wire()] -= 1;
        }
    }

    /// Ends the round: slots emptied in it become free.
    pub(crate) fn recycle(&mut self) {
        self.free.append(&mut self.freed);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use super::*;
    use crate::client::Phase;
    use crate::transport::Conn;

    fn client(id: u64) -> Client {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let stream = std::net::TcpStream::connect(addr).unwrap();
        let conn = Conn::Tcp(mio::net::TcpStream::from_std(stream));
        Client::new(
            ClientId(id),
            addr,
            conn,
            crate::Transport::Tcp,
            Phase::Live,
            Instant::now(),
        )
    }

    #[test]
    fn a_slot_emptied_this_round_is_reused_only_in_a_later_round() {
        let mut slots = Slots::default();
        let a = slots.vacant();
        slots.fill(a, client(1));
        slots.add_live(a);
        assert_eq!(slots.slot_of(ClientId(1)), Some(a));
        assert!(slots.take(a).is_some());
        assert!(slots.get(a).is_none(), "a stale token finds nothing");
        assert_eq!(slots.slot_of(ClientId(1)), None);
        let b = slots.vacant();
        assert_ne!(a, b, "not reused in the same round");
        slots.release(b);
        slots.recycle();
        let c = slots.vacant();
        assert!(c == a || c == b, "reused once the round is over");
        assert!(slots.is_empty());
    }
}
