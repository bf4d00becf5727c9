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

/// Runs the example. On failure, prints the error and its causes on one line with
/// `Display`, never a `Debug` dump (`error: failed to bind 127.0.0.1:9999: Address already
/// in use (os error 98)`), and exits with status 1.
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
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9999".to_owned());
    let hub = Hub::bind(addr.as_str())?;
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
        "stopped after serving {} clients; {lost} messages undelivered at shutdown",
        hub.stats().accepted
    );
    Ok(())
}
