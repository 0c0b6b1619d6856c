//! `orch build --dry-run`: what would run, in which parallel batches, and why, in the seed's
//! "Simulated Execution" style. Reads state, writes nothing.
//!
//! A dep that runs makes its dependents only *may* run: with early cutoff they run if it
//! leaves other outputs or another result, which no look ahead can know. Such tasks are
//! shown in the batches (the schedule a build may need) but counted apart.

use std::fmt::Write as _;

use super::context::BuildContext;
use crate::duration::format_duration;
use crate::fingerprint;
use crate::plan::Action;

const RULE: &str = "══════════════════════════════════════════════════════════════════";
const LINE: &str = "──────────────────────────────────────────────────────────────────";

/// What a build would do with one task, as far as can be known without running anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    UpToDate,
    /// It runs, for this reason (its own: definition, inputs, outputs, forced, never built).
    Runs(String),
    /// Nothing of its own changed, but a dep runs first (the reason names it): it runs only
    /// if that dep leaves other outputs or another result than it was built on (early
    /// cutoff), which only running the dep can tell.
    MayRun(String),
}

impl Verdict {
    /// The reason, unless the task is up to date.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::UpToDate => None,
            Verdict::Runs(why) | Verdict::MayRun(why) => Some(why),
        }
    }
}

/// What a build would do with each wanted task (`UpToDate` for the others).
pub fn verdicts(ctx: &BuildContext, wanted: &[bool]) -> Vec<Verdict> {
    let n = ctx.plan.tasks.len();
    let mut verdicts = vec![Verdict::UpToDate; n];
    for &t in &ctx.graph.topo {
        if !wanted[t] {
            continue;
        }
        let running: Vec<usize> = ctx.graph.deps[t]
            .iter()
            .copied()
            .filter(|&d| verdicts[d] != Verdict::UpToDate)
            .collect();
        let mut parts = match ctx.fingerprint(t) {
            Ok(parts) => parts,
            Err(e) => {
                verdicts[t] = Verdict::Runs(format!("cannot check: {e}"));
                continue;
            }
        };
        // A dep that runs is taken to hand over what this task was built on: what is left
        // is the task's own reason to run, if it has one.
        if let Some(prev) = &ctx.previous[t] {
            for &d in &running {
                let id = &ctx.task(d).id;
                let seen = prev.deps.iter().find(|(x, _)| x == id);
                if let (Some((_, seen)), Some(slot)) =
                    (seen, parts.deps.iter_mut().find(|(x, _)| x == id))
                {
                    slot.1 = *seen;
                }
            }
            parts.value = fingerprint::combine(&parts.definition, &parts.inputs, &parts.deps);
        }
        verdicts[t] = match ctx.stale_reason(t, &parts) {
            Err(e) => Verdict::Runs(format!("cannot check: {e}")),
            Ok(Some(why)) => Verdict::Runs(why),
            Ok(None) => match running.first() {
                Some(&d) => Verdict::MayRun(match &verdicts[d] {
                    Verdict::Runs(why) => format!("dep {} will run ({why})", ctx.task(d).id),
                    _ => format!("dep {} may run", ctx.task(d).id),
                }),
                None => {
                    let record = ctx.previous[t]
                        .as_ref()
                        .expect("up to date implies a record");
                    let _ = ctx.done[t].set(ctx.done_from_record(t, record));
                    Verdict::UpToDate
                }
            },
        };
    }
    verdicts
}

/// For each task, `Some(reason)` if it would or may run (see [`verdicts`]).
pub fn predict(ctx: &BuildContext, wanted: &[bool]) -> Vec<Option<String>> {
    verdicts(ctx, wanted)
        .into_iter()
        .map(|v| v.reason().map(str::to_string))
        .collect()
}

/// How a may-run verdict ends, wherever it is shown.
pub const MAY_RUN_NOTE: &str = "runs only if what it hands over changes (outputs or result)";

pub fn render(ctx: &BuildContext, wanted: &[bool], jobs: usize) -> String {
    let verdicts = verdicts(ctx, wanted);
    let will_run: Vec<bool> = verdicts.iter().map(|v| *v != Verdict::UpToDate).collect();
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
            match &verdicts[t] {
                Verdict::MayRun(why) => {
                    let _ = writeln!(s, "│ ❔ May run: {why}; {MAY_RUN_NOTE}");
                }
                v => {
                    let _ = writeln!(s, "│ ❓ Why: {}", v.reason().unwrap_or(""));
                }
            }
            let _ = writeln!(s, "└{LINE}\n");
        }
    }
    let may_run = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::MayRun(_)))
        .count();
    let running = will_run.iter().filter(|&&r| r).count() - may_run;
    let up_to_date: Vec<&str> = (0..verdicts.len())
        .filter(|&t| wanted[t] && verdicts[t] == Verdict::UpToDate)
        .map(|t| ctx.task(t).id.as_str())
        .collect();
    let maybe = if may_run > 0 {
        format!(" (and {may_run} more only if a dep's outputs change)")
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "Would run {running} task(s){maybe} in {} batch(es) with up to {jobs} at once; {} up to date{}",
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
    let cancel = crate::cancel::Cancel::new();
    let (ctx, _) = super::readonly::read_only_context(plan, &graph, opts, &cancel, &wanted)?;
    Ok(render(&ctx, &wanted, opts.jobs(plan)))
}
