//! Agent fault injection: a fake agent CLI (tests/fixtures/fake-claude) hangs, crashes, prints
//! half a reply, invalid UTF-8, a huge result, `is_error` with exit 0, overload text, or
//! forgets its output file; each must end in the state the README documents. Also: paths
//! that leave the project root, and secrets from the environment kept out of everything orch
//! writes or prints.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// One agent task `T-01` run by the fake claude in `mode`, with `extra` lines for the task.
fn agent_project(mode: &str, extra: &str) -> Project {
    Project::new(&format!(
        r#"
[settings]
jobs = 2
retry_backoff = "10ms"
retry_backoff_max = "40ms"
kill_grace = "200ms"

[agents.claude]
preset = "claude"
command = ["{fake}"]
retries = 0

[tasks.T-01]
title = "Faulty"
prompt = "Do the thing."
env = {{ FAKE_MODE = "{mode}" }}
{extra}

[aggregate]
strategy = "concat"
"#,
        fake = fake_claude().display()
    ))
}

/// A build with `--json`: the run and its events.
fn build_json(p: &Project, args: &[&str]) -> (Run, Vec<Value>) {
    let mut all = vec!["build", "--json"];
    all.extend_from_slice(args);
    let run = p.orch(&all);
    let events = run.json_lines();
    (run, events)
}

fn events_named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// The task's row of the status table.
fn row(p: &Project, id: &str) -> String {
    let plan = p.read(".orchestrator/master_plan.md");
    plan.lines()
        .find(|l| l.starts_with(&format!("| {id} |")))
        .unwrap_or_else(|| panic!("no row for {id}:\n{plan}"))
        .to_string()
}

const RESULT: &str = ".orchestrator/results/agent-01-result.md";
const LOG: &str = ".orchestrator/logs/agent-01.log";

