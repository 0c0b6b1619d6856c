//! One build: load state, schedule the wanted tasks, run them on workers, record every state
//! change (journal, status table, execution log), then aggregate the results.
//!
//! - [`build`](run_build): the phases of one build, in order; `dynamic`: a build whose
//!   `foreach_from` sources answer first, [`build_expanding`];
//! - `options`: what a build is asked for ([`BuildOptions`]) and how it ended;
//! - `context`: what the workers share ([`BuildContext`]) and the up-to-date check;
//! - `runner`: the worker side: run a task with retries, sessions continued; `attempt`: one
//!   try (shell, sim or agent) and its checks; `cached`: restoring from and storing to the
//!   output cache; `agent_run`: one run of an agent CLI, read
//!   as it streams; `writes`: the undeclared-write check;
//! - `coordinator`: the scheduling thread's side: journal, status rows, log, events;
//! - `aggregate`: `final_output.md`; `merge`: its merge by an agent, a paid call under the
//!   budget and the limiter; `prompt`: the task file an agent gets;
//! - `budget`: what a build may spend, and each agent task's projected cost; `money`: the
//!   coordinator's side of it; `providers`: the providers' limiters, and their news;
//! - `kept`: a task whose change an earlier build kept with a merge conflict does not
//!   start again until `orch merge` (or `--discard`);
//! - `gone`: instances whose fan-out item went away;
//! - `migrate`: records of orch before early cutoff carried over, so an upgrade re-runs
//!   nothing;
//! - [`up_to_date`]: the fast path of a build that finds everything up to date;
//! - [`dry_run`], [`explain`] and [`read_only_context`]: the same checks without running
//!   anything, for `--dry-run`, `orch explain`, `orch status` and `orch watch`.
//!
//! Only what other modules use is exported here; the rest is `pub(crate)` at most.

mod agent_run;
mod aggregate;
mod attempt;
mod attempts;
pub mod budget;
mod build;
mod cached;
mod context;
mod coordinator;
pub mod dry_run;
mod dynamic;
mod early_start;
mod exchange;
pub mod explain;
mod gone;
mod isolation;
mod kept;
mod merge;
mod migrate;
mod money;
mod options;
mod place;
mod prompt;
mod providers;
mod queue;
mod readonly;
mod runner;
pub mod up_to_date;
pub mod worktrees;
mod writes;

pub use build::{run_build, LEAK_ON_RETURN};
pub use context::BuildContext;
pub use dynamic::build_expanding;
pub use explain::FingerprintParts;
pub use options::{task_index, task_indexes, wanted_tasks, BuildOptions, BuildOutcome};
pub use readonly::{
    open_read_only, read_only_context, read_only_context_from, recorded_agent, ReadOnlyState,
};
