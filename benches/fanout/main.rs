//! The fan-out benchmark (issue 3): hubcast against the tutorial's thread-per-client
//! design, a no-logic ceiling, nats-server and redis-server, on loopback; with the host
//! publishing, or (relay modes) a client publishing and the server relaying its lines to
//! the other clients, as in a chat. WebSocket modes put hubcast's WebSocket transport
//! against a no-logic WebSocket ceiling, Node's `ws` and tokio-tungstenite; topic mode
//! compares publishing to topics with broadcasting; replay mode measures resume and rings;
//! flood-limit mode measures inbound rate limits against a flooding client (issue 16);
//! SSE modes put server-sent events against the WebSocket and TCP clients of the same hub
//! and a no-logic single-loop SSE writer, and measure idle event streams' memory (issue 17).
//!
//! `cargo bench --bench fanout -- --help` lists the options; docs/BENCHMARKS.md explains
//! the method and holds the results.

#[cfg(feature = "websocket")]
mod deflate;
mod gen;
#[allow(dead_code)] // shared with benches/cluster, which uses other parts
mod hist;
mod limit;
mod peers;
mod proto;
mod relay;
mod replay;
mod server;
mod sse;
#[allow(dead_code)] // shared with benches/cluster, which uses other parts
mod sys;
mod tokio_ws;
mod ws;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::gen::{End, Gen, Round};
use crate::hist::Hist;
use crate::peers::{PeerKind, Published};
use crate::proto::Proto;
use crate::relay::LinePub;
use crate::server::{Job, PubReport};
use crate::sys::{now_ns, ProcSample};

const USAGE: &str = "\
fanout: fan-out benchmark for hubcast (see docs/BENCHMARKS.md)

usage: cargo bench --bench fanout -- [options]

  --mode M          flood | rate | stall | conns | relay | relay-flood | relay-stall |
                    relay-rate | ws | ws-flood | ws-conns | sse | sse-flood | sse-conns |
                    topics | replay | flood-limit | all, or a comma-separated list
                                                                    (default: flood)
                    relay = relay-flood + relay-stall + relay-rate: the publisher is a
                    TCP client of the server, which relays its lines to the others
                    ws = ws-flood + ws-conns: WebSocket clients (hubcast-ws needs
                    `cargo bench --bench fanout --features websocket`; node-ws needs
                    node and `npm ci` in benches/fanout/node)
                    sse = sse-flood + sse-conns: one hub (line framing, event streams
                    on /events of its WebSocket listener, a TCP listener beside it)
                    with SSE, WebSocket or TCP clients, against sse-ceiling, a
                    single-loop SSE writer; ratios to sse-ceiling (needs
                    `--features websocket`); sse-conns: 10,000 idle clients each
                    topics: N clients in topics of --topic-size, the host publishing
                    to each topic in turn, against a broadcast to the same clients
                    replay = resume + rings: 1,000 clients resuming 1,000 messages
                    each; the memory of replay rings of 1,000 messages (100 topics)
                    flood-limit: chatters at a fixed rate in a relay-mode hub with a
                    rate limit, with and without one client flooding, per policy
                    ws-deflate (run alone; `--features deflate`): WebSocket compression,
                    hubcast-ws-json (off), hubcast-ws-deflate (once per broadcast) and
                    node-ws-deflate (ws's perMessageDeflate, per connection), N clients
                    (--n, default 10000) x --count C (100) JSON-like messages of --s S
                    (4096) bytes: deliveries/s, bytes on the wire, idle RSS per client
  --systems LIST    any of hubcast,hubcast-default,thread,ceiling (host publishes),
                    hubcast-relay,hubcast-hostrelay,thread-relay,ceiling-relay (a
                    client publishes), nats,redis (both), hubcast-ws,ceiling-ws,
                    node-ws,tokio-ws,hubcast-adopt (WebSocket; hubcast-adopt: hubcast-ws
                    clients accepted by the host and handed over, Hub::adopt),
                    hubcast-sse,hubcast-sse-ws,hubcast-sse-tcp,sse-ceiling (SSE),
                    hubcast-topics   (default: all)
  --cells LIST      cells to run, e.g. 'N=100,S=1024' or 'N=10,S=64;N=1000,S=16384'
  --n LIST          subscriber counts of the matrix           (default: 10,100,1000,10000)
  --s LIST          message sizes in bytes                    (default: 64,1024,16384)
  --quick           smaller matrix and message counts (N=10,1000 x S=64,16384)
  --repeat R        run every cell R times, systems alternating; report the median
  --target-secs T   aim for T seconds of publishing per flood cell       (default: 2)
  --timeout SECS    abort a cell after SECS                              (default: 60)
  --progress SECS   abort a round when nothing arrives for SECS          (default: 10)
  --rate R          messages per second in rate mode                     (default: 10000)
  --duration SECS   publishing time in rate mode                         (default: 2)
  --stalled K       subscribers that never read, in stall modes (default: 10; relay: 2)
  --stall-mib B     relay-stall: MiB sent to each subscriber          (default: 50; quick 16)
  --stall-repeat R  relay-stall: at least R pairs of runs with/without (default: 5; quick 2)
  --conns LIST      idle client counts in conns mode (default: 10000,19000,30000,50000,100000;
                    ws-conns, sse-conns: 10000)
  --topic-size K    clients per topic in topics mode                     (default: 10)
  --queue-bytes B   hubcast queue_bytes                                  (default: 67108864)
  --limit-rate R    flood-limit: the limit, messages per second          (default: 1000)
  --limit-burst B   flood-limit: the limit's burst                       (default: 100)
  --chatters C      flood-limit: clients chatting                        (default: 100)
  --chat-rate R     flood-limit: messages per second each chatter sends  (default: 10)
  --relays LIST     flood-limit: any of others,all,topics       (default: others,topics)
                    (flood-limit runs --duration seconds, default 5, quick 2; S = 64)
  --out DIR         where CSV and Markdown results go        (default: target/fanout)
  --self-test       check the histogram and protocol parsers, then exit

internal: --serve SYSTEM [--max-clients C] [--queue-bytes B] [--limit-rate R
          --limit-burst B --limit-policy P --limit-relay X]
";

/// Above this much CPU used by other processes during a round (% of one core, jiffy
/// accounting included), the row is flagged as measured on a noisy machine.
const NOISY_PCT: f64 = 15.0;

/// Above this much CPU used by the load generator's thread during a round (% of one core),
/// the row is flagged: the generator, not the system under test, may set the pace.
const GEN_BOUND_PCT: f64 = 90.0;

/// The name of hubcast's dispatcher thread, whose CPU time is shown apart.
const DISPATCHER_THREAD: &str = "hubcast-loop";

/// Children started by this process, by PID, for the Ctrl-C handler.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register_child(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

fn unregister_child(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&p| p != pid);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum System {
    Hubcast,
    HubcastDefault,
    Thread,
    Ceiling,
    Nats,
    Redis,
    CeilingRelay,
    HubcastRelay,
    HubcastHostRelay,
    ThreadRelay,
    HubcastWs,
    CeilingWs,
    NodeWs,
    TokioWs,
    /// `hubcast-ws` whose clients a std listener of the server process accepts, answers
    /// (`Hub::websocket_answer`) and hands over (`Hub::adopt`), as an axum app would.
    HubcastAdopt,
    HubcastTopics,
    /// `hubcast` with `Protocol::Sequenced`: replay mode only.
    HubcastSeq,
    /// The relay-mode chat hub with a rate limit: flood-limit mode only.
    HubcastLimit,
    /// The SSE modes' hub, its clients event streams.
    HubcastSse,
    /// The same hub, its clients WebSocket.
    HubcastSseWs,
    /// The same hub, its clients TCP (lines).
    HubcastSseTcp,
    /// A single-loop event-stream writer: the SSE modes' ceiling.
    CeilingSse,
}

const ALL: [System; 22] = [
    System::Hubcast,
    System::HubcastDefault,
    System::Thread,
    System::Ceiling,
    System::Nats,
    System::Redis,
    System::CeilingRelay,
    System::HubcastRelay,
    System::HubcastHostRelay,
    System::ThreadRelay,
    System::HubcastWs,
    System::CeilingWs,
    System::NodeWs,
    System::TokioWs,
    System::HubcastAdopt,
    System::HubcastTopics,
    System::HubcastSeq,
    System::HubcastLimit,
    System::HubcastSse,
    System::HubcastSseWs,
    System::HubcastSseTcp,
    System::CeilingSse,
];

/// The systems of the SSE modes, in the order they run in a cell: the three wires of one
/// hub, the ceiling between them.
const SSE_SYSTEMS: &[System] = &[
    System::HubcastSse,
    System::CeilingSse,
    System::HubcastSseWs,
    System::HubcastSseTcp,
];

/// The systems of the WebSocket modes, in the order they run in a cell.
const WS_SYSTEMS: &[System] = &[
    System::HubcastWs,
    System::HubcastAdopt,
    System::CeilingWs,
    System::NodeWs,
    System::TokioWs,
];

/// Topic mode: topics, then a broadcast to the same clients.
const TOPIC_SYSTEMS: &[System] = &[System::HubcastTopics, System::Hubcast];

/// The systems of the host-publishes modes, in the order they run in a cell.
const HOST_SYSTEMS: &[System] = &[
    System::Hubcast,
    System::HubcastDefault,
    System::Thread,
    System::Ceiling,
    System::Nats,
    System::Redis,
];

/// The systems of the relay modes, in the order they run in a cell: the ceiling first, as
/// it sets the cell's message count.
const RELAY_SYSTEMS: &[System] = &[
    System::CeilingRelay,
    System::HubcastRelay,
    System::HubcastHostRelay,
    System::ThreadRelay,
    System::Nats,
    System::Redis,
];

/// The relay stall cell also runs hubcast with host broadcasts (the stall mode's
/// configuration), so both paths are measured on the same workload.
const RELAY_STALL_SYSTEMS: &[System] = &[
    System::CeilingRelay,
    System::HubcastRelay,
    System::HubcastHostRelay,
    System::Hubcast,
    System::ThreadRelay,
    System::Nats,
    System::Redis,
];

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Hubcast => "hubcast",
            System::HubcastDefault => "hubcast-default",
            System::Thread => "thread",
            System::Ceiling => "ceiling",
            System::Nats => "nats",
            System::Redis => "redis",
            System::CeilingRelay => "ceiling-relay",
            System::HubcastRelay => "hubcast-relay",
            System::HubcastHostRelay => "hubcast-hostrelay",
            System::ThreadRelay => "thread-relay",
            System::HubcastWs => "hubcast-ws",
            System::CeilingWs => "ceiling-ws",
            System::NodeWs => "node-ws",
            System::TokioWs => "tokio-ws",
            System::HubcastAdopt => "hubcast-adopt",
            System::HubcastTopics => "hubcast-topics",
            System::HubcastSeq => "hubcast-seq",
            System::HubcastLimit => "hubcast-limit",
            System::HubcastSse => "hubcast-sse",
            System::HubcastSseWs => "hubcast-sse-ws",
            System::HubcastSseTcp => "hubcast-sse-tcp",
            System::CeilingSse => "sse-ceiling",
        }
    }

    fn parse(s: &str) -> Option<System> {
        ALL.into_iter().find(|x| x.name() == s)
    }

    fn proto(self) -> Proto {
        match self {
            System::Nats => Proto::Nats,
            System::Redis => Proto::Redis,
            System::HubcastWs
            | System::HubcastAdopt
            | System::CeilingWs
            | System::NodeWs
            | System::TokioWs => Proto::Ws,
            System::HubcastSeq => Proto::Seq,
            System::HubcastSse | System::CeilingSse => Proto::Sse,
            System::HubcastSseWs => Proto::WsText,
            System::HubcastSseTcp => Proto::Lines,
            s if s.line_publisher() => Proto::Lines,
            _ => Proto::Lp,
        }
    }

    /// Whether the publisher is a client sending lines ([`LinePub`]), the server relaying
    /// them.
    fn line_publisher(self) -> bool {
        matches!(
            self,
            System::CeilingRelay
                | System::HubcastRelay
                | System::HubcastHostRelay
                | System::ThreadRelay
        )
    }

    /// Whether the server is a `Hub` (it answers `stats`).
    fn is_hub(self) -> bool {
        matches!(
            self,
            System::Hubcast
                | System::HubcastDefault
                | System::HubcastRelay
                | System::HubcastHostRelay
                | System::HubcastWs
                | System::HubcastAdopt
                | System::HubcastTopics
                | System::HubcastSeq
                | System::HubcastLimit
                | System::HubcastSse
                | System::HubcastSseWs
                | System::HubcastSseTcp
        )
    }

    /// Whether it is a hub over WebSocket listeners (feature `websocket`).
    fn needs_websocket(self) -> bool {
        matches!(
            self,
            System::HubcastWs
                | System::HubcastAdopt
                | System::HubcastSse
                | System::HubcastSseWs
                | System::HubcastSseTcp
        )
    }

    fn peer(self) -> Option<PeerKind> {
        match self {
            System::Nats => Some(PeerKind::Nats),
            System::Redis => Some(PeerKind::Redis),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Flood,
    Rate,
    Stall,
    Conns,
    /// Relay floods: the publisher is a client of the server.
    Relay,
    RelayStall,
    RelayRate,
    /// Floods to WebSocket clients.
    WsFlood,
    /// Idle WebSocket clients.
    WsConns,
    /// Publishing to topics against broadcasting.
    Topics,
    /// Clients resuming from the hub-wide replay ring.
    Resume,
    /// Memory of replay rings.
    Rings,
    /// Chatters in a rate-limited relay hub, with and without a flooding client.
    FloodLimit,
    /// Floods to event streams, WebSocket and TCP clients of one hub, and the SSE ceiling.
    SseFlood,
    /// Idle event streams, WebSocket and TCP clients of that hub.
    SseConns,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Flood => "flood",
            Mode::Rate => "rate",
            Mode::Stall => "stall",
            Mode::Conns => "conns",
            Mode::Relay => "relay",
            Mode::RelayStall => "relay-stall",
            Mode::RelayRate => "relay-rate",
            Mode::WsFlood => "ws-flood",
            Mode::WsConns => "ws-conns",
            Mode::Topics => "topics",
            Mode::Resume => "resume",
            Mode::Rings => "rings",
            Mode::FloodLimit => "flood-limit",
            Mode::SseFlood => "sse-flood",
            Mode::SseConns => "sse-conns",
        }
    }

    fn is_conns(self) -> bool {
        matches!(self, Mode::Conns | Mode::WsConns | Mode::SseConns)
    }

    /// The system ratios are taken to, cell by cell.
    fn base(self) -> &'static str {
        match self {
            Mode::WsFlood | Mode::WsConns => "hubcast-ws",
            Mode::SseFlood => "sse-ceiling",
            Mode::SseConns => "hubcast-sse",
            _ => "hubcast",
        }
    }

    fn is_rate(self) -> bool {
        matches!(self, Mode::Rate | Mode::RelayRate)
    }

    fn is_stall(self) -> bool {
        matches!(self, Mode::Stall | Mode::RelayStall)
    }

    fn is_relay(self) -> bool {
        matches!(self, Mode::Relay | Mode::RelayStall | Mode::RelayRate)
    }

    /// The systems this mode runs, in order.
    fn systems(self) -> &'static [System] {
        match self {
            Mode::Relay | Mode::RelayRate => RELAY_SYSTEMS,
            Mode::RelayStall => RELAY_STALL_SYSTEMS,
            Mode::Flood | Mode::Rate | Mode::Stall | Mode::Conns => HOST_SYSTEMS,
            Mode::WsFlood | Mode::WsConns => WS_SYSTEMS,
            Mode::Topics => TOPIC_SYSTEMS,
            Mode::Resume | Mode::Rings => &[System::HubcastSeq],
            Mode::FloodLimit => &[System::HubcastLimit],
            Mode::SseFlood | Mode::SseConns => SSE_SYSTEMS,
        }
    }
}

