//! orch itself with the real `claude`, `codex` and `gemini` CLIs (installed at pinned versions
//! by tests/support/agents/install.sh) against the loopback model server: for each CLI one
//! build of many tasks side by side (a plain answer, a file written at `write` and refused at
//! `read`, an undeclared write, 500/429/529 retried with backoff in the same session, a
//! session resumed mid-conversation, a timeout, cost and tokens per attempt and in the totals,
//! tool calls streamed as activity), `orch plan`, each level's flags, the turn limits, an
//! interrupted build continued, and examples/code-review end to end with claude.
//!
//! One server serves every case of this binary (each case's directives carry their own key,
//! so their counters never meet); every CLI gets its own HOME; every child is bounded.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::agents::*;
use common::Project;
use serde_json::Value;

/// A whole build: CLIs start in 1-3 s, the slowest case waits out a 4 s timeout; a loaded
/// 2-core machine running the three CLIs' builds side by side has taken over 240 s.
const LIMIT: Duration = Duration::from_secs(480);

fn server() -> &'static ModelServer {
    // Never dropped: it exits when this process does and its stdin closes.
    static SERVER: OnceLock<ModelServer> = OnceLock::new();
    SERVER.get_or_init(ModelServer::start)
}

fn name(cli: Cli) -> &'static str {
    match cli {
        Cli::Claude => "claude",
        Cli::Codex => "codex",
        Cli::Gemini => "gemini",
    }
}

