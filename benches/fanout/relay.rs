//! Relay mode: the publisher is an ordinary TCP client of the system under test, as in a
//! chat, and the server forwards each line it reads to every other client.
//!
//! Servers (run by `--serve NAME` in their own process, like the others):
//! - `hubcast-relay`: configured as `examples/chat_server.rs` is: `Framing::Lines` (the
//!   default), `Relay::Others`, every other knob at its default, and a host thread that
//!   subscribes and drains every event as the example does (matching on each, with the
//!   same `log` calls; no logger is installed, so they cost what the example's filtered
//!   `debug!` costs).
//! - `hubcast-hostrelay`: the README's loop: `Relay::Off`, `flow_control(true)`, and one host thread
//!   calling `hub.broadcast_except(client, payload)` for every `Event::Message`.
//! - `thread-relay`: the tutorial's design: a thread per client reading lines and, under
//!   one lock on the client list, a blocking `write_all` of each line to every other client.
//! - `ceiling-relay`: one `mio` event loop, no hub logic: reads any client, cuts at the
//!   last newline (a per-client buffer keeps the partial line), and queues the whole lines
//!   read, once, for every other client (per-client queues of shared batches of at most
//!   64 KiB: nothing is copied per client and nothing is dropped); writes each client's
//!   queue with `writev`s gathering up to 64 batches, as the host-broadcast ceiling does
//!   (one 64 KiB batch per write made it slower than hubcast at 16 KiB). It stops reading while a client has 64 MiB queued (the bench's
//!   window), so a flood does not fill memory; below that, queues grow as they must.
//!
//! `max_clients` is raised above the default 10,000 only where a cell needs more (N =
//! 10,000 plus the publisher); every system's sockets get `TCP_NODELAY`.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, BufWriter, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hubcast::{Event, Hub, Relay};
use mio::{Events, Interest, Poll, Token};

use crate::peers::Published;
use crate::proto::Stamp;
use crate::server::{publish_loop_with, Job, PUB_THREAD};
use crate::sys::{now_ns, thread_cpu_ns};

/// Name of the host threads of the hubcast relay servers (event drain, host relay loop),
/// so their CPU time can be told apart.
pub(crate) const HOST_THREAD: &str = "fanout-host";
/// hubcast's send buffer default, also used by the ceiling.
const SEND_BUFFER: usize = 128 * 1024;
/// The ceiling reads this much at a time: the whole lines of one read are one batch, of at
/// most 64 KiB (plus a partial line carried over).
const READ_CHUNK: usize = 64 * 1024;
/// Batches one `writev` gathers, as the host-broadcast ceiling does.
const WRITE_BATCHES: usize = 64;
/// Bytes read from one client before the others get a turn.
const READ_BUDGET: usize = 256 * 1024;
/// The ceiling stops reading while a client has this much queued.
const HIGH_WATER: usize = 64 << 20;
/// hubcast's default `max_clients`.
const HUB_DEFAULT_MAX_CLIENTS: usize = 10_000;

/// What the control loop asks of a running relay server.
pub(crate) enum Running {
    Hub(Arc<Hub>),
    Counted(Arc<AtomicU64>),
}

