//! `orch clean`.

use clap::Args;
use miette::Result;

use super::common::Global;
use crate::clean::{self as engine, CleanOptions};

#[derive(Args, Debug, Clone, Default)]
pub struct CleanArgs {
    /// Also delete the files tasks declare as outputs.
    #[arg(long = "outputs")]
    pub outputs: bool,
    /// Only list what would be removed.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
}

/// Removes build state (results, task files, logs, journal, snapshot, caches, final output),
/// keeping master_plan.md with its status table reset.
pub fn run(global: &Global, args: &CleanArgs) -> Result<i32> {
    let plan = global.plan()?;
    let report = engine::clean(
        &plan,
        CleanOptions {
            outputs: args.outputs,
            dry_run: args.dry_run,
        },
    )?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for p in &report.removed {
        println!("{verb} {}", p.display());
    }
    for (p, why) in &report.refused {
        eprintln!("orch clean: left {} alone: {why}", p.display());
    }
    if report.removed.is_empty() {
        println!("nothing to clean");
    }
    Ok(if report.refused.is_empty() { 0 } else { 1 })
}
