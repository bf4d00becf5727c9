//! Shutting down: what is flushed, what is reported, what fails afterwards, and dropping
//! the hub without shutting it down (how every client is closed, for every wire).

mod util;

use std::sync::mpsc;
use std::time::Duration;

use hubcast::{DisconnectReason, Error, Hub};
use util::{
    assert_stats_add_up, join, numbered, per_wire, seq_of, EventLog, Peer, Wire, LOCAL,
    SEND_BUFFER, TIMEOUT, TINY,
};

#[test]
fn calls_after_shutdown_are_closed() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (_peer, id) = join(&hub, &mut events);
    assert!(!hub.is_closed());

    let report = hub.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(report.clients, 1);
    assert!(hub.is_closed());
    assert!(matches!(hub.broadcast("late"), Err(Error::Closed)));
    assert!(matches!(
        hub.broadcast_except(id, "late"),
        Err(Error::Closed)
    ));
    assert!(matches!(hub.send_to(id, "late"), Err(Error::Closed)));
    assert!(matches!(hub.disconnect(id), Err(Error::Closed)));
    assert!(matches!(
        hub.shutdown(Duration::from_secs(1)),
        Err(Error::Closed)
    ));

    // The old subscription ends after the remaining events; a new one is over at once.
    assert_eq!(events.expect_disconnected(id), DisconnectReason::Shutdown);
    assert_eq!(events.until_end(), vec![]);
    assert_eq!(EventLog::subscribe(&hub).until_end(), vec![]);
}

/// Shutting down writes out everything queued for every client, in order, then closes
/// each cleanly; the report and the events account for every client, and the stats for
/// every frame and byte.
#[test]
fn shutdown_flushes_every_queued_message_to_every_client_then_closes() {
    const CLIENTS: usize = 3;
    const N: usize = 5_000;
    const LEN: usize = 100;
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let peers: Vec<_> = (0..CLIENTS).map(|_| join(&hub, &mut events)).collect();
    let ids: Vec<_> = peers.iter().map(|(_, id)| *id).collect();

    // Queue far more than the kernel buffers hold while the clients are not reading.
    for seq in 0..N {
        hub.broadcast(numbered(seq, LEN)).unwrap();
    }
    let readers: Vec<_> = peers
        .into_iter()
        .map(|(mut peer, _)| {
            std::thread::spawn(move || {
                for seq in 0..N {
                    let line = peer.read_line();
                    assert_eq!(seq_of(&line), seq, "message lost or out of order");
                    assert_eq!(line, numbered(seq, LEN));
                }
                peer.expect_fin();
            })
        })
        .collect();
    let report = hub.shutdown(TIMEOUT).unwrap();
    for reader in readers {
        reader
            .join()
            .expect("a client got every message, then end of stream");
    }

    assert_eq!(
        (report.clients, report.flushed),
        (CLIENTS, CLIENTS),
        "{report:?}"
    );
    assert!(report.is_complete(), "{report:?}");
    assert!(report.undelivered.is_empty());
    let left = events.until_end();
    let gone: Vec<_> = left.iter().filter_map(util::departure).collect();
    assert_eq!(left.len(), CLIENTS, "{left:?}");
    for &client in &ids {
        assert!(
            gone.contains(&(client, DisconnectReason::Shutdown)),
            "{left:?}"
        );
    }
    assert_stats_add_up(&hub, &[(DisconnectReason::Shutdown, CLIENTS as u64)]);
    let stats = hub.stats();
    assert_eq!(stats.frames_out, (CLIENTS * N) as u64, "{stats:?}");
    assert_eq!(
        stats.bytes_out,
        (CLIENTS * N * (LEN + 1)) as u64,
        "{stats:?}"
    );
    assert_eq!(stats.connected, 0);
}

#[test]
fn shutdown_deadline_reports_what_a_stalled_client_did_not_get() {
    const LEN: usize = 1000;
    const N: usize = 3_000;
    let hub = Hub::builder()
        .send_buffer(Some(SEND_BUFFER))
        .queue_bytes(16 << 20)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut stalled = Peer::connect_rcvbuf(hub.local_addr(), TINY);
    let stalled_id = events.connected(stalled.addr());
    let (mut healthy, healthy_id) = join(&hub, &mut events);

    // 3 MB: far more than the stalled client's kernel buffers, far less than its queue.
    // The healthy client reads everything, so its queue is empty at shutdown.
    for seq in 0..N {
        hub.broadcast(numbered(seq, LEN)).unwrap();
    }
    for seq in 0..N {
        assert_eq!(seq_of(&healthy.read_line()), seq);
    }
    let report = hub.shutdown(Duration::from_millis(100)).unwrap();

    assert_eq!((report.clients, report.flushed), (2, 1), "{report:?}");
    assert!(!report.is_complete());
    assert_eq!(report.undelivered.len(), 1, "{report:?}");
    let lost = report.undelivered[0];
    assert_eq!(lost.client, stalled_id);
    assert!(lost.frames > 0 && lost.frames <= N as u64, "{lost:?}");
    assert!(
        lost.bytes > 0 && lost.bytes <= lost.frames * (LEN as u64 + 1),
        "{lost:?}"
    );

    // What the stalled client still gets is exactly the bytes not reported lost.
    let got = stalled.read_to_close();
    assert_eq!(got.len() as u64 + lost.bytes, (N * (LEN + 1)) as u64);
    healthy.expect_closed();
    let mut left: Vec<_> = events.until_end().iter().map(util::departure).collect();
    left.sort_by_key(|d| d.map(|(id, _)| id));
    let mut want = vec![
        Some((stalled_id, DisconnectReason::Shutdown)),
        Some((healthy_id, DisconnectReason::Shutdown)),
    ];
    want.sort_by_key(|d| d.map(|(id, _)| id));
    assert_eq!(left, want);
}

