//! The hub's metrics as Prometheus text (exposition format 0.0.4), read from [`Shared`]
//! only: the counters behind `stats()`, each listener's live clients, the dispatcher's lag.
//! Never blocks and never asks the dispatcher anything, so it runs on any thread, the
//! dispatcher's own included (which serves it over HTTP).
//!
//! [`METRICS`] is the one list of what is exported: every name, type, help text and where
//! its value comes from. `docs/METRICS.md` lists the same names, and a test holds the two
//! together.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use crate::shared::Shared;
use crate::stats::ClusterStats;
use crate::{DisconnectReason, Stats, Transport};

/// A metric's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Only ever goes up (until the hub restarts); its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Where a metric's samples come from.
#[derive(Clone, Copy)]
enum Source {
    /// One sample from the hub's stats.
    Stat(fn(&Stats) -> f64),
    /// One sample per [`DisconnectReason`], labelled `reason`.
    ByReason,
    /// One sample per listener, labelled `listener` (its address) and `transport`.
    ByListener,
    /// One sample per wire kind built in, labelled `wire`.
    ByWire,
    /// How long the dispatcher's current round has been running, in seconds.
    Lag,
    /// One sample from the cluster's stats, exported only by a hub with a backplane.
    Cluster(fn(&ClusterStats) -> f64),
}

/// One metric: its name, type, help text and source.
struct Metric {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    source: Source,
}

/// A sample's value from a count or a flag (1 for true).
trait ToF64 {
    fn to_f64(self) -> f64;
}

impl ToF64 for u64 {
    fn to_f64(self) -> f64 {
        // Exact up to 2^53; counts past that lose their last digits, as in every exporter.
        self as f64
    }
}

impl ToF64 for bool {
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
}

/// A metric from one field of [`Stats`] (`$field` converted to `f64`).
macro_rules! stat {
    ($name:literal, $kind:ident, $field:ident, $help:literal) => {
        Metric {
            name: $name,
            kind: Kind::$kind,
            help: $help,
            source: Source::Stat(|s| s.$field.to_f64()),
        }
    };
}

/// A metric from one field of [`ClusterStats`].
macro_rules! cluster {
    ($name:literal, $kind:ident, $field:ident, $help:literal) => {
        Metric {
            name: $name,
            kind: Kind::$kind,
            help: $help,
            source: Source::Cluster(|c| c.$field.to_f64()),
        }
    };
}

