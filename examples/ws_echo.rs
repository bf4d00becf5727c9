//! A WebSocket echo server, for conformance suites (Autobahn): each message goes back to
//! its sender only, byte for byte.
//!
//! ```text
//! cargo run --release --features websocket --example ws_echo -- [ADDR]   # default 127.0.0.1:9001
//! ```
//!
//! Prints `listening on ws://ADDR/` once ready and exits cleanly on Ctrl-C or SIGTERM. Any
//! origin is accepted and messages of up to 16 MiB, as the suites send. Messages are framed
//! length-prefixed inside the hub, so every payload comes back byte for byte. Its kind does
//! not: the hub's events do not say whether a message came as text or binary, so a payload
//! that is valid UTF-8 goes back in a text frame and any other in a binary frame. A binary
//! message that happens to be valid UTF-8 (an empty one, or Autobahn's 4 MiB of `*`) comes
//! back as text, which fails 10 of Autobahn's cases: `tests/conformance.rs` lists them.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hubcast::{Event, Framing, Hub, Origins, Transport};

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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let hub = Hub::builder()
        .transport(Transport::WebSocket)
        .framing(Framing::LengthPrefixed)
        .websocket_origins(Origins::Any)
        .max_frame(16 << 20)
        .queue_bytes(64 << 20)
        .bind(addr.as_str())?;
    let hub = Arc::new(hub);
    let events = hub.subscribe();
    let signalled = Arc::clone(&hub);
    ctrlc::set_handler(move || {
        let _ = signalled.shutdown(Duration::from_secs(1));
    })?;
    println!("listening on ws://{}/", hub.local_addr());

    for event in events {
        if let Event::Message {
            client, payload, ..
        } = event
        {
            match hub.send_to(client, payload) {
                // The client left, or the hub is shutting down: nothing to echo to.
                Ok(()) | Err(hubcast::Error::UnknownClient(_) | hubcast::Error::Closed) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(())
}
