//! The plan model: tasks, settings, agents and the aggregate step, resolved and validated.
//! Every source (Orchfile.toml, master_plan.md, `orch plan`) produces these types, and
//! everything downstream works on them only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use crate::agent::spec::{AgentSpec, AllowWrites, Isolation, Permission, ResultSpec};
use crate::disk::Digest;
use crate::executor::Placement;
use crate::graph::TaskGraph;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// Directory that relative paths (inputs, outputs, state_dir) are resolved against.
    pub root: PathBuf,
    /// The file the plan came from, for messages.
    pub source_path: PathBuf,
    pub settings: Settings,
    pub agents: IndexMap<String, AgentSpec>,
    /// Tasks in file order; a task's index is its identity inside one run.
    pub tasks: Vec<Task>,
    pub index: HashMap<String, usize>,
    pub aggregate: Option<AggregateSpec>,
    /// The person's request this plan answers, shown in master_plan.md.
    pub request: Option<String>,
    /// The fan-out templates the tasks were expanded from, in file order.
    pub fanouts: Vec<Fanout>,
    /// Each task's definition digests as the plan cache computed them (see
    /// `fingerprint::task_definition`); empty for a freshly parsed plan.
    #[serde(skip)]
    pub definitions: Vec<Option<KeptDefinition>>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub jobs: Option<usize>,
    pub default_agent: String,
    pub keep_going: bool,
    /// Time between SIGTERM and SIGKILL when a task is stopped.
    pub kill_grace: Duration,
    /// First delay of the exponential retry backoff.
    pub retry_backoff: Duration,
    /// Upper bound for one backoff delay.
    pub retry_backoff_max: Duration,
    /// Dep results up to this size are inlined into a dependent's prompt; larger ones by path.
    pub inline_result_limit: usize,
    /// The plan's warnings (a glob that matches nothing) are errors.
    pub strict: bool,
    /// Where tasks run unless their agent or they say otherwise (`executor`, and the Slurm
    /// options of `[settings.slurm]`).
    pub placement: Placement,
    /// How orch drives Slurm, for the whole build (`[settings.slurm]`).
    pub slurm: SlurmSettings,
    /// What the whole run may cost, in US dollars (`--max-cost` overrides): no agent task
    /// starts whose projected cost would take the run past it.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// How long a provider's tasks may wait for its usage limit to reset before the build
    /// stops.
    #[serde(default = "default_quota_wait")]
    pub max_quota_wait: Duration,
    /// The output cache: on or off, its size cap, the remote cache.
    #[serde(default)]
    pub cache: super::CacheSettings,
    /// Whether tasks run in worktrees of their own unless their agent or they say.
    #[serde(default)]
    pub isolation: Isolation,
    /// Untracked files each worktree gets from the project (`.env`, `node_modules`): globs.
    #[serde(default)]
    pub worktree_include: Vec<String>,
}

/// `max_quota_wait`'s default: six hours, past the five-hour windows of the subscription
/// plans, so one reset is always waited out.
pub const DEFAULT_QUOTA_WAIT: Duration = Duration::from_secs(6 * 3600);

fn default_quota_wait() -> Duration {
    DEFAULT_QUOTA_WAIT
}

/// The build-wide part of `[settings.slurm]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlurmSettings {
    /// Slurm jobs (or steps) of this build at once; `-j` limits the local ones apart.
    pub max_jobs: usize,
    /// How often `squeue` is asked about the jobs in flight.
    pub poll: Duration,
    /// How long a declared output (or an exit file) may take to show on the shared
    /// filesystem after its job ended.
    pub output_wait: Duration,
    /// `sbatch` options of the allocation steps run in (its partition is `partition`).
    pub allocation: Vec<String>,
    /// An allocation with no step for this long is released.
    pub allocation_idle: Duration,
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            max_jobs: 100,
            poll: Duration::from_secs(1),
            output_wait: Duration::from_secs(10),
            allocation: vec!["--nodes=1".into()],
            allocation_idle: Duration::from_secs(5),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            state_dir: PathBuf::from(".orchestrator"),
            jobs: None,
            default_agent: "claude".into(),
            keep_going: false,
            kill_grace: Duration::from_secs(5),
            retry_backoff: Duration::from_secs(2),
            retry_backoff_max: Duration::from_secs(120),
            inline_result_limit: 64 * 1024,
            strict: false,
            placement: Placement::default(),
            slurm: SlurmSettings::default(),
            max_cost_usd: None,
            max_quota_wait: DEFAULT_QUOTA_WAIT,
            cache: Default::default(),
            isolation: Isolation::None,
            worktree_include: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// `run = "..."`: a shell command, `sh -c`, no agent.
    Shell(String),
    /// `prompt = "..."`: sent to the task's agent.
    Prompt(String),
    /// `prompt_file = "..."`: the file's content (read at run time) is the prompt.
    PromptFile(PathBuf),
}

impl Action {
    pub fn is_shell(&self) -> bool {
        matches!(self, Action::Shell(_))
    }
}