/// The CLI's environment; gemini told to keep the sessions of its neighbours (a person's own
/// settings: orch does not edit settings.json). gemini 0.61 starts by deleting every session
/// file of the project that holds no message yet, which deletes a neighbour's just-opened
/// session when runs start side by side; its later `--resume` then finds nothing (exit 42) and
/// orch starts afresh. gemini's retries are left to orch's system-defaults file, which gemini
/// reads only from root (src/agent/gemini_defaults.rs); run by another user, the test sets
/// `maxAttempts` as the README tells a person to.
fn env_for(cli: Cli) -> AgentEnv {
    let env = AgentEnv::new(cli, server());
    if cli == Cli::Gemini {
        env.gemini_settings(r#"{"general": {"sessionRetention": {"enabled": false}}}"#);
        if !running_as_root() {
            env.gemini_settings(r#"{"general": {"maxAttempts": 1}}"#);
        }
    }
    env
}

struct Ran {
    done: Finished,
    events: Vec<Value>,
}

impl Ran {
    /// One task's events, one a line, for a failure's message.
    fn events_of(&self, task: &str) -> String {
        self.events
            .iter()
            .filter(|e| e["task"] == task)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn named(&self, event: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == event).collect()
    }

    /// The last event `event` of `task`.
    #[track_caller]
    fn of(&self, event: &str, task: &str) -> &Value {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == event && e["task"] == task)
            .unwrap_or_else(|| {
                panic!(
                    "no {event} for {task}:\n{}\nits events:\n{}",
                    self.done.stderr,
                    self.events_of(task)
                )
            })
    }

    fn finished(&self) -> &Value {
        self.named("build_finished")
            .last()
            .copied()
            .unwrap_or_else(|| panic!("no build_finished:\n{:#?}", self.done))
    }
}

/// `orch <args>` in `p` with the CLI's environment, bounded.
fn orch(p: &Project, env: &AgentEnv, args: &[&str]) -> Finished {
    let mut cmd = Command::new(common::orch_bin());
    env.apply(&mut cmd);
    cmd.args(args)
        .current_dir(p.dir.path())
        .stdin(std::process::Stdio::null());
    let done = run_bounded(cmd, LIMIT);
    assert!(!done.timed_out, "orch {args:?} timed out: {done:#?}");
    done
}

fn build(p: &Project, env: &AgentEnv, extra: &[&str]) -> Ran {
    let mut args = vec!["build", "--json"];
    args.extend_from_slice(extra);
    let done = orch(p, env, &args);
    let events = done
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    server().assert_no_escapes();
    Ran { done, events }
}

/// The main build of one CLI: every case a task, side by side.
fn main_build(cli: Cli) -> (Project, Ran) {
    let n = name(cli);
    let full = if cli == Cli::Claude {
        // claude as root refuses its full level; that has its own test.
        String::new()
    } else {
        format!(
            r#"
[tasks.full]
prompt = "MOCK: bash python3 -c \"open('full.txt', 'w').write('{n}')\""
outputs = ["full.txt"]
permissions = "full"
"#
        )
    };
    let p = Project::new(&format!(
        r#"
[settings]
jobs = 10
default_agent = "{n}"
retry_backoff = "300ms"
retry_backoff_max = "1s"
kill_grace = "1s"

[agents.{n}]
retries = 2
timeout = "120s"

[tasks.plain]
prompt = "Say hello."

[tasks.write]
prompt = "MOCK: write out/written.txt written by {n}"
outputs = ["out/written.txt"]

[tasks.refused]
prompt = "MOCK: write out/refused.txt not allowed"
permissions = "read"

[tasks.undeclared]
prompt = """
MOCK: write out/declared.txt declared
MOCK: write out/stray.txt stray
"""
outputs = ["out/declared.txt"]

[tasks.s500]
prompt = "MOCK: status 500 times=1 key={n}-500"

[tasks.s429]
prompt = "MOCK: status 429 times=1 key={n}-429"

[tasks.s529]
prompt = "MOCK: status 529 times=1 key={n}-529"

[tasks.resumed]
prompt = """
MOCK: write out/resumed.txt resumed
MOCK: status 500 times=1 after=1 key={n}-after
"""
outputs = ["out/resumed.txt"]

[tasks.slow]
prompt = "MOCK: sleep 30 key={n}-sleep"
timeout = "4s"
retries = 0
{full}"#
    ));
    let env = env_for(cli);
    let ran = build(&p, &env, &["-k"]);
    (p, ran)
}

/// What each case of the main build must show, for every CLI.
fn check_main_build(cli: Cli, p: &Project, ran: &Ran) {
    let n = name(cli);
    let why = |task: &str| {
        ran.of("task_failed", task)["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        ran.done.code, 1,
        "{n}: the failing cases fail:\n{}",
        ran.done.stderr
    );

    // A plain answer, with its usage and session.
    let plain = ran.of("task_finished", "plain");
    let result = p.read(".orchestrator/results/agent-01-result.md");
    assert!(
        result.starts_with("MOCK answer to: # Task plain"),
        "{n}: {result}"
    );
    let (input, output) = match cli {
        // gemini's model router makes a side call of its own, paid for too.
        Cli::Gemini => (2 * 36666, 2 * 44),
        _ => (36666, 44),
    };
    assert_eq!(plain["input_tokens"], input, "{n}: {plain}");
    assert_eq!(plain["output_tokens"], output, "{n}: {plain}");
    assert_eq!(
        plain["cache_read_tokens"],
        input / 36666 * 33333,
        "{n}: {plain}"
    );
    match cli {
        Cli::Claude => {
            assert_eq!(plain["cost_usd"], 0.0231006, "{plain}");
            assert_eq!(plain["cache_write_tokens"], 2222);
        }
        Cli::Codex => assert_eq!(plain["cache_write_tokens"], 2222),
        Cli::Gemini => assert!(plain["cost_usd"].is_null()),
    }
    assert!(
        plain["session_id"].as_str().is_some_and(|s| s.len() >= 32),
        "{plain}"
    );

    // Written at `write`, streamed as activity.
    assert!(p
        .read("out/written.txt")
        .contains(&format!("written by {n}")));
    let activity: Vec<&str> = ran
        .named("task_activity")
        .iter()
        .filter(|e| e["task"] == "write")
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        activity.contains(&"Write out/written.txt"),
        "{n}: {activity:?}"
    );
    let log = p.read(".orchestrator/master_plan.md");
    assert!(log.contains("Write out/written.txt"), "{n}: execution log");

    // Refused at `read`, named, with the fix; not retried.
    let refused = why("refused");
    assert!(
        refused.contains("permission denied at permissions = \"read\""),
        "{n}: {refused}"
    );
    assert!(!p.exists("out/refused.txt"));
    assert_eq!(ran.of("task_failed", "refused")["retries"], 0);

    // The undeclared write.
    let stray = why("undeclared");
    assert!(
        stray.contains("undeclared write: out/stray.txt (created)"),
        "{n}: {stray}\nits events:\n{}",
        ran.events_of("undeclared")
    );

    // 500, 429 and 529: retried, the CLI's own message shown, then done in the same
    // session (gemini keeps no session whose first request failed: it starts afresh). A
    // 500 backs off; a 429 or 529 cuts the provider's concurrency (the tasks run side by
    // side), and the retry is then paced by its limiter instead, or backs off when the cut
    // left it a place.
    for (task, status) in [("s500", 500), ("s429", 429), ("s529", 529)] {
        let retried = ran.of("task_retried", task);
        let reason = retried["reason"].as_str().unwrap();
        assert!(reason.contains("transient error"), "{n} {task}: {reason}");
        assert!(
            !reason.contains("\"total_cost_usd\""),
            "{n} {task}: the message, not the JSON's tail: {reason}"
        );
        match cli {
            Cli::Claude => assert!(reason.contains(&format!("HTTP {status}")), "{reason}"),
            Cli::Codex if status == 500 => assert!(reason.contains("high demand"), "{reason}"),
            _ => assert!(reason.contains(&status.to_string()), "{n}: {reason}"),
        }
        let cut = ran.named("provider_limit").iter().any(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("refused"))
        });
        assert!(
            retried["delay_ms"].as_u64().unwrap() > 0 || (status != 500 && cut),
            "backoff, or paced after a cut: {retried}"
        );
        let done = ran.of("task_finished", task);
        assert_eq!(done["retries"], 1, "{n} {task}: {done}");
        let line = format!("MOCK: status {status} times=1 key={n}-{status}");
        let calls = server().requests_for(&line);
        assert_eq!(
            calls.len(),
            2,
            "{n} {task}: the CLI did not retry itself: {calls:#?}"
        );
        let expected_prompts = if cli == Cli::Gemini { 1 } else { 2 };
        assert_eq!(
            calls[1]["prompts"], expected_prompts,
            "{n} {task}: the retry continues the session: {calls:#?}"
        );
    }

    // A session resumed mid-conversation: the history (the tool call) is sent again.
    let done = ran.of("task_finished", "resumed");
    assert_eq!(done["retries"], 1, "{n}: {done}");
    let resumed = server().requests_for("MOCK: write out/resumed.txt resumed");
    assert!(
        resumed.iter().any(|r| r["prompts"] == 2),
        "{n}: the resumed session's history: {resumed:#?}\nits events:\n{}",
        ran.events_of("resumed")
    );

    // The timeout.
    assert!(why("slow").contains("timed out"), "{n}: {}", why("slow"));

    if cli != Cli::Claude {
        // `full` runs any command.
        assert_eq!(p.read("full.txt"), n);
    }

    // Money: every attempt, failed ones too, in the totals.
    let finished = ran.finished();
    let sum = |field: &str| -> u64 {
        ran.named("task_finished")
            .iter()
            .chain(ran.named("task_failed").iter())
            .map(|e| e[field].as_u64().unwrap_or(0))
            .sum()
    };
    for field in ["input_tokens", "cache_read_tokens", "output_tokens"] {
        assert_eq!(finished[field], sum(field), "{n}: {field} of {finished}");
    }
    assert!(finished["input_tokens"].as_u64().unwrap() > 9 * 36666);
    if cli == Cli::Claude {
        let cost: f64 = ran
            .named("task_finished")
            .iter()
            .chain(ran.named("task_failed").iter())
            .map(|e| e["cost_usd"].as_f64().unwrap_or(0.0))
            .sum();
        let total = finished["cost_usd"].as_f64().unwrap();
        assert!(
            (total - cost).abs() < 1e-9 && total > 0.1,
            "{total} vs {cost}"
        );
    }
}

