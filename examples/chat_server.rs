//! The tutorial's chat server, done right: every line a client sends reaches every other
//! client, and no client can stall the rest.
//!
//! ```text
//! cargo run --release --example chat_server -- [ADDR]     # default 127.0.0.1:9999
//! nc 127.0.0.1 9999                                        # in two or more terminals
//! ```
//!
//! Prints `listening on ADDR` to stdout once ready (use port 0 to let the OS choose), logs
//! joins and leaves to stderr (`RUST_LOG=debug` for more), and exits cleanly on Ctrl-C or
//! SIGTERM after flushing what is queued.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hubcast::{Event, Hub, Relay};

mod common;

/// The usage, for `--help` and for a bad command line.
const USAGE: &str = "usage: chat_server [ADDR]
  ADDR  where to listen, HOST:PORT (default 127.0.0.1:9999; port 0 lets the system choose)";

/// Runs the example; see `common` for how it answers `--help`, a bad command line and a
/// failure (`error: failed to bind 127.0.0.1:9999: Address already in use (os error 98)`,
/// status 1).
fn main() -> ExitCode {
    let args = common::Args::parse(USAGE, 1, &[]);
    common::exit(run(&args.addr(0, "127.0.0.1:9999")))
}

fn run(addr: &str) -> Result<(), Box<dyn Error>> {
    common::init_logging("info");

    // Relay mode forwards each client's lines to the others inside the hub; the host only
    // watches the events.
    let hub = Arc::new(Hub::builder().relay(Relay::Others).bind(addr)?);
    let events = hub.subscribe();

    let signalled = Arc::clone(&hub);
    ctrlc::set_handler(move || {
        // Ends the event stream below once every client is closed. A second signal finds
        // the hub closed already: nothing more to do.
        match signalled.shutdown(Duration::from_secs(2)) {
            Ok(report) if !report.is_complete() => log::warn!(
                "{} of {} closed with messages undelivered",
                report.undelivered.len(),
                common::count(report.clients as u64, "client", "clients")
            ),
            Ok(_) | Err(hubcast::Error::Closed) => {}
            Err(err) => log::error!("shutdown: {err}"),
        }
    })?;
    // Only now, with the signal handler in place, tell the world we are ready.
    println!("listening on {}", hub.local_addr());

    for event in events {
        match event {
            Event::Connected { client, addr, .. } => log::info!("{client} joined from {addr}"),
            Event::Disconnected { client, reason, .. } => log::info!("{client} left: {reason}"),
            Event::Message {
                client, payload, ..
            } => {
                log::debug!("{client}: {}", String::from_utf8_lossy(&payload));
            }
            _ => {}
        }
    }
    let stats = hub.stats();
    log::info!(
        "stopped: {} served, {} in, {}",
        common::count(stats.accepted, "client", "clients"),
        common::count(stats.frames_in, "message", "messages"),
        common::count(stats.frames_out, "delivery", "deliveries")
    );
    Ok(())
}
