//! The chat server over TLS (feature `tls`): every line a client sends reaches every other
//! client, encrypted with rustls.
//!
//! ```text
//! cargo run --release --features tls --example tls_chat_server -- [ADDR [CERT.pem KEY.pem]]
//! socat - OPENSSL:localhost:9999,cafile=${TMPDIR:-/tmp}/hubcast-example-cert.pem
//! openssl s_client -quiet -verify_quiet -servername localhost \
//!     -CAfile ${TMPDIR:-/tmp}/hubcast-example-cert.pem -connect 127.0.0.1:9999
//! ```
//!
//! Without a certificate and key it makes a self-signed certificate for `localhost` and
//! writes it to `hubcast-example-cert.pem` in the system's temporary directory, so that
//! clients can check it: run either client above in two or more terminals and type. Name
//! the server `localhost`, as both commands do: a client sends the name it connects to as
//! SNI, where an IP address is not allowed (rustls warns "Illegal SNI" and ignores it), and
//! the certificate is for `localhost`. Prints `listening on ADDR` once ready and exits
//! cleanly on Ctrl-C or SIGTERM.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hubcast::{Event, Hub, Relay};

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
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9999".to_owned());
    let (cert, key) = match (args.next(), args.next()) {
        (Some(cert), Some(key)) => (read(&cert)?, read(&key)?),
        _ => {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
            let path = std::env::temp_dir().join("hubcast-example-cert.pem");
            std::fs::write(&path, made.cert.pem())
                .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
            log::info!(
                "self-signed certificate for localhost written to {}",
                path.display()
            );
            (
                made.cert.pem().into_bytes(),
                made.key_pair.serialize_pem().into_bytes(),
            )
        }
    };

    let hub = Hub::builder()
        .tls_pem(cert, key)
        .relay(Relay::Others)
        .bind(addr.as_str())?;
    let hub = Arc::new(hub);
    let events = hub.subscribe();

    let signalled = Arc::clone(&hub);
    ctrlc::set_handler(move || {
        // Ends the event stream below once every client is closed. A second signal finds
        // the hub closed already: nothing more to do.
        match signalled.shutdown(Duration::from_secs(2)) {
            Ok(report) if !report.is_complete() => log::warn!(
                "{} of {} clients closed with messages undelivered",
                report.undelivered.len(),
                report.clients
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
            _ => {}
        }
    }
    let stats = hub.stats();
    log::info!(
        "stopped: {} clients served, {} failed handshakes",
        stats.accepted,
        stats.handshake_failed
    );
    Ok(())
}

/// The file at `path`; an error names the file, which `io::Error` alone does not.
fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read {path}: {err}"))
}