/// `Undelivered::frames` must not count frames the client got in full. The hub coalesces
/// small broadcasts that reach the dispatcher together into one queued chunk; when such a
/// chunk is partly written at the deadline, the frames before the cut were delivered.
/// Several threads broadcast at once so that coalescing is likely (whether it happens
/// depends on scheduling; without it, this test cannot tell right from wrong).
#[test]
fn undelivered_frames_exclude_frames_already_written() {
    const LEN: usize = 1000;
    const THREADS: usize = 4;
    const PER_THREAD: usize = 750;
    const N: usize = THREADS * PER_THREAD;
    // 3 MB: far more than the stalled client's kernel buffers, far less than its queue.
    let hub = Hub::builder()
        .send_buffer(Some(SEND_BUFFER))
        .queue_bytes(16 << 20)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut stalled = Peer::connect_rcvbuf(hub.local_addr(), TINY);
    events.connected(stalled.addr());
    let (mut healthy, _) = join(&hub, &mut events);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let hub = &hub;
            scope.spawn(move || {
                for seq in 0..PER_THREAD {
                    hub.broadcast(numbered(t * PER_THREAD + seq, LEN)).unwrap();
                }
            });
        }
    });
    for _ in 0..N {
        assert_eq!(healthy.read_line().len(), LEN);
    }
    let report = hub.shutdown(Duration::from_millis(100)).unwrap();
    assert_eq!(report.undelivered.len(), 1, "{report:?}");
    let lost = report.undelivered[0];

    let got = stalled.read_to_close();
    assert_eq!(got.len() as u64 + lost.bytes, (N * (LEN + 1)) as u64);
    let whole_lines = got.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(
        whole_lines + lost.frames,
        N as u64,
        "the client got {whole_lines} whole frames, yet {} of {N} are reported undelivered",
        lost.frames
    );
}

/// Shutting a hub down, or dropping it, closes every client (a raw one and a real client
/// library's) after what was queued for it, then with its close (on WebSocket 1001, "hub
/// shut down"); each leaves once, as `Shutdown`.
fn every_client_is_closed_after_what_was_queued(wire: Wire, drop_the_hub: bool) {
    let hub = wire.bind(Hub::builder());
    let mut events = EventLog::subscribe(&hub);
    let (raw, raw_id) = wire.join(&hub, &mut events);
    let (library, library_id) = wire.join_library(&hub, &mut events);
    hub.broadcast("last words").unwrap();
    if drop_the_hub {
        drop(hub);
    } else {
        let report = hub.shutdown(TIMEOUT).expect("shutdown");
        assert_eq!((report.clients, report.flushed), (2, 2), "{report:?}");
        assert!(report.is_complete(), "{report:?}");
        assert_stats_add_up(&hub, &[(DisconnectReason::Shutdown, 2)]);
    }

    for mut client in [raw, library] {
        client.expect_messages(&[b"last words"]);
        client.expect_close(DisconnectReason::Shutdown);
    }
    let left = events.until_end();
    assert_eq!(left.len(), 2, "{left:?}");
    for id in [raw_id, library_id] {
        assert!(left
            .iter()
            .any(|e| util::departure(e) == Some((id, DisconnectReason::Shutdown))));
    }
}

fn shutdown_closes_every_client_after_what_was_queued(wire: Wire) {
    every_client_is_closed_after_what_was_queued(wire, false);
}

fn dropping_the_hub_closes_every_client_after_what_was_queued(wire: Wire) {
    every_client_is_closed_after_what_was_queued(wire, true);
}

per_wire!(
    shutdown_closes_every_client_after_what_was_queued,
    dropping_the_hub_closes_every_client_after_what_was_queued,
);

#[test]
fn shutdown_with_no_clients_is_empty_and_complete() {
    let hub = Hub::bind(LOCAL).unwrap();
    let report = hub.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!((report.clients, report.flushed), (0, 0));
    assert!(report.is_complete());
}

#[test]
fn a_hub_shut_down_on_another_thread_ends_a_blocked_subscriber() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (_peer, id) = join(&hub, &mut events);
    // A blocking iterator on another thread, which ends once the hub is gone. Joining it
    // would hang if it did not, so its result comes through a channel with a timeout.
    let events = events.into_sub();
    let (tx, rx) = mpsc::channel();
    let subscriber = std::thread::spawn(move || {
        let _ = tx.send(events.into_iter().collect::<Vec<_>>());
    });
    hub.shutdown(Duration::from_secs(10)).unwrap();
    let left = rx
        .recv_timeout(TIMEOUT)
        .expect("subscriber iterator did not end");
    subscriber.join().expect("subscriber thread");
    let left: Vec<_> = left.iter().map(util::departure).collect();
    assert_eq!(left, vec![Some((id, DisconnectReason::Shutdown))]);
}
