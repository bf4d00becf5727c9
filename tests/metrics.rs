//! The hub's metrics and health, on real hubs on loopback: the Prometheus text read back by
//! a real parser (Python's `prometheus_client`, run by `tests/python/parse_metrics.py`)
//! holds what `stats()` says, per reason and per listener, and follows the conventions;
//! `health()` tells a fresh hub, a hub shut down, a hub whose backplane cannot reach its
//! broker and a dispatcher stuck in a host closure apart.
//!
//! Needs `python3` with `prometheus_client` (`scripts/install-test-deps.sh`) for the parsed
//! text; the health tests need nothing. Every wait is bounded by `TIMEOUT`; a condition
//! nothing announces (the lag growing) is polled every `PACE` until a deadline.

mod util;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hubcast::{DisconnectReason, Health, Hub, Stats, Transport};
use util::{
    require_python_module, stats_when, ChildProcess, EventLog, Peer, TempDir, LOCAL, PACE, TIMEOUT,
};

/// One metric family as the parser read it.
#[derive(Debug)]
struct Family {
    /// As the parser names it: a counter's without its `_total`.
    name: String,
    kind: String,
    help: String,
    /// Each sample's name, its labels (sorted `name=value` pairs, joined by `,`) and value.
    samples: Vec<(String, String, f64)>,
}

/// `text` as `prometheus_client`'s parser reads it. Fails the test if it rejects it.
fn parse(text: &str) -> Vec<Family> {
    let dir = TempDir::new("metrics");
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).expect("write the metrics");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/parse_metrics.py");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg(&file)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let mut child = ChildProcess::spawn(command);
    let mut families: Vec<Family> = Vec::new();
    let mut ended = false;
    while let Some(line) = child.try_line() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[..] {
            ["family", name, kind, help] => families.push(Family {
                name: name.to_owned(),
                kind: kind.to_owned(),
                help: help.to_owned(),
                samples: Vec::new(),
            }),
            ["sample", name, labels, value] => {
                let family = families.last_mut().expect("a sample before any family");
                let value = value.parse().expect("a sample's value");
                family
                    .samples
                    .push((name.to_owned(), labels.to_owned(), value));
            }
            ["end"] => ended = true,
            _ => panic!("unexpected line from the parser: {line:?}"),
        }
    }
    let (status, stderr) = child.finish();
    assert!(
        status.success() && ended,
        "prometheus_client rejected the text ({status}):\n{stderr}\n---\n{text}"
    );
    families
}

/// Every sample by name and labels.
fn samples(families: &[Family]) -> BTreeMap<(String, String), f64> {
    families
        .iter()
        .flat_map(|f| &f.samples)
        .map(|(name, labels, value)| ((name.clone(), labels.clone()), *value))
        .collect()
}

/// The value of the sample `name` with `labels` (as `parse` writes them).
fn value(samples: &BTreeMap<(String, String), f64>, name: &str, labels: &str) -> u64 {
    let value = samples
        .get(&(name.to_owned(), labels.to_owned()))
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}} in {samples:#?}"));
    assert_eq!(value.fract(), 0.0, "{name}: {value}");
    *value as u64
}

/// The conventions every family follows: HELP and TYPE given, `hubcast_` and snake_case,
/// counters' samples (only theirs) ending in `_total`.
fn assert_conventions(text: &str, families: &[Family]) {
    assert!(!families.is_empty());
    for family in families {
        let name = &family.name;
        assert!(
            name.strip_prefix("hubcast_")
                .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')),
            "{name} is not ^hubcast_[a-z_]+$"
        );
        assert!(!family.help.is_empty(), "{name} has no HELP");
        assert!(
            matches!(family.kind.as_str(), "counter" | "gauge"),
            "{name} is a {}",
            family.kind
        );
        assert!(!family.samples.is_empty(), "{name} has no sample");
        for (sample, _, _) in &family.samples {
            let expected = match family.kind.as_str() {
                "counter" => format!("{name}_total"),
                _ => name.clone(),
            };
            assert_eq!(sample, &expected, "a sample of {name}");
            assert!(
                text.contains(&format!("# TYPE {sample} {}\n", family.kind)),
                "TYPE of {sample}"
            );
            assert!(
                text.contains(&format!("# HELP {sample} ")),
                "HELP of {sample}"
            );
        }
    }
}

