//! Threads of this process, and child processes that are killed if the test ends first.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{PACE, TIMEOUT};

/// The number of threads in this process, from `/proc/self/task`.
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// The names (`comm`) of this process's threads.
pub(crate) fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// A child process with piped stdin, stdout (read line by line on a thread) and stderr
/// (collected, to show when a test fails). It is killed if the test ends before it exits.
///
/// It only ever signals the process it started: only this guard reaps it (a watcher thread
/// learns of its exit with `waitid(WNOWAIT)`, which leaves it a zombie), so until the guard
/// has reaped it, its pid cannot belong to anyone else.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    child: Child,
    status: Option<ExitStatus>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    exited: Receiver<()>,
    stderr: Arc<Mutex<String>>,
    /// The thread that collects stderr: it ends once every writer of the pipe has closed it.
    stderr_reader: Option<JoinHandle<()>>,
    /// Whether the child leads a process group of its own, which is killed with it.
    group: bool,
}

impl ChildProcess {
    pub(crate) fn spawn(command: Command) -> ChildProcess {
        ChildProcess::start(command, false)
    }

    /// Spawns the child as the leader of a new process group, for programs that start
    /// processes of their own (a browser): killing it kills the whole group. Signals go to
    /// the group only while the leader is unreaped, so its id is still this group's.
    pub(crate) fn spawn_group(mut command: Command) -> ChildProcess {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        ChildProcess::start(command, true)
    }

    fn start(mut command: Command, group: bool) -> ChildProcess {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {command:?}: {err}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock().expect("lock").push_str(&text);
            }
        });
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        let (tx, exited) = mpsc::channel();
        thread::spawn(move || {
            wait_for_exit_without_reaping(pid);
            let _ = tx.send(());
        });
        let stdin = child.stdin.take();
        ChildProcess {
            child,
            status: None,
            stdin,
            lines,
            exited,
            stderr,
            stderr_reader: Some(stderr_reader),
            group,
        }
    }

    /// The child's process id. Only [`signal`](Self::signal) may use it to signal the
    /// child, since only this guard knows whether it is reaped.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's exit status if it has exited (reaping it), `None` while it runs.
    /// Never waits.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() && self.exited.try_recv().is_ok() {
            self.status = Some(self.child.wait().expect("reap the child"));
        }
        self.status
    }

    /// Writes one line to the child's stdin.
    pub(crate) fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to the child");
    }

    /// The child's next line on stdout, or `None` if it closed stdout (exited) first;
    /// fails the test if neither happens within [`TIMEOUT`].
    pub(crate) fn try_line(&mut self) -> Option<String> {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                panic!("the child neither wrote a line nor closed stdout");
            }
        }
    }

    /// The child's next line on stdout; fails the test (killing the child and showing its
    /// stderr) if none comes within [`TIMEOUT`].
    pub(crate) fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(err) => {
                self.kill();
                panic!(
                    "no line from the child ({err}); its stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Sends `signal` to the child, unless it has already been reaped.
    pub(crate) fn signal(&mut self, signal: libc::c_int) {
        if self.status.is_none() {
            // Not reaped by us, hence by no one: the pid is still the child's.
            assert_eq!(
                kill(self.child.id(), signal),
                0,
                "kill({}, {signal})",
                self.child.id()
            );
        }
    }

    /// Waits for the child to exit and reaps it; fails the test (killing it) if it has not
    /// exited within [`TIMEOUT`].
    pub(crate) fn wait(&mut self) -> ExitStatus {
        self.wait_within(TIMEOUT)
            .unwrap_or_else(|| panic!("the child did not exit; its stderr:\n{}", self.stderr()))
    }

    /// Waits up to `timeout` for the child to exit and reaps it; `None`, with the child
    /// killed, if it has not exited by then. For children that run longer than [`TIMEOUT`].
    pub(crate) fn wait_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return Some(status);
        }
        if self.exited.recv_timeout(timeout).is_err() {
            self.kill();
            return None;
        }
        let status = self.child.wait().expect("reap the child");
        self.status = Some(status);
        Some(status)
    }

    /// Waits for the child to exit, as [`wait`](Self::wait) does, and returns its status
    /// with all it wrote to stderr (read to the end, which a child that leaves no process
    /// of its own behind reaches as it exits).
    pub(crate) fn finish(&mut self) -> (ExitStatus, String) {
        let status = self.wait();
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().expect("the stderr reader");
        }
        (status, self.stderr())
    }

    /// Waits up to [`TIMEOUT`] until the child's stderr holds `text`, and returns all of
    /// it; fails the test (killing the child) if it does not. Nothing announces a write to
    /// a pipe read on another thread, so this looks again every [`PACE`].
    pub(crate) fn wait_for_stderr(&mut self, text: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let stderr = self.stderr();
            if stderr.contains(text) {
                return stderr;
            }
            if self.try_wait().is_some() {
                // Exited: what it wrote is all in once the reader has reached the end.
                if let Some(reader) = self.stderr_reader.take() {
                    reader.join().expect("the stderr reader");
                }
                let stderr = self.stderr();
                assert!(
                    stderr.contains(text),
                    "{text:?} not in the child's stderr:\n{stderr}"
                );
                return stderr;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("{text:?} not in the child's stderr:\n{stderr}");
            }
            thread::sleep(PACE);
        }
    }

    /// What the child wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            if self.group {
                // The leader is not reaped yet (a zombie at most), so no other process or
                // group can have its id: the whole group goes, helpers included.
                let _ = kill_group(self.child.id(), libc::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.exited.recv_timeout(TIMEOUT);
            if self.group {
                // Reaped only once the rest of its group is gone too, so the group's id
                // stays unused by anyone else until then.
                wait_for_group_to_end(self.child.id());
            }
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        self.kill();
    }
}

#[allow(unsafe_code)]
fn kill(pid: u32, signal: libc::c_int) -> libc::c_int {
    let pid = libc::pid_t::try_from(pid).expect("pid");
    // SAFETY: kill(2) takes no pointers; the caller guarantees `pid` is an unreaped child.
    unsafe { libc::kill(pid, signal) }
}

/// Sends `signal` to every process of the group that child `leader` leads.
#[allow(unsafe_code)]
fn kill_group(leader: u32, signal: libc::c_int) -> libc::c_int {
    let pgid = libc::pid_t::try_from(leader).expect("pid");
    // SAFETY: killpg(2) takes no pointers; the caller guarantees `leader` is an unreaped
    // child that leads its own group, so the group is still its.
    unsafe { libc::killpg(pgid, signal) }
}

/// Waits up to [`TIMEOUT`] until no live process (zombies aside) is in the process group
/// `pgid`, as far as `/proc` tells. Nothing announces a process's end to anyone but its
/// parent, so this looks again every [`PACE`].
fn wait_for_group_to_end(pgid: u32) {
    let pgid = pgid.to_string();
    let in_group = |entry: std::fs::DirEntry| -> bool {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.as_str())
    };
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        if !procs.filter_map(Result::ok).any(in_group) {
            return;
        }
        thread::sleep(PACE);
    }
}

/// Blocks until child `pid` has exited, leaving it unreaped.
#[allow(unsafe_code)]
fn wait_for_exit_without_reaping(pid: libc::pid_t) {
    let id = libc::id_t::try_from(pid).expect("pid");
    loop {
        // SAFETY: `siginfo_t` is plain data, valid when zeroed; waitid writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a local `siginfo_t`; WNOWAIT leaves the child unreaped.
        let ret =
            unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if ret == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}
