//! Looking at a plan without running it: the status table (`orch status`), why a task would
//! run (`orch explain`), the DAG as DOT or mermaid (`orch graph`) and the task list
//! (`orch list`). All of it reads the state directory and writes nothing.

use std::fmt::Write as _;

use miette::{miette, Result};
use serde_json::json;

use crate::clock::Stamp;
use crate::engine::{self, dry_run, explain, BuildOptions};
use crate::graph::TaskGraph;
use crate::master_plan::{self, StatusRow};
use crate::plan::{Action, Plan};
use crate::state::Status;
use crate::state::{SessionRecord, StateLayout, StateStore};

/// How statuses are listed in summaries and graph classes: done first, failures last.
const STATUS_ORDER: [Status; 9] = [
    Status::Completed,
    Status::Skipped,
    Status::Running,
    Status::QuotaWait,
    Status::Queued,
    Status::Ready,
    Status::Waiting,
    Status::Failed,
    Status::Conflict,
];

/// The status table: the last known status of every task, the agent ids a build uses
/// (assigned in memory for tasks that have none yet), times and retries; except that a task
/// recorded as done that a build would run now (an input, its definition or its outputs
/// changed, as `orch explain` would say) shows as ready, or waiting when a dep of it would
/// run too, with no times. So does a task whose Status a person set back to Pending in
/// master_plan.md. A task that only may run (a dep runs, and early cutoff decides) stays
/// done: what it was built on is still there.
///
/// Staleness is judged against `agent` (`--agent`), else against the agent the records
/// were built with ([`engine::recorded_agent`]).
pub fn status_rows(plan: &Plan, agent: Option<&str>) -> Result<Vec<StatusRow>> {
    let store = engine::open_read_only(plan)?;
    let opts = BuildOptions {
        agent_override: agent
            .map(String::from)
            .or_else(|| engine::recorded_agent(plan, &store)),
        ..BuildOptions::default()
    };
    let graph =
        TaskGraph::from_plan(plan).map_err(|_| miette!("the plan has a dependency cycle"))?;
    let wanted = vec![true; plan.tasks.len()];
    let cancel = crate::cancel::Cancel::new();
    let (ctx, state) =
        engine::read_only_context_from(plan, &graph, &opts, &cancel, &wanted, store)?;
    let verdicts = dry_run::verdicts(&ctx, &wanted);
    let mut rows = master_plan::rows_from_store(plan, &state.store);
    for (t, row) in rows.iter_mut().enumerate() {
        let done = matches!(row.status, Status::Completed | Status::Skipped);
        let stale = matches!(verdicts[t], dry_run::Verdict::Runs(_));
        if state.reset_by_person[t] {
            row.status = Status::Ready;
        } else if done && stale {
            let dep_runs = graph.deps[t].iter().any(|&d| verdicts[d].runs());
            row.status = if dep_runs {
                Status::Waiting
            } else {
                Status::Ready
            };
            row.start = None;
            row.end = None;
            row.retries = 0;
        }
    }
    Ok(rows)
}

/// Each task's last agent session, as the state records it.
pub fn agent_sessions(plan: &Plan) -> Result<Vec<Option<SessionRecord>>> {
    let store = StateStore::open(StateLayout::new(plan.state_dir())).map_err(|e| miette!("{e}"))?;
    Ok(plan
        .tasks
        .iter()
        .map(|t| store.snapshot.sessions.get(&t.id).cloned())
        .collect())
}

