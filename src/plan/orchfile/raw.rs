//! The Orchfile as written: serde structures that keep every value's span for diagnostics
//! and refuse unknown fields. The same structures give `orch schema` its JSON Schema
//! (schemars reads the fields, the serde attributes and these doc comments), so the schema
//! an editor checks against cannot drift from what the parser accepts. (A field with its own
//! `schema_with` says `#[serde(default)]` even when it is an `Option`: schemars cannot see
//! the `Option` through it and would list the field as required.)

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use toml::Spanned;

use super::field_schema as s;
use crate::plan::checks;

/// An orch plan: tasks with their inputs, outputs and deps, the agents that run them, and
/// how their results are merged. Paths are relative to this file's directory.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Orchfile.toml")]
pub(super) struct RawOrchfile {
    /// The request this plan answers; shown at the top of .orchestrator/master_plan.md.
    pub(super) request: Option<String>,
    /// How builds of this plan run.
    pub(super) settings: Option<RawSettings>,
    /// Agents by name. A table named like a preset (claude, codex, gemini, aider, ollama,
    /// llm) starts from it; `preset` picks one for another name; `sim` is built in.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, RawAgent>")]
    pub(super) agents: IndexMap<String, Spanned<RawAgent>>,
    /// Tasks by id (ASCII letters, digits, `-`, `_` and `.`).
    #[serde(default)]
    #[schemars(schema_with = "tasks_schema")]
    pub(super) tasks: IndexMap<String, Spanned<RawTask>>,
    /// Phase 4: merge every result into .orchestrator/final_output.md.
    pub(super) aggregate: Option<RawAggregate>,
}

