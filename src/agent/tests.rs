//! Tests of judging replies (against the recorded output of the real CLIs where the format
//! is theirs) and of the command lines the presets build.

use super::spec::{AgentSpec, Permission, ResultSpec};
use super::*;
use crate::executor::{Exit, ProcessOutput};
use std::path::Path;
use std::time::Duration;

fn out(code: i32, stdout: &str, stderr: &str) -> ProcessOutput {
    ProcessOutput {
        exit: Exit::Code(code),
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
        truncated: false,
        duration: Duration::ZERO,
    }
}

fn claude() -> AgentSpec {
    presets::preset("claude").unwrap()
}

fn ok(agent: &AgentSpec, o: &ProcessOutput) -> String {
    judge(agent, Permission::Write, o, Path::new("/p"))
        .result
        .unwrap()
}

fn failure(agent: &AgentSpec, o: &ProcessOutput) -> Failure {
    judge(agent, Permission::Read, o, Path::new("/p"))
        .result
        .unwrap_err()
}

/// A recorded reply of a real CLI (tests/fixtures/agent-replies/<cli>/<name>).
fn fixture(cli: &str, name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agent-replies")
        .join(cli)
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("<PROJECT>", "/p")
}

#[test]
fn reads_a_claude_result_with_cost_and_every_kind_of_token() {
    let j = judge(
        &claude(),
        Permission::Read,
        &out(0, &fixture("claude", "plain.json"), ""),
        Path::new("/p"),
    );
    assert_eq!(
        j.result.unwrap(),
        "MOCK answer to: hello from the smoke test (prompts=1)"
    );
    assert_eq!(j.usage.cost_usd, Some(0.0231006));
    assert_eq!(j.usage.input_tokens, Some(1111 + 33333 + 2222));
    assert_eq!(j.usage.cache_read_tokens, Some(33333));
    assert_eq!(j.usage.cache_write_tokens, Some(2222));
    assert_eq!(j.usage.output_tokens, Some(44));
    assert_eq!(
        j.session_id.as_deref(),
        Some("29540fc4-d929-433d-8956-880fe089536a")
    );
}

#[test]
fn claude_api_errors_are_transient_with_the_clis_own_message() {
    for (name, status) in [("500.json", 500), ("429.json", 429), ("529.json", 529)] {
        let f = failure(&claude(), &out(1, &fixture("claude", name), ""));
        assert_eq!(f.kind, FailureKind::Transient, "{name}: {f}");
        assert!(f.message.contains(&format!("HTTP {status}")), "{f}");
        assert!(f.message.contains("API Error"), "{f}");
        assert!(
            !f.message.contains("total_cost_usd"),
            "not the JSON's tail: {f}"
        );
    }
}

#[test]
fn claude_denials_max_turns_and_unknown_sessions_are_named() {
    let f = failure(
        &claude(),
        &out(0, &fixture("claude", "write-denied.json"), ""),
    );
    assert_eq!(f.kind, FailureKind::PermissionDenied);
    assert!(f.message.contains("Write out/denied.txt"), "{f}");
    assert!(f.message.contains("permissions = \"write\""), "{f}");
    let f = failure(&claude(), &out(1, &fixture("claude", "max-turns.json"), ""));
    assert_eq!(f.kind, FailureKind::MaxTurns);
    assert!(
        f.message.contains("Reached maximum number of turns (2)"),
        "{f}"
    );
    let unknown = r#"{"type":"result","subtype":"error_during_execution","is_error":true,"session_id":"x","errors":["No conversation found with session ID: x"]}"#;
    let f = failure(&claude(), &out(1, unknown, "No conversation found"));
    assert_eq!(f.kind, FailureKind::UnknownSession);
}

#[test]
fn claude_as_root_with_bypass_fails_with_its_message() {
    let f = failure(
        &claude(),
        &out(1, "", &fixture("claude", "bypass-as-root.stderr")),
    );
    assert_eq!(f.kind, FailureKind::Exit);
    assert!(f.message.contains("cannot be used with root"), "{f}");
}

#[test]
fn claude_stream_json_gives_the_tool_calls_and_the_answer() {
    let j = judge(
        &claude(),
        Permission::Write,
        &out(0, &fixture("claude", "stream.jsonl"), ""),
        Path::new("/p"),
    );
    assert!(j.result.unwrap().starts_with("MOCK done after 1 tool call"));
    assert_eq!(j.tools.len(), 1);
    assert_eq!(j.tools[0].to_string(), "Write out/streamed.txt");
    assert_eq!(j.tools[0].writes, ["out/streamed.txt"]);
}

