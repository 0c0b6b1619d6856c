//! claude's `--output-format stream-json --verbose` (JSON lines: `system/init`, `assistant`
//! messages with `tool_use` blocks, `user` tool results, then one `result` object) and
//! `--output-format json` (the `result` object alone). The `result` object carries
//! `is_error`, `subtype` (`error_max_turns`, `error_during_execution`), `result` (the answer,
//! or `API Error: 500 ...`), `api_error_status`, `errors`, `permission_denials`,
//! `session_id`, `total_cost_usd` and `usage`.

use std::path::Path;

use serde_json::Value;

use super::common::State;
use super::common::{
    activity, number, relative, text, Activity, AgentError, Denial, ErrorClass, Parsed,
};
use crate::agent::outcome::Usage;

pub(super) fn line(v: &Value, root: &Path, p: &mut Parsed, state: &mut State) -> Option<Activity> {
    if let Some(id) = text(v, "session_id") {
        p.session_id.get_or_insert_with(|| id.to_string());
    }
    match text(v, "type") {
        Some("assistant") => {
            let message = v.get("message")?;
            // One message comes as one event per content block, each with the message's
            // usage so far: count a message once (only used when no result object comes).
            if let Some(id) = text(message, "id") {
                if !state.seen_messages.iter().any(|m| m == id) {
                    state.seen_messages.push(id.to_string());
                    if let Some(u) = message.get("usage") {
                        state.stream_usage.add(&usage_of(u));
                    }
                }
            }
            let blocks = message.get("content")?.as_array()?;
            blocks
                .iter()
                .filter(|b| text(b, "type") == Some("tool_use"))
                .map(|b| {
                    let name = text(b, "name").unwrap_or("tool");
                    activity(root, name, b.get("input").unwrap_or(&Value::Null))
                })
                .next_back()
        }
        Some("result") => {
            state.result_seen = true;
            result(v, root, p);
            None
        }
        // The `json` format of older claude versions and of stand-ins: no `type`.
        None if v.get("is_error").is_some() || v.get("result").is_some() => {
            state.result_seen = true;
            result(v, root, p);
            None
        }
        _ => None,
    }
}

pub(super) fn usage_of(u: &Value) -> Usage {
    let new = number(u, "/input_tokens");
    let read = number(u, "/cache_read_input_tokens");
    let written = number(u, "/cache_creation_input_tokens");
    Usage {
        cost_usd: None,
        input_tokens: new.map(|n| n + read.unwrap_or(0) + written.unwrap_or(0)),
        cache_read_tokens: read,
        cache_write_tokens: written,
        output_tokens: number(u, "/output_tokens"),
    }
}

fn result(v: &Value, root: &Path, p: &mut Parsed) {
    let mut usage = v.get("usage").map(usage_of).unwrap_or_default();
    usage.cost_usd = v
        .get("total_cost_usd")
        .or_else(|| v.get("cost_usd"))
        .and_then(Value::as_f64);
    p.usage = usage;
    p.denials = v
        .get("permission_denials")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    let input = d.get("tool_input").unwrap_or(&Value::Null);
                    let target = ["file_path", "path", "notebook_path"]
                        .iter()
                        .find_map(|k| text(input, k))
                        .map(|f| relative(root, f))
                        .or_else(|| text(input, "command").map(str::to_string));
                    Denial {
                        tool: text(d, "tool_name").unwrap_or("a tool").to_string(),
                        target,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let is_error = v.get("is_error").and_then(Value::as_bool).unwrap_or(false);
    let answer = match v.get("result") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    if !is_error {
        p.text = answer;
        return;
    }
    let errors: Vec<&str> = v
        .get("errors")
        .and_then(Value::as_array)
        .map(|es| es.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let subtype = text(v, "subtype").unwrap_or("");
    let message = answer
        .filter(|a| !a.trim().is_empty())
        .or_else(|| (!errors.is_empty()).then(|| errors.join("; ")))
        .unwrap_or_else(|| format!("{subtype} (no message)"));
    let status = number(v, "/api_error_status").and_then(|s| u16::try_from(s).ok());
    let class = if subtype == "error_max_turns" || text(v, "terminal_reason") == Some("max_turns") {
        ErrorClass::MaxTurns
    } else if errors
        .iter()
        .any(|e| e.starts_with("No conversation found with session ID"))
    {
        ErrorClass::UnknownSession
    } else if status.is_some() || text(v, "terminal_reason") == Some("api_error") {
        ErrorClass::Api
    } else {
        ErrorClass::Other
    };
    p.error = Some(AgentError {
        class,
        status: status.or_else(|| super::common::status_in_message(&message)),
        message,
    });
}

pub(super) fn finish(p: &mut Parsed, state: &State, stderr: &str) {
    if !state.result_seen {
        // Killed, timed out or failed before answering: what the requests so far used.
        p.usage = state.stream_usage.clone();
        let message = stderr.trim();
        if !message.is_empty() {
            p.error = Some(AgentError {
                class: ErrorClass::Other,
                status: super::common::status_in_message(message),
                message: super::common::tail_lines(message, 500),
            });
        }
    }
}
