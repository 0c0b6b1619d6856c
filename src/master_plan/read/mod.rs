//! Reading master_plan.md as a plan source: a person may edit the document orch wrote (or
//! write one) and build from it.
//!
//! What comes from where:
//! - `## Request`: the request, verbatim.
//! - `## Task Status` table: which tasks exist (one row each, in order), their title
//!   (`Task Description`), priority, deps and status. The `Agent` column holds agent ids
//!   (`Agent-01`), which orch assigns; a person may write an agent name there instead.
//! - `## Task Details`: one `### ID: title` block per task with `- **Field**: value` lines
//!   (Agent, Input, Output, Estimated Time, Timeout, Retries, Locks, Verify, Run, Prompt file,
//!   Prompt) and fenced code blocks for multi-line values (the prompt, a long run or verify).
//!   A row without a details block is an agent task whose prompt is its title.
//!
//! Edits that orch could not carry into its next rewrite are errors, not silently dropped:
//! unknown fields, free text inside Task Details, a details block without a row, a table
//! column orch does not know, and a Deps/Priority/title in the details that disagrees with
//! the table. The markdown walk is `walk`, the rows `tasks`, a details block `fields`.

mod fields;
mod tasks;
mod walk;

use std::path::{Path, PathBuf};

use crate::plan::diagnostic::{PlanError, PlanSpans, SourceFile, TaskSpans};
use crate::plan::Plan;
use tasks::build;
use walk::Reader;

pub use walk::table_statuses;

pub const MASTER_PLAN_NAME: &str = "master_plan.md";

/// Reads the master plan at `path`. Its directory is the state directory and that
/// directory's parent the project root, so the build writes back to the same file.
pub fn load(path: &Path) -> miette::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| miette::miette!("cannot read {}: {e}", path.display()))?;
    let (root, state_dir) = layout_of(path);
    parse(path, &text, root, state_dir).map_err(|e| miette::Report::new(*e))
}

/// `(root, state_dir)` for a master plan at `path`: `<root>/<state_dir>/master_plan.md`.
pub fn layout_of(path: &Path) -> (PathBuf, PathBuf) {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let root = dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let state_dir = dir
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".orchestrator"));
    (root, state_dir)
}

/// Whether a `-f` argument names a master plan rather than an Orchfile.
pub fn is_markdown(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("markdown"))
}

/// Parses master_plan.md text into a plan rooted at `root` with `state_dir` under it.
pub fn parse(
    path: &Path,
    text: &str,
    root: PathBuf,
    state_dir: PathBuf,
) -> Result<Plan, Box<PlanError>> {
    let src = SourceFile::new(path.display().to_string(), text);
    let mut r = Reader {
        text,
        src: &src,
        errors: Vec::new(),
    };
    let doc = r.read();
    let plan = build(&mut r, doc, root, state_dir, path);
    match PlanError::combine(r.errors) {
        Some(e) => Err(Box::new(e)),
        None => Ok(plan),
    }
}

