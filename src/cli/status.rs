//! `orch status`.

use clap::Args;
use miette::Result;

use super::common::Global;
use crate::inspect;

#[derive(Args, Debug, Clone, Default)]
pub struct StatusArgs {
    /// A JSON array, one object per task, instead of the table.
    #[arg(long = "json")]
    pub json: bool,
}

/// Prints the status table from the state directory; needs no lock and changes nothing.
pub fn run(global: &Global, args: &StatusArgs) -> Result<i32> {
    let plan = global.plan()?;
    let rows = inspect::status_rows(&plan)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&inspect::status_json(&rows)).unwrap_or_default()
        );
    } else {
        print!("{}", inspect::render_status(&rows));
    }
    Ok(0)
}