/// The state every failed agent task ends in: exit 1, a `task_failed` event whose reason
/// contains `reason`, ❌ in the table, no result, no success recorded, no final output.
#[track_caller]
fn assert_failed(p: &Project, run: &Run, events: &[Value], reason: &str) {
    assert_eq!(run.code(), 1, "stderr:\n{}", run.stderr());
    let failed = events_named(events, "task_failed");
    assert_eq!(failed.len(), 1, "{events:?}");
    let got = failed[0]["reason"].as_str().unwrap();
    assert!(got.contains(reason), "reason {got:?} lacks {reason:?}");
    assert!(row(p, "T-01").contains("| ❌ |"), "{}", row(p, "T-01"));
    assert!(!p.exists(RESULT), "a failed attempt leaves no result");
    assert!(!p.exists(".orchestrator/final_output.md"));
    let recorded = p.recorded_successes();
    assert!(
        !recorded.contains("T-01"),
        "no success recorded: {recorded:?}"
    );
    let finished = events_named(events, "build_finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["failed"], 1);
}

#[test]
fn hang_past_the_timeout_kills_the_group_and_fails() {
    // `hard_hang` ignores SIGTERM, so only the SIGKILL after kill_grace stops it.
    for mode in ["hang", "hard_hang"] {
        // Long enough for the fake agent to start its child and write the pid files.
        let p = agent_project(mode, "timeout = \"1s\"");
        let (run, events) = build_json(&p, &[]);
        assert_failed(&p, &run, &events, "timed out");
        let (parent, child) = (
            read_pid(&p, ".orchestrator/hang-parent.pid"),
            read_pid(&p, ".orchestrator/hang-child.pid"),
        );
        wait_for("the hung agent to die", Duration::from_secs(5), || {
            !alive(parent) && !alive(child)
        });
    }
}

#[test]
fn a_timeout_counts_as_an_attempt_and_is_retried_at_once() {
    let p = agent_project("hang", "timeout = \"600ms\"\nretries = 1");
    let (run, events) = build_json(&p, &[]);
    assert_failed(&p, &run, &events, "timed out");
    assert_eq!(
        p.lines(".orchestrator/calls.log").len(),
        2,
        "one try and one retry"
    );
    let retried = events_named(&events, "task_retried");
    assert_eq!(retried.len(), 1);
    assert_eq!(
        retried[0]["delay_ms"], 0,
        "not a transient error: no backoff"
    );
}

#[test]
fn crash_fails_and_keeps_the_output_in_the_log() {
    let p = agent_project("crash", "");
    let (run, events) = build_json(&p, &[]);
    assert_failed(&p, &run, &events, "exit code 3: fatal: model not available");
    let log = p.read(LOG);
    assert!(log.contains("exit code 3"), "{log}");
    assert!(log.contains("fatal: model not available"), "{log}");

    let p = agent_project("signal", "");
    let (run, events) = build_json(&p, &[]);
    assert_failed(&p, &run, &events, "killed by signal 11");
    assert!(p.read(LOG).contains("killed by signal 11"));
}

#[test]
fn non_transient_failures_are_retried_at_once_while_retries_last() {
    let p = agent_project("crash", "retries = 2");
    let (run, events) = build_json(&p, &[]);
    assert_failed(&p, &run, &events, "exit code 3");
    assert_eq!(p.lines(".orchestrator/calls.log").len(), 3);
    let delays: Vec<&Value> = events_named(&events, "task_retried")
        .iter()
        .map(|e| &e["delay_ms"])
        .collect();
    assert_eq!(delays, [0, 0]);
    assert!(row(&p, "T-01").ends_with("| 2 |"), "{}", row(&p, "T-01"));
}

#[test]
fn partial_json_with_exit_zero_is_a_failure_not_a_result() {
    for (mode, reason) in [
        (
            "partial",
            "expected JSON on stdout, got: {\"type\":\"result\",\"res",
        ),
        ("not_json", "expected JSON"),
        ("empty", "empty result"),
    ] {
        let p = agent_project(mode, "");
        let (run, events) = build_json(&p, &[]);
        assert_failed(&p, &run, &events, reason);
        assert!(p.exists(LOG), "{mode}: the failed attempt is logged");
    }
}

#[test]
fn is_error_with_exit_zero_fails_without_a_result_or_final_output() {
    let p = agent_project("is_error", "");
    let (run, events) = build_json(&p, &[]);
    assert_failed(&p, &run, &events, "is_error");
    assert!(p.read(LOG).contains("Execution error: tool failed"));
    assert_eq!(events_named(&events, "aggregated").len(), 0);
}

#[test]
fn invalid_utf8_output_becomes_replacement_characters() {
    // A JSON agent with raw invalid bytes inside its result string.
    let p = agent_project("binary", "");
    let (run, events) = build_json(&p, &[]);
    run.success();
    assert_eq!(events_named(&events, "task_finished").len(), 1);
    let bytes = std::fs::read(p.path(RESULT)).unwrap();
    let text = String::from_utf8(bytes).expect("the result file is valid UTF-8");
    assert_eq!(text, "caf\u{FFFD} \u{FFFD}\u{FFFD} end");
    assert!(p
        .read(".orchestrator/final_output.md")
        .contains("caf\u{FFFD}"));

    // A stdout agent, and a shell task, printing invalid bytes.
    let p = Project::new(
        r#"
[agents.raw]
command = ["sh", "-c", 'cat > /dev/null; printf "raw \377\376 bytes\n"']
result = "stdout"

[tasks.agent]
prompt = "x"
agent = "raw"

[tasks.shell]
run = 'printf "shell \200 bytes\n"'
"#,
    );
    p.orch(&["build"]).success();
    let agent = String::from_utf8(std::fs::read(p.path(RESULT)).unwrap()).unwrap();
    assert_eq!(agent, "raw \u{FFFD}\u{FFFD} bytes\n");
    let shell = std::fs::read(p.path(".orchestrator/results/agent-02-result.md")).unwrap();
    assert_eq!(String::from_utf8(shell).unwrap(), "shell \u{FFFD} bytes\n");
}

/// Runs `orch build --json` and samples its peak resident set (VmHWM, a high-water mark)
/// until it exits. Returns the run, its events and the peak in MiB.
fn build_json_measured(p: &Project) -> (Run, Vec<Value>, u64) {
    let child = p
        .command(&["build", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        // Until the process is reaped its status stays readable; after, the read fails.
        while let Ok(s) = std::fs::read_to_string(&status) {
            if let Some(v) = s.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                peak_kib = peak_kib.max(kib);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak_kib / 1024
    });
    let run = Run(child.wait_with_output().unwrap());
    let peak = sampler.join().unwrap();
    let events = run.json_lines();
    (run, events, peak)
}

#[test]
fn a_huge_result_is_written_and_passed_to_dependents_by_path() {
    const SIZE: usize = 16 << 20;
    let p = agent_project(
        &format!("huge:{SIZE}"),
        r#"
[tasks.T-02]
title = "Reads the huge result"
prompt = "Summarise {{ deps.T-01.result }}"
deps = ["T-01"]
env = { FAKE_MODE = "ok" }
"#,
    );
    let (run, events, peak_mib) = build_json_measured(&p);
    run.success();
    assert_eq!(events_named(&events, "task_finished").len(), 2);
    assert_eq!(
        std::fs::metadata(p.path(RESULT)).unwrap().len(),
        SIZE as u64
    );
    let prompt = p.read(".orchestrator/agent_tasks/agent-02.md");
    assert!(
        prompt.len() < 64 << 10,
        "not inlined: {} bytes",
        prompt.len()
    );
    assert!(
        prompt.contains(&format!(
            "(result is {SIZE} bytes; read it from `.orchestrator/results/agent-01-result.md`)"
        )),
        "{prompt}"
    );
    // Memory stays bounded: a few copies of the reply, not growth per dependent or event.
    // (A loose bound on purpose: 16 MiB of result took about 80 MiB in a debug build.)
    assert!(peak_mib < 256, "orch's peak RSS: {peak_mib} MiB");
    eprintln!("peak RSS with a 16 MiB result: {peak_mib} MiB");
}

#[test]
fn output_past_the_capture_cap_is_not_taken_as_a_whole_result() {
    // The executor keeps 64 MiB of stdout and drops the rest, so memory stays bounded however
    // much an agent prints; a stdout agent that prints more must not have the first 64 MiB
    // presented as its complete answer.
    let p = Project::new(
        r#"
[agents.raw]
command = ["sh", "-c", "cat > /dev/null; head -c 160000000 /dev/zero | tr '\\0' x"]
result = "stdout"

[tasks.big]
prompt = "x"
agent = "raw"
retries = 0
"#,
    );
    let (run, events, peak_mib) = build_json_measured(&p);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let failed = events_named(&events, "task_failed");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("capture limit (64 MiB)"), "{reason}");
    assert!(!p.exists(RESULT));
    // 160 MB printed; what orch holds is a few copies of the 64 MiB it kept, at most.
    assert!(peak_mib < 512, "orch's peak RSS: {peak_mib} MiB");
    eprintln!("peak RSS with 160 MB of output: {peak_mib} MiB");
}

#[test]
fn overload_is_retried_with_backoff_then_succeeds_or_fails_after_the_budget() {
    for mode in ["overload:2", "overload_json:2"] {
        let p = agent_project(mode, "retries = 2");
        let (run, events) = build_json(&p, &[]);
        run.success();
        assert_eq!(p.lines(".orchestrator/calls.log").len(), 3, "{mode}");
        let retried = events_named(&events, "task_retried");
        assert_eq!(retried.len(), 2, "{mode}");
        for r in &retried {
            let delay = r["delay_ms"].as_u64().unwrap();
            assert!(delay > 0 && delay <= 40, "{mode}: backoff {delay}ms");
        }
        assert_eq!(p.read(RESULT), "recovered after 2 overloads");
        assert!(row(&p, "T-01").contains("| ✅ |"));
        assert!(row(&p, "T-01").ends_with("| 2 |"), "{}", row(&p, "T-01"));
    }
    let p = agent_project("overload_json:9", "retries = 2");
    let (run, events) = build_json(&p, &[]);
    assert_failed(&p, &run, &events, "overloaded_error");
    assert_eq!(
        p.lines(".orchestrator/calls.log").len(),
        3,
        "1 try + 2 retries"
    );
}

#[test]
fn a_missing_declared_output_or_result_file_is_a_failure() {
    let p = agent_project("ok", "outputs = [\"report.md\"]");
    let (run, events) = build_json(&p, &[]);
    assert_failed(
        &p,
        &run,
        &events,
        "declared output missing after run: report.md",
    );

    // An agent whose result is a file it never writes.
    let p = Project::new(&format!(
        r#"
[agents.filer]
command = ["{fake}"]
result = "file:answer.md"

[tasks.T-01]
prompt = "x"
agent = "filer"
retries = 0
"#,
        fake = fake_claude().display()
    ));
    let (run, events) = build_json(&p, &[]);
    assert_failed(&p, &run, &events, "result file answer.md is unreadable");
}

#[test]
fn background_processes_an_agent_leaves_are_stopped() {
    let p = agent_project("leak", "");
    p.orch(&["build"]).success();
    let leaked = read_pid(&p, ".orchestrator/leak.pid");
    wait_for(
        "the leaked background process to die",
        Duration::from_secs(5),
        || !alive(leaked),
    );
}

#[test]
fn an_agent_that_never_reads_a_large_prompt_does_not_hang_orch() {
    // Far more than a pipe buffer: orch must notice the closed pipe, not block writing.
    let big = "word ".repeat(400_000);
    let p = agent_project("no_stdin", "");
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml")
            .replace("Do the thing.", &big)
            .replace("kill_grace", "inline_result_limit = 10\nkill_grace"),
    );
    p.orch(&["build"]).success();
    assert_eq!(p.read(RESULT), "did not read the prompt");
}