/// The samples with no label that are counters of `Stats`, and their values there.
fn plain_counters(stats: &Stats) -> Vec<(&'static str, u64)> {
    vec![
        ("hubcast_clients_connected", stats.connected),
        ("hubcast_adopted_clients", stats.adopted),
        ("hubcast_clients_accepted_total", stats.accepted),
        ("hubcast_connections_refused_total", stats.refused),
        ("hubcast_connections_rejected_total", stats.rejected),
        ("hubcast_handshakes_failed_total", stats.handshake_failed),
        ("hubcast_user_cap_refused_total", stats.user_cap_refused),
        ("hubcast_accept_errors_total", stats.accept_errors),
        ("hubcast_frames_in_total", stats.frames_in),
        ("hubcast_bytes_in_total", stats.bytes_in),
        ("hubcast_frames_out_total", stats.frames_out),
        ("hubcast_bytes_out_total", stats.bytes_out),
        ("hubcast_frames_dropped_total", stats.dropped),
        ("hubcast_relayed_to_nobody_total", stats.relayed_to_nobody),
        ("hubcast_rate_held_total", stats.rate_held),
        ("hubcast_rate_dropped_total", stats.rate_dropped),
        ("hubcast_held_back_total", stats.held_back),
        ("hubcast_pauses_total", stats.pauses),
        ("hubcast_callback_panics_total", stats.callback_panics),
        (
            "hubcast_admit_topics_refused_total",
            stats.admit_topics_refused,
        ),
        ("hubcast_publish_refused_total", stats.publish_refused),
        ("hubcast_resumes_total", stats.resumes),
        ("hubcast_resumes_refused_total", stats.resumes_refused),
        ("hubcast_replayed_total", stats.replayed),
        ("hubcast_replay_bytes", stats.replay_bytes),
        ("hubcast_replay_trimmed_total", stats.replay_trimmed),
        ("hubcast_kept_topics", stats.kept_topics),
        ("hubcast_kept_bytes", stats.kept_bytes),
        ("hubcast_topics_evicted_total", stats.topics_evicted),
        ("hubcast_http_requests_total", stats.http_requests),
        ("hubcast_sse_opened_total", stats.sse_opened),
        ("hubcast_presence_changes_total", stats.presence_changes),
        ("hubcast_sse_binary_skipped_total", stats.sse_binary_skipped),
        ("hubcast_compressed_frames_total", stats.compressed_frames),
        (
            "hubcast_compressed_bytes_in_total",
            stats.compressed_bytes_in,
        ),
        (
            "hubcast_compressed_bytes_out_total",
            stats.compressed_bytes_out,
        ),
        ("hubcast_inflated_messages_total", stats.inflated_messages),
    ]
}

/// The `reason` label of each disconnect reason.
const REASONS: [(DisconnectReason, &str); 11] = [
    (DisconnectReason::PeerClosed, "peer_closed"),
    (DisconnectReason::Reset, "reset"),
    (DisconnectReason::Slow, "slow"),
    (DisconnectReason::FrameTooLarge, "frame_too_large"),
    (DisconnectReason::Shutdown, "shutdown"),
    (DisconnectReason::Kicked, "kicked"),
    (DisconnectReason::Idle, "idle"),
    (DisconnectReason::Unresponsive, "unresponsive"),
    (DisconnectReason::Protocol, "protocol"),
    (DisconnectReason::RateLimited, "rate_limited"),
    (DisconnectReason::Io(std::io::ErrorKind::Other), "io"),
];

