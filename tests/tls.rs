//! TLS (feature `tls`): certificates made at run time with rcgen, a rustls client, and the
//! ways a TLS handshake goes wrong. None of the failures may reach subscribers.
#![cfg(feature = "tls")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubcast::rustls::{self, pki_types::ServerName, ClientConfig, ClientConnection, StreamOwned};
use hubcast::{Event, Hub, Subscription};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Certificate {
    cert_pem: String,
    key_pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn certificate(expired: bool) -> Certificate {
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

fn client_config(trusted: Option<&Certificate>) -> Arc<ClientConfig> {
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

fn tls_hub(cert: &Certificate) -> Hub {
    Hub::builder()
        .tls_pem(cert.cert_pem.clone(), cert.key_pem.clone())
        .bind("127.0.0.1:0")
        .expect("bind")
}

fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(config, name).expect("client connection");
    StreamOwned::new(conn, sock)
}

/// Waits until `done` holds, pacing on the subscription so no event is missed.
fn wait_until(events: &Subscription, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        if let Ok(event) = events.recv_timeout(Duration::from_millis(5)) {
            panic!("unexpected event while waiting for {what}: {event:?}");
        }
    }
}

#[test]
fn broadcast_and_messages_flow_over_tls() {
    let cert = certificate(false);
    let hub = tls_hub(&cert);
    let events = hub.subscribe();
    let mut client = connect(hub.local_addr(), client_config(Some(&cert)));
    // The handshake completes as the client writes its first record.
    client.write_all(b"hello over tls\n").expect("write");
    let id = match events.recv_timeout(TIMEOUT).expect("connected") {
        Event::Connected { client, .. } => client,
        other => panic!("{other:?}"),
    };
    match events.recv_timeout(TIMEOUT).expect("message") {
        Event::Message {
            client, payload, ..
        } => {
            assert_eq!(client, id);
            assert_eq!(&payload[..], b"hello over tls");
        }
        other => panic!("{other:?}"),
    }
    for i in 0..1000 {
        hub.broadcast(format!("line {i}")).expect("broadcast");
    }
    let mut reader = BufReader::new(client);
    for i in 0..1000 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        assert_eq!(line, format!("line {i}\n"));
    }
    let report = hub.shutdown(TIMEOUT).expect("shutdown");
    assert_eq!(report.flushed, 1);
    // The hub ends the session with close_notify: a clean end of stream.
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("clean close");
    assert!(rest.is_empty());
}

#[test]
fn untrusted_certificate_fails_the_handshake_and_never_connects() {
    let cert = certificate(false);
    let hub = tls_hub(&cert);
    let events = hub.subscribe();
    let mut client = connect(hub.local_addr(), client_config(None));
    let err = client
        .write_all(b"x\n")
        .and_then(|()| client.flush())
        .and_then(|()| {
            let mut byte = [0u8; 1];
            client.read(&mut byte).map(|_| ())
        });
    let err = err.expect_err("the client must refuse an unknown issuer");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    drop(client);
    wait_until(&events, "the failed handshake", || {
        hub.stats().handshake_failed == 1
    });
    assert_eq!(hub.stats().accepted, 0);
    assert!(hub.clients().is_empty());
}

#[test]
fn expired_certificate_is_refused_by_the_client() {
    let cert = certificate(true);
    let hub = tls_hub(&cert);
    let events = hub.subscribe();
    let mut client = connect(hub.local_addr(), client_config(Some(&cert)));
    let mut byte = [0u8; 1];
    let err = client
        .write_all(b"x\n")
        .and_then(|()| client.read(&mut byte).map(|_| ()));
    let err = err.expect_err("the client must refuse an expired certificate");
    assert!(err.to_string().contains("expired"), "{err}");
    drop(client);
    wait_until(&events, "the failed handshake", || {
        hub.stats().handshake_failed == 1
    });
    assert_eq!(hub.stats().accepted, 0);
}

#[test]
fn plain_text_client_on_the_tls_port_is_closed_without_connecting() {
    let cert = certificate(false);
    let hub = tls_hub(&cert);
    let events = hub.subscribe();
    let mut plain = TcpStream::connect(hub.local_addr()).expect("connect");
    plain.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    // The hub answers with at most a TLS alert, then closes.
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(answer.len() < 64, "{answer:?}");
    wait_until(&events, "the failed handshake", || {
        hub.stats().handshake_failed == 1
    });
    assert_eq!(hub.stats().accepted, 0);
    hub.broadcast("nobody gets this").expect("broadcast");
    assert_eq!(hub.stats().frames_out, 0);
}

#[test]
fn bad_pem_is_a_typed_error() {
    let err = Hub::builder()
        .tls_pem("not a certificate", "not a key")
        .bind("127.0.0.1:0")
        .expect_err("bad PEM");
    assert!(matches!(err, hubcast::Error::Tls(_)), "{err:?}");
}
