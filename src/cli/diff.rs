//! `orch diff TASK`: the change a worktree task made, as git shows it.

use clap::Args;
use clap_complete::ArgValueCandidates;
use miette::{miette, Result};

use super::common::Global;
use super::completions;
use crate::workspace::worktree::KeptAs;
use crate::workspace::Repo;

#[derive(Args, Debug, Clone, Default)]
pub struct DiffArgs {
    /// The task (one whose change is kept: it conflicted or failed).
    #[arg(value_name = "TASK", add = ArgValueCandidates::new(completions::task_ids))]
    pub task: String,
    /// Only the names of the files changed, with their status.
    #[arg(long = "stat")]
    pub stat: bool,
}

/// Runs `git diff START COMMIT` over the kept change of the task, as the person's git
/// shows diffs (pager, colours, diff drivers). A kept worktree that moved on since (the
/// person resolved a conflict there) is shown as it is now.
pub fn run(global: &Global, args: &DiffArgs) -> Result<i32> {
    let plan = global.plan()?;
    let repo = Repo::open(&plan.root, &plan.state_dir()).map_err(|e| miette!("orch diff: {e}"))?;
    let kept = repo.kept().into_iter().find(|k| k.task == args.task);
    let Some(kept) = kept else {
        return Err(miette!(
            help = "a worktree task's change is kept when it conflicted or failed; a merged \
                    one is in your history (`git log --grep 'orch: merge {}'`)",
            "task {} has no kept change",
            args.task
        ));
    };
    if kept.kept_as == KeptAs::DepsConflict {
        println!("{} did not start: {}", args.task, kept.reason);
        return Ok(0);
    }
    let Some(change) = kept.change else {
        println!("{} changed nothing ({})", args.task, kept.reason);
        return Ok(0);
    };
    let dir = repo.tree_dir(&args.task);
    let tip = crate::workspace::git(&dir, &["rev-parse", "--verify", "HEAD^{commit}"])
        .ok()
        .filter(|_| dir.exists())
        .map(|s| s.trim().to_string())
        .unwrap_or(change.commit);
    let mut cmd = std::process::Command::new("git");
    cmd.arg("-C").arg(&repo.top).arg("diff");
    if args.stat {
        cmd.arg("--stat");
    }
    cmd.args([change.start.as_str(), tip.as_str()]);
    let status = cmd
        .status()
        .map_err(|e| miette!("orch diff: cannot run git: {e}"))?;
    Ok(if status.success() { 0 } else { 1 })
}