#[derive(Debug, Clone)]
struct Opts {
    modes: Vec<Mode>,
    systems: Vec<System>,
    cells: Option<Vec<(usize, usize)>>,
    ns: Vec<usize>,
    ss: Vec<usize>,
    quick: bool,
    repeat: usize,
    target_secs: f64,
    timeout: u64,
    progress: u64,
    rate: f64,
    duration: f64,
    stalled: Option<usize>,
    stall_mib: usize,
    stall_repeat: usize,
    conns: Vec<usize>,
    /// Whether `--conns` was given (ws-conns and sse-conns otherwise run 10,000 clients
    /// only).
    conns_given: bool,
    topic_size: usize,
    queue_bytes: usize,
    /// Whether `--duration` was given (flood-limit otherwise runs 5 s, quick 2 s).
    duration_given: bool,
    /// Flood-limit mode's options.
    limit: limit::LimitOpts,
    out: PathBuf,
}

fn parse_list(v: &str) -> Result<Vec<usize>, String> {
    v.split(',')
        .map(|x| {
            x.trim()
                .replace('_', "")
                .parse()
                .map_err(|_| format!("bad number {x:?}"))
        })
        .collect()
}

fn parse_cells(v: &str) -> Result<Vec<(usize, usize)>, String> {
    v.split([';', ' '])
        .filter(|c| !c.is_empty())
        .map(|cell| {
            let (mut n, mut s) = (None, None);
            for kv in cell.split(',') {
                match kv.split_once('=') {
                    Some(("N" | "n", x)) => n = x.replace('_', "").parse().ok(),
                    Some(("S" | "s", x)) => s = x.replace('_', "").parse().ok(),
                    _ => return Err(format!("bad cell {cell:?}: want N=..,S=..")),
                }
            }
            Ok((
                n.ok_or(format!("cell {cell:?} needs N"))?,
                s.ok_or(format!("cell {cell:?} needs S"))?,
            ))
        })
        .collect()
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        modes: vec![Mode::Flood],
        systems: ALL.to_vec(),
        cells: None,
        ns: vec![10, 100, 1000, 10_000],
        ss: vec![64, 1024, 16_384],
        quick: false,
        repeat: 1,
        target_secs: 2.0,
        timeout: 60,
        progress: 10,
        rate: 10_000.0,
        duration: 2.0,
        stalled: None,
        stall_mib: 50,
        stall_repeat: 5,
        conns: vec![10_000, 19_000, 30_000, 50_000, 100_000],
        conns_given: false,
        topic_size: 10,
        queue_bytes: 64 << 20,
        duration_given: false,
        limit: limit::LimitOpts::default(),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fanout"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |v: String| -> Result<f64, String> {
            v.parse().map_err(|_| format!("bad number {v:?}"))
        };
        match a.as_str() {
            "--bench" => {} // cargo bench passes it
            "--mode" => {
                o.modes.clear();
                for v in val()?.split(',') {
                    let add: &[Mode] = match v.trim() {
                        "flood" => &[Mode::Flood],
                        "rate" => &[Mode::Rate],
                        "stall" => &[Mode::Stall],
                        "conns" => &[Mode::Conns],
                        "relay" => &[Mode::Relay, Mode::RelayStall, Mode::RelayRate],
                        "relay-flood" => &[Mode::Relay],
                        "relay-stall" => &[Mode::RelayStall],
                        "relay-rate" => &[Mode::RelayRate],
                        "ws" => &[Mode::WsFlood, Mode::WsConns],
                        "ws-flood" => &[Mode::WsFlood],
                        "ws-conns" => &[Mode::WsConns],
                        "sse" => &[Mode::SseFlood, Mode::SseConns],
                        "sse-flood" => &[Mode::SseFlood],
                        "sse-conns" => &[Mode::SseConns],
                        "topics" => &[Mode::Topics],
                        "replay" => &[Mode::Resume, Mode::Rings],
                        "resume" => &[Mode::Resume],
                        "rings" => &[Mode::Rings],
                        "flood-limit" => &[Mode::FloodLimit],
                        "all" => &[
                            Mode::Flood,
                            Mode::Rate,
                            Mode::Stall,
                            Mode::Conns,
                            Mode::Relay,
                            Mode::RelayStall,
                            Mode::RelayRate,
                            Mode::WsFlood,
                            Mode::WsConns,
                            Mode::SseFlood,
                            Mode::SseConns,
                            Mode::Topics,
                            Mode::Resume,
                            Mode::Rings,
                            Mode::FloodLimit,
                        ],
                        other => return Err(format!("unknown mode {other:?}")),
                    };
                    for m in add {
                        if !o.modes.contains(m) {
                            o.modes.push(*m);
                        }
                    }
                }
            }
            "--systems" => {
                o.systems = val()?
                    .split(',')
                    .map(|s| System::parse(s.trim()).ok_or(format!("unknown system {s:?}")))
                    .collect::<Result<_, _>>()?;
            }
            "--cells" => o.cells = Some(parse_cells(&val()?)?),
            "--n" => o.ns = parse_list(&val()?)?,
            "--s" => o.ss = parse_list(&val()?)?,
            "--quick" => {
                o.quick = true;
                o.ns = vec![10, 1000];
                o.ss = vec![64, 16_384];
                if !o.conns_given {
                    o.conns = vec![10_000];
                }
                o.target_secs = 1.0;
                o.duration = 1.0;
                o.stall_mib = 16;
                o.stall_repeat = 2;
            }
            "--repeat" => o.repeat = num(val()?)?.max(1.0) as usize,
            "--target-secs" => o.target_secs = num(val()?)?,
            "--timeout" => o.timeout = num(val()?)? as u64,
            "--progress" => o.progress = num(val()?)? as u64,
            "--rate" => o.rate = num(val()?)?,
            "--duration" => {
                o.duration = num(val()?)?;
                o.duration_given = true;
            }
            "--limit-rate" => o.limit.rate = num(val()?)?,
            "--limit-burst" => o.limit.burst = num(val()?)?.max(1.0) as u64,
            "--chatters" => o.limit.chatters = num(val()?)?.max(2.0) as usize,
            "--chat-rate" => o.limit.chat_rate = num(val()?)?,
            "--relays" => o.limit.relays = limit::parse_relays(&val()?)?,
            "--stalled" => o.stalled = Some(num(val()?)? as usize),
            "--stall-mib" => o.stall_mib = num(val()?)?.max(1.0) as usize,
            "--stall-repeat" => o.stall_repeat = num(val()?)?.max(1.0) as usize,
            "--conns" => {
                o.conns = parse_list(&val()?)?;
                o.conns_given = true;
            }
            "--topic-size" => o.topic_size = num(val()?)?.max(1.0) as usize,
            "--queue-bytes" => o.queue_bytes = num(val()?)? as usize,
            "--out" => o.out = PathBuf::from(val()?),
            "-h" | "--help" => return Err(String::new()),
            other if !other.starts_with('-') => {} // a cargo bench filter: ignored
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let system = args.get(i + 1).cloned().unwrap_or_default();
        let opt = |name: &str, default: usize| {
            args.iter()
                .position(|a| a == name)
                .and_then(|j| args.get(j + 1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        sys::raise_nofile();
        std::process::exit(server::serve(
            &system,
            server::ServeOpts {
                max_clients: opt("--max-clients", 10_000),
                queue_bytes: opt("--queue-bytes", 64 << 20),
                replay_messages: opt("--replay-messages", 0),
                replay_bytes: opt("--replay-bytes", 1 << 20),
                limit: limit::ServeLimit::from_args(&args),
            },
        ));
    }
    #[cfg(feature = "websocket")]
    if args
        .windows(2)
        .any(|w| w[0] == "--mode" && w[1] == "ws-deflate")
    {
        std::process::exit(deflate::run(&args));
    }
    if args.iter().any(|a| a == "--self-test") {
        hist::self_test();
        proto::self_test();
        ws::self_test();
        sse::self_test();
        println!("self-test passed");
        return;
    }
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fanout: {e}\n");
            }
            eprint!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let _ = ctrlc::set_handler(|| {
        for pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            sys::kill(*pid, sys::SIGKILL);
        }
        eprintln!("fanout: interrupted; children stopped");
        std::process::exit(130);
    });
    let nofile = sys::raise_nofile();
    if let Err(e) = std::fs::create_dir_all(&opts.out) {
        eprintln!("fanout: cannot create {}: {e}", opts.out.display());
        std::process::exit(1);
    }
    let mut bench = Bench::new(opts, nofile);
    eprintln!("{}", bench.machine);
    let modes = bench.opts.modes.clone();
    for mode in modes {
        bench.run_mode(mode);
    }
    bench.kill_leftovers();
}

