//! Fan-out over TLS against plain TCP, in the same run: `cargo bench --features tls --bench
//! tls [-- N M SIZE ROUNDS]` (defaults: 50 subscribers, 20,000 messages of 1 KiB, 3 rounds).
//!
//! Each round runs the plain hub and the TLS hub one after the other with the same load:
//! N subscriber threads (rustls clients for TLS) that read until they have every byte, and
//! a publisher calling `broadcast` as fast as it returns (flow control on, so nobody is
//! cut). Reports deliveries/s per round and the TLS / plain ratio; the median ratio is the
//! figure to quote. Loopback only; every round is bounded by a 60 s deadline.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hubcast::rustls::{self, pki_types::ServerName, ClientConfig, ClientConnection, StreamOwned};
use hubcast::{Framing, Hub, HubBuilder};

const DEADLINE: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(50);
    let m = args.get(1).copied().unwrap_or(20_000);
    let size = args.get(2).copied().unwrap_or(1024);
    let rounds = args.get(3).copied().unwrap_or(3);

    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let (cert, key) = (made.cert.pem(), made.key_pair.serialize_pem());

    println!("fan-out over TLS vs plain TCP: N={n} M={m} S={size} bytes, {rounds} rounds");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let plain = run(n, m, size, None);
        let tls = run(n, m, size, Some((&cert, &key, &client_config)));
        let ratio = tls / plain;
        ratios.push(ratio);
        println!(
            "round {round}: plain {:.2}M deliveries/s, tls {:.2}M deliveries/s, tls/plain {ratio:.2}x",
            plain / 1e6,
            tls / 1e6
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!("median tls/plain: {:.2}x", ratios[ratios.len() / 2]);
}

/// One measurement: deliveries per second until every subscriber has every byte.
fn run(
    n: usize,
    m: usize,
    size: usize,
    tls: Option<(&String, &String, &Arc<ClientConfig>)>,
) -> f64 {
    let builder = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .queue_bytes(16 << 20)
        .flow_control(true);
    let builder: HubBuilder = match tls {
        Some((cert, key, _)) => builder.tls_pem(cert.as_bytes(), key.as_bytes()),
        None => builder,
    };
    let hub = builder.bind("127.0.0.1:0").expect("bind");
    let total = m * (size + 4);
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..n {
        let done = done_tx.clone();
        let mut reader = connect(hub.local_addr(), tls.map(|(_, _, c)| Arc::clone(c)));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            while got < total {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(err) if err.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = done.send(got);
        });
    }
    // TLS clients are registered once their handshake completes; wait for all of them.
    let start = Instant::now();
    while hub.stats().connected < n as u64 {
        assert!(start.elapsed() < DEADLINE, "subscribers did not connect");
        std::thread::sleep(Duration::from_millis(1));
    }
    let payload = vec![0x5a; size];
    let start = Instant::now();
    for _ in 0..m {
        hub.broadcast(&payload).expect("broadcast");
    }
    for _ in 0..n {
        let got = done_rx
            .recv_timeout(DEADLINE)
            .expect("a subscriber finished");
        assert_eq!(got, total, "a subscriber lost data");
    }
    let secs = start.elapsed().as_secs_f64();
    drop(hub);
    (n * m) as f64 / secs
}

/// A subscriber: a plain socket, or a rustls client that starts its handshake at once.
fn connect(addr: SocketAddr, tls: Option<Arc<ClientConfig>>) -> Box<dyn Read + Send> {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(DEADLINE)).expect("timeout");
    match tls {
        None => Box::new(sock),
        Some(config) => {
            let name = ServerName::try_from("localhost").expect("name");
            let mut conn = ClientConnection::new(config, name).expect("client");
            let mut sock = sock;
            // Drive the handshake now, so the hub registers the client before publishing.
            while conn.is_handshaking() {
                conn.complete_io(&mut sock).expect("handshake");
            }
            Box::new(StreamOwned::new(conn, sock))
        }
    }
}
