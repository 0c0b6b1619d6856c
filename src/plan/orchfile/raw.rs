//! The Orchfile as written: serde structures that keep every value's span for diagnostics
//! and refuse unknown fields.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrchfile {
    pub(super) request: Option<String>,
    pub(super) settings: Option<RawSettings>,
    #[serde(default)]
    pub(super) agents: IndexMap<String, Spanned<RawAgent>>,
    #[serde(default)]
    pub(super) tasks: IndexMap<String, Spanned<RawTask>>,
    pub(super) aggregate: Option<RawAggregate>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) jobs: Option<Spanned<i64>>,
    pub(super) default_agent: Option<Spanned<String>>,
    pub(super) keep_going: Option<bool>,
    pub(super) kill_grace: Option<Spanned<toml::Value>>,
    pub(super) retry_backoff: Option<Spanned<toml::Value>>,
    pub(super) retry_backoff_max: Option<Spanned<toml::Value>>,
    pub(super) inline_result_limit: Option<Spanned<i64>>,
    /// Lets inputs/outputs name paths outside the project root.
    #[serde(default)]
    pub(super) allow_outside_root: bool,
    /// Turns the plan's warnings (a glob that matches nothing) into errors.
    #[serde(default)]
    pub(super) strict: bool,
    pub(super) executor: Option<Spanned<String>>,
    pub(super) slurm: Option<Spanned<RawSlurmSettings>>,
}

/// A `slurm` table of an agent or a task: the options of its jobs.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlurm {
    pub(super) partition: Option<Spanned<String>>,
    pub(super) time: Option<Spanned<toml::Value>>,
    pub(super) cpus: Option<Spanned<i64>>,
    pub(super) mem: Option<Spanned<toml::Value>>,
    pub(super) args: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) launch: Option<Spanned<String>>,
}

/// `[settings.slurm]`: the options every job starts from, and how orch drives Slurm.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlurmSettings {
    // The fields of [`RawSlurm`], written out: serde's `flatten` loses the spans.
    pub(super) partition: Option<Spanned<String>>,
    pub(super) time: Option<Spanned<toml::Value>>,
    pub(super) cpus: Option<Spanned<i64>>,
    pub(super) mem: Option<Spanned<toml::Value>>,
    pub(super) args: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) launch: Option<Spanned<String>>,
    pub(super) max_jobs: Option<Spanned<i64>>,
    pub(super) poll: Option<Spanned<toml::Value>>,
    pub(super) output_wait: Option<Spanned<toml::Value>>,
    pub(super) allocation: Option<Spanned<Vec<Spanned<String>>>>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) preset: Option<Spanned<String>>,
    pub(super) command: Option<Spanned<Vec<String>>>,
    pub(super) prompt_via: Option<Spanned<String>>,
    pub(super) result: Option<Spanned<String>>,
    pub(super) max_parallel: Option<Spanned<i64>>,
    pub(super) timeout: Option<Spanned<toml::Value>>,
    pub(super) retries: Option<Spanned<i64>>,
    pub(super) retry_on: Option<Vec<Spanned<String>>>,
    pub(super) env: Option<IndexMap<Spanned<String>, String>>,
    pub(super) executor: Option<Spanned<String>>,
    pub(super) slurm: Option<Spanned<RawSlurm>>,
    pub(super) format: Option<Spanned<String>>,
    pub(super) args: Option<Vec<String>>,
    pub(super) permission_args: Option<Spanned<RawLevelArgs>>,
    pub(super) resume_args: Option<Spanned<Vec<String>>>,
    pub(super) permissions: Option<Spanned<String>>,
    pub(super) allow_undeclared_writes: Option<Spanned<toml::Value>>,
}

/// `permission_args = { read = [...], write = [...], full = [...] }`; a level left out keeps
/// the preset's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLevelArgs {
    pub(super) read: Option<Vec<String>>,
    pub(super) write: Option<Vec<String>>,
    pub(super) full: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    pub(super) title: Option<Spanned<String>>,
    pub(super) prompt: Option<Spanned<String>>,
    pub(super) prompt_file: Option<Spanned<String>>,
    pub(super) run: Option<Spanned<String>>,
    pub(super) agent: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) inputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) outputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) deps: Vec<Spanned<String>>,
    pub(super) priority: Option<Spanned<toml::Value>>,
    pub(super) retries: Option<Spanned<i64>>,
    pub(super) timeout: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) locks: Vec<Spanned<String>>,
    pub(super) verify: Option<Spanned<String>>,
    pub(super) estimate: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) env: IndexMap<Spanned<String>, String>,
    /// A glob, a list of strings, or the name of another fan-out task.
    pub(super) foreach: Option<Spanned<toml::Value>>,
    /// A task whose answer (a JSON array) is the item list.
    pub(super) foreach_from: Option<Spanned<String>>,
    pub(super) permissions: Option<Spanned<String>>,
    pub(super) allow_undeclared_writes: Option<Spanned<toml::Value>>,
    pub(super) executor: Option<Spanned<String>>,
    pub(super) slurm: Option<Spanned<RawSlurm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAggregate {
    pub(super) strategy: Option<Spanned<String>>,
    pub(super) agent: Option<Spanned<String>>,
    pub(super) title: Option<Spanned<String>>,
    pub(super) on_missing: Option<Spanned<String>>,
    pub(super) prompt: Option<Spanned<String>>,
}
