//! The awaitable sends: `broadcast_async` and the rest, for hosts on an async runtime.
//!
//! Each is the blocking form's `try_` step (`submit` with `wait` off: the message framed and
//! handed to the dispatcher in one step under the batch lock, or nothing done) run in
//! `poll`. Where the blocking form would wait for room in the budget of pending work (the
//! dispatcher behind, or holding host calls under `flow_control`), the future files its
//! waker with the budget (`Shared::register_task`), tries once more, and returns `Pending`.
//! The dispatcher wakes it where it wakes blocked threads: `release`, as it takes commands,
//! and as the hub closes or fails. Nothing is reserved or framed across an await point, so
//! dropping the future sends nothing or (if a poll finished it) the whole message.
//!
//! No runtime: only `std::task`. The futures are `Send` when the message is.

use std::future::Future;
use std::task::{Context, Poll};

use super::Hub;
use crate::command::Target;
use crate::shared::Shared;
use crate::{AsMessage, ClientId, Error, Result};

/// A future's place among the async sends waiting for room; leaves it when dropped, so a
/// cancelled send leaves nothing behind.
struct RoomWaiter<'a> {
    shared: &'a Shared,
    /// Its number on the budget's list of wakers, once filed there.
    slot: Option<u64>,
}

impl RoomWaiter<'_> {
    fn leave(&mut self) {
        if self.slot.is_some() {
            self.shared.deregister_task(&mut self.slot);
        }
    }
}

impl Drop for RoomWaiter<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// How a try went: done (with the send's result), or no room yet.
fn finished(result: Result<()>, shared: &Shared) -> Option<Result<()>> {
    match result {
        // The blocking form would have waited: so does this one, except on the
        // dispatcher's own thread, where nothing would ever make room.
        Err(Error::WouldBlock(_)) if !shared.on_dispatcher_thread() => None,
        done => Some(done),
    }
}

