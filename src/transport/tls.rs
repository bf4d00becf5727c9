//! TLS for client connections (feature `tls`): rustls, driven by the dispatcher's
//! non-blocking reads and writes. Frames stay shared in the queues; each client's copy is
//! encrypted as it is written.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use crate::{Error, Result};

/// Plaintext and records rustls may buffer per client before it pushes back: the
/// dispatcher's own queue stays the place where slow clients are bounded.
const TLS_BUFFER: usize = 64 * 1024;

/// How the builder was given its TLS settings.
#[derive(Clone)]
pub(crate) enum TlsSetting {
    Config(Arc<ServerConfig>),
    Pem { cert: Vec<u8>, key: Vec<u8> },
}

impl std::fmt::Debug for TlsSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSetting::Config(_) => f.write_str("TlsSetting::Config"),
            // Never print the private key.
            TlsSetting::Pem { .. } => f.write_str("TlsSetting::Pem"),
        }
    }
}

impl TlsSetting {
    pub(crate) fn into_config(self) -> Result<Arc<ServerConfig>> {
        match self {
            TlsSetting::Config(config) => Ok(config),
            TlsSetting::Pem { cert, key } => config_from_pem(&cert, &key),
        }
    }
}

fn config_from_pem(cert: &[u8], key: &[u8]) -> Result<Arc<ServerConfig>> {
    let tls_error = |err: Box<dyn std::error::Error + Send + Sync>| Error::Tls(err);
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(e.into()))?;
    if certs.is_empty() {
        return Err(tls_error("no certificate in the PEM data".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
        // rustls-pki-types says "no items found", which names neither the key nor what it
        // looked for.
        rustls::pki_types::pem::Error::NoItemsFound => tls_error(
            "no private key in the PEM data: expected a `PRIVATE KEY`, `RSA PRIVATE KEY` or \
             `EC PRIVATE KEY` block"
                .into(),
        ),
        e => tls_error(e.into()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.into()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(e.into()))?;
    Ok(Arc::new(config))
}

/// One TLS client: its socket and rustls state.
#[derive(Debug)]
pub(crate) struct TlsConn {
    pub(crate) sock: TcpStream,
    conn: ServerConnection,
}

impl TlsConn {
    pub(crate) fn new(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(TLS_BUFFER));
        Ok(TlsConn { sock, conn })
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
            if self.conn.read_tls(&mut self.sock)? == 0 {
                return Ok(0);
            }
            let processed = self.conn.process_new_packets();
            // Handshake messages, and the alert after an error, go out now; a full socket
            // leaves them for the next writable event, other errors show on the next write.
            let _ = self.flush();
            if let Err(err) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
        }
    }

    pub(crate) fn write_vectored(&mut self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        // Records from earlier writes go first; until they are out, take nothing new.
        self.flush()?;
        let taken = self.conn.writer().write_vectored(iov)?;
        match self.flush() {
            Err(err) if err.kind() != io::ErrorKind::WouldBlock => return Err(err),
            _ => {}
        }
        if taken == 0 && iov.iter().any(|s| !s.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    pub(crate) fn has_buffered_output(&self) -> bool {
        self.conn.wants_write()
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub(crate) fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
    }
}
