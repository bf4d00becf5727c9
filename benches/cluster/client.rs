//! The processes and connections of a run besides the subscribers: hub nodes (this bench's
//! own binary with `--node`), clients that publish through a relaying hub, and the NATS
//! publisher of `nats-direct`.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::nats::NatsPub;
use crate::publish::{publish_loop, Done, Job};
use crate::sys::{self, now_ns};

/// What a publisher reports once its job is done, or why it failed.
pub(crate) type Outcome = Result<Done, String>;

/// A hub in a process of its own, stopped (by its PID if need be) when dropped.
pub(crate) struct Node {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) port: u16,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// `published` answers go here, the other lines to `lines`.
    published: Option<Receiver<Outcome>>,
    name: String,
}

impl Node {
    /// Starts node `index`; in a cluster of `prefix` on the NATS server at `nats`.
    pub(crate) fn start(
        index: usize,
        nats: Option<(&str, &str)>,
        relay: bool,
        queue_bytes: usize,
    ) -> Result<Node, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.args(["--node", "--index", &index.to_string()])
            .args(["--queue-bytes", &queue_bytes.to_string()]);
        if let Some((url, prefix)) = nats {
            cmd.args(["--nats", url, "--prefix", prefix]);
        }
        if relay {
            cmd.arg("--relay");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        sys::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| format!("starting a node: {e}"))?;
        let pid = child.id();
        crate::register_child(pid);
        let stdout = child.stdout.take().ok_or("no node stdout")?;
        let stdin = child.stdin.take();
        let (lines_tx, lines) = mpsc::channel();
        let (published_tx, published) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let words: Vec<&str> = line.split_whitespace().collect();
                let sent = match words.as_slice() {
                    ["published", rest @ ..] => published_tx
                        .send(Done::from_words(rest).ok_or(format!("bad line {line:?}")))
                        .is_ok(),
                    ["error", "publishing:", ..] => published_tx.send(Err(line)).is_ok(),
                    _ => lines_tx.send(line).is_ok(),
                };
                if !sent {
                    break;
                }
            }
        });
        let mut node = Node {
            child,
            pid,
            port: 0,
            stdin,
            lines,
            published: Some(published),
            name: format!("hub {}", index + 1),
        };
        let line = node.wait_line("port", now_ns() + 15_000_000_000)?;
        node.port = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .ok_or("bad port line")?;
        Ok(node)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub(crate) fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("no control pipe")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: control pipe: {e}", self.name))
    }

    /// The next line from the node starting with `prefix`; an `error` line fails.
    pub(crate) fn wait_line(&mut self, prefix: &str, deadline: u64) -> Result<String, String> {
        loop {
            let left = deadline.saturating_sub(now_ns());
            match self.lines.recv_timeout(Duration::from_nanos(left.max(1))) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(line) if line.starts_with("error") => {
                    return Err(format!("{}: {line}", self.name))
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{}: no '{prefix}' answer in time", self.name))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("{}: the process exited", self.name))
                }
            }
        }
    }

    /// Waits until the hub has `n` clients.
    pub(crate) fn expect(&mut self, n: usize, deadline: u64) -> Result<(), String> {
        let ms = deadline.saturating_sub(now_ns()) / 1_000_000;
        self.send(&format!("expect {n} {ms}"))?;
        self.wait_line("connected", deadline + 1_000_000_000)
            .map(|_| ())
    }

    /// The hub's counters, as `key=value` pairs.
    pub(crate) fn stats(&mut self) -> Result<Vec<(String, String)>, String> {
        self.send("stats")?;
        let line = self.wait_line("stats", now_ns() + 5_000_000_000)?;
        Ok(line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// Has the hub's host thread broadcast `job`; the outcome arrives on the receiver.
    pub(crate) fn publish(&mut self, job: Job) -> Result<Receiver<Outcome>, String> {
        let rx = self.published.take().ok_or("one job per node")?;
        self.send(&format!("publish {}", job.to_words()))?;
        Ok(rx)
    }

    /// Asks the node to quit and waits for it (3 s), then kills it by its PID.
    fn stop(&mut self) {
        let _ = self.send("quit");
        self.stdin = None;
        let deadline = now_ns() + 3_000_000_000;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if now_ns() > deadline => {
                    sys::kill(self.pid, sys::SIGKILL);
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        crate::unregister_child(self.pid);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client that publishes through a relaying hub (`Relay::Others`): length-prefixed
/// frames through a 64 KiB buffer (flushed per message when paced). A thread reads and
/// discards what the hub relays to it from the other publishers.
pub(crate) struct RelayPub {
    stream: TcpStream,
    drain: Option<JoinHandle<()>>,
}

impl RelayPub {
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<RelayPub> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = stream.try_clone()?;
        let drain = std::thread::Builder::new()
            .name("bench-relay-drain".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            })?;
        Ok(RelayPub {
            stream,
            drain: Some(drain),
        })
    }

    /// Writes `job` on a thread of this process.
    pub(crate) fn publish(&self, job: Job) -> io::Result<Receiver<Outcome>> {
        let stream = self.stream.try_clone()?;
        spawn(move || {
            let mut w = BufWriter::with_capacity(64 * 1024, stream);
            let paced = job.rate > 0.0;
            let done = publish_loop(&job, |msg| {
                w.write_all(&(msg.len() as u32).to_be_bytes())?;
                w.write_all(msg)?;
                if paced {
                    w.flush()?;
                }
                Ok(())
            })?;
            w.flush()?;
            Ok(done)
        })
    }
}

impl Drop for RelayPub {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(h) = self.drain.take() {
            let _ = h.join();
        }
    }
}

/// Publishes `job` to NATS on a thread of this process; done once nats-server has taken
/// every message (its `PONG`).
pub(crate) fn publish_nats(publisher: &NatsPub, job: Job) -> io::Result<Receiver<Outcome>> {
    let mut w = publisher.writer()?;
    let flusher = publisher.try_clone()?;
    spawn(move || {
        let paced = job.rate > 0.0;
        let done = publish_loop(&job, |msg| {
            w.publish(msg)?;
            if paced {
                w.flush()?;
            }
            Ok(())
        })?;
        w.flush()?;
        flusher.flush_server()?;
        Ok(done)
    })
}

fn spawn(job: impl FnOnce() -> io::Result<Done> + Send + 'static) -> io::Result<Receiver<Outcome>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("bench-pub".into())
        .spawn(move || {
            let _ = tx.send(job().map_err(|e| format!("publisher: {e}")));
        })?;
    Ok(rx)
}
