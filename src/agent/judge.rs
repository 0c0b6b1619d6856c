//! Judging one finished agent process: its exit, what its format's [`reply`](super::reply)
//! parser read, and the agent's `result` spec give the answer or a classified failure, with
//! the run's usage, session and tool calls either way (a failed attempt costs money too).

use std::path::Path;

use super::outcome::{tail, transient_match, Failure, FailureKind, Usage};
use super::reply::{self, Activity, AgentError, Denial, ErrorClass, Parsed};
use super::spec::{AgentSpec, Permission, ReplyFormat, ResultSpec};
use crate::executor::{Exit, ProcessOutput};

/// HTTP statuses that say "try again later": timeouts, rate limits, server errors, overload.
const TRANSIENT_STATUSES: &[u16] = &[408, 409, 425, 429, 500, 502, 503, 504, 529];

/// One run of an agent, judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// The answer, or why there is none.
    pub result: Result<String, Failure>,
    pub usage: Usage,
    /// `usage` is the session's running total (see [`Parsed::usage_is_session_total`]).
    pub usage_is_session_total: bool,
    pub session_id: Option<String>,
    pub tools: Vec<Activity>,
}

/// Judges one finished agent process at permission `level`.
pub fn judge(agent: &AgentSpec, level: Permission, out: &ProcessOutput, root: &Path) -> Judged {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = match out.exit {
        Exit::Code(c) => Some(c),
        _ => None,
    };
    let parsed = match agent.format {
        ReplyFormat::Generic => Parsed::default(),
        f => reply::parse(f, root, &stdout, code, &stderr),
    };
    let result = match out.exit {
        exit @ Exit::TimedOut(_) => Err(Failure::new(FailureKind::Timeout, exit.to_string())),
        Exit::Cancelled => Err(Failure::new(FailureKind::Cancelled, "cancelled")),
        _ if agent.format == ReplyFormat::Generic => generic(agent, out, &stdout, &stderr, root),
        _ => formatted(agent, level, out, &stdout, &stderr, &parsed, root),
    };
    let result = result.map_err(|f| super::limits::classify(f, std::time::SystemTime::now()));
    let usage = match (&agent.format, &agent.result) {
        (ReplyFormat::Generic, ResultSpec::JsonField(_)) => reply::json_usage(&stdout),
        _ => parsed.usage,
    };
    Judged {
        result,
        usage,
        usage_is_session_total: parsed.usage_is_session_total,
        session_id: parsed.session_id,
        tools: parsed.tools,
    }
}

/// A CLI whose own output format orch reads: its error first, then refusals, then the answer.
fn formatted(
    agent: &AgentSpec,
    level: Permission,
    out: &ProcessOutput,
    stdout: &str,
    stderr: &str,
    parsed: &Parsed,
    root: &Path,
) -> Result<String, Failure> {
    if let Some(e) = &parsed.error {
        return Err(classify(agent, out.exit, e));
    }
    if !out.exit.success() {
        let detail = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        return Err(Failure::new(
            FailureKind::Exit,
            format!("{}: {}", out.exit, tail(detail, 500)),
        ));
    }
    if !parsed.denials.is_empty() {
        return Err(refused(agent, level, &parsed.denials));
    }
    check_capture(agent, out)?;
    let text = match &agent.result {
        ResultSpec::Reply => parsed.text.clone().ok_or_else(|| {
            let got = if stdout.trim().is_empty() {
                "nothing".to_string()
            } else {
                tail(stdout, 300).to_string()
            };
            Failure::new(
                FailureKind::BadOutput,
                format!(
                    "expected JSON on stdout, got: {got} (read as {}'s reply)",
                    agent.format.as_str()
                ),
            )
        })?,
        other => result_text(agent, other, stdout, root)?,
    };
    non_empty(text, "")
}

/// What an error the CLI reported means for a retry.
fn classify(agent: &AgentSpec, exit: Exit, e: &AgentError) -> Failure {
    let message = tail(&e.message, 500);
    let exit_text = if exit.success() {
        "exit 0".to_string()
    } else {
        exit.to_string()
    };
    match e.class {
        ErrorClass::MaxTurns => Failure::new(
            FailureKind::MaxTurns,
            format!("stopped at its turn limit ({exit_text}): {message}"),
        ),
        ErrorClass::UnknownSession => Failure::new(
            FailureKind::UnknownSession,
            format!("cannot resume the session ({exit_text}): {message}"),
        ),
        ErrorClass::Api | ErrorClass::Other => {
            let status = e.status.filter(|s| TRANSIENT_STATUSES.contains(s));
            let why = match (status, transient_match(&agent.retry_on, &e.message)) {
                (Some(s), _) => Some(format!("HTTP {s}")),
                (None, Some(p)) => Some(format!("`{p}`")),
                (None, None) => None,
            };
            match why {
                Some(why) => Failure::new(
                    FailureKind::Transient,
                    format!("{exit_text}, transient error ({why}): {message}"),
                ),
                None if exit.success() => Failure::new(
                    FailureKind::AgentError,
                    format!("agent reported an error (is_error, exit 0): {message}"),
                ),
                None => Failure::new(FailureKind::Exit, format!("{exit}: {message}")),
            }
        }
    }
}