/// One line per task that ran in an agent session: its id, so a person can open it in the
/// CLI (`claude --resume <id>`, `codex resume <id>`, `gemini --resume <id>`).
pub fn render_sessions(rows: &[StatusRow], sessions: &[Option<SessionRecord>]) -> String {
    let mut out = String::new();
    for (row, s) in rows.iter().zip(sessions) {
        if let Some(s) = s {
            let _ = writeln!(
                out,
                "  {}: {} session {}{}",
                row.id,
                s.agent,
                s.id,
                if s.resumable {
                    " (the next build continues it)"
                } else {
                    ""
                }
            );
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("\nAgent sessions:\n{out}")
    }
}

fn session_json(s: Option<&SessionRecord>) -> serde_json::Value {
    match s {
        Some(s) => json!({"agent": s.agent, "id": s.id, "resumable": s.resumable}),
        None => serde_json::Value::Null,
    }
}

/// Columns a terminal shows one cell of: emoji take two, variation selectors none.
pub fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0xFE00..=0xFE0F | 0x200B..=0x200D => 0,
            0x1F000..=0x1FFFF | 0x2300..=0x23FF | 0x2600..=0x27BF | 0x2B00..=0x2BFF => 2,
            0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF => 2,
            0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

/// A plain-text table: a header, a rule, rows; columns padded to their widest cell.
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| display_width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(display_width(c));
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut s = String::new();
        let cells: Vec<&str> = cells.collect();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - display_width(c) + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(&mut header.iter().copied());
    out.push('\n');
    let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    out.push_str(&"─".repeat(total));
    out.push('\n');
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

fn deps_text(deps: &[String]) -> String {
    if deps.is_empty() {
        "None".into()
    } else {
        deps.join(",")
    }
}

/// The status table for a terminal, then a count by status.
pub fn render_status(rows: &[StatusRow]) -> String {
    let header = [
        "Task ID",
        "Task Description",
        "Agent",
        "Status",
        "Priority",
        "Deps",
        "Start",
        "End",
        "Retries",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.title.replace(['\n', '\r'], " "),
                r.agent.clone(),
                format!("{} {}", r.status.symbol(), r.status.word()),
                r.priority.clone(),
                deps_text(&r.deps),
                r.start.clone().unwrap_or_else(|| "-".into()),
                r.end.clone().unwrap_or_else(|| "-".into()),
                r.retries.to_string(),
            ]
        })
        .collect();
    let mut out = text_table(&header, &body);
    let counts: Vec<String> = STATUS_ORDER
        .iter()
        .filter_map(|s| {
            let n = rows.iter().filter(|r| r.status == *s).count();
            (n > 0).then(|| format!("{n} {}", s.word()))
        })
        .collect();
    let _ = writeln!(
        out,
        "\n{} task(s){}{}",
        rows.len(),
        if counts.is_empty() { "" } else { ": " },
        counts.join(", ")
    );
    out
}

/// `orch status --json`: one object per task, with its last agent session (or null).
pub fn status_json(rows: &[StatusRow], sessions: &[Option<SessionRecord>]) -> serde_json::Value {
    serde_json::Value::Array(
        rows.iter()
            .enumerate()
            .map(|(t, r)| {
                json!({
                    "id": r.id, "title": r.title, "agent_id": r.agent,
                    "status": r.status.word(), "symbol": r.status.symbol(),
                    "priority": r.priority, "deps": r.deps, "start": r.start,
                    "end": r.end, "retries": r.retries,
                    "session": session_json(sessions.get(t).and_then(Option::as_ref)),
                })
            })
            .collect(),
    )
}

/// What a build would do with one task, and why.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub id: String,
    pub title: String,
    pub agent_id: String,
    /// Empty when the task is up to date.
    pub reasons: Vec<String>,
    /// It runs only if a dep that runs first hands over something new (early cutoff).
    pub may_run: bool,
    /// For a task that is up to date: deps that re-ran since it last ran and left the same
    /// outputs and result.
    pub notes: Vec<String>,
    /// Unix seconds of its last recorded success.
    pub last_success: Option<u64>,
    /// Its last agent session.
    pub session: Option<SessionRecord>,
}

