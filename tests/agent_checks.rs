//! What orch checks and keeps around an agent's run, with the fake claude of
//! tests/fixtures (fast, no model): the permission level's flags, undeclared writes (and
//! whose they are when tasks run side by side), refused tool calls, the cost of every
//! attempt, tool calls as activity, and sessions continued after a transient failure or an
//! interrupted build. The real CLIs do the same in tests/agents_conformance.rs.

mod common;

use common::{fake_claude, wait_for, Project, Run};
use serde_json::Value;
use std::time::Duration;

/// A project whose `claude` is the fake, with fast backoff, and these tasks.
fn project(tasks: &str) -> Project {
    Project::new(&format!(
        r#"
[settings]
retry_backoff = "10ms"
retry_backoff_max = "40ms"
kill_grace = "200ms"

[agents.claude]
preset = "claude"
command = ["{fake}"]
retries = 0

{tasks}
"#,
        fake = fake_claude().display()
    ))
}

fn build_json(p: &Project, args: &[&str]) -> (Run, Vec<Value>) {
    let mut all = vec!["build", "--json"];
    all.extend_from_slice(args);
    let run = p.orch(&all);
    let events = run.json_lines();
    (run, events)
}

/// `orch build --json` with one more variable in orch's environment.
fn build_json_with(p: &Project, var: (&str, &str)) -> (Run, Vec<Value>) {
    let run = Run(p
        .command(&["build", "--json"])
        .env(var.0, var.1)
        .output()
        .unwrap());
    let events = run.json_lines();
    (run, events)
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

fn reason(events: &[Value], task: &str) -> String {
    named(events, "task_failed")
        .into_iter()
        .find(|e| e["task"] == task)
        .unwrap_or_else(|| panic!("{task} did not fail: {events:#?}"))["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

const ARGS: &str = ".orchestrator/args.log";

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn each_permission_level_passes_its_flags_and_full_as_root_is_refused_up_front() {
    let p = project(
        r#"
[tasks.reads]
prompt = "Look."
[tasks.writes]
prompt = "Write it."
outputs = ["w.md"]
env = { FAKE_WRITE = "w.md" }
"#,
    );
    p.orch(&["build", "-j", "1"]).success();
    let args = p.lines(ARGS);
    assert!(
        args.contains(&"--permission-mode default".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--permission-mode acceptEdits".to_string()),
        "{args:?}"
    );

    let p = project("[tasks.all]\nprompt = \"Do anything.\"\npermissions = \"full\"\n");
    // This machine's own IS_SANDBOX (if any) is not the one under test.
    let run = Run(p
        .command(&["build"])
        .env_remove("IS_SANDBOX")
        .output()
        .unwrap());
    if running_as_root() {
        assert_eq!(run.code(), 2, "{}", run.stderr());
        let err = run.stderr();
        assert!(err.contains("task all cannot run"), "{err}");
        assert!(err.contains("IS_SANDBOX"), "{err}");
        assert!(err.contains("permissions = \"write\""), "{err}");
        assert!(!p.exists(".orchestrator/calls.log"), "nothing ran");
    }
    // In a sandbox the person vouches for, it runs with the bypass.
    let p = project(
        "[tasks.all]\nprompt = \"Do anything.\"\npermissions = \"full\"\nenv = { IS_SANDBOX = \"1\" }\n",
    );
    p.orch(&["build"]).success();
    assert_eq!(p.lines(ARGS), ["--permission-mode bypassPermissions"]);
}

#[test]
fn an_undeclared_write_fails_the_task_naming_the_file_unless_allowed() {
    let tasks = |allow: &str| {
        format!(
            r#"
[tasks.T-01]
prompt = "Write the report."
outputs = ["report.md"]
retries = 2
env = {{ FAKE_WRITE = "report.md", FAKE_SILENT_WRITE = "notes/stray.txt" }}
{allow}
"#
        )
    };
    let p = project(&tasks(""));
    let (run, events) = build_json(&p, &[]);
    assert_eq!(run.code(), 1);
    let why = reason(&events, "T-01");
    assert!(
        why.contains("undeclared write: notes/stray.txt (created)"),
        "{why}"
    );
    assert_eq!(
        p.lines(".orchestrator/calls.log").len(),
        1,
        "an undeclared write is not retried"
    );
    let log = p.read(".orchestrator/logs/agent-01.log");
    assert!(log.contains("undeclared write"), "{log}");
    assert!(log.contains("\"result\""), "the whole reply is kept: {log}");

    for allow in [
        "allow_undeclared_writes = [\"notes/**\"]",
        "allow_undeclared_writes = true",
    ] {
        let p = project(&tasks(allow));
        p.orch(&["build"]).success();
    }
    // Shell tasks write what they like.
    let p = project("[tasks.s]\nrun = \"echo x > scratch.txt\"\n");
    p.orch(&["build"]).success();
}

#[test]
fn side_by_side_a_write_is_whoever_names_it_and_otherwise_only_a_notice() {
    let p = project(
        r#"
[tasks.A]
prompt = "Write a."
outputs = ["a.md"]
env = { FAKE_WRITE = "a.md", FAKE_SLEEP = "0.6" }
[tasks.B]
prompt = "Write b."
outputs = ["b.md"]
env = { FAKE_WRITE = "b.md", FAKE_SILENT_WRITE = "quiet.txt", FAKE_SLEEP = "0.3" }
"#,
    );
    let (run, events) = build_json(&p, &["-j", "2"]);
    run.success();
    let notices: Vec<&str> = named(&events, "notice")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("quiet.txt (created)") && n.contains("not attributed")),
        "{notices:?}"
    );

    // B's own tool call names the stray file: B fails, A (which ran beside it) does not.
    let p = project(
        r#"
[tasks.A]
prompt = "Write a."
outputs = ["a.md"]
env = { FAKE_WRITE = "a.md", FAKE_SLEEP = "0.6" }
[tasks.B]
prompt = "Write b."
outputs = ["b.md"]
env = { FAKE_WRITE = "b.md stray.md", FAKE_SLEEP = "0.3" }
"#,
    );
    let (run, events) = build_json(&p, &["-j", "2", "-k"]);
    assert_eq!(run.code(), 1);
    assert!(reason(&events, "B").contains("undeclared write: stray.md (created)"));
    assert!(named(&events, "task_finished")
        .iter()
        .any(|e| e["task"] == "A"));
}

#[test]
fn a_refused_tool_call_fails_with_the_fix() {
    let p =
        project("[tasks.T-01]\nprompt = \"Try.\"\nretries = 2\nenv = { FAKE_MODE = \"deny\" }\n");
    let (run, events) = build_json(&p, &[]);
    assert_eq!(run.code(), 1);
    let why = reason(&events, "T-01");
    assert!(
        why.contains("permission denied at permissions = \"read\": Write denied.txt"),
        "{why}"
    );
    assert!(why.contains("set permissions = \"write\""), "{why}");
    assert_eq!(p.lines(".orchestrator/calls.log").len(), 1, "not retried");
    let failed = &named(&events, "task_failed")[0];
    assert_eq!(failed["cost_usd"], 0.001, "a refused run still cost money");
}

#[test]
fn every_attempt_is_paid_for_and_a_transient_failure_resumes_the_session() {
    let p = project(
        "[tasks.T-01]\nprompt = \"Count.\"\nretries = 2\nenv = { FAKE_MODE = \"overload_json:2\" }\n",
    );
    let (run, events) = build_json(&p, &[]);
    run.success();
    let retried = named(&events, "task_retried");
    assert_eq!(retried.len(), 2);
    assert_eq!(
        retried[0]["cost_usd"], 0.001,
        "the failed attempt's own cost"
    );
    let done = &named(&events, "task_finished")[0];
    let cost = done["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - 0.0041).abs() < 1e-9,
        "two failures and the success: {cost}"
    );
    let finished = &named(&events, "build_finished")[0];
    assert!((finished["cost_usd"].as_f64().unwrap() - 0.0041).abs() < 1e-9);
    assert_eq!(finished["input_tokens"], 100);
    // The second and third attempts continue the first one's session, with a short prompt.
    let args = p.lines(ARGS);
    assert_eq!(args.len(), 3);
    assert!(!args[0].contains("--resume"), "{args:?}");
    assert!(args[1].ends_with("--resume s-overload"), "{args:?}");
    let prompts = p.lines(".orchestrator/prompts.log");
    assert!(prompts[0].starts_with("# Task T-01"), "{prompts:?}");
    assert!(
        prompts[1].starts_with("The previous attempt at this task stopped"),
        "{prompts:?}"
    );
    assert_eq!(done["session_id"], "fake");
}

#[test]
fn tool_calls_stream_as_activity_into_json_and_the_execution_log() {
    let p = project(
        "[tasks.T-01]\nprompt = \"Write.\"\noutputs = [\"r/one.md\"]\nenv = { FAKE_WRITE = \"r/one.md\" }\n",
    );
    let (run, events) = build_json(&p, &[]);
    run.success();
    let activity = named(&events, "task_activity");
    assert_eq!(activity.len(), 1, "{events:#?}");
    assert_eq!(activity[0]["task"], "T-01");
    assert_eq!(activity[0]["tool"], "Write");
    assert_eq!(activity[0]["detail"], "r/one.md");
    assert_eq!(activity[0]["text"], "Write r/one.md");
    let plan = p.read(".orchestrator/master_plan.md");
    assert!(
        plan.contains("Agent-01 Activity\n- T-01: Write r/one.md"),
        "{plan}"
    );
}

#[test]
fn an_interrupted_build_is_continued_in_the_same_session_and_status_shows_it() {
    let p = project("[tasks.T-01]\nprompt = \"Think long.\"\nenv = { FAKE_MODE = \"session\" }\n");
    // How long the fake thinks comes from orch's own environment, which is not declared and
    // so not part of the task: changing it leaves the task as it was.
    let mut child = p
        .command(&["build"])
        .env("FAKE_SESSION_SLEEP", "30")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The session is journaled as soon as the CLI names it, before its run ends.
    wait_for(
        "the session to be recorded",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(p.path(".orchestrator/journal.jsonl"))
                .is_ok_and(|j| j.contains("\"s-1\""))
        },
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let status = p.orch(&["status"]).ok().stdout();
    assert!(
        status.contains("T-01: claude session s-1 (the next build continues it)"),
        "{status}"
    );
    let json: Value = serde_json::from_str(&p.orch(&["status", "--json"]).ok().stdout()).unwrap();
    assert_eq!(json[0]["session"]["id"], "s-1");
    assert_eq!(json[0]["session"]["resumable"], true);

    // The task is unchanged, so its session goes on.
    let (run, events) = build_json_with(&p, ("FAKE_SESSION_SLEEP", "0"));
    run.success();
    let args = p.lines(ARGS);
    assert!(args[1].ends_with("--resume s-1"), "{args:?}");
    let prompts = p.lines(".orchestrator/prompts.log");
    assert!(
        prompts[1].contains("(the build running it was interrupted)"),
        "{prompts:?}"
    );
    assert_eq!(named(&events, "task_finished")[0]["session_id"], "s-1");
    let explained = p.orch(&["explain", "T-01"]).ok().stdout();
    assert!(explained.contains("session: s-1 (claude)"), "{explained}");
}

#[test]
fn a_session_the_cli_no_longer_has_is_started_afresh_once() {
    // The fake's behaviour comes from orch's own environment, not declared: the task stays
    // the same from one build to the next.
    let p = project("[tasks.T-01]\nprompt = \"Go.\"\n");
    let first = p
        .command(&["build"])
        .env("FAKE_MODE", "overload_json:1")
        .output()
        .unwrap();
    assert_eq!(first.status.code(), Some(1));
    // The next build resumes s-overload; this CLI has forgotten it.
    let (run, events) = build_json_with(&p, ("FAKE_MODE", "forget"));
    run.success();
    let args = p.lines(ARGS);
    assert_eq!(args.len(), 3, "{args:?}");
    assert!(args[1].ends_with("--resume s-overload"));
    assert!(!args[2].contains("--resume"));
    assert!(named(&events, "notice").iter().any(|n| n["message"]
        .as_str()
        .unwrap()
        .contains("starting a new session")));
}
