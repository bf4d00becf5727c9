//! A client that never reads, under each slow-client policy, beside two healthy clients
//! that keep getting everything in order.
//!
//! Speed does not matter here: the host broadcasts in windows and the healthy clients read
//! each window in full before the next one, so their queues never hold more than one
//! window (far below `queue_bytes`), while the stalled client falls further behind with
//! every window until its queue is full, after a bounded number of windows whatever the
//! machine's speed. The hub writes with a send buffer of two loopback segments (see
//! `SEND_BUFFER`), so writes to the healthy clients are never paced by delayed ACKs.

mod util;

use std::thread;

use hubcast::{ClientId, DisconnectReason, Framing, Hub, SlowClientPolicy};
use util::{
    assert_stats_add_up, broadcast_paced, healthy_pair, healthy_still_served, numbered, seq_of,
    EventLog, Healthy, Peer, LOCAL, MSG_LEN, SEND_BUFFER, TIMEOUT, TINY,
};

const WINDOW: usize = 50;
const QUEUE_BYTES: usize = 64 * 1024;
/// Far more than the stalled client's kernel buffers plus its queue could hold.
const MAX_BYTES: usize = 16 << 20;

struct Setup {
    hub: Hub,
    events: EventLog,
    stalled: Peer,
    stalled_id: ClientId,
    healthy: [Healthy; 2],
    /// Messages broadcast so far.
    sent: usize,
}

impl Setup {
    /// A hub with `policy`, a 64 KiB queue and no write timeout, so that only the queue
    /// bound and the policy decide; a client with a tiny receive buffer that never reads;
    /// two healthy clients.
    fn new(policy: SlowClientPolicy) -> Setup {
        let hub = Hub::builder()
            .queue_bytes(QUEUE_BYTES)
            .send_buffer(Some(SEND_BUFFER))
            .write_timeout(None)
            .slow_client_policy(policy)
            .bind(LOCAL)
            .unwrap();
        let mut events = EventLog::subscribe(&hub);
        let healthy = healthy_pair(&hub, &mut events, Framing::Lines);
        let stalled = Peer::connect_rcvbuf(hub.local_addr(), TINY);
        let stalled_id = events.connected(stalled.addr());
        Setup {
            hub,
            events,
            stalled,
            stalled_id,
            healthy,
            sent: 0,
        }
    }

    /// Broadcasts windows until `done` says the policy has applied, then five more.
    fn run_until(&mut self, mut done: impl FnMut(&mut Setup) -> bool) {
        loop {
            assert!(
                self.sent * (MSG_LEN + 1) < MAX_BYTES,
                "the slow-client policy never applied after {} messages",
                self.sent
            );
            self.window();
            if done(self) {
                break;
            }
        }
        for _ in 0..5 {
            self.window();
        }
    }

    fn window(&mut self) {
        let range = self.sent..self.sent + WINDOW;
        broadcast_paced(&self.hub, &self.healthy, range, MSG_LEN, WINDOW);
        self.sent += WINDOW;
        self.events.drain();
    }

    fn stalled_dropped(&self) -> u64 {
        let clients = self.hub.clients();
        let info = clients
            .iter()
            .find(|c| c.id == self.stalled_id)
            .expect("the stalled client is still connected");
        info.dropped
    }
}

/// Complete lines in `bytes` (a trailing partial line is ignored), as sequence numbers;
/// fails the test on a torn or corrupt line.
fn seqs(bytes: &[u8]) -> Vec<usize> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    lines.pop(); // after the last '\n': empty, or a partial line
    lines
        .into_iter()
        .map(|line| {
            assert_eq!(
                line,
                numbered(seq_of(line), MSG_LEN),
                "torn or corrupt line"
            );
            seq_of(line)
        })
        .collect()
}

