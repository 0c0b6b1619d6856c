//! What a build may spend, and what each agent task is projected to cost before it starts.
//!
//! The history is `.orchestrator/costs.json`: each task's last cost with the definition it
//! ran under, and each agent's recent costs (the snapshot keeps no money; this file is
//! small, written whole after each paid task, and lost without harm: projections then fall
//! back to `cost_estimate`). A projection is, in order: the task's own last cost if its
//! definition is unchanged, the mean of its agent's recent runs, its `cost_estimate`, or
//! its per-attempt `max_cost_usd`; each capped by that `max_cost_usd`.
//!
//! [`Budget`] decides on the scheduling thread whether the next task may start: not when
//! what was spent, plus what the running tasks are projected to cost (or have cost so far,
//! if more), plus its own projection would pass the limit. A task with no projection at all
//! runs only when no other such task runs, so the budget is passed by at most one task's
//! unforeseen cost.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::context::BuildContext;
use crate::disk::Digest;
use crate::plan::{AgentSpec, Task};
use crate::reporter::Stop;

/// Recent runs per agent kept for its mean: enough to smooth out one odd task, few enough
/// to follow a change of model.
const AGENT_RUNS_KEPT: usize = 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CostHistory {
    #[serde(default)]
    tasks: BTreeMap<String, TaskCost>,
    /// Newest last.
    #[serde(default)]
    agents: BTreeMap<String, VecDeque<f64>>,
    /// Each provider's limit as the last build that cut it left it, for the next build to
    /// start from (see [`crate::scheduler::Limiter`]).
    #[serde(default)]
    providers: BTreeMap<String, Learnt>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Learnt {
    limit: usize,
    /// Unix seconds.
    at: u64,
}

/// How long a provider's learnt limit is trusted: its load changes over the day.
const LEARNT_FOR_SECS: u64 = 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskCost {
    /// The task's definition digest (hex) when it cost this.
    definition: String,
    cost_usd: f64,
}

impl CostHistory {
    /// The history in `path`; empty when there is none or it does not read back.
    pub fn load(path: &Path) -> CostHistory {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        crate::disk::replace_unsynced(path, &json)
    }

    /// A successful run of `task` (all its attempts) cost `cost`.
    pub fn record(&mut self, task: &str, definition: &Digest, agent: &str, cost: f64) {
        self.tasks.insert(
            task.to_string(),
            TaskCost {
                definition: definition.to_hex(),
                cost_usd: cost,
            },
        );
        let runs = self.agents.entry(agent.to_string()).or_default();
        runs.push_back(cost);
        while runs.len() > AGENT_RUNS_KEPT {
            runs.pop_front();
        }
    }

    /// The aggregation's merge (all its attempts) cost `cost` under `definition`. Kept out of
    /// its agent's mean: a merge reads every result, so it says little of what a task costs.
    pub fn record_merge(&mut self, definition: &Digest, cost: f64) {
        self.tasks.insert(
            MERGE_KEY.to_string(),
            TaskCost {
                definition: definition.to_hex(),
                cost_usd: cost,
            },
        );
    }

    /// What `task` cost last, if its definition was `definition` then.
    pub fn last(&self, task: &str, definition: &Digest) -> Option<f64> {
        self.tasks
            .get(task)
            .filter(|c| c.definition == definition.to_hex())
            .map(|c| c.cost_usd)
    }

    /// Where `provider`'s limit starts at `now` (Unix seconds): what a build within the
    /// last hour left it at.
    pub fn learnt_limit(&self, provider: &str, now: u64) -> Option<usize> {
        self.providers
            .get(provider)
            .filter(|l| now.saturating_sub(l.at) < LEARNT_FOR_SECS)
            .map(|l| l.limit)
    }

    /// `provider` ended a build at `limit` of `max`: kept when below it. Whether that
    /// changed anything.
    pub fn learn(&mut self, provider: &str, limit: usize, max: usize, now: u64) -> bool {
        if limit < max {
            self.providers
                .insert(provider.to_string(), Learnt { limit, at: now });
            true
        } else {
            self.providers.remove(provider).is_some()
        }
    }

    pub fn agent_mean(&self, agent: &str) -> Option<f64> {
        let runs = self.agents.get(agent).filter(|r| !r.is_empty())?;
        Some(runs.iter().sum::<f64>() / runs.len() as f64)
    }
}

/// Where a projection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The task's own last cost, its definition unchanged.
    LastRun,
    /// The mean of its agent's recent runs.
    AgentMean,
    /// Its `cost_estimate`.
    Estimate,
    /// Its per-attempt `max_cost_usd`, with nothing better known.
    Cap,
}