/// One measured run of one system on one cell.
#[derive(Debug, Clone, Default)]
struct Row {
    mode: &'static str,
    system: &'static str,
    n: usize,
    k: usize,
    s: usize,
    m: u64,
    rate: f64,
    status: String,
    deliveries: u64,
    secs: f64,
    dps: f64,
    mbps: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    lost: u64,
    reordered: u64,
    bad: u64,
    died: u64,
    peak_rss_kib: u64,
    cpu_s: f64,
    disp_cpu_s: f64,
    pub_cpu_s: f64,
    gen_cpu_pct: f64,
    connect_s: f64,
    mem_per_client: f64,
    kmem_per_client: f64,
    bcast_ms: f64,
    bcast_max_ms: f64,
    /// Fixed rate: how late the publisher handed messages over (p50, p99), in ns.
    late_p50: u64,
    late_p99: u64,
    /// How long the publisher took to hand over all messages (flood: how far the system let
    /// it run ahead of the deliveries), in seconds.
    pub_s: f64,
    /// CPU used by processes other than the bench and the server during the round, as a
    /// percentage of one core: a noisy machine.
    foreign_pct: f64,
    /// CPU time of the hubcast relay servers' host thread (event drain or relay loop).
    host_cpu_s: f64,
    /// CPU time of a publisher that runs in the bench process (peers, relay clients).
    client_pub_cpu_s: f64,
    /// Runs behind this row (`--repeat`), and the spread of the figure the row was chosen
    /// by: deliveries/s (floods), p99 (fixed rate), with/without ratio (stall pairs).
    reps: usize,
    spread_lo: f64,
    spread_hi: f64,
    /// Stall modes: the median with/without ratio over the runs paired by repeat.
    pair_ratio: f64,
    /// Replay mode: the server's resident set before the step measured, in KiB.
    rss_base_kib: u64,
    /// Replay mode, ring rows: bytes of resident memory per replay ring, and what its
    /// messages hold (payload and framing).
    ring_bytes: f64,
    ring_ideal_bytes: f64,
    note: String,
}

impl Row {
    /// Whether the round completed with every message delivered exactly once, in order:
    /// only such rows get ratios.
    fn ok(&self) -> bool {
        self.status == "ok"
    }
}

/// A running system under test: a child process (our own `--serve`, or a peer binary).
struct Sut {
    system: System,
    child: Child,
    pid: u32,
    port: u16,
    monitor: u16,
    stdin: Option<ChildStdin>,
    lines: Option<Receiver<String>>,
    unmatched: VecDeque<String>,
    publisher: Option<JoinHandle<io::Result<Published>>>,
    /// The client that publishes to a relay server, once connected.
    line_pub: Option<LinePub>,
    stopped: bool,
}

/// Where `node-ws`'s server and its `ws` package live.
fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/fanout/node")
}

/// Whether `node-ws` can run: `node` on PATH and the `ws` package installed.
fn node_available() -> Result<(), String> {
    peers::which("node").ok_or("node not found on PATH (apt-get install nodejs npm)")?;
    if !node_dir().join("node_modules/ws/package.json").is_file() {
        return Err(format!(
            "the ws package is not installed: run `npm ci` in {}",
            node_dir().display()
        ));
    }
    Ok(())
}

impl Sut {
    fn start(system: System, max_clients: usize, opts: &Opts) -> Result<Sut, String> {
        Self::start_with(system, max_clients, opts, &[])
    }

    /// [`Sut::start`], with more arguments for a `--serve` child.
    fn start_with(
        system: System,
        max_clients: usize,
        opts: &Opts,
        extra: &[String],
    ) -> Result<Sut, String> {
        let deadline = now_ns() + 10_000_000_000;
        if let Some(kind) = system.peer() {
            let bin =
                peers::which(kind.binary()).ok_or(format!("{} not on PATH", kind.binary()))?;
            let port = peers::free_port().map_err(|e| e.to_string())?;
            let monitor = peers::free_port().map_err(|e| e.to_string())?;
            let mut cmd = peers::command(kind, &bin, port, monitor, max_clients, &opts.out);
            sys::die_with_parent(&mut cmd);
            let child = cmd
                .spawn()
                .map_err(|e| format!("starting {}: {e}", bin.display()))?;
            let pid = child.id();
            register_child(pid);
            let sut = Sut {
                system,
                child,
                pid,
                port,
                monitor,
                stdin: None,
                lines: None,
                unmatched: VecDeque::new(),
                publisher: None,
                line_pub: None,
                stopped: false,
            };
            peers::wait_listening(port, deadline)
                .map_err(|e| format!("{} did not listen: {e}", kind.binary()))?;
            return Ok(sut);
        }
        let mut cmd = if system == System::NodeWs {
            // Node's `ws` speaks the same control protocol as `--serve`.
            let node = peers::which("node").ok_or("node not on PATH")?;
            let mut cmd = Command::new(node);
            cmd.arg(node_dir().join("server.js"));
            cmd
        } else {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut cmd = Command::new(exe);
            cmd.args(["--serve", system.name()])
                .args(["--max-clients", &max_clients.to_string()])
                .args(["--queue-bytes", &opts.queue_bytes.to_string()])
                .args(extra);
            cmd
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        sys::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| format!("starting --serve: {e}"))?;
        let pid = child.id();
        register_child(pid);
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sut = Sut {
            system,
            child,
            pid,
            port: 0,
            monitor: 0,
            stdin,
            lines: Some(rx),
            unmatched: VecDeque::new(),
            publisher: None,
            line_pub: None,
            stopped: false,
        };
        let line = sut.wait_line("port", deadline)?;
        sut.port = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .ok_or("bad port line")?;
        Ok(sut)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("no control pipe")?;
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("control pipe: {e}"))
    }

    /// The next line from the child starting with `prefix` (others are kept for later);
    /// an `error` line fails.
    fn wait_line(&mut self, prefix: &str, deadline: u64) -> Result<String, String> {
        if let Some(i) = self.unmatched.iter().position(|l| l.starts_with(prefix)) {
            return Ok(self.unmatched.remove(i).unwrap_or_default());
        }
        let rx = self.lines.as_ref().ok_or("no control pipe")?;
        loop {
            let left = deadline.saturating_sub(now_ns());
            match rx.recv_timeout(Duration::from_nanos(left.max(1))) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(line) if line.starts_with("error") => {
                    return Err(format!("{}: {line}", self.system.name()))
                }
                Ok(line) => self.unmatched.push_back(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{}: no '{prefix}' reply in time",
                        self.system.name()
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("{}: server process exited", self.system.name()))
                }
            }
        }
    }

    /// Waits until the server has registered `n` clients (for peers the generator's
    /// handshake already proved it).
    fn confirm(&mut self, n: usize, deadline: u64) -> Result<(), String> {
        if self.system.peer().is_some() {
            return Ok(());
        }
        let ms = deadline.saturating_sub(now_ns()) / 1_000_000;
        self.send(&format!("expect {n} {ms}"))?;
        self.wait_line("connected", deadline + 1_000_000_000)
            .map(|_| ())
    }

    fn publish(&mut self, job: Job, receivers: u64, timeout: Duration) -> Result<(), String> {
        if let Some(lp) = &self.line_pub {
            let h = lp.spawn(job).map_err(|e| format!("publisher: {e}"))?;
            self.publisher = Some(h);
            return Ok(());
        }
        match self.system.peer() {
            Some(kind) => {
                let h = peers::spawn_publisher(kind, self.addr(), job, receivers, timeout)
                    .map_err(|e| format!("publisher: {e}"))?;
                self.publisher = Some(h);
                Ok(())
            }
            None => self.send(&format!(
                "publish {} {} {} {}",
                job.start, job.count, job.size, job.rate
            )),
        }
    }

    /// Collects the publisher's outcome and, for a publisher in this process, its CPU
    /// time in ns. If `complete` is false the round was aborted: the caller stops the
    /// server, which unblocks the publisher.
    fn finish_publish(&mut self, complete: bool, notes: &mut Vec<String>) -> (PubReport, u64) {
        if !complete {
            return (PubReport::default(), 0);
        }
        match self.publisher.take() {
            Some(h) => match h.join() {
                Ok(Ok(p)) => {
                    notes.extend(p.notes);
                    return (p.report, p.cpu_ns);
                }
                Ok(Err(e)) => notes.push(format!("publisher: {e}")),
                Err(_) => notes.push("publisher panicked".into()),
            },
            None => match self.wait_line("published", now_ns() + 5_000_000_000) {
                Ok(line) => {
                    let words: Vec<&str> = line.split_whitespace().skip(2).collect();
                    return (PubReport::from_words(&words).unwrap_or_default(), 0);
                }
                Err(e) => notes.push(e),
            },
        }
        (PubReport::default(), 0)
    }

    /// What the server says about its clients after a round.
    fn server_notes(&mut self) -> String {
        match self.system {
            s if s.is_hub() => {
                if self.send("stats").is_err() {
                    return String::new();
                }
                match self.wait_line("stats", now_ns() + 2_000_000_000) {
                    Ok(line) => {
                        // Report only what signals trouble.
                        let bad: Vec<&str> = line
                            .split_whitespace()
                            .filter(|kv| {
                                ["dropped=", "slow=", "reset=", "io=", "refused="]
                                    .iter()
                                    .any(|k| kv.starts_with(k) && !kv.ends_with("=0"))
                            })
                            .collect();
                        if bad.is_empty() {
                            String::new()
                        } else {
                            format!("hubcast: {}", bad.join(" "))
                        }
                    }
                    Err(e) => e,
                }
            }
            System::Nats | System::Redis => {
                let kind = self.system.peer().unwrap_or(PeerKind::Nats);
                peers::server_notes(kind, self.port, self.monitor)
            }
            System::TokioWs => {
                if self.send("stats").is_err() {
                    return String::new();
                }
                match self.wait_line("stats", now_ns() + 2_000_000_000) {
                    Ok(line) => line
                        .split_whitespace()
                        .find(|kv| kv.starts_with("lagged=") && *kv != "lagged=0")
                        .map(|kv| format!("tokio-ws: {kv} messages skipped by lagging receivers"))
                        .unwrap_or_default(),
                    Err(e) => e,
                }
            }
            _ => String::new(),
        }
    }

    /// Adds how the server process ended, if it did, to an error.
    fn explain(&mut self, e: String) -> String {
        std::thread::sleep(Duration::from_millis(100));
        match self.child.try_wait() {
            Ok(Some(status)) => format!("{e} (the server process exited: {status})"),
            _ => e,
        }
    }

    fn sample(&self) -> ProcSample {
        sys::sample(self.pid).unwrap_or_default()
    }

    /// Stops the server: politely, then by SIGKILL to its PID.
    fn stop(&mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Once reaped, the PID may belong to someone else: never signal it again.
        if self.stopped {
            return;
        }
        self.stopped = true;
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            unregister_child(self.pid);
            return;
        }
        if self.stdin.is_some() {
            let _ = self.send("quit");
            self.stdin = None;
        } else {
            sys::kill(self.pid, sys::SIGTERM);
        }
        let deadline = now_ns() + 3_000_000_000;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if now_ns() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        unregister_child(self.pid);
        if let Some(h) = self.publisher.take() {
            // The server is gone, so the publisher's socket fails and the thread ends.
            let _ = h.join();
        }
        self.line_pub = None;
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        unregister_child(self.pid);
    }
}

