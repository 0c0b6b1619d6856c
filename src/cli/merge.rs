//! `orch merge TASK`: merge the kept change of a task that ended as a conflict, once the
//! person resolved it; `--discard` drops it instead, so that the next build runs the task.

use clap::Args;
use clap_complete::ArgValueCandidates;
use miette::Result;

use super::common::Global;
use super::completions;
use crate::engine::worktrees::{discard_kept, merge_kept, MergeReport};

#[derive(Args, Debug, Clone, Default)]
pub struct MergeArgs {
    /// The task whose change conflicted.
    #[arg(value_name = "TASK", add = ArgValueCandidates::new(completions::task_ids))]
    pub task: String,
    /// Drop the kept change (worktree, branch, record) instead: the next build runs the
    /// task again.
    #[arg(long)]
    pub discard: bool,
}

/// Exit 0 when merged (the task then counts as completed) or when a task its deps' conflict
/// kept from starting is cleared to run from the person's tree; 1 when it still conflicts.
pub fn run(global: &Global, args: &MergeArgs) -> Result<i32> {
    let plan = global.plan()?;
    if args.discard {
        let gone = discard_kept(&plan, &args.task)?;
        let what = match &gone.commit {
            Some(c) if !gone.branch.is_empty() => {
                let short = &c[..c.len().min(12)];
                format!(
                    "kept change (branch {b}, commit {short}; `git branch {b} {short}` brings it \
                     back until git prunes it)",
                    b = gone.branch
                )
            }
            _ => "kept record".to_string(),
        };
        println!(
            "discarded {}'s {what}; the next `orch build` runs {} again",
            args.task, args.task
        );
        return Ok(0);
    }
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
