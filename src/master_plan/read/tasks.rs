//! The status table's rows as the plan's tasks (in order), completed from their details
//! blocks; then the deps are checked and the plan put together.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::fields::{apply_details, is_agent_id, parse_priority};
use super::walk::{split_list, trimmed, Cell, Details, Doc, Reader};
use crate::agent::presets;
use crate::master_plan::table::TABLE_HEADER;
use crate::plan::checks::{closest, valid_task_id, TASK_ID_RULE};
use crate::plan::diagnostic::cycle_error;
use crate::plan::placeholder;
use crate::plan::{Action, Plan, Priority, Settings, Task};
use crate::state::Status;

/// The table columns orch writes, lowercased.
const COLUMNS: &[&str] = &[
    "task id",
    "task description",
    "agent",
    "status",
    "priority",
    "deps",
    "start",
    "end",
    "retries",
];

struct RowInfo {
    id: Cell,
    deps_cell: Option<Cell>,
}

pub(super) fn build(
    r: &mut Reader,
    doc: Doc,
    root: PathBuf,
    state_dir: PathBuf,
    path: &Path,
) -> Plan {
    let text = r.text;
    let agents = presets::builtin_agents();
    let settings = Settings {
        state_dir,
        ..Settings::default()
    };
    let empty = Plan {
        root: root.clone(),
        source_path: path.to_path_buf(),
        settings: settings.clone(),
        agents: agents.clone(),
        tasks: Vec::new(),
        index: HashMap::new(),
        aggregate: None,
        request: doc.request.clone(),
        fanouts: Vec::new(),
        definitions: Vec::new(),
    };
    let Some(header) = &doc.header else {
        let span = doc.status_section.clone().unwrap_or(0..0);
        r.err_help(
            "orch::md_no_table",
            "master_plan.md has no task table".into(),
            trimmed(text, span),
            "expected the status table here",
            &format!(
                "a `## Task Status` section with the table `{}` lists the tasks",
                TABLE_HEADER
            ),
        );
        return empty;
    };
    let mut col: HashMap<&str, usize> = HashMap::new();
    for (i, c) in header.iter().enumerate() {
        match COLUMNS.iter().find(|n| c.text.eq_ignore_ascii_case(n)) {
            Some(n) => {
                col.insert(n, i);
            }
            None => r.err_help(
                "orch::md_column",
                format!("unknown column `{}` in the status table", c.text),
                c.span.clone(),
                "orch would not keep this column",
                "columns: Task ID, Task Description, Agent, Status, Priority, Deps, Start, End, \
                 Retries; put notes in a `## ` section of your own",
            ),
        }
    }
    let Some(&id_col) = col.get("task id") else {
        let span = header.first().map(|c| c.span.clone()).unwrap_or(0..0);
        r.err(
            "orch::md_column",
            "the status table has no `Task ID` column".into(),
            span,
            "in this table",
        );
        return empty;
    };
    let get = |cells: &[Cell], name: &str| -> Option<Cell> {
        col.get(name).and_then(|&i| cells.get(i)).cloned()
    };

    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut rows: Vec<RowInfo> = Vec::new();
    let mut tasks: Vec<Task> = Vec::new();
    let mut table_agents: Vec<Option<(String, Range<usize>)>> = Vec::new();
    for (cells, row_span) in &doc.rows {
        let id = cells.get(id_col).cloned().unwrap_or(Cell {
            text: String::new(),
            span: trimmed(text, row_span.clone()),
        });
        let id_text = id.text.trim_matches('`').to_string();
        if id_text.is_empty() {
            r.err(
                "orch::bad_task_id",
                "a row has no task id".into(),
                trimmed(text, row_span.clone()),
                "this row",
            );
            continue;
        }
        if !valid_task_id(&id_text) {
            r.err(
                "orch::bad_task_id",
                format!("task id `{id_text}` may only use {TASK_ID_RULE}"),
                id.span.clone(),
                "here",
            );
            continue;
        }
        if let Some(&first) = ids.get(&id_text) {
            let e = r
                .src
                .error(
                    "orch::duplicate_task",
                    format!("task `{id_text}` has two rows"),
                    Some(id.span.clone()),
                    "again here",
                )
                .with_label(rows[first].id.span.clone(), "first here");
            r.errors.push(e);
            continue;
        }
        if let Some(s) = get(cells, "status") {
            let t = s.text.trim();
            if !(t.is_empty() || t == "-") && Status::parse(t).is_none() {
                r.err_help(
                    "orch::md_status",
                    format!("unknown status `{t}` for `{id_text}`"),
                    s.span.clone(),
                    "not a status",
                    "use ✅ 🔵 🟡 ⏸️ ❌ ⏭️ or a word: completed, running, ready, pending, \
                     waiting, failed, skipped (🟡 or Pending forces a re-run)",
                );
            }
        }
        let priority = match get(cells, "priority") {
            None => Priority::default(),
            Some(c) => parse_priority(&c.text).unwrap_or_else(|| {
                r.err(
                    "orch::bad_priority",
                    "priority must be one of P0, P1, P2, P3".into(),
                    c.span.clone(),
                    "here",
                );
                Priority::default()
            }),
        };
        let deps_cell = get(cells, "deps");
        let deps = deps_cell
            .as_ref()
            .map(|c| split_list(&c.text))
            .unwrap_or_default();
        let agent = get(cells, "agent").and_then(|c| {
            let t = c.text.trim().to_string();
            (!(t.is_empty() || t == "-" || is_agent_id(&t))).then_some((t, c.span))
        });
        let title = get(cells, "task description")
            .map(|c| c.text.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| id_text.clone());
        ids.insert(id_text.clone(), tasks.len());
        rows.push(RowInfo { id, deps_cell });
        table_agents.push(agent);
        tasks.push(Task {
            id: id_text,
            title,
            action: Action::Shell(String::new()),
            agent: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            deps,
            priority,
            retries: None,
            timeout: None,
            locks: Vec::new(),
            verify: None,
            estimate: None,
            env: Default::default(),
            foreach: None,
            item: None,
            permissions: None,
            allow_undeclared_writes: None,
            isolation: None,
            placement: Default::default(),
            max_cost_usd: None,
            cost_estimate: None,
            cache: true,
        });
    }

    let mut details: Vec<Option<Details>> = (0..tasks.len()).map(|_| None).collect();
    for d in doc.details {
        match ids.get(&d.id) {
            Some(&t) if details[t].is_some() => {
                let id = d.id.clone();
                r.err(
                    "orch::duplicate_task",
                    format!("task `{id}` has two details blocks"),
                    d.span,
                    "again here",
                );
            }
            Some(&t) => details[t] = Some(d),
            None => {
                let mut e = r.src.error(
                    "orch::md_orphan_details",
                    format!(
                        "details for `{}`, which has no row in the status table",
                        d.id
                    ),
                    Some(d.span),
                    "no row has this id",
                );
                e = match closest(&d.id, ids.keys().map(String::as_str)) {
                    Some(c) => e.with_help(format!("did you mean `{c}`?")),
                    None => e.with_help(
                        "add a row for it to the Task Status table, or delete this block",
                    ),
                };
                r.errors.push(e);
            }
        }
    }

    let mut prompt_spans = Vec::with_capacity(tasks.len());
    for (t, task) in tasks.iter_mut().enumerate() {
        let d = details[t].take();
        prompt_spans.push(apply_details(r, task, d, table_agents[t].take(), &agents));
    }

    // Deps: known, not self, not twice; then no cycle.
    for (t, task) in tasks.iter_mut().enumerate() {
        let span = rows[t]
            .deps_cell
            .as_ref()
            .map(|c| c.span.clone())
            .unwrap_or(rows[t].id.span.clone());
        let mut kept: Vec<String> = Vec::new();
        for d in std::mem::take(&mut task.deps) {
            if d == task.id {
                r.err(
                    "orch::self_dep",
                    format!("task `{d}` depends on itself"),
                    span.clone(),
                    "here",
                );
            } else if !ids.contains_key(&d) {
                let mut e = r.src.error(
                    "orch::unknown_dep",
                    format!("task `{}` depends on unknown task `{d}`", task.id),
                    Some(span.clone()),
                    "no task has this id",
                );
                let others = ids.keys().map(String::as_str).filter(|&k| k != task.id);
                if let Some(c) = closest(&d, others) {
                    e = e.with_help(format!("did you mean `{c}`?"));
                }
                r.errors.push(e);
            } else if kept.contains(&d) {
                r.err(
                    "orch::duplicate_dep",
                    format!("task `{}` lists dep `{d}` twice", task.id),
                    span.clone(),
                    "here",
                );
            } else {
                kept.push(d);
            }
        }
        task.deps = kept;
    }
    for (t, task) in tasks.iter().enumerate() {
        let span = prompt_spans[t].clone().unwrap_or(rows[t].id.span.clone());
        check_placeholders(r, task, span, &ids);
    }
    if r.errors.is_empty() {
        let deps: Vec<Vec<usize>> = tasks
            .iter()
            .map(|t| t.deps.iter().map(|d| ids[d]).collect())
            .collect();
        let edge =
            |_: usize, dependent: usize| rows[dependent].deps_cell.as_ref().map(|c| c.span.clone());
        if let Some(e) = cycle_error(r.src, &tasks, deps, edge) {
            r.errors.push(e);
        }
    }
    let index = Plan::index_of(&tasks);
    Plan {
        tasks,
        index,
        ..empty
    }
}

/// Every placeholder of a prompt must name something its task has; each problem points at
/// the placeholder where the prompt is written (`span`), or at `span` when it cannot be
/// found there as it reads.
fn check_placeholders(
    r: &mut Reader,
    task: &Task,
    span: Range<usize>,
    ids: &HashMap<String, usize>,
) {
    let Action::Prompt(text) = &task.action else {
        return;
    };
    if !text.contains("{{") {
        return;
    }
    let deps: Vec<&str> = task.deps.iter().map(String::as_str).collect();
    let problems = placeholder::check(text, &task.id, &deps, ids, false);
    let written = r.text.get(span.clone()).unwrap_or("");
    let found = placeholder::locate_in(written, text, &problems);
    for (p, at) in problems.into_iter().zip(found) {
        let at = at.map_or(span.clone(), |a| span.start + a.start..span.start + a.end);
        let mut e = r
            .src
            .error("orch::placeholder", p.message, Some(at), p.label);
        if let Some(h) = p.help {
            e = e.with_help(h);
        }
        r.errors.push(e);
    }
}
