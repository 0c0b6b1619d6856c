//! Why a task is not up to date: compares its last recorded success with its fingerprint now.

use std::collections::{HashMap, HashSet};

use crate::disk::Digest;
use crate::fingerprint::{DefinitionFields, FieldName};
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

impl FingerprintParts {
    /// The record of a success with these parts, finished now (by a run: not restored).
    pub fn record(
        &self,
        outputs: Vec<(String, Digest)>,
        duration_ms: u64,
        retries: u32,
    ) -> TaskRecord {
        TaskRecord {
            fingerprint: self.value,
            definition: self.definition,
            definition_fields: self
                .definition_fields
                .iter()
                .map(|&(name, d)| (FieldName::Borrowed(name), d))
                .collect(),
            inputs: self.inputs.clone(),
            deps: self.deps.clone(),
            outputs,
            finished_at: crate::clock::unix_now(),
            duration_ms,
            retries,
            restored: false,
        }
    }
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
    // Keyed lookups, not scans: a reduce over a 100,000-instance fan-out has as many deps, and
    // comparing each with every recorded one took most of a build that added one file.
    diff_pairs(
        &prev.inputs,
        &now.inputs,
        &mut out,
        |path, change| match change {
            Change::Added => format!("input {path} is new"),
            Change::Changed => format!("input {path} changed"),
            Change::Removed => format!("input {path} was removed"),
        },
    );
    diff_pairs(&prev.deps, &now.deps, &mut out, |id, change| match change {
        Change::Added => format!("dep {id} was added"),
        Change::Changed => format!("dep {id} changed"),
        Change::Removed => format!("dep {id} was removed"),
    });
    out
}

enum Change {
    Added,
    Changed,
    Removed,
}

/// Describes each name of `now` that is new or whose digest differs from `prev`, in `now`'s
/// order, then each name of `prev` missing from `now`, in `prev`'s order.
fn diff_pairs(
    prev: &[(String, Digest)],
    now: &[(String, Digest)],
    out: &mut Vec<String>,
    describe: impl Fn(&str, Change) -> String,
) {
    let before: HashMap<&str, &Digest> = prev.iter().map(|(n, d)| (n.as_str(), d)).collect();
    for (name, digest) in now {
        match before.get(name.as_str()) {
            None => out.push(describe(name, Change::Added)),
            Some(d) if *d != digest => out.push(describe(name, Change::Changed)),
            Some(_) => {}
        }
    }
    let after: HashSet<&str> = now.iter().map(|(n, _)| n.as_str()).collect();
    for (name, _) in prev {
        if !after.contains(name.as_str()) {
            out.push(describe(name, Change::Removed));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, Digest)> {
        items
            .iter()
            .map(|(n, v)| (n.to_string(), Digest::of(v.as_bytes())))
            .collect()
    }

    #[test]
    fn pairs_are_diffed_by_name_in_order() {
        let prev = pairs(&[("a", "1"), ("b", "1"), ("gone", "1"), ("c", "1")]);
        let now = pairs(&[("c", "2"), ("new", "1"), ("a", "1"), ("b", "2")]);
        let mut out = Vec::new();
        diff_pairs(&prev, &now, &mut out, |name, change| match change {
            Change::Added => format!("+{name}"),
            Change::Changed => format!("~{name}"),
            Change::Removed => format!("-{name}"),
        });
        assert_eq!(out, ["~c", "+new", "~b", "-gone"]);
    }
}
