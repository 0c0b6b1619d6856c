//! `orch build --dry-run`: what a build would do, in the order it would do it, and why. The
//! build's own scheduler is driven in virtual time over each task's estimate ([`schedule`]),
//! as ninja runs its real Builder with a dry-run command runner, so the order shown is the
//! one priorities, `max_parallel`, locks and `-j` really give (graph waves, shown before,
//! could differ from the run). Reads state, writes nothing.
//!
//! A dep that runs makes its dependents only *may* run: with early cutoff they run if it
//! leaves other outputs or another result, which no look ahead can know. Such tasks are
//! scheduled as if they run (the longest the build may need) but counted apart.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use super::budget;
use super::context::BuildContext;
use super::queue::Queue;
use crate::disk::Digest;
use crate::duration::format_duration;
use crate::fingerprint;
use crate::graph::TaskGraph;
use crate::workspace::worktree::{kept_in, KeptAs};

/// What the dry run says after a reason to run when the task's fingerprint is in the local
/// output cache.
pub const WOULD_RESTORE: &str = "would restore from cache";

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
    /// Its change is kept with a merge conflict from an earlier build: the build holds it
    /// (not run) until `orch merge TASK` or `--discard` (see [`super::kept`]).
    Held,
    /// A dep (transitively) is held, named here: the build blocks it.
    Blocked(String),
}

impl Verdict {
    /// The reason, if the task would or may run.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::UpToDate | Verdict::Held | Verdict::Blocked(_) => None,
            Verdict::Runs(why) | Verdict::MayRun(why) => Some(why),
        }
    }

    /// Whether the task would or may run.
    pub fn runs(&self) -> bool {
        self.reason().is_some()
    }

    /// Why the build would not start it though it is due, if it is held or blocked.
    pub fn not_started(&self, ctx: &BuildContext, t: usize) -> Option<String> {
        match self {
            Verdict::Held => Some(format!(
                "held: kept with a merge conflict: orch merge {}",
                ctx.task(t).id
            )),
            Verdict::Blocked(held) => {
                Some(format!("blocked: {held} is kept with a merge conflict"))
            }
            _ => None,
        }
    }
}

/// Which tasks the build would hold: those whose change is kept with a merge conflict.
fn held_conflicts(ctx: &BuildContext) -> Vec<bool> {
    let mut held = vec![false; ctx.plan.tasks.len()];
    for k in kept_in(&ctx.layout.dir.join("worktrees")) {
        if k.kept_as == KeptAs::Conflict {
            if let Some(&t) = ctx.plan.index.get(&k.task) {
                held[t] = true;
            }
        }
    }
    held
}

/// What a build would do with each wanted task (`UpToDate` for the others).
pub fn verdicts(ctx: &BuildContext, wanted: &[bool]) -> Vec<Verdict> {
    let n = ctx.plan.tasks.len();
    let mut verdicts = vec![Verdict::UpToDate; n];
    let held = held_conflicts(ctx);
    for &t in &ctx.graph.topo {
        if !wanted[t] {
            continue;
        }
        if held[t] {
            verdicts[t] = Verdict::Held;
            continue;
        }
        let held_dep = ctx.graph.deps[t].iter().find_map(|&d| match &verdicts[d] {
            Verdict::Held => Some(ctx.task(d).id.clone()),
            Verdict::Blocked(by) => Some(by.clone()),
            _ => None,
        });
        if let Some(by) = held_dep {
            verdicts[t] = Verdict::Blocked(by);
            continue;
        }
        let running: Vec<usize> = ctx.graph.deps[t]
            .iter()
            .copied()
            .filter(|&d| verdicts[d].runs())
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
            Ok(Some(why)) if running.is_empty() && ctx.would_restore(t, &parts) => {
                Verdict::Runs(format!("{why}; {WOULD_RESTORE}"))
            }
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

/// Where a task's duration in the projection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// Its `estimate`.
    Estimate,
    /// No estimate: how long its last run took.
    LastRun,
    /// Neither: counted as nothing, so the projection is a lower bound.
    Unknown,
}

/// One task in the projected schedule, in the order the scheduler reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub task: usize,
    /// When it starts, in virtual time from the build's start.
    pub start: Duration,
    /// The job slot (1..=jobs) it runs on; `None` for an up-to-date task, which the build
    /// settles on the scheduling thread without one.
    pub slot: Option<usize>,
    pub takes: Duration,
    pub source: Takes,
}