/// One traffic cell, for one system.
#[derive(Debug, Clone, Copy)]
struct Cell {
    mode: Mode,
    system: System,
    n: usize,
    s: usize,
    k: usize,
    /// Relay floods: the message count every system gets in this cell, once known.
    fixed_m: Option<u64>,
}

/// The rows a cell's runs are reported by: per system and K, the median run (by
/// deliveries/s; by p99 at a fixed rate in relay mode) with the spread over the repeats;
/// in stall modes, the with/without ratio of each repeat's pair of runs.
fn summarize(mode: Mode, runs: &[(usize, Row)]) -> Vec<Row> {
    let by_p99 = mode == Mode::RelayRate;
    let metric = |r: &Row| if by_p99 { r.p99 as f64 } else { r.dps };
    let mut keys: Vec<(&'static str, usize)> = Vec::new();
    for (_, r) in runs {
        if !keys.contains(&(r.system, r.k)) {
            keys.push((r.system, r.k));
        }
    }
    let mut out = Vec::new();
    for (system, k) in keys {
        let mut group: Vec<&Row> = runs
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.system == system && r.k == k)
            .collect();
        group.sort_by(|a, b| metric(a).total_cmp(&metric(b)));
        let mut row = group[group.len() / 2].clone();
        row.reps = group.len();
        let ok: Vec<f64> = group.iter().filter(|r| r.ok()).map(|r| metric(r)).collect();
        if let (Some(lo), Some(hi)) = (ok.first(), ok.last()) {
            row.spread_lo = *lo;
            row.spread_hi = *hi;
        }
        if mode.is_stall() && k > 0 {
            // Each repeat ran the system without, then with, the stalled subscribers.
            let mut ratios: Vec<f64> = runs
                .iter()
                .filter(|(_, r)| r.system == system && r.k == k && r.ok())
                .filter_map(|(rep, r)| {
                    runs.iter()
                        .find(|(rep0, b)| rep0 == rep && b.system == system && b.k == 0)
                        .filter(|(_, b)| b.ok() && b.dps > 0.0)
                        .map(|(_, b)| r.dps / b.dps)
                })
                .collect();
            ratios.sort_by(f64::total_cmp);
            row.spread_lo = 0.0;
            row.spread_hi = 0.0;
            row.pair_ratio = 0.0;
            if !ratios.is_empty() {
                let mid = ratios.len() / 2;
                row.pair_ratio = if ratios.len() % 2 == 0 {
                    (ratios[mid - 1] + ratios[mid]) / 2.0
                } else {
                    ratios[mid]
                };
                row.spread_lo = ratios[0];
                row.spread_hi = ratios[ratios.len() - 1];
            }
            row.reps = ratios.len();
        }
        out.push(row);
    }
    out
}

struct Bench {
    opts: Opts,
    nofile: u64,
    machine: String,
    /// What produced these results: machine, library version, command line.
    header: String,
    available: HashMap<System, Result<(), String>>,
}

/// What a round cost the server process.
struct Cost {
    pre: ProcSample,
    post: ProcSample,
    disp_ns: u64,
    pub_ns: u64,
    host_ns: u64,
    /// CPU time of everything else on the machine during the round.
    foreign_ns: u64,
}

impl Bench {
    fn new(opts: Opts, nofile: u64) -> Self {
        let mut available = HashMap::new();
        for s in ALL {
            let a = match s.peer() {
                Some(k) if peers::which(k.binary()).is_none() => {
                    Err(format!("{} not found on PATH", k.binary()))
                }
                _ if s.needs_websocket() && !cfg!(feature = "websocket") => Err(format!(
                    "{} needs hubcast's `websocket` feature: cargo bench --bench fanout --features websocket",
                    s.name()
                )),
                _ if s == System::NodeWs => node_available(),
                _ => Ok(()),
            };
            available.insert(s, a);
        }
        let machine = machine_summary(nofile);
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        let header = format!(
            "<!-- fanout {}: {machine}; hubcast {}; options: {} -->",
            run_date(),
            library_version(),
            if args.is_empty() {
                "(defaults)".to_string()
            } else {
                args.join(" ")
            }
        );
        Bench {
            header,
            machine,
            opts,
            nofile,
            available,
        }
    }

