//! What a task's fingerprint is made of: its definition (split by field, so `orch explain`
//! can name the one that changed), what each finished dep hands its dependents, and the
//! fingerprint that combines them with the input hashes.

use std::io;

use crate::disk::{Digest, IoResultExt};
use crate::plan::{Action, AgentSpec, KeptDefinition, Plan, Task};

/// The name of a definition field (`prompt`, `run`, ...): static for the known ones, so the
/// field lists of ten thousand records cost no allocation.
pub type FieldName = std::borrow::Cow<'static, str>;

/// A definition's digest by field, as [`definition_fields`] computes it (no allocation).
pub type DefinitionFields = [(&'static str, Digest); 7];

/// The fields of a definition, in the order [`definition_fields`] lists them.
pub const DEFINITION_FIELDS: [&str; 7] = [
    "prompt", "run", "agent", "env", "verify", "inputs", "outputs",
];

/// The static name for a known field, else an owned copy.
pub fn field_name(name: &str) -> FieldName {
    match DEFINITION_FIELDS.iter().find(|&&f| f == name) {
        Some(&f) => FieldName::Borrowed(f),
        None => FieldName::Owned(name.to_string()),
    }
}

/// A task's definition: its digest and the per-field digests it is folded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definition {
    pub digest: Digest,
    pub fields: DefinitionFields,
}

impl Definition {
    /// Computes a task's definition as `agent` runs it.
    pub fn of(plan: &Plan, task: &Task, agent: Option<&AgentSpec>) -> io::Result<Definition> {
        let fields = definition_fields(plan, task, agent)?;
        Ok(Definition {
            digest: definition_digest(&fields),
            fields,
        })
    }

    /// Rebuilds one from the digests the plan cache kept.
    pub fn from_kept(kept: &KeptDefinition) -> Definition {
        Definition {
            digest: kept.digest,
            fields: std::array::from_fn(|i| (DEFINITION_FIELDS[i], kept.fields[i])),
        }
    }

    /// What the plan cache keeps of it.
    pub fn kept(&self) -> KeptDefinition {
        KeptDefinition {
            digest: self.digest,
            fields: self.fields.map(|(_, d)| d),
        }
    }
}

/// Task `t`'s definition as it runs in this build: from the plan cache when the plan came
/// from there and no `--agent` override changes it, else computed.
pub fn task_definition(
    plan: &Plan,
    t: usize,
    agent_override: Option<&str>,
) -> io::Result<Definition> {
    let task = &plan.tasks[t];
    if agent_override.is_none() || task.action.is_shell() {
        if let Some(Some(kept)) = plan.definitions.get(t) {
            return Ok(Definition::from_kept(kept));
        }
    }
    Definition::of(plan, task, plan.agent_for(task, agent_override))
}

/// Task `t`'s definition as the plan alone fixes it, for the plan cache to keep; `None` for
/// a `prompt_file` task, whose prompt is read at build time.
pub fn memoizable_definition(plan: &Plan, t: usize) -> Option<Definition> {
    let task = &plan.tasks[t];
    if matches!(task.action, Action::PromptFile(_)) {
        return None;
    }
    Definition::of(plan, task, plan.agent_for(task, None)).ok()
}

/// What a task's definition contributes to its fingerprint: everything that changes what it
/// does, nothing that only changes when or how often it runs. Folded from the per-field
/// digests of [`definition_fields`], so the two can never disagree.
pub fn definition_digest(fields: &DefinitionFields) -> Digest {
    let mut h = Pieces::new();
    h.update(b"orch-definition-v1\0");
    for (name, digest) in fields {
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(digest.as_bytes());
    }
    h.finish()
}

/// The definition split by field (`prompt`, `run`, `agent`, `env`, `verify`, `inputs`,
/// `outputs`), each hashed on its own, so `orch explain` can name the field that changed.
/// Every field is always listed, empty or not.
pub fn definition_fields(
    plan: &Plan,
    task: &Task,
    agent: Option<&AgentSpec>,
) -> io::Result<DefinitionFields> {
    let one = |bytes: &[u8]| {
        let mut h = Pieces::new();
        h.part(bytes);
        h.finish()
    };
    let list = |items: &mut dyn Iterator<Item = &String>| {
        let mut h = Pieces::new();
        for item in items {
            h.part(item.as_bytes());
        }
        h.finish()
    };
    let (run, prompt): (&[u8], std::borrow::Cow<[u8]>) = match &task.action {
        Action::Shell(cmd) => (cmd.as_bytes(), Default::default()),
        Action::Prompt(p) => (b"", p.as_bytes().into()),
        Action::PromptFile(p) => (
            b"",
            super::read_regular(&plan.resolve(p))
                .context("prompt_file", p)?
                .into(),
        ),
    };
    let mut agent_digest = Pieces::new();
    if let Some(a) = agent {
        agent_digest.part(a.name.as_bytes());
        agent_digest.part(format!("{:?}", a.kind).as_bytes());
        agent_digest.part(format!("{:?}", a.prompt_via).as_bytes());
        agent_digest.part(format!("{:?}", a.result).as_bytes());
        agent_digest.part(a.format.as_str().as_bytes());
        // The command as this task runs it: its permission level's flags change what the
        // agent may do. What orch adds per run (a resumed session, retry knobs read from the
        // machine's config) is left out.
        let level = plan.permission(task, a);
        for c in crate::agent::command_line(a, &crate::agent::Call::at(level)) {
            agent_digest.part(c.as_bytes());
        }
        for (k, v) in by_name(&a.env) {
            agent_digest.part(format!("env:{k}").as_bytes());
            agent_digest.part(v.as_bytes());
        }
    }
    // An instance's item is part of what it does, wherever its definition uses it (a prompt
    // fills it in only when the task file is written).
    let prompt_digest = match &task.item {
        None => one(&prompt),
        Some(item) => {
            let mut h = Pieces::new();
            h.part(&prompt);
            h.part(b"item");
            h.part(item.value.as_bytes());
            h.finish()
        }
    };
    let digests = [
        prompt_digest,
        one(run),
        agent_digest.finish(),
        env_digest(&task.env),
        one(task.verify.as_deref().unwrap_or("").as_bytes()),
        list(&mut task.inputs.iter()),
        list(&mut task.outputs.iter()),
    ];
    Ok(std::array::from_fn(|i| (DEFINITION_FIELDS[i], digests[i])))
}

/// A task's `env` table, names and values (as Turborepo and Bazel key an action by the
/// values of the variables it declares): two tasks, or two runs, that differ only in a value
/// do not share a fingerprint, so the cache never restores one's outputs for the other. Only
/// this digest is kept, never a value, so a secret in the table is not written anywhere.
/// The process's own environment is not declared and is left out: a rotated API key
/// exported in the shell re-runs nothing.
fn env_digest(env: &indexmap::IndexMap<String, String>) -> Digest {
    let mut h = Pieces::new();
    for (name, value) in by_name(env) {
        h.part(name.as_bytes());
        h.part(value.as_bytes());
    }
    h.finish()
}

/// An env table's variables sorted by name (task's and agent's alike): the table's order in
/// the Orchfile changes nothing.
fn by_name(env: &indexmap::IndexMap<String, String>) -> Vec<(&String, &String)> {
    let mut vars: Vec<(&String, &String)> = env.iter().collect();
    vars.sort_unstable();
    vars
}

/// What one finished dep hands its dependents (contract v2, "early cutoff"): the hashes of
/// its declared outputs and of its result, not its fingerprint, so a dep that re-runs and
/// produces the same bytes changes nothing downstream. Outputs are named by their path as
/// the Orchfile declares it and the result by its role (`is_result` picks its entry), not by
/// its place in the state directory: neither the machine nor the agent numbering goes in,
/// so the same work hands over the same digest anywhere. A dep with nothing to compare (no
/// declared output, no result) hands over its fingerprint instead, so a change to its
/// definition or inputs still reaches its dependents.
pub fn handoff(
    fingerprint: &Digest,
    outputs: &[(String, Digest)],
    is_result: impl Fn(&str) -> bool,
) -> Digest {
    let mut h = Pieces::new();
    h.update(b"orch-handoff-v2\0");
    if outputs.is_empty() {
        h.update(b"fingerprint\0");
        h.update(fingerprint.as_bytes());
    }
    for (path, hash) in outputs {
        if is_result(path) {
            h.update(b"result\0");
        } else {
            h.update(b"out\0");
            h.part(path.as_bytes());
        }
        h.update(hash.as_bytes());
    }
    h.finish()
}

/// What a dep handed its dependents before contract v2: its fingerprint and its outputs'
/// hashes. Only read to carry records of that time over (see `engine::migrate`).
pub fn dep_digest_v1(fingerprint: &Digest, outputs: &[(String, Digest)]) -> Digest {
    let mut h = Pieces::new();
    h.update(fingerprint.as_bytes());
    for (path, hash) in outputs {
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
    }
    h.finish()
}

/// Combines the parts into the task's fingerprint.
pub fn combine<S: AsRef<str>>(
    definition: &Digest,
    inputs: &[(String, Digest)],
    deps: &[(S, Digest)],
) -> Digest {
    let mut h = Pieces::new();
    h.update(b"orch-fingerprint-v1\0");
    h.update(definition.as_bytes());
    for (path, hash) in inputs {
        h.update(b"in\0");
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
    }
    for (id, digest) in deps {
        h.update(b"dep\0");
        h.update(id.as_ref().as_bytes());
        h.update(b"\0");
        h.update(digest.as_bytes());
    }
    h.finish()
}

/// Collects a digest's few short pieces and hashes them at once: for inputs this small,
/// blake3's one-shot path is far cheaper than its streaming hasher, whose ~2 KB state must
/// be set up and moved each time. The same bytes give the same digest either way. Pieces
/// up to 256 bytes in all stay on the stack.
struct Pieces {
    inline: [u8; 256],
    len: usize,
    spill: Vec<u8>,
}

impl Pieces {
    fn new() -> Pieces {
        Pieces {
            inline: [0; 256],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if self.spill.is_empty() && self.len + bytes.len() <= self.inline.len() {
            self.inline[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline[..self.len]);
            }
            self.spill.extend_from_slice(bytes);
        }
    }

    /// A piece with its length in front, so adjacent pieces cannot run into each other.
    fn part(&mut self, bytes: &[u8]) {
        self.update(&(bytes.len() as u64).to_le_bytes());
        self.update(bytes);
    }

    fn finish(&self) -> Digest {
        if self.spill.is_empty() {
            Digest::of(&self.inline[..self.len])
        } else {
            Digest::of(&self.spill)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_hash_like_one_buffer_on_and_off_the_stack() {
        for sizes in [vec![3, 5], vec![200, 56], vec![250, 10, 1000], vec![0, 300]] {
            let mut p = Pieces::new();
            let mut all = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let piece = vec![i as u8 + 1; *n];
                p.update(&piece);
                all.extend_from_slice(&piece);
            }
            assert_eq!(p.finish(), Digest::of(&all), "{sizes:?}");
        }
    }
    #[test]
    fn a_handoff_is_the_outputs_and_result_not_the_fingerprint() {
        let d = |s: &str| Digest::of(s.as_bytes());
        let outputs = vec![
            ("out.md".to_string(), d("o")),
            (
                ".orchestrator/results/agent-01-result.md".to_string(),
                d("r"),
            ),
        ];
        let is_result = |p: &str| p.ends_with("-result.md");
        let base = handoff(&d("fp1"), &outputs, is_result);
        assert_eq!(
            base,
            handoff(&d("fp2"), &outputs, is_result),
            "early cutoff"
        );
        // The result is named by its role: another agent number or state dir, same digest.
        let moved = vec![
            outputs[0].clone(),
            ("/elsewhere/agent-07-result.md".into(), d("r")),
        ];
        assert_eq!(base, handoff(&d("fp1"), &moved, is_result));
        let changed = vec![outputs[0].clone(), (outputs[1].0.clone(), d("r2"))];
        assert_ne!(base, handoff(&d("fp1"), &changed, is_result));
        let renamed = vec![("other.md".to_string(), d("o")), outputs[1].clone()];
        assert_ne!(base, handoff(&d("fp1"), &renamed, is_result));
        assert_ne!(base, handoff(&d("fp1"), &outputs, |_| false));
        // Nothing to compare: the fingerprint stands in.
        assert_ne!(
            handoff(&d("fp1"), &[], is_result),
            handoff(&d("fp2"), &[], is_result)
        );
        assert_ne!(base, dep_digest_v1(&d("fp1"), &outputs));
    }

    #[test]
    fn reordering_an_agents_env_table_keeps_its_digest() {
        let agent_digest = |env: &str| {
            let text = format!(
                "[agents.claude]\ncommand = [\"claude\"]\nenv = {{ {env} }}\n\n\
                 [tasks.review]\nprompt = \"Review.\"\nagent = \"claude\"\n"
            );
            let plan =
                crate::plan::orchfile::parse(std::path::Path::new("/p/Orchfile.toml"), &text)
                    .unwrap();
            let task = plan.task("review").unwrap();
            let fields = definition_fields(&plan, task, plan.agent_for(task, None)).unwrap();
            fields.iter().find(|(f, _)| *f == "agent").unwrap().1
        };
        let base = agent_digest(r#"A = "1", B = "2""#);
        assert_eq!(base, agent_digest(r#"B = "2", A = "1""#));
        assert_ne!(base, agent_digest(r#"A = "1", B = "3""#));
    }

    #[test]
    fn combine_depends_on_every_part() {
        let d = |s: &str| Digest::of(s.as_bytes());
        let base = combine(&d("d"), &[("a".into(), d("1"))], &[("t", d("x"))]);
        assert_ne!(
            base,
            combine(&d("e"), &[("a".into(), d("1"))], &[("t", d("x"))])
        );
        assert_ne!(
            base,
            combine(&d("d"), &[("a".into(), d("2"))], &[("t", d("x"))])
        );
        assert_ne!(
            base,
            combine(&d("d"), &[("a".into(), d("1"))], &[("t", d("y"))])
        );
        assert_eq!(
            base,
            combine(&d("d"), &[("a".into(), d("1"))], &[("t", d("x"))])
        );
    }
}
