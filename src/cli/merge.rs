//! `orch merge TASK`: merge the kept change of a task that ended as a conflict, once the
//! person resolved it.

use clap::Args;
use clap_complete::ArgValueCandidates;
use miette::Result;

use super::common::Global;
use super::completions;
use crate::engine::worktrees::{merge_kept, MergeReport};

#[derive(Args, Debug, Clone, Default)]
pub struct MergeArgs {
    /// The task whose change conflicted.
    #[arg(value_name = "TASK", add = ArgValueCandidates::new(completions::task_ids))]
    pub task: String,
}

/// Exit 0 when merged (the task then counts as completed) or when a task its deps' conflict
/// kept from starting is cleared to run from the person's tree; 1 when it still conflicts.
pub fn run(global: &Global, args: &MergeArgs) -> Result<i32> {
    let plan = global.plan()?;
    match merge_kept(&plan, &args.task)? {
        MergeReport::Merged { commit } => {
            match commit {
                Some(c) => println!(
                    "merged {} into your tree ({}); recorded as completed",
                    args.task,
                    &c[..c.len().min(12)]
                ),
                None => println!(
                    "{}'s change is already in your tree; recorded as completed",
                    args.task
                ),
            }
            Ok(0)
        }
        MergeReport::DepsCleared { deps } => {
            println!(
                "{} had not run: its deps' changes ({}) did not merge with each other, and each \
                 is in your tree as it merged there; the next `orch build` runs {} from your \
                 tree as it is now",
                args.task,
                deps.join(", "),
                args.task
            );
            Ok(0)
        }
        MergeReport::Conflict { files, why } => {
            eprintln!(
                "orch merge: {} still conflicts: {} ({why}); resolve it in \
                 .orchestrator/worktrees/ (commit there) or in your tree, then run this again",
                args.task,
                files.join(", ")
            );
            Ok(1)
        }
    }
}
