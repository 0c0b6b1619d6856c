//! The real agent CLIs, run directly (not through orch) against the loopback model server:
//! what each one does for a plain answer, a file write with and without the write permission,
//! a 429/529/500 (and the knob that turns its own retries down), max turns, its streaming
//! format and session resume. These pin the behaviour orch's presets rely on; the README in
//! tests/support/agents says what was found. Every child is bounded by a timeout, and every
//! test checks that no CLI tried to reach another host.
//!
//! `ORCH_UPDATE_AGENT_FIXTURES=1 cargo test --test real_agents_smoke` rewrites
//! tests/fixtures/agent-replies/<cli>/<scenario>.* from the real output (paths normalised).

mod common;

use std::path::Path;
use std::time::Duration;

use common::agents::*;
use serde_json::Value;

/// Long enough for a CLI's start (gemini's is about 2 s) and a few quick retries.
const LIMIT: Duration = Duration::from_secs(90);

struct Case {
    server: ModelServer,
    env: AgentEnv,
    project: tempfile::TempDir,
}

impl Case {
    fn new(cli: Cli) -> Case {
        let server = ModelServer::start();
        let env = AgentEnv::new(cli, &server);
        Case {
            server,
            env,
            project: tempfile::tempdir().unwrap(),
        }
    }

    fn dir(&self) -> &Path {
        self.project.path()
    }

    fn run(&self, args: &[&str]) -> Finished {
        let done = run_bounded(self.env.command(self.dir(), args), LIMIT);
        assert!(!done.timed_out, "{:?} timed out: {done:#?}", self.env.cli);
        self.server.assert_no_escapes();
        done
    }

