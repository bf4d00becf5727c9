//! Any `Duration` the host passes is accepted: one too long to represent means "no limit",
//! never a panic (in `bind`, in the dispatcher, in `shutdown` or in `Drop`).

mod util;

use std::time::Duration;

use hubcast::{Auth, Error, Hub, RecvTimeoutError};
use util::{EventLog, Peer, TINY};

#[test]
fn the_longest_durations_mean_no_limit() {
    let hub = Hub::builder()
        .linger(Duration::MAX)
        .handshake_timeout(Duration::MAX)
        .idle_timeout(Some(Duration::MAX))
        .heartbeat(Some(Duration::MAX))
        .write_timeout(Some(Duration::MAX))
        .keepalive(Some(Duration::MAX))
        .authenticate(|_| Auth::Accept)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    peer.write(b"let me in\n");
    let id = events.expect_connected();
    hub.broadcast("one").unwrap();
    assert_eq!(peer.read_line(), b"one");
    // A client kicked with no linger deadline still gets what was queued, then EOF.
    hub.send_to(id, "two").unwrap();
    hub.disconnect(id).unwrap();
    assert_eq!(peer.read_line(), b"two");
    peer.expect_closed();
    assert!(!hub.is_closed());
    let report = hub.shutdown(Duration::MAX).expect("shutdown");
    assert!(report.is_complete());
    // An ended subscription answers at once, whatever the timeout.
    let mut left = 0;
    loop {
        match events.sub().recv_timeout(Duration::MAX) {
            Ok(_) => left += 1,
            Err(RecvTimeoutError::Closed) => break,
            Err(err) => panic!("unexpected {err:?}"),
        }
        assert!(left < 10, "the subscription did not end");
    }
}

#[test]
fn dropping_a_hub_with_the_longest_linger_writes_out_and_returns() {
    let hub = Hub::builder()
        .linger(Duration::MAX)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    events.expect_connected();
    hub.broadcast("before the drop").unwrap();
    let reader = std::thread::spawn(move || {
        let line = peer.read_line();
        peer.expect_closed();
        line
    });
    drop(hub);
    assert_eq!(
        reader.join().expect("the reader got its line"),
        b"before the drop"
    );
}

/// With no deadline, a leaving client that reads nothing is still closed once its writes
/// make no progress for `write_timeout`: a shutdown cannot hang on a stalled client.
#[test]
fn a_shutdown_without_deadline_still_closes_a_stalled_client() {
    let hub = Hub::builder()
        .write_timeout(Some(Duration::from_millis(200)))
        .bind("127.0.0.1:0")
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let stalled = Peer::connect_rcvbuf(hub.local_addr(), TINY);
    events.expect_connected();
    // Far more than the socket buffers hold, within the queue bound.
    let line = vec![b'x'; 64 * 1024];
    for _ in 0..40 {
        hub.broadcast(&line).unwrap();
    }
    let report = hub.shutdown(Duration::MAX).expect("shutdown");
    assert_eq!(report.undelivered.len(), 1, "{report:?}");
    drop(stalled);
}

#[test]
fn a_zero_timeout_is_a_configuration_error() {
    for builder in [
        Hub::builder().idle_timeout(Some(Duration::ZERO)),
        Hub::builder().heartbeat(Some(Duration::ZERO)),
        Hub::builder().write_timeout(Some(Duration::ZERO)),
    ] {
        assert!(matches!(builder.bind("127.0.0.1:0"), Err(Error::Config(_))));
    }
    // Below what can work: heartbeats under the 10 ms deadline check (two intervals went
    // by before the first ping, and every client was cut as unresponsive), keep-alive
    // under the kernel's 1 s (every connection logged a failed socket option).
    for (builder, says) in [
        (
            Hub::builder().heartbeat(Some(Duration::from_nanos(1))),
            "heartbeat",
        ),
        (
            Hub::builder().heartbeat(Some(Duration::from_millis(9))),
            "heartbeat",
        ),
        (Hub::builder().keepalive(Some(Duration::ZERO)), "keep-alive"),
        (
            Hub::builder().keepalive(Some(Duration::from_millis(999))),
            "keep-alive",
        ),
    ] {
        match builder.bind("127.0.0.1:0") {
            Err(Error::Config(text)) => assert!(text.contains(says), "{text}"),
            other => panic!("expected a config error about the {says}, got {other:?}"),
        }
    }
    for builder in [
        Hub::builder().heartbeat(Some(Duration::from_millis(10))),
        Hub::builder().keepalive(Some(Duration::from_secs(1))),
        Hub::builder().keepalive(None),
    ] {
        drop(builder.bind("127.0.0.1:0").unwrap());
    }
    // The rest accept zero: no linger, no time to shake hands.
    let hub = Hub::builder()
        .linger(Duration::ZERO)
        .handshake_timeout(Duration::ZERO)
        .bind("127.0.0.1:0")
        .unwrap();
    drop(hub);
}
