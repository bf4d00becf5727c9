//! nats-server, started by the bench on a port the OS assigns and stopped by PID when its
//! guard drops (also on an error or a panic), and a core-NATS publisher speaking the text
//! protocol by hand.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::sys::{self, now_ns};

/// A running nats-server that this bench started; dropping it stops it.
pub(crate) struct NatsServer {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) port: u16,
    /// The HTTP monitoring port (`/varz`).
    monitor: u16,
    dir: PathBuf,
}

/// The first executable `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
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

impl NatsServer {
    /// Starts `nats-server -a 127.0.0.1 -p -1 -m -1 --ports_file_dir DIR` (loopback only;
    /// `-1` lets the OS choose both ports, `-p 0` would mean 4222) and reads the ports it
    /// got from the `*.ports` file it writes there.
    pub(crate) fn start() -> Result<NatsServer, String> {
        NatsServer::start_on(None)
    }

    /// The same, on client port `port` if given (to restart a server where its clients
    /// will look for it).
    pub(crate) fn start_on(port: Option<u16>) -> Result<NatsServer, String> {
        let port = port.map_or("-1".to_owned(), |p| p.to_string());
        let bin = which("nats-server").ok_or(
            "nats-server is not on PATH: install it (apt-get install nats-server) to run this \
             benchmark",
        )?;
        let dir = std::env::temp_dir().join(format!(
            "hubcast-cluster-bench-{}-{}",
            std::process::id(),
            now_ns()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("nats-server.log"))
            .map_err(|e| format!("nats-server log: {e}"))?;
        let mut cmd = Command::new(&bin);
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &port,
            "-m",
            "-1",
            "--ports_file_dir",
        ])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        sys::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let pid = child.id();
        crate::register_child(pid);
        let mut server = NatsServer {
            child,
            pid,
            port: 0,
            monitor: 0,
            dir,
        };
        let ports = server.dir.join(format!("nats-server_{pid}.ports"));
        let deadline = now_ns() + 10_000_000_000;
        loop {
            if let Some((port, monitor)) = read_ports(&ports) {
                server.port = port;
                server.monitor = monitor;
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "nats-server exited at start ({status}); see its log: {}",
                    tail(&server.dir.join("nats-server.log"))
                ));
            }
            if now_ns() > deadline {
                return Err(format!("nats-server wrote no {} in 10 s", ports.display()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Slow consumers nats-server has counted since it started (`/varz`).
    pub(crate) fn slow_consumers(&self) -> Option<u64> {
        let body = http_get(self.monitor, "/varz").ok()?;
        let rest = body.split("\"slow_consumers\":").nth(1)?;
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // By PID: only the process this guard started.
        sys::kill(self.pid, sys::SIGTERM);
        let deadline = now_ns() + 3_000_000_000;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if now_ns() > deadline => {
                    sys::kill(self.pid, sys::SIGKILL);
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        crate::unregister_child(self.pid);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The client and monitoring ports from a ports file, once it is complete:
/// `{"nats":["nats://127.0.0.1:P"],"monitoring":["http://127.0.0.1:M"]}`.
fn read_ports(path: &Path) -> Option<(u16, u16)> {
    let text = std::fs::read_to_string(path).ok()?;
    let port_after = |key: &str| -> Option<u16> {
        let rest = text.split(key).nth(1)?;
        let url = rest.split('"').nth(1)?;
        url.rsplit(':').next()?.parse().ok()
    };
    Some((port_after("\"nats\":")?, port_after("\"monitoring\":")?))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

fn http_get(port: u16, path: &str) -> io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// A core-NATS publisher connection: `CONNECT` and a `PING` answered before it is used.
pub(crate) struct NatsPub {
    stream: TcpStream,
    subject: String,
}

impl NatsPub {
    pub(crate) fn connect(addr: SocketAddr, subject: &str) -> io::Result<NatsPub> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        (&stream).write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")?;
        expect_pong(&stream)?;
        Ok(NatsPub {
            stream,
            subject: subject.to_owned(),
        })
    }

    pub(crate) fn try_clone(&self) -> io::Result<NatsPub> {
        Ok(NatsPub {
            stream: self.stream.try_clone()?,
            subject: self.subject.clone(),
        })
    }

    /// A writer of `PUB` commands through a 64 KiB buffer.
    pub(crate) fn writer(&self) -> io::Result<PubWriter> {
        Ok(PubWriter {
            w: BufWriter::with_capacity(64 * 1024, self.stream.try_clone()?),
            subject: self.subject.clone(),
        })
    }

    /// Waits until nats-server has processed everything written so far (it handles a
    /// connection's input in order: the `PONG` comes after every `PUB` before it).
    pub(crate) fn flush_server(&self) -> io::Result<()> {
        (&self.stream).write_all(b"PING\r\n")?;
        expect_pong(&self.stream)
    }
}

pub(crate) struct PubWriter {
    w: BufWriter<TcpStream>,
    subject: String,
}

impl PubWriter {
    pub(crate) fn publish(&mut self, payload: &[u8]) -> io::Result<()> {
        write!(self.w, "PUB {} {}\r\n", self.subject, payload.len())?;
        self.w.write_all(payload)?;
        self.w.write_all(b"\r\n")
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

fn expect_pong(stream: &TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
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
