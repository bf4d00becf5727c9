//! The chat server, scaled out: run it several times against one NATS server and a line
//! typed by a client of any of them reaches the clients of all of them.
//!
//! ```text
//! nats-server -a 127.0.0.1 -p 4222 &                       # or any NATS server
//! cargo run --release --features nats --example cluster_chat -- 127.0.0.1:9999
//! cargo run --release --features nats --example cluster_chat -- 127.0.0.1:9998
//! nc 127.0.0.1 9999                                         # and, elsewhere,
//! nc 127.0.0.1 9998
//! ```
//!
//! Usage: `cluster_chat [--nats URL[,URL…]] [--prefix PREFIX] [ADDR]`. Defaults: NATS at
//! `nats://127.0.0.1:4222`, prefix `hubcast`, ADDR `127.0.0.1:9999` (port 0 lets the OS
//! choose).
//!
//! Prints `listening on ADDR` once its clients can connect, then `joined the cluster` once
//! it is connected to NATS: a line typed before that reaches this hub's clients only (the
//! others' count it in `lost` at exit), so a script waits for the second line. If NATS has
//! not answered within 5 s it says so on stderr and goes on serving its own clients; it
//! joins by itself when NATS is there, and rejoins after an outage. The hub logs the
//! cluster connection's changes (and why NATS cannot be reached) to stderr, with joins and
//! leaves; it exits cleanly on Ctrl-C or SIGTERM.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubcast::{Cluster, ClusterState, Event, Hub, RecvTimeoutError, Relay};

mod common;

/// The usage, for `--help` and for a bad command line.
const USAGE: &str = "usage: cluster_chat [--nats URL[,URL...]] [--prefix PREFIX] [ADDR]
  --nats URL       the NATS servers, comma-separated (default nats://127.0.0.1:4222)
  --prefix PREFIX  the subject prefix that names the cluster (default hubcast)
  ADDR             where to listen, HOST:PORT (default 127.0.0.1:9999; port 0 lets the system choose)
  Prints `listening on ADDR`, then `joined the cluster` once connected to NATS.";

/// How long to wait for NATS before saying that this hub serves its own clients only.
const JOIN_PATIENCE: Duration = Duration::from_secs(5);

/// Runs the example; see `common` for how it answers `--help`, a bad command line and a
/// failure.
fn main() -> ExitCode {
    let args = common::Args::parse(USAGE, 1, &["--nats", "--prefix"]);
    let nats = args.option("--nats").unwrap_or("nats://127.0.0.1:4222");
    let prefix = args.option("--prefix").unwrap_or("hubcast");
    common::exit(run(nats, prefix, &args.addr(0, "127.0.0.1:9999")))
}

fn run(nats: &str, prefix: &str, addr: &str) -> Result<(), Box<dyn Error>> {
    common::init_logging("info");
    let cluster = Cluster::nats(nats.split(',')).prefix(prefix);
    let hub = Hub::builder()
        .relay(Relay::Others)
        .cluster(cluster)
        .bind(addr)?;
    let hub = Arc::new(hub);
    let events = hub.subscribe();

    let signalled = Arc::clone(&hub);
    ctrlc::set_handler(move || match signalled.shutdown(Duration::from_secs(2)) {
        Ok(_) | Err(hubcast::Error::Closed) => {}
        Err(err) => log::error!("shutdown: {err}"),
    })?;
    println!("listening on {}", hub.local_addr());

    // The hub logs every change of the cluster connection itself; here only the first
    // connection is announced, on stdout, for whoever waits to chat across hubs.
    let mut joined = hub.stats().cluster.connected;
    if joined {
        println!("joined the cluster");
    }
    let patience = Instant::now() + JOIN_PATIENCE;
    let mut waiting = !joined;
    loop {
        let next = if waiting {
            events.recv_timeout(patience.saturating_duration_since(Instant::now()))
        } else {
            events.recv().map_err(|_| RecvTimeoutError::Closed)
        };
        let event = match next {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                waiting = false;
                log::warn!(
                    "not connected to NATS after {JOIN_PATIENCE:?}: serving this hub's clients \
                     only until NATS answers"
                );
                continue;
            }
            // The hub has stopped (`Closed`) and every event is in.
            Err(_) => break,
        };
        match event {
            Event::Connected { client, addr, .. } => log::info!("{client} joined from {addr}"),
            Event::Disconnected { client, reason, .. } => log::info!("{client} left: {reason}"),
            Event::Cluster {
                state: ClusterState::Connected,
                ..
            } if !joined => {
                joined = true;
                waiting = false;
                println!("joined the cluster");
            }
            _ => {}
        }
    }
    let stats = hub.stats();
    log::info!(
        "stopped: {} served; to other hubs {} sent, {} lost; {} received from them",
        common::count(stats.accepted, "client", "clients"),
        stats.cluster.sent,
        stats.cluster.lost,
        stats.cluster.received
    );
    Ok(())
}