/// Every metric the hub exports, in the order it exports them.
const METRICS: &[Metric] = &[
    stat!(
        "hubcast_clients_connected",
        Gauge,
        connected,
        "Clients connected now."
    ),
    Metric {
        name: "hubcast_listener_clients",
        kind: Kind::Gauge,
        help: "Clients connected now, by the listener they came through.",
        source: Source::ByListener,
    },
    stat!(
        "hubcast_adopted_clients",
        Gauge,
        adopted,
        "Clients connected now that the host accepted itself (Hub::adopt): no listener counts them."
    ),
    Metric {
        name: "hubcast_wire_clients",
        kind: Kind::Gauge,
        help: "Clients connected now, by wire: framed (TCP, TLS), websocket, sse, sse_topic, websocket_deflate and websocket_deflate_narrow (with the `deflate` feature).",
        source: Source::ByWire,
    },
    stat!(
        "hubcast_clients_accepted_total",
        Counter,
        accepted,
        "Connections accepted that became clients."
    ),
    stat!(
        "hubcast_connections_refused_total",
        Counter,
        refused,
        "Connections closed at once: over a client limit, turned away by the accept filter, or shed while out of file descriptors."
    ),
    stat!(
        "hubcast_connections_rejected_total",
        Counter,
        rejected,
        "Connections the authenticator rejected or panicked on, or admitted with an invalid user key."
    ),
    stat!(
        "hubcast_handshakes_failed_total",
        Counter,
        handshake_failed,
        "Connections closed before becoming clients: a failed TLS or WebSocket handshake, no authentication in time."
    ),
    stat!(
        "hubcast_user_cap_refused_total",
        Counter,
        user_cap_refused,
        "Connections refused because their user had max_clients_per_user clients already."
    ),
    stat!(
        "hubcast_accept_errors_total",
        Counter,
        accept_errors,
        "Times accept failed (such as out of file descriptors) and the hub backed off."
    ),
    Metric {
        name: "hubcast_disconnects_total",
        kind: Kind::Counter,
        help: "Clients that left, by reason.",
        source: Source::ByReason,
    },
    stat!(
        "hubcast_frames_in_total",
        Counter,
        frames_in,
        "Frames received from clients."
    ),
    stat!(
        "hubcast_bytes_in_total",
        Counter,
        bytes_in,
        "Bytes of frames received from clients, framing included."
    ),
    stat!(
        "hubcast_frames_out_total",
        Counter,
        frames_out,
        "Frames written to clients, counted once per client."
    ),
    stat!(
        "hubcast_bytes_out_total",
        Counter,
        bytes_out,
        "Bytes written to clients."
    ),
    stat!(
        "hubcast_frames_dropped_total",
        Counter,
        dropped,
        "Frames dropped for slow clients by the DropOldest or DropNewest policy."
    ),
    stat!(
        "hubcast_relayed_to_nobody_total",
        Counter,
        relayed_to_nobody,
        "Messages clients sent in relay mode that reached no other client of this hub."
    ),
    stat!(
        "hubcast_rate_held_total",
        Counter,
        rate_held,
        "Times a client over its rate limit was held back (not read until its allowance refilled)."
    ),
    stat!(
        "hubcast_rate_dropped_total",
        Counter,
        rate_dropped,
        "Messages over a client's rate limit that were dropped."
    ),
    stat!(
        "hubcast_held_back_total",
        Counter,
        held_back,
        "Times a client slow to read held the others back while it caught up."
    ),
    Metric {
        name: "hubcast_paused_seconds",
        kind: Kind::Gauge,
        help: "How long the hub has been paused for a full subscription, if it is now (0 if not).",
        source: Source::Stat(|s| s.paused.map_or(0.0, |d| d.as_secs_f64())),
    },
    stat!(
        "hubcast_pauses_total",
        Counter,
        pauses,
        "Times the hub paused because a subscription was full."
    ),
    Metric {
        name: "hubcast_dispatcher_lag_seconds",
        kind: Kind::Gauge,
        help: "How long the dispatcher's current round has been running (0 while it waits for work).",
        source: Source::Lag,
    },
    stat!(
        "hubcast_callback_panics_total",
        Counter,
        callback_panics,
        "Times a host closure panicked."
    ),
    stat!(
        "hubcast_admit_topics_refused_total",
        Counter,
        admit_topics_refused,
        "Topics an Admit named that the client could not be put in."
    ),
    stat!(
        "hubcast_publish_refused_total",
        Counter,
        publish_refused,
        "Messages the client_topics closure refused to relay, once per message and topic."
    ),
    stat!(
        "hubcast_resumes_total",
        Counter,
        resumes,
        "Streams clients resumed."
    ),
    stat!(
        "hubcast_resumes_refused_total",
        Counter,
        resumes_refused,
        "Resume requests that could not be met."
    ),
    stat!(
        "hubcast_replayed_total",
        Counter,
        replayed,
        "Messages sent again to clients that resumed."
    ),
    stat!(
        "hubcast_replay_bytes",
        Gauge,
        replay_bytes,
        "Bytes of memory every replay ring holds now."
    ),
    stat!(
        "hubcast_replay_trimmed_total",
        Counter,
        replay_trimmed,
        "Messages dropped from replay rings early to keep them within replay_total_bytes."
    ),
    stat!(
        "hubcast_kept_topics",
        Gauge,
        kept_topics,
        "Topics with no member kept now for their replay rings."
    ),
    stat!(
        "hubcast_kept_bytes",
        Gauge,
        kept_bytes,
        "Bytes of memory the kept topics' replay rings hold now."
    ),
    stat!(
        "hubcast_http_requests_total",
        Counter,
        http_requests,
        "Plain HTTP requests answered and closed: pages, metrics, health, 404 and 405."
    ),
    stat!(
        "hubcast_sse_opened_total",
        Counter,
        sse_opened,
        "Event streams (server-sent events) opened."
    ),
    stat!(
        "hubcast_presence_changes_total",
        Counter,
        presence_changes,
        "Changes of presence told to topics' members (#presence messages numbered)."
    ),
    stat!(
        "hubcast_sse_binary_skipped_total",
        Counter,
        sse_binary_skipped,
        "Binary messages not sent to event streams, once per message and event-stream wire."
    ),
    stat!(
        "hubcast_compressed_frames_total",
        Counter,
        compressed_frames,
        "Messages compressed for WebSocket clients (permessage-deflate), once per message and batch, not per client."
    ),
    stat!(
        "hubcast_compressed_bytes_in_total",
        Counter,
        compressed_bytes_in,
        "Bytes of the messages compressed for WebSocket clients, before compression."
    ),
    stat!(
        "hubcast_compressed_bytes_out_total",
        Counter,
        compressed_bytes_out,
        "Bytes of the messages compressed for WebSocket clients, after compression."
    ),
    Metric {
        name: "hubcast_compress_seconds_total",
        kind: Kind::Counter,
        help: "Time spent compressing messages for WebSocket clients, in seconds.",
        source: Source::Stat(|s| s.compress_nanos as f64 / 1e9),
    },
    stat!(
        "hubcast_inflated_messages_total",
        Counter,
        inflated_messages,
        "Compressed messages received from WebSocket clients and inflated."
    ),
    stat!(
        "hubcast_topics_evicted_total",
        Counter,
        topics_evicted,
        "Kept topics evicted before their rings emptied by age."
    ),
    cluster!(
        "hubcast_cluster_connected",
        Gauge,
        connected,
        "Whether the backplane is connected to its NATS broker now (1) or not (0)."
    ),
    cluster!(
        "hubcast_cluster_partitioned",
        Gauge,
        partitioned,
        "Whether the backplane's end-to-end probe is late now (1) or not (0)."
    ),
    cluster!(
        "hubcast_cluster_sent_total",
        Counter,
        sent,
        "Messages published for the other nodes."
    ),
    cluster!(
        "hubcast_cluster_received_total",
        Counter,
        received,
        "Messages received from the other nodes."
    ),
    cluster!(
        "hubcast_cluster_lost_total",
        Counter,
        lost,
        "Messages lost between this node and the others (a buffer was full, or the broker away)."
    ),
    cluster!(
        "hubcast_cluster_slow_consumer_total",
        Counter,
        slow_consumer,
        "Messages from other nodes the NATS client dropped because this node was behind."
    ),
    cluster!(
        "hubcast_cluster_disconnects_total",
        Counter,
        disconnects,
        "Times the connection to the broker was lost."
    ),
];

