//! What a build is asked to do (targets, jobs, force, agent override) and how it ended.

use miette::{miette, Result};

use crate::cancel::CancelReason;
use crate::graph::TaskGraph;
use crate::plan::Plan;
use crate::reporter::Summary;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `-j`; defaults to settings.jobs, then the number of CPUs.
    pub jobs: Option<usize>,
    /// `-k`; defaults to settings.keep_going.
    pub keep_going: Option<bool>,
    /// `--agent NAME`: every agent task uses this agent.
    pub agent_override: Option<String>,
    /// `--executor`: every task runs there, whatever the plan says.
    pub executor: Option<crate::executor::ExecutorKind>,
    /// Build only these tasks and what they need; empty means all.
    pub targets: Vec<String>,
    /// `sim` agent time scale: an estimate is divided by this.
    pub sim_speed: f64,
    /// `-B`: run wanted tasks even when up to date.
    pub force: bool,
    pub wait_for_lock: bool,
    /// The orch binary, to start the crash guard (`orch __guard`); `None` runs without one.
    pub guard_program: Option<std::path::PathBuf>,
    /// Where a build that finds everything up to date leaves its record for the fast path
    /// ([`crate::engine::up_to_date`]), and under which key; `None` leaves none.
    pub up_to_date_key: Option<crate::disk::Digest>,
    /// `--max-cost USD`: over `settings.max_cost_usd`.
    pub max_cost: Option<f64>,
    /// What an earlier part of the same build spent (a dynamic fan-out's first part): it
    /// counts against the budget.
    pub spent_before: f64,
    /// `--no-cache`: the output cache is neither read nor written in this build.
    pub no_cache: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            jobs: None,
            keep_going: None,
            agent_override: None,
            executor: None,
            targets: Vec::new(),
            sim_speed: crate::agent::sim::DEFAULT_SPEED,
            force: false,
            wait_for_lock: false,
            guard_program: None,
            up_to_date_key: None,
            max_cost: None,
            spent_before: 0.0,
            no_cache: false,
        }
    }
}

impl BuildOptions {
    /// What the whole build may cost: `--max-cost`, else `settings.max_cost_usd`.
    pub(crate) fn budget(&self, plan: &Plan) -> Option<f64> {
        self.max_cost.or(plan.settings.max_cost_usd)
    }

    /// What the command line asked for, for the run record (`orch report` shows it): only
    /// what a person chose, not the plumbing (the guard binary, the fast path's key).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "jobs": self.jobs,
            "keep_going": self.keep_going,
            "agent": self.agent_override,
            "executor": self.executor.map(|e| e.name()),
            "targets": if self.targets.is_empty() { "all".to_string() } else { self.targets.join(" ") },
            "sim_speed": self.sim_speed,
            "force": self.force,
            "max_cost": self.max_cost,
        })
    }

    /// A recorder of this build's events into `plan`'s state directory (see
    /// [`crate::reporter::record`]); `command` is `build` or `watch`.
    pub fn recorder(&self, command: &str, plan: &Plan) -> crate::reporter::record::RunRecorder {
        let header = crate::reporter::record::header(command, self.describe(), plan);
        crate::reporter::record::RunRecorder::new(&plan.state_dir(), header)
    }

    /// Whether this build uses the output cache at all.
    pub(crate) fn caching(&self, plan: &Plan) -> bool {
        !self.no_cache && plan.settings.cache.enabled
    }

    pub(crate) fn jobs(&self, plan: &Plan) -> usize {
        self.jobs_with(plan.settings.jobs)
    }

    /// `-j`, else the plan's `settings.jobs`, else the CPU count.
    pub(crate) fn jobs_with(&self, setting: Option<usize>) -> usize {
        self.jobs
            .or(setting)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            })
            .max(1)
    }
}

#[derive(Debug)]
pub struct BuildOutcome {
    pub summary: Summary,
    pub aggregate_error: Option<String>,
    /// Why the build stopped early, if it did.
    pub stopped_by: Option<CancelReason>,
}

impl BuildOutcome {
    /// 0 success, 1 a task or the aggregation failed, 3 the budget stopped the build, 4 a
    /// provider's usage limit resets past `max_quota_wait`, 130 interrupted by a signal, 141
    /// the reader of orch's output went away (see [`CancelReason::exit_code`]).
    pub(crate) fn exit_code(&self) -> i32 {
        let s = &self.summary;
        if let Some(why) = self.stopped_by.filter(|_| s.interrupted) {
            why.exit_code()
        } else if s.interrupted {
            130
        } else if s.failed > 0 || s.blocked > 0 {
            1
        } else if let Some(stop) = &s.stopped_by {
            stop.exit_code()
        } else if s.success() && self.aggregate_error.is_none() {
            0
        } else {
            1
        }
    }
}

/// Resolves target ids to task indexes, all tasks when none are given.
pub fn wanted_tasks(plan: &Plan, graph: &TaskGraph, targets: &[String]) -> Result<Vec<bool>> {
    Ok(wanted_of(plan, graph, &target_indexes(plan, targets)?))
}

/// Every task when no target is named, else the targets and everything upstream of them.
pub(super) fn wanted_of(plan: &Plan, graph: &TaskGraph, targets: &[usize]) -> Vec<bool> {
    if targets.is_empty() {
        vec![true; plan.tasks.len()]
    } else {
        graph.upstream_closure(targets)
    }
}

/// The tasks named on the command line, or an error naming the one that does not exist.
pub(super) fn target_indexes(plan: &Plan, targets: &[String]) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for t in targets {
        out.extend(task_indexes(plan, t)?);
    }
    Ok(out)
}

/// The tasks a name on the command line stands for: one task, or every instance of a
/// fan-out template (`orch build review`); an error as [`task_index`]'s for neither.
pub fn task_indexes(plan: &Plan, name: &str) -> Result<Vec<usize>> {
    match plan.named(name) {
        Some(ts) => Ok(ts),
        None => task_index(plan, name).map(|t| vec![t]),
    }
}

/// The index of the task named `id` on the command line, or an error naming it, with the
/// nearest id (or some of them) as help.
pub fn task_index(plan: &Plan, id: &str) -> Result<usize> {
    plan.index.get(id).copied().ok_or_else(|| {
        let ids = plan.tasks.iter().map(|t| t.id.as_str());
        let help = match crate::plan::checks::closest(id, ids.clone()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => {
                let known: Vec<&str> = ids.take(20).collect();
                let more = if plan.tasks.len() > 20 { ", ..." } else { "" };
                format!("tasks: {}{more}", known.join(", "))
            }
        };
        miette!(
            help = help,
            "no task named `{id}` in {}",
            plan.source_path.display()
        )
    })
}
