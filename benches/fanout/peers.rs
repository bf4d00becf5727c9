//! The peers: nats-server and redis-server, started from PATH on a free loopback port,
//! and their publishers (one TCP connection each, on a thread of the bench process).

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::server::{publish_loop, Job, PubReport, PUB_THREAD};
use crate::sys::{now_ns, thread_cpu_ns};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerKind {
    Nats,
    Redis,
}

impl PeerKind {
    pub(crate) fn binary(self) -> &'static str {
        match self {
            PeerKind::Nats => "nats-server",
            PeerKind::Redis => "redis-server",
        }
    }
}

/// The first executable `name` on PATH.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A port the OS just handed out on 127.0.0.1 (free now; the server binds it next).
pub(crate) fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The command that starts a peer on `port`, logging to `log_dir`.
pub(crate) fn command(
    kind: PeerKind,
    bin: &Path,
    port: u16,
    monitor: u16,
    max_clients: usize,
    log_dir: &Path,
) -> Command {
    let mut cmd = Command::new(bin);
    match kind {
        PeerKind::Nats => {
            // Defaults otherwise: max_pending 64 MB per client (slow consumers beyond it are
            // disconnected), max_payload 1 MB, write_deadline 10 s.
            cmd.args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor.to_string(),
            ]);
            cmd.arg("-l").arg(log_dir.join("nats-server.log"));
        }
        PeerKind::Redis => {
            cmd.args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--tcp-backlog",
                "4096",
                "--maxclients",
                &max_clients.to_string(),
                // Like hubcast's queue_bytes and NATS's max_pending: 64 MiB per subscriber,
                // no soft limit. (Redis's default is 32 MB hard, 8 MB soft over 60 s.)
                "--client-output-buffer-limit",
                "pubsub 64mb 0 0",
            ]);
            cmd.arg("--logfile").arg(log_dir.join("redis-server.log"));
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Waits until something accepts connections on `port`.
pub(crate) fn wait_listening(port: u16, deadline: u64) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if now_ns() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// What the publisher thread reports.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// Server errors seen on the publisher connection, and for Redis the fewest receivers
    /// any PUBLISH reached.
    pub(crate) notes: Vec<String>,
    pub(crate) report: PubReport,
    /// CPU time of the publisher thread, in nanoseconds.
    pub(crate) cpu_ns: u64,
}

/// Starts a publisher thread for `job` against the peer at `addr`. `receivers` is how many
/// subscribers each message should reach (checked with Redis's PUBLISH replies).
pub(crate) fn spawn_publisher(
    kind: PeerKind,
    addr: SocketAddr,
    job: Job,
    receivers: u64,
    timeout: Duration,
) -> io::Result<JoinHandle<io::Result<Published>>> {
    // Connect and handshake before the clock starts.
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    if kind == PeerKind::Nats {
        (&stream).write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")?;
        expect_pong(&mut reader)?;
    }
    std::thread::Builder::new()
        .name(PUB_THREAD.into())
        .spawn(move || {
            let cpu0 = thread_cpu_ns();
            let mut published = Published::default();
            // Redis answers every PUBLISH with the number of receivers: count them on the side.
            let replies = if kind == PeerKind::Redis {
                let count = job.count;
                Some(
                    std::thread::Builder::new()
                        .name("fanout-pub-replies".into())
                        .spawn(move || redis_replies(&mut reader, count, receivers))?,
                )
            } else {
                None
            };
            let mut w = BufWriter::with_capacity(64 * 1024, stream.try_clone()?);
            let header = match kind {
                PeerKind::Nats => format!("PUB bench {}\r\n", job.size),
                PeerKind::Redis => {
                    format!("*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n${}\r\n", job.size)
                }
            };
            let paced = job.rate > 0.0;
            let t0 = now_ns();
            published.report = publish_loop(&job, |msg| {
                w.write_all(header.as_bytes())?;
                w.write_all(msg)?;
                w.write_all(b"\r\n")?;
                if paced {
                    w.flush()?;
                }
                Ok(())
            })?;
            w.flush()?;
            // Done when the last byte is in the kernel, not in our buffer.
            published.report.elapsed = now_ns() - t0;
            published.cpu_ns = thread_cpu_ns() - cpu0;
            match replies {
                Some(h) => match h.join() {
                    Ok(Ok(notes)) => published.notes.extend(notes),
                    Ok(Err(e)) => published.notes.push(format!("publisher replies: {e}")),
                    Err(_) => published
                        .notes
                        .push("publisher reply thread panicked".into()),
                },
                None => {
                    // NATS processes a connection's input in order: PONG means every PUB is in.
                    (&stream).write_all(b"PING\r\n")?;
                    let mut reader = BufReader::new(stream);
                    if let Err(e) = expect_pong(&mut reader) {
                        published.notes.push(format!("publisher: {e}"));
                    }
                }
            }
            Ok(published)
        })
}

fn expect_pong(reader: &mut impl BufRead) -> io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::other("nats-server closed the publisher"));
        }
        match line.trim_end() {
            "PONG" => return Ok(()),
            l if l.starts_with("-ERR") => {
                return Err(io::Error::other(format!("nats-server: {l}")))
            }
            _ => {}
        }
    }
}

/// Reads `count` PUBLISH replies; notes any that reached fewer than `receivers`.
fn redis_replies(reader: &mut impl BufRead, count: u64, receivers: u64) -> io::Result<Vec<String>> {
    let mut notes = Vec::new();
    let mut fewest = u64::MAX;
    let mut line = String::new();
    for _ in 0..count {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::other("redis-server closed the publisher"));
        }
        let l = line.trim_end();
        match l.strip_prefix(':').and_then(|n| n.parse::<u64>().ok()) {
            Some(n) => fewest = fewest.min(n),
            None => {
                notes.push(format!("redis publisher: {l}"));
                break;
            }
        }
    }
    if fewest < receivers {
        notes.push(format!(
            "redis: a PUBLISH reached only {fewest} of {receivers} subscribers"
        ));
    }
    Ok(notes)
}

/// What the peer itself says about slow consumers after a cell.
pub(crate) fn server_notes(kind: PeerKind, port: u16, monitor: u16) -> String {
    let result = match kind {
        PeerKind::Nats => http_get(monitor, "/varz").map(|body| {
            let num = |key: &str| {
                body.split(&format!("\"{key}\":"))
                    .nth(1)
                    .and_then(|r| {
                        r.trim_start()
                            .split(|c: char| !c.is_ascii_digit())
                            .next()
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| "?".into())
            };
            format!(
                "nats: slow_consumers={} connections={}",
                num("slow_consumers"),
                num("connections")
            )
        }),
        PeerKind::Redis => redis_info(port).map(|info| {
            let connected = info
                .lines()
                .find_map(|l| l.strip_prefix("connected_clients:"))
                .and_then(|v| v.trim().parse::<u64>().ok());
            match connected {
                // Minus this query's own connection.
                Some(c) => format!(
                    "redis: {} clients connected after the round",
                    c.saturating_sub(1)
                ),
                None => "redis: connected_clients unknown".into(),
            }
        }),
    };
    result.unwrap_or_else(|e| format!("{}: stats unavailable ({e})", kind.binary()))
}

fn http_get(port: u16, path: &str) -> io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

fn redis_info(port: u16) -> io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"*1\r\n$4\r\nINFO\r\n")?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let len: usize = line
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad INFO reply {line:?}")))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}
