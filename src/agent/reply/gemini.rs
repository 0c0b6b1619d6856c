//! gemini's `-o stream-json` (JSON lines: `init` with the session id, `tool_use` and
//! `tool_result`, the assistant's `message` in `delta` pieces, then `result` with `status`,
//! `stats` and, on failure, `error`) and `-o json` (one object: `session_id`, `response`,
//! `stats.models.<model>.tokens`, or `error`). A failed json run prints its error object on
//! stderr instead; the exit code is then the HTTP status truncated to a byte (500 -> 244,
//! 429 -> 173, 529 -> 17), 53 at the session's turn limit, 42 for a session it cannot resume.

use std::path::Path;

use serde_json::Value;

use super::common::State;
use super::common::{activity, number, text, Activity, AgentError, Denial, ErrorClass, Parsed};
use crate::agent::outcome::Usage;

/// Tools gemini offers only at some approval modes: a call to one it did not offer is a
/// refusal, not a model's mistake.
const GATED_TOOLS: &[&str] = &["write_file", "replace", "run_shell_command", "web_fetch"];

pub(super) fn line(v: &Value, root: &Path, p: &mut Parsed, state: &mut State) -> Option<Activity> {
    if let Some(id) = text(v, "session_id") {
        p.session_id.get_or_insert_with(|| id.to_string());
    }
    match text(v, "type") {
        Some("tool_use") => {
            let name = text(v, "tool_name").unwrap_or("tool");
            let params = v.get("parameters").unwrap_or(&Value::Null);
            let a = activity(root, name, params);
            let target = a
                .writes
                .first()
                .cloned()
                .or_else(|| (!a.detail.is_empty()).then(|| a.detail.clone()));
            state.pending_tools.push((
                text(v, "tool_id").unwrap_or("").to_string(),
                name.to_string(),
                target,
            ));
            Some(a)
        }
        Some("tool_result") if text(v, "status") == Some("error") => {
            let kind = v
                .pointer("/error/type")
                .and_then(Value::as_str)
                .unwrap_or("");
            let id = text(v, "tool_id").unwrap_or("");
            if let Some((_, name, target)) = state.pending_tools.iter().find(|(t, _, _)| t == id) {
                let refused = kind == "tool_not_registered" && GATED_TOOLS.contains(&name.as_str())
                    || kind.contains("policy")
                    || kind.contains("denied");
                if refused {
                    p.denials.push(Denial {
                        tool: name.clone(),
                        target: target.clone(),
                    });
                }
            }
            None
        }
        Some("message") if text(v, "role") == Some("assistant") => {
            let piece = text(v, "content").unwrap_or("");
            if v.get("delta").and_then(Value::as_bool) == Some(true) {
                state.text.push_str(piece);
            } else {
                state.text = piece.to_string();
            }
            None
        }
        Some("result") => {
            state.result_seen = true;
            if let Some(stats) = v.get("stats") {
                p.usage = Usage {
                    cost_usd: None,
                    input_tokens: number(stats, "/input_tokens"),
                    cache_read_tokens: number(stats, "/cached"),
                    cache_write_tokens: None,
                    output_tokens: number(stats, "/output_tokens"),
                };
            }
            if text(v, "status") == Some("error") || v.get("error").is_some_and(|e| !e.is_null()) {
                p.error = Some(error_of(v.get("error").unwrap_or(&Value::Null)));
            }
            None
        }
        // `-o json`: the whole run in one object.
        None if v.get("response").is_some() || v.get("error").is_some() => {
            state.result_seen = true;
            p.text = text(v, "response").map(str::to_string);
            p.usage = json_usage(v);
            if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
                p.error = Some(error_of(e));
            }
            None
        }
        _ => None,
    }
}

/// `-o json` stats: every model's tokens, the router's side calls included (they are paid
/// for too). `prompt` counts the cached tokens; `thoughts` are billed as output.
fn json_usage(v: &Value) -> Usage {
    let mut u = Usage::default();
    let Some(models) = v.pointer("/stats/models").and_then(Value::as_object) else {
        return u;
    };
    for m in models.values() {
        let t = |k: &str| number(m, &format!("/tokens/{k}"));
        u.add(&Usage {
            cost_usd: None,
            input_tokens: t("prompt"),
            cache_read_tokens: t("cached"),
            cache_write_tokens: None,
            output_tokens: t("candidates").map(|c| c + t("thoughts").unwrap_or(0)),
        });
    }
    u
}

fn error_of(e: &Value) -> AgentError {
    let raw = text(e, "message").unwrap_or("gemini reported an error");
    // stream-json wraps the API's answer: `[API Error: {"error":{"code":500,...}}]`.
    let message = raw
        .strip_prefix('[')
        .and_then(|m| {
            m.split_once(']')
                .map(|(inner, rest)| format!("{inner}{rest}"))
        })
        .unwrap_or_else(|| raw.to_string());
    let code = number(e, "/code").and_then(|c| u16::try_from(c).ok());
    let class = match (text(e, "type"), code) {
        (Some("FatalTurnLimitedError"), _) | (_, Some(53)) => ErrorClass::MaxTurns,
        _ => ErrorClass::Api,
    };
    AgentError {
        class,
        status: code
            .filter(|c| (400..600).contains(c))
            .or_else(|| super::common::status_in_message(&message)),
        message,
    }
}

/// The HTTP status an exit code stands for: gemini exits with the status truncated to a byte.
fn status_of_exit(code: i32) -> Option<u16> {
    [408u16, 429, 500, 502, 503, 504, 529]
        .into_iter()
        .find(|s| i32::from(*s & 0xff) == code)
}

pub(super) fn finish(p: &mut Parsed, state: &mut State, code: Option<i32>, stderr: &str) {
    if !state.text.is_empty() && p.text.is_none() {
        p.text = Some(std::mem::take(&mut state.text));
    }
    if p.error.is_none() && !state.result_seen {
        // `-o json` failures: the error object on stderr, each `{` starting a line (at the
        // turn limit twice, the second after `[ERROR] `).
        let object = stderr
            .match_indices('{')
            .filter(|(i, _)| *i == 0 || stderr[..*i].ends_with('\n'))
            .filter_map(|(i, _)| {
                serde_json::Deserializer::from_str(&stderr[i..])
                    .into_iter::<Value>()
                    .next()?
                    .ok()
            })
            .find(|v| v.get("error").is_some());
        if let Some(obj) = object {
            p.session_id = p
                .session_id
                .take()
                .or_else(|| text(&obj, "session_id").map(str::to_string));
            p.error = Some(error_of(&obj["error"]));
        } else if let Some(line) = stderr
            .lines()
            .find(|l| l.starts_with("Error resuming session"))
        {
            p.error = Some(AgentError {
                class: ErrorClass::UnknownSession,
                status: None,
                message: line.trim().to_string(),
            });
        } else if code.is_some_and(|c| c != 0) {
            // Refused before any request (untrusted folder, auth): its message is on stderr,
            // after the start-up warnings.
            let message: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("Warning: 256-color")
                        && !l.starts_with("Ripgrep is not available")
                        && !l.starts_with("[STARTUP]")
                })
                .collect();
            if !message.is_empty() {
                p.error = Some(AgentError {
                    class: ErrorClass::Other,
                    status: None,
                    message: super::common::tail_lines(&message.join("\n"), 500),
                });
            }
        }
    }
    if let (Some(e), Some(c)) = (&mut p.error, code) {
        if e.class == ErrorClass::Api && e.status.is_none() {
            e.status = status_of_exit(c);
        }
        if c == 53 {
            e.class = ErrorClass::MaxTurns;
        }
    }
}
