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
//! Without a certificate and key it makes a self-signed certificate for `localhost` and,
//! once it listens, writes it to `hubcast-example-cert.pem` in the system's temporary
//! directory (whole, through a temporary file and a rename), so that clients can check
//! it: run either client above in two or more terminals and type. `--help`, a bad command
//! line or a port already taken leave that file as it was, so the clients of a server
//! already running go on trusting it. Name the server `localhost`, as both commands do: a
//! client sends the name it connects to as SNI, where an IP address is not allowed (rustls
//! warns "Illegal SNI" and ignores it), and the certificate is for `localhost`. Prints
//! `listening on ADDR` once ready and exits cleanly on Ctrl-C or SIGTERM.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hubcast::rustls::pki_types::pem::{self, PemObject};
use hubcast::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use hubcast::{Event, Hub, Relay};

mod common;

/// The usage, for `--help` and for a bad command line.
const USAGE: &str = "usage: tls_chat_server [ADDR [CERT.pem KEY.pem]]
  ADDR      where to listen, HOST:PORT (default 127.0.0.1:9999; port 0 lets the system choose)
  CERT.pem  the certificate chain, PEM; KEY.pem  its private key, PEM (both or neither)
  Without CERT and KEY: a self-signed certificate for localhost, written once listening to
  $TMPDIR/hubcast-example-cert.pem (/tmp without TMPDIR)";

/// Where the self-signed certificate goes, for clients to check it.
const CERT_FILE: &str = "hubcast-example-cert.pem";

/// Runs the example; see `common` for how it answers `--help`, a bad command line and a
/// failure.
fn main() -> ExitCode {
    let args = common::Args::parse(USAGE, 3, &[]);
    let addr = args.addr(0, "127.0.0.1:9999");
    let files = match (args.positional(1), args.positional(2)) {
        (Some(cert), Some(key)) => Some((cert.to_owned(), key.to_owned())),
        (Some(cert), None) => args.refuse(&format!(
            "certificate {cert} given without its key: give both CERT.pem and KEY.pem, or \
             neither for a self-signed certificate"
        )),
        _ => None,
    };
    common::exit(run(&addr, files))
}

fn run(addr: &str, files: Option<(String, String)>) -> Result<(), Box<dyn Error>> {
    common::init_logging("info");
    // Made in memory, and written for the clients only once the hub listens.
    let (cert, key, self_signed) = match files {
        Some((cert, key)) => (read_cert(&cert)?, read_key(&key)?, None),
        None => {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
            let pem = made.cert.pem();
            (
                pem.clone().into_bytes(),
                made.key_pair.serialize_pem().into_bytes(),
                Some(pem),
            )
        }
    };

    let hub = Hub::builder()
        .tls_pem(cert, key)
        .relay(Relay::Others)
        .bind(addr)?;
    let hub = Arc::new(hub);
    let events = hub.subscribe();
    if let Some(pem) = self_signed {
        let path = std::env::temp_dir().join(CERT_FILE);
        write_atomically(&path, pem.as_bytes())?;
        log::info!(
            "self-signed certificate for localhost written to {}",
            path.display()
        );
    }

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
            _ => {}
        }
    }
    let stats = hub.stats();
    log::info!(
        "stopped: {} served, {}",
        common::count(stats.accepted, "client", "clients"),
        common::count(
            stats.handshake_failed,
            "failed handshake",
            "failed handshakes"
        )
    );
    Ok(())
}

/// The file at `path`; an error names the file, which `io::Error` alone does not.
fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read {path}: {err}"))
}

/// The certificate chain in the file at `path`, checked to hold at least one certificate.
fn read_cert(path: &str) -> Result<Vec<u8>, String> {
    let pem = read(path)?;
    match CertificateDer::pem_slice_iter(&pem).next() {
        Some(Ok(_)) => Ok(pem),
        Some(Err(err)) => Err(format!("{path}: not a PEM certificate: {err}")),
        None => Err(format!(
            "{path} holds no certificate: expected a PEM block \
             `-----BEGIN CERTIFICATE-----` (is it the key? CERT comes first)"
        )),
    }
}

/// The private key in the file at `path`, checked to be one.
fn read_key(path: &str) -> Result<Vec<u8>, String> {
    let pem = read(path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => Ok(pem),
        Err(pem::Error::NoItemsFound) => Err(format!(
            "{path} holds no private key: expected a PEM block `-----BEGIN PRIVATE KEY-----` \
             (or `RSA PRIVATE KEY`, `EC PRIVATE KEY`; is it the certificate? KEY comes second)"
        )),
        Err(err) => Err(format!("{path}: not a PEM private key: {err}")),
    }
}

/// Writes `bytes` to `path` whole or not at all: to a temporary file beside it, then
/// renamed over it, so a client reading it never sees half a certificate.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut temporary = PathBuf::from(path);
    temporary.set_extension(format!("pem.{}.tmp", std::process::id()));
    let written =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|err| {
        let _ = std::fs::remove_file(&temporary);
        format!("cannot write {}: {err}", path.display())
    })
}
