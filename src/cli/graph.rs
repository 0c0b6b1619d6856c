//! `orch graph`.

use clap::Args;
use clap_complete::ArgValueCandidates;
use miette::{miette, Result};

use super::common::{check_agent_override, Global};
use super::completions;
use crate::graph::TaskGraph;
use crate::inspect::{self, GraphFormat};

#[derive(Args, Debug, Clone)]
pub struct GraphArgs {
    /// Draw only these tasks and what they depend on; all when empty.
    #[arg(add = ArgValueCandidates::new(completions::task_ids))]
    pub targets: Vec<String>,
    /// `dot` for Graphviz (`orch graph | dot -Tsvg > plan.svg`), `mermaid` for markdown.
    #[arg(long = "format", value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    /// Leave out the colours of each task's last known status.
    #[arg(long = "no-status")]
    pub no_status: bool,
    /// One node per fan-out instance, instead of one per fan-out (`review[…] ×500`).
    #[arg(long = "expand")]
    pub expand: bool,
    /// Judge what is out of date as a build with `--agent NAME` would [default: the agent
    /// the tasks were last built with].
    #[arg(long = "agent", value_name = "NAME", add = ArgValueCandidates::new(completions::agent_names))]
    pub agent: Option<String>,
}

/// Prints the task DAG.
pub fn run(global: &Global, args: &GraphArgs) -> Result<i32> {
    let plan = global.plan()?;
    let opts = crate::engine::BuildOptions {
        agent_override: args.agent.clone(),
        ..Default::default()
    };
    check_agent_override(&plan, &opts)?;
    let graph =
        TaskGraph::from_plan(&plan).map_err(|_| miette!("the plan has a dependency cycle"))?;
    let selected = if args.targets.is_empty() {
        vec![true; plan.tasks.len()]
    } else {
        graph.upstream_closure(&inspect::resolve_ids(&plan, &args.targets)?)
    };
    let statuses = if args.no_status {
        None
    } else {
        Some(
            inspect::status_rows(&plan, args.agent.as_deref())?
                .into_iter()
                .map(|r| r.status)
                .collect::<Vec<_>>(),
        )
    };
    print!(
        "{}",
        inspect::render_graph(
            &plan,
            &selected,
            statuses.as_deref(),
            args.format,
            args.expand
        )
    );
    Ok(0)
}
