//! `orch build --dry-run`: what would run, in which parallel batches, and why, in the seed's
//! "Simulated Execution" style. Reads state, writes nothing.

use std::fmt::Write as _;

use super::context::{BuildContext, DoneInfo};
use crate::duration::format_duration;
use crate::plan::Action;

const RULE: &str = "══════════════════════════════════════════════════════════════════";
const LINE: &str = "──────────────────────────────────────────────────────────────────";

/// For each task, `Some(reason)` if it would run.
pub fn predict(ctx: &BuildContext, wanted: &[bool]) -> Vec<Option<String>> {
    let n = ctx.plan.tasks.len();
    let mut reasons: Vec<Option<String>> = vec![None; n];
    for &t in &ctx.graph.topo {
        if !wanted[t] {
            continue;
        }
        if let Some(&d) = ctx.graph.deps[t].iter().find(|&&d| reasons[d].is_some()) {
            reasons[t] = Some(format!("dep {} will run", ctx.task(d).id));
            continue;
        }
        reasons[t] = match ctx.fingerprint(t) {
            Err(e) => Some(format!("cannot check: {e}")),
            Ok(parts) => match ctx.stale_reason(t, &parts) {
                Err(e) => Some(format!("cannot check: {e}")),
                Ok(None) => {
                    let record = ctx.previous[t]
                        .as_ref()
                        .expect("up to date implies a record");
                    let _ = ctx.done[t].set(DoneInfo::from_record(record));
                    None
                }
                Ok(Some(why)) => Some(why),
            },
        };
    }
    reasons
}

pub fn render(ctx: &BuildContext, wanted: &[bool], jobs: usize) -> String {
    let reasons = predict(ctx, wanted);
    let will_run: Vec<bool> = reasons.iter().map(Option::is_some).collect();
    let waves = ctx.graph.waves(&will_run);
    let mut s = String::new();
    for (i, wave) in waves.iter().enumerate() {
        let _ = writeln!(
            s,
            "{RULE}\n                    🚀 Parallel Execution Batch #{}\n{RULE}\n",
            i + 1
        );
        for &t in wave {
            let task = ctx.task(t);
            let agent_id = &ctx.agent_ids[t];
            let _ = writeln!(s, "┌{LINE}");
            let _ = writeln!(s, "│ 🤖 {agent_id} [{}: {}]", task.id, task.title);
            let _ = writeln!(s, "├{LINE}");
            let instruction = match &task.action {
                Action::Shell(cmd) => format!("$ {cmd}"),
                Action::Prompt(p) => p.lines().next().unwrap_or("").to_string(),
                Action::PromptFile(f) => format!("prompt from {}", f.display()),
            };
            let _ = writeln!(s, "│ 📥 Instruction: {instruction}");
            let _ = writeln!(s, "│ ⚙️ Runs with: {}", ctx.runner_name(t));
            if !task.deps.is_empty() {
                let _ = writeln!(s, "│ 🔗 Deps: {}", task.deps.join(", "));
            }
            let _ = writeln!(s, "│ 📤 Output:");
            for o in &task.outputs {
                let _ = writeln!(s, "│    - {o}");
            }
            let _ = writeln!(s, "│    - Saved to: {}", ctx.result_rel(t));
            if let Some(e) = task.estimate {
                let _ = writeln!(s, "│ ⏱️ Estimate: {}", format_duration(e));
            }
            let _ = writeln!(s, "│ ❓ Why: {}", reasons[t].as_deref().unwrap_or(""));
            let _ = writeln!(s, "└{LINE}\n");
        }
    }
    let running = will_run.iter().filter(|&&r| r).count();
    let up_to_date: Vec<&str> = (0..reasons.len())
        .filter(|&t| wanted[t] && reasons[t].is_none())
        .map(|t| ctx.task(t).id.as_str())
        .collect();
    let _ = writeln!(
        s,
        "Would run {running} task(s) in {} batch(es) with up to {jobs} at once; {} up to date{}",
        waves.len(),
        up_to_date.len(),
        if up_to_date.is_empty() || up_to_date.len() > 20 {
            String::new()
        } else {
            format!(": {}", up_to_date.join(", "))
        }
    );
    s
}

/// Builds a read-only context (no lock, nothing written) and renders the dry run.
pub fn run(
    plan: &crate::plan::Plan,
    opts: &super::options::BuildOptions,
) -> miette::Result<String> {
    let graph = crate::graph::TaskGraph::from_plan(plan)
        .map_err(|_| miette::miette!("the plan has a dependency cycle"))?;
    let wanted = super::wanted_tasks(plan, &graph, &opts.targets)?;
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let (ctx, _) = super::readonly::read_only_context(plan, &graph, opts, &cancel, &wanted)?;
    Ok(render(&ctx, &wanted, opts.jobs(plan)))
}
