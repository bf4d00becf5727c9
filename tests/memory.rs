//! Memory the hub holds past what it needs: measured in live heap bytes with a counting
//! global allocator, before and after a burst, for the cases that used to leak capacity:
//! payloads the host keeps, read buffers of idle clients, and queues after a backlog.
//!
//! The tests of this binary take turns (one lock), since they share the counter.

// A `GlobalAlloc` implementation is unsafe by definition; it only forwards to `System`.
#![allow(unsafe_code)]

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use hubcast::{Event, Hub};
use util::{Peer, TIMEOUT};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn live() -> isize {
    LIVE.load(Relaxed)
}

const MIB: isize = 1 << 20;

/// 200 clients each send 1,000 lines of 50 bytes in one write; the host keeps the first
/// payload of each. Each kept payload used to pin the client's whole read buffer (10 MiB
/// for the 200), and a client whose last read ended on a frame boundary kept its buffer.
#[test]
fn kept_payloads_and_idle_clients_hold_only_their_bytes() {
    const CLIENTS: usize = 200;
    const LINES: usize = 1000;
    let _turn = turn();
    let hub = Hub::bind("127.0.0.1:0").unwrap();
    let events = hub.subscribe();
    let mut peers = Vec::new();
    for _ in 0..CLIENTS {
        peers.push(Peer::connect(hub.local_addr()));
        assert!(matches!(
            events.recv_timeout(TIMEOUT),
            Ok(Event::Connected { .. })
        ));
    }
    let burst: Vec<u8> = (0..LINES)
        .flat_map(|i| format!("{i:049}\n").into_bytes())
        .collect();
    let before = live();
    for peer in &mut peers {
        peer.write(&burst);
    }
    let mut kept: Vec<Bytes> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..CLIENTS * LINES {
        match events.recv_timeout(TIMEOUT).expect("every line arrives") {
            Event::Message {
                client, payload, ..
            } => {
                if seen.insert(client) {
                    kept.push(payload);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kept.len(), CLIENTS);
    let grown = live() - before;
    // 200 payloads of 50 bytes, plus bookkeeping: far under a megabyte.
    assert!(
        grown < MIB,
        "{grown} bytes still held for {CLIENTS} payloads of 50 bytes"
    );
    drop(peers);
}

/// 100 clients stop reading while 600 messages of 4 KiB (one queue entry each) are
/// queued for each, then read them all. A queue's ring used to keep the capacity of its
/// largest backlog for good.
#[test]
fn a_drained_queue_gives_its_memory_back() {
    const CLIENTS: usize = 100;
    const MESSAGES: usize = 600;
    const SIZE: usize = 4096;
    let _turn = turn();
    let hub = Hub::builder()
        .queue_bytes(8 << 20)
        .bind("127.0.0.1:0")
        .unwrap();
    let events = hub.subscribe();
    let mut peers = Vec::new();
    for _ in 0..CLIENTS {
        peers.push(Peer::connect(hub.local_addr()));
        assert!(matches!(
            events.recv_timeout(TIMEOUT),
            Ok(Event::Connected { .. })
        ));
    }
    let before = live();
    let line = vec![b'q'; SIZE - 1];
    for _ in 0..MESSAGES {
        hub.broadcast(&line).unwrap();
    }
    let readers: Vec<_> = peers
        .into_iter()
        .map(|mut peer| {
            std::thread::spawn(move || {
                let mut rest = MESSAGES * SIZE;
                let mut buf = vec![0; 64 * 1024];
                while rest > 0 {
                    let n = peer.stream.read(&mut buf).expect("read");
                    assert!(n > 0, "closed with {rest} bytes to go");
                    rest -= n;
                }
                peer
            })
        })
        .collect();
    let peers: Vec<_> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    // Every byte arrived, so every queue is empty.
    let grown = live() - before;
    assert!(
        grown < 2 * MIB,
        "{grown} bytes still held by {CLIENTS} drained queues"
    );
    assert_eq!(hub.stats().disconnects.total(), 0);
    drop(peers);
}
