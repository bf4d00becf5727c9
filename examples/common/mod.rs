//! What every example shares: its command line and how it exits. Not an example itself
//! (cargo builds `examples/*.rs` and `examples/*/main.rs`); each example includes it with
//! `mod common;`.
//!
//! - `-h` or `--help` prints the example's usage on stdout and exits with status 0, before
//!   anything is started or written.
//! - An unknown option, a missing option value, one argument too many, or an address
//!   without a port prints what is wrong and the usage on stderr, and exits with status 2.
//! - A failure once running prints `error: ` and the error with its causes on one line,
//!   with `Display` (`error: failed to bind 127.0.0.1:9999: Address already in use (os
//!   error 98)`), and exits with status 1.

// Each example uses a different part of this module.
#![allow(dead_code)]

use std::error::Error;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

/// An example's command line: its positional arguments, in order, and the values of the
/// options it takes (`--nats URL`).
#[derive(Debug)]
pub(crate) struct Args {
    usage: &'static str,
    positional: Vec<String>,
    options: Vec<(&'static str, String)>,
}

impl Args {
    /// Parses this process's arguments for an example whose usage text is `usage` (its
    /// first line `usage: NAME ...`), which takes up to `max_positional` positional
    /// arguments and the options named in `options` (each followed by a value). Exits the
    /// process on `--help` (status 0) and on a bad command line (status 2).
    pub(crate) fn parse(
        usage: &'static str,
        max_positional: usize,
        options: &[&'static str],
    ) -> Args {
        match Args::parse_from(usage, max_positional, options, std::env::args().skip(1)) {
            Ok(Some(args)) => args,
            Ok(None) => {
                println!("{usage}");
                std::process::exit(0);
            }
            Err(problem) => bad_usage(usage, &problem),
        }
    }

    /// The parse itself: `Ok(None)` for `--help`, `Err` with what is wrong.
    fn parse_from(
        usage: &'static str,
        max_positional: usize,
        options: &[&'static str],
        args: impl IntoIterator<Item = String>,
    ) -> Result<Option<Args>, String> {
        let mut parsed = Args {
            usage,
            positional: Vec::new(),
            options: Vec::new(),
        };
        let mut args = args.into_iter();
        let mut only_positional = false;
        while let Some(arg) = args.next() {
            if only_positional || arg == "-" || !arg.starts_with('-') {
                if parsed.positional.len() == max_positional {
                    return Err(format!("unexpected argument {arg:?}"));
                }
                parsed.positional.push(arg);
                continue;
            }
            if arg == "--" {
                only_positional = true;
                continue;
            }
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            // `--nats URL` or `--nats=URL`.
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            let Some(&name) = options.iter().find(|&&option| option == name) else {
                return Err(format!("unknown option {name:?}"));
            };
            let value = match inline.or_else(|| args.next()) {
                Some(value) => value,
                None => return Err(format!("{name} needs a value")),
            };
            parsed.options.push((name, value));
        }
        Ok(Some(parsed))
    }

    /// Positional argument `i` (from 0), if given.
    pub(crate) fn positional(&self, i: usize) -> Option<&str> {
        self.positional.get(i).map(String::as_str)
    }

    /// The address in positional argument `i`, or `default`: exits with status 2 and a hint
    /// if it lacks a port (`127.0.0.1` or `localhost` for `127.0.0.1:9999`).
    pub(crate) fn addr(&self, i: usize, default: &str) -> String {
        let Some(addr) = self.positional(i) else {
            return default.to_owned();
        };
        if let Err(problem) = check_addr(addr) {
            bad_usage(self.usage, &problem);
        }
        addr.to_owned()
    }

    /// The value of option `name` given last, if any.
    pub(crate) fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(option, _)| *option == name)
            .map(|(_, value)| value.as_str())
    }

