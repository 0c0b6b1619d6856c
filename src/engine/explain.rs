//! Why a task is not up to date: compares its last recorded success with its fingerprint now.

use crate::disk::Digest;
use crate::fingerprint::DefinitionFields;
use crate::state::TaskRecord;

/// The parts of a fingerprint, kept apart so `explain` can say which one changed.
#[derive(Debug, Clone)]
pub struct FingerprintParts {
    pub definition: Digest,
    /// The definition by field, recorded so `explain` can name the field that changed.
    pub definition_fields: DefinitionFields,
    pub inputs: Vec<(String, Digest)>,
    pub deps: Vec<(String, Digest)>,
    pub value: Digest,
}

/// A one-line reason naming the first part that changed.
pub fn diff_reason(prev: &TaskRecord, now: &FingerprintParts) -> String {
    reasons(prev, now)
        .into_iter()
        .next()
        .unwrap_or_else(|| "fingerprint changed".into())
}

/// Every difference between the recorded run and now, most fundamental first.
pub fn reasons(prev: &TaskRecord, now: &FingerprintParts) -> Vec<String> {
    let mut out = Vec::new();
    if prev.definition != now.definition {
        let changed: Vec<&str> = now
            .definition_fields
            .iter()
            .filter(|(name, digest)| {
                prev.definition_fields
                    .iter()
                    .any(|(n, d)| n == name && d != digest)
            })
            .map(|(name, _)| field_label(name))
            .collect();
        if changed.is_empty() {
            out.push("definition changed (prompt, command, agent or declared files)".into());
        } else {
            out.push(format!("definition changed: {}", changed.join(", ")));
        }
    }
    for (path, hash) in &now.inputs {
        match prev.inputs.iter().find(|(p, _)| p == path) {
            None => out.push(format!("input {path} is new")),
            Some((_, h)) if h != hash => out.push(format!("input {path} changed")),
            Some(_) => {}
        }
    }
    for (path, _) in &prev.inputs {
        if !now.inputs.iter().any(|(p, _)| p == path) {
            out.push(format!("input {path} was removed"));
        }
    }
    for (id, digest) in &now.deps {
        match prev.deps.iter().find(|(d, _)| d == id) {
            None => out.push(format!("dep {id} was added")),
            Some((_, d)) if d != digest => out.push(format!("dep {id} changed")),
            Some(_) => {}
        }
    }
    for (id, _) in &prev.deps {
        if !now.deps.iter().any(|(d, _)| d == id) {
            out.push(format!("dep {id} was removed"));
        }
    }
    out
}

/// How a definition field is named in reasons.
fn field_label(name: &str) -> &str {
    match name {
        "prompt" => "prompt",
        "run" => "run command",
        "agent" => "agent",
        "env" => "env",
        "verify" => "verify command",
        "inputs" => "declared inputs",
        "outputs" => "declared outputs",
        other => other,
    }
}
