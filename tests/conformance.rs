//! The Autobahn WebSocket conformance suite against `examples/ws_echo.rs`, driven by
//! kosoku (Autobahn's own case files run from Python 3; the classic runner is Python 2).
//! Every case of groups 1 to 11 must be OK (but the informational ones below, which cannot
//! be). Groups 12 and 13 test permessage-deflate: run when ws_echo compresses (feature
//! `deflate`), every case must be OK — windows under 32 KiB included (13.3, 13.5: the
//! narrow wire), and messages of every size (ws_echo compresses all of them: kosoku 0.1.0
//! mishandles a plain message on a compressed connection, which RFC 7692 allows).
//!
//! Needs `kosoku` and `python3` (to read the report): `scripts/install-test-deps.sh`
//! installs them. About 15 s on an idle 2-core machine for groups 1 to 11, and 4 to 7
//! minutes more for groups 12 and 13.
#![cfg(feature = "websocket")]

mod util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use util::{example_path, require_program, ChildProcess, TempDir, LOCAL};

/// The cases kosoku 0.1.0 runs without groups 12 and 13: a different count means another
/// version or a selection that did not apply, and the verdicts below would not mean much.
const CASES: usize = 301;

/// The cases of groups 12 and 13 (permessage-deflate), run when ws_echo compresses
/// (feature `deflate`).
const COMPRESSION_CASES: usize = 216;

/// Groups 12 and 13 push about 1.3 GB through ws_echo (a debug build, but miniz_oxide
/// optimised): about 7 minutes two at a time on a busy 2-core machine, 4 idle.
const COMPRESSION_RUN_LIMIT: Duration = Duration::from_secs(1200);

/// The whole run may take this long: a case waits at most 100 s for an answer that never
/// comes (9.x), so a hung case fails the test instead of hanging it.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Cases whose outcome the specification leaves open: Autobahn marks them INFORMATIONAL
/// whatever the server does (a message then a close back to back, close codes 5000 and
/// 65535), so they cannot be OK.
const INFORMATIONAL: &[&str] = &["7.1.6", "7.13.1", "7.13.2"];

/// Reads kosoku's report (Autobahn's format: `index.json` names a JSON file per case) and
/// prints one line per case, in case order, with tab-separated fields: id, behavior,
/// behaviorClose, description, result, resultClose.
const FLATTEN_REPORT: &str = r#"
import json, os, sys

def flat(text):
    return " ".join(str(text).split())

report = sys.argv[1]
with open(os.path.join(report, "index.json")) as f:
    index = json.load(f)
for agent, cases in index.items():
    for case_id in sorted(cases, key=lambda id: [int(n) for n in id.split(".")]):
        with open(os.path.join(report, cases[case_id]["reportfile"])) as f:
            case = json.load(f)
        fields = [case_id, case["behavior"], case["behaviorClose"],
                  flat(case["description"]), flat(case["result"]), flat(case["resultClose"])]
        print("\t".join(fields))
"#;

/// One case's verdicts, from the report.
#[derive(Debug)]
struct Outcome {
    id: String,
    behavior: String,
    close: String,
    description: String,
    result: String,
    result_close: String,
}

impl Outcome {
    /// Why this case is not acceptable, if it is not.
    fn problem(&self) -> Option<String> {
        let (behavior, close) = (self.behavior.as_str(), self.close.as_str());
        let id = self.id.as_str();
        if INFORMATIONAL.contains(&id) {
            let fine = matches!(behavior, "OK" | "NON-STRICT" | "INFORMATIONAL")
                && matches!(close, "OK" | "INFORMATIONAL");
            return (!fine).then(|| "not even informational".to_owned());
        }
        let fine = behavior == "OK" && close == "OK";
        (!fine).then(|| "not OK".to_owned())
    }
}

/// The cases of the report in `dir`, in case order.
fn read_report(dir: &Path) -> Vec<Outcome> {
    let output = Command::new("python3")
        .arg("-c")
        .arg(FLATTEN_REPORT)
        .arg(dir)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "reading the report in {} failed ({}):\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("the report is UTF-8");
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(6, '\t').collect();
            let [id, behavior, close, description, result, result_close] = fields[..] else {
                panic!("not a case line: {line:?}");
            };
            Outcome {
                id: id.to_owned(),
                behavior: behavior.to_owned(),
                close: close.to_owned(),
                description: description.to_owned(),
                result: result.to_owned(),
                result_close: result_close.to_owned(),
            }
        })
        .collect()
}

