//! Relay mode: what clients send reaches the other clients, batched, in order, exactly
//! once, within every bound, and the host's events stay in order around it.

mod util;

use hubcast::{DisconnectReason, Event, Hub, Relay};
use util::{expect_connected, Peer, TIMEOUT};

/// A client that floods and never reads is cut as slow by the relay of its own frames
/// (`Relay::All` sends them back to it). Its `Disconnected` must still be its last event:
/// subscribers used to see it before its last `Message`.
#[test]
fn no_event_of_a_client_follows_its_disconnect() {
    let hub = Hub::builder()
        .relay(Relay::All)
        .queue_bytes(64 * 1024)
        .max_frame(1024)
        .bind("127.0.0.1:0")
        .unwrap();
    let events = hub.subscribe();
    let mut flooder = Peer::connect_small_rcvbuf(hub.local_addr(), 4096);
    let id = expect_connected(&events);
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let line = [vec![b'f'; 1000], b"\n".to_vec()].concat();
        // Stops when the hub closes the connection.
        for _ in 0..10_000 {
            if flooder.stream.write_all(&line).is_err() {
                break;
            }
        }
    });
    let mut messages = 0;
    loop {
        match events.recv_timeout(TIMEOUT).expect("an event") {
            Event::Message { client, .. } if client == id => messages += 1,
            Event::Disconnected { client, reason, .. } if client == id => {
                assert_eq!(reason, DisconnectReason::Slow);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(messages > 0);
    writer.join().expect("writer");
    hub.shutdown(TIMEOUT).unwrap();
    let after: Vec<Event> = util::drain_to_end(&events);
    assert!(
        after.is_empty(),
        "events after the client's Disconnected: {after:?}"
    );
}
