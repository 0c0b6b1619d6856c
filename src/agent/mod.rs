//! Agents: how a prompt reaches an agent CLI, and how its reply is read and judged.
//!
//! Agent CLIs fail in odd ways: exit 0 with `"is_error": true` in their JSON, overload or
//! rate-limit text, empty replies, hangs. [`judge`] turns one finished process into a
//! [`Reply`] or a classified [`Failure`]; the runner decides about retries from the class.

pub mod presets;
pub mod sim;
pub mod spec;

use std::path::Path;

use crate::executor::{Exit, ProcessOutput};
use spec::{AgentSpec, PromptVia, ResultSpec};

/// The argv and stdin for one agent call. The prompt goes through stdin or a file; with
/// `prompt_via = "arg"` it is one argv element, never part of a shell string.
pub fn invocation(
    agent: &AgentSpec,
    prompt: &str,
    prompt_file: &Path,
) -> (Vec<String>, Option<Vec<u8>>) {
    let file = prompt_file.to_string_lossy();
    let argv = agent
        .command
        .iter()
        .map(|a| match agent.prompt_via {
            PromptVia::Arg if a == "{prompt}" => prompt.to_string(),
            PromptVia::Arg => a
                .replace("{prompt}", prompt)
                .replace("{prompt_file}", &file),
            _ => a.replace("{prompt_file}", &file),
        })
        .collect();
    let stdin = match agent.prompt_via {
        PromptVia::Stdin => Some(prompt.as_bytes().to_vec()),
        _ => None,
    };
    (argv, stdin)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    /// Overload, rate limit: matched a `retry_on` pattern; retried with backoff.
    Transient,
    Timeout,
    /// Non-zero exit or death by signal.
    Exit,
    /// The agent said it failed (`is_error: true`) while exiting 0.
    AgentError,
    /// The output could not be read as the configured result.
    BadOutput,
    /// A declared output file is missing after the run.
    MissingOutput,
    /// The `verify` command failed.
    Verify,
    Cancelled,
    /// orch could not start or drive the process.
    Launch,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// Whether trying again could help.
    pub fn retryable(&self) -> bool {
        !matches!(self.kind, FailureKind::Cancelled | FailureKind::Launch)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The first `retry_on` pattern found in `text` (case-insensitive).
pub fn transient_match<'a>(patterns: &'a [String], text: &str) -> Option<&'a str> {
    let lower = text.to_lowercase();
    patterns
        .iter()
        .find(|p| !p.is_empty() && lower.contains(&p.to_lowercase()))
        .map(String::as_str)
}

/// The last `n` characters of `text`, on a char boundary, for error messages.
pub fn tail(text: &str, n: usize) -> &str {
    let t = text.trim_end();
    if t.len() <= n {
        return t;
    }
    let mut start = t.len() - n;
    while !t.is_char_boundary(start) {
        start += 1;
    }
    &t[start..]
}

/// Judges one finished agent process by its exit, its output and the agent's result spec.
pub fn judge(agent: &AgentSpec, out: &ProcessOutput, root: &Path) -> Result<Reply, Failure> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.exit {
        Exit::Code(0) => {}
        Exit::TimedOut => {
            return Err(Failure::new(
                FailureKind::Timeout,
                "timed out; process group stopped",
            ))
        }
        Exit::Cancelled => return Err(Failure::new(FailureKind::Cancelled, "cancelled")),
        exit => {
            let both = format!("{stdout}\n{stderr}");
            if let Some(p) = transient_match(&agent.retry_on, &both) {
                return Err(Failure::new(
                    FailureKind::Transient,
                    format!("{exit}, transient error `{p}`: {}", tail(&both, 300)),
                ));
            }
            let detail = if stderr.trim().is_empty() {
                &stdout
            } else {
                &stderr
            };
            return Err(Failure::new(
                FailureKind::Exit,
                format!("{exit}: {}", tail(detail, 500)),
            ));
        }
    }
    if out.truncated && !matches!(agent.result, ResultSpec::File(_)) {
        return Err(Failure::new(
            FailureKind::BadOutput,
            "the agent's output passed the capture limit (64 MiB): its result would be cut short",
        ));
    }
    let reply = match &agent.result {
        ResultSpec::Stdout => Reply {
            text: stdout.into_owned(),
            usage: Usage::default(),
        },
        ResultSpec::JsonField(field) => json_reply(agent, &stdout, field)?,
        ResultSpec::File(rel) => {
            let path = root.join(rel);
            let bytes = std::fs::read(&path).map_err(|e| {
                Failure::new(
                    FailureKind::BadOutput,
                    format!("agent exited 0 but its result file {rel} is unreadable: {e}"),
                )
            })?;
            Reply {
                text: String::from_utf8_lossy(&bytes).into_owned(),
                usage: Usage::default(),
            }
        }
    };
    if reply.text.trim().is_empty() {
        let hint = if stderr.trim().is_empty() {
            String::new()
        } else {
            format!(" (stderr: {})", tail(&stderr, 300))
        };
        let kind = if transient_match(&agent.retry_on, &stderr).is_some() {
            FailureKind::Transient
        } else {
            FailureKind::BadOutput
        };
        return Err(Failure::new(
            kind,
            format!("agent returned an empty result{hint}"),
        ));
    }
    Ok(reply)
}