impl Basis {
    pub fn word(self) -> &'static str {
        match self {
            Basis::LastRun => "its last run",
            Basis::AgentMean => "its agent's mean",
            Basis::Estimate => "cost_estimate",
            Basis::Cap => "max_cost_usd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    pub usd: f64,
    pub basis: Basis,
}

/// What one attempt of `task` may cost: its own `max_cost_usd`, else its agent's.
pub fn attempt_cap(task: &Task, agent: &AgentSpec) -> Option<f64> {
    task.max_cost_usd.or(agent.max_cost_usd)
}

/// What `task` (run by `agent`, its definition now `definition` when known) is projected to
/// cost; `None` when nothing is known.
pub fn project(
    history: &CostHistory,
    task: &Task,
    agent: &AgentSpec,
    definition: Option<&Digest>,
) -> Option<Projection> {
    projection(
        history,
        definition.and_then(|d| history.last(&task.id, d)),
        agent,
        task.cost_estimate,
        attempt_cap(task, agent),
    )
}

/// The history's key of the aggregation's merge: a task id never starts with a bracket.
const MERGE_KEY: &str = "[aggregate]";

/// The budget's key of the aggregation's merge, which runs after every task.
pub const MERGE: usize = usize::MAX;

/// What the aggregation's merge by `agent` (its definition now `definition`) is projected to
/// cost, as a task's is: its own last cost for this definition, its agent's mean, the
/// `[aggregate]` `cost_estimate`, the agent's per-attempt `max_cost_usd`.
pub fn project_merge(
    history: &CostHistory,
    agent: &AgentSpec,
    definition: &Digest,
    estimate: Option<f64>,
) -> Option<Projection> {
    projection(
        history,
        history.last(MERGE_KEY, definition),
        agent,
        estimate,
        agent.max_cost_usd,
    )
}

fn projection(
    history: &CostHistory,
    last: Option<f64>,
    agent: &AgentSpec,
    estimate: Option<f64>,
    cap: Option<f64>,
) -> Option<Projection> {
    let known = last
        .map(|usd| (usd, Basis::LastRun))
        .or_else(|| {
            history
                .agent_mean(&agent.name)
                .map(|usd| (usd, Basis::AgentMean))
        })
        .or_else(|| estimate.map(|usd| (usd, Basis::Estimate)));
    match (known, cap) {
        (Some((usd, basis)), Some(cap)) => Some(Projection {
            usd: usd.min(cap),
            basis,
        }),
        (Some((usd, basis)), None) => Some(Projection { usd, basis }),
        (None, Some(cap)) => Some(Projection {
            usd: cap,
            basis: Basis::Cap,
        }),
        (None, None) => None,
    }
}

/// A running task's share of the budget.
#[derive(Debug, Clone, Copy)]
struct Running {
    projected: Option<f64>,
    /// What its failed attempts cost so far.
    spent: f64,
}

impl Running {
    fn committed(&self) -> f64 {
        self.projected.unwrap_or(0.0).max(self.spent)
    }
}

/// Why a task may not start: what was spent and what the running tasks are projected to
/// cost; `wait` when it is of unknown cost and waits for another such task to end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refusal {
    pub spent: f64,
    pub running: f64,
    pub wait: bool,
}

/// The build's budget: what finished tasks cost, and what the running ones will.
#[derive(Debug, Clone)]
pub struct Budget {
    pub limit: f64,
    spent: f64,
    running: HashMap<usize, Running>,
}

impl Budget {
    /// A budget of `limit` of which `spent` is gone already (an earlier part of the build).
    pub fn new(limit: f64, spent: f64) -> Budget {
        Budget {
            limit,
            spent,
            running: HashMap::new(),
        }
    }

    pub fn spent(&self) -> f64 {
        self.spent
    }