/// Where each task of master_plan.md `text` is written (see [`PlanSpans`]): its row's id
/// cell (or its details heading), its Input code spans and its Prompt file.
pub fn spans(path: &Path, text: &str) -> PlanSpans {
    let src = SourceFile::new(path.display().to_string(), text);
    let mut r = Reader {
        text,
        src: &src,
        errors: Vec::new(),
    };
    let doc = r.read();
    let mut tasks: std::collections::HashMap<String, TaskSpans> = Default::default();
    let id_col = doc.header.as_ref().and_then(|h| {
        h.iter()
            .position(|c| c.text.eq_ignore_ascii_case("task id"))
    });
    for (cells, _) in &doc.rows {
        if let Some(cell) = id_col.and_then(|i| cells.get(i)) {
            tasks
                .entry(cell.text.trim_matches('`').to_string())
                .or_default()
                .task = Some(cell.span.clone());
        }
    }
    for d in &doc.details {
        let t = tasks.entry(d.id.clone()).or_default();
        t.task.get_or_insert(d.span.clone());
        for f in &d.fields {
            match fields::field_key(&f.name) {
                Some("inputs") if f.codes.is_empty() => {
                    t.inputs = f.list().iter().map(|_| f.span.clone()).collect()
                }
                Some("inputs") => t.inputs = f.codes.iter().map(|(_, r)| r.clone()).collect(),
                Some("outputs") if f.codes.is_empty() => {
                    t.outputs = f.list().iter().map(|_| f.span.clone()).collect()
                }
                Some("outputs") => t.outputs = f.codes.iter().map(|(_, r)| r.clone()).collect(),
                Some("prompt_file") => t.prompt_file = Some(f.span.clone()),
                _ => {}
            }
        }
    }
    PlanSpans { src, tasks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master_plan::details::render_details;
    use crate::master_plan::table::TABLE_HEADER;
    use crate::plan::{Action, Priority};

    fn parse_md(text: &str) -> Result<Plan, Box<PlanError>> {
        parse(
            Path::new("/p/.orchestrator/master_plan.md"),
            text,
            PathBuf::from("/p"),
            PathBuf::from(".orchestrator"),
        )
    }

    fn doc(rows: &str, details: &str) -> String {
        format!(
            "# Master Plan\n\n## Request\n\nDo it.\n\n## Task Status\n\n{}\n|---|---|---|---|---|---|---|---|---|\n{rows}\n## Task Details\n\n{details}\n## Notes\n\nmine\n",
            TABLE_HEADER
        )
    }

    fn label_text(e: &PlanError, text: &str) -> String {
        let l = &e.labels[0];
        text[l.offset()..l.offset() + l.len()].to_string()
    }

    #[test]
    fn a_bare_row_is_a_prompt_task() {
        let text = doc(
            "| T-01 | Read the code | - | Pending | P1 | None | - | - | 0 |\n| T-02 | Write \\| report | Agent-02 | ⏸️ | P2 | T-01 | - | - | 0 |\n",
            "",
        );
        let plan = parse_md(&text).unwrap();
        assert_eq!(plan.tasks.len(), 2);
        assert_eq!(plan.tasks[0].action, Action::Prompt("Read the code".into()));
        assert_eq!(plan.tasks[1].title, "Write | report");
        assert_eq!(plan.tasks[1].deps, vec!["T-01"]);
        assert_eq!(plan.tasks[0].priority, Priority(1));
        assert_eq!(plan.request.as_deref(), Some("Do it."));
        assert_eq!(plan.root, Path::new("/p"));
    }

    #[test]
    fn details_give_the_rest() {
        let details = "### T-01: Count\n\n- **Agent**: Agent-01 (shell)\n- **Input**: `src/**/*.rs`, `a,b.txt`\n- **Output**: `out/count.txt`\n- **Estimated Time**: 2m\n- **Timeout**: 1h30m\n- **Retries**: 2\n- **Locks**: `db`\n- **Verify**: `` test -s `x` ``\n- **Run**: `wc -l src/*.rs > out/count.txt`\n\n### T-02: Explain\n\n- **Agent**: Agent-02 (sim)\n- **Prompt**:\n\n````text\nExplain.\n```\ncode\n```\n````\n";
        let text = doc(
            "| T-01 | Count | Agent-01 | ✅ | P0 | None | - | - | 0 |\n| T-02 | Explain | Agent-02 | ⏸️ | P2 | T-01 | - | - | 0 |\n",
            details,
        );
        let plan = parse_md(&text).unwrap();
        let t = &plan.tasks[0];
        assert_eq!(
            t.action,
            Action::Shell("wc -l src/*.rs > out/count.txt".into())
        );
        assert_eq!(t.inputs, vec!["src/**/*.rs", "a,b.txt"]);
        assert_eq!(t.outputs, vec!["out/count.txt"]);
        assert_eq!(t.verify.as_deref(), Some("test -s `x`"));
        assert_eq!(t.estimate, Some(std::time::Duration::from_secs(120)));
        assert_eq!(t.timeout, Some(std::time::Duration::from_secs(5400)));
        assert_eq!(t.retries, Some(2));
        assert_eq!(t.locks, vec!["db"]);
        assert_eq!(t.agent, None);
        let t = &plan.tasks[1];
        assert_eq!(t.agent.as_deref(), Some("sim"));
        assert_eq!(t.action, Action::Prompt("Explain.\n```\ncode\n```".into()));
    }

    #[test]
    fn writer_and_reader_round_trip() {
        let details = "### T-01: Count\n\n- **Agent**: Agent-01 (shell)\n- **Run**:\n\n```sh\nset -e\necho `date` > out.txt\n```\n\n### T-02: Explain\n\n- **Agent**: Agent-02 (claude)\n- **Output**: `r.md`\n- **Verify**: `test -s r.md`\n- **Prompt**: Explain the **count**\n  in detail.\n";
        let text = doc(
            "| T-01 | Count | Agent-01 | ✅ | P0 | None | - | - | 0 |\n| T-02 | Explain | Agent-02 | ⏸️ | P2 | T-01 | - | - | 0 |\n",
            details,
        );
        let plan = parse_md(&text).unwrap();
        assert_eq!(
            plan.tasks[1].action,
            Action::Prompt("Explain the **count**\nin detail.".into())
        );
        let ids = |id: &str| format!("Agent-{:02}", plan.index[id] + 1);
        let written = render_details(&plan, &ids);
        let text2 = doc(
            "| T-01 | Count | Agent-01 | ✅ | P0 | None | - | - | 0 |\n| T-02 | Explain | Agent-02 | ⏸️ | P2 | T-01 | - | - | 0 |\n",
            &written,
        );
        let again = parse_md(&text2).unwrap();
        for (a, b) in plan.tasks.iter().zip(&again.tasks) {
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        assert_eq!(render_details(&again, &ids), written);
    }

    #[test]
    fn errors_point_at_the_cell() {
        let text = doc(
            "| T-01 | A | - | Pending | P1 | None | - | - | 0 |\n| T-02 | B | - | Pending | P9 | T-O1 | - | - | 0 |\n",
            "",
        );
        let e = parse_md(&text).unwrap_err();
        let msgs = e.messages();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("priority"));
        assert_eq!(label_text(&e, &text), "P9");
        let dep = &e.related[0];
        assert!(dep.message.contains("unknown task `T-O1`"));
        assert_eq!(label_text(dep, &text), "T-O1");
        assert!(dep.help.as_ref().unwrap().contains("T-01"));
    }

    #[test]
    fn cycles_and_unknown_fields_and_strays_are_errors() {
        let text = doc(
            "| a | A | - | Pending | P1 | c | - | - | 0 |\n| b | B | - | Pending | P1 | a | - | - | 0 |\n| c | C | - | Pending | P1 | b | - | - | 0 |\n",
            "",
        );
        let e = parse_md(&text).unwrap_err();
        assert!(e.message.starts_with("dependency cycle"), "{}", e.message);
        assert_eq!(e.labels.len(), 3);

        let text = doc(
            "| a | A | - | Pending | P1 | None | - | - | 0 |\n",
            "### a: A\n\n- **Ouput**: `x`\n\nSome words.\n\n### zz: Z\n\n- **Run**: `x`\n",
        );
        let e = parse_md(&text).unwrap_err();
        let msgs = e.messages();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("unknown field `Ouput`")));
        assert!(msgs.iter().any(|m| m.contains("unexpected text")));
        assert!(msgs.iter().any(|m| m.contains("no row")));
    }

    #[test]
    fn details_that_disagree_with_the_table_are_errors() {
        let text = doc(
            "| a | A | - | Pending | P1 | None | - | - | 0 |\n| b | B | - | Pending | P1 | a | - | - | 0 |\n",
            "### b: Bee\n\n- **Deps**: None\n- **Priority**: P1\n",
        );
        let msgs = parse_md(&text).unwrap_err().messages();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("titled"));
        assert!(msgs[1].contains("deps of `b` differ"));
    }

    #[test]
    fn status_cells_and_agent_names() {
        let text = doc(
            "| a | A | sim | maybe | P1 | None | - | - | 0 |\n| b | B | gpt9 | ✅ | P1 | None | - | - | 0 |\n",
            "",
        );
        let msgs = parse_md(&text).unwrap_err().messages();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("unknown status `maybe`"));
        assert!(msgs[1].contains("unknown agent `gpt9`"));
        let text = doc("| a | A | sim | Pending | P1 | None | - | - | 0 |\n", "");
        assert_eq!(
            parse_md(&text).unwrap().tasks[0].agent.as_deref(),
            Some("sim")
        );
    }

    #[test]
    fn a_row_cut_off_from_the_table_is_an_error() {
        let text = doc(
            "| a | A | - | Pending | P1 | None | - | - | 0 |\n\n| b | B | - | Pending | P1 | None |\n",
            "",
        );
        let e = parse_md(&text).unwrap_err();
        assert!(e.message.contains("outside the table"), "{}", e.message);
        assert_eq!(label_text(&e, &text), "| b | B | - | Pending | P1 | None |");
    }

    #[test]
    fn statuses_are_read_by_column_name() {
        let table = "| Task ID | Task Description | Agent | Status |\n|---|---|---|---|\n| a | x \\| y | Agent-01 | Pending |\n| b | z | Agent-02 | ✅ |\n";
        assert_eq!(
            table_statuses(table),
            vec![
                ("a".to_string(), "Pending".to_string()),
                ("b".to_string(), "✅".to_string())
            ]
        );
        assert!(table_statuses("no table").is_empty());
    }

    #[test]
    fn no_table_is_an_error() {
        let e = parse_md("# Master Plan\n\n## Request\n\nx\n").unwrap_err();
        assert!(e.message.contains("no task table"));
    }
}