impl Explanation {
    pub fn render(&self) -> String {
        let mut s = format!("{} ({}, {})", self.id, self.agent_id, self.title);
        if self.reasons.is_empty() {
            s.push_str(": up to date");
            if let Some(t) = self.last_success {
                let _ = write!(s, " (last built {})", Stamp::from_unix(t).date_time());
            }
            s.push('\n');
            for n in &self.notes {
                let _ = writeln!(s, "  - {n}");
            }
        } else {
            s.push_str(if self.may_run {
                ": may run\n"
            } else {
                ": would run\n"
            });
            for r in &self.reasons {
                let _ = writeln!(s, "  - {r}");
            }
            if self.may_run {
                let _ = writeln!(s, "  - {}", dry_run::MAY_RUN_NOTE);
            }
            for n in &self.notes {
                let _ = writeln!(s, "  - {n}");
            }
        }
        if let Some(session) = &self.session {
            let _ = writeln!(
                s,
                "  session: {} ({}{})",
                session.id,
                session.agent,
                if session.resumable {
                    "; the next build continues it"
                } else {
                    ""
                }
            );
        }
        s
    }

    /// `verdict` is `up_to_date`, `would_run` or `may_run`.
    pub fn to_json(&self) -> serde_json::Value {
        let verdict = match (self.reasons.is_empty(), self.may_run) {
            (true, _) => "up_to_date",
            (false, true) => "may_run",
            (false, false) => "would_run",
        };
        json!({
            "id": self.id, "title": self.title, "agent_id": self.agent_id,
            "up_to_date": self.reasons.is_empty(), "verdict": verdict,
            "reasons": self.reasons, "notes": self.notes,
            "last_success": self.last_success,
            "session": session_json(self.session.as_ref()),
        })
    }
}

/// Task indexes for ids, with the nearest known id in the error.
pub fn resolve_ids(plan: &Plan, ids: &[String]) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for id in ids {
        out.extend(engine::task_indexes(plan, id)?);
    }
    Ok(out)
}

/// Explains the given tasks (all when empty) with the build's own fingerprints: every reason
/// each one would run, most fundamental first. `opts.agent_override` matters, since the agent
/// is part of a task's definition.
pub fn explain(plan: &Plan, opts: &BuildOptions, ids: &[String]) -> Result<Vec<Explanation>> {
    let graph =
        TaskGraph::from_plan(plan).map_err(|_| miette!("the plan has a dependency cycle"))?;
    let targets = if ids.is_empty() {
        (0..plan.tasks.len()).collect()
    } else {
        resolve_ids(plan, ids)?
    };
    let wanted = graph.upstream_closure(&targets);
    let cancel = crate::cancel::Cancel::new();
    let (ctx, state) = engine::read_only_context(plan, &graph, opts, &cancel, &wanted)?;
    let verdicts = dry_run::verdicts(&ctx, &wanted);
    Ok(targets
        .into_iter()
        .map(|t| {
            let mut reasons = Vec::new();
            if state.reset_by_person[t] {
                reasons.push(
                    "its Status was set back to Pending (🟡) in master_plan.md, which forces a \
                     re-run"
                        .to_string(),
                );
            } else if ctx.forced[t] {
                reasons.push("forced".to_string());
            }
            let mut notes = Vec::new();
            match &ctx.previous[t] {
                None => reasons.push("never built: no successful run is recorded".into()),
                Some(prev) => {
                    reasons.extend(changes(&ctx, &state, &verdicts, t, prev));
                    if verdicts[t] == dry_run::Verdict::UpToDate {
                        notes = quiet_reruns(&ctx, t, prev);
                    }
                }
            }
            if let Some(why) = verdicts[t].not_started(&ctx, t) {
                // Due or not, the build does not start it: that is what to know first.
                reasons.insert(0, why);
            }
            if reasons.is_empty() {
                if let Some(why) = verdicts[t].reason() {
                    reasons.push(why.to_string());
                }
            }
            if verdicts[t]
                .reason()
                .is_some_and(|w| w.ends_with(dry_run::WOULD_RESTORE))
            {
                notes.push(format!(
                    "{}: its fingerprint is in the local output cache, so a build restores \
                     it without running it",
                    dry_run::WOULD_RESTORE
                ));
            }
            let task = &plan.tasks[t];
            Explanation {
                id: task.id.clone(),
                title: task.title.clone(),
                agent_id: ctx.agent_ids[t].clone(),
                reasons,
                may_run: matches!(verdicts[t], dry_run::Verdict::MayRun(_)),
                notes,
                last_success: ctx.previous[t].as_ref().map(|r| r.finished_at),
                session: ctx.sessions[t].clone(),
            }
        })
        .collect())
}

