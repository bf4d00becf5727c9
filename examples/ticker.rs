//! A broadcast-only feed: the host sends a timestamp line every 100 ms to every client;
//! whatever clients send is ignored.
//!
//! ```text
//! cargo run --release --example ticker -- [ADDR]          # default 127.0.0.1:9999
//! nc 127.0.0.1 9999
//! ```
//!
//! Prints `listening on ADDR` once ready and runs until Ctrl-C or SIGTERM.

use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, tick};
use hubcast::Hub;

mod common;

/// The usage, for `--help` and for a bad command line.
const USAGE: &str = "usage: ticker [ADDR]
  ADDR  where to listen, HOST:PORT (default 127.0.0.1:9999; port 0 lets the system choose)";

/// Runs the example; see `common` for how it answers `--help`, a bad command line and a
/// failure.
fn main() -> ExitCode {
    let args = common::Args::parse(USAGE, 1, &[]);
    common::exit(run(&args.addr(0, "127.0.0.1:9999")))
}

fn run(addr: &str) -> Result<(), Box<dyn Error>> {
    common::init_logging("info");
    let hub = Hub::bind(addr)?;
    let (stop_tx, stop) = crossbeam_channel::bounded(1);
    ctrlc::set_handler(move || {
        // Full means a stop is already pending: a second signal has nothing to add.
        let _ = stop_tx.try_send(());
    })?;
    // Only now, with the signal handler in place, tell the world we are ready.
    println!("listening on {}", hub.local_addr());

    let ticks = tick(Duration::from_millis(100));
    loop {
        select! {
            recv(ticks) -> _ => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
                hub.broadcast(format!("{}.{:03}", now.as_secs(), now.subsec_millis()))?;
            }
            recv(stop) -> _ => break,
        }
    }
    let report = hub.shutdown(Duration::from_secs(1))?;
    let lost: u64 = report.undelivered.iter().map(|u| u.frames).sum();
    log::info!(
        "stopped after serving {}; {} undelivered at shutdown",
        common::count(hub.stats().accepted, "client", "clients"),
        common::count(lost, "message", "messages")
    );
    Ok(())
}