/// P0 (critical) .. P3 (low); lower runs first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Priority(pub u8);

impl Default for Priority {
    fn default() -> Self {
        Priority(2)
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P{}", self.0)
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub action: Action,
    /// Agent name for prompt tasks (resolved against `Plan::agents`); `None` for shell tasks.
    pub agent: Option<String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub deps: Vec<String>,
    pub priority: Priority,
    pub retries: Option<u32>,
    pub timeout: Option<Duration>,
    pub locks: Vec<String>,
    pub verify: Option<String>,
    pub estimate: Option<Duration>,
    pub env: IndexMap<String, String>,
    /// A fan-out template's item source (`foreach`, `foreach_from`); a loaded plan holds
    /// none, since [`crate::plan::fanout::expand`] replaces each template by its instances.
    pub foreach: Option<Foreach>,
    /// An instance's item and the template it came from; `None` for a plain task.
    pub item: Option<Item>,
    /// What the task's agent may do to the tree; `None`: the agent's level, else the default.
    pub permissions: Option<Permission>,
    pub allow_undeclared_writes: Option<AllowWrites>,
    /// Where the task runs (`executor`, `[tasks.X.slurm]`), over its agent's and settings'.
    pub placement: Placement,
    /// What one attempt may cost (USD), over its agent's; also caps its projection.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// What the task is expected to cost (USD), for budgets before it has a history.
    #[serde(default)]
    pub cost_estimate: Option<f64>,
    /// `cache = false`: never restored from the output cache nor stored in it (a task with
    /// side effects beyond its outputs). Off for every task when the settings say so.
    #[serde(default = "super::cache::on")]
    pub cache: bool,
    /// Whether it runs in a worktree of its own; `None`: its agent's, else the settings'.
    #[serde(default)]
    pub isolation: Option<Isolation>,
}

/// Where a fan-out template's items come from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Foreach {
    /// `foreach = "src/**/*.ts"`: one item per matching file, sorted.
    Glob(String),
    /// `foreach = ["fr", "de"]`: these items, in this order.
    List(Vec<String>),
    /// `foreach = "review"`: the items of another fan-out task, in its order.
    SameAs(String),
    /// `foreach_from = "T-01"`: the JSON array T-01 answered (dynamic fan-out).
    From(String),
}

/// One instance's item: `review[src/a.ts]` has template `review` and value `src/a.ts`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Item {
    pub template: String,
    pub value: String,
}

/// A fan-out template as loaded: its definition (as written, placeholders and all) and its
/// instances' indexes in item order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Fanout {
    pub template: Task,
    pub instances: Vec<usize>,
}