/// A hub with two TCP listeners; three clients come through the first and two through
/// the second, all get five broadcasts, one of the first three is kicked and one of the
/// second closes: the parsed text holds exactly what `stats()` says, the disconnects by
/// reason, and each listener's clients.
#[test]
fn the_text_parses_and_holds_the_stats() {
    if !require_python_module("prometheus_client") {
        return;
    }
    let hub = Hub::builder()
        .listen(LOCAL, Transport::Tcp)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let addrs: Vec<SocketAddr> = hub.local_addrs().iter().map(|l| l.addr).collect();
    assert_eq!(addrs.len(), 2);
    let mut peers = Vec::new();
    for (listener, n) in [(0, 3), (1, 2)] {
        for _ in 0..n {
            let peer = Peer::connect(addrs[listener]);
            let id = events.connected(peer.addr());
            peers.push((peer, id));
        }
    }
    const MESSAGES: usize = 5;
    for i in 0..MESSAGES {
        hub.broadcast(format!("message {i}")).unwrap();
    }
    for (peer, _) in &mut peers {
        for i in 0..MESSAGES {
            assert_eq!(peer.read_text_line(), format!("message {i}"));
        }
    }
    // Every client has every message; the counters are published as the round that wrote
    // them ends.
    let out = (peers.len() * MESSAGES) as u64;
    let stats = stats_when(&hub, |s| s.frames_out == out);
    assert_eq!(stats.frames_out, out, "{stats:#?}");

    let (mut kicked_peer, kicked) = peers.remove(0);
    hub.disconnect(kicked).unwrap();
    assert_eq!(events.disconnected(kicked), DisconnectReason::Kicked);
    kicked_peer.expect_closed();
    let (closing, closed) = peers.pop().unwrap();
    drop(closing);
    assert_eq!(events.disconnected(closed), DisconnectReason::PeerClosed);

    // Nothing happens any more: the text and the stats read now agree.
    let text = hub.metrics();
    let stats = hub.stats();
    let families = parse(&text);
    assert_conventions(&text, &families);
    let samples = samples(&families);

    assert_eq!(stats.connected, 3);
    assert_eq!(stats.accepted, 5);
    assert_eq!(stats.frames_out, out);
    assert!(stats.bytes_out >= out * "message 0\n".len() as u64);
    for (name, expected) in plain_counters(&stats) {
        assert_eq!(value(&samples, name, ""), expected, "{name}: {stats:#?}");
    }
    for (reason, label) in REASONS {
        let labels = format!("reason={label}");
        assert_eq!(
            value(&samples, "hubcast_disconnects_total", &labels),
            stats.disconnects(reason),
            "{label}"
        );
    }
    assert_eq!(
        value(&samples, "hubcast_disconnects_total", "reason=kicked"),
        1
    );
    assert_eq!(
        value(&samples, "hubcast_disconnects_total", "reason=peer_closed"),
        1
    );
    for (addr, clients) in [(addrs[0], 2), (addrs[1], 1)] {
        let labels = format!("listener={addr},transport=tcp");
        assert_eq!(
            value(&samples, "hubcast_listener_clients", &labels),
            clients,
            "{addr}"
        );
    }
    assert_eq!(value(&samples, "hubcast_paused_seconds", ""), 0);
    assert!(
        !text.contains("hubcast_cluster_"),
        "no backplane, no cluster metrics"
    );
    assert_eq!(value(&samples, "hubcast_wire_clients", "wire=framed"), 3);
    // Every sample is accounted for: the plain ones, 11 reasons, 2 listeners, the paused
    // time, the lag and the time spent compressing, and one per wire built in.
    let wires = if cfg!(feature = "websocket") { 4 } else { 1 };
    let wires = wires + 2 * usize::from(cfg!(feature = "deflate"));
    assert_eq!(
        samples.len(),
        plain_counters(&stats).len() + 11 + 2 + 3 + wires
    );
}

/// The listener gauges go back to zero as the clients leave at a shutdown, and a stopped
/// hub's text still parses.
#[test]
fn a_stopped_hub_counts_no_client() {
    if !require_python_module("prometheus_client") {
        return;
    }
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let peer = Peer::connect(hub.local_addr());
    events.connected(peer.addr());
    let listener = format!("listener={},transport=tcp", hub.local_addr());
    let before = samples(&parse(&hub.metrics()));
    assert_eq!(value(&before, "hubcast_listener_clients", &listener), 1);
    hub.shutdown(TIMEOUT).unwrap();
    let after = samples(&parse(&hub.metrics()));
    assert_eq!(value(&after, "hubcast_listener_clients", &listener), 0);
    assert_eq!(value(&after, "hubcast_clients_connected", ""), 0);
    assert_eq!(
        value(&after, "hubcast_disconnects_total", "reason=shutdown"),
        1
    );
}

