//! The build's copy of master_plan.md: status rows in memory, log entries appended, the file
//! rewritten atomically at most every second or so and once at the end, keeping what a
//! person wrote.

use std::collections::HashSet;
use std::io;
use std::time::{Duration, Instant};

use super::details::{mermaid, render_details};
use super::sections::{render, Digests, Generated, LogEntry, Sections};
use super::table::{render_table, split_row, table_statuses, StatusRow};
use crate::clock::Stamp;
use crate::disk::FileStamp;
use crate::disk::{persist_atomic, replace_unsynced};
use crate::plan::Plan;
use crate::state::Status;
use crate::state::{StateLayout, StateStore};

/// The log keeps at most this much of earlier runs; the oldest entries go first.
const LOG_LIMIT: usize = 1 << 20;

/// What a build changes of a task's row in the status table; the other columns come from the
/// plan when the table is written (a no-op build never builds them).
#[derive(Debug, Clone)]
pub struct RowState {
    pub status: Status,
    pub start: Option<String>,
    pub end: Option<String>,
    pub retries: u32,
    /// `HH:MM` a task waiting for quota waits until.
    pub waiting_until: Option<String>,
}

pub struct PlanDoc {
    path: std::path::PathBuf,
    /// The file as it was before this build, read on first need: a build that finds it as
    /// orch left it and writes nothing never reads it (it grows with the plan and the log).
    previous: Option<Sections>,
    /// The log of earlier runs (trimmed), taken from `previous`.
    earlier_log: String,
    /// How orch left the file; `None` when unknown.
    left_by_orch: Option<FileStamp>,
    request: String,
    /// Generated at the first write: a build that writes nothing never pays for it.
    generated: Option<(String, String)>,
    /// This run's log entries.
    log: String,
    dirty: bool,
    last_write: Instant,
    /// Grows with the cost of a write so huge plans do not spend their time rewriting it.
    interval: Duration,
}

impl PlanDoc {
    pub fn load(plan: &Plan, layout: &StateLayout, store: &StateStore) -> PlanDoc {
        let request = plan.request.clone().unwrap_or_else(|| {
            format!(
                "Build of `{}` ({} tasks).",
                plan.source_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                plan.tasks.len()
            )
        });
        PlanDoc {
            path: layout.master_plan(),
            previous: None,
            earlier_log: String::new(),
            left_by_orch: store.snapshot.plan_doc_stamp,
            request,
            generated: None,
            log: String::new(),
            dirty: true,
            // The first rewrite during a build waits its second too: a build that ends
            // sooner writes the file once, at its end, instead of twice.
            last_write: Instant::now(),
            interval: Duration::from_secs(1),
        }
    }

    /// Whether the file is exactly as orch's last build left it (so nobody edited it).
    fn untouched(&self) -> bool {
        self.left_by_orch.is_some() && FileStamp::of_path(&self.path) == self.left_by_orch
    }

    fn previous(&mut self) -> &Sections {
        if self.previous.is_none() {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            let previous = Sections::parse(&text);
            let mut log = previous
                .get("Execution Log")
                .unwrap_or("")
                .trim_matches('\n')
                .to_string();
            if log.len() > LOG_LIMIT {
                let cut = log.len() - LOG_LIMIT;
                let start = log[cut..]
                    .find("\n### [")
                    .map(|i| cut + i + 1)
                    .unwrap_or(cut);
                log = format!("_(older entries trimmed)_\n\n{}", &log[start..]);
            }
            if !log.is_empty() {
                log.push_str("\n\n");
            }
            self.earlier_log = log;
            self.previous = Some(previous);
        }
        self.previous.as_ref().unwrap()
    }

