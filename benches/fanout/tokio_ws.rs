//! `tokio-ws`: the WebSocket broadcast server a Rust user writes today, as the bench's
//! baseline for async Rust: tokio's multi-threaded runtime (a worker per core), one task per
//! client accepting the upgrade with tokio-tungstenite, and a `tokio::sync::broadcast`
//! channel with a `Receiver` per client. Each task sends what it receives with
//! `SinkExt::send` (one write per message); a receiver that falls more than the channel's
//! capacity behind gets `Lagged` and skips ahead (counted, and shown as loss).
//!
//! The publisher is a thread of this process calling `Sender::send`, which never waits: in a
//! flood it would lap the slowest receiver within microseconds. So that the comparison with
//! hubcast's `flow_control(true)` is like for like, it waits while the channel holds more
//! than a window of messages not yet seen by every receiver (`Sender::len`): half the
//! capacity, and at most 64 MiB of payload, as the other systems' per-client limits.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::Message;

use crate::server::{spawn_publisher, Job, Out};

/// The channel's capacity, in messages (tokio rounds it up to a power of two).
const CAPACITY: usize = 1 << 16;
/// The publisher waits while this many payload bytes are not yet seen by every receiver.
const WINDOW: usize = 64 << 20;

/// A running `tokio-ws` server.
pub(crate) struct Running {
    pub(crate) connected: Arc<AtomicU64>,
    /// Messages skipped by receivers that lagged, in total.
    pub(crate) lagged: Arc<AtomicU64>,
    pub(crate) jobs: Sender<Job>,
    /// Dropping the runtime would stop every task.
    _runtime: tokio::runtime::Runtime,
}

/// Starts the server on 127.0.0.1 and a free port, and its publisher thread.
pub(crate) fn start(out: &Out) -> io::Result<(Running, u16)> {
    let listener = crate::server::listen()?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .thread_name("tokio-ws")
        .build()?;
    let (tx, _) = broadcast::channel::<Bytes>(CAPACITY);
    let connected = Arc::new(AtomicU64::new(0));
    let lagged = Arc::new(AtomicU64::new(0));
    let (t, c, l) = (tx.clone(), Arc::clone(&connected), Arc::clone(&lagged));
    runtime.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("fanout: tokio-ws: {e}");
                return;
            }
        };
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(client(stream, t.clone(), Arc::clone(&c), Arc::clone(&l)));
        }
    });
    let jobs = spawn_publisher(out, move |msg| {
        let window = (WINDOW / msg.len().max(1)).clamp(1, CAPACITY / 2);
        while tx.len() >= window {
            std::thread::sleep(Duration::from_micros(50));
        }
        // No receiver yet is not an error for a broadcast.
        let _ = tx.send(Bytes::copy_from_slice(msg));
        Ok(())
    })?;
    Ok((
        Running {
            connected,
            lagged,
            jobs,
            _runtime: runtime,
        },
        port,
    ))
}

/// One client's task: the upgrade, then every broadcast message in a binary frame.
async fn client(
    stream: tokio::net::TcpStream,
    tx: broadcast::Sender<Bytes>,
    connected: Arc<AtomicU64>,
    lagged: Arc<AtomicU64>,
) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut rx = tx.subscribe();
    drop(tx);
    connected.fetch_add(1, Relaxed);
    loop {
        match rx.recv().await {
            Ok(msg) => {
                if ws.send(Message::Binary(msg)).await.is_err() {
                    break;
                }
            }
            Err(RecvError::Lagged(n)) => {
                lagged.fetch_add(n, Relaxed);
            }
            Err(RecvError::Closed) => break,
        }
    }
    connected.fetch_sub(1, Relaxed);
}