/// `orch plan` with the CLI: the mock model answers the plan given in the request.
fn check_plan(cli: Cli) {
    let n = name(cli);
    let p = Project::empty();
    p.write("src/app.ts", "export const x = 1;\n");
    let plan = r#"{"tasks": [{"id": "T-01", "title": "Read", "prompt": "Read src/app.ts.", "inputs": ["src/*.ts"], "outputs": ["notes.md"], "priority": "P0", "estimate": "1m"}, {"id": "T-02", "title": "Sum up", "prompt": "Sum up the notes.", "deps": ["T-01"], "verify": "true", "priority": "P1", "estimate": "1m"}]}"#;
    let request = format!("Review the app.\nMOCK: answer {plan}");
    let env = env_for(cli);
    let done = orch(&p, &env, &["plan", "--agent", n, &request]);
    assert_eq!(done.code, 0, "{n}: {done:#?}");
    let doc = p.read(".orchestrator/master_plan.md");
    assert!(doc.contains("| T-01 | Read |"), "{n}: {doc}");
    assert!(doc.contains("| T-02 | Sum up |"), "{n}: {doc}");
    server().assert_no_escapes();
}

#[test]
fn claude_through_orch() {
    let (p, ran) = main_build(Cli::Claude);
    check_main_build(Cli::Claude, &p, &ran);
    check_plan(Cli::Claude);
}