#[test]
fn a_missing_agent_binary_is_a_clear_failure_without_retries() {
    let p = Project::new(
        "[agents.ghost]\ncommand = [\"definitely-not-an-agent-cli\"]\nretries = 3\n[tasks.T-01]\nprompt = \"x\"\nagent = \"ghost\"\n",
    );
    let (run, events) = build_json(&p, &[]);
    assert_failed(
        &p,
        &run,
        &events,
        "command `definitely-not-an-agent-cli` not found",
    );
    assert!(events_named(&events, "task_retried").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Paths outside the project root

#[test]
fn paths_that_leave_the_root_are_refused_unless_allowed() {
    let cases = [
        (
            "outputs = [\"../outside.txt\"]",
            "output `../outside.txt` climbs out of the project root",
        ),
        (
            "outputs = [\"a/../../outside.txt\"]",
            "climbs out of the project root",
        ),
        (
            "inputs = [\"/etc/hostname\"]",
            "input `/etc/hostname` is absolute",
        ),
        ("inputs = [\"../*.txt\"]", "input `../*.txt` climbs out"),
    ];
    for (line, message) in cases {
        let orchfile = format!(
            "[tasks.t]\nrun = \"mkdir -p a; echo ran >> ../ran.log; echo x > ../outside.txt\"\n{line}\n"
        );
        let p = Project::new("");
        p.write("proj/Orchfile.toml", &orchfile);
        let run = Run(p.command(&["-C", "proj", "build"]).output().unwrap());
        assert_eq!(run.code(), 2, "{line}: {}", run.stderr());
        let err = run.stderr();
        assert!(err.contains(message), "{line}: {err}");
        assert!(
            err.contains("allow_outside_root"),
            "says how to allow it: {err}"
        );
        assert!(err.contains(line), "points at the line: {err}");
        assert!(!p.exists("ran.log") && !p.exists("proj/.orchestrator"));

        // Allowed explicitly: the same plan runs.
        p.write(
            "proj/Orchfile.toml",
            &format!("[settings]\nallow_outside_root = true\n{orchfile}"),
        );
        let run = Run(p.command(&["-C", "proj", "build"]).output().unwrap());
        run.success();
        assert_eq!(p.lines("ran.log"), ["ran"], "{line}");
        p.clear("ran.log");
    }
    let p = Project::new("[settings]\nstate_dir = \"../state\"\n[tasks.t]\nrun = \"true\"\n");
    assert_eq!(p.orch(&["build"]).code(), 2);
    let p = Project::new("[tasks.t]\nprompt_file = \"/etc/passwd\"\n");
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 2);
    assert!(run
        .stderr()
        .contains("prompt_file `/etc/passwd` is absolute"));
}

#[test]
fn allowed_absolute_inputs_are_hashed_where_they_are() {
    let outside = tempfile::tempdir().unwrap();
    let data = outside.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "v1").unwrap();
    let p = Project::new(&format!(
        "[settings]\nallow_outside_root = true\n[tasks.named]\nrun = \"echo named >> ran.log\"\ninputs = [\"{d}/a.txt\"]\n[tasks.glob]\nrun = \"echo glob >> ran.log\"\ninputs = [\"{d}/*.txt\"]\n",
        d = data.display()
    ));
    p.orch(&["build"]).success();
    assert_eq!(p.lines("ran.log").len(), 2);
    p.clear("ran.log");
    p.orch(&["build"]).success();
    assert!(p.lines("ran.log").is_empty(), "unchanged: up to date");
    std::fs::write(data.join("a.txt"), "v2").unwrap();
    p.orch(&["build"]).success();
    let mut ran = p.lines("ran.log");
    ran.sort();
    assert_eq!(ran, ["glob", "named"], "an edit outside the root is seen");
}