/// The first `n` characters of `text`, marked when cut.
fn clip(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// One kosoku run against `addr`: its selection `args`, within `limit`; the cases of its
/// report, after the counts are printed and their number checked against `cases`. Fails
/// the test (with the table of cases not acceptable) if `problem` finds any.
fn run_kosoku(
    addr: &str,
    args: &[&str],
    limit: Duration,
    cases: usize,
    problem: impl Fn(&Outcome) -> Option<String>,
    echo: &ChildProcess,
) {
    let report = TempDir::new("autobahn");
    let mut command = Command::new("kosoku");
    command
        .args(["--mode", "fuzzingclient"])
        .args(args)
        .arg("--outdir")
        .arg(report.path())
        .arg(addr);
    let started = Instant::now();
    // Its own process group, so that a run past the limit goes with anything it started.
    let mut kosoku = ChildProcess::spawn_group(command);
    let status = kosoku.wait_within(limit).unwrap_or_else(|| {
        panic!(
            "kosoku did not finish within {limit:?}; its stderr:\n{}\nws_echo's:\n{}",
            kosoku.stderr(),
            echo.stderr()
        )
    });
    // kosoku exits with 1 when a case fails by its own measure (which lets INFORMATIONAL
    // and every listed failure through, or none of them): the report decides here.
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "kosoku exited with {status}; its stderr:\n{}",
        kosoku.stderr()
    );
    let outcomes = read_report(report.path());
    let took = started.elapsed();

    let mut counts = std::collections::BTreeMap::<(&str, &str), usize>::new();
    for outcome in &outcomes {
        *counts
            .entry((&outcome.behavior, &outcome.close))
            .or_default() += 1;
    }
    println!(
        "{args:?}: {} cases in {took:.1?}: (behavior, close) -> count",
        outcomes.len()
    );
    for ((behavior, close), count) in &counts {
        println!("  {behavior:<13} {close:<16} {count}");
    }
    assert_eq!(
        outcomes.len(),
        cases,
        "kosoku ran {} cases: another kosoku version, or a selection that did not apply?",
        outcomes.len()
    );

    let problems: Vec<(&Outcome, String)> = outcomes
        .iter()
        .filter_map(|outcome| Some((outcome, problem(outcome)?)))
        .collect();
    if !problems.is_empty() {
        println!(
            "\n{:<8} {:<13} {:<16} problem, case, result",
            "case", "behavior", "close"
        );
        for (outcome, problem) in &problems {
            println!(
                "{:<8} {:<13} {:<16} {problem}\n{:<40}{}\n{:<40}{} / {}",
                outcome.id,
                outcome.behavior,
                outcome.close,
                "",
                clip(&outcome.description, 160),
                "",
                clip(&outcome.result, 160),
                clip(&outcome.result_close, 80)
            );
        }
        panic!(
            "{} of {} Autobahn cases are not acceptable: the table above; the whole report \
             is {}/index.html; ws_echo's stderr:\n{}",
            problems.len(),
            outcomes.len(),
            report.keep().display(),
            echo.stderr()
        );
    }
}

#[test]
fn ws_echo_passes_the_autobahn_cases() {
    if !require_program("kosoku") || !require_program("python3") {
        return;
    }
    let mut echo_command = Command::new(example_path("ws_echo"));
    echo_command.arg(LOCAL);
    let mut echo = ChildProcess::spawn(echo_command);
    let line = echo.next_line();
    let addr = line
        .strip_prefix("listening on ws://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("expected `listening on ws://ADDR/`, got {line:?}"))
        .to_owned();

    let groups_1_to_11 = ["--exclude", "12.*", "--exclude", "13.*"];
    run_kosoku(
        &addr,
        &groups_1_to_11,
        RUN_LIMIT,
        CASES,
        Outcome::problem,
        &echo,
    );
    if cfg!(feature = "deflate") {
        // ws_echo compresses (permessage-deflate): groups 12 and 13, two cases at a time.
        let compression = [
            "--include",
            "12.*",
            "--include",
            "13.*",
            "--parallelism",
            "2",
        ];
        run_kosoku(
            &addr,
            &compression,
            COMPRESSION_RUN_LIMIT,
            COMPRESSION_CASES,
            Outcome::problem,
            &echo,
        );
    }

    // The server came through every case and still stops cleanly.
    echo.signal(libc::SIGTERM);
    let status = echo.wait();
    assert!(
        status.success(),
        "ws_echo exited with {status}; its stderr:\n{}",
        echo.stderr()
    );
}