/// Reads a JSON reply: the whole stdout, or for streaming CLIs the last line that parses.
fn json_reply(agent: &AgentSpec, stdout: &str, field: &str) -> Result<Reply, Failure> {
    let doc: serde_json::Value = serde_json::from_str(stdout.trim())
        .ok()
        .or_else(|| {
            stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
                .filter(|v| v.is_object())
        })
        .ok_or_else(|| {
            let kind = if transient_match(&agent.retry_on, stdout).is_some() {
                FailureKind::Transient
            } else {
                FailureKind::BadOutput
            };
            Failure::new(
                kind,
                format!("expected JSON on stdout, got: {}", tail(stdout, 300)),
            )
        })?;
    let usage = Usage {
        cost_usd: doc
            .get("total_cost_usd")
            .or_else(|| doc.get("cost_usd"))
            .and_then(|v| v.as_f64()),
        input_tokens: doc.pointer("/usage/input_tokens").and_then(|v| v.as_u64()),
        output_tokens: doc.pointer("/usage/output_tokens").and_then(|v| v.as_u64()),
    };
    let is_error = doc
        .get("is_error")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
        || doc.get("error").is_some_and(|e| !e.is_null());
    if is_error {
        let msg = doc
            .get("result")
            .or_else(|| doc.get("error"))
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .or_else(|| doc.get("subtype").map(|s| s.to_string()))
            .unwrap_or_else(|| "no message".into());
        let kind = if transient_match(&agent.retry_on, &msg).is_some() {
            FailureKind::Transient
        } else {
            FailureKind::AgentError
        };
        return Err(Failure::new(
            kind,
            format!(
                "agent reported an error (is_error, exit 0): {}",
                tail(&msg, 500)
            ),
        ));
    }
    let mut value = &doc;
    for part in field.split('.') {
        value = value.get(part).ok_or_else(|| {
            Failure::new(
                FailureKind::BadOutput,
                format!("agent JSON has no field `{field}`"),
            )
        })?;
    }
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    Ok(Reply { text, usage })
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn reads_claude_json() {
        let r = judge(
            &claude(),
            &out(0, r#"{"type":"result","is_error":false,"result":"hi","total_cost_usd":0.01,"usage":{"input_tokens":5,"output_tokens":7}}"#, ""),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(r.text, "hi");
        assert_eq!(r.usage.cost_usd, Some(0.01));
        assert_eq!(r.usage.output_tokens, Some(7));
    }

    #[test]
    fn is_error_with_exit_zero_fails() {
        let e = judge(
            &claude(),
            &out(0, r#"{"type":"result","subtype":"error_during_execution","is_error":true,"result":"boom"}"#, ""),
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(e.kind, FailureKind::AgentError);
        assert!(e.message.contains("boom"));
    }

    #[test]
    fn overload_is_transient() {
        let e = judge(
            &claude(),
            &out(
                1,
                "",
                "API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}",
            ),
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(e.kind, FailureKind::Transient);
        let e = judge(
            &claude(),
            &out(0, r#"{"is_error":true,"result":"rate_limit exceeded"}"#, ""),
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(e.kind, FailureKind::Transient);
    }

    #[test]
    fn plain_failure_and_bad_json() {
        let e = judge(&claude(), &out(2, "", "no such model"), Path::new(".")).unwrap_err();
        assert_eq!(e.kind, FailureKind::Exit);
        assert!(e.message.contains("exit code 2"));
        let e = judge(&claude(), &out(0, "not json", ""), Path::new(".")).unwrap_err();
        assert_eq!(e.kind, FailureKind::BadOutput);
        let e = judge(
            &claude(),
            &out(0, r#"{"is_error":false}"#, ""),
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.message.contains("no field `result`"));
    }

    #[test]
    fn streaming_json_uses_the_last_object_line() {
        let stream =
            "{\"type\":\"system\"}\n{\"type\":\"result\",\"is_error\":false,\"result\":\"done\"}\n";
        assert_eq!(
            judge(&claude(), &out(0, stream, ""), Path::new("."))
                .unwrap()
                .text,
            "done"
        );
    }

    #[test]
    fn empty_stdout_result_is_a_failure() {
        let llm = presets::preset("llm").unwrap();
        let e = judge(&llm, &out(0, "  \n", ""), Path::new(".")).unwrap_err();
        assert_eq!(e.kind, FailureKind::BadOutput);
        assert_eq!(
            judge(&llm, &out(0, "ok", ""), Path::new(".")).unwrap().text,
            "ok"
        );
    }

    #[test]
    fn invocation_never_builds_a_shell_string() {
        let mut a = presets::preset("llm").unwrap();
        a.command = vec!["tool".into(), "--p".into(), "{prompt}".into()];
        a.prompt_via = PromptVia::Arg;
        let evil = "x'; rm -rf / #";
        let (argv, stdin) = invocation(&a, evil, Path::new("/tmp/p.md"));
        assert_eq!(argv, vec!["tool", "--p", evil]);
        assert!(stdin.is_none());
        let aider = presets::preset("aider").unwrap();
        let (argv, stdin) = invocation(&aider, "p", Path::new("/tmp/p.md"));
        assert!(argv.contains(&"/tmp/p.md".to_string()));
        assert!(stdin.is_none());
        let (_, stdin) = invocation(&claude(), "p", Path::new("/tmp/p.md"));
        assert_eq!(stdin.unwrap(), b"p");
    }
}
