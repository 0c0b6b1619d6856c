//! `orch explain`.

use clap::Args;
use clap_complete::ArgValueCandidates;
use miette::Result;

use super::common::{check_agent_override, preflight, Global};
use super::completions;
use crate::engine::BuildOptions;
use crate::inspect;

#[derive(Args, Debug, Clone, Default)]
pub struct ExplainArgs {
    /// Tasks to explain; all when empty.
    #[arg(add = ArgValueCandidates::new(completions::task_ids))]
    pub tasks: Vec<String>,
    /// Explain as for `orch build --agent NAME` (the agent is part of a task's definition).
    #[arg(long = "agent", value_name = "NAME", add = ArgValueCandidates::new(completions::agent_names))]
    pub agent: Option<String>,
    /// A JSON array, one object per task, with its reasons.
    #[arg(long = "json")]
    pub json: bool,
}

/// Says why each task would run (every reason) or that it is up to date.
pub fn run(global: &Global, args: &ExplainArgs) -> Result<i32> {
    let source = global.plan_source()?;
    let plan = source.load()?;
    preflight(&plan, &source)?;
    let opts = BuildOptions {
        agent_override: args.agent.clone(),
        ..BuildOptions::default()
    };
    check_agent_override(&plan, &opts)?;
    let explained = inspect::explain(&plan, &opts, &args.tasks)?;
    if args.json {
        let all: Vec<serde_json::Value> = explained.iter().map(|e| e.to_json()).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Array(all)).unwrap_or_default()
        );
    } else {
        for e in &explained {
            print!("{}", e.render());
        }
    }
    Ok(0)
}
