//! The plan a watch works from, with what it derives from it: the graph, the selected
//! tasks, the filter rules; and the two content checks of a cycle (what would run, what the
//! inputs hold when it starts).

use std::collections::{BTreeSet, HashMap};

use miette::{miette, Result};

use super::filter::{Pattern, Rules};
use crate::disk::Digest;
use crate::engine::{self, dry_run, BuildOptions};
use crate::fingerprint::{self, StatCache};
use crate::graph::TaskGraph;
use crate::plan::Plan;
use crate::state::StateLayout;

/// The plan in use and everything derived from it for watching.
pub(super) struct Loaded {
    pub(super) plan: Plan,
    pub(super) graph: TaskGraph,
    pub(super) wanted: Vec<bool>,
    pub(super) rules: Rules,
}

impl Loaded {
    pub(super) fn new(plan: Plan, opts: &BuildOptions) -> Result<Loaded> {
        let graph =
            TaskGraph::from_plan(&plan).map_err(|_| miette!("the plan has a dependency cycle"))?;
        let wanted = engine::wanted_tasks(&plan, &graph, &opts.targets)?;
        let rules = Rules::new(&plan, &wanted, opts.agent_override.as_deref())?;
        Ok(Loaded {
            plan,
            graph,
            wanted,
            rules,
        })
    }

    pub(super) fn ids(&self, tasks: &BTreeSet<usize>) -> BTreeSet<String> {
        tasks
            .iter()
            .map(|&t| self.plan.tasks[t].id.clone())
            .collect()
    }
}

/// Content of every current input file of the selected tasks, at the start of a cycle.
pub(super) fn snapshot_inputs(loaded: &Loaded) -> HashMap<String, Option<Digest>> {
    let plan = &loaded.plan;
    let state_dir = plan.state_dir();
    let cache = StatCache::load(&StateLayout::new(&state_dir).stat_cache());
    let mut files = Vec::new();
    for (_, p) in &loaded.rules.patterns {
        match p {
            Pattern::File(rel) => files.push(rel.clone()),
            Pattern::Glob { pattern, .. } => files.extend(
                fingerprint::expand_inputs(&plan.root, std::slice::from_ref(pattern), &state_dir)
                    .unwrap_or_default(),
            ),
        }
    }
    files
        .into_iter()
        .map(|rel| {
            let h = cache.hash_file(&plan.root.join(&rel)).ok().flatten();
            (rel, h)
        })
        .collect()
}

/// The selected tasks a build would run now, decided as `orch build --dry-run` does (content
/// fingerprints against the recorded ones, tasks a person reset in master_plan.md). Reads
/// state, writes nothing.
pub(super) fn would_run(loaded: &Loaded, opts: &BuildOptions) -> Result<Vec<usize>> {
    let cancel = crate::cancel::Cancel::new();
    let (ctx, _) =
        engine::read_only_context(&loaded.plan, &loaded.graph, opts, &cancel, &loaded.wanted)?;
    let reasons = dry_run::predict(&ctx, &loaded.wanted);
    Ok((0..reasons.len())
        .filter(|&t| reasons[t].is_some())
        .collect())
}