/// Starts relay server `name`; returns it and its port.
pub(crate) fn start(name: &str, max_clients: usize) -> io::Result<(Running, u16)> {
    let max_clients = max_clients.max(HUB_DEFAULT_MAX_CLIENTS);
    match name {
        "hubcast-relay" => {
            // As examples/chat_server.rs: relay mode forwards each client's lines to the
            // others inside the hub; the host only watches the events.
            let hub = Arc::new(
                Hub::builder()
                    .relay(Relay::Others)
                    .max_clients(max_clients)
                    .bind("127.0.0.1:0")
                    .map_err(io::Error::other)?,
            );
            watch_events(&hub)?;
            let port = hub.local_addr().port();
            Ok((Running::Hub(hub), port))
        }
        "hubcast-hostrelay" => {
            // The README's loop: every default but `flow_control(true)`, which the README
            // sets so that the loop never broadcasts faster than readers take it.
            let hub = Arc::new(
                Hub::builder()
                    .flow_control(true)
                    .max_clients(max_clients)
                    .bind("127.0.0.1:0")
                    .map_err(io::Error::other)?,
            );
            let events = hub.subscribe();
            let h = Arc::clone(&hub);
            std::thread::Builder::new()
                .name(HOST_THREAD.into())
                .spawn(move || {
                    for event in events {
                        if let Event::Message {
                            client, payload, ..
                        } = event
                        {
                            if h.broadcast_except(client, payload).is_err() {
                                break;
                            }
                        }
                    }
                })?;
            let port = hub.local_addr().port();
            Ok((Running::Hub(hub), port))
        }
        "thread-relay" => {
            let listener = crate::server::listen()?;
            let port = listener.local_addr()?.port();
            let connected = Arc::new(AtomicU64::new(0));
            let relay = Arc::new(ThreadRelay {
                clients: Mutex::new(Vec::new()),
                connected: Arc::clone(&connected),
                spawn_failures: AtomicU64::new(0),
            });
            std::thread::Builder::new()
                .name("tutorial-accept".into())
                .spawn(move || relay.accept(listener))?;
            Ok((Running::Counted(connected), port))
        }
        "ceiling-relay" => {
            let std_listener = crate::server::listen()?;
            let port = std_listener.local_addr()?.port();
            std_listener.set_nonblocking(true)?;
            let listener = mio::net::TcpListener::from_std(std_listener);
            let poll = Poll::new()?;
            let connected = Arc::new(AtomicU64::new(0));
            let c = Arc::clone(&connected);
            std::thread::Builder::new()
                .name("ceiling-relay".into())
                .spawn(move || {
                    let mut ceiling = CeilingRelay {
                        poll,
                        listener,
                        conns: Vec::new(),
                        connected: c,
                        readable: Vec::new(),
                        writing: Vec::new(),
                        scratch: vec![0; READ_CHUNK],
                    };
                    if let Err(e) = ceiling.run() {
                        eprintln!("fanout: ceiling-relay failed: {e}");
                    }
                })?;
            Ok((Running::Counted(connected), port))
        }
        other => Err(io::Error::other(format!("unknown system {other:?}"))),
    }
}

/// The host thread of a relay-mode hub, as examples/chat_server.rs has it: subscribes and
/// drains every event, matching on each with the example's `log` calls (no logger is
/// installed, so they cost what the example's filtered `debug!` costs).
pub(crate) fn watch_events(hub: &Hub) -> io::Result<()> {
    let events = hub.subscribe();
    std::thread::Builder::new()
        .name(HOST_THREAD.into())
        .spawn(move || {
            for event in events {
                match event {
                    Event::Connected { client, addr, .. } => {
                        log::info!("{client} joined from {addr}")
                    }
                    Event::Disconnected { client, reason, .. } => {
                        log::info!("{client} left: {reason}")
                    }
                    Event::Message {
                        client, payload, ..
                    } => {
                        log::debug!("{client}: {}", String::from_utf8_lossy(&payload));
                    }
                    _ => {}
                }
            }
        })?;
    Ok(())
}

/// The tutorial's chat server: every client in one list, a thread per client.
struct ThreadRelay {
    clients: Mutex<Vec<(u64, Arc<std::net::TcpStream>)>>,
    connected: Arc<AtomicU64>,
    spawn_failures: AtomicU64,
}

impl ThreadRelay {
    fn accept(self: Arc<Self>, listener: std::net::TcpListener) {
        let mut next_id = 0u64;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            let id = next_id;
            next_id += 1;
            // One socket shared by the client's thread (reading) and whoever relays to it
            // (writing), so a client costs one file descriptor as in the other systems.
            let stream = Arc::new(stream);
            self.clients
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((id, Arc::clone(&stream)));
            self.connected.fetch_add(1, Relaxed);
            let me = Arc::clone(&self);
            let spawned = std::thread::Builder::new()
                .name("tutorial-client".into())
                .spawn(move || me.serve(id, &stream));
            if let Err(e) = spawned {
                if self.spawn_failures.fetch_add(1, Relaxed) == 0 {
                    eprintln!(
                        "fanout: thread-per-client relay could not create thread #{}: {e}",
                        self.connected.load(Relaxed)
                    );
                }
            }
        }
    }

    /// The client's thread: each line it sends goes to every other client, under the lock.
    fn serve(&self, id: u64, stream: &std::net::TcpStream) {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(n) if n > 0 && line.ends_with(b"\n") => {}
                _ => break,
            }
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            // A client whose write fails is dropped.
            clients.retain(|(other, c)| *other == id || (&**c).write_all(&line).is_ok());
        }
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let before = clients.len();
        clients.retain(|(other, _)| *other != id);
        if clients.len() < before {
            self.connected.fetch_sub(1, Relaxed);
        }
    }
}

const LISTENER: Token = Token(usize::MAX - 1);

