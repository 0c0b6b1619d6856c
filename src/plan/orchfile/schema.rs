//! `orch schema`: the JSON Schema of Orchfile.toml, for editors (taplo, Even Better TOML:
//! the `#:schema` line `orch init` writes). It is generated from the parser's own
//! structures ([`raw`](super::raw)): their fields, serde attributes and doc comments give
//! the properties, their types, which are optional and their descriptions; the ranges come
//! from `plan::limits`, the choices from the parser's lists, the defaults from the model's
//! `Default`s. So nothing here can say a field exists that the parser refuses, or miss one
//! it accepts.
//!
//! The fields whose Rust type says less than the file does get theirs from
//! [`field_schema`](super::field_schema).

use serde_json::{json, Value};

use super::raw::RawOrchfile;
use crate::duration::format_exact;
use crate::plan::Settings;

/// The schema's own URI, which says which file format it describes (contract v2).
pub const SCHEMA_ID: &str = "urn:orch:orchfile:v2";

/// The JSON Schema of Orchfile.toml, as `orch schema` prints it.
pub fn orchfile_schema() -> Value {
    let mut v = schemars::schema_for!(RawOrchfile).to_value();
    v["$id"] = json!(SCHEMA_ID);
    v["x-generated-by"] = json!(format!("orch {}", env!("CARGO_PKG_VERSION")));
    add_defaults(&mut v);
    unwrap_descriptions(&mut v);
    v
}

/// Doc comments are wrapped at 100 columns; a description reads as one paragraph.
fn unwrap_descriptions(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                match x {
                    Value::String(text) if k == "description" => {
                        *text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    }
                    _ => unwrap_descriptions(x),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// Defaults, from the model's own `Default`s (and the parser's fallbacks), at the places a
/// schema reader looks for them.
fn add_defaults(v: &mut Value) {
    let s = Settings::default();
    let defaults = [
        (
            "RawSettings",
            "state_dir",
            json!(s.state_dir.to_string_lossy()),
        ),
        ("RawSettings", "default_agent", json!(s.default_agent)),
        ("RawSettings", "keep_going", json!(s.keep_going)),
        (
            "RawSettings",
            "kill_grace",
            json!(format_exact(s.kill_grace)),
        ),
        (
            "RawSettings",
            "retry_backoff",
            json!(format_exact(s.retry_backoff)),
        ),
        (
            "RawSettings",
            "retry_backoff_max",
            json!(format_exact(s.retry_backoff_max)),
        ),
        (
            "RawSettings",
            "inline_result_limit",
            json!(s.inline_result_limit),
        ),
        ("RawSettings", "strict", json!(s.strict)),
        ("RawSettings", "allow_outside_root", json!(false)),
        ("RawSettings", "cache", json!(s.cache.enabled)),
        (
            "RawSettings",
            "cache_max_size",
            json!(format!("{}G", s.cache.max_size >> 30)),
        ),
        ("RawSettings", "remote_cache_mode", json!("read-write")),
        ("RawSettings", "remote_cache_auth", json!("bearer")),
        (
            "RawSettings",
            "remote_cache_connect_timeout",
            json!(format_exact(crate::plan::DEFAULT_REMOTE_CONNECT_TIMEOUT)),
        ),
        (
            "RawSettings",
            "remote_cache_stall_timeout",
            json!(format_exact(crate::plan::DEFAULT_REMOTE_STALL_TIMEOUT)),
        ),
        ("RawTask", "cache", json!(true)),
        (
            "RawTask",
            "priority",
            json!(format!("P{}", crate::plan::Priority::default().0)),
        ),
        ("RawTask", "retries", json!(0)),
        ("RawAgent", "retries", json!(0)),
        ("RawAggregate", "strategy", json!("concat")),
        ("RawAggregate", "on_missing", json!("rerun")),
    ];
    for (def, field, value) in defaults {
        if let Some(p) = v
            .pointer_mut(&format!("/$defs/{def}/properties/{field}"))
            .and_then(Value::as_object_mut)
        {
            p.insert("default".into(), value);
        }
    }
}
