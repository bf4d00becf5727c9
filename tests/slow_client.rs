//! A client that never reads, under each slow-client policy, beside healthy clients that
//! keep getting everything in order; clients cut as slow by the relay of their own messages
//! or by the answers to their own requests. Each scenario runs for every wire (TCP lines,
//! TCP length-prefixed, WebSocket).
//!
//! Speed does not matter here: the host broadcasts in windows and the healthy clients read
//! each window in full before the next one, so their queues never hold more than one
//! window (far below `queue_bytes`), while the stalled client falls further behind with
//! every window until its queue is full, after a bounded number of windows whatever the
//! machine's speed. The hub writes with a send buffer of two loopback segments (see
//! `SEND_BUFFER`), so writes to the healthy clients are never paced by delayed ACKs.

mod util;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use hubcast::{
    ClientId, DisconnectReason, Event, Hub, HubBuilder, Protocol, Relay, SlowClientPolicy,
};
use util::{
    assert_stats_add_up, broadcast_paced, client_socket, healthy_beside, healthy_still_served,
    numbered, per_wire, seq_of, EventLog, Healthy, Wire, WireClient, MSG_LEN, SEND_BUFFER, TIMEOUT,
    TINY,
};

const WINDOW: usize = 50;
const QUEUE_BYTES: usize = 64 * 1024;
/// Far more than the stalled client's kernel buffers plus its queue could hold.
const MAX_BYTES: usize = 16 << 20;

struct Setup {
    wire: Wire,
    hub: Hub,
    events: EventLog,
    stalled: WireClient,
    stalled_id: ClientId,
    healthy: [Healthy; 2],
    /// Messages broadcast so far.
    sent: usize,
}

