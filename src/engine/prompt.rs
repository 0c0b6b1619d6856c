//! The task file an agent receives: its prompt with placeholders filled, what it may read and
//! must write, and its deps' results (inline, or by path past a size limit).

use std::fmt::Write as _;

use crate::plan::Task;

/// What the prompt renderer needs to know about one dep.
pub(crate) struct DepResult<'a> {
    pub(crate) id: &'a str,
    pub(crate) title: &'a str,
    pub(crate) agent_id: &'a str,
    /// Path of the dep's result file, relative to the project root.
    pub(crate) path: String,
    /// The result's text, or `None` when it is too large to inline.
    pub(crate) text: Option<String>,
    pub(crate) size: u64,
}

impl DepResult<'_> {
    fn inline_or_path(&self) -> String {
        match &self.text {
            Some(t) => t.trim_end().to_string(),
            None => format!(
                "(result is {} bytes; read it from `{}`)",
                self.size, self.path
            ),
        }
    }
}

/// Fills `{{ deps.<id>.result }}`, `{{ inputs }}` and `{{ outputs }}`; returns the text and the
/// deps it referenced. Unknown placeholders are left as written.
pub(crate) fn fill_placeholders(
    prompt: &str,
    inputs: &[String],
    task: &Task,
    deps: &[DepResult],
) -> (String, Vec<String>) {
    let mut out = String::with_capacity(prompt.len());
    let mut used = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let key = after[..end].trim();
        let replacement = if key == "inputs" {
            Some(list(inputs))
        } else if key == "outputs" {
            Some(list(&task.outputs))
        } else if let Some(id) = key
            .strip_prefix("deps.")
            .and_then(|k| k.strip_suffix(".result"))
        {
            deps.iter().find(|d| d.id == id).map(|d| {
                used.push(id.to_string());
                d.inline_or_path()
            })
        } else {
            None
        };
        match replacement {
            Some(r) => out.push_str(&r),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    (out, used)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items
            .iter()
            .map(|i| format!("- {i}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The whole task file (`agent_tasks/agent-XX.md`), which is also exactly what the agent gets.
pub(crate) fn render_task_file(
    task: &Task,
    agent_id: &str,
    prompt: &str,
    inputs: &[String],
    deps: &[DepResult],
) -> String {
    let (body, used) = fill_placeholders(prompt, inputs, task, deps);
    let mut s = String::with_capacity(body.len() + 512);
    let _ = writeln!(s, "# Task {}: {}\n", task.id, task.title);
    let _ = writeln!(s, "- **Agent**: {agent_id}");
    if !inputs.is_empty() {
        let _ = writeln!(s, "- **Inputs**: {}", inputs.join(", "));
    }
    if !task.outputs.is_empty() {
        let _ = writeln!(
            s,
            "- **Expected outputs** (write these files): {}",
            task.outputs.join(", ")
        );
    }
    if let Some(v) = &task.verify {
        let _ = writeln!(s, "- **Success check**: `{v}`");
    }
    let _ = writeln!(s, "\n## Instructions\n\n{}", body.trim_end());
    let rest: Vec<&DepResult> = deps
        .iter()
        .filter(|d| !used.iter().any(|u| u == d.id))
        .collect();
    if !rest.is_empty() {
        let _ = writeln!(s, "\n## Results from dependencies");
        for d in rest {
            let _ = writeln!(
                s,
                "\n### {}: {} ({})\n\n{}",
                d.id,
                d.title,
                d.agent_id,
                d.inline_or_path()
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Priority};

    fn task() -> Task {
        Task {
            id: "T-05".into(),
            title: "Report".into(),
            action: Action::Prompt(String::new()),
            agent: None,
            inputs: vec![],
            outputs: vec!["report.md".into()],
            deps: vec!["T-02".into(), "T-03".into()],
            priority: Priority(2),
            retries: None,
            timeout: None,
            locks: vec![],
            verify: None,
            estimate: None,
            env: Default::default(),
        }
    }

    fn dep<'a>(id: &'a str, text: Option<&str>) -> DepResult<'a> {
        DepResult {
            id,
            title: "t",
            agent_id: "Agent-02",
            path: format!(".orchestrator/results/{id}.md"),
            text: text.map(String::from),
            size: 999_999,
        }
    }

    #[test]
    fn placeholders_and_remaining_deps() {
        let deps = [dep("T-02", Some("style ok")), dep("T-03", None)];
        let file = render_task_file(
            &task(),
            "Agent-05",
            "Merge {{ deps.T-02.result }} into {{outputs}}. {{ unknown }}",
            &["a.rs".into()],
            &deps,
        );
        assert!(file.contains("Merge style ok into - report.md. {{ unknown }}"));
        assert!(file.contains("### T-03"), "unreferenced dep is appended");
        assert!(!file.contains("### T-02"), "referenced dep is not repeated");
        assert!(file.contains("read it from `.orchestrator/results/T-03.md`"));
    }

    #[test]
    fn unterminated_braces_are_kept() {
        let (s, _) = fill_placeholders("a {{ b", &[], &task(), &[]);
        assert_eq!(s, "a {{ b");
    }
}
