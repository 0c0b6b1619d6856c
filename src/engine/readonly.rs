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
    let store = open_read_only(plan)?;
    read_only_context_from(plan, graph, opts, cancel, wanted, store)
}

/// The plan's state directory opened for looking: no lock, agent ids a build would assign
/// assigned in memory, records of an older format carried over as a build would.
pub fn open_read_only(plan: &Plan) -> miette::Result<StateStore> {
    let layout = StateLayout::new(plan.state_dir());
    let mut store = StateStore::open(layout).map_err(|e| miette::miette!("{e}"))?;
    store.assign_agent_ids(plan);
    super::migrate::records(plan, &mut store);
    Ok(store)
}

/// As [`read_only_context`], over a state [`open_read_only`] opened.
pub fn read_only_context_from<'a>(
    plan: &'a Plan,
    graph: &'a TaskGraph,
    opts: &'a BuildOptions,
    cancel: &'a crate::cancel::Cancel,
    wanted: &[bool],
    store: StateStore,
) -> miette::Result<(BuildContext<'a>, ReadOnlyState)> {
    let layout = store.layout.clone();
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
        sessions: plan
            .tasks
            .iter()
            .map(|t| store.snapshot.sessions.get(&t.id).cloned())
            .collect(),
        attempts: Default::default(),
        // Only the local store: a look at what a build would do asks no server.
        cache: opts
            .caching(plan)
            .then(|| crate::cache::Cache::local_only(&plan.settings.cache, &layout.dir)),
        isolation: None,
        gate: super::providers::no_gate(),
        provider_of: vec![None; n],
        merge_provider: None,
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

/// The `--agent` the recorded successes were built with: `None` when they ran with the
/// plan's own agents, or the name of the agent that every agent task's definition then
/// named (`orch build --agent sim`). Read from the first agent task with a record, since an
/// override applies to all of them. Looking commands judge staleness against it, so that
/// `orch status` after `orch build --agent sim` does not call every task out of date.
pub fn recorded_agent(plan: &Plan, store: &StateStore) -> Option<String> {
    let (task, recorded) = plan.tasks.iter().find_map(|t| {
        // An inline prompt: reading a prompt file is not needed to know the agent.
        if !matches!(t.action, crate::plan::Action::Prompt(_)) {
            return None;
        }
        let r = store.snapshot.records.get(&t.id)?;
        let (_, d) = r
            .definition_fields
            .iter()
            .find(|(name, _)| name == "agent")?;
        Some((t, *d))
    })?;
    let agent_digest = |over: Option<&str>| {
        crate::fingerprint::definition_fields(plan, task, plan.agent_for(task, over))
            .ok()
            .and_then(|f| f.iter().find(|(n, _)| *n == "agent").map(|(_, d)| *d))
    };
    if agent_digest(None) == Some(recorded) {
        return None;
    }
    plan.agents
        .keys()
        .find(|name| agent_digest(Some(name)) == Some(recorded))
        .cloned()
}
