//! `orch list`.

use clap::Args;
use miette::Result;

use super::common::Global;
use crate::inspect;

#[derive(Args, Debug, Clone, Default)]
pub struct ListArgs {
    /// A JSON array with every task's definition.
    #[arg(long = "json")]
    pub json: bool,
}

/// Prints the plan's tasks: id, title, what runs them, priority, deps.
pub fn run(global: &Global, args: &ListArgs) -> Result<i32> {
    let plan = global.plan()?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&inspect::list_json(&plan)).unwrap_or_default()
        );
    } else {
        print!("{}", inspect::render_list(&plan));
    }
    Ok(0)
}