#[test]
fn disconnect_policy_drops_the_stalled_client_only() {
    let mut s = Setup::new(SlowClientPolicy::Disconnect);
    let stalled_id = s.stalled_id;
    s.run_until(|s| s.events.has_left(stalled_id));

    assert_eq!(s.events.disconnected(stalled_id), DisconnectReason::Slow);
    assert_eq!(
        s.events.departures(),
        vec![(stalled_id, DisconnectReason::Slow)],
        "a healthy client left"
    );
    let stats = s.hub.stats();
    assert_eq!(stats.disconnects(DisconnectReason::Slow), 1, "{stats:?}");
    assert_eq!(stats.disconnects.total(), 1, "{stats:?}");
    assert_eq!(stats.dropped, 0);
    let clients = s.hub.clients();
    assert_eq!(clients.len(), 2);
    assert!(clients.iter().all(|c| c.id != stalled_id && c.dropped == 0));
    healthy_still_served(&s.hub, &s.healthy, s.sent);
    assert_stats_add_up(&s.hub, &[(DisconnectReason::Slow, 1)]);

    // The stalled client gets what reached its kernel buffers, a gapless prefix of the
    // stream, and then the connection closes.
    let got = seqs(&s.stalled.read_to_close());
    assert_eq!(got, (0..got.len()).collect::<Vec<_>>());
    assert!(got.len() < s.sent);
}

/// Shared by both drop policies: the stalled client stays connected, drops are counted
/// for it alone, and the hub keeps serving the others. Then it reads again and the hub
/// shuts down, writing out everything still queued: it gets an in-order, untorn
/// subsequence starting at the first message, whose length plus the drops is everything
/// that was sent. Returns what it got and how many were sent.
fn drop_policy(policy: SlowClientPolicy) -> (Vec<usize>, usize) {
    let mut s = Setup::new(policy);
    s.run_until(|s| s.stalled_dropped() > 0);

    let stats = s.hub.stats();
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.disconnects.total(), 0, "{stats:?}");
    let clients = s.hub.clients();
    assert_eq!(clients.len(), 3, "a client was disconnected: {clients:?}");
    for info in &clients {
        let want_drops = info.id == s.stalled_id;
        assert_eq!(info.dropped > 0, want_drops, "{info:?}");
    }
    assert_eq!(stats.dropped, s.stalled_dropped());
    assert!(
        s.events.departures().is_empty(),
        "no client should have left"
    );

    // It reads again; the healthy clients are served as before.
    let mut stalled = s.stalled;
    let reader = thread::spawn(move || stalled.read_to_close());
    healthy_still_served(&s.hub, &s.healthy, s.sent);
    s.sent += 10;
    assert_stats_add_up(&s.hub, &[]);

    let report = s.hub.shutdown(TIMEOUT).unwrap();
    assert_eq!((report.clients, report.flushed), (3, 3), "{report:?}");
    assert!(report.is_complete(), "{report:?}");
    let got = seqs(&reader.join().expect("stalled reader"));

    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "stalled client got messages out of order"
    );
    assert_eq!(got.first(), Some(&0), "the oldest message was lost");
    let stats = s.hub.stats();
    let dropped = stats.dropped as usize;
    assert_eq!(
        got.len() + dropped,
        s.sent,
        "every message is either delivered or counted as dropped"
    );
    assert_eq!(stats.frames_out as usize, 3 * s.sent - dropped, "{stats:?}");
    (got, s.sent)
}

#[test]
fn drop_oldest_keeps_the_newest_for_the_stalled_client() {
    let (got, sent) = drop_policy(SlowClientPolicy::DropOldest);
    assert_eq!(
        got.last(),
        Some(&(sent - 1)),
        "DropOldest must keep the newest message"
    );
}

#[test]
fn drop_newest_keeps_the_oldest_for_the_stalled_client() {
    let (got, _) = drop_policy(SlowClientPolicy::DropNewest);
    // What was queued first stays: the front of the stream, the kernel buffers plus a
    // full queue, has no gap.
    let prefix = got
        .iter()
        .enumerate()
        .take_while(|&(i, &seq)| i == seq)
        .count();
    assert!(
        prefix * (MSG_LEN + 1 + 64) > QUEUE_BYTES / 2,
        "gapless prefix of only {prefix} messages"
    );
}
