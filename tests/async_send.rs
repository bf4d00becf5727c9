//! The awaitable sends (`broadcast_async` and the rest) on tokio: a send waiting for room
//! under flow control leaves its worker to other tasks, a cancelled send sends nothing and
//! leaves nothing behind, a shutdown ends a waiting send at once, and each method reaches
//! the clients its blocking form does.

mod util;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use hubcast::{DisconnectReason, Error, Framing, Hub, Result, WouldBlock};
use tokio::runtime::{Builder, Runtime};
use tokio::time::timeout;
use util::{join, numbered, seq_of, EventLog, Peer, LOCAL, TIMEOUT, TINY};

/// The size of the numbered messages of the floods: 64 of them fill a 1 MiB budget.
const SIZE: usize = 16 * 1024;
/// More sends than the budget, the slow client's queue and its kernel buffers hold
/// together, so that one of them must wait while the client does not read.
const FLOOD: usize = 600;

/// A runtime with one thread, which runs every task: a task that blocked it would stop
/// them all.
fn one_worker() -> Runtime {
    Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// A flow-controlled hub with one client that does not read (yet), its receive buffer as
/// small as the kernel allows.
fn held_hub() -> (Arc<Hub>, Peer, EventLog) {
    let hub = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .queue_bytes(1 << 20)
        .flow_control(true)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let slow = Peer::connect_rcvbuf(hub.local_addr(), TINY);
    events.connected(slow.addr());
    (Arc::new(hub), slow, events)
}

/// Polls `send` once: `Some` with its result if it completed, `None` if it is pending.
async fn poll_once(send: Pin<&mut (impl Future<Output = Result<()>> + ?Sized)>) -> Option<()> {
    let mut send = Some(send);
    std::future::poll_fn(|cx| {
        let send = send.take().expect("polled once");
        Poll::Ready(match send.poll(cx) {
            Poll::Ready(result) => {
                result.expect("a send that did not wait");
                Some(())
            }
            Poll::Pending => None,
        })
    })
    .await
}

/// Sends numbered messages from `*next` on, each polled once, until one is pending; returns
/// that one, still pending, and leaves `*next` at its number.
async fn send_until_pending<'a>(
    hub: &'a Hub,
    next: &mut usize,
) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
    let first = *next;
    loop {
        assert!(
            *next < first + FLOOD,
            "{FLOOD} sends went through while the client did not read: none waited"
        );
        let mut send = Box::pin(hub.broadcast_async(numbered(*next, SIZE)));
        if poll_once(send.as_mut()).await.is_none() {
            return send;
        }
        *next += 1;
    }
}

/// Reads the length-prefixed numbered messages `0..=last` except `skipped`, in order and
/// whole: a skipped one that arrived would show as a wrong number.
fn read_numbered(peer: &mut Peer, last: usize, skipped: &[usize]) {
    for i in (0..=last).filter(|i| !skipped.contains(i)) {
        let msg = peer.read_frame();
        assert_eq!(seq_of(&msg), i, "skipped: {skipped:?}");
        assert_eq!(msg.len(), SIZE, "torn message {i}");
    }
}

/// With `flow_control(true)` and a client that does not read, a flood of `broadcast_async`
/// waits for room without holding its worker: on a one-thread runtime another task runs
/// many turns while the flood is part-way; once the client reads, the flood completes and
/// the client has every message in order.
#[test]
fn a_waiting_send_leaves_the_worker_to_other_tasks() {
    let (hub, mut slow, _events) = held_hub();
    let (go, started) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        started.recv_timeout(TIMEOUT).expect("the signal to read");
        read_numbered(&mut slow, FLOOD - 1, &[]);
    });
    let sent = Arc::new(AtomicUsize::new(0));
    one_worker().block_on(async {
        let flood = tokio::spawn({
            let (hub, sent) = (Arc::clone(&hub), Arc::clone(&sent));
            async move {
                for i in 0..FLOOD {
                    hub.broadcast_async(numbered(i, SIZE)).await?;
                    sent.store(i + 1, SeqCst);
                }
                Ok::<(), Error>(())
            }
        });
        // This task and the flood share the one thread: this one runs only while the
        // flood's send is pending.
        let deadline = Instant::now() + TIMEOUT;
        let mut turns = 0;
        while turns < 100 {
            tokio::task::yield_now().await;
            let sent = sent.load(SeqCst);
            assert!(
                sent < FLOOD,
                "the flood went through while the client did not read: no send waited"
            );
            if sent > 0 {
                turns += 1;
            }
            assert!(Instant::now() < deadline, "the flood never started");
        }
        go.send(()).expect("the reader waits");
        timeout(TIMEOUT, flood)
            .await
            .expect("the flood completes once the client reads")
            .expect("the flood task")
            .expect("every send");
    });
    reader
        .join()
        .expect("the client got every message in order");
    let stats = hub.stats();
    assert_eq!(stats.disconnects(DisconnectReason::Slow), 0, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
}