    fn kill_leftovers(&self) {
        for pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            sys::kill(pid, sys::SIGKILL);
        }
    }

    fn cells(&self, mode: Mode) -> Vec<(usize, usize)> {
        if let Some(c) = &self.opts.cells {
            return c.clone();
        }
        match mode {
            Mode::Flood | Mode::Relay | Mode::WsFlood | Mode::SseFlood => {
                let mut v = Vec::new();
                for &s in &self.opts.ss {
                    for &n in &self.opts.ns {
                        v.push((n, s));
                    }
                }
                v
            }
            Mode::Rate => vec![(100, 64), (100, 1024)],
            Mode::RelayRate => vec![(100, 64)],
            Mode::Stall | Mode::RelayStall => vec![(100, 1024)],
            Mode::Conns => self.opts.conns.iter().map(|&c| (c, 64)).collect(),
            Mode::WsConns | Mode::SseConns if self.opts.conns_given => {
                self.opts.conns.iter().map(|&c| (c, 64)).collect()
            }
            Mode::WsConns | Mode::SseConns => vec![(10_000, 64)],
            Mode::Topics => vec![(10_000, 64), (10_000, 1024)],
            // N clients resume; N topics hold a ring each.
            Mode::Resume => vec![(1000, 64), (1000, 1024)],
            Mode::Rings => vec![(100, 64), (100, 1024)],
            // Run by `limit::run`, not by cells.
            Mode::FloodLimit => Vec::new(),
        }
    }

    /// Subscribers that never read, in a stall mode.
    fn stalled(&self, mode: Mode) -> usize {
        match mode {
            Mode::Stall => self.opts.stalled.unwrap_or(10),
            Mode::RelayStall => self.opts.stalled.unwrap_or(2),
            _ => 0,
        }
    }

    /// Messages per flood cell before calibration: about 30 M deliveries and 4 GB.
    fn flood_m(&self, n: usize, s: usize) -> u64 {
        let (count, bytes) = if self.opts.quick {
            (6e6, 1e9)
        } else {
            (30e6, 4e9)
        };
        let m = (count / n as f64).min(bytes / (n as f64 * (s + 4) as f64));
        (m as u64).clamp(20, 3_000_000)
    }

    fn run_mode(&mut self, mode: Mode) {
        if mode == Mode::FloodLimit && self.opts.systems.contains(&System::HubcastLimit) {
            // Its own shape: runs per relay and policy, not cells of systems.
            let table = format!("{}\n\n{}", self.header, limit::run(self));
            println!("\n{table}");
            let _ = std::fs::write(self.opts.out.join(format!("{}.md", mode.name())), &table);
            eprintln!(
                "fanout: wrote {}/{}.md",
                self.opts.out.display(),
                mode.name()
            );
            return;
        }
        let cells = self.cells(mode);
        let systems: Vec<System> = mode
            .systems()
            .iter()
            .copied()
            .filter(|s| self.opts.systems.contains(s))
            .collect();
        if systems.is_empty() {
            eprintln!(
                "fanout: mode {}: none of the selected systems runs in it (it runs {})",
                mode.name(),
                mode.systems()
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            return;
        }
        let repeat = if mode == Mode::RelayStall {
            self.opts.repeat.max(self.opts.stall_repeat)
        } else {
            self.opts.repeat
        };
        let mut rows: Vec<Row> = Vec::new();
        for &(n, s) in &cells {
            let mut runs: Vec<(usize, Row)> = Vec::new();
            // Relay floods: every system gets the same message count in a cell, set by the
            // first run that completes (the ceiling's, normally).
            let mut cell_m: Option<u64> = None;
            for rep in 0..repeat {
                for &system in &systems {
                    // Flow control changes nothing at a fixed rate or with idle clients.
                    if system == System::HubcastDefault && matches!(mode, Mode::Rate | Mode::Conns)
                    {
                        continue;
                    }
                    let ks: Vec<usize> = if mode.is_stall() {
                        vec![0, self.stalled(mode)]
                    } else {
                        vec![0]
                    };
                    for k in ks {
                        let row = self.run_one(mode, system, n, s, k, cell_m);
                        eprintln!("  {}", progress_line(&row, rep));
                        if mode == Mode::Relay && cell_m.is_none() && row.ok() {
                            cell_m = Some(row.m);
                        }
                        runs.push((rep, row));
                    }
                }
            }
            rows.extend(summarize(mode, &runs));
        }
        let table = format!("{}\n\n{}", self.header, render(mode, &rows, &self.opts));
        println!("\n{table}");
        let _ = std::fs::write(self.opts.out.join(format!("{}.md", mode.name())), &table);
        let _ = std::fs::write(
            self.opts.out.join(format!("{}.csv", mode.name())),
            csv(&rows),
        );
        eprintln!(
            "fanout: wrote {}/{}.{{md,csv}}",
            self.opts.out.display(),
            mode.name()
        );
    }

    fn run_one(
        &mut self,
        mode: Mode,
        system: System,
        n: usize,
        s: usize,
        k: usize,
        cell_m: Option<u64>,
    ) -> Row {
        let mut row = Row {
            mode: mode.name(),
            system: system.name(),
            n,
            k,
            s,
            rate: if mode.is_rate() { self.opts.rate } else { 0.0 },
            ..Row::default()
        };
        if let Some(Err(why)) = self.available.get(&system) {
            row.status = "skipped".into();
            row.note = why.clone();
            return row;
        }
        if mode == Mode::Stall && system == System::Ceiling {
            row.status = "n/a".into();
            row.note = "the ceiling has no slow-client handling by design".into();
            return row;
        }
        // Each process holds one socket per client: both must fit under RLIMIT_NOFILE.
        let need = (n + k + 64) as u64;
        if need > self.nofile {
            row.status = "skipped".into();
            row.note = format!(
                "needs {need} file descriptors per process; RLIMIT_NOFILE is {} (hard limit; raising it needs CAP_SYS_RESOURCE)",
                self.nofile
            );
            return row;
        }
        let deadline = now_ns() + self.opts.timeout * 1_000_000_000;
        let result = match mode {
            Mode::Resume => replay::resume(self, n, s, &mut row, deadline),
            Mode::Rings => replay::rings(self, n, s, &mut row, deadline),
            m if m.is_conns() => Sut::start(system, n + 64, &self.opts).and_then(|mut sut| {
                let r = self.conns_cell(&mut sut, system, n, &mut row, deadline);
                // Say how the server ended if it died, then stop it.
                let r = r.map_err(|e| sut.explain(e));
                sut.stop();
                r
            }),
            _ => Sut::start(system, (n + k + 64).max(1000), &self.opts).and_then(|mut sut| {
                let cell = Cell {
                    mode,
                    system,
                    n,
                    s,
                    k,
                    fixed_m: cell_m,
                };
                let r = self.traffic_cell(&mut sut, cell, &mut row, deadline);
                let r = r.map_err(|e| sut.explain(e));
                sut.stop();
                r
            }),
        };
        if let Err(e) = result {
            if row.status.is_empty() || row.status == "ok" {
                row.status = "error".into();
            }
            if !row.note.is_empty() {
                row.note.push_str("; ");
            }
            row.note.push_str(&e);
        }
        row
    }

    /// Flood, rate and stall cells: connect, warm up / calibrate, measure one round.
    fn traffic_cell(
        &mut self,
        sut: &mut Sut,
        cell: Cell,
        row: &mut Row,
        deadline: u64,
    ) -> Result<(), String> {
        let Cell {
            mode,
            system,
            n,
            s,
            k,
            fixed_m,
        } = cell;
        let mut gen = Gen::new(system.proto(), sut.addr(), n, k).map_err(|e| e.to_string())?;
        let t = now_ns();
        gen.connect_all(deadline)?;
        let timeout = Duration::from_secs(self.opts.timeout);
        let mut clients = n + k;
        if system.line_publisher() {
            // The publisher is one more client, connected after the subscribers.
            let left = Duration::from_nanos(deadline.saturating_sub(now_ns()).max(1));
            let lp = LinePub::connect(sut.addr(), left.min(timeout))
                .map_err(|e| format!("publisher connect: {e}"))?;
            sut.line_pub = Some(lp);
            clients += 1;
        }
        sut.confirm(clients, deadline)?;
        let mut setup_note = None;
        if system == System::HubcastTopics {
            // The server puts the clients in topics, in the order it numbered them.
            sut.send(&format!("topics {}", self.opts.topic_size))?;
            let line = sut.wait_line("topics", deadline)?;
            let t = line.split_whitespace().nth(1).unwrap_or("?").to_string();
            setup_note = Some(format!("{t} topics of {}", self.opts.topic_size));
        }
        row.connect_s = (now_ns() - t) as f64 / 1e9;
        let progress = self.opts.progress * 1_000_000_000;
        let receivers = (n + k) as u64;

        // Warm-up round, which also calibrates the flood's message count for this system.
        let (pilot, m_max) = match mode {
            Mode::Flood | Mode::WsFlood | Mode::SseFlood | Mode::Topics | Mode::Relay => {
                match fixed_m {
                    // The count is set: the warm-up only has to warm up, and tell a system too
                    // slow for it (at most 300,000 deliveries, seconds for the slowest).
                    Some(m) => ((m / 20).min(300_000 / n as u64).max(20), m),
                    None => {
                        let m = self.flood_m(n, s);
                        ((m / 20).max(20), m)
                    }
                }
            }
            Mode::Rate | Mode::RelayRate => {
                let m = (self.opts.rate * self.opts.duration) as u64;
                ((m / 8).max(20), m)
            }
            Mode::Stall => {
                // Enough to pass 64 MiB per stalled subscriber, so the slow-client limits
                // (hubcast queue_bytes, NATS max_pending, Redis pubsub limit) are reached.
                let m = self.flood_m(n, s).max((96u64 << 20) / s as u64);
                ((m / 50).max(20), m)
            }
            Mode::RelayStall => {
                // The issue's workload: a flood of --stall-mib per client.
                let m = ((self.opts.stall_mib as u64) << 20) / s.max(1) as u64;
                ((m / 50).max(20), m.max(20))
            }
            Mode::Conns
            | Mode::WsConns
            | Mode::SseConns
            | Mode::Resume
            | Mode::Rings
            | Mode::FloodLimit => {
                unreachable!()
            }
        };
        let rate = row.rate;
        let job = Job {
            start: 0,
            count: pilot,
            size: s,
            rate,
        };
        let mut notes: Vec<String> = setup_note.into_iter().collect();
        sut.publish(job, receivers, timeout)?;
        let warm = gen.run_round(0, pilot, s, deadline, progress);
        sut.finish_publish(warm.end == End::Complete, &mut notes);
        if warm.end != End::Complete {
            *row = fill(row.clone(), &warm, pilot, None);
            row.status = status(&warm.end);
            row.note = join_notes(&notes, &warm.errors, &sut.server_notes());
            // The server closes first, so TIME_WAIT lands on its side and does not hold the
            // load generator's ephemeral ports.
            sut.stop();
            gen.close();
            return Ok(());
        }
        let rate_est = warm.delivered as f64 / warm.secs().max(1e-6);
        let fits =
            ((rate_est * self.opts.target_secs / n as f64) as u64).clamp(20.min(m_max), m_max);
        // A system so slow that the fixed volume would take over ten times the target (the
        // thread-per-client designs) gets what fits in the target instead.
        let too_slow = (m_max * n as u64) as f64 / rate_est > 10.0 * self.opts.target_secs;
        let m = match mode {
            // As many messages as fit in the target time, at the rate the warm-up showed.
            Mode::Flood | Mode::WsFlood | Mode::SseFlood | Mode::Topics => fits,
            // The cell's count, once set; the first system sets it as above.
            Mode::Relay => match fixed_m {
                Some(m) if too_slow => {
                    notes.push(format!("M cut from the cell's {m} to fit the target time"));
                    fits
                }
                Some(m) => m,
                None => fits,
            },
            // The fixed volume, unless the system is too slow.
            Mode::Stall | Mode::RelayStall => {
                if too_slow {
                    fits
                } else {
                    m_max
                }
            }
            _ => m_max,
        };
        row.m = m;

        let job = Job {
            start: pilot,
            count: m,
            size: s,
            rate,
        };
        let cost = Self::measure(sut);
        sut.publish(job, receivers, timeout)?;
        let round = gen.run_round(pilot, m, s, deadline, progress);
        let cost = cost.finish(sut);
        let (late, pub_cpu_ns) = sut.finish_publish(round.end == End::Complete, &mut notes);
        let server_note = sut.server_notes();
        *row = fill(row.clone(), &round, m, Some(&cost));
        row.late_p50 = late.late_p50;
        row.late_p99 = late.late_p99;
        row.pub_s = late.elapsed as f64 / 1e9;
        row.client_pub_cpu_s = pub_cpu_ns as f64 / 1e9;
        row.status = status(&round.end);
        // Every healthy subscriber must have had every message exactly once, in order.
        let exact = row.deliveries == n as u64 * m;
        if row.status == "ok"
            && (!exact || row.lost > 0 || row.reordered > 0 || row.died > 0 || row.bad > 0)
        {
            if !exact {
                notes.push(format!("delivered {} of {}", row.deliveries, n as u64 * m));
            }
            row.status = "lossy".into();
        }
        row.note = join_notes(&notes, &round.errors, &server_note);
        if row.gen_cpu_pct > GEN_BOUND_PCT {
            let bound = format!(
                "generator-bound: the load generator used {:.0}% of a core",
                row.gen_cpu_pct
            );
            row.note = if row.note.is_empty() {
                bound
            } else {
                format!("{bound}; {}", row.note)
            };
        }
        if row.foreign_pct > NOISY_PCT {
            let noisy = format!(
                "noisy: other processes used {:.0}% of a core",
                row.foreign_pct
            );
            row.note = if row.note.is_empty() {
                noisy
            } else {
                format!("{noisy}; {}", row.note)
            };
        }
        sut.stop();
        gen.close();
        Ok(())
    }

    /// Starts measuring the server's cost: resets its peak RSS, samples its CPU time.
    fn measure(sut: &Sut) -> CostStart {
        sys::reset_peak_rss(sut.pid);
        CostStart {
            pre: sut.sample(),
            disp: sys::threads_cpu_ns(sut.pid, DISPATCHER_THREAD),
            publ: sys::threads_cpu_ns(sut.pid, server::PUB_THREAD),
            host: sys::threads_cpu_ns(sut.pid, relay::HOST_THREAD),
            busy: sys::machine_busy_ns(),
            own: sys::sample(std::process::id())
                .map(|s| s.cpu_ns)
                .unwrap_or(0),
        }
    }

    /// Connections mode: hold `c` idle clients, then time single broadcasts to all.
    fn conns_cell(
        &mut self,
        sut: &mut Sut,
        system: System,
        c: usize,
        row: &mut Row,
        deadline: u64,
    ) -> Result<(), String> {
        std::thread::sleep(Duration::from_millis(200));
        let idle = sut.sample();
        let kmem0 = sys::tcp_kernel_mem();
        let mut gen = Gen::new(system.proto(), sut.addr(), c, 0).map_err(|e| e.to_string())?;
        let t = now_ns();
        gen.connect_all(deadline)?;
        sut.confirm(c, deadline)?;
        row.connect_s = (now_ns() - t) as f64 / 1e9;
        std::thread::sleep(Duration::from_millis(300));
        let held = sut.sample();
        let kmem1 = sys::tcp_kernel_mem();
        row.mem_per_client = (held.rss_kib.saturating_sub(idle.rss_kib) * 1024) as f64 / c as f64;
        row.kmem_per_client = kmem1.saturating_sub(kmem0) as f64 / c as f64;
        row.peak_rss_kib = held.rss_kib;
        let progress = self.opts.progress * 1_000_000_000;
        let timeout = Duration::from_secs(self.opts.timeout);
        let mut notes = Vec::new();
        let mut times = Vec::new();
        let mut hist = Hist::new();
        let rounds = 7;
        let pre = sut.sample();
        let mut last: Option<Round> = None;
        let (mut gen_ns, mut round_ns) = (0u64, 0u64);
        for r in 0..rounds {
            let job = Job {
                start: r,
                count: 1,
                size: 64,
                rate: 0.0,
            };
            sut.publish(job, c as u64, timeout)?;
            let round = gen.run_round(r, 1, 64, deadline, progress);
            sut.finish_publish(round.end == End::Complete, &mut notes);
            row.lost += round.lost;
            row.reordered += round.reordered;
            row.died += round.died;
            hist.merge(&round.hist);
            let ok = round.end == End::Complete;
            // The first round warms up; the rest are timed.
            if r > 0 {
                times.push(round.secs());
            }
            row.deliveries += round.delivered;
            gen_ns += round.gen_cpu_ns;
            round_ns += round.t_last.saturating_sub(round.t_first);
            last = Some(round);
            if !ok {
                break;
            }
        }
        let post = sut.sample();
        row.cpu_s = post.cpu_ns.saturating_sub(pre.cpu_ns) as f64 / 1e9;
        row.gen_cpu_pct = gen_ns as f64 / round_ns.max(1) as f64 * 100.0;
        times.sort_by(f64::total_cmp);
        row.m = rounds;
        if let Some(round) = last {
            row.status = status(&round.end);
            let exact = row.deliveries == c as u64 * rounds;
            if row.status == "ok" && (!exact || row.lost > 0 || row.reordered > 0 || row.died > 0) {
                row.status = "lossy".into();
            }
            row.note = join_notes(&notes, &round.errors, &sut.server_notes());
        }
        if !times.is_empty() {
            row.bcast_ms = times[times.len() / 2] * 1e3;
            row.bcast_max_ms = times[times.len() - 1] * 1e3;
        }
        row.p50 = hist.quantile(0.5);
        row.p99 = hist.quantile(0.99);
        row.max = hist.max();
        sut.stop();
        gen.close();
        Ok(())
    }
}

