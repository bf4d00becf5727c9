//! A client that never reads, under each slow-client policy, while healthy clients keep
//! getting everything in order.
//!
//! Speed does not matter here: the host broadcasts in batches and the healthy clients read
//! each batch in full before the next one, so their queues never hold more than one batch
//! (far below `queue_bytes`). The stalled client's kernel buffers are kept small (hub-side
//! `send_buffer`, client-side `SO_RCVBUF`), so its hub queue fills after a bounded,
//! machine-independent number of batches.

#[path = "util_old/mod.rs"]
mod util;

use std::time::Duration;

use hubcast::{ClientId, DisconnectReason, Event, Hub, SlowClientPolicy, Subscription};
use util::{expect_connected, join, numbered, seq_of, Peer};

const LEN: usize = 100;
const BATCH: usize = 50;
const QUEUE_BYTES: usize = 64 * 1024;
/// Far more than the stalled client's kernel buffers plus its queue could hold.
const MAX_BYTES: usize = 16 << 20;

struct Setup {
    hub: Hub,
    events: Subscription,
    stalled: Peer,
    stalled_id: ClientId,
    healthy: Vec<Peer>,
    /// Messages broadcast so far.
    sent: usize,
}

impl Setup {
    fn new(policy: SlowClientPolicy) -> Setup {
        let hub = Hub::builder()
            .queue_bytes(QUEUE_BYTES)
            .send_buffer(Some(4096))
            .slow_client_policy(policy)
            .bind("127.0.0.1:0")
            .unwrap();
        let events = hub.subscribe();
        let stalled = Peer::connect_small_rcvbuf(hub.local_addr(), 4096);
        let stalled_id = expect_connected(&events);
        let healthy = (0..2).map(|_| join(&hub, &events).0).collect();
        Setup {
            hub,
            events,
            stalled,
            stalled_id,
            healthy,
            sent: 0,
        }
    }

    /// Broadcasts one batch; every healthy client reads all of it, in order.
    fn batch(&mut self) {
        let first = self.sent;
        for seq in first..first + BATCH {
            self.hub.broadcast(numbered(seq, LEN)).unwrap();
        }
        self.sent += BATCH;
        for peer in &mut self.healthy {
            for seq in first..first + BATCH {
                let line = peer.read_line();
                assert_eq!(
                    seq_of(&line),
                    seq,
                    "a healthy client lost or reordered a message"
                );
                assert_eq!(line, numbered(seq, LEN));
            }
        }
    }

    /// Broadcasts batches until `done` says the policy has applied, then a few more.
    fn run_until(&mut self, mut done: impl FnMut(&mut Setup) -> bool) {
        loop {
            assert!(
                self.sent * (LEN + 1) < MAX_BYTES,
                "the slow-client policy never applied after {} messages",
                self.sent
            );
            self.batch();
            if done(self) {
                break;
            }
        }
        for _ in 0..5 {
            self.batch();
        }
    }

    fn stalled_dropped(&self) -> u64 {
        let clients = self.hub.clients();
        let info = clients
            .iter()
            .find(|c| c.id == self.stalled_id)
            .expect("stalled client is gone");
        info.dropped
    }
}

/// Complete lines in `bytes` (a trailing partial line is ignored), as sequence numbers.
fn seqs(bytes: &[u8]) -> Vec<usize> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    lines.pop(); // after the last '\n': empty, or a partial line
    lines
        .into_iter()
        .map(|line| {
            assert_eq!(line, numbered(seq_of(line), LEN), "torn or corrupt line");
            seq_of(line)
        })
        .collect()
}

#[test]
fn disconnect_policy_drops_the_stalled_client_only() {
    let mut s = Setup::new(SlowClientPolicy::Disconnect);
    let stalled_id = s.stalled_id;
    s.run_until(|s| match s.events.try_recv() {
        Ok(Event::Disconnected { client, reason }) => {
            assert_eq!((client, reason), (stalled_id, DisconnectReason::Slow));
            true
        }
        Ok(other) => panic!("unexpected {other:?}"),
        Err(_) => false,
    });

    let stats = s.hub.stats();
    assert_eq!(stats.disconnects(DisconnectReason::Slow), 1, "{stats:?}");
    assert_eq!(stats.disconnects.total(), 1, "{stats:?}");
    assert_eq!(stats.dropped, 0);
    let clients = s.hub.clients();
    assert_eq!(clients.len(), 2);
    assert!(clients.iter().all(|c| c.id != stalled_id && c.dropped == 0));
    assert!(s.events.try_recv().is_err(), "a healthy client left");

    // The stalled client gets what reached its kernel buffers, a gapless prefix of the
    // stream, and then the connection closes.
    let got = seqs(&s.stalled.read_to_close());
    assert_eq!(got, (0..got.len()).collect::<Vec<_>>());
    assert!(got.len() < s.sent);
}

/// Shared by both drop policies: the stalled client stays connected, drops are counted
/// for it alone, and once it reads again it gets an in-order, untorn subsequence whose
/// length plus the drops is everything that was sent. Returns what it got.
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
    assert!(s.events.try_recv().is_err(), "no client should have left");

    // Let the stalled client read again, and shut down: everything still queued for it is
    // written out.
    let mut stalled = s.stalled;
    let reader = std::thread::spawn(move || stalled.read_to_close());
    let report = s.hub.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!((report.clients, report.flushed), (3, 3), "{report:?}");
    assert!(report.is_complete(), "{report:?}");
    let got = seqs(&reader.join().expect("stalled reader"));

    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "stalled client got messages out of order"
    );
    assert_eq!(got.first(), Some(&0));
    let dropped = s.hub.stats().dropped as usize;
    assert_eq!(
        got.len() + dropped,
        s.sent,
        "every message is either delivered or counted as dropped"
    );
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
        prefix * (LEN + 1 + 64) > QUEUE_BYTES / 2,
        "gapless prefix of only {prefix} messages"
    );
}
