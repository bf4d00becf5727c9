//! The hub's threads end when it shuts down or is dropped.
//!
//! This binary holds a single test: it counts the threads of the whole process, so no
//! other test may run beside it.

mod util;

use std::time::{Duration, Instant};

use hubcast::Hub;
use util::{join, thread_count, thread_names, EventLog, LOCAL, TIMEOUT};

/// Waits for the thread count to come back to `want`.
///
/// `JoinHandle::join` returns when the thread has cleared its tid, a moment before the
/// kernel removes it from `/proc/self/task`, so the count may lag by a few microseconds.
/// There is nothing to block on for that, hence a bounded spin that yields.
fn wait_for_thread_count(want: usize) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = thread_count();
        if now == want || Instant::now() >= deadline {
            return now;
        }
        std::thread::yield_now();
    }
}

fn dispatchers() -> usize {
    // The whole name: Linux keeps 15 bytes of it.
    thread_names()
        .iter()
        .filter(|name| name.as_str() == "hubcast-loop")
        .count()
}

#[test]
fn shutdown_and_drop_join_the_dispatcher_thread() {
    let before = thread_count();
    assert_eq!(dispatchers(), 0);

    // Shutdown.
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let peers: Vec<_> = (0..20).map(|_| join(&hub, &mut events).0).collect();
    // One thread however many clients.
    assert_eq!(thread_count(), before + 1);
    assert_eq!(dispatchers(), 1);
    hub.broadcast("bye").unwrap();
    let report = hub.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(report.clients, 20);
    assert_eq!(
        wait_for_thread_count(before),
        before,
        "threads left: {:?}",
        thread_names()
    );
    assert_eq!(dispatchers(), 0);
    drop((hub, events, peers));

    // Drop without shutdown.
    let hub = Hub::builder()
        .linger(Duration::from_secs(5))
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (_peer, _) = join(&hub, &mut events);
    assert_eq!(thread_count(), before + 1);
    drop(hub);
    assert_eq!(
        wait_for_thread_count(before),
        before,
        "threads left: {:?}",
        thread_names()
    );
    assert_eq!(dispatchers(), 0);
}
