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

/// Exit 0 when merged (the task then counts as completed), 1 when it still conflicts.
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