/// A fresh hub is live and ready, with no backplane and no lag; once shut down it is
/// neither live nor ready.
#[test]
fn a_fresh_hub_is_ready_and_a_stopped_one_is_not_live() {
    let hub = Hub::bind(LOCAL).unwrap();
    let health = hub.health();
    assert!(health.live && health.ready, "{health:?}");
    assert!(!health.shutting_down);
    assert_eq!(health.backplane, None);
    assert!(health.lag < Health::LAG_LIMIT, "{health:?}");
    hub.shutdown(TIMEOUT).unwrap();
    let health = hub.health();
    assert!(!health.live && !health.ready, "{health:?}");
    assert!(health.shutting_down);
    assert_eq!(health.lag, Duration::ZERO);
}

/// Polls `hub.health()` every `PACE` until `done` holds; fails the test after `TIMEOUT`.
fn health_when(hub: &Hub, what: &str, done: impl Fn(&Health) -> bool) -> Health {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let health = hub.health();
        if done(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "never {what}: {health:?}");
        thread::sleep(PACE);
    }
}

/// A dispatcher stuck in a host closure (an accept filter that waits for the test) lags:
/// past `LAG_LIMIT` the hub is live but not ready, and its metrics say how long the round
/// has run. Released, it is ready again; idle, it does not lag.
#[test]
fn a_dispatcher_stuck_in_a_closure_lags_and_recovers() {
    let (builder, held) = util::held_in_accept_filter(Hub::builder());
    let hub = Arc::new(builder.bind(LOCAL).unwrap());
    let mut events = EventLog::subscribe(&hub);
    assert!(hub.health().ready);

    let peer = Peer::connect(hub.local_addr());
    held.wait_entered();
    let stuck = health_when(&hub, "lagging", |h| h.lag > Health::LAG_LIMIT);
    assert!(stuck.live && !stuck.ready, "{stuck:?}");
    // The metrics, read on another thread while the dispatcher is stuck, say so too.
    let text = hub.metrics();
    let lag: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hubcast_dispatcher_lag_seconds "))
        .expect("the lag sample")
        .parse()
        .unwrap();
    assert!(lag > Health::LAG_LIMIT.as_secs_f64(), "{lag}\n{text}");

    held.release();
    events.connected(peer.addr());
    let health = health_when(&hub, "ready again", |h| h.ready);
    assert!(health.live && health.lag < Health::LAG_LIMIT, "{health:?}");
    // Waiting for work in `poll` is not lagging at all.
    health_when(&hub, "idle", |h| h.lag.is_zero() && h.ready);
    drop(peer);
}

/// A hub whose backplane cannot reach its broker (a port of the test's that accepts and
/// never answers) is live, serves its own clients, and is not ready; its metrics show the
/// cluster gauges at 0.
#[cfg(feature = "nats")]
#[test]
fn a_hub_cut_off_from_its_broker_is_live_but_not_ready() {
    use hubcast::Cluster;

    let silent = std::net::TcpListener::bind(LOCAL).unwrap();
    let url = format!("nats://{}", silent.local_addr().unwrap());
    let hub = Hub::builder()
        .cluster(Cluster::nats([url]))
        .bind(LOCAL)
        .unwrap();
    let health = hub.health();
    assert_eq!(health.backplane, Some(false), "{health:?}");
    assert!(health.live && !health.ready, "{health:?}");
    let text = hub.metrics();
    assert!(text.contains("\nhubcast_cluster_connected 0\n"), "{text}");
    assert!(text.contains("\nhubcast_cluster_partitioned 0\n"), "{text}");
    assert!(text.contains("\nhubcast_cluster_sent_total 0\n"), "{text}");

    let mut events = EventLog::subscribe(&hub);
    let mut peer = Peer::connect(hub.local_addr());
    events.connected(peer.addr());
    hub.broadcast("local").unwrap();
    assert_eq!(peer.read_text_line(), "local");
    assert_eq!(hub.health().backplane, Some(false));
    hub.shutdown(TIMEOUT).unwrap();
    assert!(!hub.health().live);
}