#[test]
fn codex_through_orch() {
    let (p, ran) = main_build(Cli::Codex);
    check_main_build(Cli::Codex, &p, &ran);
    check_plan(Cli::Codex);
}

#[test]
fn gemini_through_orch() {
    let (p, ran) = main_build(Cli::Gemini);
    check_main_build(Cli::Gemini, &p, &ran);
    // A session whose first request failed is one gemini cannot resume: started afresh.
    assert!(ran.named("notice").iter().any(|e| e["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("s500: cannot resume the session")
            && m.ends_with("starting a new session"))));
    check_plan(Cli::Gemini);
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn claude_full_level_is_refused_as_root_before_anything_runs_and_runs_in_a_sandbox() {
    let tasks = |env: &str| {
        format!(
            r#"
[tasks.full]
prompt = "MOCK: bash python3 -c \"open('full.txt', 'w').write('claude')\""
outputs = ["full.txt"]
permissions = "full"
{env}
"#
        )
    };
    let p = Project::new(&tasks(""));
    let env = env_for(Cli::Claude);
    let done = orch(&p, &env, &["build"]);
    if running_as_root() {
        assert_eq!(done.code, 2, "{done:#?}");
        assert!(
            done.stderr.contains("task full cannot run"),
            "{}",
            done.stderr
        );
        assert!(done.stderr.contains("IS_SANDBOX"), "{}", done.stderr);
        assert!(server()
            .requests()
            .iter()
            .all(|r| !r["prompt"].as_str().unwrap_or("").contains("task full")));
    } else {
        assert_eq!(done.code, 0, "{done:#?}");
    }
    // With the sandbox variable claude accepts, the bypass runs any command.
    let p = Project::new(&tasks("env = { IS_SANDBOX = \"1\" }"));
    let done = orch(&p, &env, &["build"]);
    assert_eq!(done.code, 0, "{done:#?}");
    assert_eq!(p.read("full.txt"), "claude");
}

#[test]
fn turn_limits_end_the_task_as_such() {
    // claude: --max-turns through `args`.
    let p = Project::new(
        r#"
[agents.claude]
args = ["--max-turns", "2"]
retries = 2
[tasks.chatty]
prompt = "MOCK: turns 5"
outputs = []
permissions = "write"
"#,
    );
    let ran = build(&p, &env_for(Cli::Claude), &[]);
    let failed = ran.of("task_failed", "chatty");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("stopped at its turn limit"), "{reason}");
    assert!(
        reason.contains("Reached maximum number of turns (2)"),
        "{reason}"
    );
    assert_eq!(failed["retries"], 0, "a turn limit is not retried");
    assert!(failed["cost_usd"].as_f64().unwrap() > 0.0, "{failed}");

    // gemini: the person's maxSessionTurns (settings.json only).
    let p = Project::new(
        "[settings]\ndefault_agent = \"gemini\"\n[tasks.chatty]\nprompt = \"MOCK: turns 5 \"\npermissions = \"full\"\n",
    );
    let env = env_for(Cli::Gemini);
    env.gemini_settings(r#"{"model": {"maxSessionTurns": 2}}"#);
    let ran = build(&p, &env, &[]);
    let reason = ran.of("task_failed", "chatty")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("stopped at its turn limit"), "{reason}");
    assert!(reason.contains("maxSessionTurns"), "{reason}");
}

