//! Carries the records of orch before early cutoff (snapshot version 1) over to contract v2,
//! so that upgrading re-runs nothing that is up to date.
//!
//! In version 1 a dependent's record held, per dep, a digest of the dep's fingerprint and
//! outputs; in version 2 it holds the dep's handoff (outputs and result only, see
//! [`fingerprint::handoff`]), and its fingerprint is taken over those. A record is carried
//! over only when each dep's old digest is exactly the one the dep's current record gives:
//! then the dependent was built on the very outputs that record names, and the new digests
//! can be computed from them. Any other record is left as it was; its fingerprint no longer
//! matches, so the task runs once, which is what the old rules would have done too.

use std::collections::HashMap;
use std::sync::Arc;

use crate::disk::Digest;
use crate::fingerprint;
use crate::graph::TaskGraph;
use crate::plan::Plan;
use crate::state::{StateStore, TaskRecord};

/// The snapshot version whose records hand over outputs, not fingerprints.
pub(crate) const EARLY_CUTOFF: u32 = 2;

/// Brings the store's records to [`EARLY_CUTOFF`], in memory; returns whether the version
/// changed (the caller then writes the snapshot, so this is done once).
pub(crate) fn records(plan: &Plan, store: &mut StateStore) -> bool {
    if store.snapshot.version >= EARLY_CUTOFF {
        return false;
    }
    if !store.snapshot.records.is_empty() {
        if let Ok(graph) = TaskGraph::from_plan(plan) {
            carry_over(plan, &graph, store);
        }
    }
    store.snapshot.version = EARLY_CUTOFF;
    true
}

fn carry_over(plan: &Plan, graph: &TaskGraph, store: &mut StateStore) {
    let results_rel = plan.relative(&store.layout.results_dir());
    let old: HashMap<String, Arc<TaskRecord>> = store.snapshot.records.clone();
    // Each task's fingerprint under the new rules, where its record could be carried over:
    // a dep with no outputs hands over its fingerprint.
    let mut carried: Vec<Option<Digest>> = vec![None; plan.tasks.len()];
    for &t in &graph.topo {
        let task = &plan.tasks[t];
        let Some(record) = old.get(&task.id) else {
            continue;
        };
        let deps = &graph.deps[t];
        let same_deps = record.deps.len() == deps.len()
            && record
                .deps
                .iter()
                .zip(deps)
                .all(|((id, _), &d)| *id == plan.tasks[d].id);
        if !same_deps {
            continue;
        }
        let mut new_deps = Vec::with_capacity(deps.len());
        for ((id, seen), &d) in record.deps.iter().zip(deps) {
            let Some(dep) = old.get(id) else { break };
            if *seen != fingerprint::dep_digest_v1(&dep.fingerprint, &dep.outputs) {
                break;
            }
            // Only a dep without outputs hands over its fingerprint: the new one, then.
            let dep_fingerprint = match carried[d] {
                _ if !dep.outputs.is_empty() => dep.fingerprint,
                Some(carried) => carried,
                None => break,
            };
            let agent_id = store.agent_id_of(id);
            let handoff = fingerprint::handoff(&dep_fingerprint, &dep.outputs, |p| {
                super::context::is_result_path(&results_rel, &agent_id, p)
            });
            new_deps.push((id.clone(), handoff));
        }
        if new_deps.len() != deps.len() {
            continue;
        }
        let value = fingerprint::combine(&record.definition, &record.inputs, &new_deps);
        carried[t] = Some(value);
        if !deps.is_empty() {
            let mut r = TaskRecord::clone(record);
            r.fingerprint = value;
            r.deps = new_deps;
            store.snapshot.records.insert(task.id.clone(), Arc::new(r));
        }
    }
}