/// How builds of this plan run.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    /// Where orch keeps its state: results, logs, journal, master_plan.md.
    #[schemars(with = "Option<String>")]
    pub(super) state_dir: Option<Spanned<String>>,
    /// Tasks running at once; `-j` overrides. Default: the number of CPUs.
    #[serde(default)]
    #[schemars(schema_with = "s::jobs")]
    pub(super) jobs: Option<Spanned<i64>>,
    /// The agent of prompt tasks that name none.
    #[schemars(with = "Option<String>")]
    pub(super) default_agent: Option<Spanned<String>>,
    /// Keep starting independent tasks after a failure (`-k`).
    pub(super) keep_going: Option<bool>,
    /// How long a stopped task (timed out, or the build cancelled) may take to exit after
    /// its signal, before SIGKILL.
    #[serde(default)]
    #[schemars(schema_with = "s::kill_grace")]
    pub(super) kill_grace: Option<Spanned<toml::Value>>,
    /// The first delay of the exponential backoff after a transient failure (overload,
    /// rate limit).
    #[serde(default)]
    #[schemars(schema_with = "s::retry_backoff")]
    pub(super) retry_backoff: Option<Spanned<toml::Value>>,
    /// The longest single backoff delay; at least `retry_backoff`.
    #[serde(default)]
    #[schemars(schema_with = "s::retry_backoff_max")]
    pub(super) retry_backoff_max: Option<Spanned<toml::Value>>,
    /// Dep results up to this many bytes are inlined into prompts; larger ones are named
    /// by path.
    #[serde(default)]
    #[schemars(schema_with = "s::inline_result_limit")]
    pub(super) inline_result_limit: Option<Spanned<i64>>,
    /// Lets inputs/outputs name paths outside the project root.
    #[serde(default)]
    pub(super) allow_outside_root: bool,
    /// Turns the plan's warnings (a glob that matches nothing) into errors.
    #[serde(default)]
    pub(super) strict: bool,
    /// Where tasks run: `local` (here) or `slurm` (jobs of a Slurm cluster); an agent or a
    /// task may say otherwise, and `orch build --executor` decides over all of them.
    #[serde(default)]
    #[schemars(schema_with = "s::executor")]
    pub(super) executor: Option<Spanned<String>>,
    /// The Slurm executor: the options every job starts from, and how orch drives Slurm.
    #[schemars(with = "Option<RawSlurmSettings>")]
    pub(super) slurm: Option<Spanned<RawSlurmSettings>>,
    /// What one build may cost in US dollars (`--max-cost` overrides): an agent task whose
    /// projected cost would take the build past it does not start; running tasks finish.
    #[serde(default)]
    #[schemars(schema_with = "s::cost")]
    pub(super) max_cost_usd: Option<Spanned<toml::Value>>,
    /// How long a provider's tasks may wait for its usage limit to reset (default 6h);
    /// past it the build stops.
    #[serde(default)]
    #[schemars(schema_with = "s::max_quota_wait")]
    pub(super) max_quota_wait: Option<Spanned<toml::Value>>,
    /// Keep each successful task's outputs, result and reply metadata in a local
    /// content-addressed cache (in the state directory), and restore a task whose
    /// fingerprint is found there instead of running it. `--no-cache` turns it off for one
    /// build.
    pub(super) cache: Option<bool>,
    /// The local cache is pruned to this size, least recently used entries first: a number
    /// of bytes or a size like `"5G"`, `"500M"`.
    #[serde(default)]
    #[schemars(schema_with = "s::cache_max_size")]
    pub(super) cache_max_size: Option<Spanned<toml::Value>>,
    /// A remote cache speaking the Bazel HTTP cache protocol (`/ac/<key>`, `/cas/<digest>`):
    /// `"http://host:port/prefix"` (bazel-remote, nginx with WebDAV PUT, ...).
    #[serde(default)]
    #[schemars(schema_with = "s::remote_cache")]
    pub(super) remote_cache: Option<Spanned<String>>,
    /// `read-write` (restore and upload) or `read` (restore only, for CI readers).
    #[serde(default)]
    #[schemars(schema_with = "s::remote_cache_mode")]
    pub(super) remote_cache_mode: Option<Spanned<String>>,
    /// How the remote cache is authenticated: `bearer` (the variable holds a token) or
    /// `basic` (it holds `user:password`).
    #[serde(default)]
    #[schemars(schema_with = "s::remote_cache_auth")]
    pub(super) remote_cache_auth: Option<Spanned<String>>,
    /// The environment variable the remote cache's credentials are read from at build time;
    /// they are never written to logs or state.
    #[schemars(with = "Option<String>")]
    pub(super) remote_cache_auth_env: Option<Spanned<String>>,
    /// How long connecting to the remote cache may take (default 2s).
    #[serde(default)]
    #[schemars(schema_with = "s::remote_cache_connect_timeout")]
    pub(super) remote_cache_connect_timeout: Option<Spanned<toml::Value>>,
    /// How long a remote cache request may go without a byte moving either way (default
    /// 10s); a slow transfer that keeps moving is never cut off.
    #[serde(default)]
    #[schemars(schema_with = "s::remote_cache_stall_timeout")]
    pub(super) remote_cache_stall_timeout: Option<Spanned<toml::Value>>,
    /// `worktree`: each task runs in a git worktree of its own under the state directory,
    /// and its committed change is merged back in dependency order; `none` (the default):
    /// in the project tree. An agent or a task may say otherwise.
    #[serde(default)]
    #[schemars(schema_with = "s::isolation")]
    pub(super) isolation: Option<Spanned<String>>,
    /// Globs of untracked files each worktree gets from the project (`.env`,
    /// `node_modules`): a file is copied, a directory symlinked.
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) worktree_include: Option<Vec<Spanned<String>>>,
}

/// A `slurm` table of an agent or a task: the options of its jobs, over those of
/// `[settings.slurm]` (and, for a task, its agent's).
#[derive(Deserialize, Default, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlurm {
    /// `--partition` of each job (and of the steps' allocation).
    #[schemars(with = "Option<String>")]
    pub(super) partition: Option<Spanned<String>>,
    /// Slurm's `--time`, rounded up to whole minutes; orch's `timeout` is its own.
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_time")]
    pub(super) time: Option<Spanned<toml::Value>>,
    /// `--cpus-per-task`.
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_cpus")]
    pub(super) cpus: Option<Spanned<i64>>,
    /// `--mem`: a size like `4G` or `500M` (a number alone is megabytes).
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_mem")]
    pub(super) mem: Option<Spanned<toml::Value>>,
    /// More sbatch/srun options; an agent's and a task's are added to the settings'.
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) args: Option<Spanned<Vec<Spanned<String>>>>,
    /// `batch`: an sbatch job per attempt; `step`: srun in an allocation orch holds.
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_launch")]
    pub(super) launch: Option<Spanned<String>>,
}