impl Setup {
    /// A hub with `policy`, a 64 KiB queue and no write timeout, so that only the queue
    /// bound and the policy decide, and a linger as long as the test's timeout, so that a
    /// WebSocket client's close frame waits for it to read; a client of `wire` with a tiny
    /// receive buffer that never reads; two healthy clients (of both wires on WebSocket).
    fn new(wire: Wire, policy: SlowClientPolicy) -> Setup {
        let hub = wire.bind(
            Hub::builder()
                .queue_bytes(QUEUE_BYTES)
                .send_buffer(Some(SEND_BUFFER))
                .write_timeout(None)
                .linger(TIMEOUT)
                .slow_client_policy(policy),
        );
        let mut events = EventLog::subscribe(&hub);
        let healthy = healthy_beside(&hub, &mut events, wire);
        let (stalled, stalled_id) = wire.join_rcvbuf(&hub, &mut events, TINY);
        Setup {
            wire,
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
                self.sent * self.wire.framed_len(MSG_LEN) < MAX_BYTES,
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
        let info = self.hub.client(self.stalled_id);
        info.expect("the stalled client is still connected").dropped
    }
}

/// The sequence numbers of what the stalled client got: whole, uncorrupted numbered
/// messages (on TCP a torn last frame is left out), and on WebSocket text frames only.
fn seqs(messages: &[Vec<u8>]) -> Vec<usize> {
    messages
        .iter()
        .map(|message| {
            let seq = seq_of(message);
            assert!(message == &numbered(seq, MSG_LEN), "a corrupt message");
            seq
        })
        .collect()
}

/// Under `Disconnect` only the stalled client is cut, as `Slow`, and nothing is dropped.
/// It gets what reached its kernel buffers: a gapless prefix of the stream, then the end
/// (on WebSocket its close frame 4000, past the queue's bound, after the frames that were
/// partly written, so it reads whole frames only, then a clean end of stream).
fn disconnect_policy_cuts_the_stalled_client_only(wire: Wire) {
    let mut s = Setup::new(wire, SlowClientPolicy::Disconnect);
    let stalled_id = s.stalled_id;
    s.run_until(|s| s.events.has_left(stalled_id));

    assert_eq!(s.events.disconnected(stalled_id), DisconnectReason::Slow);
    assert_eq!(
        s.events.departures(),
        vec![(stalled_id, DisconnectReason::Slow)],
        "a healthy client left"
    );
    let stats = s.hub.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    let clients = s.hub.clients();
    assert_eq!(clients.len(), s.healthy.len());
    assert!(clients.iter().all(|c| c.id != stalled_id && c.dropped == 0));
    healthy_still_served(&s.hub, &s.healthy, s.sent);
    s.sent += 10;
    assert_stats_add_up(&s.hub, &[(DisconnectReason::Slow, 1)]);

    let got = seqs(
        &s.stalled
            .read_to_end()
            .messages_closed_for(DisconnectReason::Slow),
    );
    assert_eq!(got, (0..got.len()).collect::<Vec<_>>(), "gaps");
    assert!(got.len() < s.sent, "got all {} messages", s.sent);
}

/// Shared by both drop policies: the stalled client stays connected, drops are counted
/// for it alone, and the hub keeps serving the others. Then it reads again and the hub
/// shuts down, writing out everything still queued: it gets an in-order, untorn
/// subsequence starting at the first message, whose length plus the drops is everything
/// that was sent, then the end (on WebSocket, close 1001). Returns what it got and how
/// many were sent.
fn drop_policy(wire: Wire, policy: SlowClientPolicy) -> (Vec<usize>, usize) {
    let mut s = Setup::new(wire, policy);
    s.run_until(|s| s.stalled_dropped() > 0);

    let stats = s.hub.stats();
    assert!(stats.dropped > 0, "{stats:?}");
    assert_stats_add_up(&s.hub, &[]);
    let clients = s.hub.clients();
    assert_eq!(clients.len(), 3, "a client was disconnected: {clients:?}");
    for info in &clients {
        let want_drops = info.id == s.stalled_id;
        assert_eq!(info.dropped > 0, want_drops, "{info:?}");
    }
    assert_eq!(stats.dropped, s.stalled_dropped(), "{stats:?}");
    assert!(
        s.events.departures().is_empty(),
        "no client should have left: {:?}",
        s.events.departures()
    );

    // It reads again; the healthy clients are served as before.
    let stalled = s.stalled;
    let reader = thread::spawn(move || stalled.read_to_end());
    healthy_still_served(&s.hub, &s.healthy, s.sent);
    s.sent += 10;
    assert_stats_add_up(&s.hub, &[]);

    let report = s.hub.shutdown(TIMEOUT).unwrap();
    assert_eq!((report.clients, report.flushed), (3, 3), "{report:?}");
    assert!(report.is_complete(), "{report:?}");
    let ending = reader.join().expect("stalled reader");
    let got = seqs(&ending.messages_closed_for(DisconnectReason::Shutdown));

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

fn drop_oldest_keeps_the_newest_for_the_stalled_client(wire: Wire) {
    let (got, sent) = drop_policy(wire, SlowClientPolicy::DropOldest);
    assert_eq!(
        got.last(),
        Some(&(sent - 1)),
        "DropOldest must keep the newest message"
    );
}

fn drop_newest_keeps_the_oldest_for_the_stalled_client(wire: Wire) {
    let (got, _) = drop_policy(wire, SlowClientPolicy::DropNewest);
    // What was queued first stays: the front of the stream, the kernel buffers plus a
    // full queue, has no gap.
    let prefix = got
        .iter()
        .enumerate()
        .take_while(|&(i, &seq)| i == seq)
        .count();
    assert!(
        prefix * (wire.framed_len(MSG_LEN) + 64) > QUEUE_BYTES / 2,
        "gapless prefix of only {prefix} messages"
    );
}

/// A client that floods and never reads is cut as slow by the relay of its own messages
/// (`Relay::All` sends them back to it): short ones, relayed in batches, and ones of 4 KiB
/// or more, fanned out at once while its frame is being handled. Its `Disconnected` is
/// still its last event (subscribers used to see it before its last `Message`), and what
/// it reads is whole messages, its own, no more than were delivered; on WebSocket then its
/// close frame 4000 and a clean end (the hub reads on after the cut, to discard, so a
/// write that was under way ends).
fn a_client_cut_by_its_own_relay_has_no_event_after_it_left(wire: Wire) {
    let hub = wire.bind(
        Hub::builder()
            .relay(Relay::All)
            .queue_bytes(QUEUE_BYTES)
            .max_frame(8 * 1024)
            .linger(TIMEOUT),
    );
    let mut events = EventLog::subscribe(&hub);
    let lens = [1000, 5000];
    let mut flooders = Vec::new();
    for len in lens {
        // Small buffers both ways: it cannot hide what it reads or writes in its kernel.
        let socket = client_socket(wire.addr(&hub), Some(TINY), Some(TINY));
        let (flooder, id) = wire.join_socket(&hub, &mut events, socket);
        let cut = Arc::new(AtomicBool::new(false));
        let writer = {
            let mut stream = flooder.stream().try_clone().expect("clone");
            let cut = Arc::clone(&cut);
            // Not UTF-8, so relayed in binary frames on WebSocket.
            let message = wire.client_frame(&vec![0xff; len]);
            thread::spawn(move || {
                use std::io::Write;
                let mut sent = 0;
                // Stops once the hub has cut it, or closed the connection.
                while !cut.load(SeqCst) && sent < 10_000 {
                    if stream.write_all(&message).is_err() {
                        break;
                    }
                    sent += 1;
                }
                sent
            })
        };
        let mut messages = 0;
        loop {
            match events.next() {
                Event::Message { client, .. } if client == id => messages += 1,
                Event::Disconnected { client, reason, .. } if client == id => {
                    assert_eq!(reason, DisconnectReason::Slow, "{len} bytes");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        cut.store(true, SeqCst);
        assert!(messages > 0, "{len} bytes");
        // The writer may be in a write when the hub cuts the client.
        let sent = writer.join().expect("writer");
        if wire.is_websocket() {
            assert!(sent > messages, "sent {sent}, delivered {messages}");
        }
        let got = flooder
            .read_to_end()
            .messages_closed_for(DisconnectReason::Slow);
        assert!(got.iter().all(|m| *m == vec![0xff; len]), "{len} bytes");
        assert!(got.len() <= messages, "{len} bytes");
        flooders.push(id);
    }
    hub.shutdown(TIMEOUT).expect("shutdown");
    // Each flooder's events were checked up to its Disconnected, the first's in the
    // second's turn: nothing of either may follow.
    let after = events.until_end();
    assert!(
        after.is_empty(),
        "events after the last Disconnected: {after:?}"
    );
    for id in flooders {
        let story = events.story_of(id);
        assert!(
            matches!(story.last(), Some(Event::Disconnected { .. })),
            "events after its Disconnected: {story:?}"
        );
    }
    assert_stats_add_up(&hub, &[(DisconnectReason::Slow, lens.len() as u64)]);
}

/// Sends `requests` 20,000 times from a client of `wire` that never reads, until it is cut
/// as slow; returns its events after its `Disconnected`, up to a later client's arrival
/// (everything the cut could cause is out by then: its input is only discarded after it),
/// having checked that it got nothing after the end its cut gave it (on WebSocket, its
/// close frame: no data frame after Close, RFC 6455).
fn events_after_the_cut(wire: Wire, builder: HubBuilder, requests: &[&str]) -> Vec<Event> {
    let hub = wire.bind(
        builder
            .protocol(Protocol::Sequenced)
            .queue_bytes(QUEUE_BYTES)
            .write_timeout(None)
            .linger(TIMEOUT),
    );
    let mut events = EventLog::subscribe(&hub);
    let (hostile, id) = wire.join_rcvbuf(&hub, &mut events, TINY);
    let mut stream = hostile.stream().try_clone().unwrap();
    let many: Vec<u8> = requests
        .iter()
        .flat_map(|request| wire.client_frame(request.as_bytes()))
        .collect::<Vec<u8>>()
        .repeat(1000);
    let writer = thread::spawn(move || {
        use std::io::Write;
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        (0..20).all(|_| stream.write_all(&many).is_ok())
    });
    assert_eq!(events.disconnected(id), DisconnectReason::Slow);
    let later = wire.connect(&hub);
    events.connected(later.addr());
    // The answers it was sent, then the end.
    hostile.read_to_end().closed_for(DisconnectReason::Slow);
    let _ = writer.join();
    let cut = events
        .seen
        .iter()
        .position(|e| matches!(e, Event::Disconnected { client, .. } if *client == id))
        .unwrap();
    let of_it = |e: &&Event| match e {
        Event::ResumeRefused { client, .. }
        | Event::Resumed { client, .. }
        | Event::TopicJoined { client, .. }
        | Event::TopicLeft { client, .. }
        | Event::Message { client, .. }
        | Event::Disconnected { client, .. } => *client == id,
        _ => false,
    };
    events.seen[cut + 1..]
        .iter()
        .filter(of_it)
        .cloned()
        .collect()
}

fn a_client_that_never_reads_its_answers_is_cut_as_slow(wire: Wire) {
    // Each is answered `#refused join @x off`; 20,000 answers are 1.8 MB with their
    // bookkeeping, far past the bound and the allowance (cut as `Slow`, asserted there).
    let started = Instant::now();
    events_after_the_cut(wire, Hub::builder(), &["#join @x"]);
    assert!(started.elapsed() < TIMEOUT);
}

fn a_client_cut_for_its_unread_answers_has_nothing_after_it_left(wire: Wire) {
    for (builder, requests) in [
        (Hub::builder(), &["#resume * 1 5"][..]),
        // Each is answered `#noresume @xyzwv member 0 0` (no client topics here).
        (Hub::builder(), &["#resume @xyzwv 1 0"][..]),
        (
            Hub::builder().client_topics(|_| true),
            &["#join @a", "#leave @a"][..],
        ),
    ] {
        let after = events_after_the_cut(wire, builder, requests);
        assert!(
            after.is_empty(),
            "{requests:?}: events after Disconnected: {after:?}"
        );
    }
}

per_wire!(
    disconnect_policy_cuts_the_stalled_client_only,
    drop_oldest_keeps_the_newest_for_the_stalled_client,
    drop_newest_keeps_the_oldest_for_the_stalled_client,
    a_client_cut_by_its_own_relay_has_no_event_after_it_left,
    a_client_that_never_reads_its_answers_is_cut_as_slow,
    a_client_cut_for_its_unread_answers_has_nothing_after_it_left,
);