#[test]
fn is_error_with_exit_zero_fails() {
    let e = failure(
        &claude(),
        &out(
            0,
            r#"{"type":"result","subtype":"error_during_execution","is_error":true,"result":"boom"}"#,
            "",
        ),
    );
    assert_eq!(e.kind, FailureKind::AgentError);
    assert!(e.message.contains("is_error"), "{e}");
    assert!(e.message.contains("boom"));
}

#[test]
fn overload_on_stderr_or_in_the_result_is_transient() {
    let e = failure(
        &claude(),
        &out(
            1,
            "",
            "API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}",
        ),
    );
    assert_eq!(e.kind, FailureKind::Transient, "{e}");
    let e = failure(
        &claude(),
        &out(0, r#"{"is_error":true,"result":"rate_limit exceeded"}"#, ""),
    );
    assert_eq!(e.kind, FailureKind::Transient, "{e}");
}

#[test]
fn a_prompt_about_429_and_a_real_500_is_not_an_overload_of_codex() {
    // codex echoes its prompt on stderr when not in --json mode; the status is read from
    // the error event alone.
    let codex = presets::preset("codex").unwrap();
    let stdout = fixture("codex", "500.jsonl");
    let f = failure(
        &codex,
        &out(1, &stdout, "user: explain HTTP 429 and 529 to me\n"),
    );
    assert_eq!(f.kind, FailureKind::Transient, "{f}");
    assert!(f.message.contains("high demand"), "{f}");
    assert!(!f.message.contains("429"), "{f}");
    // Digits inside a session id are no status.
    let generic = presets::preset("llm").unwrap();
    let f = failure(
        &generic,
        &out(1, "", "session a4291c29-0529-4000 failed: no such model"),
    );
    assert_eq!(f.kind, FailureKind::Exit, "{f}");
}

#[test]
fn codex_replies_give_the_last_message_the_thread_and_its_usage() {
    let codex = presets::preset("codex").unwrap();
    let j = judge(
        &codex,
        Permission::Write,
        &out(0, &fixture("codex", "write-allowed.jsonl"), ""),
        Path::new("/p"),
    );
    assert!(j.result.unwrap().starts_with("MOCK done after 1 tool call"));
    assert_eq!(
        j.session_id.as_deref(),
        Some("01a2338d-76c7-7920-9ef9-87a49e745a02")
    );
    assert!(j.usage_is_session_total);
    assert_eq!(j.usage.input_tokens, Some(73332));
    assert_eq!(j.usage.cache_read_tokens, Some(66666));
    assert_eq!(j.usage.cache_write_tokens, Some(4444));
    assert_eq!(j.usage.output_tokens, Some(88));
    assert_eq!(j.tools[0].to_string(), "Write out/allowed.txt");
    // A write refused by the read-only sandbox is only in codex's log lines.
    let f = failure(
        &codex,
        &out(
            0,
            &fixture("codex", "write-denied.jsonl"),
            &fixture("codex", "write-denied.stderr"),
        ),
    );
    assert_eq!(f.kind, FailureKind::PermissionDenied, "{f}");
    assert!(f.message.contains("read-only sandbox"), "{f}");
    // Each status of a failed turn.
    for name in ["429", "500", "529"] {
        let f = failure(
            &codex,
            &out(1, &fixture("codex", &format!("{name}.jsonl")), ""),
        );
        assert_eq!(f.kind, FailureKind::Transient, "{name}: {f}");
    }
}

#[test]
fn codex_stream_shows_commands_without_the_shell_wrapper() {
    let codex = presets::preset("codex").unwrap();
    let j = judge(
        &codex,
        Permission::Full,
        &out(0, &fixture("codex", "stream.jsonl"), ""),
        Path::new("/p"),
    );
    let shown: Vec<String> = j.tools.iter().map(|a| a.to_string()).collect();
    assert_eq!(shown, ["Bash: echo streamed"]);
}

#[test]
fn gemini_replies_in_both_formats() {
    let gemini = presets::preset("gemini").unwrap();
    let j = judge(
        &gemini,
        Permission::Read,
        &out(0, &fixture("gemini", "plain.json"), ""),
        Path::new("/p"),
    );
    assert_eq!(
        j.result.unwrap(),
        "MOCK answer to: hello from the smoke test (prompts=1)"
    );
    // The router's side call and the main model, both paid for.
    assert_eq!(j.usage.input_tokens, Some(2 * 36666));
    assert_eq!(j.usage.cache_read_tokens, Some(2 * 33333));
    assert_eq!(j.usage.output_tokens, Some(2 * 44));
    let j = judge(
        &gemini,
        Permission::Write,
        &out(0, &fixture("gemini", "stream.jsonl"), ""),
        Path::new("/p"),
    );
    assert!(j.result.unwrap().starts_with("MOCK done after 1 tool call"));
    assert_eq!(j.tools[0].to_string(), "Write out/streamed.txt");
    assert_eq!(j.usage.input_tokens, Some(109998));
    assert_eq!(
        j.session_id.as_deref(),
        Some("a5b55f26-8907-4872-8ad8-e8b42ad27f29")
    );
}

#[test]
fn gemini_errors_on_stderr_and_its_exit_codes() {
    let gemini = presets::preset("gemini").unwrap();
    for (name, status) in [("500", 500u16), ("429", 429), ("529", 529)] {
        let f = failure(
            &gemini,
            &out(
                i32::from(status & 0xff),
                "",
                &fixture("gemini", &format!("{name}.stderr")),
            ),
        );
        assert_eq!(f.kind, FailureKind::Transient, "{name}: {f}");
        assert!(f.message.contains(&format!("HTTP {status}")), "{f}");
    }
    let f = failure(
        &gemini,
        &out(53, "", &fixture("gemini", "max-turns.stderr")),
    );
    assert_eq!(f.kind, FailureKind::MaxTurns, "{f}");
    let f = failure(
        &gemini,
        &out(55, "", &fixture("gemini", "untrusted.stderr")),
    );
    assert_eq!(f.kind, FailureKind::Exit, "{f}");
    assert!(f.message.contains("--skip-trust"), "{f}");
    // In stream-json, a 429 is only "Resource has been exhausted" plus the exit code.
    let stream = r#"{"type":"init","session_id":"s","model":"auto"}
{"type":"result","status":"error","error":{"type":"unknown","message":"[API Error: Resource has been exhausted (e.g. check quota).]"},"stats":{"input_tokens":36666,"cached":33333,"output_tokens":44}}"#;
    let j = judge(
        &gemini,
        Permission::Read,
        &out(173, stream, ""),
        Path::new("/p"),
    );
    let f = j.result.unwrap_err();
    assert_eq!(f.kind, FailureKind::Transient, "{f}");
    assert!(
        f.message
            .starts_with("exit code 173, transient error (HTTP 429): API Error: Resource"),
        "{f}"
    );
    assert_eq!(
        j.usage.input_tokens,
        Some(36666),
        "a failed attempt's tokens count"
    );
}

#[test]
fn gemini_refused_tools_are_denials() {
    let gemini = presets::preset("gemini").unwrap();
    let stream = r#"{"type":"init","session_id":"s"}
{"type":"tool_use","tool_name":"write_file","tool_id":"t1","parameters":{"file_path":"/p/out/x.txt","content":"hi"}}
{"type":"tool_result","tool_id":"t1","status":"error","error":{"type":"tool_not_registered","message":"Tool \"write_file\" not found."}}
{"type":"message","role":"assistant","content":"could not","delta":true}
{"type":"result","status":"success","stats":{}}"#;
    let f = failure(&gemini, &out(0, stream, ""));
    assert_eq!(f.kind, FailureKind::PermissionDenied, "{f}");
    assert!(f.message.contains("write_file out/x.txt"), "{f}");
}

#[test]
fn plain_failure_and_bad_json() {
    let e = failure(&claude(), &out(2, "", "no such model"));
    assert_eq!(e.kind, FailureKind::Exit);
    assert!(e.message.contains("exit code 2"));
    let e = failure(&claude(), &out(0, "not json", ""));
    assert_eq!(e.kind, FailureKind::BadOutput);
    assert!(
        e.message.contains("expected JSON on stdout, got: not json"),
        "{e}"
    );
    let mut json = claude();
    json.result = ResultSpec::JsonField("result".into());
    let e = failure(&json, &out(0, r#"{"type":"result","is_error":false}"#, ""));
    assert!(e.message.contains("no field `result`"), "{e}");
}

#[test]
fn streaming_json_uses_the_result_line() {
    let stream =
        "{\"type\":\"system\"}\n{\"type\":\"result\",\"is_error\":false,\"result\":\"done\"}\n";
    assert_eq!(ok(&claude(), &out(0, stream, "")), "done");
}

#[test]
fn empty_stdout_result_is_a_failure() {
    let llm = presets::preset("llm").unwrap();
    let e = failure(&llm, &out(0, "  \n", ""));
    assert_eq!(e.kind, FailureKind::BadOutput);
    assert_eq!(ok(&llm, &out(0, "ok", "")), "ok");
}

#[test]
fn usage_adds_up_where_known() {
    let mut total = Usage::default();
    total.add(&Usage {
        cost_usd: Some(0.5),
        input_tokens: Some(10),
        ..Default::default()
    });
    total.add(&Usage {
        cost_usd: Some(0.25),
        output_tokens: Some(3),
        ..Default::default()
    });
    assert_eq!(total.cost_usd, Some(0.75));
    assert_eq!(total.input_tokens, Some(10));
    assert_eq!(total.output_tokens, Some(3));
    assert_eq!(total.cache_read_tokens, None);
    let later = Usage {
        input_tokens: Some(25),
        ..Default::default()
    };
    assert_eq!(later.since(&total).input_tokens, Some(15));
}

#[test]
fn presets_put_each_levels_flags_where_the_cli_wants_them() {
    let argv = |name: &str, level, resume| {
        command_line(
            &presets::preset(name).unwrap(),
            &Call {
                level,
                resume,
                extra_args: &[],
            },
        )
        .join(" ")
    };
    assert_eq!(
        argv("claude", Permission::Read, None),
        "claude -p --output-format stream-json --verbose --permission-mode default"
    );
    assert_eq!(
        argv("claude", Permission::Write, Some("abc")),
        "claude -p --output-format stream-json --verbose --permission-mode acceptEdits \
         --resume abc"
    );
    assert_eq!(
        argv("codex", Permission::Write, Some("t1")),
        "codex exec -s workspace-write --skip-git-repo-check --json resume t1 -"
    );
    assert_eq!(
        argv("codex", Permission::Full, None),
        "codex exec -s danger-full-access --skip-git-repo-check --json -"
    );
    assert_eq!(
        argv("gemini", Permission::Full, None),
        "gemini --output-format stream-json --skip-trust --approval-mode yolo"
    );
    // A command without placeholders gets the arguments at its end.
    let mut custom = claude();
    custom.command = vec!["my-claude".into(), "-p".into()];
    custom.args = vec!["--model".into(), "opus".into()];
    let line = command_line(
        &custom,
        &Call {
            level: Permission::Read,
            resume: Some("s"),
            extra_args: &["--x".to_string()],
        },
    );
    assert_eq!(
        line.join(" "),
        "my-claude -p --model opus --permission-mode default --x --resume s"
    );
}

#[test]
fn invocation_never_builds_a_shell_string() {
    let mut a = presets::preset("llm").unwrap();
    a.command = vec!["tool".into(), "--p".into(), "{prompt}".into()];
    a.prompt_via = spec::PromptVia::Arg;
    let evil = "x'; rm -rf / #";
    let call = Call::at(Permission::Read);
    let (argv, stdin) = invocation(&a, &call, evil, Path::new("/tmp/p.md"));
    assert_eq!(argv, vec!["tool", "--p", evil]);
    assert!(stdin.is_none());
    let aider = presets::preset("aider").unwrap();
    let (argv, stdin) = invocation(&aider, &call, "p", Path::new("/tmp/p.md"));
    assert!(argv.contains(&"/tmp/p.md".to_string()));
    assert!(stdin.is_none());
    let (_, stdin) = invocation(&claude(), &call, "p", Path::new("/tmp/p.md"));
    assert_eq!(stdin.unwrap(), b"p");
}

#[test]
fn numeric_patterns_match_whole_numbers_only() {
    let p = vec!["429".to_string(), "rate limit".to_string()];
    assert_eq!(transient_match(&p, "HTTP 429 Too Many"), Some("429"));
    assert_eq!(transient_match(&p, "(429)"), Some("429"));
    assert_eq!(transient_match(&p, "id a4291c"), None);
    assert_eq!(transient_match(&p, "14290 bytes"), None);
    assert_eq!(
        transient_match(&p, "Rate Limit reached"),
        Some("rate limit")
    );
}

#[test]
fn only_the_clis_checked_to_wait_at_their_stdin_start_early() {
    let early: Vec<&str> = crate::agent::presets::PRESET_NAMES
        .iter()
        .copied()
        .filter(|n| crate::agent::presets::preset(n).unwrap().start_early)
        .collect();
    assert_eq!(early, ["claude", "codex", "gemini"]);
}