#[test]
fn a_master_plan_source_refuses_outside_paths_too() {
    let p = Project::new("");
    std::fs::remove_file(p.path("Orchfile.toml")).unwrap();
    p.write(
        ".orchestrator/master_plan.md",
        "# Master Plan\n\n## Task Status\n\n| Task ID | Task Description | Agent | Status | Priority | Deps | Start | End | Retries |\n|---|---|---|---|---|---|---|---|---|\n| t | T | Agent-01 | 🟡 | P2 | None | - | - | 0 |\n\n## Task Details\n\n### t: T\n\n- **Agent**: Agent-01 (shell)\n- **Output**: `../outside.txt`\n- **Run**: `echo x > ../outside.txt`\n",
    );
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr().contains("climbs out of the project root"),
        "{}",
        run.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets

const API_KEY: &str = "sk-ant-test-SECRET123456";
const TOKEN: &str = "ghp_TESTTOKEN987654321zz";

/// Every file under `.orchestrator/` orch writes about failures, with its text.
fn state_files(p: &Project) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![p.path(".orchestrator")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((
                    path.display().to_string(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
        }
    }
    out
}

/// Whether `text` holds the secret or any 8-character piece of it (a secret cut at the edge
/// of a quoted tail still leaks).
fn leaks(text: &str, secret: &str) -> Option<String> {
    let b = secret.as_bytes();
    b.windows(8)
        .map(|w| std::str::from_utf8(w).unwrap())
        .find(|w| text.contains(w))
        .map(String::from)
}

#[test]
fn secrets_from_the_environment_never_reach_logs_plans_events_or_the_terminal() {
    let p = Project::new(&format!(
        r#"
[settings]
jobs = 1
keep_going = true
retry_backoff = "10ms"

[agents.claude]
command = ["{fake}"]
retries = 1   # the retry line in the log and the task_retried event quote the output

[tasks.agent]
prompt = "x"
env = {{ FAKE_MODE = "secrets" }}

[tasks.shell]
run = "echo \"token $GITHUB_TOKEN\" >&2; echo \"key $ANTHROPIC_API_KEY\"; exit 4"

# The secret right where a 500-character tail of stderr starts: the cut must not show a piece.
[tasks.cut]
run = "printf '%s' \"$ANTHROPIC_API_KEY\" >&2; head -c 490 /dev/zero | tr '\\0' y >&2; exit 5"

# verify quotes the end of stdout.
[tasks.verified]
run = "true"
verify = "printf '%s' \"$GITHUB_TOKEN\"; head -c 290 /dev/zero | tr '\\0' z; exit 1"
"#,
        fake = fake_claude().display()
    ));
    for json in [false, true] {
        let mut cmd = p.command(if json {
            &["build", "--json"]
        } else {
            &["build"]
        });
        cmd.env("ANTHROPIC_API_KEY", API_KEY)
            .env("GITHUB_TOKEN", TOKEN);
        let run = Run(cmd.output().unwrap());
        assert_eq!(run.code(), 1, "{}", run.stderr());
        let mut places = vec![
            ("stdout".to_string(), run.stdout()),
            ("stderr".to_string(), run.stderr()),
        ];
        places.extend(state_files(&p));
        for (place, text) in &places {
            for secret in [API_KEY, TOKEN] {
                if let Some(piece) = leaks(text, secret) {
                    panic!("{place} shows `{piece}` of a secret:\n{text}");
                }
            }
        }
        // The failures are still reported, with the secret masked.
        let all: String = places.iter().map(|(_, t)| t.as_str()).collect();
        assert!(all.contains("[REDACTED]"), "masked, not dropped");
        assert!(
            p.read(".orchestrator/logs/agent-01.log")
                .contains("[REDACTED]"),
            "the agent's log keeps the output, masked"
        );
    }
}
