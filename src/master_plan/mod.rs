//! `master_plan.md`, the human-readable plan: its one home. orch writes it (request, status
//! table, task details, dependency graph, execution log), a person may edit it, and it reads
//! back as a plan.
//!
//! - [`read`]: master_plan.md as a plan source, for `orch build -f master_plan.md`;
//! - [`sections`]: the document split at its `## ` headings and put together again, with
//!   orch's sections regenerated and a person's own sections and the log carried over;
//! - [`table`]: the `## Task Status` table, written and read back by column name;
//! - [`details`]: the `## Task Details` blocks (which [`read`] takes back as the same plan)
//!   and the dependency diagram;
//! - [`live`]: a build's copy, rewritten as tasks progress, and the rows a person reset;
//! - [`rewrite`]: one rewrite outside a build, for `orch plan` and `orch clean`.
//!
//! It sits above the plan and the state store, which it reads, and below the engine,
//! `orch plan`, `orch clean` and `orch status`, which use it.

pub mod details;
pub mod live;
pub mod read;
pub mod rewrite;
pub mod sections;
pub mod table;

pub use details::{code_span, fenced, mermaid, render_details};
pub use live::{PlanDoc, RowState};
pub use read::{is_markdown, layout_of, load, parse, MASTER_PLAN_NAME};
pub use rewrite::write_master_plan;
pub use sections::{log_entry, render, Generated, LogEntry, Sections, GENERATED_SECTIONS};
pub use table::{cell, render_table, rows_from_store, split_row, StatusRow, TABLE_HEADER};