struct CostStart {
    pre: ProcSample,
    disp: u64,
    publ: u64,
    host: u64,
    busy: u64,
    own: u64,
}

impl CostStart {
    fn finish(self, sut: &Sut) -> Cost {
        let post = sut.sample();
        let busy = sys::machine_busy_ns().saturating_sub(self.busy);
        let own = sys::sample(std::process::id())
            .map(|s| s.cpu_ns)
            .unwrap_or(0)
            .saturating_sub(self.own);
        let server = post.cpu_ns.saturating_sub(self.pre.cpu_ns);
        Cost {
            foreign_ns: busy.saturating_sub(own + server),
            post,
            pre: self.pre,
            disp_ns: sys::threads_cpu_ns(sut.pid, DISPATCHER_THREAD).saturating_sub(self.disp),
            pub_ns: sys::threads_cpu_ns(sut.pid, server::PUB_THREAD).saturating_sub(self.publ),
            host_ns: sys::threads_cpu_ns(sut.pid, relay::HOST_THREAD).saturating_sub(self.host),
        }
    }
}

fn status(end: &End) -> String {
    match end {
        End::Complete => "ok".into(),
        End::Timeout => "timeout".into(),
        End::Stalled => "stalled".into(),
    }
}

fn join_notes(notes: &[String], errors: &[String], server: &str) -> String {
    let mut all: Vec<String> = notes.to_vec();
    // Subscriber errors repeat per subscriber: count them instead.
    let mut counts: Vec<(String, usize)> = Vec::new();
    for e in errors {
        let key = e
            .split_once(": ")
            .map(|(_, r)| r.to_string())
            .unwrap_or_else(|| e.clone());
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => *c += 1,
            None => counts.push((key, 1)),
        }
    }
    for (k, c) in counts {
        all.push(format!("{c} subscriber(s): {k}"));
    }
    if !server.is_empty() {
        all.push(server.to_string());
    }
    all.join("; ")
}

fn fill(mut row: Row, round: &Round, m: u64, cost: Option<&Cost>) -> Row {
    row.m = m;
    row.deliveries = round.delivered;
    row.secs = round.secs();
    if row.secs > 0.0 {
        row.dps = round.delivered as f64 / row.secs;
        row.mbps = round.delivered as f64 * row.s as f64 / row.secs / 1e6;
        row.gen_cpu_pct = round.gen_cpu_ns as f64 / 1e9 / row.secs * 100.0;
    }
    row.p50 = round.hist.quantile(0.5);
    row.p99 = round.hist.quantile(0.99);
    row.p999 = round.hist.quantile(0.999);
    row.max = round.hist.max();
    row.lost = round.lost;
    row.reordered = round.reordered;
    row.bad = round.bad_size;
    row.died = round.died;
    if let Some(c) = cost {
        row.peak_rss_kib = c.post.hwm_kib;
        row.cpu_s = c.post.cpu_ns.saturating_sub(c.pre.cpu_ns) as f64 / 1e9;
        row.disp_cpu_s = c.disp_ns as f64 / 1e9;
        row.pub_cpu_s = c.pub_ns as f64 / 1e9;
        row.host_cpu_s = c.host_ns as f64 / 1e9;
        if row.secs > 0.0 {
            row.foreign_pct = c.foreign_ns as f64 / 1e9 / row.secs * 100.0;
        }
    }
    row
}

fn progress_line(r: &Row, rep: usize) -> String {
    format!(
        "[{} rep {}] {:<8} N={:<6} K={:<3} S={:<6} M={:<8} {:<8} {:>10}/s  p50 {:>9} p99 {:>9}  lost {} reord {}  rss {:.1} MiB cpu {:.2}s gen {:.0}% other {:.0}%  {}",
        r.mode,
        rep + 1,
        r.system,
        r.n,
        r.k,
        r.s,
        r.m,
        r.status,
        si(r.dps),
        lat(r.p50),
        lat(r.p99),
        r.lost,
        r.reordered,
        r.peak_rss_kib as f64 / 1024.0,
        r.cpu_s,
        r.gen_cpu_pct,
        r.foreign_pct,
        r.note
    )
}

fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn lat(ns: u64) -> String {
    let ns = ns as f64;
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

fn ratio(v: f64, base: Option<(f64, bool)>) -> String {
    match base {
        Some((b, paced)) if b > 0.0 && v > 0.0 => {
            format!("{:.2}×{}", v / b, if paced { "†" } else { "" })
        }
        _ => "–".into(),
    }
}

/// `status: note`, for the last column of a table.
fn status_note(r: &Row) -> String {
    if r.note.is_empty() {
        r.status.clone()
    } else {
        format!("{}: {}", r.status, r.note)
    }
}

/// Server CPU time, with hubcast's dispatcher and host thread where there are any.
fn cpu_cell(r: &Row) -> String {
    if r.system.starts_with("hubcast") && r.disp_cpu_s > 0.0 {
        if r.host_cpu_s > 0.0 {
            format!(
                "{:.2} (disp {:.2}, host {:.2})",
                r.cpu_s, r.disp_cpu_s, r.host_cpu_s
            )
        } else {
            format!(
                "{:.2} (disp {:.2}, pub {:.2})",
                r.cpu_s, r.disp_cpu_s, r.pub_cpu_s
            )
        }
    } else {
        format!("{:.2}", r.cpu_s)
    }
}

/// The relay modes' tables: a summary against the ceiling and the peers, then every
/// measurement.
fn render_relay(mode: Mode, rows: &[Row], opts: &Opts) -> String {
    let mut t = String::new();
    let find = |r: &Row, name: &str| -> Option<&Row> {
        rows.iter()
            .find(|b| b.system == name && b.n == r.n && b.s == r.s && b.k == r.k)
    };
    let ok_dps = |r: &Row, name: &str| find(r, name).filter(|b| b.ok()).map(|b| b.dps);
    // A figure, or the row's status when it has none.
    let shown = |r: Option<&Row>, f: &dyn Fn(&Row) -> String| match r {
        Some(b) if b.ok() => f(b),
        Some(b) => b.status.clone(),
        None => "–".into(),
    };
    let rss = |r: Option<&Row>| match r {
        Some(b) if b.peak_rss_kib > 0 => format!("{:.0}", b.peak_rss_kib as f64 / 1024.0),
        _ => "–".into(),
    };
    let mut cells: Vec<(usize, usize, usize)> = Vec::new();
    for r in rows {
        if !cells.contains(&(r.n, r.s, r.k)) {
            cells.push((r.n, r.s, r.k));
        }
    }
    let reps = rows.iter().map(|r| r.reps).max().unwrap_or(1);
    match mode {
        Mode::Relay => {
            let _ = writeln!(t, "Relay flood: the publisher is a TCP client of the server, sending S-byte lines (S-byte `PUB`/`PUBLISH` payloads to the peers); the server forwards each to every other client. M messages per cell, the same for every system (set by the first to complete, the ceiling; fewer only for a system too slow to finish within 10× the target time, noted). Median of {reps} run(s); ratios only between runs that delivered everything in order.\n");
            let _ = writeln!(t, "| N | S | M | ceiling-relay deliveries/s | hubcast-relay deliveries/s | hubcast-relay ÷ ceiling | hubcast-hostrelay ÷ ceiling | thread-relay ÷ ceiling | nats ÷ ceiling | redis ÷ ceiling | hubcast-relay ÷ faster of nats, redis | peak RSS MiB: ceiling / relay / hostrelay / nats / redis |");
            let _ = writeln!(t, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
            for &(n, s, k) in &cells {
                let key = Row {
                    n,
                    s,
                    k,
                    ..Row::default()
                };
                let ceiling = ok_dps(&key, "ceiling-relay");
                let vs_ceiling = |name: &str| {
                    shown(find(&key, name), &|b: &Row| {
                        ratio(b.dps, ceiling.map(|c| (c, false)))
                    })
                };
                let peer = [ok_dps(&key, "nats"), ok_dps(&key, "redis")]
                    .into_iter()
                    .flatten()
                    .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
                let m = find(&key, "ceiling-relay")
                    .or_else(|| find(&key, "hubcast-relay"))
                    .map(|b| b.m)
                    .unwrap_or(0);
                let _ = writeln!(
                    t,
                    "| {n} | {s} | {m} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} / {} |",
                    shown(find(&key, "ceiling-relay"), &|b: &Row| si(b.dps)),
                    shown(find(&key, "hubcast-relay"), &|b: &Row| si(b.dps)),
                    vs_ceiling("hubcast-relay"),
                    vs_ceiling("hubcast-hostrelay"),
                    vs_ceiling("thread-relay"),
                    vs_ceiling("nats"),
                    vs_ceiling("redis"),
                    shown(find(&key, "hubcast-relay"), &|b: &Row| ratio(
                        b.dps,
                        peer.map(|p| (p, false))
                    )),
                    rss(find(&key, "ceiling-relay")),
                    rss(find(&key, "hubcast-relay")),
                    rss(find(&key, "hubcast-hostrelay")),
                    rss(find(&key, "nats")),
                    rss(find(&key, "redis")),
                );
            }
            let _ = writeln!(
                t,
                "\nEvery measurement (deliveries/s: median, and min–max over the runs):\n"
            );
            let _ = writeln!(t, "| N | S | system | M | deliveries/s | ÷ ceiling-relay | MB/s | s (publisher done) | p50 | p99 | lost | reord | peak RSS MiB | server CPU s | publisher CPU s | generator CPU % | status / notes |");
            let _ = writeln!(
                t,
                "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
            );
            for r in rows {
                let dps = match (r.deliveries > 0, r.ok()) {
                    (false, _) => "–".into(),
                    (true, true) if r.reps > 1 => {
                        format!("{} ({}–{})", si(r.dps), si(r.spread_lo), si(r.spread_hi))
                    }
                    (true, true) => si(r.dps),
                    (true, false) => format!("({} over what arrived)", si(r.dps)),
                };
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} | {} | {:.0} | {:.2} ({:.2}) | {} | {} | {} | {} | {:.1} | {} | {:.2} | {:.0} | {} |",
                    r.n,
                    r.s,
                    r.system,
                    r.m,
                    dps,
                    if r.ok() {
                        ratio(r.dps, ok_dps(r, "ceiling-relay").map(|c| (c, false)))
                    } else {
                        "–".into()
                    },
                    r.mbps,
                    r.secs,
                    r.pub_s,
                    lat(r.p50),
                    lat(r.p99),
                    r.lost,
                    r.reordered,
                    r.peak_rss_kib as f64 / 1024.0,
                    cpu_cell(r),
                    r.client_pub_cpu_s,
                    r.gen_cpu_pct,
                    status_note(r)
                );
            }
        }
        Mode::RelayStall => {
            let _ = writeln!(t, "Stall: N healthy subscribers and K that never read; M messages of S bytes ({} MiB to each subscriber), from a client publisher (hubcast: from the host, `broadcast`), the same M without the K and with them, back to back in each repeat. *with/without* is the healthy subscribers' deliveries/s with the K ÷ without, per repeat; median and min–max over the {} pair(s).\n", opts.stall_mib, reps);
            let _ = writeln!(t, "| N | K | S | system | M | healthy deliveries/s, K=0 | healthy deliveries/s, with K | with/without (median) | min–max | pairs | p99 with K | lost | peak RSS MiB, K=0 / with K | server CPU s with K | status / notes (with K; K=0 if not ok) |");
            let _ = writeln!(
                t,
                "|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
            );
            for r in rows.iter().filter(|r| r.k > 0) {
                let without = rows
                    .iter()
                    .find(|b| b.system == r.system && b.n == r.n && b.s == r.s && b.k == 0);
                let mut notes = status_note(r);
                if let Some(b) = without.filter(|b| !b.ok()) {
                    notes.push_str(&format!(" (K=0: {})", status_note(b)));
                }
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {:.0} | {} | {} |",
                    r.n,
                    r.k,
                    r.s,
                    r.system,
                    r.m,
                    shown(without, &|b: &Row| si(b.dps)),
                    shown(Some(r), &|b: &Row| si(b.dps)),
                    if r.reps > 0 {
                        format!("{:.3}×", r.pair_ratio)
                    } else {
                        "–".into()
                    },
                    if r.reps > 0 {
                        format!("{:.3}–{:.3}", r.spread_lo, r.spread_hi)
                    } else {
                        "–".into()
                    },
                    r.reps,
                    lat(r.p99),
                    r.lost,
                    rss(without),
                    r.peak_rss_kib as f64 / 1024.0,
                    cpu_cell(r),
                    notes
                );
            }
        }
        Mode::RelayRate => {
            let _ = writeln!(t, "Fixed rate: {} msg/s for {} s from a client publisher (one write per message), each message stamped with its intended send time. Median of {reps} run(s) by p99 (min–max shown).\n", opts.rate, opts.duration);
            let _ = writeln!(t, "| N | S | system | deliveries/s | p50 | p99 | p99 min–max | p99.9 | max | p99 ÷ ceiling-relay | publisher late p50 / p99 | lost | reord | peak RSS MiB | server CPU s | status / notes |");
            let _ = writeln!(
                t,
                "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
            );
            for r in rows {
                let ceiling = find(r, "ceiling-relay")
                    .filter(|b| b.ok())
                    .map(|b| b.p99 as f64);
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {:.1} | {} | {} |",
                    r.n,
                    r.s,
                    r.system,
                    si(r.dps),
                    lat(r.p50),
                    lat(r.p99),
                    if r.reps > 1 && r.spread_hi > 0.0 {
                        format!("{}–{}", lat(r.spread_lo as u64), lat(r.spread_hi as u64))
                    } else {
                        "–".into()
                    },
                    lat(r.p999),
                    lat(r.max),
                    if r.ok() {
                        ratio(r.p99 as f64, ceiling.map(|c| (c, false)))
                    } else {
                        "–".into()
                    },
                    lat(r.late_p50),
                    lat(r.late_p99),
                    r.lost,
                    r.reordered,
                    r.peak_rss_kib as f64 / 1024.0,
                    cpu_cell(r),
                    status_note(r)
                );
            }
        }
        _ => {}
    }
    t
}