impl Task {
    /// Estimate used for the critical path: the declared one, or one unit.
    pub fn weight(&self) -> f64 {
        self.estimate.map(|d| d.as_secs_f64()).unwrap_or(1.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AggregateStrategy {
    Concat,
    Structured,
    Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OnMissing {
    Rerun,
    Fail,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AggregateSpec {
    pub strategy: AggregateStrategy,
    pub agent: Option<String>,
    pub title: String,
    pub on_missing: OnMissing,
    /// Extra instructions for the `agent` strategy's merge prompt.
    pub prompt: Option<String>,
    /// What the `agent` strategy's merge is expected to cost, until it has run once.
    pub cost_estimate: Option<f64>,
}

impl Plan {
    /// Task id -> position, the `index` of a plan with these tasks.
    pub fn index_of(tasks: &[Task]) -> HashMap<String, usize> {
        tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect()
    }

    pub fn task(&self, id: &str) -> Option<&Task> {
        self.index.get(id).map(|&i| &self.tasks[i])
    }

    /// The fan-out template named `name`, if there is one.
    pub fn fanout(&self, name: &str) -> Option<&Fanout> {
        self.fanouts.iter().find(|f| f.template.id == name)
    }

    /// A task's deps as a person reads them: all the instances of a fan-out (in item
    /// order, as expansion lists them) by the template's name, `review`.
    pub fn deps_shown(&self, task: &Task) -> Vec<String> {
        if self.fanouts.is_empty() {
            return task.deps.clone();
        }
        let mut out = Vec::new();
        let mut k = 0;
        while k < task.deps.len() {
            let d = &task.deps[k];
            let whole = self
                .task(d)
                .and_then(|t| t.item.as_ref())
                .and_then(|i| self.fanout(&i.template))
                .filter(|f| {
                    f.instances.len() > 1
                        && task.deps.len() - k >= f.instances.len()
                        && f.instances
                            .iter()
                            .zip(&task.deps[k..])
                            .all(|(&i, d)| self.tasks[i].id == *d)
                });
            match whole {
                Some(f) => {
                    out.push(f.template.id.clone());
                    k += f.instances.len();
                }
                None => {
                    out.push(d.clone());
                    k += 1;
                }
            }
        }
        out
    }

    /// What a name given on the command line stands for: one task, or every instance of a
    /// fan-out template (none when it has no items). `None` when it names neither.
    pub fn named(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(&t) = self.index.get(name) {
            return Some(vec![t]);
        }
        self.fanout(name).map(|f| f.instances.clone())
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(&self.settings.state_dir)
    }

    /// The agent a prompt task runs with, after an optional `--agent` override.
    pub fn agent_for(&self, task: &Task, override_agent: Option<&str>) -> Option<&AgentSpec> {
        if task.action.is_shell() {
            return None;
        }
        let name = override_agent
            .or(task.agent.as_deref())
            .unwrap_or(&self.settings.default_agent);
        self.agents.get(name)
    }

    /// The permission level `task` runs `agent` at: the task's, else the agent's, else
    /// `write` when the task declares outputs (or its agent writes a result file), else
    /// `read`.
    pub fn permission(&self, task: &Task, agent: &AgentSpec) -> Permission {
        task.permissions.or(agent.permissions).unwrap_or(
            if !task.outputs.is_empty() || matches!(agent.result, ResultSpec::File(_)) {
                Permission::Write
            } else {
                Permission::Read
            },
        )
    }

    /// Whether `task` runs in a git worktree of its own: the task's setting, else its
    /// agent's (after `--agent`), else the settings'.
    pub fn isolation(&self, task: &Task, override_agent: Option<&str>) -> Isolation {
        task.isolation
            .or_else(|| {
                self.agent_for(task, override_agent)
                    .and_then(|a| a.isolation)
            })
            .unwrap_or(self.settings.isolation)
    }

    /// Which undeclared writes `task` may make: the task's setting, else the agent's;
    /// `None` means none at all.
    pub fn allowed_writes<'a>(
        &'a self,
        task: &'a Task,
        agent: &'a AgentSpec,
    ) -> Option<&'a AllowWrites> {
        task.allow_undeclared_writes
            .as_ref()
            .or(agent.allow_undeclared_writes.as_ref())
    }

    /// The executor `task` runs on: the command line's `--executor` (`chosen`), else the
    /// task's, its agent's, the settings'; a sim task runs in orch itself (local).
    pub fn executor_of(
        &self,
        task: &Task,
        override_agent: Option<&str>,
        chosen: Option<crate::executor::ExecutorKind>,
    ) -> crate::executor::ExecutorKind {
        use crate::executor::ExecutorKind;
        let agent = self.agent_for(task, override_agent);
        if agent.is_some_and(|a| a.kind == crate::agent::spec::AgentKind::Sim) {
            return ExecutorKind::Local;
        }
        chosen
            .or(task.placement.executor)
            .or_else(|| agent.and_then(|a| a.placement.executor))
            .or(self.settings.placement.executor)
            .unwrap_or(ExecutorKind::Local)
    }

    /// Where `task` runs (see [`Self::executor_of`]): `None` for a local child, else the
    /// options of its Slurm job, the task's over its agent's over the settings'.
    pub fn slurm_job(
        &self,
        task: &Task,
        override_agent: Option<&str>,
        chosen: Option<crate::executor::ExecutorKind>,
    ) -> Option<crate::executor::SlurmJobSpec> {
        let kind = self.executor_of(task, override_agent, chosen);
        let agent = self.agent_for(task, override_agent);
        let mut levels = vec![&self.settings.placement];
        if let Some(a) = agent {
            levels.push(&a.placement);
        }
        levels.push(&task.placement);
        Placement::resolve(&levels, Some(kind), &task.id)
    }

    /// Resolves a path written in the plan against the project root.
    pub fn resolve(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// `path` relative to the project root as text, as records and reports name files; a
    /// path outside the root stays as it is.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

/// A task's definition as the plan cache kept it: the digest of the whole and of each field,
/// in the order of `fingerprint::DEFINITION_FIELDS` (which hashes them). Kept in the plan so
/// that the builds of an unchanged Orchfile need not hash every definition again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptDefinition {
    pub digest: Digest,
    pub fields: [Digest; 7],
}

/// The graph of a plan. Defined here, beside the model, so that [`TaskGraph`] (plain
/// dependency lists) needs nothing of the plan and the plan's validation can use it.
impl TaskGraph {
    /// Builds the graph of a validated plan (deps are known, the graph is acyclic).
    pub fn from_plan(plan: &Plan) -> Result<TaskGraph, Vec<usize>> {
        let deps = plan
            .tasks
            .iter()
            .map(|t| t.deps.iter().map(|d| plan.index[d]).collect())
            .collect();
        let weights: Vec<f64> = plan.tasks.iter().map(|t| t.weight()).collect();
        TaskGraph::new(deps, &weights)
    }
}

/// `./src//a.txt` -> `src/a.txt`, so the same file always has one name. An absolute path
/// (allowed with `allow_outside_root`) stays absolute.
pub fn normalize(p: &str) -> String {
    let rel = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/");
    if p.starts_with('/') {
        format!("/{rel}")
    } else {
        rel
    }
}
