//! codex's `exec --json`: JSON lines of one thread's events. `thread.started` names the
//! thread (the session id), `item.started`/`item.completed` carry `command_execution`,
//! `file_change` and `agent_message` items, and the run ends with `turn.completed` (its
//! `usage`, the thread's running total) or `turn.failed` (`error.message`, where the HTTP
//! status is only in the text). Refused writes are not events: codex logs them on stderr
//! (`ERROR codex_core::tools::router: error=patch rejected: ...`).

use std::path::Path;

use serde_json::Value;

use super::common::{
    activity, number, relative, text, Activity, AgentError, Denial, ErrorClass, Parsed,
};
use crate::agent::outcome::Usage;

pub(super) fn line(v: &Value, root: &Path, p: &mut Parsed) -> Option<Activity> {
    match text(v, "type")? {
        "thread.started" => {
            p.session_id = text(v, "thread_id").map(str::to_string);
            None
        }
        // A tool call shows when it starts; items that only complete (a quick command) show
        // then. `tools` remembers which were shown, by item id, through their detail.
        "item.started" => item_activity(v.get("item")?, root),
        "item.completed" => {
            let item = v.get("item")?;
            match text(item, "type")? {
                "agent_message" => {
                    p.text = text(item, "text").map(str::to_string);
                    None
                }
                _ => {
                    let a = item_activity(item, root)?;
                    (!p.tools.contains(&a)).then_some(a)
                }
            }
        }
        "turn.completed" => {
            // Errors reported on the way (a stream that reconnected) did not end the turn.
            p.error = None;
            let u = v.get("usage")?;
            p.usage = Usage {
                cost_usd: None,
                input_tokens: number(u, "/input_tokens"),
                cache_read_tokens: number(u, "/cached_input_tokens"),
                cache_write_tokens: number(u, "/cache_write_input_tokens"),
                output_tokens: number(u, "/output_tokens"),
            };
            None
        }
        "turn.failed" | "error" => {
            let message = v
                .pointer("/error/message")
                .or_else(|| v.get("message"))
                .and_then(Value::as_str)?;
            p.error = Some(AgentError {
                class: ErrorClass::Api,
                status: super::common::status_in_message(message),
                message: message.to_string(),
            });
            None
        }
        _ => None,
    }
}

fn item_activity(item: &Value, root: &Path) -> Option<Activity> {
    match text(item, "type")? {
        "command_execution" => {
            let command = text(item, "command")?;
            Some(Activity {
                tool: "Bash".into(),
                detail: unwrap_shell(command).to_string(),
                writes: Vec::new(),
            })
        }
        "file_change" => {
            let changes = item.get("changes")?.as_array()?;
            let paths: Vec<String> = changes
                .iter()
                .filter_map(|c| text(c, "path"))
                .map(|p| relative(root, p))
                .collect();
            let tool = match changes.first().and_then(|c| text(c, "kind")) {
                Some("add") => "Write",
                Some("delete") => "Delete",
                _ => "Edit",
            };
            Some(Activity {
                tool: tool.into(),
                detail: paths.join(", "),
                writes: paths,
            })
        }
        "mcp_tool_call" => Some(activity(
            root,
            text(item, "tool").unwrap_or("mcp"),
            item.get("arguments").unwrap_or(&Value::Null),
        )),
        "web_search" => Some(Activity {
            tool: "WebSearch".into(),
            detail: text(item, "query").unwrap_or("").to_string(),
            writes: Vec::new(),
        }),
        _ => None,
    }
}

/// `npm test` out of `/bin/bash -lc 'npm test'`, as codex reports its commands.
fn unwrap_shell(command: &str) -> &str {
    for prefix in [
        "/bin/bash -lc ",
        "bash -lc ",
        "/bin/sh -c ",
        "sh -c ",
        "/bin/zsh -lc ",
    ] {
        if let Some(rest) = command.strip_prefix(prefix) {
            let quoted = rest.len() >= 2
                && (rest.starts_with('\'') && rest.ends_with('\'')
                    || rest.starts_with('"') && rest.ends_with('"'));
            return if quoted {
                &rest[1..rest.len() - 1]
            } else {
                rest
            };
        }
    }
    command
}

pub(super) fn finish(p: &mut Parsed, stderr: &str) {
    p.usage_is_session_total = true;
    for l in stderr.lines() {
        // The sandbox's refusals, from codex's own log lines (never the echoed prompt).
        if let Some((_, error)) = l.split_once(" codex_core::tools::router: error=") {
            if error.contains("rejected") || error.contains("blocked") {
                p.denials.push(Denial {
                    tool: if error.starts_with("patch") {
                        "apply_patch".into()
                    } else {
                        "tool".into()
                    },
                    target: Some(error.trim().to_string()),
                });
            }
        }
    }
    if p.error.is_some() || p.text.is_some() {
        return;
    }
    // No thread at all: codex refused to start (not in a repository, a bad resume).
    let message: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Reading additional input from stdin...")
        .collect();
    if message.is_empty() {
        return;
    }
    let message = super::common::tail_lines(&message.join("\n"), 500);
    let class = if message.contains("no rollout found for thread id") {
        ErrorClass::UnknownSession
    } else {
        ErrorClass::Other
    };
    p.error = Some(AgentError {
        class,
        status: None,
        message,
    });
}