    /// What the running tasks are projected to cost (or have cost, if more).
    pub fn committed(&self) -> f64 {
        // Folded from +0.0: an empty f64 sum is -0.0, which would print as "$-0.0000".
        self.running
            .values()
            .fold(0.0, |sum, r| sum + r.committed())
    }

    /// Whether a task projected at `projected` may start now; on success it counts as
    /// running until [`finish`](Self::finish).
    pub fn admit(&mut self, t: usize, projected: Option<f64>) -> Result<(), Refusal> {
        let committed = self.committed();
        let mut refusal = Refusal {
            spent: self.spent,
            running: committed,
            wait: false,
        };
        match projected {
            Some(p) if self.spent + committed + p > self.limit + 1e-9 => return Err(refusal),
            Some(_) => {}
            // Unknown: while money is left, and alone among the unknown ones.
            None if self.spent + committed >= self.limit => return Err(refusal),
            None if self.running.values().any(|r| r.projected.is_none()) => {
                refusal.wait = true;
                return Err(refusal);
            }
            None => {}
        }
        self.running.insert(
            t,
            Running {
                projected,
                spent: 0.0,
            },
        );
        Ok(())
    }

    /// A running task's failed attempt cost `cost`.
    pub fn attempt_paid(&mut self, t: usize, cost: f64) {
        if let Some(r) = self.running.get_mut(&t) {
            r.spent += cost;
        }
    }

    /// A task ended (however), its attempts having cost `cost` in all.
    pub fn finish(&mut self, t: usize, cost: f64) {
        self.running.remove(&t);
        self.spent += cost;
    }
}

/// What the coordinator keeps of money for one build.
pub(super) struct Money {
    pub(super) budget: Option<Budget>,
    pub(super) history: CostHistory,
    path: PathBuf,
    /// What stopped the build, once something did.
    pub(super) stop: Option<Stop>,
}

impl Money {
    pub(super) fn new(ctx: &BuildContext) -> Money {
        let path = ctx.layout.costs();
        Money {
            budget: ctx
                .opts
                .budget(ctx.plan)
                .map(|limit| Budget::new(limit, ctx.opts.spent_before)),
            history: CostHistory::load(&path),
            path,
            stop: None,
        }
    }

