//! What the scheduler is told of a plan's tasks: priorities, the critical path, agent
//! classes with their `max_parallel`, executor pools (local tasks under `-j`, Slurm jobs
//! under `max_jobs`), locks. Shared by a build (its first run and the re-run
//! of missing results) and the dry run, which drives the same scheduler in virtual time, so
//! both see the same order.

use super::context::BuildContext;
use crate::graph::TaskGraph;
use crate::plan::{Plan, ResultSpec};
use crate::scheduler::{SchedTask, Scheduler};

/// What the scheduler is told of each task, for the first run and a re-run alike.
pub(super) struct Queue<'g> {
    graph: &'g TaskGraph,
    priorities: Vec<u8>,
    classes: Vec<Option<usize>>,
    /// Each task's executor class, when the build uses more than one executor.
    pools: Option<Vec<usize>>,
    class_limit: Vec<Option<usize>>,
    lock_ids: Vec<Vec<usize>>,
    lock_count: usize,
    /// Each task's provider class, and the class of each provider in the gate.
    providers: Vec<Option<usize>>,
    provider_classes: Vec<usize>,
}

impl<'g> Queue<'g> {
    /// With `pools` (which tasks run on Slurm, and `-j`), local tasks and Slurm jobs are
    /// limited apart: `-j` and `max_jobs`.
    pub(super) fn new(ctx: &BuildContext<'g>, pools: Option<(&[bool], usize)>) -> Queue<'g> {
        let (classes, mut class_limit) = agent_classes(ctx);
        let (lock_ids, lock_count) = lock_indexes(ctx.plan);
        let pools = pools.map(|(on_slurm, local_jobs)| {
            let local = class_limit.len();
            class_limit.push(Some(local_jobs));
            class_limit.push(Some(ctx.plan.settings.slurm.max_jobs));
            on_slurm
                .iter()
                .map(|&slurm| if slurm { local + 1 } else { local })
                .collect()
        });
        // Provider classes last: limited by the gate, which tells the scheduler as their
        // limits change.
        let base = class_limit.len();
        let limits = ctx.gate.limits();
        let early = super::early_start::starts_early(ctx);
        class_limit.extend(
            limits
                .iter()
                .zip(early)
                .map(|(&l, early)| Some(super::early_start::tasks_at_once(l, early))),
        );
        let provider_classes = (0..limits.len()).map(|p| base + p).collect();
        let providers = ctx
            .provider_of
            .iter()
            .map(|p| p.map(|p| base + p))
            .collect();
        Queue {
            graph: ctx.graph,
            priorities: ctx.plan.tasks.iter().map(|t| t.priority.0).collect(),
            classes,
            pools,
            class_limit,
            lock_ids,
            lock_count,
            providers,
            provider_classes,
        }
    }

    /// The scheduler class of each provider of the gate.
    pub(super) fn provider_classes(&self) -> Vec<usize> {
        self.provider_classes.clone()
    }

    pub(super) fn scheduler(&self, wanted: &[bool], keep_going: bool) -> Scheduler {
        let tasks = (0..self.priorities.len())
            .map(|t| SchedTask {
                priority: self.priorities[t],
                critical: self.graph.critical[t],
                agent_class: self.classes[t],
                pool: self.pools.as_ref().map(|p| p[t]),
                provider: self.providers[t],
                locks: self.lock_ids[t].clone(),
            })
            .collect();
        Scheduler::new(
            self.graph,
            tasks,
            wanted,
            self.class_limit.clone(),
            self.lock_count,
            keep_going,
        )
    }
}

/// Per-agent concurrency classes: tasks of an agent with `max_parallel` share a class.
fn agent_classes(ctx: &BuildContext) -> (Vec<Option<usize>>, Vec<Option<usize>>) {
    let mut names: Vec<String> = Vec::new();
    let mut limits = Vec::new();
    let classes = (0..ctx.plan.tasks.len())
        .map(|t| {
            let a = ctx.agent(t)?;
            // Tasks of an agent whose result is one fixed file must take turns with it.
            let shared_file = matches!(&a.result, ResultSpec::File(p) if !p.contains('{'));
            let limit = if shared_file {
                Some(a.max_parallel.unwrap_or(1).min(1))
            } else {
                a.max_parallel
            };
            limit?;
            Some(match names.iter().position(|n| n == &a.name) {
                Some(i) => i,
                None => {
                    names.push(a.name.clone());
                    limits.push(limit);
                    names.len() - 1
                }
            })
        })
        .collect();
    (classes, limits)
}

fn lock_indexes(plan: &Plan) -> (Vec<Vec<usize>>, usize) {
    let mut names: Vec<&str> = Vec::new();
    let ids = plan
        .tasks
        .iter()
        .map(|t| {
            t.locks
                .iter()
                .map(|l| match names.iter().position(|n| n == l) {
                    Some(i) => i,
                    None => {
                        names.push(l);
                        names.len() - 1
                    }
                })
                .collect()
        })
        .collect();
    (ids, names.len())
}
