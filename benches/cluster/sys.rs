//! The few operating-system calls the benchmark needs and `std` does not wrap, and readers
//! of `/proc` for CPU time (a subset of `benches/fanout/sys.rs`).
//!
//! The crate denies `unsafe_code`; this module alone allows it, for `libc` calls with no
//! safe wrapper in `std`: `clock_gettime(CLOCK_MONOTONIC)` (one clock that publishers in
//! the hub processes and the subscribers in the bench share), `kill` (stopping children by
//! PID) and `prctl` (children die with the bench; fine-grained sleeps for paced publishers).
#![allow(unsafe_code)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Nanoseconds on `CLOCK_MONOTONIC`: comparable between processes on this machine.
pub(crate) fn now_ns() -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

/// CPU time of the calling thread, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; `id` is a clock Linux always has.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sends `sig` to one process, by PID.
pub(crate) fn kill(pid: u32, sig: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        if pid > 0 {
            // SAFETY: plain syscall on a PID this bench started; errors (ESRCH) are harmless.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

pub(crate) const SIGKILL: i32 = libc::SIGKILL;
pub(crate) const SIGSTOP: i32 = libc::SIGSTOP;
pub(crate) const SIGCONT: i32 = libc::SIGCONT;
pub(crate) const SIGTERM: i32 = libc::SIGTERM;

/// Makes the command's process receive SIGKILL when the thread that spawned it exits, so
/// neither a hub nor nats-server outlives a killed bench. Spawn from the main thread.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // `prctl`.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Lets `thread::sleep` wake within microseconds instead of the default 50 µs timer slack
/// (calling thread only): used by paced publishers.
pub(crate) fn fine_timer_slack() {
    // SAFETY: plain prctl on the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// User + system CPU time of a process (every thread, live or exited), in nanoseconds; 0
/// once it is gone.
pub(crate) fn process_cpu_ns(pid: u32) -> u64 {
    stat_cpu_ns(&format!("/proc/{pid}/stat")).unwrap_or(0)
}

/// utime + stime of a `stat` file (process or task), in nanoseconds.
fn stat_cpu_ns(path: &str) -> Option<u64> {
    let stat = fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((ticks(11) + ticks(12)) * 1_000_000_000 / clk_tck())
}

/// CPU time of the live threads of `pid` whose name starts with `name`, in nanoseconds.
pub(crate) fn threads_cpu_ns(pid: u32, name: &str) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for task in dir.flatten() {
        let path = task.path();
        let comm = fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(name) {
            total += stat_cpu_ns(&path.join("stat").to_string_lossy()).unwrap_or(0);
        }
    }
    total
}

/// CPU time the whole machine spent busy (everything but idle and iowait) since boot, in
/// nanoseconds, from the first line of `/proc/stat`; includes steal time.
pub(crate) fn machine_busy_ns() -> u64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    busy * 1_000_000_000 / clk_tck()
}