/// A pending send dropped after one poll, or cut by `tokio::time::timeout`, is never
/// delivered, and the sends after it are, in order, with nothing missing.
#[test]
fn a_cancelled_send_sends_nothing_and_later_sends_follow_in_order() {
    let (hub, mut slow, _events) = held_hub();
    let (go, started) = mpsc::channel::<(usize, Vec<usize>)>();
    let reader = thread::spawn(move || {
        let (last, skipped) = started.recv_timeout(TIMEOUT).expect("what to read");
        read_numbered(&mut slow, last, &skipped);
    });
    one_worker().block_on(async {
        let mut next = 0;
        let dropped = send_until_pending(&hub, &mut next).await;
        drop(dropped);
        let mut skipped = vec![next];
        next += 1;
        // While the client still does not read, the next send is pending too; `timeout`
        // cancels it. (Should flow control let it through first, it is delivered.)
        let cut = Duration::from_millis(20);
        match timeout(cut, hub.broadcast_async(numbered(next, SIZE))).await {
            Err(_elapsed) => skipped.push(next),
            Ok(sent) => sent.expect("a send that went through"),
        }
        let last = next + 100;
        go.send((last, skipped)).expect("the reader waits");
        for i in next + 1..=last {
            timeout(TIMEOUT, hub.broadcast_async(numbered(i, SIZE)))
                .await
                .expect("a send completes once the client reads")
                .expect("send");
        }
    });
    reader
        .join()
        .expect("the client got every message but the cancelled ones, in order");
    let stats = hub.stats();
    assert_eq!(stats.disconnects(DisconnectReason::Slow), 0, "{stats:?}");
}

/// A send waiting for room when the hub shuts down completes with `Error::Closed` as the
/// shutdown begins, without waiting for it to end. The dispatcher is held in the accept
/// filter meanwhile, so that it cannot make room: the send is surely waiting, and the
/// shutdown surely not over.
#[test]
fn a_shutdown_ends_a_waiting_send_with_closed() {
    // Until the test lets go, the dispatcher takes no command.
    let (builder, held) = util::held_in_accept_filter(Hub::builder().command_capacity(4));
    let hub = Arc::new(builder.bind(LOCAL).expect("bind"));
    let _peer = Peer::connect(hub.local_addr());
    held.wait_entered();
    // Commands of a message each, until the budget is full.
    let mut sent = 0;
    while hub.try_broadcast(vec![b'x'; SIZE]).is_ok() {
        sent += 1;
        assert!(sent <= 4, "the budget holds 4 commands");
    }
    let closer = one_worker().block_on(async {
        let mut send = Box::pin(hub.broadcast_async(vec![b'y'; SIZE]));
        assert!(poll_once(send.as_mut()).await.is_none(), "the send waits");
        let closer = thread::spawn({
            let hub = Arc::clone(&hub);
            move || hub.shutdown(TIMEOUT)
        });
        let result = timeout(TIMEOUT, send)
            .await
            .expect("the waiting send completes");
        assert!(matches!(result, Err(Error::Closed)), "{result:?}");
        assert!(!closer.is_finished(), "the dispatcher is still held");
        // And every send from now on fails at once.
        let later = timeout(TIMEOUT, hub.broadcast_async("late")).await;
        assert!(matches!(later, Ok(Err(Error::Closed))), "{later:?}");
        closer
    });
    held.release();
    closer
        .join()
        .expect("the shutdown thread")
        .expect("the shutdown");
}

