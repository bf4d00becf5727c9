//! `broadcast` allocates per message, never per client per message: counted with a global
//! allocator that tallies every allocation in the process while a burst goes out.
//!
//! Kept in its own test binary so no other test allocates while this one counts.

// A `GlobalAlloc` implementation is unsafe by definition; it only forwards to `System`.
#![allow(unsafe_code)]

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;

use hubcast::{Framing, Hub};
use util::{EventLog, Peer, LOCAL, TIMEOUT};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CLIENTS: usize = 200;
const MESSAGES: usize = 5_000;
const SIZE: usize = 100;

#[test]
fn broadcast_does_not_allocate_per_client_per_message() {
    let hub = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .queue_bytes(64 << 20)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut readers = Vec::new();
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..CLIENTS {
        // Reads time out after `TIMEOUT`.
        let mut stream = Peer::connect(hub.local_addr()).stream;
        let done = done_tx.clone();
        readers.push(std::thread::spawn(move || {
            // Reads into one buffer allocated up front: the readers add no allocations.
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = MESSAGES * (SIZE + 4);
            while left > 0 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
            let _ = done.send(left);
        }));
    }
    for _ in 0..CLIENTS {
        events.expect_connected();
    }

    let payload = vec![b'x'; SIZE];
    let before = ALLOCATIONS.load(Relaxed);
    for _ in 0..MESSAGES {
        hub.broadcast(&payload).expect("broadcast");
    }
    for _ in 0..CLIENTS {
        let left = done_rx.recv_timeout(TIMEOUT).expect("reader finished");
        assert_eq!(left, 0, "a client did not get every byte");
    }
    let allocations = ALLOCATIONS.load(Relaxed) - before;

    // Per message: the frame and its shared header. Per client: its queue's ring buffer
    // growing a few times. Per client per message: nothing.
    let bound = (4 * MESSAGES + 16 * CLIENTS) as u64;
    let deliveries = (MESSAGES * CLIENTS) as u64;
    assert!(
        allocations <= bound,
        "{allocations} allocations for {deliveries} deliveries (bound {bound})"
    );
    // Shutting down publishes the dispatcher's last counts.
    hub.shutdown(TIMEOUT).expect("shutdown");
    assert_eq!(hub.stats().frames_out, deliveries);
    for reader in readers {
        reader.join().expect("reader thread");
    }
}
