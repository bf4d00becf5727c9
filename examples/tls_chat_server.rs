//! The chat server over TLS (feature `tls`): every line a client sends reaches every other
//! client, encrypted with rustls.
//!
//! ```text
//! cargo run --release --features tls --example tls_chat_server -- [ADDR [CERT.pem KEY.pem]]
//! socat - OPENSSL:127.0.0.1:9999,verify=0      # or: openssl s_client -quiet -connect 127.0.0.1:9999
//! ```
//!
//! Without a certificate and key it makes a self-signed certificate for `localhost` and
//! writes it to `hubcast-example-cert.pem` in the system's temporary directory, so clients
//! can trust it (`socat - OPENSSL:localhost:9999,cafile=THAT_FILE`). Prints
//! `listening on ADDR` once ready and exits cleanly on Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use hubcast::{Event, Hub, Relay};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9999".to_owned());
    let (cert, key) = match (args.next(), args.next()) {
        (Some(cert), Some(key)) => (std::fs::read(cert)?, std::fs::read(key)?),
        _ => {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
            let path = std::env::temp_dir().join("hubcast-example-cert.pem");
            std::fs::write(&path, made.cert.pem())?;
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
        // Ends the event stream below once every client is closed.
        let _ = signalled.shutdown(Duration::from_secs(2));
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
