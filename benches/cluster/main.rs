//! The cluster benchmark (feature `nats`): fan-out across hubs joined through one
//! nats-server, against one hub alone and against core NATS itself, in the same run.
//!
//! Every hub runs in a process of its own (this binary with `--node`), with its own
//! dispatcher, backplane thread and NATS connection, as in production; the subscribers are
//! TCP clients on one event loop in the bench process (`gen`), spread round-robin over the
//! hubs; nats-server is started here on a port the OS assigns and stopped by PID at the end.
//! `cargo bench --features nats --bench cluster -- --help` lists the options;
//! docs/BENCHMARKS.md ("Cluster") explains the method and holds the results.

mod client;
mod failures;
mod gen;
#[allow(dead_code)] // the fan-out bench's, of which this one uses a part
#[path = "../fanout/hist.rs"]
mod hist;
mod nats;
mod node;
mod proto;
mod publish;
#[allow(dead_code)] // the fan-out bench's, of which this one uses a part
#[path = "../fanout/sys.rs"]
mod sys;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Mutex;
use std::time::Duration;

use crate::client::{publish_nats, Node, Outcome, RelayPub};
use crate::gen::{End, Gen};
use crate::nats::{NatsPub, NatsServer};
use crate::proto::{payload, stamp, Proto, SYNC};
use crate::publish::Job;
use crate::sys::now_ns;

const USAGE: &str = "\
cluster: fan-out across hubs joined through NATS (see docs/BENCHMARKS.md, Cluster)

usage: cargo bench --features nats --bench cluster -- [options]

  --systems LIST     any of single,cluster-1,cluster-2,cluster-3,single-relay,
                     cluster-relay,nats-direct                       (default: all)
  --s LIST           message sizes in bytes                      (default: 64,1024)
  --kinds LIST       flood,rate                                  (default: both)
  --n N              subscribers                                     (default: 100)
  --rate R           messages per second in the rate cells, all publishers together
                                                                   (default: 10000)
  --rate-secs T      publishing time of a rate cell                    (default: 2)
  --flood-secs T     publishing time of a flood cell                   (default: 2)
  --repeat R         run every cell R times, systems alternating; report medians
  --quick            short cells (0.4 s floods, 0.5 s at the rate): under a minute
  --queue-bytes B    the hubs' queue_bytes           (default: 4194304, hubcast's)
  --timeout SECS     abort a round after SECS                         (default: 60)
  --out DIR          where results.md and runs.csv go   (default: target/cluster)
  --self-test        check the histogram and the parsers, then exit
  --failures         instead of fan-out: how long a hub takes to notice a killed or
                     frozen broker and to recover (with --repeat R, R times each)

internal: --node [--index K] [--nats URL --prefix P] [--relay] [--queue-bytes B]
";

/// Children started by this process, by PID, for the Ctrl-C handler.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub(crate) fn register_child(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

pub(crate) fn unregister_child(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&p| p != pid);
}

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct System {
    name: &'static str,
    /// Hub processes; 0 for core NATS alone.
    hubs: usize,
    /// The hubs are one cluster through nats-server.
    cluster: bool,
    /// Clients publish and the hubs relay (`Relay::Others`); else the host of hub 1
    /// broadcasts.
    relay: bool,
    /// Publishers, spread round-robin over the hubs like the subscribers.
    publishers: usize,
}

const RELAY_PUBLISHERS: usize = 3;

const SYSTEMS: &[System] = &[
    System {
        name: "single",
        hubs: 1,
        cluster: false,
        relay: false,
        publishers: 1,
    },
    System {
        name: "cluster-1",
        hubs: 1,
        cluster: true,
        relay: false,
        publishers: 1,
    },
    System {
        name: "cluster-2",
        hubs: 2,
        cluster: true,
        relay: false,
        publishers: 1,
    },
    System {
        name: "cluster-3",
        hubs: 3,
        cluster: true,
        relay: false,
        publishers: 1,
    },
    System {
        name: "single-relay",
        hubs: 1,
        cluster: false,
        relay: true,
        publishers: RELAY_PUBLISHERS,
    },
    System {
        name: "cluster-relay",
        hubs: 3,
        cluster: true,
        relay: true,
        publishers: RELAY_PUBLISHERS,
    },
    System {
        name: "nats-direct",
        hubs: 0,
        cluster: false,
        relay: false,
        publishers: 1,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Publishers go as fast as the system takes messages, for a time: throughput.
    Flood,
    /// Publishers keep to a schedule: latency.
    Rate,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Flood => "flood",
            Kind::Rate => "rate",
        }
    }
}