/// Every metric the hub exports as Prometheus text, exposition format 0.0.4
/// (`text/plain; version=0.0.4`): for each, `# HELP`, `# TYPE` and its samples. Cluster
/// metrics only on a hub with a backplane. Never blocks: reads atomics only.
pub(crate) fn text(shared: &Shared) -> String {
    let stats = shared.counters.snapshot(shared.epoch);
    let mut out = String::with_capacity(8 * 1024);
    for metric in METRICS {
        if matches!(metric.source, Source::Cluster(_)) && !shared.clustered {
            continue;
        }
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n",
            name = metric.name,
            help = escape_help(metric.help),
            kind = metric.kind.as_str(),
        );
        match metric.source {
            Source::Stat(value) => sample(&mut out, metric.name, &[], value(&stats)),
            Source::Cluster(value) => sample(&mut out, metric.name, &[], value(&stats.cluster)),
            Source::Lag => sample(&mut out, metric.name, &[], shared.lag().as_secs_f64()),
            Source::ByReason => {
                for (i, label) in DisconnectReason::LABELS.iter().enumerate() {
                    let count = shared.counters.disconnects[i].load(Relaxed);
                    sample(&mut out, metric.name, &[("reason", label)], count as f64);
                }
            }
            Source::ByWire => {
                for (wire, clients) in shared.wires.iter() {
                    let clients = clients.load(Relaxed);
                    sample(
                        &mut out,
                        metric.name,
                        &[("wire", wire.label())],
                        clients as f64,
                    );
                }
            }
            Source::ByListener => {
                for listener in &shared.listeners {
                    let labels = [
                        ("listener", &*listener.addr.to_string()),
                        ("transport", transport_label(listener.transport)),
                    ];
                    let clients = listener.clients.load(Relaxed);
                    sample(&mut out, metric.name, &labels, clients as f64);
                }
            }
        }
    }
    out
}

/// Appends one sample line: `name{label="value",…} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    // Rust prints floats without an exponent, and whole ones without a fraction.
    let _ = writeln!(out, " {value}");
}

