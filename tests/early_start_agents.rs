//! The real `claude`, `codex` and `gemini` CLIs started before their turn (src/engine/
//! early_start.rs): with its provider at a learnt limit of 1, orch starts a second task's CLI
//! while the first one's call runs and holds the last byte of its prompt (and EOF) until the
//! first call ends. The loopback server answers each call only after 7 s, longer than any
//! CLI's patience with a silent stdin (gemini 0.5 s, claude 3 s), so the second CLI sits at
//! its stdin with all but the last byte for that long; it must then send its whole prompt.
//!
//! Each CLI runs through a PATH shim that notes when it was spawned, then execs the real
//! binary (the preset still runs `claude`/`codex`/`gemini` by name), so the test sees that
//! the second CLI existed while the first call ran. Every child is bounded.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::agents::*;
use common::Project;
use serde_json::Value;

/// Two calls of 7 s in a row plus the CLIs' start on a loaded machine.
const LIMIT: Duration = Duration::from_secs(300);

/// How long the server holds each call: longer than every CLI's stdin idle timeout.
const CALL_SECS: u32 = 7;

fn name(cli: Cli) -> &'static str {
    match cli {
        Cli::Claude => "claude",
        Cli::Codex => "codex",
        Cli::Gemini => "gemini",
    }
}

fn provider(cli: Cli) -> &'static str {
    match cli {
        Cli::Claude => "anthropic",
        Cli::Codex => "openai",
        Cli::Gemini => "google",
    }
}

/// A model call the server answered: when it came, when it was answered, the prompt.
#[derive(Debug)]
struct Call {
    arrived: f64,
    answered: f64,
    prompt: String,
}

/// One build of two tasks of `cli` at a limit of 1 (with `start_early` set in its agent
/// table when given): both succeed, their calls do not overlap and each carries its task file
/// whole. Returns when the second CLI was spawned and the calls.
fn two_tasks_at_a_limit_of_1(cli: Cli, start_early: Option<bool>) -> (f64, Vec<Call>) {
    let n = name(cli);
    let server = ModelServer::start();
    let mut env = AgentEnv::new(cli, &server);
    if cli == Cli::Gemini {
        // See agents_conformance.rs: side-by-side gemini runs delete each other's sessions.
        env.gemini_settings(r#"{"general": {"sessionRetention": {"enabled": false}}}"#);
    }
    let shims = tempfile::tempdir().unwrap();
    let spawn_log = shims.path().join("spawned.log");
    let shim = shims.path().join(n);
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\necho \"$(date +%s.%N) $ORCH_TASK_ID\" >> '{}'\nexec '{}' \"$@\"\n",
            spawn_log.display(),
            env.bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}:{}",
        shims.path().display(),
        env.bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.set("PATH", &path);

    // Each prompt ends with a line of its own; the task file (what goes on stdin) ends with
    // it and a newline, the byte held back.
    let early = start_early.map_or(String::new(), |e| format!("start_early = {e}"));
    let p = Project::new(&format!(
        r#"
[settings]
jobs = 4
default_agent = "{n}"

[agents.{n}]
retries = 0
timeout = "120s"
{early}

[tasks.first]
prompt = """
MOCK: sleep {CALL_SECS}
The first task's prompt ends here: 1st~"""

[tasks.second]
prompt = """
MOCK: sleep {CALL_SECS}
The second task's prompt ends here: 2nd~"""
"#
    ));
    // The provider's limit as a build within the hour left it: 1 call at a time.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    p.write(
        ".orchestrator/costs.json",
        &serde_json::json!({"providers": {provider(cli): {"limit": 1, "at": now}}}).to_string(),
    );

    let mut cmd = Command::new(common::orch_bin());
    env.apply(&mut cmd);
    cmd.args(["build", "--json"])
        .current_dir(p.dir.path())
        .stdin(std::process::Stdio::null());
    let done = run_bounded(cmd, LIMIT);
    assert!(!done.timed_out, "{n}: orch timed out: {done:#?}");
    server.assert_no_escapes();
    let events: Vec<Value> = done
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(done.code, 0, "{n}: both tasks succeed:\n{done:#?}");

    // The calls that play the scenario (side calls, e.g. gemini's router, left out).
    let directive = format!("MOCK: sleep {CALL_SECS}");
    let mut calls: Vec<Call> = server
        .requests_for(&directive)
        .iter()
        .map(|r| Call {
            arrived: r["ts"].as_f64().unwrap(),
            answered: r["done_ts"].as_f64().unwrap(),
            prompt: r["prompt_text"].as_str().unwrap().to_string(),
        })
        .collect();
    calls.sort_by(|a, b| a.arrived.total_cmp(&b.arrived));
    assert_eq!(calls.len(), 2, "{n}: one call a task: {calls:#?}");
    let (earlier, later) = (&calls[0], &calls[1]);
    assert!(
        later.arrived >= earlier.answered,
        "{n}: the limit of 1 held the second call until the first was answered: {calls:#?}"
    );

    let spawned: Vec<f64> = std::fs::read_to_string(&spawn_log)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(spawned.len(), 2, "{n}: one CLI a task: {spawned:?}");
    let last_spawn = spawned.iter().copied().fold(f64::MIN, f64::max);

    // Each call carried its task's whole task file, last line included.
    for task in ["first", "second"] {
        let started = events
            .iter()
            .find(|e| e["event"] == "task_started" && e["task"] == task)
            .unwrap_or_else(|| panic!("{n}: no task_started for {task}"));
        let file = p.read(&format!(
            ".orchestrator/agent_tasks/{}.md",
            started["agent_id"].as_str().unwrap().to_lowercase()
        ));
        let ending = if task == "first" { "1st~\n" } else { "2nd~\n" };
        assert!(file.ends_with(ending), "{n}: {file:?}");
        assert!(
            calls.iter().any(|c| c.prompt == file),
            "{n}: the server got {task}'s whole prompt {file:?}; it got {calls:#?}"
        );
    }
    (last_spawn, calls)
}

/// Both CLIs were spawned before the first call was answered: the second waited at its
/// stdin while the first call ran, and then sent its whole prompt.
fn check_started_early_and_got_the_whole_prompt(cli: Cli) {
    let (last_spawn, calls) = two_tasks_at_a_limit_of_1(cli, None);
    assert!(
        last_spawn < calls[0].answered,
        "{cli:?}: the second CLI started before the first call ended: last spawn \
         {last_spawn}, calls {calls:#?}"
    );
    eprintln!(
        "{cli:?}: the second CLI waited {:.1} s from its spawn to its call",
        calls[1].arrived - last_spawn
    );
}

#[test]
fn claude_started_early_waits_at_stdin_and_sends_its_whole_prompt() {
    check_started_early_and_got_the_whole_prompt(Cli::Claude);
}

#[test]
fn codex_started_early_waits_at_stdin_and_sends_its_whole_prompt() {
    check_started_early_and_got_the_whole_prompt(Cli::Codex);
}

#[test]
fn gemini_started_early_waits_at_stdin_and_sends_its_whole_prompt() {
    check_started_early_and_got_the_whole_prompt(Cli::Gemini);
}

#[test]
fn start_early_false_spawns_the_cli_once_its_place_is_free() {
    let (last_spawn, calls) = two_tasks_at_a_limit_of_1(Cli::Claude, Some(false));
    assert!(
        last_spawn >= calls[0].answered,
        "the second CLI started only after the first call ended: last spawn {last_spawn}, \
         calls {calls:#?}"
    );
}