/// What a build would do, in order, and how long it would take.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub planned: Vec<Planned>,
    /// When the last task would end.
    pub wall: Duration,
    /// The longest chain of dependent tasks that run: no schedule is shorter.
    pub longest_chain: Duration,
}

/// The build's real scheduler (priorities, critical path, `max_parallel`, locks, `jobs`),
/// driven in virtual time as `scheduler::drive` drives it: whenever a slot is free, start
/// what `next_task` hands out (an up-to-date task settles at once, without a slot); then
/// move to the earliest end and finish what ends then, in start order. Tasks that may run
/// (early cutoff) are taken to run: the projection is the longest the build may need.
pub fn schedule(
    ctx: &BuildContext,
    wanted: &[bool],
    verdicts: &[Verdict],
    jobs: usize,
) -> Schedule {
    let n = ctx.plan.tasks.len();
    let (takes, sources): (Vec<Duration>, Vec<Takes>) = (0..n)
        .map(|t| match (ctx.task(t).estimate, &ctx.previous[t]) {
            (Some(e), _) => (e, Takes::Estimate),
            (None, Some(r)) => (Duration::from_millis(r.duration_ms), Takes::LastRun),
            (None, None) => (Duration::ZERO, Takes::Unknown),
        })
        .unzip();
    let mut sched = Queue::new(ctx, None).scheduler(wanted, true);
    let jobs = jobs.max(1);
    let mut free: BTreeSet<usize> = (1..=jobs).collect();
    let mut running: Vec<(Duration, usize, usize)> = Vec::with_capacity(jobs);
    let mut planned = Vec::new();
    let mut now = Duration::ZERO;
    loop {
        while !free.is_empty() {
            let Some(t) = sched.next_task() else { break };
            let slot = if !verdicts[t].runs() {
                sched.finish(t, true);
                None
            } else {
                let slot = free.pop_first().expect("a free slot");
                running.push((now + takes[t], t, slot));
                Some(slot)
            };
            planned.push(Planned {
                task: t,
                start: now,
                slot,
                takes: if slot.is_some() {
                    takes[t]
                } else {
                    Duration::ZERO
                },
                source: sources[t],
            });
        }
        let Some(next) = running.iter().map(|&(end, _, _)| end).min() else {
            break;
        };
        now = next;
        let mut k = 0;
        while k < running.len() {
            if running[k].0 <= now {
                let (_, t, slot) = running.remove(k);
                sched.finish(t, true);
                free.insert(slot);
            } else {
                k += 1;
            }
        }
    }
    let weights: Vec<f64> = (0..n)
        .map(|t| {
            let runs = wanted[t] && verdicts[t].runs();
            if runs {
                takes[t].as_secs_f64()
            } else {
                0.0
            }
        })
        .collect();
    let chain = TaskGraph::new(ctx.graph.deps.clone(), &weights)
        .map(|g| g.critical_path_length())
        .unwrap_or(0.0);
    Schedule {
        planned,
        wall: now,
        longest_chain: Duration::from_secs_f64(chain.max(0.0)),
    }
}

/// A moment or length in the schedule: `0s`, `850ms`, `45.0s`, `2m30s`.
fn at(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        format_duration(d)
    }
}

