//! TLS (feature `tls`): certificates made at run time with rcgen, a rustls client, and the
//! ways a TLS handshake goes wrong. None of the failures may reach subscribers.
#![cfg(feature = "tls")]

mod util;

use std::io::{BufRead, BufReader, Read, Write};

use hubcast::Hub;
use util::{
    certificate, client_config, numbered, tls_connect, Certificate, EventLog, Peer, LOCAL, MSG_LEN,
    TIMEOUT,
};

fn tls_hub(cert: &Certificate) -> Hub {
    Hub::builder()
        .tls_pem(cert.cert_pem.clone(), cert.key_pem.clone())
        .bind(LOCAL)
        .expect("bind")
}

/// Waits until the hub has counted `n` failed handshakes, and asserts that none of them
/// reached subscribers.
fn expect_failed_handshakes(hub: &Hub, events: &mut EventLog, n: u64) {
    events.wait_until("the failed handshake", || hub.stats().handshake_failed == n);
    events.drain();
    assert!(events.seen.is_empty(), "{:?}", events.seen);
}

#[test]
fn broadcast_and_messages_flow_over_tls() {
    let cert = certificate(false);
    let hub = tls_hub(&cert);
    let mut events = EventLog::subscribe(&hub);
    let mut client = tls_connect(hub.local_addr(), client_config(Some(&cert)));
    // The handshake completes as the client writes its first record.
    client.write_all(b"hello over tls\n").expect("write");
    let id = events.expect_connected();
    assert_eq!(events.expect_message(id), b"hello over tls");
    for i in 0..1000 {
        hub.broadcast(numbered(i, MSG_LEN)).expect("broadcast");
    }
    let mut reader = BufReader::new(client);
    for i in 0..1000 {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).expect("read");
        assert_eq!(line.pop(), Some(b'\n'), "message {i} cut short");
        assert!(line == numbered(i, MSG_LEN), "message {i}: {line:?}");
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
    let mut events = EventLog::subscribe(&hub);
    let mut client = tls_connect(hub.local_addr(), client_config(None));
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
    expect_failed_handshakes(&hub, &mut events, 1);
    assert_eq!(hub.stats().accepted, 0);
    assert!(hub.clients().is_empty());
}

#[test]
fn expired_certificate_is_refused_by_the_client() {
    let cert = certificate(true);
    let hub = tls_hub(&cert);
    let mut events = EventLog::subscribe(&hub);
    let mut client = tls_connect(hub.local_addr(), client_config(Some(&cert)));
    let mut byte = [0u8; 1];
    let err = client
        .write_all(b"x\n")
        .and_then(|()| client.read(&mut byte).map(|_| ()));
    let err = err.expect_err("the client must refuse an expired certificate");
    assert!(err.to_string().contains("expired"), "{err}");
    drop(client);
    expect_failed_handshakes(&hub, &mut events, 1);
    assert_eq!(hub.stats().accepted, 0);
}

#[test]
fn plain_text_client_on_the_tls_port_is_closed_without_connecting() {
    let cert = certificate(false);
    let hub = tls_hub(&cert);
    let mut events = EventLog::subscribe(&hub);
    let mut plain = Peer::connect(hub.local_addr());
    plain.write(b"GET / HTTP/1.0\r\n\r\n");
    // The hub answers with at most a TLS alert, then closes.
    let answer = plain.read_to_close();
    assert!(answer.len() < 64, "{answer:?}");
    expect_failed_handshakes(&hub, &mut events, 1);
    assert_eq!(hub.stats().accepted, 0);
    hub.broadcast("nobody gets this").expect("broadcast");
    // The stats are final once the hub has shut down.
    let report = hub.shutdown(TIMEOUT).expect("shutdown");
    assert_eq!(report.clients, 0);
    assert_eq!(hub.stats().frames_out, 0);
}

#[test]
fn bad_pem_is_a_typed_error() {
    let err = Hub::builder()
        .tls_pem("not a certificate", "not a key")
        .bind(LOCAL)
        .expect_err("bad PEM");
    assert!(matches!(err, hubcast::Error::Tls(_)), "{err:?}");
}

/// A certificate given where the key goes: the error says what was looked for.
#[test]
fn a_certificate_as_the_key_says_a_key_was_expected() {
    let cert = certificate(false);
    let err = Hub::builder()
        .tls_pem(cert.cert_pem.clone(), cert.cert_pem.clone())
        .bind(LOCAL)
        .expect_err("no key");
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        source.as_deref(),
        Some(
            "no private key in the PEM data: expected a `PRIVATE KEY`, `RSA PRIVATE KEY` or \
             `EC PRIVATE KEY` block"
        ),
        "{err:?}"
    );
}

/// One hub serves plain and TLS clients at once; a broadcast reaches both, each framed
/// once and encrypted only for the TLS client.
#[test]
fn a_hub_serves_tcp_and_tls_listeners_at_once() {
    let cert = certificate(false);
    let hub = Hub::builder()
        .tls_pem(cert.cert_pem.clone(), cert.key_pem.clone())
        .transport(hubcast::Transport::Tcp)
        .listen(LOCAL, hubcast::Transport::Tls)
        .bind(LOCAL)
        .expect("bind");
    let addrs = hub.local_addrs();
    assert_eq!(addrs[0].transport, hubcast::Transport::Tcp);
    assert_eq!(addrs[1].transport, hubcast::Transport::Tls);
    let mut events = EventLog::subscribe(&hub);
    let mut plain = Peer::connect(addrs[0].addr);
    events.expect_connected();
    let mut secure = BufReader::new(tls_connect(addrs[1].addr, client_config(Some(&cert))));
    // The TLS handshake completes when the client first reads or writes.
    secure.get_mut().write_all(b"hello\n").expect("tls write");
    let id = events.expect_connected();
    assert_eq!(events.expect_message(id), b"hello");
    hub.broadcast("to both").unwrap();
    assert_eq!(plain.read_line(), b"to both");
    let mut line = String::new();
    secure.read_line(&mut line).expect("tls read");
    assert_eq!(line, "to both\n");
}
