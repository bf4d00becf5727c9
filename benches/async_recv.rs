//! Events consumed through the `Stream` against the blocking `recv`, on the same hub with
//! the same load: `cargo bench --features stream --bench async_recv [-- C M ROUNDS]`
//! (defaults: 4 clients, 250,000 lines of 100 bytes each, 9 rounds).
//!
//! Two measurements per receiver, each round running `recv` (on a thread) and then the
//! `Stream` (on a tokio current-thread runtime, `block_on` on the same kind of thread):
//!
//! - **live**: C clients write M lines each as fast as TCP lets them while the subscriber
//!   (the default `event_capacity`, 4,096) receives; events/s from the first event to the
//!   last client's `Disconnected`. The dispatcher and the subscriber run at once, with
//!   pauses whenever the subscriber falls behind: the rate the host sees.
//! - **drain**: the same load into a subscription that holds every event
//!   (`event_capacity` C × M + 2C) and is not read until it has them all; then events/s
//!   of the receive loop alone, per second of the receiving thread's CPU time (so that
//!   other load on the machine does not count): the receiver's own cost per event.
//!
//! Reports each round and the median `Stream` / `recv` ratio of each measurement. Loopback
//! only; every wait is bounded by a 60 s deadline.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hubcast::{Event, Hub, Subscription};

const DEADLINE: Duration = Duration::from_secs(60);
const LEN: usize = 99;

/// How a subscription is read.
#[derive(Clone, Copy, Debug)]
enum Receiver {
    /// `Subscription::recv` on a thread.
    Recv,
    /// The `Stream`, on a current-thread runtime.
    Stream,
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let clients = args.first().copied().unwrap_or(4);
    let lines = args.get(1).copied().unwrap_or(250_000);
    let rounds = args.get(2).copied().unwrap_or(9);
    let wire: Arc<Vec<u8>> = Arc::new(
        (0..lines)
            .flat_map(|i| {
                let mut line = format!("{i:08}").into_bytes();
                line.resize(LEN, b'.');
                line.push(b'\n');
                line
            })
            .collect(),
    );
    let total = clients * (lines + 2);
    let live_hub = Hub::bind("127.0.0.1:0").expect("bind");
    let drain_hub = Hub::builder()
        .event_capacity(total)
        .bind("127.0.0.1:0")
        .expect("bind");
    println!(
        "events through the Stream vs recv: C={clients} clients x M={lines} lines of {} bytes, {rounds} rounds",
        LEN + 1
    );
    let (mut live_ratios, mut drain_ratios) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let live = [Receiver::Recv, Receiver::Stream]
            .map(|receiver| live_rate(&live_hub, &wire, clients, receiver));
        let drain = [Receiver::Recv, Receiver::Stream]
            .map(|receiver| drain_rate(&drain_hub, &wire, clients, receiver));
        live_ratios.push(live[1] / live[0]);
        drain_ratios.push(drain[1] / drain[0]);
        println!(
            "round {round}: live recv {:.2}M/s, Stream {:.2}M/s ({:.2}x); drain recv {:.2}M/CPU-s, Stream {:.2}M/CPU-s ({:.2}x)",
            live[0] / 1e6,
            live[1] / 1e6,
            live[1] / live[0],
            drain[0] / 1e6,
            drain[1] / 1e6,
            drain[1] / drain[0],
        );
    }
    println!(
        "median Stream/recv: live {:.2}x, drain {:.2}x",
        median(&mut live_ratios),
        median(&mut drain_ratios)
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Starts `clients` clients, each writing `wire` and closing: a thread each, joined by
/// the caller.
fn start_clients(
    addr: SocketAddr,
    wire: &Arc<Vec<u8>>,
    clients: usize,
) -> Vec<thread::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let wire = Arc::clone(wire);
            let mut stream = TcpStream::connect(addr).expect("connect");
            thread::spawn(move || {
                stream.write_all(&wire).expect("write");
                stream.shutdown(Shutdown::Write).expect("shutdown");
                // Until the hub closes: it has read everything.
                stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
                let _ = stream.read_to_end(&mut Vec::new());
            })
        })
        .collect()
}

/// Receives until `clients` clients have left; returns how many events, and when the
/// first came.
fn receive(sub: &mut Subscription, clients: usize, receiver: Receiver) -> (usize, Instant) {
    let mut count = 0;
    let mut left = 0;
    let mut first = None;
    let mut on_event = |event: Event| {
        first.get_or_insert_with(Instant::now);
        count += 1;
        left += usize::from(matches!(event, Event::Disconnected { .. }));
        left < clients
    };
    match receiver {
        Receiver::Recv => {
            while let Ok(event) = sub.recv_timeout(DEADLINE) {
                if !on_event(event) {
                    break;
                }
            }
        }
        Receiver::Stream => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            rt.block_on(async {
                while let Some(event) = sub.next().await {
                    if !on_event(event) {
                        break;
                    }
                }
            });
        }
    }
    (count, first.expect("no event"))
}

/// Events/s while the clients write.
fn live_rate(hub: &Hub, wire: &Arc<Vec<u8>>, clients: usize, receiver: Receiver) -> f64 {
    let mut sub = hub.subscribe();
    let writers = start_clients(hub.local_addr(), wire, clients);
    let (count, first) = receive(&mut sub, clients, receiver);
    let rate = count as f64 / first.elapsed().as_secs_f64();
    for writer in writers {
        writer.join().expect("client");
    }
    rate
}

/// CPU time of the calling thread, in nanoseconds.
#[allow(unsafe_code)]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; Linux always has this clock.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Events per CPU-second of the receive loop alone, over a subscription that already
/// holds them all.
fn drain_rate(hub: &Hub, wire: &Arc<Vec<u8>>, clients: usize, receiver: Receiver) -> f64 {
    let mut sub = hub.subscribe();
    let writers = start_clients(hub.local_addr(), wire, clients);
    for writer in writers {
        writer.join().expect("client");
    }
    let total = clients * (wire.len() / (LEN + 1) + 2);
    let deadline = Instant::now() + DEADLINE;
    while sub.len() < total {
        assert!(Instant::now() < deadline, "{} of {total} events", sub.len());
        thread::sleep(Duration::from_millis(1));
    }
    let start = thread_cpu_ns();
    let (count, _) = receive(&mut sub, clients, receiver);
    assert_eq!(count, total);
    count as f64 * 1e9 / (thread_cpu_ns() - start) as f64
}