/// `merged_from`: the results final_output.md was last merged from (the state's digest).
pub fn render(
    ctx: &BuildContext,
    wanted: &[bool],
    jobs: usize,
    expand: bool,
    merged_from: Option<Digest>,
) -> String {
    let verdicts = verdicts(ctx, wanted);
    let plan = schedule(ctx, wanted, &verdicts, jobs);
    let rows = rows(ctx, &plan, &verdicts, expand);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Dry run with up to {jobs} at once: the order the build's scheduler would start tasks in\n\
         (priorities, max_parallel, locks), in virtual time over their estimates.\n"
    );
    let runs_with = |p: &Planned| {
        if p.slot.is_some() {
            ctx.runner_name(p.task).to_string()
        } else {
            "-".to_string()
        }
    };
    let takes = |p: &Planned| match (p.slot, p.source) {
        (None, _) => "-".to_string(),
        (Some(_), Takes::Estimate) => format_duration(p.takes),
        (Some(_), Takes::LastRun) => format!("~{}", format_duration(p.takes)),
        (Some(_), Takes::Unknown) => "?".to_string(),
    };
    let id_w = rows
        .iter()
        .map(|r| r.id.chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    let runner_w = plan
        .planned
        .iter()
        .map(|p| runs_with(p).len())
        .chain([9])
        .max()
        .unwrap_or(9);
    let takes_w = plan
        .planned
        .iter()
        .map(|p| takes(p).chars().count())
        .chain([5])
        .max()
        .unwrap_or(5);
    let _ = writeln!(
        s,
        "  {:>7}  {:>4}  {:id_w$}  {:runner_w$}  {:takes_w$}  why",
        "start", "slot", "task", "runs with", "takes"
    );
    for r in &rows {
        let p = &plan.planned[r.first];
        let why = match &verdicts[p.task] {
            Verdict::UpToDate => "up to date: skipped".to_string(),
            Verdict::Runs(why) => why.clone(),
            Verdict::MayRun(why) => format!("may run: {why}; {MAY_RUN_NOTE}"),
            v => v.not_started(ctx, p.task).unwrap_or_default(),
        };
        let slot = match &verdicts[p.task] {
            Verdict::Held => "held".to_string(),
            Verdict::Blocked(_) => "-".to_string(),
            _ => p.slot.map_or("skip".to_string(), |n| n.to_string()),
        };
        let why = if r.count > 1 && !r.same_why {
            format!("{why} (first of {})", r.count)
        } else {
            why
        };
        let _ = writeln!(
            s,
            "  {:>7}  {:>4}  {:id_w$}  {:runner_w$}  {:takes_w$}  {why}",
            at(p.start),
            slot,
            r.id,
            runs_with(p),
            takes(p),
        );
    }
    let may_run = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::MayRun(_)))
        .count();
    let running = plan.planned.iter().filter(|p| p.slot.is_some()).count() - may_run;
    let up_to_date: Vec<&str> = plan
        .planned
        .iter()
        .filter(|p| verdicts[p.task] == Verdict::UpToDate)
        .map(|p| ctx.task(p.task).id.as_str())
        .collect();
    let held: Vec<&str> = plan
        .planned
        .iter()
        .filter(|p| verdicts[p.task] == Verdict::Held)
        .map(|p| ctx.task(p.task).id.as_str())
        .collect();
    let blocked = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Blocked(_)))
        .count();
    let unknown = plan
        .planned
        .iter()
        .filter(|p| p.slot.is_some() && p.source == Takes::Unknown)
        .count();
    let maybe = if may_run > 0 {
        format!(" (and {may_run} more only if a dep's outputs change)")
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "\nWould run {running} task(s){maybe} with up to {jobs} at once: projected wall time {}{} \
         (longest chain {}); {} up to date{}",
        if unknown > 0 { "at least " } else { "" },
        at(plan.wall),
        at(plan.longest_chain),
        up_to_date.len(),
        if up_to_date.is_empty() || up_to_date.len() > 20 {
            String::new()
        } else {
            format!(": {}", up_to_date.join(", "))
        }
    );
    if !held.is_empty() {
        let _ = writeln!(
            s,
            "Held: {} kept with a merge conflict ({}); {blocked} dependent(s) blocked until \
             `orch merge TASK` (or `orch merge --discard TASK`)",
            held.len(),
            held.join(", ")
        );
    }
    if plan
        .planned
        .iter()
        .any(|p| p.slot.is_some() && p.source == Takes::LastRun)
    {
        let _ = writeln!(s, "  ~: no estimate; the time its last run took");
    }
    if unknown > 0 {
        let _ = writeln!(
            s,
            "  ?: no estimate and no earlier run ({unknown} task(s)); counted as no time"
        );
    }
    s.push_str(&projected_cost(ctx, &plan, &verdicts, merged_from));
    s
}