/// The refusals, and the level that would have allowed them.
fn refused(agent: &AgentSpec, level: Permission, denials: &[Denial]) -> Failure {
    let edits = [
        "Write",
        "Edit",
        "MultiEdit",
        "NotebookEdit",
        "write_file",
        "replace",
        "apply_patch",
    ];
    let needed = denials
        .iter()
        .map(|d| {
            if edits.contains(&d.tool.as_str()) {
                Permission::Write
            } else {
                Permission::Full
            }
        })
        .max()
        .unwrap_or(Permission::Write);
    let list: Vec<String> = denials.iter().map(|d| d.to_string()).collect();
    let fix = if needed > level {
        format!(
            "if it should, set permissions = \"{}\" on the task or the agent",
            needed.as_str()
        )
    } else {
        format!(
            "{} refused it at permissions = \"{}\" by its own settings",
            agent.name,
            level.as_str()
        )
    };
    Failure::new(
        FailureKind::PermissionDenied,
        format!(
            "permission denied at permissions = \"{}\": {}; {fix}",
            level.as_str(),
            list.join("; ")
        ),
    )
}

fn check_capture(agent: &AgentSpec, out: &ProcessOutput) -> Result<(), Failure> {
    if out.truncated && !matches!(agent.result, ResultSpec::File(_)) {
        return Err(Failure::new(
            FailureKind::BadOutput,
            "the agent's output passed the capture limit (64 MiB): its result would be cut short",
        ));
    }
    Ok(())
}

fn non_empty(text: String, hint: &str) -> Result<String, Failure> {
    if text.trim().is_empty() {
        return Err(Failure::new(
            FailureKind::BadOutput,
            format!("agent returned an empty result{hint}"),
        ));
    }
    Ok(text)
}

/// An agent read by its `result` spec alone: exit codes, `is_error` and `retry_on` patterns
/// (on stderr's last lines or the JSON error's message, never the whole output).
fn generic(
    agent: &AgentSpec,
    out: &ProcessOutput,
    stdout: &str,
    stderr: &str,
    root: &Path,
) -> Result<String, Failure> {
    let stderr_tail = tail(stderr, 2000);
    if !out.exit.success() {
        if let Some(p) = transient_match(&agent.retry_on, stderr_tail) {
            return Err(Failure::new(
                FailureKind::Transient,
                format!("{}, transient error `{p}`: {}", out.exit, tail(stderr, 300)),
            ));
        }
        let detail = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        return Err(Failure::new(
            FailureKind::Exit,
            format!("{}: {}", out.exit, tail(detail, 500)),
        ));
    }
    check_capture(agent, out)?;
    let text = result_text(agent, &agent.result, stdout, root)?;
    if text.trim().is_empty() && transient_match(&agent.retry_on, stderr_tail).is_some() {
        return Err(Failure::new(
            FailureKind::Transient,
            format!(
                "agent returned an empty result (stderr: {})",
                tail(stderr, 300)
            ),
        ));
    }
    let hint = if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(" (stderr: {})", tail(stderr, 300))
    };
    non_empty(text, &hint)
}

/// The answer as a `result` spec reads it.
fn result_text(
    agent: &AgentSpec,
    spec: &ResultSpec,
    stdout: &str,
    root: &Path,
) -> Result<String, Failure> {
    match spec {
        ResultSpec::Reply | ResultSpec::Stdout => Ok(stdout.to_string()),
        ResultSpec::JsonField(field) => json_field(agent, stdout, field),
        ResultSpec::File(rel) => {
            let bytes = std::fs::read(root.join(rel)).map_err(|e| {
                Failure::new(
                    FailureKind::BadOutput,
                    format!("agent exited 0 but its result file {rel} is unreadable: {e}"),
                )
            })?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

/// A field of the JSON reply: the whole stdout, or for streaming CLIs the last line that
/// parses. An `is_error` or `error` in it is the agent's failure.
fn json_field(agent: &AgentSpec, stdout: &str, field: &str) -> Result<String, Failure> {
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
            Failure::new(
                FailureKind::BadOutput,
                format!("expected JSON on stdout, got: {}", tail(stdout, 300)),
            )
        })?;
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
    Ok(match value {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    })
}