/// `[settings.slurm]`: the options every job starts from, and how orch drives Slurm.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlurmSettings {
    // The fields of [`RawSlurm`], written out: serde's `flatten` loses the spans.
    /// `--partition` of each job (and of the steps' allocation).
    #[schemars(with = "Option<String>")]
    pub(super) partition: Option<Spanned<String>>,
    /// Slurm's `--time`, rounded up to whole minutes; orch's `timeout` is its own.
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_time")]
    pub(super) time: Option<Spanned<toml::Value>>,
    /// `--cpus-per-task`.
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_cpus")]
    pub(super) cpus: Option<Spanned<i64>>,
    /// `--mem`: a size like `4G` or `500M` (a number alone is megabytes).
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_mem")]
    pub(super) mem: Option<Spanned<toml::Value>>,
    /// More sbatch/srun options; an agent's and a task's are added to the settings'.
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) args: Option<Spanned<Vec<Spanned<String>>>>,
    /// `batch`: an sbatch job per attempt; `step`: srun in an allocation orch holds.
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_launch")]
    pub(super) launch: Option<Spanned<String>>,
    /// Slurm jobs (or steps) of this build at once; `-j` limits local tasks apart.
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_max_jobs")]
    pub(super) max_jobs: Option<Spanned<i64>>,
    /// How often squeue is asked about the jobs in flight.
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_poll")]
    pub(super) poll: Option<Spanned<toml::Value>>,
    /// How long a job's outputs may take to show on the shared filesystem.
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_output_wait")]
    pub(super) output_wait: Option<Spanned<toml::Value>>,
    /// sbatch options of the allocation steps run in.
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) allocation: Option<Spanned<Vec<Spanned<String>>>>,
    /// The allocation is released after this long without a step.
    #[serde(default)]
    #[schemars(schema_with = "s::slurm_allocation_idle")]
    pub(super) allocation_idle: Option<Spanned<toml::Value>>,
}

impl RawSlurmSettings {
    /// The job options part of the table.
    pub(super) fn job(&self) -> RawSlurm {
        RawSlurm {
            partition: self.partition.clone(),
            time: self.time.clone(),
            cpus: self.cpus.clone(),
            mem: self.mem.clone(),
            args: self.args.clone(),
            launch: self.launch.clone(),
        }
    }
}

/// An agent: a command-line program that gets a task's prompt and replies with its result.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    /// The preset this agent starts from, for a table not named like one.
    #[serde(default)]
    #[schemars(schema_with = "s::preset")]
    pub(super) preset: Option<Spanned<String>>,
    /// The argv to run (never a shell string); `{prompt}` and `{prompt_file}` are filled
    /// in. Required without a preset.
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) command: Option<Spanned<Vec<String>>>,
    /// How the prompt reaches the agent: on stdin, as the `{prompt}` argument, or as a
    /// file named by `{prompt_file}`.
    #[serde(default)]
    #[schemars(schema_with = "s::prompt_via")]
    pub(super) prompt_via: Option<Spanned<String>>,
    /// Where the reply is read: `stdout`, `json:<field>` of stdout, or `file:<path>`
    /// (`{task_id}` and `{agent_id}` may be in the path).
    #[serde(default)]
    #[schemars(schema_with = "s::result")]
    pub(super) result: Option<Spanned<String>>,
    /// At most this many tasks of this agent at once.
    #[serde(default)]
    #[schemars(schema_with = "s::max_parallel")]
    pub(super) max_parallel: Option<Spanned<i64>>,
    /// How long one attempt may run before its process group is stopped.
    #[serde(default)]
    #[schemars(schema_with = "s::timeout")]
    pub(super) timeout: Option<Spanned<toml::Value>>,
    /// Attempts after a failure (transient ones back off first).
    #[serde(default)]
    #[schemars(schema_with = "s::retries")]
    pub(super) retries: Option<Spanned<i64>>,
    /// Output patterns (case-insensitive) that mark a failure as transient: retried with
    /// backoff.
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) retry_on: Option<Vec<Spanned<String>>>,
    /// Extra environment for the agent's process.
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    pub(super) env: Option<IndexMap<Spanned<String>, String>>,
    /// Where this agent's tasks run (`local` or `slurm`), over `settings.executor`.
    #[serde(default)]
    #[schemars(schema_with = "s::executor")]
    pub(super) executor: Option<Spanned<String>>,
    /// Its jobs' Slurm options, over `[settings.slurm]`.
    #[schemars(with = "Option<RawSlurm>")]
    pub(super) slurm: Option<Spanned<RawSlurm>>,
    /// How the CLI's output is read: `claude`, `codex`, `gemini` or `generic`.
    #[serde(default)]
    #[schemars(schema_with = "s::reply_format")]
    pub(super) format: Option<Spanned<String>>,
    /// Extra arguments, put where the command has `{args}`.
    pub(super) args: Option<Vec<String>>,
    /// The CLI's arguments for each permission level, over the preset's.
    #[schemars(with = "Option<RawLevelArgs>")]
    pub(super) permission_args: Option<Spanned<RawLevelArgs>>,
    /// The arguments that continue a session; one of them holds `{session_id}`.
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) resume_args: Option<Spanned<Vec<String>>>,
    /// What the agent may do (`read`, `write` or `full`); by default `write` for a task
    /// with outputs, else `read`.
    #[serde(default)]
    #[schemars(schema_with = "s::permissions")]
    pub(super) permissions: Option<Spanned<String>>,
    /// Files the agent may change beyond the declared outputs: `true`, or a list of globs.
    #[serde(default)]
    #[schemars(schema_with = "s::allow_writes")]
    pub(super) allow_undeclared_writes: Option<Spanned<toml::Value>>,
    /// What one attempt of its tasks may cost in US dollars: claude gets it as
    /// `--max-budget-usd`; it also caps an attempt's projected cost.
    #[serde(default)]
    #[schemars(schema_with = "s::cost")]
    pub(super) max_cost_usd: Option<Spanned<toml::Value>>,
    /// The API whose rate and usage limits this agent shares with others of the same
    /// provider (default: the preset's API, `anthropic`, `openai`, `google`; else the
    /// agent's name).
    #[schemars(with = "Option<String>")]
    pub(super) provider: Option<Spanned<String>>,
    /// `worktree`: this agent's tasks run in git worktrees of their own, over
    /// `settings.isolation`.
    #[serde(default)]
    #[schemars(schema_with = "s::isolation")]
    pub(super) isolation: Option<Spanned<String>>,
    /// Whether the CLI starts before its provider has a place for it, its prompt on stdin
    /// but the last byte until then: the preset's (true for claude, codex and gemini, which
    /// wait for the end of their stdin; false otherwise).
    pub(super) start_early: Option<bool>,
}

