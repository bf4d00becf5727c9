//! `--mode ws-deflate` (issue 20): WebSocket compression, hubcast's once per broadcast
//! against none and against Node `ws` with `perMessageDeflate` (per connection, context
//! takeover: the usual setup), on N clients × JSON-like payloads.
//!
//! Systems, each a child speaking the `--serve` control protocol: `hubcast-ws-json`
//! (`hubcast-ws` sending the JSON-like payloads, compression off), `hubcast-ws-deflate`
//! (the same with `websocket_compression(true)`, level 1, min size 256) and
//! `node-ws-deflate` (`node/server.js` with `PERMESSAGE_DEFLATE=1`, threshold 256). The
//! payload is the same for all: a text stamp (sequence, time), then JSON-like records.
//!
//! The clients offer `permessage-deflate` (to every system; the plain one declines) and
//! never inflate: one thread reads every socket through mio, cutting frames by their
//! headers and counting frames and bytes. A round: N clients connect (the server's RSS
//! before and after, idle, gives the memory per client), one `publish` of COUNT messages,
//! then every client must get COUNT frames; deliveries/s = N × COUNT ÷ (last frame −
//! publish sent), bytes on the wire = every byte read after the upgrades; the server's RSS
//! once every message was delivered shows the compression state clients keep.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use crate::sys;
use crate::ws;

/// The offer every client makes (a browser's).
const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// One system's measurement.
#[derive(Debug, Default)]
struct Measured {
    deliveries: u64,
    secs: f64,
    bytes: u64,
    idle_rss_per_client: f64,
    /// The same once every message was delivered: what compression state clients keep.
    after_rss_per_client: f64,
    negotiated: usize,
    server_cpu_ns: u64,
}

/// A server child and its control lines.
struct Server {
    child: Child,
    lines: io::Lines<BufReader<std::process::ChildStdout>>,
    stdin: std::process::ChildStdin,
    port: u16,
}