    /// Tasks a person marked Pending/🟡 in the status table although orch recorded them as
    /// done: the contract's way to force a re-run.
    pub fn reset_by_person(&mut self, plan: &Plan, store: &StateStore) -> HashSet<usize> {
        let mut out = HashSet::new();
        if self.untouched() {
            // The table is the one orch wrote from its own records: nothing was reset.
            return out;
        }
        let Some(table) = self.previous().get("Task Status") else {
            return out;
        };
        // Cells are split at unescaped pipes: a title with `\|` does not shift them.
        for (id, status) in table_statuses(table) {
            let Some(&t) = plan.index.get(&id) else {
                continue;
            };
            let was = store.snapshot.statuses.get(&id).map(|s| s.status);
            if Status::parse(&status) == Some(Status::Ready)
                && matches!(was, Some(Status::Completed | Status::Skipped))
            {
                out.insert(t);
            }
        }
        out
    }

    /// Edits a person made to sections orch rewrites, which the next rewrite would drop: one
    /// message each, to be shown before the build goes on. With an Orchfile, master_plan.md
    /// is a report: only a Status set to 🟡/Pending and a person's own `## ` sections are
    /// kept, so an edit to the request, the table (a new row above all), the task details or
    /// the diagram is said here. A master plan carries its own table and details (they are
    /// the plan), which leaves the diagram. Known by the digests orch leaves in the file
    /// ([`Digests`]); a file without them (written by an older orch) is only checked for
    /// rows of tasks nobody defined.
    pub fn uncarried_edits(&mut self, plan: &Plan, store: &StateStore) -> Vec<String> {
        if self.untouched() || !self.path.exists() {
            return Vec::new();
        }
        let from_orchfile = !super::is_markdown(&plan.source_path);
        let source = plan
            .source_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let doc = self.previous();
        let written = Digests::read(doc);
        let now = Digests::now(doc);
        let mut out = Vec::new();
        if !from_orchfile {
            if written.as_ref().is_some_and(|w| w.graph != now.graph) {
                out.push(
                    "master_plan.md: your edit to `## Dependency Graph` is not kept: the diagram \
                     is drawn from the Task Status table (change its Deps column; notes go in a \
                     `## ` section of your own)"
                        .to_string(),
                );
            }
            return out;
        }
        let table = doc.get("Task Status").unwrap_or("");
        let unknown: Vec<String> = table_statuses(table)
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| {
                // A task orch ever numbered is one an earlier plan had, not a person's row.
                !plan.index.contains_key(id)
                    && !store.snapshot.agent_numbers.contains_key(id)
                    && !store.snapshot.statuses.contains_key(id)
            })
            .collect();
        if !unknown.is_empty() {
            let ids: Vec<String> = unknown.iter().take(5).map(|i| format!("`{i}`")).collect();
            let more = match unknown.len().saturating_sub(5) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            out.push(format!(
                "master_plan.md lists {}{more}, which {source} does not define: {} not run, \
                 and the next rewrite drops the row{}; add [tasks.{}] to {source}",
                ids.join(", "),
                if unknown.len() == 1 {
                    "it will"
                } else {
                    "they will"
                },
                if unknown.len() == 1 { "" } else { "s" },
                unknown[0]
            ));
        }
        let before = written.as_ref().map(Digests::by_section);
        for (i, (name, digest)) in now.by_section().into_iter().enumerate() {
            let changed = before.is_some_and(|b| b[i].1 != digest);
            let only_new_rows = name == "Task Status"
                && !unknown.is_empty()
                && written.as_ref().is_some_and(|w| {
                    let kept: Vec<&str> = table
                        .lines()
                        .filter(|l| {
                            let id = split_row(l)
                                .first()
                                .map(|c| c.trim_matches('`').to_string());
                            !id.is_some_and(|id| unknown.contains(&id))
                        })
                        .collect();
                    Digests::of("", &kept.join("\n"), "", "").table == w.table
                });
            if changed && !only_new_rows {
                out.push(format!(
                    "master_plan.md: your edit to `## {name}` is not kept: with {source} as the \
                     plan, orch rewrites this section from it (make the change in {source}; \
                     notes go in a `## ` section of your own)"
                ));
            }
        }
        out
    }

    /// The status table's rows: the plan's columns with this build's states.
    fn status_rows(plan: &Plan, agent_ids: &[String], rows: &[RowState]) -> Vec<StatusRow> {
        plan.tasks
            .iter()
            .zip(rows)
            .zip(agent_ids)
            .map(|((task, row), agent)| StatusRow {
                id: task.id.clone(),
                title: task.title.clone(),
                agent: agent.clone(),
                status: row.status,
                priority: task.priority.to_string(),
                deps: plan.deps_shown(task),
                start: row.start.clone(),
                end: row.end.clone(),
                retries: row.retries,
                until: row.waiting_until.clone(),
            })
            .collect()
    }

    pub fn log_initialization(
        &mut self,
        plan: &Plan,
        wanted: usize,
        jobs: usize,
        agent_override: Option<&str>,
    ) {
        let mut lines = vec![
            format!("Loaded plan from {}", plan.source_path.display()),
            format!(
                "{} agents assigned; {wanted} task(s) selected, up to {jobs} at once",
                plan.tasks.len()
            ),
        ];
        // Task Details keep each task's own agent (they are read back as the plan), so the
        // log says when this run used another.
        if let Some(a) = agent_override {
            lines.push(format!("Every agent task runs with `{a}` (--agent)"));
        }
        self.log(LogEntry {
            stamp: Stamp::now().date_time(),
            title: "Initialization".into(),
            lines,
        });
    }

    pub fn log(&mut self, entry: LogEntry) {
        self.log.push_str(&entry.render());
        self.dirty = true;
    }

    pub fn touch(&mut self) {
        self.dirty = true;
    }

    pub fn maybe_write(
        &mut self,
        plan: &Plan,
        agent_ids: &[String],
        rows: &[RowState],
    ) -> io::Result<()> {
        if self.dirty && self.last_write.elapsed() >= self.interval {
            self.write(plan, agent_ids, rows, false)?;
        }
        Ok(())
    }

    /// Rewrites the file; `sync` (the final write) also fsyncs it.
    pub fn write(
        &mut self,
        plan: &Plan,
        agent_ids: &[String],
        rows: &[RowState],
        sync: bool,
    ) -> io::Result<()> {
        let began = Instant::now();
        self.previous();
        let table = render_table(&Self::status_rows(plan, agent_ids, rows));
        let ids = agent_ids;
        let (details, graph) = self.generated.get_or_insert_with(|| {
            let details = render_details(plan, &|id| {
                plan.index
                    .get(id)
                    .map(|&t| ids[t].clone())
                    .unwrap_or_default()
            });
            (details, mermaid(plan))
        });
        let log = format!("{}{}", self.earlier_log, self.log);
        let text = render(
            self.previous.as_ref().unwrap(),
            &Generated {
                request: &self.request,
                table: &table,
                details,
                graph,
                log: &log,
            },
        );
        if sync {
            persist_atomic(&self.path, text.as_bytes())?;
        } else {
            replace_unsynced(&self.path, text.as_bytes())?;
        }
        self.dirty = false;
        self.last_write = Instant::now();
        // For a person watching, a second is fresh enough; a huge plan's rewrite stays under
        // 2% of the build.
        self.interval = Duration::from_secs(1).max(began.elapsed() * 50);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_writes_the_file_at_most_once_a_second_and_not_at_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let orchfile = dir.path().join("Orchfile.toml");
        let plan = crate::plan::orchfile::parse(&orchfile, "[tasks.a]\nrun = \"true\"\n").unwrap();
        let layout = StateLayout::new(dir.path().join(".orchestrator"));
        layout.create_dirs().unwrap();
        let store = StateStore::open(layout.clone()).unwrap();
        let mut doc = PlanDoc::load(&plan, &layout, &store);
        let ids = vec!["Agent-01".to_string()];
        let rows = vec![RowState {
            status: Status::Running,
            start: None,
            end: None,
            retries: 0,
            waiting_until: None,
        }];
        doc.touch();
        doc.maybe_write(&plan, &ids, &rows).unwrap();
        assert!(
            !layout.master_plan().exists(),
            "a build shorter than a second writes it only at its end"
        );
        doc.last_write -= Duration::from_secs(1);
        doc.maybe_write(&plan, &ids, &rows).unwrap();
        assert!(layout.master_plan().exists(), "a longer one shows progress");
    }
}