/// Every difference between a task's last success and now; deps that will run are listed
/// with their reason, as what may make this one run.
fn changes(
    ctx: &engine::BuildContext,
    state: &engine::ReadOnlyState,
    verdicts: &[dry_run::Verdict],
    t: usize,
    prev: &crate::state::TaskRecord,
) -> Vec<String> {
    let mut out = Vec::new();
    let parts = match ctx.fingerprint(t) {
        Ok(p) => p,
        Err(e) => return vec![format!("cannot check: {e}")],
    };
    // Definition and inputs from the build's own comparison; deps below, with more to say.
    let mut own = parts.clone();
    own.deps = prev.deps.clone();
    out.extend(explain::reasons(prev, &own));
    for &d in &ctx.graph.deps[t] {
        let id = &ctx.task(d).id;
        match &verdicts[d] {
            dry_run::Verdict::UpToDate => {}
            _ if state.reset_by_person[d] => {
                out.push(format!(
                    "dep {id} will run (its Status was set back to Pending)"
                ));
                continue;
            }
            dry_run::Verdict::Runs(why) => {
                out.push(format!("dep {id} will run ({why})"));
                continue;
            }
            dry_run::Verdict::MayRun(_) => {
                out.push(format!("dep {id} may run"));
                continue;
            }
            v @ (dry_run::Verdict::Held | dry_run::Verdict::Blocked(_)) => {
                let why = v.not_started(ctx, d).unwrap_or_default();
                out.push(format!("dep {id} does not run ({why})"));
                continue;
            }
        }
        let now = parts.deps.iter().find(|(x, _)| x == id).map(|(_, h)| h);
        match prev.deps.iter().find(|(x, _)| x == id) {
            None => out.push(format!("dep {id} was added")),
            Some((_, h)) if Some(h) != now => {
                out.push(format!("dep {id} changed since this task last ran"))
            }
            Some(_) => {}
        }
    }
    for (id, _) in &prev.deps {
        if !ctx.graph.deps[t].iter().any(|&d| &ctx.task(d).id == id) {
            out.push(format!("dep {id} was removed"));
        }
    }
    for (path, hash) in &prev.outputs {
        match ctx.hash_project_file(path) {
            Ok(None) => out.push(format!("output {path} is missing")),
            Ok(Some(h)) if &h != hash => out.push(format!("output {path} was modified")),
            Ok(Some(_)) => {}
            Err(e) => out.push(format!("output {path} cannot be read: {e}")),
        }
    }
    out
}