/// `permission_args = { read = [...], write = [...], full = [...] }`; a level left out keeps
/// the preset's.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLevelArgs {
    /// Arguments for the `read` level.
    pub(super) read: Option<Vec<String>>,
    /// Arguments for the `write` level.
    pub(super) write: Option<Vec<String>>,
    /// Arguments for the `full` level.
    pub(super) full: Option<Vec<String>>,
}

/// A task: one prompt for an agent, or one shell command.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    /// What the task does, in a few words; the status table's "Task Description".
    /// Default: the task id.
    #[schemars(with = "Option<String>")]
    pub(super) title: Option<Spanned<String>>,
    /// The prompt for the agent, with `{{ deps.<id>.result }}`, `{{ inputs }}` and
    /// `{{ outputs }}` placeholders. One of `prompt`, `prompt_file` or `run`.
    #[schemars(with = "Option<String>")]
    pub(super) prompt: Option<Spanned<String>>,
    /// A file holding the prompt.
    #[schemars(with = "Option<String>")]
    pub(super) prompt_file: Option<Spanned<String>>,
    /// A shell task: this runs with `sh -c`, no agent.
    #[schemars(with = "Option<String>")]
    pub(super) run: Option<Spanned<String>>,
    /// The agent of a prompt task. Default: `settings.default_agent`.
    #[schemars(with = "Option<String>")]
    pub(super) agent: Option<Spanned<String>>,
    /// Globs of the files the task reads; their contents are hashed (`*` stays in one
    /// directory, `**` crosses them).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub(super) inputs: Vec<Spanned<String>>,
    /// Files the task must produce; checked after it runs.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub(super) outputs: Vec<Spanned<String>>,
    /// Tasks whose results and outputs this task needs; it runs after them.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub(super) deps: Vec<Spanned<String>>,
    /// Which ready task starts first: P0 before P3; ties by the longer critical path.
    #[serde(default)]
    #[schemars(schema_with = "s::priority")]
    pub(super) priority: Option<Spanned<toml::Value>>,
    /// Attempts after a failure; overrides the agent's.
    #[serde(default)]
    #[schemars(schema_with = "s::retries")]
    pub(super) retries: Option<Spanned<i64>>,
    /// How long one attempt may run; overrides the agent's.
    #[serde(default)]
    #[schemars(schema_with = "s::timeout")]
    pub(super) timeout: Option<Spanned<toml::Value>>,
    /// Names; tasks sharing one never run at the same time.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub(super) locks: Vec<Spanned<String>>,
    /// A success check (`sh -c`), run after the outputs exist.
    #[schemars(with = "Option<String>")]
    pub(super) verify: Option<Spanned<String>>,
    /// How long the task takes: weighs the critical path and the dry run's schedule, and is
    /// the sim agent's duration.
    #[serde(default)]
    #[schemars(schema_with = "s::estimate")]
    pub(super) estimate: Option<Spanned<toml::Value>>,
    /// Extra environment for the task's process.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub(super) env: IndexMap<Spanned<String>, String>,
    /// Fan-out: one instance of this task per item, named `id[item]`. A glob (one item per
    /// matching file, sorted), a list of strings (in its order), or the id of another fan-out
    /// task (the same items).
    #[serde(default)]
    #[schemars(schema_with = "s::foreach")]
    pub(super) foreach: Option<Spanned<toml::Value>>,
    /// Fan-out over the answer of this task: its result is a JSON array of the items.
    #[schemars(with = "Option<String>")]
    pub(super) foreach_from: Option<Spanned<String>>,
    /// What the agent may do on this task (`read`, `write` or `full`), over its agent's.
    #[serde(default)]
    #[schemars(schema_with = "s::permissions")]
    pub(super) permissions: Option<Spanned<String>>,
    /// Files the agent may change beyond the declared outputs: `true`, or a list of globs.
    #[serde(default)]
    #[schemars(schema_with = "s::allow_writes")]
    pub(super) allow_undeclared_writes: Option<Spanned<toml::Value>>,
    /// `worktree`: the task runs in a git worktree of its own and its change is merged
    /// back; `none`: in the project tree. Over its agent's and `settings.isolation`.
    #[serde(default)]
    #[schemars(schema_with = "s::isolation")]
    pub(super) isolation: Option<Spanned<String>>,
    /// Where this task runs (`local` or `slurm`), over its agent's and `settings.executor`.
    #[serde(default)]
    #[schemars(schema_with = "s::executor")]
    pub(super) executor: Option<Spanned<String>>,
    /// Its jobs' Slurm options, over its agent's and `[settings.slurm]`.
    #[schemars(with = "Option<RawSlurm>")]
    pub(super) slurm: Option<Spanned<RawSlurm>>,
    /// What one attempt may cost in US dollars, over its agent's.
    #[serde(default)]
    #[schemars(schema_with = "s::cost")]
    pub(super) max_cost_usd: Option<Spanned<toml::Value>>,
    /// What the task is expected to cost in US dollars: its projection under a budget
    /// until it (or its agent) has run before.
    #[serde(default)]
    #[schemars(schema_with = "s::cost")]
    pub(super) cost_estimate: Option<Spanned<toml::Value>>,
    /// `false`: never restored from the output cache nor stored in it, for a task whose
    /// work is more than its outputs (a deploy, a message sent).
    pub(super) cache: Option<bool>,
}

