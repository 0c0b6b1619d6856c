//! What `orch plan` asks the agent: the request, the project's files, the reply format, and
//! on a retry the problems with the last reply.

use std::fmt::Write as _;
use std::path::Path;

/// The reply format the planner is asked for.
pub const SCHEMA: &str = r#"{
  "tasks": [
    {
      "id": "T-01",
      "title": "Read code",
      "prompt": "Complete, self-contained instructions for the agent that does this task.",
      "inputs": ["src/**/*.ts"],
      "outputs": ["reports/inventory.md"],
      "deps": [],
      "priority": "P0",
      "estimate": "2m",
      "verify": "test -s reports/inventory.md"
    }
  ]
}"#;

/// The prompt for one planning attempt. `retry` carries the previous reply and its problems.
pub fn build_prompt(request: &str, files: &[String], retry: Option<(&str, &[String])>) -> String {
    let mut s = String::new();
    s.push_str(
        "You are the planner of a build tool that runs AI agents like `make` runs commands. \
         Break the request below into atomic tasks that agents (or shell commands) can run in \
         parallel where their dependencies allow.\n\n",
    );
    let _ = writeln!(s, "## Request\n\n{}\n", request.trim());
    s.push_str(
        "## Rules\n\n\
         - Each task is atomic: it does one thing, runs on its own (its agent sees only its \
         prompt, its input files and the results of its deps), has a verifiable result, and \
         is safe to retry.\n\
         - Every task has `outputs` (files it must write, relative to the project root) or a \
         `verify` shell command that exits 0 when it succeeded, or both.\n\
         - `deps` lists the ids of tasks whose results this task needs. Deps must name tasks \
         of this plan and must not form a cycle. Tasks without a dependency between them run \
         in parallel, so do not chain tasks that are independent.\n\
         - `id`: unique, letters, digits, `-`, `_` or `.` only (T-01, T-02, ...). `title`: a \
         few words. `priority`: P0 (critical path) to P3 (low). `estimate`: like 30s, 2m, 1h.\n\
         - `prompt` is the full instruction for the agent. For a plain shell command use \
         `\"run\": \"command\"` instead of `prompt`.\n\
         - `inputs` are files the task reads (globs allowed); paths stay inside the project.\n\
         - When the same work applies to many files or items, write one fan-out task, not \
         one task per item: `\"foreach\": \"src/**/*.ts\"` (a glob: one instance per file) \
         or `\"foreach\": [\"fr\", \"de\"]` (a list), with `{{ item }}` (or `{{ item.stem }}`, \
         `{{ item.name }}`, `{{ item.dir }}`, `{{ item.ext }}`) in its prompt, run, inputs and \
         outputs; each instance writes its own file, e.g. `reviews/{{ item.stem }}.md`.\n\
         - When the items are known only once a task has run (the parts of a design, the \
         modules a survey finds), that task's prompt asks for its whole answer to be a JSON \
         array of strings, and the fan-out task takes `\"foreach_from\": \"<its id>\"` instead \
         of `foreach`.\n\
         - A task with a fan-out's id in `deps` runs after all its instances, and \
         `{{ deps.<id>.result }}` in its prompt is all their results. `\"foreach\": \"<fan-out \
         id>\"` with `\"deps\": [\"<fan-out id>[{{ item }}]\"]` makes one instance per item \
         that follows the other fan-out's instance of the same item.\n\
         - Usually 2 to 12 tasks; end with a task that combines the results if the request \
         asks for one deliverable.\n\n",
    );
    if !files.is_empty() {
        s.push_str("## Files in the project\n\n");
        for f in files {
            let _ = writeln!(s, "- {f}");
        }
        s.push('\n');
    }
    s.push_str(
        "## Reply format\n\nReply with one JSON object and nothing else (no prose, no code \
         fence), of this shape:\n\n",
    );
    s.push_str(SCHEMA);
    s.push('\n');
    if let Some((previous, problems)) = retry {
        s.push_str("\n## Your previous reply\n\n");
        let shown = if previous.len() > 16_000 {
            let mut cut = 16_000;
            while !previous.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}\n[... cut ...]", &previous[..cut])
        } else {
            previous.to_string()
        };
        s.push_str(&shown);
        s.push_str("\n\n## Problems with it\n\n");
        for p in problems {
            let _ = writeln!(s, "- {p}");
        }
        s.push_str("\nReply again with the complete, corrected plan as one JSON object.\n");
    }
    s
}

/// Project files to show the planner: up to `limit`, skipping hidden and build directories.
pub fn project_files(root: &Path, limit: usize) -> Vec<String> {
    const SKIP: &[&str] = &[
        "target",
        "node_modules",
        "dist",
        "build",
        "__pycache__",
        "venv",
    ];
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .max_depth(4)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0 || !(name.starts_with('.') || SKIP.contains(&name.as_ref()))
        });
    for e in walker.flatten() {
        if e.file_type().is_file() {
            if let Ok(rel) = e.path().strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
                if out.len() >= limit {
                    break;
                }
            }
        }
    }
    out
}
