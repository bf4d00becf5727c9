//! The few operating-system calls the benchmarks need and `std` does not wrap, and readers
//! of `/proc` for the server's memory and CPU time. Shared with `benches/cluster`, which
//! uses part of it.
//!
//! The crate denies `unsafe_code`; this module alone allows it, for `libc` calls that have
//! no safe wrapper in `std`: `clock_gettime(CLOCK_MONOTONIC)` (one clock that the publisher,
//! the server and the subscribers share across processes), `get/setrlimit(RLIMIT_NOFILE)`
//! (10,000+ sockets), `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` (the load generator's own
//! CPU time), `kill` (stopping child processes by PID), and `prctl` (children die with the
//! bench; fine-grained sleeps for the fixed-rate publisher).
#![allow(unsafe_code)]

use std::fs;
use std::io;
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

/// Raises `RLIMIT_NOFILE` as far as allowed: to `fs.nr_open` if the process may raise its
/// hard limit (`CAP_SYS_RESOURCE`), else the soft limit to the hard one. Returns the soft
/// limit in force afterwards. Children inherit it.
pub(crate) fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let nr_open = fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if nr_open > lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: nr_open,
            rlim_max: nr_open,
        };
        // SAFETY: `want` is a valid rlimit; failure (EPERM) leaves the limit unchanged.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return nr_open;
        }
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above; raising the soft limit up to the hard one is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return lim.rlim_max;
        }
    }
    lim.rlim_cur
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

/// Makes the command's process receive SIGKILL when the thread that spawned it exits, so a
/// server never outlives a killed bench. Spawn from the main thread.
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
/// (calling thread only): used by fixed-rate publishers.
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

/// Memory and CPU time of one process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcSample {
    /// User + system CPU time of every thread, live or exited, in nanoseconds.
    pub(crate) cpu_ns: u64,
    /// Resident set now, in KiB.
    pub(crate) rss_kib: u64,
    /// Peak resident set since start or the last [`reset_peak_rss`], in KiB.
    pub(crate) hwm_kib: u64,
}

/// User + system CPU time of a process (every thread, live or exited), in nanoseconds; 0
/// once it is gone.
pub(crate) fn process_cpu_ns(pid: u32) -> u64 {
    stat_cpu_ns(&format!("/proc/{pid}/stat")).unwrap_or(0)
}

/// Samples `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub(crate) fn sample(pid: u32) -> io::Result<ProcSample> {
    let cpu_ns = stat_cpu_ns(&format!("/proc/{pid}/stat"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_ns,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    })
}

/// utime + stime of a `stat` file (process or task), in nanoseconds.
fn stat_cpu_ns(path: &str) -> io::Result<u64> {
    let stat = fs::read_to_string(path)?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((ticks(11) + ticks(12)) * 1_000_000_000 / clk_tck())
}

/// CPU time of the threads of `pid` whose name starts with `name`, in nanoseconds.
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

/// Resets the peak resident set (`VmHWM`) of `pid` to its current size.
pub(crate) fn reset_peak_rss(pid: u32) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Kernel memory held by every TCP socket on the machine, in bytes (`/proc/net/sockstat`).
pub(crate) fn tcp_kernel_mem() -> u64 {
    let text = fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let pages = text
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words
                .iter()
                .position(|w| *w == "mem")
                .and_then(|i| words.get(i + 1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    pages * 4096
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

/// Sets `IP_BIND_ADDRESS_NO_PORT`, so binding a client socket to a source address defers
/// the port choice to `connect`, which can then reuse a port towards another destination.
pub(crate) fn bind_address_no_port(fd: std::os::fd::RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open socket owned by the caller; the option value is a valid int
    // of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
