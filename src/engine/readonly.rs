//! A build context for looking, not running: what `--dry-run`, `orch explain` and the other
//! read-only commands need to compute fingerprints and predict what a build would do. It takes
//! no lock and writes nothing (agent ids a build would assign are assigned in memory only).

use std::sync::OnceLock;

use super::context::BuildContext;
use super::options::BuildOptions;
use crate::executor::Local;
use crate::fingerprint::StatCache;
use crate::graph::TaskGraph;
use crate::master_plan::PlanDoc;
use crate::plan::Plan;
use crate::redact::Redactor;
use crate::state::{StateLayout, StateStore};

/// The state a read-only context was made from, for callers that show more than the context.
pub struct ReadOnlyState {
    pub store: StateStore,
    /// Tasks a person set back to Pending/🟡 in master_plan.md, which forces them to run.
    pub reset_by_person: Vec<bool>,
}

/// Opens the state without locking and builds a context as `run_build` would: agent ids,
/// last records, forced tasks (`opts.force` for wanted tasks, or reset by a person), and the
/// done info of tasks outside `wanted` from their records.
pub fn read_only_context<'a>(
    plan: &'a Plan,
    graph: &'a TaskGraph,
    opts: &'a BuildOptions,
    cancel: &'a crate::cancel::Cancel,
    wanted: &[bool],
) -> miette::Result<(BuildContext<'a>, ReadOnlyState)> {
    let layout = StateLayout::new(plan.state_dir());
    let mut store = StateStore::open(layout.clone()).map_err(|e| miette::miette!("{e}"))?;
    store.assign_agent_ids(plan);
    super::migrate::records(plan, &mut store);
    let mut doc = PlanDoc::load(plan, &layout, &store);
    let by_person = doc.reset_by_person(plan, &store);
    let n = plan.tasks.len();
    let ctx = BuildContext {
        backend: Box::new(Local::new(None)),
        plan,
        graph,
        layout: layout.clone(),
        opts,
        agent_ids: plan
            .tasks
            .iter()
            .map(|t| store.agent_id_of(&t.id))
            .collect(),
        previous: plan
            .tasks
            .iter()
            .map(|t| store.snapshot.records.get(&t.id).cloned())
            .collect(),
        forced: (0..n)
            .map(|t| wanted[t] && (opts.force || by_person.contains(&t)))
            .collect(),
        done: (0..n).map(|_| OnceLock::new()).collect(),
        stat_cache: StatCache::load(&layout.stat_cache()),
        root_dir: crate::fingerprint::OpenDir::open(&plan.root),
        checked: (0..plan.tasks.len()).map(|_| Default::default()).collect(),
        prechecked: (0..plan.tasks.len()).map(|_| Default::default()).collect(),
        up_to_date_if_quiet: (0..plan.tasks.len()).map(|_| OnceLock::new()).collect(),
        cancel,
        redactor: Redactor::default(),
        results_rel: plan.relative(&layout.results_dir()),
    };
    for (t, &w) in wanted.iter().enumerate() {
        if !w {
            if let Some(r) = &ctx.previous[t] {
                let _ = ctx.done[t].set(ctx.done_from_record(t, r));
            }
        }
    }
    let state = ReadOnlyState {
        store,
        reset_by_person: (0..n).map(|t| by_person.contains(&t)).collect(),
    };
    Ok((ctx, state))
}