#[test]
fn an_interrupted_claude_build_is_continued_in_its_session() {
    let p = Project::new("[tasks.long]\nprompt = \"MOCK: sleep 60 times=1 key=interrupted\"\n");
    let env = env_for(Cli::Claude);
    let mut cmd = Command::new(common::orch_bin());
    env.apply(&mut cmd);
    let mut child = cmd
        .arg("build")
        .current_dir(p.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // claude names its session in its first line; orch journals it at once.
    common::wait_for("claude's session", Duration::from_secs(60), || {
        std::fs::read_to_string(p.path(".orchestrator/journal.jsonl"))
            .is_ok_and(|j| j.contains("\"session\""))
    });
    // Time for its request to reach the model, which holds it (the reply would come at 60 s).
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let status = orch(&p, &env, &["status"]);
    assert!(
        status.stdout.contains("(the next build continues it)"),
        "{}",
        status.stdout
    );
    let ran = build(&p, &env, &[]);
    assert_eq!(ran.done.code, 0, "{}", ran.done.stderr);
    // The second build's request carries the first one's prompt: the same conversation.
    let resumed: Vec<Value> = server()
        .requests_for("MOCK: sleep 60 times=1 key=interrupted")
        .into_iter()
        .filter(|r| r["prompts"] == 2)
        .collect();
    assert_eq!(resumed.len(), 1, "{:#?}", server().requests());
}

#[test]
fn the_code_review_example_end_to_end_with_claude() {
    let p = Project::empty();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/code-review");
    for rel in ["Orchfile.toml", "src/server.ts", "src/users.ts"] {
        p.write(rel, &std::fs::read_to_string(example.join(rel)).unwrap());
    }
    let env = env_for(Cli::Claude);
    let ran = build(&p, &env, &[]);
    assert_eq!(ran.done.code, 0, "{}", ran.done.stderr);
    assert_eq!(ran.named("task_finished").len(), 5);
    // T-03 writes its declared output at `write` (acceptEdits), as its task file asks.
    assert_eq!(
        p.read("reports/security.json").trim(),
        "written by the mock model"
    );
    let final_output = p.read(".orchestrator/final_output.md");
    assert!(
        final_output.starts_with("# Code Review Report"),
        "{final_output}"
    );
    assert!(final_output.contains("MOCK"), "{final_output}");
    let finished = ran.finished();
    assert!(finished["cost_usd"].as_f64().unwrap() > 0.0, "{finished}");
    // A second build finds all of it up to date, and pays nothing.
    let again = build(&p, &env, &[]);
    assert_eq!(
        again.named("task_skipped").len(),
        5,
        "{}",
        again.done.stderr
    );
    assert_eq!(again.finished()["cost_usd"], 0.0);
}
