//! TLS (feature `tls`): certificates made at run time with rcgen, and a rustls client that
//! trusts one of them.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use hubcast::rustls::{self, pki_types::ServerName, ClientConfig, ClientConnection, StreamOwned};

use super::Peer;

/// A self-signed certificate for `localhost`, as PEM for the hub and DER for the client.
#[derive(Debug)]
pub(crate) struct Certificate {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) der: rustls::pki_types::CertificateDer<'static>,
}

/// A new certificate for `localhost`, valid now, or (`expired`) only in 2000.
pub(crate) fn certificate(expired: bool) -> Certificate {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = params.self_signed(&key).expect("self-signed");
    Certificate {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

/// A client configuration that trusts `trusted` alone (nothing for `None`).
pub(crate) fn client_config(trusted: Option<&Certificate>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(cert) = trusted {
        roots.add(cert.der.clone()).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A TLS client of `addr` for `localhost` (the handshake happens on the first read or
/// write). Reads and writes on the socket time out after `TIMEOUT`.
pub(crate) fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let sock = Peer::connect(addr).stream;
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(config, name).expect("client connection");
    StreamOwned::new(conn, sock)
}
