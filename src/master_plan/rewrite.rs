//! One rewrite of master_plan.md outside a build (`orch plan`, `orch clean`): the plan's
//! sections regenerated from the state store, a person's sections and the log carried over,
//! one log entry added.

use std::path::PathBuf;

use super::details::{mermaid, render_details};
use super::sections::{render, Generated, LogEntry, Sections};
use super::table::{render_table, StatusRow};
use crate::disk::persist_atomic;
use crate::plan::Plan;
use crate::state::StateStore;

/// Rewrites the store's `master_plan.md` for `plan`: request, status table (`rows`), task
/// details and diagram, keeping a person's own sections and the execution log, to which
/// `entry` is appended.
pub fn write_master_plan(
    plan: &Plan,
    store: &StateStore,
    rows: &[StatusRow],
    entry: LogEntry,
) -> std::io::Result<PathBuf> {
    let path = store.layout.master_plan();
    let previous = Sections::parse(&std::fs::read_to_string(&path).unwrap_or_default());
    let mut log = previous
        .get("Execution Log")
        .unwrap_or("")
        .trim_matches('\n')
        .to_string();
    if !log.is_empty() {
        log.push_str("\n\n");
    }
    log.push_str(&entry.render());
    let request = plan.request.clone().unwrap_or_default();
    let table = render_table(rows);
    let details = render_details(plan, &|id| store.agent_id_of(id));
    let graph = mermaid(plan);
    let text = render(
        &previous,
        &Generated {
            request: &request,
            table: &table,
            details: &details,
            graph: &graph,
            log: &log,
        },
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    persist_atomic(&path, text.as_bytes())?;
    Ok(path)
}