impl Server {
    fn start(system: &str, n: usize) -> io::Result<Server> {
        let mut cmd = if system == "node-ws-deflate" {
            let mut cmd = Command::new("node");
            cmd.arg(crate::node_dir().join("server.js"))
                .env("PERMESSAGE_DEFLATE", "1")
                .env("PAYLOAD", "json");
            cmd
        } else {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.args(["--serve", system])
                .args(["--max-clients", &(n + 16).to_string()])
                .args(["--queue-bytes", &(64usize << 20).to_string()]);
            cmd
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        sys::die_with_parent(&mut cmd);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().transpose()?.unwrap_or_default();
        let port = first
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("{system}: {first:?}")))?;
        Ok(Server {
            child,
            lines,
            stdin,
            port,
        })
    }

    fn say(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()
    }

    /// The next line that starts with `word`.
    fn expect(&mut self, word: &str) -> io::Result<String> {
        loop {
            let line = self
                .lines
                .next()
                .transpose()?
                .ok_or_else(|| io::Error::other("the server ended"))?;
            if line.starts_with("error") {
                return Err(io::Error::other(line));
            }
            if line.starts_with(word) {
                return Ok(line);
            }
        }
    }

    fn rss_kib(&self) -> u64 {
        sys::sample(self.child.id()).map_or(0, |s| s.rss_kib)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.say("quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client's reading state: where it is in the frame it is reading.
#[derive(Default)]
struct Reader {
    /// Bytes of the current frame's header read so far (up to 10).
    head: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    left: u64,
    frames: u64,
}

impl Reader {
    /// Counts the frames in `data`.
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.left > 0 {
                let take = (self.left as usize).min(data.len());
                self.left -= take as u64;
                data = &data[take..];
                if self.left == 0 {
                    self.frames += 1;
                }
                continue;
            }
            self.head.push(data[0]);
            data = &data[1..];
            if self.head.len() < 2 {
                continue;
            }
            let need = match self.head[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            if self.head.len() < need {
                continue;
            }
            let len = match need {
                2 => u64::from(self.head[1] & 0x7f),
                _ => self.head[2..].iter().fold(0, |n, &b| n << 8 | u64::from(b)),
            };
            self.head.clear();
            if len == 0 {
                self.frames += 1;
            } else {
                self.left = len;
            }
        }
    }
}

/// Connects `n` clients offering compression; returns them non-blocking and how many
/// negotiated it.
fn connect(addr: SocketAddr, n: usize) -> io::Result<(Vec<TcpStream>, usize)> {
    let mut clients = Vec::with_capacity(n);
    let mut negotiated = 0;
    for _ in 0..n {
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let (request, accept) = ws::upgrade_request(addr);
        let request = String::from_utf8_lossy(&request).replace(
            "\r\n\r\n",
            &format!("\r\nSec-WebSocket-Extensions: {OFFER}\r\n\r\n"),
        );
        s.write_all(request.as_bytes())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while ws::head_end(&head).is_none() {
            s.read_exact(&mut byte)?;
            head.push(byte[0]);
            if head.len() > ws::MAX_HEAD {
                return Err(io::Error::other("response head too long"));
            }
        }
        ws::check_response(&head, &accept).map_err(io::Error::other)?;
        if String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate")
        {
            negotiated += 1;
        }
        s.set_nonblocking(true)?;
        clients.push(s);
    }
    Ok((clients, negotiated))
}

/// Runs one system: connect, measure idle memory, publish, count.
fn measure(system: &str, n: usize, count: u64, size: usize) -> io::Result<Measured> {
    let mut server = Server::start(system, n)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let before = server.rss_kib();
    let (clients, negotiated) = connect(addr, n)?;
    server.say(&format!("expect {n} 60000"))?;
    server.expect("connected")?;
    // Idle: let the server settle a moment before reading its memory.
    std::thread::sleep(Duration::from_millis(500));
    let idle = server.rss_kib();
    let mut poll = Poll::new()?;
    let mut streams: Vec<MioStream> = clients.into_iter().map(MioStream::from_std).collect();
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry().register(s, Token(i), Interest::READABLE)?;
    }
    let mut readers: Vec<Reader> = (0..n).map(|_| Reader::default()).collect();
    let cpu_before = sys::process_cpu_ns(server.child.id());
    let started = Instant::now();
    server.say(&format!("publish 0 {count} {size} 0"))?;
    let want = count * n as u64;
    let (mut got, mut bytes) = (0u64, 0u64);
    let mut last = started;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = started + Duration::from_secs(600);
    while got < want {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "{system}: {got} of {want} frames"
            )));
        }
        poll.poll(&mut events, Some(Duration::from_secs(5)))?;
        for event in &events {
            let i = event.token().0;
            loop {
                match streams[i].read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => {
                        bytes += k as u64;
                        let before = readers[i].frames;
                        readers[i].feed(&buf[..k]);
                        got += readers[i].frames - before;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        last = Instant::now();
    }
    let server_cpu_ns = sys::process_cpu_ns(server.child.id()) - cpu_before;
    let after = server.rss_kib();
    Ok(Measured {
        deliveries: got,
        secs: last.duration_since(started).as_secs_f64(),
        bytes,
        idle_rss_per_client: (idle.saturating_sub(before) * 1024) as f64 / n as f64,
        after_rss_per_client: (after.saturating_sub(before) * 1024) as f64 / n as f64,
        negotiated,
        server_cpu_ns,
    })
}

/// `--mode ws-deflate [--n N] [--count C] [--s S] [--systems LIST]`.
pub(crate) fn run(args: &[String]) -> i32 {
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|j| args.get(j + 1))
            .cloned()
    };
    let n: usize = opt("--n").and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let count: u64 = opt("--count").and_then(|v| v.parse().ok()).unwrap_or(100);
    let size: usize = opt("--s").and_then(|v| v.parse().ok()).unwrap_or(4096);
    let systems = opt("--systems")
        .unwrap_or_else(|| "hubcast-ws-json,hubcast-ws-deflate,node-ws-deflate".into());
    sys::raise_nofile();
    println!("ws-deflate: N={n} clients, {count} messages of {size} bytes (JSON-like)");
    println!(
        "| system | clients with the extension | deliveries/s | bytes on the wire | wire bytes per delivery | server CPU ns per delivery | idle RSS per client | RSS per client after |"
    );
    println!("| --- | --: | --: | --: | --: | --: | --: | --: |");
    let mut failed = 0;
    for system in systems.split(',') {
        match measure(system, n, count, size) {
            Ok(m) => println!(
                "| {system} | {} | {:.0} | {} | {:.0} | {:.0} | {:.0} B | {:.0} B |",
                m.negotiated,
                m.deliveries as f64 / m.secs,
                m.bytes,
                m.bytes as f64 / m.deliveries as f64,
                m.server_cpu_ns as f64 / m.deliveries as f64,
                m.idle_rss_per_client,
                m.after_rss_per_client,
            ),
            Err(e) => {
                failed += 1;
                println!("| {system} | error: {e} | | | | | | |");
            }
        }
    }
    i32::from(failed > 0)
}