impl Hub {
    /// Sends `msg` to every connected client, waiting for room without blocking a thread.
    /// The awaitable form of [`broadcast`](Self::broadcast).
    ///
    /// Where `broadcast` would block (the dispatcher
    /// [`command_capacity`](crate::HubBuilder::command_capacity) calls or
    /// [`queue_bytes`](crate::HubBuilder::queue_bytes) of frames behind, or under
    /// [`flow_control`](crate::HubBuilder::flow_control) while a client catches up), the
    /// future is pending until the dispatcher makes room, and wakes then; the task's thread
    /// runs other tasks meanwhile. Otherwise it completes on its first poll. It makes the
    /// same promises as `broadcast` once it completes with `Ok`: the message is framed and
    /// handed to the dispatcher in one step, in the poll that completes the future, and
    /// takes its place among every other call there — after every send that completed
    /// before — so one task's sends arrive in the order it awaited them. (While it waits,
    /// sends from other tasks and threads may go first, as with blocked threads.) Works
    /// with any executor (no runtime is needed); the future is `Send` when the message is,
    /// so it can run in `tokio::spawn`.
    ///
    /// **Cancel-safe**: dropping the future before it completes sends nothing; the message
    /// is never partly sent, and nothing stays reserved. A future that completed sent the
    /// whole message.
    ///
    /// Polled on one of the hub's own closures (the dispatcher's thread), it never waits:
    /// it completes with the error `broadcast` gives there.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Self::broadcast): [`Error::MessageTooLarge`],
    /// [`Error::Closed`] once the hub is shutting down (a pending send completes with it as
    /// soon as the shutdown begins), [`Error::Failed`] if the hub died,
    /// [`Error::WouldBlock`] only on the dispatcher's thread.
    ///
    /// ```
    /// # use std::{future::Future, pin::pin, sync::Arc, task::{Context, Poll, Wake}, thread};
    /// # /// A minimal executor: polls on this thread, parks until woken.
    /// # fn block_on<F: Future>(future: F) -> F::Output {
    /// #     struct Unpark(thread::Thread);
    /// #     impl Wake for Unpark {
    /// #         fn wake(self: Arc<Self>) { self.0.unpark() }
    /// #     }
    /// #     let waker = Arc::new(Unpark(thread::current())).into();
    /// #     let mut future = pin!(future);
    /// #     loop {
    /// #         if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
    /// #             return out;
    /// #         }
    /// #         thread::park();
    /// #     }
    /// # }
    /// let hub = hubcast::Hub::builder().flow_control(true).bind("127.0.0.1:0")?;
    /// // In an async fn: `hub.broadcast_async("hello").await?;`
    /// block_on(async {
    ///     hub.broadcast_async("hello").await?;
    ///     hub.broadcast_async(String::from("world")).await
    /// })?;
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn broadcast_async<'a>(
        &'a self,
        msg: impl AsMessage + Send + 'a,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        self.until_room(move || self.submit(Target::All, &msg, false))
    }

    /// Sends `msg` to every connected client except `client`, waiting for room without
    /// blocking a thread: the awaitable form of
    /// [`broadcast_except`](Self::broadcast_except), which waits as
    /// [`broadcast_async`](Self::broadcast_async) does. An unknown `client` is not an
    /// error: everyone gets the message.
    ///
    /// **Cancel-safe**: dropping the future before it completes sends nothing.
    ///
    /// # Errors
    ///
    /// As [`broadcast_async`](Self::broadcast_async).
    ///
    /// ```
    /// # use std::{future::Future, pin::pin, sync::Arc, task::{Context, Poll, Wake}, thread};
    /// # fn block_on<F: Future>(future: F) -> F::Output {
    /// #     struct Unpark(thread::Thread);
    /// #     impl Wake for Unpark {
    /// #         fn wake(self: Arc<Self>) { self.0.unpark() }
    /// #     }
    /// #     let waker = Arc::new(Unpark(thread::current())).into();
    /// #     let mut future = pin!(future);
    /// #     loop {
    /// #         if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
    /// #             return out;
    /// #         }
    /// #         thread::park();
    /// #     }
    /// # }
    /// use hubcast::{Event, Hub};
    ///
    /// let hub = Hub::bind("127.0.0.1:0")?;
    /// let events = hub.subscribe();
    /// # let _client = std::net::TcpStream::connect(hub.local_addr())?;
    /// // A client said something: relay it to the others.
    /// if let Ok(Event::Connected { client, .. }) = events.recv() {
    ///     block_on(hub.broadcast_except_async(client, "client joined"))?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn broadcast_except_async<'a>(
        &'a self,
        client: ClientId,
        msg: impl AsMessage + Send + 'a,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        self.until_room(move || self.submit(Target::AllExcept(client), &msg, false))
    }

    /// Sends `msg` to one client, in order with the broadcasts it receives, waiting for
    /// room without blocking a thread: the awaitable form of [`send_to`](Self::send_to),
    /// which waits as [`broadcast_async`](Self::broadcast_async) does.
    ///
    /// **Cancel-safe**: dropping the future before it completes sends nothing.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownClient`] if `client` is not connected when the future is first
    /// polled, otherwise as [`broadcast_async`](Self::broadcast_async). A client that
    /// leaves after that simply does not get the message.
    ///
    /// ```
    /// # use std::{future::Future, pin::pin, sync::Arc, task::{Context, Poll, Wake}, thread};
    /// # fn block_on<F: Future>(future: F) -> F::Output {
    /// #     struct Unpark(thread::Thread);
    /// #     impl Wake for Unpark {
    /// #         fn wake(self: Arc<Self>) { self.0.unpark() }
    /// #     }
    /// #     let waker = Arc::new(Unpark(thread::current())).into();
    /// #     let mut future = pin!(future);
    /// #     loop {
    /// #         if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
    /// #             return out;
    /// #         }
    /// #         thread::park();
    /// #     }
    /// # }
    /// use std::io::{BufRead, BufReader};
    /// use hubcast::{Event, Hub};
    ///
    /// let hub = Hub::bind("127.0.0.1:0")?;
    /// let events = hub.subscribe();
    /// let client = std::net::TcpStream::connect(hub.local_addr())?;
    /// if let Ok(Event::Connected { client: id, .. }) = events.recv() {
    ///     block_on(hub.send_to_async(id, "welcome"))?;
    /// }
    /// let mut line = String::new();
    /// BufReader::new(client).read_line(&mut line)?;
    /// assert_eq!(line, "welcome\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_to_async<'a>(
        &'a self,
        client: ClientId,
        msg: impl AsMessage + Send + 'a,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        let mut checked = false;
        self.until_room(move || {
            if !checked {
                // Once, as `send_to` checks once before it waits.
                self.check_client(client)?;
                checked = true;
            }
            self.submit(Target::One(client), &msg, false)
        })
    }

    /// Sends `msg` to every member of `topic`, waiting for room without blocking a thread:
    /// the awaitable form of [`publish`](Self::publish), which waits as
    /// [`broadcast_async`](Self::broadcast_async) does. The topic's members are those of
    /// the moment the message is handed to the dispatcher.
    ///
    /// **Cancel-safe**: dropping the future before it completes sends nothing.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish) and [`broadcast_async`](Self::broadcast_async).
    ///
    /// ```
    /// # use std::{future::Future, pin::pin, sync::Arc, task::{Context, Poll, Wake}, thread};
    /// # fn block_on<F: Future>(future: F) -> F::Output {
    /// #     struct Unpark(thread::Thread);
    /// #     impl Wake for Unpark {
    /// #         fn wake(self: Arc<Self>) { self.0.unpark() }
    /// #     }
    /// #     let waker = Arc::new(Unpark(thread::current())).into();
    /// #     let mut future = pin!(future);
    /// #     loop {
    /// #         if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
    /// #             return out;
    /// #         }
    /// #         thread::park();
    /// #     }
    /// # }
    /// let hub = hubcast::Hub::bind("127.0.0.1:0")?;
    /// block_on(hub.publish_async("prices", "EURUSD 1.0842"))?;
    /// # Ok::<(), hubcast::Error>(())
    /// ```
    pub fn publish_async<'a>(
        &'a self,
        topic: &'a str,
        msg: impl AsMessage + Send + 'a,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        self.until_room(move || self.publish_to(topic, None, &msg, false))
    }

    /// Sends `msg` to every member of `topic` except `client`, waiting for room without
    /// blocking a thread: the awaitable form of
    /// [`publish_except`](Self::publish_except), which waits as
    /// [`broadcast_async`](Self::broadcast_async) does.
    ///
    /// **Cancel-safe**: dropping the future before it completes sends nothing.
    ///
    /// # Errors
    ///
    /// As [`publish_async`](Self::publish_async).
    ///
    /// ```
    /// # use std::{future::Future, pin::pin, sync::Arc, task::{Context, Poll, Wake}, thread};
    /// # fn block_on<F: Future>(future: F) -> F::Output {
    /// #     struct Unpark(thread::Thread);
    /// #     impl Wake for Unpark {
    /// #         fn wake(self: Arc<Self>) { self.0.unpark() }
    /// #     }
    /// #     let waker = Arc::new(Unpark(thread::current())).into();
    /// #     let mut future = pin!(future);
    /// #     loop {
    /// #         if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
    /// #             return out;
    /// #         }
    /// #         thread::park();
    /// #     }
    /// # }
    /// use hubcast::{Error, Event, Hub};
    ///
    /// let hub = Hub::bind("127.0.0.1:0")?;
    /// let events = hub.subscribe();
    /// # let _client = std::net::TcpStream::connect(hub.local_addr())?;
    /// if let Ok(Event::Connected { client, .. }) = events.recv() {
    ///     hub.join(client, "lobby")?;
    ///     // What `client` said, to the other members of the lobby.
    ///     block_on(hub.publish_except_async("lobby", client, "hi all"))?;
    ///     // A topic name holds no whitespace.
    ///     let sent = block_on(hub.publish_except_async("no spaces", client, "hi"));
    ///     assert!(matches!(sent, Err(Error::InvalidTopic(_))));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish_except_async<'a>(
        &'a self,
        topic: &'a str,
        client: ClientId,
        msg: impl AsMessage + Send + 'a,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        self.until_room(move || self.publish_to(topic, Some(client), &msg, false))
    }

    /// A future that runs `attempt` (a send that never waits) until it does not fail for
    /// want of room, waiting for the budget's wake-ups in between. Once it completed it
    /// sends nothing again (a poll after completion gives `Ok`).
    fn until_room<'a>(
        &'a self,
        mut attempt: impl FnMut() -> Result<()> + Send + 'a,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        let shared: &Shared = &self.shared;
        let mut waiter = RoomWaiter { shared, slot: None };
        let mut done = false;
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if done {
                return Poll::Ready(Ok(()));
            }
            let result = finished(attempt(), shared).or_else(|| {
                // Filed before trying again: room made from here on wakes this task.
                waiter.register(cx);
                finished(attempt(), shared)
            });
            match result {
                Some(result) => {
                    done = true;
                    waiter.leave();
                    Poll::Ready(result)
                }
                None => {
                    // As `wait_for_room` does: the dispatcher may be idle with commands
                    // waiting (a wake-up it coalesced).
                    shared.wake();
                    Poll::Pending
                }
            }
        })
    }
}

impl RoomWaiter<'_> {
    fn register(&mut self, cx: &Context<'_>) {
        self.shared.register_task(&mut self.slot, cx.waker());
    }
}