    /// The rate limit of `--rate MSGS` (messages a second per client, default 50; 0 turns
    /// it off): a burst of twice as many, 1 MiB a second, and clients over it held back.
    /// A person typing never reaches 50 messages a second; a script flooding a room does,
    /// and the hub then stops reading it until it is under the limit again, so TCP slows
    /// it down and nothing is lost, while everyone else chats on (README, "Rate limits").
    /// Logs which; exits with status 2 for a rate that is not a whole number.
    #[allow(dead_code)] // Not every example takes `--rate`.
    pub(crate) fn rate_limit(&self) -> Option<hubcast::RateLimit> {
        let rate = match self.option("--rate").map(str::parse::<u32>) {
            None => 50,
            Some(Ok(rate)) => rate,
            Some(Err(_)) => self.refuse("--rate takes a whole number of messages a second"),
        };
        if rate == 0 {
            log::info!("clients are not rate-limited");
            return None;
        }
        log::info!("clients are held back past {rate} messages a second (--rate 0: no limit)");
        Some(
            hubcast::RateLimit::new()
                .messages(f64::from(rate), 2 * u64::from(rate))
                .bytes(1024.0 * 1024.0, 1 << 20)
                .policy(hubcast::RateLimitPolicy::HoldBack),
        )
    }

    /// Says `problem` with the usage on stderr and exits with status 2, for a command line
    /// that parses but does not make sense (a certificate without its key).
    pub(crate) fn refuse(&self, problem: &str) -> ! {
        bad_usage(self.usage, problem)
    }
}

/// Whether `addr` looks like the `HOST:PORT` that `bind` takes; what is wrong if not.
/// Only the shape is checked: whether the host resolves is for `bind` to say.
fn check_addr(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let hint = |host: &str| {
        format!("{addr:?} has no port: give HOST:PORT, such as {host}:9999 (port 0 lets the system choose)")
    };
    if addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        return Err(hint(&format!("[{addr}]")));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        Some((host, _)) if !host.is_empty() => Err(format!(
            "{addr:?}: the port must be a number from 0 to 65535 (HOST:PORT)"
        )),
        _ => Err(hint(if addr.is_empty() { "127.0.0.1" } else { addr })),
    }
}

/// Prints `problem` and the usage on stderr and exits with status 2.
fn bad_usage(usage: &str, problem: &str) -> ! {
    eprintln!("error: {problem}\n{usage}");
    std::process::exit(2)
}

/// The process's exit: success, or the error and its causes on one line, `Display` only
/// (never a `Debug` dump), and status 1.
pub(crate) fn exit(result: Result<(), Box<dyn Error>>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    let mut line = format!("error: {err}");
    let mut cause = err.source();
    while let Some(source) = cause {
        let _ = write!(line, ": {source}");
        cause = source.source();
    }
    eprintln!("{line}");
    ExitCode::FAILURE
}

/// The logger of every example: `RUST_LOG` if set, else `default` (`info`).
pub(crate) fn init_logging(default: &str) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default)).init();
}

/// `n` and the noun, in the singular for 1: `1 client`, `2 clients`.
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The `client_topics` closure of the room examples: any room, for anyone, logged. A join
/// of `lobby`, where the host puts every client anyway and logs it with its arrival, is
/// logged at `debug` only: a client that joins on connect (the Python client's `topics`)
/// asks for it too, and that need not be logged twice. Writing to a room and resuming it
/// are allowed too, and not logged (the closure is asked once per message and room).
pub(crate) fn any_room(request: &hubcast::TopicRequest<'_>, lobby: &str) -> bool {
    let (client, topic) = (request.client(), request.topic());
    match request.action() {
        hubcast::TopicAction::Join if topic == lobby => log::debug!("{client} joins @{topic}"),
        hubcast::TopicAction::Join => log::info!("{client} joins @{topic}"),
        hubcast::TopicAction::Leave => log::info!("{client} leaves @{topic}"),
        // Publish, Resume, and any action a later hubcast asks about: allowed.
        _ => {}
    }
    true
}
