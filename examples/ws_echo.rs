//! A WebSocket echo server, for conformance suites (Autobahn): each message goes back to
//! its sender only, byte for byte.
//!
//! ```text
//! cargo run --release --features websocket --example ws_echo -- [ADDR]   # default 127.0.0.1:9001
//! cargo run --release --features deflate --example ws_echo        # with permessage-deflate
//! ```
//!
//! Prints `listening on ws://ADDR/` once ready and exits cleanly on Ctrl-C or SIGTERM. Any
//! origin is accepted and messages of up to 16 MiB, as the suites send. Messages are framed
//! length-prefixed inside the hub, so every payload comes back byte for byte, and with its
//! kind: `Event::Message` says whether it came as text or binary, and the echo is a
//! `Message` of that kind, so a binary message that happens to be valid UTF-8 (an empty one,
//! or Autobahn's 4 MiB of `*`) comes back binary.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hubcast::{Event, Framing, Hub, Message, Origins, Transport};

mod common;

/// The usage, for `--help` and for a bad command line.
const USAGE: &str = "usage: ws_echo [ADDR]
  ADDR  where to listen, HOST:PORT (default 127.0.0.1:9001; port 0 lets the system choose)";

/// Runs the example; see `common` for how it answers `--help`, a bad command line and a
/// failure.
fn main() -> ExitCode {
    let args = common::Args::parse(USAGE, 1, &[]);
    common::exit(run(&args.addr(0, "127.0.0.1:9001")))
}

fn run(addr: &str) -> Result<(), Box<dyn Error>> {
    common::init_logging("warn");
    let hub = Hub::builder()
        .transport(Transport::WebSocket)
        .framing(Framing::LengthPrefixed)
        .websocket_origins(Origins::Any)
        .max_frame(16 << 20)
        .queue_bytes(64 << 20)
        // With the `deflate` feature, clients that offer permessage-deflate (Autobahn's
        // groups 12 and 13, browsers) get it: every message is compressed, once (a
        // `min_size` of 0: even a short one, which an echo server for conformance suites
        // owes the clients that expect every message compressed), and compressed messages
        // in are inflated within max_frame.
        .websocket_compression(cfg!(feature = "deflate"))
        .websocket_compression_min_size(0)
        .bind(addr)?;
    let hub = Arc::new(hub);
    let events = hub.subscribe();
    let signalled = Arc::clone(&hub);
    ctrlc::set_handler(move || {
        let _ = signalled.shutdown(Duration::from_secs(1));
    })?;
    println!("listening on ws://{}/", hub.local_addr());

    for event in events {
        if let Event::Message {
            client,
            payload,
            kind,
            ..
        } = event
        {
            let sent = match kind {
                // A text message's payload was checked as it came in, and is checked again
                // here: it cannot fail.
                Some(kind) => hub.send_to(client, Message::new(kind, payload)?),
                // Only WebSocket clients connect here: every message has a kind.
                None => hub.send_to(client, payload),
            };
            match sent {
                // The client left, or the hub is shutting down: nothing to echo to.
                Ok(()) | Err(hubcast::Error::UnknownClient(_) | hubcast::Error::Closed) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(())
}
