//! The JSON Schema of the Orchfile fields whose Rust type says less than the file does (a
//! duration is a string with units or a number of seconds, a count has a range, a string one
//! of a few choices): the `schema_with` of those fields in [`raw`](super::raw), with the
//! ranges from [`limits`] and the choices from the parser's own lists.

use schemars::{json_schema, Schema, SchemaGenerator};
use serde_json::json;

use crate::agent::presets::PRESET_NAMES;
use crate::plan::limits::{self, Count, Span};
use crate::plan::SIM_AGENT;

fn count(c: Count) -> Schema {
    json_schema!({
        "type": "integer",
        "minimum": c.min,
        "maximum": c.max,
    })
}

/// A duration: `90s`, `2m30s`, `500ms`, `1h` (units ms, s, m, h, d), or a number of seconds.
fn duration(span: Span) -> Schema {
    let mut number = json!({"type": "number", "maximum": span.max.as_secs()});
    if span.positive {
        number["exclusiveMinimum"] = json!(0);
    } else {
        number["minimum"] = json!(0);
    }
    json_schema!({
        "anyOf": [
            {
                "type": "string",
                "pattern": r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*(((ms|s|sec|secs|m|min|mins|h|hr|hrs|d)\s*)(([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d)\s*)*)?$",
            },
            number,
        ],
    })
}

fn one_of(choices: &[&str]) -> Schema {
    json_schema!({"type": "string", "enum": choices})
}

pub(super) fn jobs(_: &mut SchemaGenerator) -> Schema {
    count(limits::JOBS)
}

pub(super) fn max_parallel(_: &mut SchemaGenerator) -> Schema {
    count(limits::MAX_PARALLEL)
}

pub(super) fn retries(_: &mut SchemaGenerator) -> Schema {
    count(limits::RETRIES)
}

pub(super) fn inline_result_limit(_: &mut SchemaGenerator) -> Schema {
    count(limits::INLINE_RESULT_LIMIT)
}

pub(super) fn kill_grace(_: &mut SchemaGenerator) -> Schema {
    duration(limits::KILL_GRACE)
}

pub(super) fn retry_backoff(_: &mut SchemaGenerator) -> Schema {
    duration(limits::RETRY_BACKOFF)
}

pub(super) fn retry_backoff_max(_: &mut SchemaGenerator) -> Schema {
    duration(limits::RETRY_BACKOFF_MAX)
}

pub(super) fn timeout(_: &mut SchemaGenerator) -> Schema {
    duration(limits::TIMEOUT)
}

pub(super) fn estimate(_: &mut SchemaGenerator) -> Schema {
    duration(limits::ESTIMATE)
}

/// US dollars: a number, not negative.
pub(super) fn cost(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "number", "minimum": 0, "maximum": limits::MAX_COST_USD})
}

pub(super) fn max_quota_wait(_: &mut SchemaGenerator) -> Schema {
    duration(limits::MAX_QUOTA_WAIT)
}

/// `P0`..`P3` (or `p0`..`p3`, or 0..3), as the parser reads it.
pub(super) fn priority(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "string", "enum": ["P0", "P1", "P2", "P3", "p0", "p1", "p2", "p3"]},
            {"type": "integer", "minimum": 0, "maximum": 3},
        ],
    })
}

pub(super) fn preset(_: &mut SchemaGenerator) -> Schema {
    let mut names: Vec<&str> = PRESET_NAMES.to_vec();
    names.push(SIM_AGENT);
    one_of(&names)
}

pub(super) fn prompt_via(_: &mut SchemaGenerator) -> Schema {
    one_of(&["stdin", "arg", "file"])
}

pub(super) fn result(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": "^(stdout|reply|json:.+|file:.+)$"})
}

pub(super) fn strategy(_: &mut SchemaGenerator) -> Schema {
    one_of(&["concat", "structured", "agent"])
}

pub(super) fn on_missing(_: &mut SchemaGenerator) -> Schema {
    one_of(&["rerun", "fail"])
}

/// A glob or a task id (a string), or a list of strings.
pub(super) fn foreach(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
        ],
    })
}

/// `true`/`false`, or a list of globs.
pub(super) fn allow_writes(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "boolean"},
            {"type": "array", "items": {"type": "string"}},
        ],
    })
}

/// `read`, `write` or `full`.
pub(super) fn permissions(_: &mut SchemaGenerator) -> Schema {
    one_of(&["read", "write", "full"])
}

/// `none` or `worktree`.
pub(super) fn isolation(_: &mut SchemaGenerator) -> Schema {
    one_of(&crate::plan::Isolation::NAMES)
}

/// `claude`, `codex`, `gemini` or `generic`.
pub(super) fn reply_format(_: &mut SchemaGenerator) -> Schema {
    one_of(&["claude", "codex", "gemini", "generic"])
}

pub(super) fn executor(_: &mut SchemaGenerator) -> Schema {
    one_of(&["local", "slurm"])
}

pub(super) fn slurm_launch(_: &mut SchemaGenerator) -> Schema {
    one_of(&["batch", "step"])
}

pub(super) fn slurm_time(_: &mut SchemaGenerator) -> Schema {
    duration(limits::SLURM_TIME)
}

pub(super) fn slurm_poll(_: &mut SchemaGenerator) -> Schema {
    duration(limits::SLURM_POLL)
}

pub(super) fn slurm_output_wait(_: &mut SchemaGenerator) -> Schema {
    duration(limits::SLURM_OUTPUT_WAIT)
}

pub(super) fn slurm_allocation_idle(_: &mut SchemaGenerator) -> Schema {
    duration(limits::SLURM_ALLOCATION_IDLE)
}

pub(super) fn slurm_cpus(_: &mut SchemaGenerator) -> Schema {
    count(limits::SLURM_CPUS)
}

pub(super) fn slurm_max_jobs(_: &mut SchemaGenerator) -> Schema {
    count(limits::SLURM_MAX_JOBS)
}

/// `4G`, `500M`, `1024` (megabytes), as Slurm's `--mem` reads it; an integer is megabytes.
pub(super) fn slurm_mem(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "string", "pattern": "^[0-9]+[KMGTkmgt]?$"},
            {"type": "integer", "minimum": 1},
        ],
    })
}

/// A size: bytes, or a number with K, M, G or T (as `plan::parse_size` reads it).
pub(super) fn cache_max_size(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]*)?\s*([KkMmGgTt]([iI]?[bB])?|[bB])?\s*$"},
            {"type": "integer", "minimum": 1},
        ],
    })
}

pub(super) fn remote_cache(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": "^http://[^/]"})
}

pub(super) fn remote_cache_mode(_: &mut SchemaGenerator) -> Schema {
    one_of(&["read", "read-write"])
}

pub(super) fn remote_cache_connect_timeout(_: &mut SchemaGenerator) -> Schema {
    duration(limits::REMOTE_CACHE_CONNECT_TIMEOUT)
}

pub(super) fn remote_cache_stall_timeout(_: &mut SchemaGenerator) -> Schema {
    duration(limits::REMOTE_CACHE_STALL_TIMEOUT)
}

pub(super) fn remote_cache_auth(_: &mut SchemaGenerator) -> Schema {
    one_of(&["bearer", "basic"])
}