fn render(mode: Mode, rows: &[Row], opts: &Opts) -> String {
    if mode.is_relay() {
        return render_relay(mode, rows, opts);
    }
    if matches!(mode, Mode::Resume | Mode::Rings) {
        return replay::render(mode, rows);
    }
    let mut t = String::new();
    let stalled = opts.stalled.unwrap_or(10);
    // Ratios are to hubcast (hubcast-ws in WebSocket modes) in the same cell; where hubcast
    // lost messages or did not finish, to hubcast-default, marked †.
    let base = |r: &Row, f: &dyn Fn(&Row) -> f64| -> Option<(f64, bool)> {
        let find = |name: &str| {
            rows.iter().find(|b| {
                b.system == name && b.n == r.n && b.s == r.s && b.k == r.k && b.status == "ok"
            })
        };
        find(mode.base())
            .map(|b| (f(b), false))
            .or_else(|| find("hubcast-default").map(|b| (f(b), true)))
    };
    match mode {
        Mode::WsFlood => t.push_str(&ws_summary(rows)),
        Mode::SseFlood => t.push_str(&sse_summary(rows)),
        Mode::Topics => t.push_str(&topics_summary(rows, opts)),
        _ => {}
    }
    match mode {
        Mode::Rate => {
            let _ = writeln!(t, "Fixed rate: {} msg/s for {} s, each message stamped with its intended send time.\n", opts.rate, opts.duration);
            let _ = writeln!(t, "| N | S | system | deliveries/s | p50 | p99 | p99.9 | max | p99 ×hubcast | publisher late p50 / p99 | lost | reord | server CPU s | status / notes |");
            let _ = writeln!(
                t,
                "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
            );
            for r in rows {
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {:.2} | {}{} |",
                    r.n,
                    r.s,
                    r.system,
                    si(r.dps),
                    lat(r.p50),
                    lat(r.p99),
                    lat(r.p999),
                    lat(r.max),
                    if r.ok() { ratio(r.p99 as f64, base(r, &|b| b.p99 as f64)) } else { "–".into() },
                    lat(r.late_p50),
                    lat(r.late_p99),
                    r.lost,
                    r.reordered,
                    r.cpu_s,
                    r.status,
                    if r.note.is_empty() { String::new() } else { format!(": {}", r.note) }
                );
            }
        }
        Mode::Flood | Mode::WsFlood | Mode::SseFlood | Mode::Topics => {
            let _ = writeln!(t, "| N | S | system | M | deliveries/s | ×{} | MB/s | s (publisher done) | p50 | p99 | p99.9 | lost | reord | peak RSS MiB | server CPU s | status / notes |", mode.base());
            let _ = writeln!(
                t,
                "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
            );
            for r in rows {
                let cpu = if r.system.starts_with("hubcast") && r.disp_cpu_s > 0.0 {
                    format!(
                        "{:.2} (disp {:.2}, pub {:.2})",
                        r.cpu_s, r.disp_cpu_s, r.pub_cpu_s
                    )
                } else if r.pub_cpu_s > 0.0 && r.system != "ceiling" {
                    format!("{:.2} (pub {:.2})", r.cpu_s, r.pub_cpu_s)
                } else {
                    format!("{:.2}", r.cpu_s)
                };
                let shown = if r.ok() || r.deliveries > 0 {
                    r.dps
                } else {
                    0.0
                };
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} | {} | {:.0} | {:.2} ({:.2}) | {} | {} | {} | {} | {} | {:.1} | {} | {}{} |",
                    r.n,
                    r.s,
                    r.system,
                    r.m,
                    match (shown > 0.0, r.status.as_str()) {
                        (false, _) => "–".into(),
                        (true, "ok") => si(shown),
                        (true, _) => format!("({} over what arrived)", si(shown)),
                    },
                    if r.ok() { ratio(r.dps, base(r, &|b| b.dps)) } else { "–".into() },
                    r.mbps,
                    r.secs,
                    r.pub_s,
                    lat(r.p50),
                    lat(r.p99),
                    lat(r.p999),
                    r.lost,
                    r.reordered,
                    r.peak_rss_kib as f64 / 1024.0,
                    cpu,
                    r.status,
                    if r.note.is_empty() { String::new() } else { format!(": {}", r.note) }
                );
            }
        }
        Mode::Stall => {
            let _ = writeln!(t, "Stall: K={stalled} extra subscribers never read. Healthy-subscriber deliveries/s with and without them.\n");
            let _ = writeln!(t, "| N | S | system | M | healthy deliveries/s, K=0 | healthy deliveries/s, K={stalled} | with/without | ×hubcast (with K) | p99 with K | lost | peak RSS MiB | status / notes |");
            let _ = writeln!(t, "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|");
            for r in rows.iter().filter(|r| r.k > 0 || stalled == 0) {
                let without = rows
                    .iter()
                    .find(|b| b.system == r.system && b.n == r.n && b.s == r.s && b.k == 0);
                let w0 = without.filter(|b| b.ok()).map(|b| b.dps);
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {}{}{} |",
                    r.n,
                    r.s,
                    r.system,
                    r.m,
                    w0.map(si)
                        .unwrap_or_else(|| without.map(|b| b.status.clone()).unwrap_or("–".into())),
                    if r.ok() { si(r.dps) } else { "–".into() },
                    if r.ok() {
                        ratio(r.dps, w0.map(|w| (w, false)))
                    } else {
                        "–".into()
                    },
                    if r.ok() {
                        ratio(r.dps, base(r, &|b| b.dps))
                    } else {
                        "–".into()
                    },
                    lat(r.p99),
                    r.lost,
                    r.peak_rss_kib as f64 / 1024.0,
                    r.status,
                    if r.note.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.note)
                    },
                    without
                        .filter(|b| !b.note.is_empty() && b.status != "n/a")
                        .map(|b| format!(" (K=0: {} {})", b.status, b.note))
                        .unwrap_or_default()
                );
            }
        }
        Mode::Conns | Mode::WsConns | Mode::SseConns => {
            let b = mode.base();
            let _ = writeln!(t, "| clients | system | connect s | server RSS MiB | server bytes/client | ×{b} | kernel bytes/client (both ends) | one broadcast to all, median ms | max ms | ×{b} | server CPU ms per broadcast | generator CPU % | lost | status / notes |");
            let _ = writeln!(
                t,
                "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
            );
            for r in rows {
                let _ = writeln!(
                    t,
                    "| {} | {} | {:.2} | {:.1} | {:.0} | {} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.0} | {} | {}{} |",
                    r.n,
                    r.system,
                    r.connect_s,
                    r.peak_rss_kib as f64 / 1024.0,
                    r.mem_per_client,
                    if r.ok() { ratio(r.mem_per_client, base(r, &|b| b.mem_per_client)) } else { "–".into() },
                    r.kmem_per_client,
                    r.bcast_ms,
                    r.bcast_max_ms,
                    if r.ok() { ratio(r.bcast_ms, base(r, &|b| b.bcast_ms)) } else { "–".into() },
                    r.cpu_s * 1e3 / r.m.max(1) as f64,
                    r.gen_cpu_pct,
                    r.lost,
                    r.status,
                    if r.note.is_empty() { String::new() } else { format!(": {}", r.note) }
                );
            }
        }
        Mode::Relay
        | Mode::RelayStall
        | Mode::RelayRate
        | Mode::Resume
        | Mode::Rings
        | Mode::FloodLimit => {
            unreachable!("rendered above or by limit::run")
        }
    }
    t
}

/// The (N, S) cells of `rows`, in the order they first appear.
fn cells_of(rows: &[Row]) -> Vec<(usize, usize)> {
    let mut cells: Vec<(usize, usize)> = Vec::new();
    for r in rows {
        if !cells.contains(&(r.n, r.s)) {
            cells.push((r.n, r.s));
        }
    }
    cells
}

