//! Instances whose item went away (a file removed from a `foreach` glob, an item dropped
//! from a list or an answer): their result is removed, so the merge and the reduce tasks no
//! longer see it, and the build says which declared outputs they leave behind (`orch clean
//! --outputs` removes those).

use crate::plan::Plan;
use crate::reporter::{Event, Events};
use crate::state::{items, StateStore};

/// Removes the results of gone instances (once: a result already removed says nothing).
pub(super) fn remove_results(plan: &Plan, store: &StateStore, events: &mut dyn Events) {
    let results_rel = plan.relative(&store.layout.results_dir());
    for (id, record) in items::gone_instances(plan, &store.snapshot) {
        let result = store.layout.result_file(&store.agent_id_of(id));
        if std::fs::remove_file(&result).is_err() {
            continue;
        }
        let outputs: Vec<&str> = record
            .outputs
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| !p.starts_with(&results_rel))
            .collect();
        let message = if outputs.is_empty() {
            format!("{id} is gone (its item went away): its result was removed")
        } else {
            format!(
                "{id} is gone (its item went away): its result was removed; its outputs {} \
                 are left (`orch clean --outputs` removes them)",
                outputs.join(", ")
            )
        };
        events.emit(Event::Notice { message: &message });
    }
}
