//! Saying why NATS cannot be reached, and not too often (feature `nats`).
//!
//! `async-nats` retries every 0.1–5 s and reports each failed attempt as an event that
//! only says `IO error`: no server, no cause. So the first failure of an outage is logged
//! at once, at `WARN`, with each server's URL (without credentials) and what the system
//! says when this node connects to it ("Connection refused"), and the outage again only on
//! a back-off schedule ([`REPORT_FIRST`], doubling to [`REPORT_MAX`]), with the attempts
//! counted.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// When an outage is reported again after its first report.
pub(super) const REPORT_FIRST: Duration = Duration::from_secs(10);
/// The longest pause between two reports of one outage.
pub(super) const REPORT_MAX: Duration = Duration::from_secs(300);
/// How long the look at a server may wait for its TCP handshake.
const LOOK_TIMEOUT: Duration = Duration::from_secs(1);
/// The port of a NATS URL that names none.
const DEFAULT_PORT: u16 = 4222;

/// One outage: from the first failed attempt to the next connection.
#[derive(Debug)]
pub(super) struct Outage {
    /// When the first attempt failed.
    since: Instant,
    /// Failed attempts so far.
    attempts: u64,
    /// Reports made so far.
    reports: u32,
    /// When the next report is due.
    due: Instant,
}

impl Outage {
    /// An outage whose first failed attempt is now: due for its first report at once.
    pub(super) fn new(now: Instant) -> Outage {
        Outage {
            since: now,
            attempts: 0,
            reports: 0,
            due: now,
        }
    }

    /// One more failed attempt. Returns whether to report the outage now; if so, the next
    /// report is scheduled.
    pub(super) fn failed(&mut self, now: Instant) -> bool {
        self.attempts += 1;
        if now < self.due {
            return false;
        }
        self.due = now + pause_after(self.reports);
        self.reports += 1;
        true
    }

    /// Whether the next report is the first.
    pub(super) fn is_new(&self) -> bool {
        self.reports <= 1
    }

    /// Failed attempts so far.
    pub(super) fn attempts(&self) -> u64 {
        self.attempts
    }

    /// How long the outage has lasted.
    pub(super) fn lasted(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since)
    }
}

/// The pause after report `n` (from 0) before the next: [`REPORT_FIRST`], doubling up to
/// [`REPORT_MAX`].
fn pause_after(n: u32) -> Duration {
    REPORT_FIRST.saturating_mul(1 << n.min(16)).min(REPORT_MAX)
}

/// Why each server at `urls` cannot be reached (`url: cause; ...`), looked at off the
/// runtime since a look blocks; `failed` is what async-nats said.
pub(super) async fn causes(urls: &[String], failed: String) -> String {
    let urls = urls.to_vec();
    let look = move || {
        urls.iter()
            .map(|url| format!("{}: {}", redacted(url), cause(url, &failed)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    tokio::task::spawn_blocking(look)
        .await
        .unwrap_or_else(|_| "the look at the servers failed".to_owned())
}

/// `url` without the user name, password or token it may hold (`nats://user:pw@host`).
fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    // The user information ends at the last '@' of the authority (a password may hold
    // '@'); a path or query after it may hold one too.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest.to_owned(),
    }
}

/// The `host:port` a NATS URL names (`nats://host`, `tls://user@host:4443`, `host:4222`,
/// `[::1]`): the port is 4222 if it names none.
fn host_port(url: &str) -> String {
    let redacted = redacted(url);
    let rest = redacted
        .split_once("://")
        .map_or(redacted.as_str(), |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    // A port follows the last ':' after an IPv6 literal's closing bracket, if any.
    let after_host = authority.rfind(']').map_or(authority, |i| &authority[i..]);
    if after_host.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:{DEFAULT_PORT}")
    }
}

/// Why the server at `url` cannot be reached, as far as a TCP connection to it tells:
/// what the system says ("Connection refused (os error 111)"), or, when it takes the
/// connection, `failed` (what async-nats says: the trouble is then past TCP, in TLS or
/// authentication). Blocks for up to a second per address: run it off the runtime.
fn cause(url: &str, failed: &str) -> String {
    let target = host_port(url);
    let addrs = match target.to_socket_addrs() {
        Ok(addrs) => addrs,
        Err(err) => return format!("cannot resolve {target}: {err}"),
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, LOOK_TIMEOUT) {
            Ok(_) => return format!("it takes connections, but: {failed}"),
            Err(err) => last = Some(err),
        }
    }
    match last {
        Some(err) => err.to_string(),
        None => format!("{target} resolves to no address"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_at_once_then_on_a_doubling_schedule() {
        let start = Instant::now();
        let mut outage = Outage::new(start);
        // Attempts every 100 ms for 20 minutes: reports at 0, 10 s, 30 s, 70 s, 150 s,
        // 310 s, then every 5 minutes.
        let mut reports = Vec::new();
        for tenth in 0..12_000u64 {
            let now = start + Duration::from_millis(100 * tenth);
            if outage.failed(now) {
                reports.push(now - start);
            }
        }
        let secs: Vec<u64> = reports.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 10, 30, 70, 150, 310, 610, 910]);
        assert_eq!(outage.attempts(), 12_000);
    }

    #[test]
    fn urls_lose_their_credentials_and_get_the_default_port() {
        assert_eq!(redacted("nats://user:pw@host:4222"), "nats://host:4222");
        assert_eq!(redacted("tls://token@host"), "tls://host");
        // A password with '@' in it, and an '@' after the authority.
        assert_eq!(redacted("nats://user:p@ss@host:4222"), "nats://host:4222");
        assert_eq!(redacted("nats://host:4222/a@b"), "nats://host:4222/a@b");
        assert_eq!(redacted("127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(host_port("nats://user:pw@host"), "host:4222");
        assert_eq!(host_port("nats://127.0.0.1:4333"), "127.0.0.1:4333");
        assert_eq!(host_port("[::1]"), "[::1]:4222");
        assert_eq!(host_port("nats://[::1]:5000/"), "[::1]:5000");
        assert_eq!(host_port("localhost"), "localhost:4222");
    }

    #[test]
    fn a_closed_port_is_refused() {
        // A port just freed by this process: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let cause = cause(&format!("nats://127.0.0.1:{port}"), "IO error");
        assert!(cause.contains("refused"), "{cause}");
    }
}
