//! `orch status`.

use clap::Args;
use clap_complete::ArgValueCandidates;
use miette::Result;

use super::common::{check_agent_override, Global};
use super::completions;
use crate::inspect;

#[derive(Args, Debug, Clone, Default)]
pub struct StatusArgs {
    /// A JSON array, one object per task, instead of the table.
    #[arg(long = "json")]
    pub json: bool,
    /// Judge what is out of date as a build with `--agent NAME` would [default: the agent
    /// the tasks were last built with].
    #[arg(long = "agent", value_name = "NAME", add = ArgValueCandidates::new(completions::agent_names))]
    pub agent: Option<String>,
}

/// Prints the status table from the state directory; needs no lock and changes nothing.
pub fn run(global: &Global, args: &StatusArgs) -> Result<i32> {
    let plan = global.plan()?;
    let opts = crate::engine::BuildOptions {
        agent_override: args.agent.clone(),
        ..Default::default()
    };
    check_agent_override(&plan, &opts)?;
    let rows = inspect::status_rows(&plan, args.agent.as_deref())?;
    let sessions = inspect::agent_sessions(&plan)?;
    if args.json {
        let mut json = inspect::status_json(&rows, &sessions);
        add_kept_worktrees(&plan, &mut json);
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        print!("{}", inspect::render_status(&rows));
        print!("{}", inspect::render_sessions(&rows, &sessions));
        print!("{}", kept_worktrees(&plan));
    }
    Ok(0)
}

/// Gives each task's object its kept worktree (`worktree`: path, branch, what it was kept
/// for, conflicting files), `null` where none is kept, as the table lists them below it.
fn add_kept_worktrees(plan: &crate::plan::Plan, json: &mut serde_json::Value) {
    use crate::workspace::worktree::{kept_in, safe_name, KeptAs};
    let dir = plan.state_dir().join("worktrees");
    let kept = kept_in(&dir);
    for row in json.as_array_mut().into_iter().flatten() {
        let k = kept.iter().find(|k| row["id"] == k.task.as_str());
        row["worktree"] = k.map_or(serde_json::Value::Null, |k| {
            // A deps conflict keeps a record only: the task never had a worktree.
            let (path, branch) = match k.kept_as {
                KeptAs::DepsConflict => (None, None),
                _ => (
                    Some(plan.relative(&dir.join(safe_name(&k.task)))),
                    Some(k.branch.as_str()),
                ),
            };
            serde_json::json!({
                "path": path,
                "branch": branch,
                "kept_as": k.kept_as,
                "files": k.files,
                "deps": k.deps,
            })
        });
    }
}

/// The worktrees kept for tasks that conflicted or failed, with how to deal with them.
fn kept_worktrees(plan: &crate::plan::Plan) -> String {
    use crate::workspace::worktree::{kept_in, safe_name, KeptAs};
    let dir = plan.state_dir().join("worktrees");
    let kept = kept_in(&dir);
    if kept.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n{} kept worktree(s) (`orch diff TASK` shows a change, `orch merge TASK` merges a \
         resolved conflict, `orch clean` removes them):\n",
        kept.len()
    );
    for k in &kept {
        let path = plan.relative(&dir.join(safe_name(&k.task)));
        let line = match k.kept_as {
            KeptAs::Conflict => format!(
                "{path}  branch {}  conflict: {}",
                k.branch,
                k.files.join(", ")
            ),
            KeptAs::Failed => format!("{path}  branch {}  failed", k.branch),
            KeptAs::DepsConflict => format!(
                "(not started)  its deps' changes conflict: {} ({}); `orch merge {}` once your \
                 tree is right",
                k.files.join(", "),
                k.deps.join(", "),
                k.task
            ),
        };
        out.push_str(&format!("  {}  {line}\n", k.task));
    }
    out
}
