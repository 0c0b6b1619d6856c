//! `orch watch`: build, then watch the selected tasks' inputs and the Orchfile, and build again
//! when they change.
//!
//! The build is incremental by content fingerprints, so a watch is an event loop around
//! [`crate::engine::run_build`]: running it again with the same targets re-runs exactly the
//! tasks whose inputs or deps changed, and their dependents. This module decides *when* to
//! call it:
//!
//! - **What is watched**: the directories holding the selected tasks' inputs (a literal input's
//!   directory, a glob's literal prefix, walked when the glob spans directories), their
//!   `prompt_file`s, and the Orchfile's directory. Each directory gets a non-recursive watch, so
//!   the state directory, `.git/` and `.gitignore`d directories cost no inotify watches at all.
//! - **What counts as a change**: a path that names or matches an input of a selected task (or a
//!   directory on the way to one), or the Orchfile. The state directory, every task's declared
//!   outputs and `file:` results, `.git/` and root-`.gitignore`d paths never count, and neither
//!   do reads or metadata-only changes (`touch`, `chmod`). Files a task writes that are not
//!   inputs (logs...) are irrelevant by construction.
//! - **Bursts**: notify's events go through a debouncer, then batches that follow each other
//!   closely are merged, so saving several files at once starts one cycle.
//! - **Content, not mtimes**: before a cycle, the plan is checked the way `--dry-run` does it; if
//!   no task is out of date (an edit restored a file's old content, a save without changes),
//!   no cycle starts.
//! - **Changes during a cycle**: with [`OnChange::Finish`] they are queued and trigger the next
//!   cycle when this one ends; with [`OnChange::Restart`] a change to an input of a running task
//!   (or of one it depends on) cancels the cycle: the executor stops each task's whole process
//!   group (SIGTERM, grace, SIGKILL) and waits for it, and only then does the next cycle start.
//! - **Self-triggered loops**: a task that rewrites its own input differently each time would
//!   re-trigger forever; after [`SELF_LOOP_LIMIT`] consecutive cycles started only by files the
//!   previous cycle's tasks could have written, the watch says so and waits for another change.
//! - **The Orchfile**: a change reloads it; a broken one prints its diagnostic and the watch
//!   keeps going with the last good plan.
//! - **Fan-outs**: a file a fan-out's glob comes to match (or stops matching) expands the
//!   plan again; a cycle with a `foreach_from` source builds as `orch build` does (the
//!   source first, then the plan expanded over its answer), and the watch goes on from the
//!   plan it ended with, so a new instance's inputs are watched.
//! - **Stopping**: the interrupt flag (Ctrl-C) cancels a running cycle, whose tasks are stopped
//!   and waited for before [`watch`] returns 130.
//!
//! The loop is [`cycle`](watch); what is watched and what a path means, `filter`; the OS
//! events, `events`; the changes waiting for a cycle, `pending`; the plan and its content
//! checks, `loaded`; the restart policy, `restart`.

mod cycle;
mod events;
mod filter;
mod loaded;
mod options;
mod pending;
mod restart;

pub use cycle::watch;
pub use events::ContentWatcher;
pub use options::{OnChange, WatchOptions, DEFAULT_DEBOUNCE, INTERRUPTED, SELF_LOOP_LIMIT};
