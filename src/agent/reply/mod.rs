//! Reading what an agent CLI printed, per [`ReplyFormat`]: the answer, the error the CLI
//! reported (with its HTTP status where it gives one), the tools it called and the calls it
//! was refused, its session id and what the run cost. Each CLI has a file; they share
//! [`Parsed`], and [`Stream`] reads one JSON line at a time, so the same code serves the
//! live view of a running agent and the judgement of its whole output.
//!
//! Classifying failures reads these structured fields first (`api_error_status`, exit codes,
//! error objects); a text pattern is only ever tried on the error message itself.

mod claude;
mod codex;
mod common;
mod gemini;

use std::path::Path;

use serde_json::Value;

use crate::agent::outcome::Usage;
use crate::agent::spec::ReplyFormat;
pub use common::{one_line, Activity, AgentError, Denial, ErrorClass, Parsed};
use common::{trim_ascii, State};

/// What one line of a streaming CLI's stdout says.
#[derive(Debug, Default, PartialEq)]
pub struct LineNews {
    pub session_id: Option<String>,
    pub activity: Option<Activity>,
}

/// Reads a CLI's JSON lines one at a time (the whole output, or each line as it arrives).
pub struct Stream<'a> {
    format: ReplyFormat,
    root: &'a Path,
    parsed: Parsed,
    state: State,
}

impl<'a> Stream<'a> {
    pub fn new(format: ReplyFormat, root: &'a Path) -> Stream<'a> {
        Stream {
            format,
            root,
            parsed: Parsed::default(),
            state: State::default(),
        }
    }

    /// Reads one line; what it tells about the run in progress.
    pub fn line(&mut self, line: &[u8]) -> LineNews {
        let Ok(v) = serde_json::from_slice::<Value>(trim_ascii(line)) else {
            return LineNews::default();
        };
        if !v.is_object() {
            return LineNews::default();
        }
        self.value(&v)
    }

    fn value(&mut self, v: &Value) -> LineNews {
        let before = self.parsed.session_id.is_some();
        let activity = match self.format {
            ReplyFormat::Claude => claude::line(v, self.root, &mut self.parsed, &mut self.state),
            ReplyFormat::Codex => codex::line(v, self.root, &mut self.parsed),
            ReplyFormat::Gemini => gemini::line(v, self.root, &mut self.parsed, &mut self.state),
            ReplyFormat::Generic => None,
        };
        if let Some(a) = &activity {
            self.parsed.tools.push(a.clone());
        }
        LineNews {
            session_id: if before {
                None
            } else {
                self.parsed.session_id.clone()
            },
            activity,
        }
    }

    /// The run as a whole, once it ended with `code` and printed `stderr`.
    pub fn finish(mut self, code: Option<i32>, stderr: &str) -> Parsed {
        match self.format {
            ReplyFormat::Claude => claude::finish(&mut self.parsed, &self.state, stderr),
            ReplyFormat::Codex => codex::finish(&mut self.parsed, stderr),
            ReplyFormat::Gemini => gemini::finish(&mut self.parsed, &mut self.state, code, stderr),
            ReplyFormat::Generic => {}
        }
        self.parsed
    }
}

/// Reads a whole output: JSON lines, or one JSON document (gemini's and claude's `json`
/// output formats, pretty-printed or not).
pub fn parse(
    format: ReplyFormat,
    root: &Path,
    stdout: &str,
    code: Option<i32>,
    stderr: &str,
) -> Parsed {
    let mut stream = Stream::new(format, root);
    match serde_json::from_str::<Value>(stdout.trim()) {
        Ok(v) if v.is_object() => {
            stream.value(&v);
        }
        _ => {
            for line in stdout.lines() {
                stream.line(line.as_bytes());
            }
        }
    }
    stream.finish(code, stderr)
}

/// The usage in a generic agent's JSON reply (the last JSON object on stdout), read the way
/// claude's is: `total_cost_usd` (or `cost_usd`) and `usage.input_tokens`, `output_tokens`,
/// `cache_read_input_tokens`, `cache_creation_input_tokens`.
pub fn json_usage(stdout: &str) -> Usage {
    let doc = serde_json::from_str::<Value>(stdout.trim())
        .ok()
        .or_else(|| {
            stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        });
    let Some(doc) = doc.filter(Value::is_object) else {
        return Usage::default();
    };
    let mut usage = doc.get("usage").map(claude::usage_of).unwrap_or_default();
    usage.cost_usd = doc
        .get("total_cost_usd")
        .or_else(|| doc.get("cost_usd"))
        .and_then(Value::as_f64);
    usage
}

#[cfg(test)]
mod tests;