/// How the results are merged into final_output.md.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAggregate {
    /// `concat` (one after another), `structured` (a report with a table of contents) or
    /// `agent` (an agent merges them).
    #[serde(default)]
    #[schemars(schema_with = "s::strategy")]
    pub(super) strategy: Option<Spanned<String>>,
    /// The agent of the `agent` strategy. Default: `settings.default_agent`.
    #[schemars(with = "Option<String>")]
    pub(super) agent: Option<Spanned<String>>,
    /// The report's title.
    #[schemars(with = "Option<String>")]
    pub(super) title: Option<Spanned<String>>,
    /// What a build does with a result that is missing at merge time: `rerun` its task
    /// once, or `fail`.
    #[serde(default)]
    #[schemars(schema_with = "s::on_missing")]
    pub(super) on_missing: Option<Spanned<String>>,
    /// Extra instructions for the merging agent.
    #[schemars(with = "Option<String>")]
    pub(super) prompt: Option<Spanned<String>>,
    /// What the `agent` strategy's merge is expected to cost in US dollars: its projection
    /// under a budget until it (or its agent) has run before.
    #[serde(default)]
    #[schemars(schema_with = "s::cost")]
    pub(super) cost_estimate: Option<Spanned<toml::Value>>,
}

/// Tasks by id: each id as [`checks::valid_task_id`] allows.
fn tasks_schema(generator: &mut SchemaGenerator) -> Schema {
    let task = generator.subschema_for::<RawTask>();
    json_schema!({
        "type": "object",
        "propertyNames": {
            "pattern": "^[A-Za-z0-9._-]+$",
            "description": checks::TASK_ID_RULE,
        },
        "additionalProperties": task,
    })
}