/// A row's peak RSS in MiB for a summary table, or `–` if it has none.
fn rss_mib(row: Option<&Row>) -> String {
    row.filter(|r| r.peak_rss_kib > 0)
        .map(|r| format!("{:.0}", r.peak_rss_kib as f64 / 1024.0))
        .unwrap_or_else(|| "–".into())
}

/// The WebSocket flood's summary: hubcast-ws against the ceiling and the two servers
/// people use, with the targets.
fn ws_summary(rows: &[Row]) -> String {
    let mut t = String::new();
    let cells = cells_of(rows);
    let reps = rows.iter().map(|r| r.reps).max().unwrap_or(1);
    let _ = writeln!(t, "WebSocket flood, median of {reps} run(s). hubcast-ws's deliveries/s; ÷ ceiling-ws (target ≥ 0.8); ÷ node-ws (target ≥ 3) and ÷ tokio-ws (target ≥ 2), higher is better for hubcast. A system's status instead of a ratio where it did not deliver everything in order. Server CPU per delivery: the server process's CPU time (publisher included) ÷ deliveries, less sensitive to other tenants than deliveries/s.\n");
    let _ = writeln!(t, "| N | S | hubcast-ws deliveries/s | ÷ ceiling-ws | ÷ node-ws | ÷ tokio-ws | server CPU ns per delivery: hubcast-ws / ceiling-ws / node-ws / tokio-ws | peak RSS MiB: hubcast-ws / ceiling-ws / node-ws / tokio-ws |");
    let _ = writeln!(t, "|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (n, s) in cells {
        let find = |name: &str| {
            rows.iter()
                .find(|r| r.system == name && r.n == n && r.s == s)
        };
        let hub = find("hubcast-ws");
        let vs = |name: &str| match (hub, find(name)) {
            (Some(h), Some(o)) if h.ok() && o.ok() => ratio(h.dps, Some((o.dps, false))),
            (_, Some(o)) if !o.ok() => o.status.clone(),
            (Some(h), _) if !h.ok() => "–".into(),
            _ => "–".into(),
        };
        let rss = |name: &str| rss_mib(find(name));
        let _ = writeln!(
            t,
            "| {n} | {s} | {} | {} | {} | {} | {} / {} / {} / {} | {} / {} / {} / {} |",
            match hub {
                Some(h) if h.ok() => si(h.dps),
                Some(h) => h.status.clone(),
                None => "–".into(),
            },
            vs("ceiling-ws"),
            vs("node-ws"),
            vs("tokio-ws"),
            cpu_per_delivery(find("hubcast-ws")),
            cpu_per_delivery(find("ceiling-ws")),
            cpu_per_delivery(find("node-ws")),
            cpu_per_delivery(find("tokio-ws")),
            rss("hubcast-ws"),
            rss("ceiling-ws"),
            rss("node-ws"),
            rss("tokio-ws"),
        );
    }
    t.push('\n');
    t
}

/// The SSE flood's summary: each wire of the hub against the single-loop SSE writer, with
/// the target.
fn sse_summary(rows: &[Row]) -> String {
    let mut t = String::new();
    let cells = cells_of(rows);
    let reps = rows.iter().map(|r| r.reps).max().unwrap_or(1);
    let _ = writeln!(t, "SSE flood, median of {reps} run(s). Deliveries/s of each system ÷ sse-ceiling's in the same cell (hubcast-sse: target ≥ 0.8); hubcast-sse-ws and hubcast-sse-tcp are the same hub with WebSocket and TCP clients. A system's status instead of a ratio where it did not deliver everything in order. Server CPU per delivery: the server process's CPU time (publisher included) ÷ deliveries.\n");
    let _ = writeln!(t, "| N | S | sse-ceiling deliveries/s | hubcast-sse ÷ ceiling | hubcast-sse-ws ÷ ceiling | hubcast-sse-tcp ÷ ceiling | hubcast-sse ÷ hubcast-sse-ws | p50 / p99: hubcast-sse | p50 / p99: sse-ceiling | server CPU ns per delivery: sse / ceiling / ws / tcp | peak RSS MiB: sse / ceiling / ws / tcp |");
    let _ = writeln!(t, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (n, s) in cells {
        let find = |name: &str| {
            rows.iter()
                .find(|r| r.system == name && r.n == n && r.s == s)
        };
        let ceiling = find("sse-ceiling");
        let vs = |name: &str, base: Option<&Row>| match (find(name), base) {
            (Some(r), Some(b)) if r.ok() && b.ok() => ratio(r.dps, Some((b.dps, false))),
            (Some(r), _) if !r.ok() => r.status.clone(),
            (_, Some(b)) if !b.ok() => format!("(base {})", b.status),
            _ => "–".into(),
        };
        let lats = |r: Option<&Row>| match r {
            Some(r) if r.ok() => format!("{} / {}", lat(r.p50), lat(r.p99)),
            _ => "–".into(),
        };
        let rss = |name: &str| rss_mib(find(name));
        let _ = writeln!(
            t,
            "| {n} | {s} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} | {} / {} / {} / {} |",
            match ceiling {
                Some(c) if c.ok() => si(c.dps),
                Some(c) => c.status.clone(),
                None => "–".into(),
            },
            vs("hubcast-sse", ceiling),
            vs("hubcast-sse-ws", ceiling),
            vs("hubcast-sse-tcp", ceiling),
            vs("hubcast-sse", find("hubcast-sse-ws")),
            lats(find("hubcast-sse")),
            lats(ceiling),
            cpu_per_delivery(find("hubcast-sse")),
            cpu_per_delivery(ceiling),
            cpu_per_delivery(find("hubcast-sse-ws")),
            cpu_per_delivery(find("hubcast-sse-tcp")),
            rss("hubcast-sse"),
            rss("sse-ceiling"),
            rss("hubcast-sse-ws"),
            rss("hubcast-sse-tcp"),
        );
    }
    t.push('\n');
    t
}

/// The server process's CPU time per delivery of a completed row, in ns.
fn cpu_per_delivery(r: Option<&Row>) -> String {
    match r {
        Some(r) if r.ok() && r.deliveries > 0 => {
            format!("{:.0}", r.cpu_s * 1e9 / r.deliveries as f64)
        }
        _ => "–".into(),
    }
}

/// Topic mode's summary: publishing to topics against broadcasting to the same clients.
fn topics_summary(rows: &[Row], opts: &Opts) -> String {
    let mut t = String::new();
    let reps = rows.iter().map(|r| r.reps).max().unwrap_or(1);
    let _ = writeln!(t, "Topics: N clients in topics of {} (the server joins them in id order), the host publishing each message to every topic in turn (`Hub::publish`), against the same hub broadcasting to the same N clients (`Hub::broadcast`): the same deliveries per message number. Median of {reps} run(s); target ≥ 0.8×.\n", opts.topic_size);
    let _ = writeln!(t, "| N | S | topics deliveries/s | publishes/s | broadcast deliveries/s | topics ÷ broadcast | server CPU ns per delivery (topics / broadcast) | peak RSS MiB (topics / broadcast) |");
    let _ = writeln!(t, "|--:|--:|--:|--:|--:|--:|--:|--:|");
    let cells = cells_of(rows);
    for (n, s) in cells {
        let find = |name: &str| {
            rows.iter()
                .find(|r| r.system == name && r.n == n && r.s == s)
        };
        let shown = |r: Option<&Row>| match r {
            Some(r) if r.ok() => si(r.dps),
            Some(r) => r.status.clone(),
            None => "–".into(),
        };
        let (topics, bcast) = (find("hubcast-topics"), find("hubcast"));
        let rss = |r: Option<&Row>| {
            r.map(|r| format!("{:.0}", r.peak_rss_kib as f64 / 1024.0))
                .unwrap_or_else(|| "–".into())
        };
        let ratio_cell = match (topics, bcast) {
            (Some(a), Some(b)) if a.ok() && b.ok() => ratio(a.dps, Some((b.dps, false))),
            _ => "–".into(),
        };
        let _ = writeln!(
            t,
            "| {n} | {s} | {} | {} | {} | {} | {} / {} | {} / {} |",
            shown(topics),
            topics
                .filter(|r| r.ok())
                .map(|r| si(r.dps / opts.topic_size as f64))
                .unwrap_or_else(|| "–".into()),
            shown(bcast),
            ratio_cell,
            cpu_per_delivery(topics),
            cpu_per_delivery(bcast),
            rss(topics),
            rss(bcast),
        );
    }
    t.push('\n');
    t
}

fn csv(rows: &[Row]) -> String {
    let mut t = String::from(
        "mode,system,n,k,s,m,rate,status,deliveries,secs,deliveries_per_s,mb_per_s,p50_us,p99_us,p999_us,max_us,lost,reordered,bad_size,died,peak_rss_mib,cpu_s,dispatcher_cpu_s,publisher_cpu_s,generator_cpu_pct,connect_s,server_bytes_per_client,kernel_bytes_per_client,broadcast_ms,broadcast_max_ms,publisher_s,publisher_late_p50_us,publisher_late_p99_us,foreign_cpu_pct,host_cpu_s,client_publisher_cpu_s,reps,spread_lo,spread_hi,stall_pair_ratio,note\n",
    );
    for r in rows {
        let _ = writeln!(
            t,
            "{},{},{},{},{},{},{},{},{},{:.4},{:.1},{:.2},{:.1},{:.1},{:.1},{:.1},{},{},{},{},{:.2},{:.3},{:.3},{:.3},{:.1},{:.3},{:.0},{:.0},{:.3},{:.3},{:.3},{:.1},{:.1},{:.1},{:.3},{:.3},{},{:.4},{:.4},{:.4},\"{}\"",
            r.mode,
            r.system,
            r.n,
            r.k,
            r.s,
            r.m,
            r.rate,
            r.status,
            r.deliveries,
            r.secs,
            r.dps,
            r.mbps,
            r.p50 as f64 / 1e3,
            r.p99 as f64 / 1e3,
            r.p999 as f64 / 1e3,
            r.max as f64 / 1e3,
            r.lost,
            r.reordered,
            r.bad,
            r.died,
            r.peak_rss_kib as f64 / 1024.0,
            r.cpu_s,
            r.disp_cpu_s,
            r.pub_cpu_s,
            r.gen_cpu_pct,
            r.connect_s,
            r.mem_per_client,
            r.kmem_per_client,
            r.bcast_ms,
            r.bcast_max_ms,
            r.pub_s,
            r.late_p50 as f64 / 1e3,
            r.late_p99 as f64 / 1e3,
            r.foreign_pct,
            r.host_cpu_s,
            r.client_pub_cpu_s,
            r.reps,
            r.spread_lo,
            r.spread_hi,
            r.pair_ratio,
            r.note.replace('"', "'")
        );
    }
    t
}

fn machine_summary(nofile: u64) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "fanout: {cores} cores, {cpu}, Linux {}, RLIMIT_NOFILE {nofile}",
        kernel.trim()
    )
}

fn run_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The library under test: its commit, and whether `src/` had uncommitted changes.
fn library_version() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--", "src"]).is_some_and(|s| !s.is_empty());
            format!(
                "{commit}{}",
                if dirty {
                    " + uncommitted changes in src/"
                } else {
                    ""
                }
            )
        }
        None => "(unknown commit)".into(),
    }
}