    /// Lost without harm (projections fall back to estimates), so not a build error.
    pub(super) fn save_history(&self) {
        let _ = self.history.save(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> Task {
        let text = format!("[tasks.{id}]\nprompt = \"p\"\nagent = \"claude\"\n");
        let plan = crate::plan::orchfile::parse(std::path::Path::new("Orchfile.toml"), &text)
            .expect("plan");
        plan.tasks[0].clone()
    }

    fn agent() -> AgentSpec {
        crate::agent::presets::preset("claude").unwrap()
    }

    #[test]
    fn projection_prefers_the_tasks_own_last_cost_then_the_agents_mean_then_its_estimate() {
        let mut h = CostHistory::default();
        let mut t = task("a");
        let a = agent();
        let def = Digest::of(b"v1");
        assert_eq!(project(&h, &t, &a, Some(&def)), None, "nothing known");
        t.cost_estimate = Some(0.5);
        assert_eq!(
            project(&h, &t, &a, Some(&def)).map(|p| p.basis),
            Some(Basis::Estimate)
        );
        h.record("b", &Digest::of(b"x"), "claude", 0.2);
        h.record("c", &Digest::of(b"x"), "claude", 0.4);
        let p = project(&h, &t, &a, Some(&def)).unwrap();
        assert_eq!(p.basis, Basis::AgentMean);
        assert!((p.usd - 0.3).abs() < 1e-9);
        h.record("a", &def, "claude", 0.9);
        let p = project(&h, &t, &a, Some(&def)).unwrap();
        assert_eq!((p.usd, p.basis), (0.9, Basis::LastRun));
        // A changed definition: its old cost no longer says anything.
        let p = project(&h, &t, &a, Some(&Digest::of(b"v2"))).unwrap();
        assert_eq!(p.basis, Basis::AgentMean);
        // The attempt cap bounds what is projected, and stands in for nothing known.
        t.max_cost_usd = Some(0.25);
        assert_eq!(project(&h, &t, &a, Some(&def)).unwrap().usd, 0.25);
        let fresh = CostHistory::default();
        t.cost_estimate = None;
        assert_eq!(
            project(&fresh, &t, &a, None),
            Some(Projection {
                usd: 0.25,
                basis: Basis::Cap
            })
        );
    }

    #[test]
    fn the_merge_is_projected_from_its_own_last_cost_then_the_agents_mean_then_its_estimate() {
        let mut h = CostHistory::default();
        let mut a = agent();
        let def = Digest::of(b"merge v1");
        assert_eq!(project_merge(&h, &a, &def, None), None, "nothing known");
        assert_eq!(
            project_merge(&h, &a, &def, Some(0.3)),
            Some(Projection {
                usd: 0.3,
                basis: Basis::Estimate
            })
        );
        h.record("t", &Digest::of(b"x"), "claude", 0.1);
        let p = project_merge(&h, &a, &def, Some(0.3)).unwrap();
        assert_eq!((p.usd, p.basis), (0.1, Basis::AgentMean));
        h.record_merge(&def, 0.7);
        let p = project_merge(&h, &a, &def, Some(0.3)).unwrap();
        assert_eq!((p.usd, p.basis), (0.7, Basis::LastRun));
        assert_eq!(
            h.agent_mean("claude"),
            Some(0.1),
            "the merge's cost is not its agent's mean"
        );
        let other = Digest::of(b"merge v2");
        assert_eq!(
            project_merge(&h, &a, &other, None).unwrap().basis,
            Basis::AgentMean,
            "a changed merge: its old cost says nothing"
        );
        // The agent's per-attempt limit caps it, and stands in for nothing known.
        a.max_cost_usd = Some(0.5);
        assert_eq!(project_merge(&h, &a, &def, None).unwrap().usd, 0.5);
        assert_eq!(
            project_merge(&CostHistory::default(), &a, &def, None),
            Some(Projection {
                usd: 0.5,
                basis: Basis::Cap
            })
        );
    }

    #[test]
    fn the_history_keeps_an_agents_recent_runs_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("costs.json");
        let mut h = CostHistory::load(&path);
        for i in 0..(AGENT_RUNS_KEPT + 5) {
            h.record(&format!("t{i}"), &Digest::of(b"d"), "claude", i as f64);
        }
        h.save(&path).unwrap();
        let back = CostHistory::load(&path);
        let mean = back.agent_mean("claude").unwrap();
        let kept: Vec<f64> = (5..AGENT_RUNS_KEPT + 5).map(|i| i as f64).collect();
        assert_eq!(mean, kept.iter().sum::<f64>() / kept.len() as f64);
        assert_eq!(back.last("t3", &Digest::of(b"d")), Some(3.0));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(CostHistory::load(&path).agent_mean("claude").is_none());
    }

    #[test]
    fn a_task_starts_only_while_spent_running_and_its_own_projection_fit() {
        let mut b = Budget::new(1.0, 0.0);
        assert!(b.admit(0, Some(0.4)).is_ok());
        assert!(b.admit(1, Some(0.4)).is_ok());
        assert_eq!(
            b.admit(2, Some(0.4)),
            Err(Refusal {
                spent: 0.0,
                running: 0.8,
                wait: false
            })
        );
        // A retry that cost more than projected counts at what it cost.
        b.attempt_paid(0, 0.5);
        assert!(b.admit(2, Some(0.2)).is_err(), "0.5 + 0.4 running");
        b.finish(0, 0.5);
        b.finish(1, 0.3);
        assert!((b.spent() - 0.8).abs() < 1e-9);
        assert!(b.admit(2, Some(0.2)).is_ok(), "exactly at the limit fits");
    }

    #[test]
    fn tasks_of_unknown_cost_run_one_at_a_time_while_money_is_left() {
        let mut b = Budget::new(1.0, 0.0);
        assert!(b.admit(0, None).is_ok());
        assert!(
            b.admit(1, None).is_err_and(|r| r.wait),
            "one unknown at a time: it waits"
        );
        assert!(b.admit(2, Some(0.5)).is_ok(), "a known one beside it");
        b.finish(0, 0.6);
        assert!(
            b.admit(1, None).is_err_and(|r| !r.wait),
            "0.6 spent + 0.5 running: nothing left"
        );
        b.finish(2, 0.3);
        assert!(b.admit(1, None).is_ok(), "0.9 of 1.0 spent");
    }
}
