//! `--failures`: how long a hub takes to notice each broker failure, and to recover from
//! it. Two hubs in this process on a nats-server of the bench's own; each failure is made
//! `repeat` times, and each time measured from the signal to the hub's `Event::Cluster`:
//!
//! - killed (SIGKILL): to `Disconnected`; restarted on the same port: to `Connected`, and
//!   to the first message crossing again (the subscriptions are back);
//! - frozen (SIGSTOP): to `Partitioned`, at the default probe interval (2 s) and at
//!   200 ms; thawed (SIGCONT): to `Healed`.
//!
//! Timing belongs here, not in the tests: the tests check that each state is reported,
//! this says how soon.

use std::time::{Duration, Instant};

use hubcast::{Cluster, ClusterState, Event, Hub, Subscription};

use crate::nats::NatsServer;
use crate::sys;

/// How long any one step may take before the run is called failed.
const LIMIT: Duration = Duration::from_secs(30);

/// Waits for `state` on `events`; returns when it came, or an error after [`LIMIT`].
fn wait_state(events: &Subscription, state: ClusterState) -> Result<Instant, String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Cluster { state: got, .. }) if got == state => return Ok(Instant::now()),
            Ok(_) => {}
            Err(_) => return Err(format!("no {state:?} within {LIMIT:?}")),
        }
    }
}

/// Two hubs on `url` with this probe interval, each connected, with their event streams.
fn pair(url: &str, probe: Duration) -> Result<[(Hub, Subscription); 2], String> {
    let make = || -> Result<(Hub, Subscription), String> {
        let hub = Hub::builder()
            .cluster(Cluster::nats([url]).probe_interval(probe))
            .bind("127.0.0.1:0")
            .map_err(|e| e.to_string())?;
        let events = hub.subscribe();
        Ok((hub, events))
    };
    let (a, b) = (make()?, make()?);
    for (hub, _) in [&a, &b] {
        let deadline = Instant::now() + LIMIT;
        while !hub.stats().cluster.connected {
            if Instant::now() > deadline {
                return Err("a hub did not connect".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok([a, b])
}

/// Broadcasts from `from` every 5 ms until `to` has received one more message from the
/// cluster: the time until messages cross again.
fn until_crossing(from: &Hub, to: &Hub) -> Result<Instant, String> {
    let before = to.stats().cluster.received;
    let deadline = Instant::now() + LIMIT;
    while to.stats().cluster.received == before {
        if Instant::now() > deadline {
            return Err("no message crossed".into());
        }
        let _ = from.broadcast("ping");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Instant::now())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median, min and max in milliseconds.
fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "{:.0} ms ({:.0}–{:.0})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

/// Runs the failure measurements `repeat` times and prints a Markdown table.
pub(crate) fn run(repeat: usize) -> Result<(), String> {
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("killed → Disconnected", vec![]),
        ("restarted → Connected", vec![]),
        ("restarted → messages cross again", vec![]),
        ("frozen → Partitioned (probe 2 s)", vec![]),
        ("thawed → Healed (probe 2 s)", vec![]),
        ("frozen → Partitioned (probe 200 ms)", vec![]),
        ("thawed → Healed (probe 200 ms)", vec![]),
    ];
    for rep in 0..repeat {
        eprintln!("[failures rep {}] kill and restart", rep + 1);
        let server = NatsServer::start()?;
        let port = server.port;
        let [(a, a_events), (b, _)] = pair(&server.url(), Duration::from_secs(2))?;
        let killed = Instant::now();
        sys::kill(server.pid, sys::SIGKILL);
        rows[0].1.push(ms(
            wait_state(&a_events, ClusterState::Disconnected)? - killed
        ));
        drop(server);
        let restarted = Instant::now();
        let server = NatsServer::start_on(Some(port))?;
        rows[1].1.push(ms(
            wait_state(&a_events, ClusterState::Connected)? - restarted
        ));
        rows[2].1.push(ms(until_crossing(&b, &a)? - restarted));
        drop((a, b));
        drop(server);

        for (probe, at) in [(Duration::from_secs(2), 3), (Duration::from_millis(200), 5)] {
            eprintln!("[failures rep {}] freeze, probe {probe:?}", rep + 1);
            let server = NatsServer::start()?;
            let [(a, a_events), (_b, _)] = pair(&server.url(), probe)?;
            // Let the probe arm (its first round trip) before the freeze.
            std::thread::sleep(2 * probe);
            let frozen = Instant::now();
            sys::kill(server.pid, sys::SIGSTOP);
            let noticed = wait_state(&a_events, ClusterState::Partitioned);
            let thawed = Instant::now();
            sys::kill(server.pid, sys::SIGCONT);
            rows[at].1.push(ms(noticed? - frozen));
            rows[at + 1]
                .1
                .push(ms(wait_state(&a_events, ClusterState::Healed)? - thawed));
            drop(a);
            drop(server);
        }
    }
    println!(
        "\nBroker failures, {repeat} run(s): median (min–max), from the signal to the event\n"
    );
    println!("| failure | time |\n|---|--:|");
    for (what, v) in rows {
        println!("| {what} | {} |", summary(v));
    }
    Ok(())
}
