//! The `## Task Status` table: one row per task (id, title, agent id, status, priority, deps,
//! times, retries), written from the state store or a build's rows, and read back by column
//! name (a line scan, for the statuses a person reset).

use crate::plan::Plan;
use crate::state::{StateStore, Status};

#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    pub id: String,
    pub title: String,
    pub agent: String,
    pub status: Status,
    pub priority: String,
    pub deps: Vec<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub retries: u32,
    /// What a task waiting for quota waits until (`15:00`), shown beside its status.
    pub until: Option<String>,
}

pub const TABLE_HEADER: &str =
    "| Task ID | Task Description | Agent | Status | Priority | Deps | Start | End | Retries |";

/// A table cell: pipes escaped, newlines folded.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn render_table(rows: &[StatusRow]) -> String {
    let mut out = String::with_capacity(64 * (rows.len() + 2));
    out.push_str(TABLE_HEADER);
    out.push_str("\n|---------|------------------|-------|--------|----------|------|-------|-----|---------|\n");
    for r in rows {
        let status = match &r.until {
            Some(until) => format!("{} until {until}", r.status.symbol()),
            None => r.status.symbol().to_string(),
        };
        let deps = if r.deps.is_empty() {
            "None".to_string()
        } else {
            r.deps.join(",")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(&r.id),
            cell(&r.title),
            r.agent,
            status,
            r.priority,
            cell(&deps),
            r.start.as_deref().unwrap_or("-"),
            r.end.as_deref().unwrap_or("-"),
            r.retries
        ));
    }
    out
}

/// Cells of a GFM table row: split at `|` not escaped as `\\|`, trimmed, escapes undone.
pub fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim();
    let inner = inner.strip_prefix('|').unwrap_or(inner);
    let inner = inner
        .strip_suffix('|')
        .filter(|r| !r.ends_with('\\'))
        .unwrap_or(inner);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
            c => cell.push(c),
        }
    }
    cells.push(cell.trim().to_string());
    cells
}

/// The `(task id, status cell)` pairs of the status table in `text` (the section body),
/// found by column name so a reordered or extended table still reads.
pub fn table_statuses(text: &str) -> Vec<(String, String)> {
    let mut lines = text.lines().map(str::trim).filter(|l| l.starts_with('|'));
    let Some(header) = lines.next().map(split_row) else {
        return Vec::new();
    };
    let col = |name: &str| header.iter().position(|c| c.eq_ignore_ascii_case(name));
    let (Some(id), Some(status)) = (col("task id"), col("status")) else {
        return Vec::new();
    };
    lines
        .map(split_row)
        .filter(|cells| {
            !cells
                .iter()
                .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
        })
        .filter_map(|cells| {
            Some((
                cells.get(id)?.trim_matches('`').to_string(),
                cells.get(status)?.clone(),
            ))
        })
        .collect()
}

/// Status rows from an opened store.
pub fn rows_from_store(plan: &Plan, store: &StateStore) -> Vec<StatusRow> {
    plan.tasks
        .iter()
        .map(|task| {
            let rec = store.snapshot.statuses.get(&task.id);
            let status = match rec {
                Some(r) => r.status,
                None if store.snapshot.records.contains_key(&task.id) => Status::Completed,
                None if task.deps.is_empty() => Status::Ready,
                None => Status::Waiting,
            };
            StatusRow {
                id: task.id.clone(),
                title: task.title.clone(),
                agent: store.agent_id_of(&task.id),
                status,
                priority: task.priority.to_string(),
                deps: plan.deps_shown(task),
                start: rec.and_then(|r| r.start.clone()),
                end: rec.and_then(|r| r.end.clone()),
                retries: rec.map(|r| r.retries).unwrap_or(0),
                until: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_contract_columns() {
        let rows = vec![StatusRow {
            id: "T-01".into(),
            title: "Read | code".into(),
            agent: "Agent-01".into(),
            status: Status::Completed,
            priority: "P0".into(),
            deps: vec![],
            start: Some("10:00:00".into()),
            end: Some("10:01:00".into()),
            retries: 0,
            until: None,
        }];
        let t = render_table(&rows);
        assert!(t.starts_with(TABLE_HEADER));
        assert!(t.contains(
            "| T-01 | Read \\| code | Agent-01 | ✅ | P0 | None | 10:00:00 | 10:01:00 | 0 |"
        ));
    }

    #[test]
    fn table_cells_respect_escaped_pipes() {
        assert_eq!(split_row("| a \\| b | `c` |"), ["a | b", "`c`"]);
        let table = format!(
            "{TABLE_HEADER}\n|---|---|---|---|---|---|---|---|---|\n| T-1 | x \\| y | Agent-01 | Pending | P2 | None | - | - | 0 |\n"
        );
        assert_eq!(
            table_statuses(&table),
            [("T-1".to_string(), "Pending".to_string())]
        );
    }
}