/// The dry run's cost line: what the agent tasks that would run are projected to cost (see
/// [`budget::project`]), and where a budget would stop the build, taking them in the
/// schedule's start order. Empty when nothing is known of money and no budget is set.
fn projected_cost(
    ctx: &BuildContext,
    plan: &Schedule,
    verdicts: &[Verdict],
    merged_from: Option<Digest>,
) -> String {
    let history = budget::CostHistory::load(&ctx.layout.costs());
    let limit = ctx.opts.budget(ctx.plan);
    let mut total = 0.0;
    let mut counted = 0;
    let mut unknown = 0;
    let mut bases: Vec<(budget::Basis, usize)> = Vec::new();
    let mut stops_before: Option<(usize, usize)> = None;
    for (k, p) in plan.planned.iter().enumerate() {
        let t = p.task;
        let Some(agent) = ctx.agent(t).filter(|_| verdicts[t].runs()) else {
            continue;
        };
        let definition = ctx.fingerprint(t).ok().map(|parts| parts.definition);
        match budget::project(&history, ctx.task(t), agent, definition.as_ref()) {
            Some(proj) => {
                if limit.is_some_and(|l| total + proj.usd > l + 1e-9) && stops_before.is_none() {
                    stops_before = Some((t, k));
                }
                total += proj.usd;
                counted += 1;
                match bases.iter_mut().find(|(b, _)| *b == proj.basis) {
                    Some((_, n)) => *n += 1,
                    None => bases.push((proj.basis, 1)),
                }
            }
            None => unknown += 1,
        }
    }
    let anything_runs = plan.planned.iter().any(|p| p.slot.is_some());
    let merge = merge_projection(ctx, &history, anything_runs, merged_from);
    if counted == 0 && merge.is_none() && limit.is_none() {
        return String::new();
    }
    let from: Vec<String> = bases
        .iter()
        .map(|(b, n)| format!("{n} from {}", b.word()))
        .collect();
    let mut line = format!(
        "Projected cost: ${total:.4} for {counted} agent task(s){}",
        if from.is_empty() {
            String::new()
        } else {
            format!(" ({})", from.join(", "))
        }
    );
    if unknown > 0 {
        line.push_str(&format!(
            "; {unknown} more of unknown cost (no history, cost_estimate or max_cost_usd)"
        ));
    }
    let mut stops_at_merge = false;
    match merge {
        Some(Some(proj)) => {
            line.push_str(&format!(
                "; then ${:.4} for the merge into final_output.md (from {})",
                proj.usd,
                proj.basis.word()
            ));
            stops_at_merge = limit.is_some_and(|l| total + proj.usd > l + 1e-9);
            total += proj.usd;
        }
        Some(None) => line.push_str("; then the merge into final_output.md, of unknown cost"),
        None => {}
    }
    if merge.is_some() {
        line.push_str(&format!(" (${total:.4} in all)"));
    }
    if let Some(l) = limit {
        match stops_before {
            Some((t, k)) => {
                let left = plan.planned[k..]
                    .iter()
                    .filter(|p| verdicts[p.task].runs())
                    .count();
                line.push_str(&format!(
                    "; budget ${l:.4}: the build would stop before {} ({left} task(s) not \
                     started)",
                    ctx.task(t).id
                ));
            }
            None if stops_at_merge => line.push_str(&format!(
                "; budget ${l:.4}: the build would stop before the merge (final_output.md not \
                 written)"
            )),
            None => line.push_str(&format!("; within the budget of ${l:.4}")),
        }
    }
    format!("{line}\n")
}