struct Conn {
    stream: mio::net::TcpStream,
    /// The start of a line not yet complete.
    partial: Vec<u8>,
    /// Whole lines to write, shared with the other clients' queues; `off` bytes of the
    /// first are written.
    queue: VecDeque<Rc<[u8]>>,
    off: usize,
    queued: usize,
    readable: bool,
    writable: bool,
    in_readable: bool,
    in_writing: bool,
    dead: bool,
}

/// The ceiling: a line relay with no hub logic at all.
struct CeilingRelay {
    poll: Poll,
    listener: mio::net::TcpListener,
    conns: Vec<Conn>,
    connected: Arc<AtomicU64>,
    /// Clients that may have input (edge-triggered readiness: until a read would block).
    readable: Vec<usize>,
    /// Clients with something queued.
    writing: Vec<usize>,
    scratch: Vec<u8>,
}

impl CeilingRelay {
    fn run(&mut self) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)?;
        let mut events = Events::with_capacity(1024);
        loop {
            let paused = self.conns.iter().any(|c| c.queued >= HIGH_WATER);
            let busy = (!paused && !self.readable.is_empty())
                || self
                    .writing
                    .iter()
                    .any(|&i| self.conns[i].writable && !self.conns[i].dead);
            let timeout = if busy {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for e in events.iter() {
                if e.token() == LISTENER {
                    self.accept();
                    continue;
                }
                let i = e.token().0;
                let Some(c) = self.conns.get_mut(i) else {
                    continue;
                };
                if e.is_readable() || e.is_read_closed() || e.is_error() {
                    c.readable = true;
                    if !c.in_readable {
                        c.in_readable = true;
                        self.readable.push(i);
                    }
                }
                if e.is_writable() {
                    c.writable = true;
                }
            }
            if !paused {
                self.read_all();
            }
            self.write_all();
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let sock = socket2::SockRef::from(&stream);
                    let _ = sock.set_nodelay(true);
                    let _ = sock.set_send_buffer_size(SEND_BUFFER);
                    let i = self.conns.len();
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(i),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    self.conns.push(Conn {
                        stream,
                        partial: Vec::new(),
                        queue: VecDeque::new(),
                        off: 0,
                        queued: 0,
                        readable: true,
                        writable: true,
                        in_readable: true,
                        in_writing: false,
                        dead: false,
                    });
                    self.readable.push(i);
                    self.connected.fetch_add(1, Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.dead {
            return;
        }
        c.dead = true;
        c.queue.clear();
        c.queued = 0;
        c.partial = Vec::new();
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.connected.fetch_sub(1, Relaxed);
    }

    /// Reads every client that may have input, each up to its budget.
    fn read_all(&mut self) {
        let pending = std::mem::take(&mut self.readable);
        let mut again = Vec::new();
        for i in pending {
            self.conns[i].in_readable = false;
            if self.conns[i].dead || !self.conns[i].readable {
                continue;
            }
            if self.read_one(i) {
                self.conns[i].in_readable = true;
                again.push(i);
            }
        }
        // Clients added while reading (none: accepting is separate) and those with more.
        again.append(&mut self.readable);
        self.readable = again;
    }

    /// Reads client `i` until it would block or its budget is spent; returns whether it
    /// may have more.
    fn read_one(&mut self, i: usize) -> bool {
        let mut budget = READ_BUDGET;
        loop {
            let n = match self.conns[i].stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.close(i);
                    return false;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.conns[i].readable = false;
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(i);
                    return false;
                }
            };
            let data = &self.scratch[..n];
            if let Some(last) = data.iter().rposition(|&b| b == b'\n') {
                let c = &mut self.conns[i];
                let chunk: Rc<[u8]> = if c.partial.is_empty() {
                    Rc::from(&data[..=last])
                } else {
                    c.partial.extend_from_slice(&data[..=last]);
                    let whole = Rc::from(&c.partial[..]);
                    c.partial.clear();
                    whole
                };
                c.partial.extend_from_slice(&data[last + 1..]);
                self.fan_out(i, &chunk);
            } else {
                self.conns[i].partial.extend_from_slice(data);
            }
            budget = budget.saturating_sub(n);
            if budget == 0 || self.conns.iter().any(|c| c.queued >= HIGH_WATER) {
                return true;
            }
        }
    }

    /// Queues `chunk` for every client but `from`.
    fn fan_out(&mut self, from: usize, chunk: &Rc<[u8]>) {
        for (j, c) in self.conns.iter_mut().enumerate() {
            if j == from || c.dead {
                continue;
            }
            c.queue.push_back(Rc::clone(chunk));
            c.queued += chunk.len();
            if !c.in_writing {
                c.in_writing = true;
                self.writing.push(j);
            }
        }
    }

    /// Writes every writable client's queue until it is empty or the socket is full.
    fn write_all(&mut self) {
        let pending = std::mem::take(&mut self.writing);
        let mut left = Vec::with_capacity(pending.len());
        for i in pending {
            if self.conns[i].dead {
                self.conns[i].in_writing = false;
                continue;
            }
            if self.write_one(i) {
                left.push(i);
            } else {
                self.conns[i].in_writing = false;
            }
        }
        self.writing = left;
    }

    /// Writes client `i`; returns whether something is left queued.
    fn write_one(&mut self, i: usize) -> bool {
        let c = &mut self.conns[i];
        let mut failed = false;
        while c.writable && !c.queue.is_empty() {
            let mut iov: [IoSlice<'_>; WRITE_BATCHES] = [IoSlice::new(&[]); WRITE_BATCHES];
            let mut k = 0;
            for (j, chunk) in c.queue.iter().take(WRITE_BATCHES).enumerate() {
                iov[k] = IoSlice::new(if j == 0 { &chunk[c.off..] } else { &chunk[..] });
                k += 1;
            }
            match c.stream.write_vectored(&iov[..k]) {
                Ok(mut n) => {
                    c.queued -= n;
                    while n > 0 {
                        let first = c.queue[0].len() - c.off;
                        if n >= first {
                            n -= first;
                            c.queue.pop_front();
                            c.off = 0;
                        } else {
                            c.off += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            self.close(i);
            return false;
        }
        !self.conns[i].queue.is_empty()
    }
}

/// The publisher of the line-framed relay systems: one TCP connection, made before the
/// round like the subscribers', that stays for the whole cell; each job is written as
/// `S`-byte lines through a 64 KiB buffer (flushed per message at a fixed rate). A thread
/// reads and discards whatever the server sends it, counting the bytes (a relay that
/// excludes the sender sends it nothing).
pub(crate) struct LinePub {
    stream: TcpStream,
    received: Arc<AtomicU64>,
    /// When the drain thread saw the connection end (end of stream or an error), in
    /// `now_ns` time; 0 while it has not.
    closed_at: Arc<AtomicU64>,
    drain: Option<JoinHandle<()>>,
}

impl LinePub {
    pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<LinePub> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        let received = Arc::new(AtomicU64::new(0));
        let mut reader = stream.try_clone()?;
        let r = Arc::clone(&received);
        let closed_at = Arc::new(AtomicU64::new(0));
        let closed = Arc::clone(&closed_at);
        let drain = std::thread::Builder::new()
            .name("fanout-pub-drain".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            r.fetch_add(n as u64, Relaxed);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                closed.store(now_ns(), Relaxed);
            })?;
        Ok(LinePub {
            stream,
            received,
            closed_at,
            drain: Some(drain),
        })
    }

    /// The publisher's connection, for a publisher of another shape than [`Job`]s.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// When the connection ended (the server closed it, or it failed), if it has.
    pub(crate) fn closed_at(&self) -> Option<u64> {
        Some(self.closed_at.load(Relaxed)).filter(|&t| t > 0)
    }

    /// Starts writing `job` on a thread of this process.
    pub(crate) fn spawn(&self, job: Job) -> io::Result<JoinHandle<io::Result<Published>>> {
        let stream = self.stream.try_clone()?;
        let received = Arc::clone(&self.received);
        std::thread::Builder::new()
            .name(PUB_THREAD.into())
            .spawn(move || {
                let cpu0 = thread_cpu_ns();
                let before = received.load(Relaxed);
                let mut w = BufWriter::with_capacity(64 * 1024, stream);
                let paced = job.rate > 0.0;
                let t0 = now_ns();
                let mut report = publish_loop_with(&job, Stamp::Text, |msg| {
                    w.write_all(msg)?;
                    w.write_all(b"\n")?;
                    if paced {
                        w.flush()?;
                    }
                    Ok(())
                })?;
                w.flush()?;
                // Done when the last byte is in the kernel, not in our buffer.
                report.elapsed = now_ns() - t0;
                let mut published = Published {
                    report,
                    cpu_ns: thread_cpu_ns() - cpu0,
                    ..Published::default()
                };
                let echoed = received.load(Relaxed) - before;
                if echoed > 0 {
                    published
                        .notes
                        .push(format!("the publisher was sent {echoed} bytes"));
                }
                Ok(published)
            })
    }
}

impl Drop for LinePub {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(h) = self.drain.take() {
            let _ = h.join();
        }
    }
}
