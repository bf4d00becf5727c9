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
//! choose). Prints `listening on ADDR` once ready; logs joins, leaves and the cluster
//! connection's changes to stderr; exits cleanly on Ctrl-C or SIGTERM. It serves its own
//! clients even while NATS is away, and rejoins by itself when it is back.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hubcast::{Cluster, Event, Hub, Relay};

/// Runs the example; on failure prints the error and its causes with `Display` and exits 1.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("error: {err}");
            let mut cause = err.source();
            while let Some(source) = cause {
                eprint!(": {source}");
                cause = source.source();
            }
            eprintln!();
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut nats = "nats://127.0.0.1:4222".to_owned();
    let mut prefix = "hubcast".to_owned();
    let mut addr = "127.0.0.1:9999".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nats" => nats = args.next().ok_or("--nats needs a URL")?,
            "--prefix" => prefix = args.next().ok_or("--prefix needs a value")?,
            "-h" | "--help" => {
                println!("usage: cluster_chat [--nats URL[,URL...]] [--prefix PREFIX] [ADDR]");
                return Ok(());
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}").into()),
            other => addr = other.to_owned(),
        }
    }

    let cluster = Cluster::nats(nats.split(',')).prefix(prefix);
    let hub = Hub::builder()
        .relay(Relay::Others)
        .cluster(cluster)
        .bind(addr.as_str())?;
    let hub = Arc::new(hub);
    let events = hub.subscribe();

    let signalled = Arc::clone(&hub);
    ctrlc::set_handler(move || match signalled.shutdown(Duration::from_secs(2)) {
        Ok(_) | Err(hubcast::Error::Closed) => {}
        Err(err) => log::error!("shutdown: {err}"),
    })?;
    println!("listening on {}", hub.local_addr());

    for event in events {
        match event {
            Event::Connected { client, addr, .. } => log::info!("{client} joined from {addr}"),
            Event::Disconnected { client, reason, .. } => log::info!("{client} left: {reason}"),
            Event::Cluster { state, .. } => log::info!("cluster: {state:?}"),
            _ => {}
        }
    }
    let stats = hub.stats();
    log::info!(
        "stopped: {} clients served; to other hubs {} sent, {} lost; {} received from them",
        stats.accepted,
        stats.cluster.sent,
        stats.cluster.lost,
        stats.cluster.received
    );
    Ok(())
}