/// Each `_async` method reaches the clients its blocking form does, from tasks spawned on
/// a multi-thread runtime (the futures are `Send`), and fails as it does.
#[test]
fn every_async_send_reaches_the_right_clients() {
    let hub = Arc::new(Hub::bind(LOCAL).expect("bind"));
    let mut events = EventLog::subscribe(&hub);
    let (mut a, id_a) = join(&hub, &mut events);
    let (mut b, id_b) = join(&hub, &mut events);
    let (mut c, _id_c) = join(&hub, &mut events);
    let (gone, id_gone) = join(&hub, &mut events);
    drop(gone);
    events.disconnected(id_gone);
    hub.join(id_a, "t").expect("join");
    hub.join(id_b, "t").expect("join");

    let runtime = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    let sends = runtime.spawn({
        let hub = Arc::clone(&hub);
        async move {
            hub.broadcast_async("1 all").await?;
            hub.broadcast_except_async(id_a, "2 all but a").await?;
            hub.send_to_async(id_b, "3 b").await?;
            hub.publish_async("t", "4 t").await?;
            hub.publish_except_async("t", id_a, String::from("5 t but a"))
                .await?;
            hub.publish_async("nobody", b"6 nobody".to_vec()).await?;
            let unknown = hub.send_to_async(id_gone, "7 gone").await;
            assert!(
                matches!(unknown, Err(Error::UnknownClient(id)) if id == id_gone),
                "{unknown:?}"
            );
            let invalid = hub.publish_async("two words", "8 invalid").await;
            assert!(
                matches!(invalid, Err(Error::InvalidTopic(_))),
                "{invalid:?}"
            );
            let large = hub.broadcast_async(vec![b'x'; 5 << 20]).await;
            assert!(
                matches!(large, Err(Error::MessageTooLarge { .. })),
                "{large:?}"
            );
            hub.broadcast_async("end").await
        }
    });
    runtime
        .block_on(async { timeout(TIMEOUT, sends).await })
        .expect("the sends complete")
        .expect("the send task")
        .expect("every send");

    let lines = |peer: &mut Peer| {
        let mut got = Vec::new();
        loop {
            let line = String::from_utf8(peer.read_line()).expect("UTF-8");
            if line == "end" {
                return got;
            }
            got.push(line);
        }
    };
    assert_eq!(lines(&mut a), ["1 all", "4 t"]);
    assert_eq!(
        lines(&mut b),
        ["1 all", "2 all but a", "3 b", "4 t", "5 t but a"]
    );
    assert_eq!(lines(&mut c), ["1 all", "2 all but a"]);
}

/// Polled on the dispatcher's own thread (in one of the hub's closures, here the accept
/// filter) with the budget full, an async send does not wait for the thread it runs on: it
/// completes at once with the `WouldBlock` error the blocking form gives there.
#[test]
fn an_async_send_in_a_closure_never_waits() {
    /// A waker that only counts: the send must not need it.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let slot: Arc<OnceLock<Weak<Hub>>> = Arc::default();
    let (tx, said) = mpsc::channel();
    let tx = Mutex::new(tx);
    let hub = {
        let slot = Arc::clone(&slot);
        Hub::builder()
            .command_capacity(4)
            .accept_filter(move |_| {
                let hub = slot
                    .get()
                    .and_then(Weak::upgrade)
                    .expect("the hub is bound");
                // Messages of a command each, until the budget is full: the dispatcher
                // cannot take them while it runs this closure.
                let mut sent = 0;
                while hub.try_broadcast(vec![b'x'; SIZE]).is_ok() {
                    sent += 1;
                    assert!(sent <= 4, "the budget holds 4 commands");
                }
                let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
                let mut send = Box::pin(hub.broadcast_async(vec![b'y'; SIZE]));
                let polled = send.as_mut().poll(&mut Context::from_waker(&waker));
                tx.lock().unwrap().send(polled).unwrap();
                true
            })
            .bind(LOCAL)
            .expect("bind")
    };
    let hub = Arc::new(hub);
    slot.set(Arc::downgrade(&hub)).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let peer = Peer::connect(hub.local_addr());
    let polled = said.recv_timeout(TIMEOUT).expect("the accept filter ran");
    assert!(
        matches!(
            polled,
            Poll::Ready(Err(Error::WouldBlock(WouldBlock::Backlog)))
        ),
        "{polled:?}"
    );
    // The hub serves on.
    events.connected(peer.addr());
    hub.broadcast("after").expect("broadcast");
}