    /// `claude -p <prompt> --output-format json <extra>`.
    fn claude(&self, prompt: &str, extra: &[&str]) -> Finished {
        let mut args = vec!["-p", prompt, "--output-format", "json"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `codex exec --skip-git-repo-check --json <extra> <prompt>`.
    fn codex(&self, prompt: &str, extra: &[&str]) -> Finished {
        let mut args = vec!["exec", "--skip-git-repo-check", "--json"];
        args.extend_from_slice(extra);
        args.push(prompt);
        self.run(&args)
    }

    /// `gemini -p <prompt> -o json --skip-trust <extra>`.
    fn gemini(&self, prompt: &str, extra: &[&str]) -> Finished {
        let mut args = vec!["-p", prompt, "-o", "json", "--skip-trust"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.dir().join(rel)).ok()
    }

    /// Model requests answered for the scenario `line` (side calls excluded).
    fn calls(&self, line: &str) -> usize {
        self.server.requests_for(line).len()
    }

    /// Saves stdout (and stderr) as the fixtures of `scenario` when asked to.
    fn fixture(&self, scenario: &str, ext: &str, done: &Finished) {
        if std::env::var_os("ORCH_UPDATE_AGENT_FIXTURES").is_none() {
            return;
        }
        let cli = format!("{:?}", self.env.cli).to_lowercase();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agent-replies")
            .join(cli);
        std::fs::create_dir_all(&dir).unwrap();
        for (text, ext) in [(&done.stdout, ext), (&done.stderr, "stderr")] {
            let path = dir.join(format!("{scenario}.{ext}"));
            // An empty stream is no fixture (gemini's errors leave stdout empty).
            if text.is_empty() {
                let _ = std::fs::remove_file(path);
            } else {
                std::fs::write(path, self.normalise(text)).unwrap();
            }
        }
    }

    /// Temp paths, the install cache and the server's port replaced by placeholders; ids and
    /// times kept.
    fn normalise(&self, text: &str) -> String {
        let canonical = |p: &Path| p.canonicalize().unwrap().display().to_string();
        let mut out = text.to_string();
        let cache = cache_dir();
        for (path, name) in [
            (self.dir(), "<PROJECT>"),
            (self.env.home.path(), "<HOME>"),
            (cache.as_path(), "<CACHE>"),
        ] {
            out = out.replace(&canonical(path), name);
            out = out.replace(&path.display().to_string(), name);
        }
        out.replace(
            &format!("127.0.0.1:{}", self.server.port),
            "127.0.0.1:<PORT>",
        )
    }
}

fn usage_is_the_servers(usage: &Value) {
    assert_eq!(usage["input_tokens"], 1111, "{usage}");
    assert_eq!(usage["cache_read_input_tokens"], 33333, "{usage}");
    assert_eq!(usage["cache_creation_input_tokens"], 2222, "{usage}");
    assert_eq!(usage["output_tokens"], 44, "{usage}");
}

// ------------------------------------------------------------------------------------ claude

#[test]
fn claude_plain_answer_reports_result_session_cost_and_cached_tokens() {
    let c = Case::new(Cli::Claude);
    let done = c.claude("hello from the smoke test", &[]);
    c.fixture("plain", "json", &done);
    assert_eq!(done.code, 0, "{done:#?}");
    let reply = done.json();
    assert_eq!(
        reply["result"],
        "MOCK answer to: hello from the smoke test (prompts=1)"
    );
    assert_eq!(reply["type"], "result");
    assert_eq!(reply["subtype"], "success");
    assert_eq!(reply["is_error"], false);
    assert_eq!(reply["num_turns"], 1);
    assert!(reply["session_id"].as_str().is_some_and(|s| s.len() == 36));
    assert!(reply["total_cost_usd"].as_f64().unwrap() > 0.0, "{reply}");
    usage_is_the_servers(&reply["usage"]);
    assert_eq!(reply["permission_denials"], serde_json::json!([]));
}

#[test]
fn claude_writes_with_accept_edits_and_is_denied_without() {
    let c = Case::new(Cli::Claude);
    let denied = c.claude("MOCK: write out/denied.txt no", &[]);
    c.fixture("write-denied", "json", &denied);
    assert_eq!(denied.code, 0, "a denial is not an error exit: {denied:#?}");
    let reply = denied.json();
    assert_eq!(reply["is_error"], false);
    assert_eq!(
        reply["permission_denials"][0]["tool_name"], "Write",
        "{reply}"
    );
    assert!(reply["permission_denials"][0]["tool_input"]["file_path"]
        .as_str()
        .unwrap()
        .ends_with("out/denied.txt"));
    assert_eq!(c.read("out/denied.txt"), None);

    let allowed = c.claude(
        "MOCK: write out/allowed.txt yes",
        &["--permission-mode", "acceptEdits"],
    );
    c.fixture("write-allowed", "json", &allowed);
    assert_eq!(allowed.code, 0, "{allowed:#?}");
    assert_eq!(allowed.json()["permission_denials"], serde_json::json!([]));
    assert_eq!(c.read("out/allowed.txt").as_deref(), Some("yes\n"));
}

#[test]
fn claude_accept_edits_denies_other_commands_unless_bash_is_allowed() {
    let c = Case::new(Cli::Claude);
    let prompt = "MOCK: bash python3 -c 'open(\"made.txt\", \"w\")'";
    let denied = c.claude(prompt, &["--permission-mode", "acceptEdits"]);
    assert_eq!(denied.json()["permission_denials"][0]["tool_name"], "Bash");
    assert_eq!(c.read("made.txt"), None);
    let full = c.claude(
        prompt,
        &["--permission-mode", "acceptEdits", "--allowedTools", "Bash"],
    );
    assert_eq!(full.json()["permission_denials"], serde_json::json!([]));
    assert_eq!(c.read("made.txt").as_deref(), Some(""));
}

#[test]
fn claude_bypass_permissions_is_refused_as_root() {
    let c = Case::new(Cli::Claude);
    let done = c.claude(
        "MOCK: write out/bypass.txt yes",
        &["--permission-mode", "bypassPermissions"],
    );
    if unsafe { libc::geteuid() } == 0 {
        c.fixture("bypass-as-root", "out", &done);
        assert_eq!(done.code, 1, "{done:#?}");
        assert!(
            done.stderr.contains(
                "--dangerously-skip-permissions cannot be used with root/sudo privileges"
            ),
            "{done:#?}"
        );
        assert!(c.server.requests().is_empty(), "refused before any call");
    } else {
        assert_eq!(done.code, 0, "{done:#?}");
        assert_eq!(c.read("out/bypass.txt").as_deref(), Some("yes\n"));
    }
}

#[test]
fn claude_500_is_retried_claude_code_max_retries_times_then_reported() {
    let mut c = Case::new(Cli::Claude);
    c.env.set("CLAUDE_CODE_MAX_RETRIES", "1");
    let line = "MOCK: status 500";
    let done = c.claude(line, &[]);
    c.fixture("500", "json", &done);
    assert_eq!(done.code, 1, "{done:#?}");
    let reply = done.json();
    assert_eq!(reply["is_error"], true);
    // An API error still says "success" in subtype: is_error and api_error_status tell.
    assert_eq!(reply["subtype"], "success");
    assert_eq!(reply["api_error_status"], 500);
    assert_eq!(reply["terminal_reason"], "api_error");
    assert!(reply["result"]
        .as_str()
        .unwrap()
        .starts_with("API Error: 500"));
    assert_eq!(c.calls(line), 2, "one call and one retry");
}

#[test]
fn claude_429_and_529_are_reported_with_their_status() {
    let mut c = Case::new(Cli::Claude);
    c.env.set("CLAUDE_CODE_MAX_RETRIES", "0");
    for (status, scenario) in [(429, "429"), (529, "529")] {
        let line = format!("MOCK: status {status}");
        let done = c.claude(&line, &[]);
        c.fixture(scenario, "json", &done);
        assert_eq!(done.code, 1, "{done:#?}");
        let reply = done.json();
        assert_eq!(reply["is_error"], true);
        assert_eq!(reply["api_error_status"], status);
        assert_eq!(c.calls(&line), 1);
    }
}

#[test]
fn claude_429_once_is_retried_after_retry_after_and_succeeds() {
    let mut c = Case::new(Cli::Claude);
    c.env.set("CLAUDE_CODE_MAX_RETRIES", "2");
    let line = "MOCK: status 429 times=1 retry_after=1";
    let done = c.claude(line, &[]);
    assert_eq!(done.code, 0, "{done:#?}");
    assert_eq!(done.json()["is_error"], false);
    assert_eq!(c.calls(line), 2);
}

#[test]
fn claude_max_turns_ends_with_error_max_turns() {
    let c = Case::new(Cli::Claude);
    let done = c.claude(
        "MOCK: turns 5",
        &["--max-turns", "2", "--permission-mode", "acceptEdits"],
    );
    c.fixture("max-turns", "json", &done);
    assert_eq!(done.code, 1, "{done:#?}");
    let reply = done.json();
    assert_eq!(reply["subtype"], "error_max_turns");
    assert_eq!(reply["is_error"], true);
    assert_eq!(reply["terminal_reason"], "max_turns");
    assert_eq!(
        reply["errors"][0], "Reached maximum number of turns (2)",
        "{reply}"
    );
}

#[test]
fn claude_stream_json_shows_tool_calls_as_they_happen() {
    let c = Case::new(Cli::Claude);
    let done = c.run(&[
        "-p",
        "MOCK: write out/streamed.txt streamed",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
    ]);
    c.fixture("stream", "jsonl", &done);
    assert_eq!(done.code, 0, "{done:#?}");
    let events = done.jsonl();
    assert_eq!(events[0]["type"], "system");
    assert_eq!(events[0]["subtype"], "init");
    let tool_use = events
        .iter()
        .flat_map(|e| {
            e["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|b| b["type"] == "tool_use")
        .expect("a tool_use block");
    assert_eq!(tool_use["name"], "Write");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "result");
    assert_eq!(last["subtype"], "success");
    assert_eq!(c.read("out/streamed.txt").as_deref(), Some("streamed\n"));
}

#[test]
fn claude_resume_continues_the_session_with_its_history() {
    let c = Case::new(Cli::Claude);
    let first = c.claude("the first prompt", &[]).json();
    let id = first["session_id"].as_str().unwrap();
    let done = c.claude("the second prompt", &["--resume", id]);
    c.fixture("resume", "json", &done);
    let reply = done.json();
    assert_eq!(reply["session_id"], id);
    assert_eq!(
        reply["result"],
        "MOCK answer to: the second prompt (prompts=2)"
    );
}

#[test]
fn a_slow_model_is_cut_by_the_callers_timeout() {
    let c = Case::new(Cli::Claude);
    let cmd = c.env.command(
        c.dir(),
        &["-p", "MOCK: sleep 30", "--output-format", "json"],
    );
    let done = run_bounded(cmd, Duration::from_secs(4));
    // run_bounded killed it at the limit: the outcome, not how long that took.
    assert!(done.timed_out, "{done:#?}");
    assert_ne!(done.code, 0, "{done:#?}");
}

// ------------------------------------------------------------------------------------- codex

/// The last `agent_message` item's text and the `turn.completed` usage of a `--json` run.
fn codex_reply(events: &[Value]) -> (Option<String>, Option<Value>) {
    let text = events
        .iter()
        .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == "agent_message")
        .filter_map(|e| e["item"]["text"].as_str())
        .next_back()
        .map(String::from);
    let usage = events
        .iter()
        .find(|e| e["type"] == "turn.completed")
        .map(|e| e["usage"].clone());
    (text, usage)
}

#[test]
fn codex_plain_answer_reports_agent_message_usage_and_last_message_file() {
    let c = Case::new(Cli::Codex);
    let last = c.env.home.path().join("last-message.txt");
    let done = c.codex("hello from the smoke test", &["-o", last.to_str().unwrap()]);
    c.fixture("plain", "jsonl", &done);
    assert_eq!(done.code, 0, "{done:#?}");
    let events = done.jsonl();
    assert_eq!(events[0]["type"], "thread.started");
    assert!(events[0]["thread_id"].as_str().is_some());
    let (text, usage) = codex_reply(&events);
    let expected = "MOCK answer to: hello from the smoke test (prompts=1)";
    assert_eq!(text.as_deref(), Some(expected));
    let usage = usage.expect("turn.completed");
    // codex counts cached tokens inside input_tokens, as the Responses API does.
    assert_eq!(usage["input_tokens"], 36666, "{usage}");
    assert_eq!(usage["cached_input_tokens"], 33333);
    assert_eq!(usage["cache_write_input_tokens"], 2222);
    assert_eq!(usage["output_tokens"], 44);
    assert_eq!(std::fs::read_to_string(&last).unwrap(), expected);
}

#[test]
fn codex_writes_in_workspace_write_and_is_refused_in_its_read_only_default() {
    let c = Case::new(Cli::Codex);
    let denied = c.codex("MOCK: write out/denied.txt no", &[]);
    c.fixture("write-denied", "jsonl", &denied);
    assert_eq!(
        denied.code, 0,
        "a refused patch is no error exit: {denied:#?}"
    );
    let (text, _) = codex_reply(&denied.jsonl());
    assert!(
        text.unwrap()
            .contains("writing is blocked by read-only sandbox"),
        "{denied:#?}"
    );
    assert_eq!(c.read("out/denied.txt"), None);

    let allowed = c.codex(
        "MOCK: write out/allowed.txt yes",
        &["-s", "workspace-write"],
    );
    c.fixture("write-allowed", "jsonl", &allowed);
    assert_eq!(allowed.code, 0, "{allowed:#?}");
    let change = allowed
        .jsonl()
        .into_iter()
        .find(|e| e["type"] == "item.completed" && e["item"]["type"] == "file_change")
        .expect("a file_change item");
    assert_eq!(change["item"]["changes"][0]["kind"], "add");
    assert_eq!(c.read("out/allowed.txt").as_deref(), Some("yes\n"));
}

#[test]
fn codex_shell_commands_run_in_workspace_write_and_fail_read_only() {
    let c = Case::new(Cli::Codex);
    let prompt = "MOCK: bash touch made.txt";
    c.codex(prompt, &[]);
    assert_eq!(c.read("made.txt"), None);
    let done = c.codex(prompt, &["-s", "workspace-write"]);
    assert_eq!(c.read("made.txt").as_deref(), Some(""), "{done:#?}");
}

/// `-c` overrides that turn codex's own retries down (defaults: 4 request retries, 5 stream
/// retries: 30 requests for one persistent 500).
const CODEX_NO_RETRIES: [&str; 4] = [
    "-c",
    "model_providers.mock.request_max_retries=0",
    "-c",
    "model_providers.mock.stream_max_retries=0",
];

#[test]
fn codex_500_429_529_end_in_turn_failed_with_retries_turned_down() {
    let c = Case::new(Cli::Codex);
    for status in [500, 429, 529] {
        let line = format!("MOCK: status {status}");
        let done = c.codex(&line, &CODEX_NO_RETRIES);
        c.fixture(&status.to_string(), "jsonl", &done);
        assert_eq!(done.code, 1, "{done:#?}");
        let failed = done
            .jsonl()
            .into_iter()
            .find(|e| e["type"] == "turn.failed")
            .expect("turn.failed");
        assert!(failed["error"]["message"].as_str().is_some(), "{failed}");
        assert_eq!(c.calls(&line), 1, "no retry with the knobs at 0");
    }
}

#[test]
fn codex_request_retries_count_each_retry() {
    let c = Case::new(Cli::Codex);
    let line = "MOCK: status 500";
    c.codex(
        line,
        &[
            "-c",
            "model_providers.mock.request_max_retries=2",
            "-c",
            "model_providers.mock.stream_max_retries=0",
        ],
    );
    assert_eq!(c.calls(line), 3);
}

#[test]
fn codex_json_shows_commands_as_items() {
    let c = Case::new(Cli::Codex);
    let done = c.codex("MOCK: bash echo streamed", &["-s", "workspace-write"]);
    c.fixture("stream", "jsonl", &done);
    assert_eq!(done.code, 0, "{done:#?}");
    let events = done.jsonl();
    let started = events
        .iter()
        .find(|e| e["type"] == "item.started")
        .expect("item.started");
    assert_eq!(started["item"]["type"], "command_execution");
    assert_eq!(started["item"]["command"], "/bin/bash -lc 'echo streamed'");
    let finished = events
        .iter()
        .find(|e| e["type"] == "item.completed" && e["item"]["type"] == "command_execution")
        .expect("the command's item.completed");
    assert_eq!(finished["item"]["exit_code"], 0);
    assert_eq!(finished["item"]["aggregated_output"], "streamed\n");
    assert!(events.iter().any(|e| e["type"] == "turn.completed"));
}

#[test]
fn codex_exec_resume_continues_the_thread_and_reports_thread_totals() {
    let c = Case::new(Cli::Codex);
    let first = c.codex("the first prompt", &[]).jsonl();
    let id = first[0]["thread_id"].as_str().unwrap().to_string();
    let done = c.run(&[
        "exec",
        "resume",
        "--skip-git-repo-check",
        "--json",
        &id,
        "the second prompt",
    ]);
    c.fixture("resume", "jsonl", &done);
    assert_eq!(done.code, 0, "{done:#?}");
    let (text, usage) = codex_reply(&done.jsonl());
    assert_eq!(
        text.as_deref(),
        Some("MOCK answer to: the second prompt (prompts=2)")
    );
    // One request in this run, yet the usage is the thread's total over both runs.
    assert_eq!(c.server.requests().len(), 2);
    assert_eq!(usage.unwrap()["input_tokens"], 2 * 36666);
}

// ------------------------------------------------------------------------------------ gemini

#[test]
fn gemini_refuses_an_untrusted_folder_with_exit_55() {
    let c = Case::new(Cli::Gemini);
    let done = c.run(&["-p", "hello", "-o", "json"]);
    c.fixture("untrusted", "out", &done);
    assert_eq!(done.code, 55, "{done:#?}");
    assert!(done
        .stderr
        .contains("Gemini CLI is not running in a trusted directory"));
    assert!(c.server.requests().is_empty());
}

#[test]
fn gemini_plain_answer_reports_response_and_per_model_tokens() {
    let c = Case::new(Cli::Gemini);
    let done = c.gemini("hello from the smoke test", &[]);
    c.fixture("plain", "json", &done);
    assert_eq!(done.code, 0, "{done:#?}");
    let reply = done.json();
    assert_eq!(
        reply["response"],
        "MOCK answer to: hello from the smoke test (prompts=1)"
    );
    assert!(reply["session_id"].as_str().is_some());
    let models = reply["stats"]["models"].as_object().unwrap();
    // The main model's call, beside the router's side call on a flash-lite model.
    let main = models
        .values()
        .find(|m| m["roles"]["main"].is_object())
        .expect("a model with the main role");
    assert_eq!(main["tokens"]["prompt"], 36666, "{main}");
    assert_eq!(main["tokens"]["cached"], 33333);
    assert_eq!(main["tokens"]["input"], 3333, "prompt less cached");
    assert_eq!(main["tokens"]["candidates"], 44);
}

#[test]
fn gemini_writes_with_auto_edit_and_has_no_write_tool_by_default() {
    let c = Case::new(Cli::Gemini);
    let denied = c.gemini("MOCK: write out/denied.txt no", &[]);
    c.fixture("write-denied", "json", &denied);
    assert_eq!(denied.code, 0, "{denied:#?}");
    let tools = &c.server.requests_for("MOCK: write out/denied.txt no")[0]["tools"];
    assert!(!tools.as_array().unwrap().contains(&"write_file".into()));
    assert_eq!(c.read("out/denied.txt"), None);

    let allowed = c.gemini(
        "MOCK: write out/allowed.txt yes",
        &["--approval-mode", "auto_edit"],
    );
    c.fixture("write-allowed", "json", &allowed);
    assert_eq!(allowed.code, 0, "{allowed:#?}");
    assert_eq!(
        allowed.json()["stats"]["tools"]["byName"]["write_file"]["success"],
        1
    );
    assert_eq!(c.read("out/allowed.txt").as_deref(), Some("yes\n"));
}

#[test]
fn gemini_shell_commands_need_yolo() {
    let c = Case::new(Cli::Gemini);
    let prompt = "MOCK: bash touch made.txt";
    c.gemini(prompt, &["--approval-mode", "auto_edit"]);
    assert_eq!(c.read("made.txt"), None);
    let done = c.gemini(prompt, &["--approval-mode", "yolo"]);
    assert_eq!(c.read("made.txt").as_deref(), Some(""), "{done:#?}");
}

#[test]
fn gemini_500_429_529_are_reported_after_max_attempts() {
    let c = Case::new(Cli::Gemini);
    // settings.json general.maxAttempts (default and cap 10, 5 s doubling to 30 s between).
    c.env.gemini_settings(r#"{"general": {"maxAttempts": 1}}"#);
    for status in [500, 429, 529] {
        let line = format!("MOCK: status {status}");
        let done = c.gemini(&line, &[]);
        c.fixture(&status.to_string(), "json", &done);
        // The exit code is the HTTP status, truncated to a byte (500 -> 244, 429 -> 173), and
        // the JSON error object goes to stderr, stdout stays empty.
        assert_eq!(done.code, status & 0xff, "{done:#?}");
        assert_eq!(done.stdout, "");
        let reply = done.stderr_json();
        assert_eq!(reply["error"]["code"], status, "{reply}");
        assert!(reply["session_id"].as_str().is_some(), "{reply}");
        assert_eq!(c.calls(&line), 1, "no retry at maxAttempts 1");
    }
}

#[test]
fn gemini_max_session_turns_ends_the_run() {
    let c = Case::new(Cli::Gemini);
    c.env
        .gemini_settings(r#"{"model": {"maxSessionTurns": 2}}"#);
    let done = c.gemini("MOCK: turns 5", &["--approval-mode", "yolo"]);
    c.fixture("max-turns", "json", &done);
    assert_eq!(done.code, 53, "{done:#?}");
    let reply = done.stderr_json();
    assert_eq!(reply["error"]["type"], "FatalTurnLimitedError", "{reply}");
    assert_eq!(reply["error"]["code"], 53);
    // maxSessionTurns counts model requests: two went out, the third was refused.
    assert_eq!(c.calls("MOCK: turns 5"), 2);
}

#[test]
fn gemini_stream_json_shows_tool_use_and_result_events() {
    let c = Case::new(Cli::Gemini);
    let done = c.run(&[
        "-p",
        "MOCK: write out/streamed.txt streamed",
        "-o",
        "stream-json",
        "--skip-trust",
        "--approval-mode",
        "auto_edit",
    ]);
    c.fixture("stream", "jsonl", &done);
    assert_eq!(done.code, 0, "{done:#?}");
    let events = done.jsonl();
    assert_eq!(events[0]["type"], "init");
    let tool = events
        .iter()
        .find(|e| e["type"] == "tool_use")
        .expect("tool_use");
    assert_eq!(tool["tool_name"], "write_file");
    assert!(events
        .iter()
        .any(|e| e["type"] == "tool_result" && e["status"] == "success"));
    let last = events.last().unwrap();
    assert_eq!(last["type"], "result");
    assert_eq!(last["status"], "success");
}

#[test]
fn gemini_resume_by_session_id_continues_the_session() {
    let c = Case::new(Cli::Gemini);
    let first = c.gemini("the first prompt", &[]).json();
    let id = first["session_id"].as_str().unwrap();
    let done = c.gemini("the second prompt", &["--resume", id]);
    c.fixture("resume", "json", &done);
    let reply = done.json();
    assert_eq!(reply["session_id"], id);
    assert_eq!(
        reply["response"],
        "MOCK answer to: the second prompt (prompts=2)"
    );
}
