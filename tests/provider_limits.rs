//! A provider's limits with the real binary and the fake claude: a refused call (529
//! overloaded) cuts its provider's concurrency, and the retry is paced by the limiter
//! rather than a backoff; a usage limit reached until a time is waited out (no retry spent,
//! `waiting for quota until HH:MM` in `--json` and master_plan.md), and past
//! `max_quota_wait` stops the build cleanly with exit status 4 while shell tasks finish; a
//! SIGINT during the wait interrupts it at once.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fake_claude, wait_for, Project};
use serde_json::Value;

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn of<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event"] == kind).collect()
}

/// Agent tasks of one provider (the claude preset's, `anthropic`), in `mode`.
fn project(n: usize, env: &str, settings: &str, more: &str) -> Project {
    let mut text = format!(
        r#"
[settings]
{settings}

[agents.claude]
command = ["{fake}"]
env = {{ {env} }}
retries = 3
"#,
        fake = fake_claude().display()
    );
    for i in 0..n {
        text.push_str(&format!("\n[tasks.t{i}]\nprompt = \"Task {i}.\"\n"));
    }
    text.push_str(more);
    Project::new(&text)
}

#[test]
fn a_refused_call_cuts_its_providers_concurrency_and_the_retry_is_paced() {
    // Two tasks: the slow start's first two calls, both refused (more would be lone calls
    // at a limit of 1, which back off).
    let p = project(
        2,
        r#"FAKE_MODE = "overload:1", FAKE_SLEEP = "0.3""#,
        "retry_backoff = \"30s\"",
        "",
    );
    let run = p.orch(&["build", "--json", "-j", "4"]).ok();
    let ev = events(&run.stdout());
    let limits = of(&ev, "provider_limit");
    assert!(
        limits
            .iter()
            .any(|e| e["provider"] == "anthropic" && e["limit"].as_u64().unwrap() < 4),
        "a cut: {limits:?}"
    );
    assert!(limits.iter().all(|e| e["max"] == 4), "{limits:?}");
    // No retry waited the 30 s backoff (15 s at least, with its jitter): the limiter paced
    // them instead.
    let retried = of(&ev, "task_retried");
    assert!(!retried.is_empty());
    assert!(
        retried.iter().all(|e| e["delay_ms"] == 0),
        "paced, not backed off: {retried:?}"
    );
    let end = ev.last().unwrap();
    assert_eq!(end["ran"], 2, "{end}");
}

#[test]
fn a_usage_limit_is_waited_out_without_spending_a_retry() {
    let p = project(2, r#"FAKE_MODE = "quota:1", FAKE_RESET_IN = "2""#, "", "");
    let started = Instant::now();
    let run = p.orch(&["build", "--json", "-j", "2"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let ev = events(&run.stdout());
    let waiting = of(&ev, "provider_waiting");
    assert!(!waiting.is_empty(), "{ev:?}");
    let w = waiting[0];
    assert_eq!(w["provider"], "anthropic");
    assert_eq!(w["quota"], true);
    assert!(w["until"].as_str().unwrap().contains(':'), "{w}");
    assert!(
        w["tasks"].as_array().is_some_and(|t| !t.is_empty()),
        "its tasks are named: {w}"
    );
    assert!(!of(&ev, "provider_resumed").is_empty());
    assert!(of(&ev, "task_retried").is_empty(), "no retry spent");
    for f in of(&ev, "task_finished") {
        assert_eq!(f["retries"], 0, "{f}");
    }
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    let doc = p.read(".orchestrator/master_plan.md");
    assert!(doc.contains("waiting for quota until"), "{doc}");
}

#[test]
fn every_task_of_a_provider_waiting_for_quota_is_named_queued_ones_too() {
    // One place: the first task hits the limit, the other two wait to start.
    let p = project(3, r#"FAKE_MODE = "quota:1", FAKE_RESET_IN = "2""#, "", "");
    let run = p.orch(&["build", "--json", "-j", "1"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let ev = events(&run.stdout());
    let waiting = of(&ev, "provider_waiting");
    let tasks = waiting[0]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3, "all three wait: {:?}", waiting[0]);
    assert_eq!(ev.last().unwrap()["ran"], 3);
}

#[test]
fn a_reset_past_max_quota_wait_stops_the_build_with_exit_4_and_shell_tasks_finish() {
    let p = project(
        1,
        r#"FAKE_MODE = "quota:1", FAKE_RESET_IN = "7200""#,
        "max_quota_wait = \"10m\"",
        "\n[tasks.sh]\nrun = \"sleep 1; echo built\"\n\n[tasks.later]\nprompt = \"After.\"\ndeps = [\"t0\"]\n",
    );
    let run = p.orch(&["build", "--json", "-j", "2"]);
    assert_eq!(run.code(), 4, "stderr:\n{}", run.stderr());
    let ev = events(&run.stdout());
    let end = ev.last().unwrap();
    assert_eq!(end["event"], "build_finished");
    assert_eq!(end["stopped_by"], "quota", "{end}");
    assert!(end["quota_until_ms"].as_u64().is_some(), "{end}");
    assert!(
        of(&ev, "task_finished").iter().any(|e| e["task"] == "sh"),
        "the shell task ran: {ev:?}"
    );
    assert!(of(&ev, "task_failed").is_empty(), "stopped, not failed");
    assert!(
        of(&ev, "task_blocked").is_empty(),
        "its dependent is not blocked"
    );
    assert!(
        of(&ev, "notice").iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .contains("past max_quota_wait")),
        "said why: {ev:?}"
    );
    // The next build, its limit reset, does it.
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml").replace("quota:1", "ok"),
    );
    p.orch(&["build"]).success();
}

#[test]
fn sigint_during_a_quota_wait_interrupts_the_build_at_once() {
    let p = project(1, r#"FAKE_MODE = "quota:1", FAKE_RESET_IN = "600""#, "", "");
    let out = p.path("events.jsonl");
    let mut child = p
        .command(&["build", "--json"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the quota wait", Duration::from_secs(60), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("provider_waiting"))
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // The quota resets in 10 minutes: an orch still running 2 minutes after the signal is
    // waiting it out, not interrupted (killed, so that it does not outlive the test).
    let end = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("orch did not exit within 120 s of SIGINT: still waiting for the quota?");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    let ev = events(&std::fs::read_to_string(&out).unwrap());
    assert!(of(&ev, "task_failed").is_empty(), "{ev:?}");
    assert_eq!(ev.last().unwrap()["interrupted"], true);
}
