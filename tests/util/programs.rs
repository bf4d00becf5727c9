//! Outside programs a test may run (skipped where missing, except in CI), the examples'
//! binaries, and temporary directories.

use std::io::{self, Write};

/// Whether `name` is an executable on `PATH`, for a test that runs an outside program. If
/// it is not, the test should return at once: this says so on the terminal (past the test
/// harness's capture, so a skip is never silent) and returns false. In CI (`CI` set, as
/// CI sets it to `true`, and not to `false` or `0`) a missing program fails the test
/// instead: CI installs every one of them first, with `scripts/install-test-deps.sh`, and
/// nothing skips there.
pub(crate) fn require_program(name: &str) -> bool {
    if find_program(name).is_some() {
        return true;
    }
    let ci = std::env::var("CI").unwrap_or_default();
    if !matches!(ci.as_str(), "" | "false" | "0") {
        panic!("{name} not found, and CI={ci}: scripts/install-test-deps.sh installs it");
    }
    // Straight to stderr: the harness captures only the print macros.
    let _ = writeln!(
        io::stderr(),
        "skipping: {name} not found; install it with scripts/install-test-deps.sh"
    );
    false
}

/// Whether python3 can import `module` (a PyPI package the tests need, such as
/// `prometheus_client`), for a test that runs Python with it. Missing, it skips or fails as
/// [`require_program`] does: the test should return at once.
pub(crate) fn require_python_module(module: &str) -> bool {
    if !require_program("python3") {
        return false;
    }
    let mut command = std::process::Command::new("python3");
    command.arg("-c").arg(format!("import {module}"));
    if super::ChildProcess::spawn(command).wait().success() {
        return true;
    }
    let ci = std::env::var("CI").unwrap_or_default();
    if !matches!(ci.as_str(), "" | "false" | "0") {
        panic!(
            "python3 cannot import {module}, and CI={ci}: scripts/install-test-deps.sh installs it"
        );
    }
    let _ = writeln!(
        io::stderr(),
        "skipping: python3 cannot import {module}; install it with scripts/install-test-deps.sh"
    );
    false
}

/// The path of the executable `name` on `PATH`, or in `/usr/sbin` or `/sbin`, where
/// Debian installs daemons such as `nats-server` and which a user's `PATH` often lacks.
pub(crate) fn find_program(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|file| {
            file.metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// `target/<profile>/examples/<name>`, found from the running test binary, which runs as
/// `target/<profile>/deps/<test>-<hash>`. `cargo test` builds the examples there (those
/// whose `required-features` are enabled).
pub(crate) fn example_path(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} not found: is examples/{name}.rs missing, or its required features off?",
        path.display()
    );
    path
}

/// A new empty directory under the system's temporary directory, removed with everything
/// in it when dropped.
#[derive(Debug)]
pub(crate) struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Creates `hubcast-<label>-<pid>-<n>`, unique within this process and among
    /// processes alive at once.
    pub(crate) fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hubcast-{label}-{}-{n}", std::process::id()));
        // A directory left by an earlier process with the same pid.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Keeps the directory, to look at after the test, and returns its path.
    pub(crate) fn keep(self) -> std::path::PathBuf {
        let path = self.0.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