/// A label value as the text format writes it: `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A help text as the text format writes it: `\` and newlines escaped (quotes are not).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A transport's metric label.
fn transport_label(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
        Transport::WebSocket => "websocket",
        Transport::WebSocketTls => "websocket_tls",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::shared::ListenerGauge;

    fn shared() -> Shared {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        Shared::new(waker, 1 << 20, 1024)
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("plain"), "plain");
        assert_eq!(escape_label(r"a\b"), r"a\\b");
        assert_eq!(escape_label("say \"hi\""), r#"say \"hi\""#);
        assert_eq!(escape_label("two\nlines"), r"two\nlines");
        assert_eq!(escape_label("[::1]:80"), "[::1]:80");
        assert_eq!(escape_help("a \"b\" \\ c\nd"), "a \"b\" \\\\ c\\nd");
    }

    #[test]
    fn samples_are_written_in_the_text_format() {
        let mut out = String::new();
        sample(&mut out, "m_total", &[], 3.0);
        sample(&mut out, "m", &[("a", "x\"y"), ("b", "z")], 0.25);
        sample(&mut out, "m", &[], 12_345_678_901_234.0);
        assert_eq!(
            out,
            "m_total 3\nm{a=\"x\\\"y\",b=\"z\"} 0.25\nm 12345678901234\n"
        );
    }

    /// Names follow Prometheus conventions, each once: the prefix, snake_case, counters
    /// (only) ending in `_total`, help texts on one line.
    #[test]
    fn the_table_follows_the_conventions() {
        let mut seen = HashSet::new();
        for metric in METRICS {
            let name = metric.name;
            assert!(seen.insert(name), "{name} twice");
            let rest = name.strip_prefix("hubcast_").expect(name);
            assert!(
                rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert_eq!(
                name.ends_with("_total"),
                metric.kind == Kind::Counter,
                "{name}"
            );
            assert!(!metric.help.contains(['\n', '\\']), "{name}");
            assert!(metric.help.ends_with('.'), "{name}");
        }
        for label in DisconnectReason::LABELS {
            assert!(label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    /// The documentation's table lists every metric with its type, and no other.
    #[test]
    fn the_docs_list_every_metric() {
        let doc = include_str!("../docs/METRICS.md");
        let documented: HashSet<(&str, &str)> = doc
            .lines()
            .filter_map(|line| {
                let mut cells = line.strip_prefix("| `hubcast_")?.split('|');
                let name = cells.next()?.trim().strip_suffix('`')?;
                let kind = cells.next()?.trim();
                Some((&line[3..3 + "hubcast_".len() + name.len()], kind))
            })
            .collect();
        let exported: HashSet<(&str, &str)> =
            METRICS.iter().map(|m| (m.name, m.kind.as_str())).collect();
        let missing: Vec<_> = exported.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&exported).collect();
        assert!(missing.is_empty(), "not in docs/METRICS.md: {missing:?}");
        assert!(unknown.is_empty(), "not exported: {unknown:?}");
    }

    #[test]
    fn every_family_has_help_type_and_samples() {
        let mut shared = shared();
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        shared.listeners.push(ListenerGauge {
            addr,
            transport: Transport::WebSocket,
            clients: AtomicU64::new(2),
        });
        shared.counters.connected.store(2, Relaxed);
        shared.counters.disconnects[DisconnectReason::Slow.index()].store(5, Relaxed);
        let text = text(&shared);
        assert!(
            text.contains("# TYPE hubcast_clients_connected gauge\nhubcast_clients_connected 2\n")
        );
        assert!(text.contains(
            "hubcast_listener_clients{listener=\"127.0.0.1:8080\",transport=\"websocket\"} 2\n"
        ));
        assert!(text.contains("hubcast_disconnects_total{reason=\"slow\"} 5\n"));
        assert!(text.contains("hubcast_disconnects_total{reason=\"peer_closed\"} 0\n"));
        assert!(text.contains("hubcast_paused_seconds 0\n"));
        assert!(text.contains("hubcast_dispatcher_lag_seconds 0\n"));
        assert!(
            !text.contains("hubcast_cluster"),
            "no backplane, no cluster"
        );
        for metric in METRICS
            .iter()
            .filter(|m| !matches!(m.source, Source::Cluster(_)))
        {
            let name = metric.name;
            assert!(text.contains(&format!("\n# TYPE {name} ")), "{name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("\n{name}")), "{name} has no sample");
        }
        assert!(text.ends_with('\n'));

        shared.clustered = true;
        shared.counters.cluster_connected.store(true, Relaxed);
        let text = super::text(&shared);
        assert!(text.contains("hubcast_cluster_connected 1\n"));
        assert!(text.contains("hubcast_cluster_partitioned 0\n"));
        assert!(text.contains("hubcast_cluster_sent_total 0\n"));
    }
}
