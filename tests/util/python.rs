//! The Python client (`clients/python`) run from the tests: a script of `tests/python/` as
//! a child process, and `driver.py`, which runs one client command by command and prints
//! one line per event, then `ok` (or `fail <why>`).

use std::path::Path;
use std::process::Command;

use hubcast::Hub;

use super::ChildProcess;

/// A script of `tests/python/` running in python3, unbuffered.
pub(crate) fn python(script: &str, args: &[String]) -> ChildProcess {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut command = Command::new("python3");
    command
        .arg("-u")
        .arg(path)
        .args(args)
        // Nothing written next to the sources (__pycache__).
        .env("PYTHONDONTWRITEBYTECODE", "1");
    ChildProcess::spawn(command)
}

/// One Python client, run command by command by `driver.py`.
pub(crate) struct Driver {
    pub(crate) child: ChildProcess,
}

impl Driver {
    /// A driver for a client of `hub`, with `driver.py`'s options.
    pub(crate) fn start(hub: &Hub, options: &[&str]) -> Driver {
        let mut args = vec!["--address".to_owned(), hub.local_addr().to_string()];
        args.extend(options.iter().map(|o| (*o).to_owned()));
        Driver {
            child: python("driver.py", &args),
        }
    }

    /// Runs one command; returns the lines it printed before its `ok`. Fails the test if
    /// the command failed.
    pub(crate) fn run(&mut self, command: &str) -> Vec<String> {
        self.child.send_line(command);
        let mut lines = Vec::new();
        loop {
            let line = self.child.next_line();
            if line == "ok" {
                return lines;
            }
            assert!(
                !line.starts_with("fail "),
                "{command}: {line}; before it: {lines:#?}; stderr:\n{}",
                self.child.stderr()
            );
            lines.push(line);
        }
    }

    /// Runs a command that must fail; returns why.
    pub(crate) fn fails(&mut self, command: &str) -> String {
        self.child.send_line(command);
        loop {
            let line = self.child.next_line();
            assert_ne!(line, "ok", "{command} did not fail");
            if let Some(why) = line.strip_prefix("fail ") {
                return why.to_owned();
            }
        }
    }

    /// Connects; returns the `#at` position and the client's address as the hub sees it.
    pub(crate) fn connect(&mut self) -> ((u64, u64), String) {
        let lines = self.run("connect");
        let connected = lines
            .iter()
            .find_map(|l| l.strip_prefix("connected "))
            .unwrap_or_else(|| panic!("no connected line: {lines:?}"));
        let words: Vec<&str> = connected.split(' ').collect();
        let at = (words[0].parse().unwrap(), words[1].parse().unwrap());
        (at, words[3].to_owned())
    }
}