/// The aggregation's merge by an agent, if this build would make it (a task runs, or the
/// results changed since the last merge): its projection, `None` inside when unknown.
fn merge_projection(
    ctx: &BuildContext,
    history: &budget::CostHistory,
    anything_runs: bool,
    merged_from: Option<Digest>,
) -> Option<Option<budget::Projection>> {
    let agent = super::aggregate::merge_agent(ctx.plan, ctx.opts.agent_override.as_deref())?
        .ok()
        .filter(|a| a.kind != crate::plan::AgentKind::Sim)?;
    if !ctx.opts.targets.is_empty() {
        return None;
    }
    let merge = super::aggregate::prepare(ctx, true).ok()?;
    if !anything_runs && merge.merged_from(ctx, merged_from) {
        return None;
    }
    Some(budget::project_merge(
        history,
        agent,
        &merge.definition,
        merge.cost_estimate(),
    ))
}

/// A line of the dry run: one task, or (unless expanded) every instance of a fan-out
/// settled the same way (`review[…] ×500`), at the first one's place.
struct Row {
    id: String,
    /// Index in the schedule of the first task the row stands for.
    first: usize,
    count: usize,
    /// Every task of the row runs for the same reason.
    same_why: bool,
}

fn rows(ctx: &BuildContext, plan: &Schedule, verdicts: &[Verdict], expand: bool) -> Vec<Row> {
    let kind = |v: &Verdict| match v {
        Verdict::UpToDate => 0,
        Verdict::Runs(_) => 1,
        Verdict::MayRun(_) => 2,
        Verdict::Held => 3,
        Verdict::Blocked(_) => 4,
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut group: std::collections::HashMap<(&str, u8), usize> = Default::default();
    for (k, p) in plan.planned.iter().enumerate() {
        let task = ctx.task(p.task);
        let template = task
            .item
            .as_ref()
            .filter(|_| !expand)
            .map(|i| i.template.as_str());
        let Some(template) = template else {
            rows.push(Row {
                id: task.id.clone(),
                first: k,
                count: 1,
                same_why: true,
            });
            continue;
        };
        let key = (template, kind(&verdicts[p.task]));
        match group.get(&key) {
            Some(&r) => {
                let first = plan.planned[rows[r].first].task;
                rows[r].count += 1;
                rows[r].same_why &= verdicts[p.task] == verdicts[first];
            }
            None => {
                group.insert(key, rows.len());
                rows.push(Row {
                    id: String::new(),
                    first: k,
                    count: 1,
                    same_why: true,
                });
            }
        }
    }
    for r in &mut rows {
        if r.id.is_empty() {
            let task = ctx.task(plan.planned[r.first].task);
            let template = task.item.as_ref().map_or("", |i| i.template.as_str());
            r.id = if r.count == 1 {
                task.id.clone()
            } else {
                format!("{template}[…] ×{}", r.count)
            };
        }
    }
    rows
}

/// Builds a read-only context (no lock, nothing written) and renders the dry run; `expand`
/// shows each fan-out instance on its own line.
pub fn run(
    plan: &crate::plan::Plan,
    opts: &super::options::BuildOptions,
    expand: bool,
) -> miette::Result<String> {
    let graph = crate::graph::TaskGraph::from_plan(plan)
        .map_err(|_| miette::miette!("the plan has a dependency cycle"))?;
    let wanted = super::wanted_tasks(plan, &graph, &opts.targets)?;
    let cancel = crate::cancel::Cancel::new();
    let (ctx, state) = super::readonly::read_only_context(plan, &graph, opts, &cancel, &wanted)?;
    let merged_from = state.store.snapshot.aggregate_digest;
    Ok(render(&ctx, &wanted, opts.jobs(plan), expand, merged_from))
}