/// For an up-to-date task: the deps whose last success came after its own, which re-ran
/// and handed over what it was built on (early cutoff).
fn quiet_reruns(
    ctx: &engine::BuildContext,
    t: usize,
    prev: &crate::state::TaskRecord,
) -> Vec<String> {
    ctx.graph.deps[t]
        .iter()
        .filter_map(|&d| {
            let dep = ctx.previous[d].as_ref()?;
            (dep.finished_at > prev.finished_at).then(|| {
                format!(
                    "dep {} {} since ({}), outputs unchanged",
                    ctx.task(d).id,
                    if dep.restored {
                        "was restored from cache"
                    } else {
                        "re-ran"
                    },
                    Stamp::from_unix(dep.finished_at).date_time()
                )
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz: `orch graph | dot -Tsvg > plan.svg`.
    Dot,
    /// A mermaid flowchart, for markdown that renders it.
    Mermaid,
}

fn status_colour(s: Status) -> (&'static str, &'static str) {
    // (fill, stroke)
    match s {
        Status::Completed | Status::Skipped => ("#c8e6c9", "#2e7d32"),
        Status::Running => ("#bbdefb", "#1565c0"),
        Status::Queued => ("#e1bee7", "#6a1b9a"),
        Status::QuotaWait => ("#ffe0b2", "#e65100"),
        Status::Ready => ("#fff9c4", "#f9a825"),
        Status::Waiting => ("#eeeeee", "#757575"),
        Status::Failed | Status::Conflict => ("#ffcdd2", "#c62828"),
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(['\n', '\r'], " ")
}

fn mermaid_label(s: &str) -> String {
    s.replace('"', "#quot;").replace(['\n', '\r'], " ")
}

/// The DAG of the `selected` tasks (edges between selected tasks only), nodes coloured by
/// `statuses` when given.
pub fn render_graph(
    plan: &Plan,
    selected: &[bool],
    statuses: Option<&[Status]>,
    format: GraphFormat,
    expand: bool,
) -> String {
    let nodes = graph_nodes(plan, selected, statuses, expand);
    let mut s = String::new();
    match format {
        GraphFormat::Dot => {
            s.push_str("digraph orch {\n    rankdir=LR;\n");
            s.push_str(
                "    node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", \
                 fontname=\"Helvetica\"];\n",
            );
            for n in &nodes.list {
                let mut attrs =
                    format!("label=\"{}\\n{}\"", dot_escape(&n.id), dot_escape(&n.title));
                if let Some(st) = n.status {
                    let (fill, stroke) = status_colour(st);
                    let _ = write!(
                        attrs,
                        ", fillcolor=\"{fill}\", color=\"{stroke}\", tooltip=\"{}\"",
                        st.word()
                    );
                }
                let _ = writeln!(s, "    \"{}\" [{attrs}];", dot_escape(&n.id));
            }
            for &(from, to) in &nodes.edges {
                let _ = writeln!(
                    s,
                    "    \"{}\" -> \"{}\";",
                    dot_escape(&nodes.list[from].id),
                    dot_escape(&nodes.list[to].id)
                );
            }
            s.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            s.push_str("flowchart LR\n");
            for (k, n) in nodes.list.iter().enumerate() {
                let label = mermaid_label(&format!("{}: {}", n.id, n.title));
                let _ = writeln!(s, "    n{k}[\"{label}\"]");
            }
            for &(from, to) in &nodes.edges {
                let _ = writeln!(s, "    n{from} --> n{to}");
            }
            if statuses.is_some() {
                for status in STATUS_ORDER {
                    let members: Vec<String> = (0..nodes.list.len())
                        .filter(|&k| nodes.list[k].status == Some(status))
                        .map(|k| format!("n{k}"))
                        .collect();
                    if members.is_empty() {
                        continue;
                    }
                    let (fill, stroke) = status_colour(status);
                    let _ = writeln!(
                        s,
                        "    classDef {} fill:{fill},stroke:{stroke}",
                        status.word()
                    );
                    let _ = writeln!(s, "    class {} {}", members.join(","), status.word());
                }
            }
        }
    }
    s
}

/// One node of a drawn graph: a task, or all the selected instances of a fan-out.
struct GraphNode {
    id: String,
    title: String,
    status: Option<Status>,
}

struct GraphNodes {
    list: Vec<GraphNode>,
    /// (dep, dependent) node indexes, each pair once.
    edges: Vec<(usize, usize)>,
}

/// The nodes and edges to draw: unless `expand`, a fan-out's instances are one node,
/// `review[…] ×500`, whose status is the one that most needs a look (failed, then
/// running, ...).
fn graph_nodes(
    plan: &Plan,
    selected: &[bool],
    statuses: Option<&[Status]>,
    expand: bool,
) -> GraphNodes {
    let mut list: Vec<GraphNode> = Vec::new();
    let mut node_of = vec![usize::MAX; plan.tasks.len()];
    let mut group_node: std::collections::HashMap<&str, usize> = Default::default();
    let urgency = |s: Status| match s {
        Status::Failed | Status::Conflict => 0,
        Status::Running | Status::QuotaWait => 1,
        Status::Queued => 2,
        Status::Ready => 3,
        Status::Waiting => 4,
        Status::Completed => 5,
        Status::Skipped => 6,
    };
    for t in (0..plan.tasks.len()).filter(|&t| selected[t]) {
        let task = &plan.tasks[t];
        let status = statuses.map(|v| v[t]);
        let group = task
            .item
            .as_ref()
            .filter(|_| !expand)
            .map(|i| i.template.as_str());
        match group.and_then(|g| group_node.get(g).copied()) {
            Some(k) => {
                node_of[t] = k;
                let n = &mut list[k];
                if let (Some(have), Some(new)) = (n.status, status) {
                    if urgency(new) < urgency(have) {
                        n.status = Some(new);
                    }
                }
            }
            None => {
                node_of[t] = list.len();
                let (id, title) = match group {
                    Some(g) => {
                        group_node.insert(g, list.len());
                        let title = plan.fanout(g).map_or(g, |f| f.template.title.as_str());
                        (format!("{g}[…]"), title.to_string())
                    }
                    None => (task.id.clone(), task.title.clone()),
                };
                list.push(GraphNode { id, title, status });
            }
        }
    }
    // A group's size, in its id.
    let mut sizes = vec![0usize; list.len()];
    for t in (0..plan.tasks.len()).filter(|&t| selected[t]) {
        sizes[node_of[t]] += 1;
    }
    for (k, n) in list.iter_mut().enumerate() {
        if n.id.ends_with("[…]") && !expand {
            n.id = format!("{} ×{}", n.id, sizes[k]);
        }
    }
    let mut edges = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in (0..plan.tasks.len()).filter(|&t| selected[t]) {
        for d in &plan.tasks[t].deps {
            let di = plan.index[d];
            if selected[di] && seen.insert((node_of[di], node_of[t])) {
                edges.push((node_of[di], node_of[t]));
            }
        }
    }
    GraphNodes { list, edges }
}

/// `orch list`: one line per task.
pub fn render_list(plan: &Plan) -> String {
    let rows: Vec<Vec<String>> = plan
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.title.replace(['\n', '\r'], " "),
                runner(plan, t),
                t.priority.to_string(),
                deps_text(&t.deps),
            ]
        })
        .collect();
    text_table(&["ID", "Title", "Runs with", "Priority", "Deps"], &rows)
}

/// `shell`, or the agent a task names, or the default agent.
pub fn runner(plan: &Plan, t: &crate::plan::Task) -> String {
    match &t.action {
        Action::Shell(_) => "shell".into(),
        _ => t
            .agent
            .clone()
            .unwrap_or_else(|| plan.settings.default_agent.clone()),
    }
}

pub fn list_json(plan: &Plan) -> serde_json::Value {
    serde_json::Value::Array(
        plan.tasks
            .iter()
            .map(|t| {
                let (kind, text) = match &t.action {
                    Action::Shell(c) => ("run", c.clone()),
                    Action::Prompt(p) => ("prompt", p.clone()),
                    Action::PromptFile(f) => ("prompt_file", f.to_string_lossy().into_owned()),
                };
                json!({
                    "id": t.id, "title": t.title, "agent": runner(plan, t),
                    "priority": t.priority.to_string(), "deps": t.deps,
                    "inputs": t.inputs, "outputs": t.outputs, kind: text,
                    "verify": t.verify,
                    "estimate": t.estimate.map(crate::duration::format_exact),
                })
            })
            .collect(),
    )
}
