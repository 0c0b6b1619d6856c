//! The `--json` event stream as an interface, with the real binary: its version and time
//! stamps, and what a reader that goes away does (the build is cancelled cleanly: tasks
//! stopped, state saved, exit 141, nothing said), for the JSON and the plain lines alike;
//! and commands that only print end by SIGPIPE.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{alive, wait_for, Project};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn every_event_is_stamped_and_the_stream_says_its_version() {
    let p = Project::new(
        "[tasks.a]\nrun = \"echo a\"\n[tasks.b]\nrun = \"sleep 0.2; echo b\"\ndeps = [\"a\"]\n",
    );
    let before = now_ms();
    let run = p.orch(&["build", "--json"]).ok();
    let after = now_ms();
    let events: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "build_started");
    assert_eq!(
        events[0]["format_version"],
        orchfile::reporter::FORMAT_VERSION
    );
    assert_eq!(events[0]["format_version"], 1);
    let stamps: Vec<u64> = events
        .iter()
        .map(|e| e["ts_ms"].as_u64().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(before <= stamps[0] && *stamps.last().unwrap() <= after);
    // `b` started after `a` ended, and its 200 ms show between its stamps.
    let at = |kind: &str, task: &str| {
        events
            .iter()
            .find(|e| e["event"] == kind && e["task"] == task)
            .unwrap()["ts_ms"]
            .as_u64()
            .unwrap()
    };
    assert!(at("task_finished", "b") - at("task_started", "b") >= 200);
    assert_eq!(events.last().unwrap()["event"], "build_finished");
    // The up-to-date fast path says the same.
    let again = p.orch(&["build", "--json"]).ok();
    let first: serde_json::Value =
        serde_json::from_str(again.stdout().lines().next().unwrap()).unwrap();
    assert_eq!(first["format_version"], 1);
    assert!(first["ts_ms"].as_u64().unwrap() >= after);
}

/// A project whose task runs until stopped, recording its pid; `later` waits behind it.
fn long_project() -> Project {
    Project::new(
        "[settings]\nkill_grace = \"2s\"\n\
         [tasks.slow]\nrun = \"echo $$ >> pids.log; while :; do sleep 0.1; done\"\n\
         [tasks.later]\nrun = \"echo later >> ran.log\"\ndeps = [\"slow\"]\n",
    )
}

/// Waits (bounded) for the child to exit.
fn exit_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("orch kept running after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After the reader is gone: the task is stopped, the state closed, nothing recorded as run.
fn assert_cancelled_cleanly(p: &Project) {
    let pid: i32 = p.read("pids.log").trim().parse().unwrap();
    wait_for("the task to be stopped", Duration::from_secs(5), || {
        !alive(pid)
    });
    assert!(!p.exists("ran.log"), "nothing new starts");
    let plan = p.read(".orchestrator/master_plan.md");
    assert!(plan.contains("Build Interrupted"), "{plan}");
    let journal = p.read(".orchestrator/journal.jsonl");
    assert!(
        journal.trim_end().ends_with(r#"{"event":"closed"}"#),
        "the state is saved and closed: {journal}"
    );
}

#[test]
fn a_closed_stdout_cancels_the_build_quietly_with_141() {
    let p = long_project();
    let mut child = p
        .command(&["build", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read until the task runs, then go away, as `head` does.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("task_started") {
            break;
        }
    }
    wait_for("the task to start", Duration::from_secs(20), || {
        p.exists("pids.log")
    });
    drop(lines);
    // No event is due (the task runs on): orch notices the closed pipe by itself.
    let status = exit_within(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(141));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(stderr, "", "quietly");
    assert_cancelled_cleanly(&p);
}

#[test]
fn a_closed_stderr_stops_the_plain_reporter_the_same_way() {
    let p = long_project();
    let mut child = p
        .command(&["build"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("start Agent-01") {
            break;
        }
    }
    wait_for("the task to start", Duration::from_secs(20), || {
        p.exists("pids.log")
    });
    drop(lines);
    let status = exit_within(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(141));
    assert_cancelled_cleanly(&p);
}

#[test]
fn commands_that_only_print_end_by_sigpipe() {
    // Enough tasks that `orch list` fills the pipe and blocks before it is closed.
    let mut orchfile = String::new();
    for i in 0..3000 {
        orchfile.push_str(&format!(
            "[tasks.task_with_a_long_name_{i}]\nrun = \"true\"\n"
        ));
    }
    let p = Project::new(&orchfile);
    let mut child = p
        .command(&["list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let status = exit_within(&mut child, Duration::from_secs(20));
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
