//! What every format's reader shares: the parsed pieces of a run, and the helpers that turn
//! a CLI's tool calls, paths and error messages into orch's terms.

use std::path::Path;

use serde_json::Value;

use crate::agent::outcome::Usage;

/// One tool call an agent made, as its progress line and the execution log show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// `Write`, `Edit`, `Read`, `Bash`, or the CLI's own name for the tool.
    pub tool: String,
    /// What it acts on: a path (relative to the project when inside it), a command, a pattern.
    pub detail: String,
    /// The files it writes, relative to the project when inside it.
    pub writes: Vec<String>,
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let detail = one_line(&self.detail, 120);
        match (self.tool.as_str(), detail.is_empty()) {
            (_, true) => f.write_str(&self.tool),
            ("Bash", false) => write!(f, "Bash: {detail}"),
            (tool, false) => write!(f, "{tool} {detail}"),
        }
    }
}

/// A tool call the CLI refused for lack of permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub tool: String,
    /// The path or command it was refused, when the CLI says.
    pub target: Option<String>,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Some(t) => write!(f, "{} {}", self.tool, one_line(t, 120)),
            None => f.write_str(&self.tool),
        }
    }
}

/// What kind of error the CLI reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The model API failed; `status` says how (429, 500, 529...) when known.
    Api,
    /// The run stopped at its turn limit.
    MaxTurns,
    /// `--resume` named a session the CLI does not have.
    UnknownSession,
    /// Anything else the CLI reported as an error.
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentError {
    pub class: ErrorClass,
    /// The HTTP status of a failed API call, from the CLI's structured fields.
    pub status: Option<u16>,
    /// The CLI's own message (`API Error: 500 ...`).
    pub message: String,
}

/// Everything read from one run's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The final answer, if the CLI gave one.
    pub text: Option<String>,
    pub error: Option<AgentError>,
    pub usage: Usage,
    /// The usage is the session's running total rather than this run's (codex after a
    /// resume): the caller subtracts what earlier runs of the session used.
    pub usage_is_session_total: bool,
    pub session_id: Option<String>,
    pub tools: Vec<Activity>,
    pub denials: Vec<Denial>,
}

/// What a format keeps between lines.
#[derive(Default)]
pub(super) struct State {
    /// The CLI's closing object (claude's `result`, gemini's `result`) was read.
    pub(super) result_seen: bool,
    /// claude: message ids already counted, and their usage, for a run that ended without
    /// a result object.
    pub(super) seen_messages: Vec<String>,
    pub(super) stream_usage: Usage,
    /// gemini: tool calls by id (name, target), to name a refused call by its result.
    pub(super) pending_tools: Vec<(String, String, Option<String>)>,
    /// gemini: the assistant's text, which stream-json sends in pieces.
    pub(super) text: String,
}

pub(super) fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// A string field, if there is one.
pub(super) fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

pub(super) fn number(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

/// `path` relative to the project root when it lies inside it (the CLIs name files by
/// absolute path, sometimes through the root's canonical form).
pub(super) fn relative(root: &Path, path: &str) -> String {
    let p = Path::new(path);
    let inside = p
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .ok()
        .or_else(|| {
            let canonical = root.canonicalize().ok()?;
            p.strip_prefix(canonical).map(Path::to_path_buf).ok()
        });
    match inside {
        Some(r) if !r.as_os_str().is_empty() => r.to_string_lossy().into_owned(),
        _ => path.to_string(),
    }
}

/// The last lines of `text` that fit in about `max` bytes (whole lines, unless one line is
/// longer), for an error message taken from a CLI's stderr.
pub(super) fn tail_lines(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    match cut.find('\n') {
        Some(i) if i + 1 < cut.len() => cut[i + 1..].to_string(),
        _ => cut.to_string(),
    }
}

/// The first line of `s`, at most `max` characters, for one-line displays.
pub fn one_line(s: &str, max: usize) -> String {
    let first = s.trim().lines().next().unwrap_or("").trim();
    let mut out: String = first.chars().take(max).collect();
    if out.len() < first.len() || s.trim().lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

/// A tool call named the way orch shows it, from a CLI's tool name and its input.
pub(super) fn activity(root: &Path, tool: &str, input: &Value) -> Activity {
    let path = ["file_path", "path", "notebook_path", "absolute_path"]
        .iter()
        .find_map(|k| text(input, k))
        .map(|p| relative(root, p));
    let command = text(input, "command").or_else(|| text(input, "cmd"));
    let (name, writes) = match tool {
        "Write" | "write_file" => ("Write", true),
        "Edit" | "MultiEdit" | "replace" | "NotebookEdit" => ("Edit", true),
        "Read" | "read_file" | "read_many_files" => ("Read", false),
        "Bash" | "run_shell_command" | "exec_command" | "shell" => ("Bash", false),
        "Grep" | "grep_search" | "search_file_content" => ("Grep", false),
        "Glob" | "glob" => ("Glob", false),
        other => (other, false),
    };
    let detail = match (name, &path, command) {
        ("Bash", _, Some(c)) => c.to_string(),
        (_, Some(p), _) => p.clone(),
        _ => ["pattern", "query", "url", "description", "prompt"]
            .iter()
            .find_map(|k| text(input, k))
            .unwrap_or("")
            .to_string(),
    };
    Activity {
        tool: name.to_string(),
        detail,
        writes: if writes {
            path.into_iter().collect()
        } else {
            Vec::new()
        },
    }
}

/// The HTTP status inside an error message that embeds the API's JSON error
/// (`{"error":{"code":500,...}}`), or names it the way the CLIs do (`API Error: 500`,
/// `status: 429`, `(429)`). Only the message is searched, and only whole numbers count.
pub(super) fn status_in_message(message: &str) -> Option<u16> {
    if let Some(i) = message.find('{') {
        let inner = &message[i..];
        let end = inner.rfind('}').map_or(inner.len(), |e| e + 1);
        if let Ok(v) = serde_json::from_str::<Value>(&inner[..end]) {
            if let Some(c) = v
                .pointer("/error/code")
                .or_else(|| v.get("code"))
                .and_then(Value::as_u64)
            {
                return u16::try_from(c).ok();
            }
        }
    }
    let lower = message.to_ascii_lowercase();
    for marker in [
        "api error: ",
        "last status: ",
        "unexpected status ",
        "status: ",
        "status ",
        "(",
    ] {
        let mut from = 0;
        while let Some(at) = lower[from..].find(marker) {
            let start = from + at + marker.len();
            let digits: String = lower[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let next = lower[start + digits.len()..].chars().next();
            if digits.len() == 3 && !next.is_some_and(|c| c.is_ascii_alphanumeric()) {
                if let Ok(code) = digits.parse::<u16>() {
                    if (400..600).contains(&code) {
                        return Some(code);
                    }
                }
            }
            from = start;
        }
    }
    None
}