#[derive(Debug, Clone)]
struct Opts {
    systems: Vec<System>,
    sizes: Vec<usize>,
    kinds: Vec<Kind>,
    n: usize,
    rate: f64,
    rate_secs: f64,
    flood_secs: f64,
    /// A flood stops at this many messages per publisher if its time is not up first.
    flood_max: u64,
    repeat: usize,
    queue_bytes: usize,
    timeout: f64,
    /// A round ends when its publishers are done and nothing arrives for this long.
    drain: f64,
    quick: bool,
    /// `--failures`: measure broker failures instead.
    failures: bool,
    out: PathBuf,
    args: String,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        systems: SYSTEMS.to_vec(),
        sizes: vec![64, 1024],
        kinds: vec![Kind::Flood, Kind::Rate],
        n: 100,
        rate: 10_000.0,
        rate_secs: 2.0,
        flood_secs: 2.0,
        flood_max: 20_000_000,
        repeat: 1,
        queue_bytes: 4 << 20,
        timeout: 60.0,
        drain: 2.0,
        quick: false,
        failures: false,
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cluster"),
        args: args
            .iter()
            .filter(|a| *a != "--bench")
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |v: String| -> Result<f64, String> {
            v.parse().map_err(|_| format!("bad number {v:?}"))
        };
        match a.as_str() {
            "--bench" => {} // cargo bench passes it
            "--systems" => {
                o.systems = val()?
                    .split(',')
                    .map(|s| {
                        SYSTEMS
                            .iter()
                            .find(|x| x.name == s.trim())
                            .copied()
                            .ok_or(format!("unknown system {s:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--s" => {
                o.sizes = val()?
                    .split(',')
                    .map(|x| x.trim().parse().map_err(|_| format!("bad size {x:?}")))
                    .collect::<Result<_, _>>()?;
                if o.sizes
                    .iter()
                    .any(|s| !(proto::HEADER..=1 << 20).contains(s))
                {
                    return Err(format!("sizes are {} bytes to 1 MiB", proto::HEADER));
                }
            }
            "--kinds" => {
                o.kinds = val()?
                    .split(',')
                    .map(|k| match k.trim() {
                        "flood" => Ok(Kind::Flood),
                        "rate" => Ok(Kind::Rate),
                        other => Err(format!("unknown kind {other:?}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--n" => o.n = num(val()?)?.max(1.0) as usize,
            "--rate" => o.rate = num(val()?)?.max(1.0),
            "--rate-secs" => o.rate_secs = num(val()?)?,
            "--flood-secs" => o.flood_secs = num(val()?)?,
            "--repeat" => o.repeat = num(val()?)?.max(1.0) as usize,
            "--quick" => {
                o.quick = true;
                o.flood_secs = 0.4;
                o.rate_secs = 0.5;
                o.timeout = 20.0;
                o.drain = 1.0;
            }
            "--failures" => o.failures = true,
            "--queue-bytes" => o.queue_bytes = num(val()?)?.max(1024.0) as usize,
            "--timeout" => o.timeout = num(val()?)?,
            "--out" => o.out = PathBuf::from(val()?),
            "-h" | "--help" => return Err(String::new()),
            other if !other.starts_with('-') => {} // a cargo bench filter: ignored
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.systems.iter().any(|s| s.hubs > 63) {
        return Err("at most 63 hubs".into());
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--node") {
        std::process::exit(node::serve(&args));
    }
    if args.iter().any(|a| a == "--self-test") {
        hist::self_test();
        proto::self_test();
        println!("self-test passed");
        return;
    }
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("cluster: {e}\n");
            }
            eprint!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let _ = ctrlc::set_handler(|| {
        for pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            sys::kill(*pid, sys::SIGKILL);
        }
        eprintln!("cluster: interrupted; children stopped");
        std::process::exit(130);
    });
    if opts.failures {
        if let Err(e) = failures::run(opts.repeat) {
            eprintln!("cluster: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run(&opts) {
        eprintln!("cluster: {e}");
        std::process::exit(1);
    }
}

/// One measured round of one system on one cell.
#[derive(Debug, Clone, Default)]
struct Row {
    system: &'static str,
    kind: &'static str,
    size: usize,
    rep: usize,
    /// `ok` (every subscriber got every message once, in order), `lossy`, or `error: …`.
    status: String,
    sent: u64,
    delivered: u64,
    lost: u64,
    reordered: u64,
    bad: u64,
    died: u64,
    secs: f64,
    dps: f64,
    p50: u64,
    p99: u64,
    max: u64,
    /// Paced publishers: the worst p99 of how late a message was handed over.
    late_p99: u64,
    /// Summed over the hubs: `stats().cluster.lost`, `.slow_consumer`, `.disconnects`,
    /// and subscribers cut as slow.
    cluster_lost: u64,
    cluster_slow_consumer: u64,
    cluster_disconnects: u64,
    hub_slow: u64,
    nats_slow: u64,
    /// CPU seconds during the round: every hub process, their dispatcher threads, their
    /// backplane threads, nats-server; the generator thread and other tenants as % of a
    /// core.
    hubs_cpu: f64,
    disp_cpu: f64,
    backplane_cpu: f64,
    nats_cpu: f64,
    gen_pct: f64,
    foreign_pct: f64,
    notes: Vec<String>,
}

impl Row {
    fn ok(&self) -> bool {
        self.status == "ok"
    }
}

fn run(opts: &Opts) -> Result<(), String> {
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let nats = NatsServer::start()?;
    let machine = machine();
    eprintln!("{machine}");
    eprintln!(
        "nats-server pid {} on 127.0.0.1:{}; N={} subscribers",
        nats.pid, nats.port, opts.n
    );
    let mut rows = Vec::new();
    let mut run_id = 0;
    let t0 = now_ns();
    for rep in 0..opts.repeat {
        for &kind in &opts.kinds {
            for &size in &opts.sizes {
                let mut order = opts.systems.clone();
                if rep % 2 == 1 {
                    order.reverse();
                }
                for system in order {
                    run_id += 1;
                    let row = run_one(opts, &nats, system, kind, size, rep, run_id);
                    eprintln!(
                        "[{}/{}] {:5} S={:<5} {:13} {:>9} deliveries/s  p50 {:>8}  p99 {:>8}  lost {}  {}{}",
                        rep + 1,
                        opts.repeat,
                        kind.name(),
                        size,
                        system.name,
                        si(row.dps),
                        dur(row.p50),
                        dur(row.p99),
                        row.lost,
                        row.status,
                        if row.notes.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", row.notes.join("; "))
                        }
                    );
                    rows.push(row);
                }
            }
        }
    }
    drop(nats);
    let took = (now_ns() - t0) as f64 / 1e9;
    let report = report(opts, &rows, &machine, took);
    println!("{report}");
    let md = opts.out.join("results.md");
    std::fs::write(&md, &report).map_err(|e| format!("{}: {e}", md.display()))?;
    let csv = opts.out.join("runs.csv");
    std::fs::write(&csv, csv_rows(&rows)).map_err(|e| format!("{}: {e}", csv.display()))?;
    eprintln!("wrote {} and {}", md.display(), csv.display());
    Ok(())
}

fn run_one(
    opts: &Opts,
    nats: &NatsServer,
    system: System,
    kind: Kind,
    size: usize,
    rep: usize,
    run_id: usize,
) -> Row {
    let mut row = Row {
        system: system.name,
        kind: kind.name(),
        size,
        rep,
        ..Row::default()
    };
    if let Err(e) = measure(opts, nats, system, kind, size, run_id, &mut row) {
        row.status = format!("error: {e}");
    }
    row
}

/// Counters and CPU times taken before and after a round.
struct Snapshot {
    at: u64,
    stats: Vec<Vec<(String, String)>>,
    node_cpu: Vec<u64>,
    disp_cpu: Vec<u64>,
    backplane_cpu: Vec<u64>,
    nats_cpu: u64,
    self_cpu: u64,
    machine: u64,
    nats_slow: u64,
}

impl Snapshot {
    fn take(nodes: &mut [Node], nats: &NatsServer) -> Result<Snapshot, String> {
        let mut stats = Vec::new();
        for node in nodes.iter_mut() {
            stats.push(node.stats()?);
        }
        Ok(Snapshot {
            at: now_ns(),
            stats,
            node_cpu: nodes.iter().map(|n| sys::process_cpu_ns(n.pid)).collect(),
            disp_cpu: nodes
                .iter()
                .map(|n| sys::threads_cpu_ns(n.pid, "hubcast-loop"))
                .collect(),
            backplane_cpu: nodes
                .iter()
                .map(|n| sys::threads_cpu_ns(n.pid, "hubcast-nats"))
                .collect(),
            nats_cpu: sys::process_cpu_ns(nats.pid),
            self_cpu: sys::process_cpu_ns(std::process::id()),
            machine: sys::machine_busy_ns(),
            nats_slow: nats.slow_consumers().unwrap_or(0),
        })
    }

    /// The change of hub counter `key` on node `k` since `before`.
    fn delta(&self, before: &Snapshot, k: usize, key: &str) -> u64 {
        let get = |s: &Snapshot| -> u64 {
            s.stats[k]
                .iter()
                .find(|(name, _)| name == key)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        get(self).saturating_sub(get(before))
    }
}

fn secs_of(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn measure(
    opts: &Opts,
    nats: &NatsServer,
    system: System,
    kind: Kind,
    size: usize,
    run_id: usize,
    row: &mut Row,
) -> Result<(), String> {
    let n = opts.n;
    let hubs = system.hubs;
    let publishers = system.publishers;
    let setup = now_ns() + 30_000_000_000;
    // A prefix (and NATS subject) of its own per run, so nothing of an earlier run mixes in.
    let prefix = format!("bench{run_id}");
    let subject = format!("{prefix}.all");
    let url = nats.url();

    let mut nodes = Vec::with_capacity(hubs);
    for k in 0..hubs {
        let cluster = system.cluster.then_some((url.as_str(), prefix.as_str()));
        nodes.push(Node::start(k, cluster, system.relay, opts.queue_bytes)?);
    }
    let (proto, hello, addrs) = if hubs == 0 {
        let hello = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {subject} 1\r\nPING\r\n"
        );
        (Proto::Nats, hello.into_bytes(), vec![nats.addr(); n])
    } else {
        let addrs = (0..n).map(|i| nodes[i % hubs].addr()).collect();
        (Proto::Lp, Vec::new(), addrs)
    };
    let relay_pubs = if system.relay {
        (0..publishers)
            .map(|j| RelayPub::connect(nodes[j % hubs].addr()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("publisher connect: {e}"))?
    } else {
        Vec::new()
    };
    let nats_pub = if hubs == 0 {
        Some(NatsPub::connect(nats.addr(), &subject).map_err(|e| format!("NATS publisher: {e}"))?)
    } else {
        None
    };
    let mut gen = Gen::new(proto, hello, &addrs).map_err(|e| format!("generator: {e}"))?;
    gen.connect_all(setup)?;
    for (k, node) in nodes.iter_mut().enumerate() {
        let subs = (0..n).filter(|i| i % hubs == k).count();
        let pubs = relay_pubs
            .iter()
            .enumerate()
            .filter(|(j, _)| j % hubs == k)
            .count();
        node.expect(subs + pubs, setup)?;
    }
    // Every subscriber sees a marker from every hub: each hub's subscription to the
    // cluster is in place (and for nats-direct, the subscribers' SUBs are).
    if let Some(p) = &nats_pub {
        let mut w = p.writer().map_err(|e| e.to_string())?;
        let mut marker = payload(16);
        stamp(&mut marker, SYNC, 0);
        gen.sync(1, setup, || {
            w.publish(&marker)
                .and_then(|()| w.flush())
                .map_err(|e| format!("sync: {e}"))
        })?;
    } else {
        let mask = (1u64 << hubs) - 1;
        gen.sync(mask, setup, || {
            nodes.iter_mut().try_for_each(|node| node.send("sync"))
        })?;
    }
    // Markers asked for twice may still be on their way: let them land before counting.
    std::thread::sleep(Duration::from_millis(100));

    let before = Snapshot::take(&mut nodes, nats)?;
    let rate = opts.rate / publishers as f64;
    let job = |publisher: usize| Job {
        publisher,
        count: match kind {
            Kind::Rate => (rate * opts.rate_secs).round().max(1.0) as u64,
            Kind::Flood => opts.flood_max,
        },
        size,
        rate: match kind {
            Kind::Rate => rate,
            Kind::Flood => 0.0,
        },
        max_ns: (opts.flood_secs * 1e9) as u64,
    };
    let receivers: Vec<Receiver<Outcome>> = if system.relay {
        relay_pubs
            .iter()
            .enumerate()
            .map(|(j, p)| p.publish(job(j)))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("publisher: {e}"))?
    } else if let Some(p) = &nats_pub {
        vec![publish_nats(p, job(0)).map_err(|e| format!("publisher: {e}"))?]
    } else {
        vec![nodes[0].publish(job(0))?]
    };
    let mut outcomes: Vec<Option<Outcome>> = vec![None; publishers];
    let start = now_ns();
    let round = gen.run_round(
        publishers,
        size,
        start + (opts.timeout * 1e9) as u64,
        10_000_000_000,
        (opts.drain * 1e9) as u64,
        || {
            for (j, rx) in receivers.iter().enumerate() {
                if outcomes[j].is_none() {
                    match rx.try_recv() {
                        Ok(o) => outcomes[j] = Some(o),
                        Err(TryRecvError::Disconnected) => {
                            outcomes[j] = Some(Err("publisher gone".into()))
                        }
                        Err(TryRecvError::Empty) => {}
                    }
                }
            }
            outcomes.iter().all(Option::is_some).then(|| {
                outcomes
                    .iter()
                    .map(|o| match o {
                        Some(Ok(done)) => done.sent,
                        _ => 0,
                    })
                    .collect()
            })
        },
    );
    let after = Snapshot::take(&mut nodes, nats)?;
    gen.close();
    drop(relay_pubs);
    drop(nodes);

    let sent: Vec<u64> = outcomes
        .iter()
        .map(|o| match o {
            Some(Ok(done)) => done.sent,
            _ => 0,
        })
        .collect();
    for o in outcomes.iter().flatten() {
        if let Err(e) = o {
            row.notes.push(e.clone());
        }
    }
    row.late_p99 = outcomes
        .iter()
        .flatten()
        .flatten()
        .map(|d| d.late_p99)
        .max()
        .unwrap_or(0);
    row.sent = sent.iter().sum();
    row.delivered = round.delivered;
    row.lost = round.lost;
    row.reordered = round.reordered;
    row.bad = round.bad_size + round.unexpected;
    row.died = round.died;
    row.secs = round.secs();
    row.dps = if row.secs > 0.0 {
        row.delivered as f64 / row.secs
    } else {
        0.0
    };
    row.p50 = round.hist.quantile(0.5);
    row.p99 = round.hist.quantile(0.99);
    row.max = round.hist.max();
    let wall = secs_of(after.at - before.at).max(1e-9);
    for k in 0..hubs {
        row.cluster_lost += after.delta(&before, k, "cluster_lost");
        row.cluster_slow_consumer += after.delta(&before, k, "cluster_slow_consumer");
        row.cluster_disconnects += after.delta(&before, k, "cluster_disconnects");
        row.hub_slow += after.delta(&before, k, "slow");
        row.hubs_cpu += secs_of(after.node_cpu[k].saturating_sub(before.node_cpu[k]));
        row.disp_cpu += secs_of(after.disp_cpu[k].saturating_sub(before.disp_cpu[k]));
        row.backplane_cpu +=
            secs_of(after.backplane_cpu[k].saturating_sub(before.backplane_cpu[k]));
    }
    row.nats_slow = after.nats_slow.saturating_sub(before.nats_slow);
    row.nats_cpu = secs_of(after.nats_cpu.saturating_sub(before.nats_cpu));
    let ours = row.hubs_cpu + row.nats_cpu + secs_of(after.self_cpu - before.self_cpu);
    let busy = secs_of(after.machine.saturating_sub(before.machine));
    row.foreign_pct = ((busy - ours) / wall * 100.0).max(0.0);
    row.gen_pct = secs_of(round.gen_cpu_ns) / wall * 100.0;

    // What each hub handed to NATS and took from it, against what its publishers sent.
    if system.cluster {
        let total: u64 = row.sent;
        for k in 0..hubs {
            let own: u64 = (0..publishers)
                .filter(|j| j % hubs == k)
                .map(|j| sent[j])
                .sum();
            let (out, inn) = (
                after.delta(&before, k, "cluster_sent"),
                after.delta(&before, k, "cluster_received"),
            );
            if out != own || inn != total - own {
                row.notes.push(format!(
                    "hub {}: to NATS {out} of {own}, from NATS {inn} of {}",
                    k + 1,
                    total - own
                ));
            }
        }
    }
    let mut problems = Vec::new();
    match round.end {
        End::Complete => {}
        End::Timeout => problems.push(format!("timed out after {} s", opts.timeout)),
        End::Stalled => problems.push("nothing arrived for 10 s".into()),
        End::Incomplete => problems.push(format!(
            "messages missing {} s after the publishers finished",
            opts.drain
        )),
    }
    for (what, count) in [
        ("lost", row.lost),
        ("out of order or duplicated", row.reordered),
        ("of a wrong size or publisher", row.bad),
        ("subscribers disconnected", row.died),
        (
            "counted lost by the hubs (stats().cluster.lost)",
            row.cluster_lost,
        ),
        (
            "async-nats slow-consumer reports",
            row.cluster_slow_consumer,
        ),
        ("backplane reconnects", row.cluster_disconnects),
        ("subscribers cut as slow by a hub", row.hub_slow),
        ("slow consumers at nats-server", row.nats_slow),
    ] {
        if count > 0 {
            problems.push(format!("{count} {what}"));
        }
    }
    let mut errors = round.errors.clone();
    errors.dedup();
    if let Some(first) = errors.first() {
        problems.push(format!(
            "{} subscriber error(s), first: {first}",
            errors.len()
        ));
    }
    row.status = if problems.is_empty() && row.notes.is_empty() {
        "ok".into()
    } else {
        "lossy".into()
    };
    problems.append(&mut row.notes);
    row.notes = problems;
    Ok(())
}

/// The machine, for the report's header.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into());
    let nats = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} cores, {cpu}, Linux {}, load average {} at start; hubcast {commit}; {nats}",
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// `1.23M`, `456.7k`.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A duration in ns as µs, ms or s.
fn dur(ns: u64) -> String {
    let v = ns as f64;
    if v >= 1e9 {
        format!("{:.2} s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} ms", v / 1e6)
    } else {
        format!("{:.0} µs", v / 1e3)
    }
}

fn size_name(size: usize) -> String {
    if size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `median (lowest–highest)` over several runs; the median alone for one.
fn spread(
    median: String,
    runs: usize,
    (lo, hi): (f64, f64),
    show: impl Fn(f64) -> String,
) -> String {
    if runs > 1 && hi > 0.0 {
        format!("{median} ({}–{})", show(lo), show(hi))
    } else {
        median
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

/// The median figures of one system on one cell, over its repeats.
#[derive(Debug, Default, Clone)]
struct Agg {
    runs: usize,
    ok_runs: usize,
    dps: f64,
    p50: f64,
    p99: f64,
    /// The spread over the runs: lowest and highest deliveries/s and p99.
    dps_range: (f64, f64),
    p99_range: (f64, f64),
    lost: u64,
    hubs_cpu: f64,
    disp_cpu: f64,
    backplane_cpu: f64,
    nats_cpu: f64,
    gen_pct: f64,
    foreign_pct: f64,
    late_p99: f64,
    notes: Vec<String>,
}

fn aggregate(rows: &[&Row]) -> Agg {
    // Rounds that failed to run at all have no figures; lossy ones do, and count.
    let measured: Vec<&&Row> = rows.iter().filter(|r| r.delivered > 0).collect();
    let med = |f: &dyn Fn(&Row) -> f64| median(measured.iter().map(|r| f(r)).collect());
    let range = |f: &dyn Fn(&Row) -> f64| {
        measured
            .iter()
            .map(|r| f(r))
            .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let mut notes: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| !r.ok()) {
        let what = if r.status.starts_with("error") {
            r.status.clone()
        } else {
            r.notes.join("; ")
        };
        let note = format!("run {}: {what}", r.rep + 1);
        notes.push(note);
    }
    Agg {
        runs: rows.len(),
        ok_runs: rows.iter().filter(|r| r.ok()).count(),
        dps: med(&|r| r.dps),
        p50: med(&|r| r.p50 as f64),
        p99: med(&|r| r.p99 as f64),
        dps_range: range(&|r| r.dps),
        p99_range: range(&|r| r.p99 as f64),
        lost: rows.iter().map(|r| r.lost).sum(),
        hubs_cpu: med(&|r| r.hubs_cpu),
        disp_cpu: med(&|r| r.disp_cpu),
        backplane_cpu: med(&|r| r.backplane_cpu),
        nats_cpu: med(&|r| r.nats_cpu),
        gen_pct: med(&|r| r.gen_pct),
        foreign_pct: med(&|r| r.foreign_pct),
        late_p99: med(&|r| r.late_p99 as f64),
        notes,
    }
}

fn report(opts: &Opts, rows: &[Row], machine: &str, took: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!-- cluster bench: {machine}; options: {}; {took:.0} s -->\n",
        if opts.args.is_empty() {
            "(defaults)"
        } else {
            &opts.args
        }
    );
    let _ = writeln!(
        s,
        "N = {} subscribers; floods of {} s; rate cells at {} msg/s for {} s; median of {} run(s) per cell. Ratios: deliveries/s for floods, latency for rate cells (below 1× is faster).\n",
        opts.n,
        opts.flood_secs,
        opts.rate,
        opts.rate_secs,
        opts.repeat
    );
    let cell = |kind: Kind, size: usize, system: &str| -> Option<Agg> {
        let rs: Vec<&Row> = rows
            .iter()
            .filter(|r| r.kind == kind.name() && r.size == size && r.system == system)
            .collect();
        (!rs.is_empty()).then(|| aggregate(&rs))
    };
    let status = |a: &Agg| -> String {
        if a.ok_runs == a.runs {
            "ok".into()
        } else {
            format!("**lossy in {} of {}**", a.runs - a.ok_runs, a.runs)
        }
    };

    // Summaries: one line per system, ratios against `single`, then against `nats-direct`.
    for base_name in ["single", "nats-direct"] {
        if !opts.systems.iter().any(|x| x.name == base_name) {
            continue;
        }
        let _ = writeln!(s, "#### Summary: each system ÷ `{base_name}`\n");
        let mut head = "| system |".to_string();
        let mut rule = "|---|".to_string();
        for &kind in &opts.kinds {
            for &size in &opts.sizes {
                match kind {
                    Kind::Flood => {
                        let _ = write!(head, " flood {} deliveries/s |", size_name(size));
                        rule.push_str("--:|");
                    }
                    Kind::Rate => {
                        let _ =
                            write!(head, " {} msg/s {} p50 | p99 |", opts.rate, size_name(size));
                        rule.push_str("--:|--:|");
                    }
                }
            }
        }
        let _ = writeln!(s, "{head} correct |\n{rule}---|");
        for system in &opts.systems {
            let mut line = format!("| `{}` |", system.name);
            let mut lossy = Vec::new();
            for &kind in &opts.kinds {
                for &size in &opts.sizes {
                    let a = cell(kind, size, system.name).unwrap_or_default();
                    let base = cell(kind, size, base_name).unwrap_or_default();
                    if a.ok_runs < a.runs {
                        lossy.push(format!("{} {}", kind.name(), size_name(size)));
                    }
                    match kind {
                        Kind::Flood => {
                            let _ = write!(line, " {} ({}) |", ratio(a.dps, base.dps), si(a.dps));
                        }
                        Kind::Rate => {
                            let _ = write!(
                                line,
                                " {} ({}) | {} ({}) |",
                                ratio(a.p50, base.p50),
                                dur(a.p50 as u64),
                                ratio(a.p99, base.p99),
                                dur(a.p99 as u64)
                            );
                        }
                    }
                }
            }
            let correct = if lossy.is_empty() {
                "every run".to_string()
            } else {
                format!("**lossy**: {}", lossy.join(", "))
            };
            let _ = writeln!(s, "{line} {correct} |");
        }
        let _ = writeln!(s);
    }

    for &kind in &opts.kinds {
        for &size in &opts.sizes {
            match kind {
                Kind::Flood => {
                    let _ = writeln!(
                        s,
                        "#### Flood, S = {} ({} s of publishing)\n",
                        size_name(size),
                        opts.flood_secs
                    );
                    let _ = writeln!(s, "| system | deliveries/s (range) | ÷ single | ÷ nats-direct | p50 | p99 | lost | hub CPU s (dispatchers, backplanes) | nats-server CPU s | generator % | others % | status / notes |");
                    let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
                }
                Kind::Rate => {
                    let _ = writeln!(
                        s,
                        "#### {} msg/s, S = {} ({} s)\n",
                        opts.rate,
                        size_name(size),
                        opts.rate_secs
                    );
                    let _ = writeln!(s, "| system | deliveries/s | p50 | ÷ single | ÷ nats-direct | p99 (range) | ÷ single | ÷ nats-direct | publisher late p99 | lost | hub CPU s (dispatchers, backplanes) | nats-server CPU s | others % | status / notes |");
                    let _ = writeln!(
                        s,
                        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
                    );
                }
            }
            let base = cell(kind, size, "single").unwrap_or_default();
            let nd = cell(kind, size, "nats-direct").unwrap_or_default();
            for system in &opts.systems {
                let Some(a) = cell(kind, size, system.name) else {
                    continue;
                };
                let cpu = if system.hubs == 0 {
                    "–".to_string()
                } else if system.cluster {
                    format!(
                        "{:.2} ({:.2}, {:.2})",
                        a.hubs_cpu, a.disp_cpu, a.backplane_cpu
                    )
                } else {
                    format!("{:.2} ({:.2})", a.hubs_cpu, a.disp_cpu)
                };
                let mut notes = status(&a);
                if !a.notes.is_empty() {
                    let _ = write!(notes, ": {}", a.notes.join(" / "));
                }
                match kind {
                    Kind::Flood => {
                        let _ = writeln!(
                            s,
                            "| `{}` | {} | {} | {} | {} | {} | {} | {cpu} | {:.2} | {:.0} | {:.0} | {notes} |",
                            system.name,
                            spread(si(a.dps), a.runs, a.dps_range, si),
                            ratio(a.dps, base.dps),
                            ratio(a.dps, nd.dps),
                            dur(a.p50 as u64),
                            dur(a.p99 as u64),
                            a.lost,
                            a.nats_cpu,
                            a.gen_pct,
                            a.foreign_pct,
                        );
                    }
                    Kind::Rate => {
                        let _ = writeln!(
                            s,
                            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {cpu} | {:.2} | {:.0} | {notes} |",
                            system.name,
                            si(a.dps),
                            dur(a.p50 as u64),
                            ratio(a.p50, base.p50),
                            ratio(a.p50, nd.p50),
                            spread(dur(a.p99 as u64), a.runs, a.p99_range, |v| dur(v as u64)),
                            ratio(a.p99, base.p99),
                            ratio(a.p99, nd.p99),
                            dur(a.late_p99 as u64),
                            a.lost,
                            a.nats_cpu,
                            a.foreign_pct,
                        );
                    }
                }
            }
            let _ = writeln!(s);
        }
    }
    s
}

fn csv_rows(rows: &[Row]) -> String {
    let mut s = String::from(
        "system,kind,size,rep,status,sent,delivered,lost,reordered,bad,died,secs,deliveries_per_s,p50_ns,p99_ns,max_ns,late_p99_ns,cluster_lost,cluster_slow_consumer,cluster_disconnects,hub_slow,nats_slow,hubs_cpu_s,dispatcher_cpu_s,backplane_cpu_s,nats_cpu_s,generator_pct,others_pct,notes\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{:.4},{:.0},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.1},{:.1},\"{}\"",
            r.system,
            r.kind,
            r.size,
            r.rep + 1,
            r.status.replace(',', ";"),
            r.sent,
            r.delivered,
            r.lost,
            r.reordered,
            r.bad,
            r.died,
            r.secs,
            r.dps,
            r.p50,
            r.p99,
            r.max,
            r.late_p99,
            r.cluster_lost,
            r.cluster_slow_consumer,
            r.cluster_disconnects,
            r.hub_slow,
            r.nats_slow,
            r.hubs_cpu,
            r.disp_cpu,
            r.backplane_cpu,
            r.nats_cpu,
            r.gen_pct,
            r.foreign_pct,
            r.notes.join("; ").replace('"', "'"),
        );
    }
    s
}
