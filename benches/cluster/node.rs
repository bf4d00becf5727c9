//! `--node`: one hub in a process of its own (its own dispatcher and, in a cluster, its
//! own backplane thread and NATS connection, as in production), driven by the bench
//! through its stdin and stdout.
//!
//! The hub: `Framing::LengthPrefixed`, `flow_control(true)` (recommended for floods),
//! `queue_bytes` as given (the bench passes hubcast's default, 4 MiB), `Relay::Others` with `--relay`, and
//! with `--nats URL --prefix P` a member of the cluster of that prefix; every other
//! setting at its default (`Cluster::buffer_bytes` 8 MiB, probe every 2 s).
//!
//! Control protocol, one line each way:
//! - at start the node prints `port P` once it listens and, in a cluster, is connected;
//! - `expect N MS` → `connected N` once N clients are registered (`error …` after MS);
//! - `sync` → the hub broadcasts one readiness marker naming this node (no answer);
//! - `publish PUBLISHER COUNT SIZE RATE MAX_NS` → a host thread broadcasts the job and
//!   prints `published SENT ELAPSED_NS LATE_P99_NS`;
//! - `stats` → `stats key=value …`;
//! - `quit` or end of input → shuts the hub down and exits.

use std::io::{self, BufRead, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubcast::{Cluster, DisconnectReason, Framing, Hub, Relay};

use crate::proto::{payload, stamp, SYNC};
use crate::publish::{publish_loop, Job};
use crate::sys::now_ns;

/// Name of the host thread that broadcasts, so its CPU time can be told apart.
pub(crate) const PUB_THREAD: &str = "bench-pub";

/// The node's settings, from its command line.
struct Opts {
    index: u64,
    nats: Option<String>,
    prefix: String,
    relay: bool,
    queue_bytes: usize,
}

type Out = Arc<Mutex<io::Stdout>>;

fn say(out: &Out, line: &str) {
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        index: 0,
        nats: None,
        prefix: "bench".into(),
        relay: false,
        queue_bytes: 4 << 20,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--node" => {}
            "--index" => o.index = val()?.parse().map_err(|_| "bad --index")?,
            "--nats" => o.nats = Some(val()?),
            "--prefix" => o.prefix = val()?,
            "--relay" => o.relay = true,
            "--queue-bytes" => o.queue_bytes = val()?.parse().map_err(|_| "bad --queue-bytes")?,
            other => return Err(format!("unknown node option {other:?}")),
        }
    }
    Ok(o)
}

/// Runs the node. Returns the exit code.
pub(crate) fn serve(args: &[String]) -> i32 {
    let out: Out = Arc::new(Mutex::new(io::stdout()));
    let hub = match parse(args).and_then(|o| start(&o).map(|hub| (hub, o))) {
        Ok(v) => v,
        Err(e) => {
            say(&out, &format!("error {e}"));
            return 1;
        }
    };
    let (hub, opts) = hub;
    let hub = Arc::new(hub);
    say(&out, &format!("port {}", hub.local_addr().port()));
    let jobs = match spawn_publisher(&hub, &out) {
        Ok(tx) => tx,
        Err(e) => {
            say(&out, &format!("error publisher thread: {e}"));
            return 1;
        }
    };
    let mut marker = payload(16);
    stamp(&mut marker, SYNC | opts.index, 0);
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["expect", n, ms] => {
                let (n, ms): (u64, u64) = (n.parse().unwrap_or(0), ms.parse().unwrap_or(0));
                let deadline = now_ns() + ms * 1_000_000;
                loop {
                    let c = hub.stats().connected;
                    if c == n {
                        say(&out, &format!("connected {c}"));
                        break;
                    }
                    if now_ns() > deadline {
                        say(&out, &format!("error expected {n} clients, have {c}"));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            ["sync"] => {
                if let Err(e) = hub.broadcast(&marker) {
                    say(&out, &format!("error sync: {e}"));
                }
            }
            ["publish", rest @ ..] => match Job::from_words(rest) {
                Some(job) => {
                    let _ = jobs.send(job);
                }
                None => say(&out, &format!("error bad job {line:?}")),
            },
            ["stats"] => say(&out, &stats(&hub)),
            ["quit"] => break,
            _ => say(&out, &format!("error unknown command {line:?}")),
        }
    }
    drop(jobs);
    let _ = hub.shutdown(Duration::from_secs(1));
    0
}

fn start(o: &Opts) -> Result<Hub, String> {
    let mut builder = Hub::builder()
        .framing(Framing::LengthPrefixed)
        .queue_bytes(o.queue_bytes)
        .flow_control(true);
    if o.relay {
        builder = builder.relay(Relay::Others);
    }
    if let Some(url) = &o.nats {
        builder = builder.cluster(Cluster::nats([url.as_str()]).prefix(o.prefix.as_str()));
    }
    let hub = builder.bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    if o.nats.is_some() {
        let deadline = now_ns() + 10_000_000_000;
        while !hub.stats().cluster.connected {
            if now_ns() > deadline {
                return Err("not connected to NATS after 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(hub)
}

/// The host thread that broadcasts each job, as fast as `broadcast` returns (flood) or on
/// schedule (paced).
fn spawn_publisher(hub: &Arc<Hub>, out: &Out) -> io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let hub = Arc::clone(hub);
    let out = Arc::clone(out);
    std::thread::Builder::new()
        .name(PUB_THREAD.into())
        .spawn(move || {
            for job in rx {
                match publish_loop(&job, |msg| hub.broadcast(msg).map_err(io::Error::other)) {
                    Ok(done) => say(&out, &format!("published {}", done.to_words())),
                    Err(e) => say(&out, &format!("error publishing: {e}")),
                }
            }
        })?;
    Ok(tx)
}

fn stats(hub: &Hub) -> String {
    let s = hub.stats();
    let c = &s.cluster;
    format!(
        "stats connected={} slow={} dropped={} cluster_connected={} cluster_sent={} cluster_received={} cluster_lost={} cluster_slow_consumer={} cluster_disconnects={} cluster_partitioned={}",
        s.connected,
        s.disconnects(DisconnectReason::Slow),
        s.dropped,
        c.connected,
        c.sent,
        c.received,
        c.lost,
        c.slow_consumer,
        c.disconnects,
        c.partitioned,
    )
}
